//! Image preprocessing for CLIPSeg, bit-compatible with the Python reference.
//!
//! The reference pipeline is transformers' PIL-backed `ViTImageProcessor`
//! (`ViTImageProcessorPil`): `PIL.Image.resize` on the uint8 RGB image, then
//! `rescale` (uint8 -> float64 * factor -> float32) and `normalize`
//! (`(x - mean) / std` in float32), channel-first. Everything here is plain
//! `std` so the same code runs natively and in wasm32 (no `image` crate).
//! Caveat: transformers 5 picks its torchvision backend by default when
//! torchvision is installed, which resizes differently; reference data must
//! come from `backend="pil"` (or an environment without torchvision).
//!
//! [`resize_rgb8`] reimplements Pillow's convolution resampler
//! (`libImaging/Resample.c`) with the same fixed-point arithmetic, so its
//! output equals `Image.resize` byte for byte for BILINEAR and BICUBIC, and in
//! all cases tested (x86-64 and wasm32) for BOX, HAMMING and LANCZOS too.

use serde::Deserialize;
use serde_json::Value;

/// Errors from parsing a preprocessor config or validating an image.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// The config is not valid JSON, or not a JSON object.
    #[error("preprocessor config is not a valid JSON object: {0}")]
    Json(String),
    /// A config field has the wrong type or an out-of-range value.
    #[error("preprocessor config field `{field}`: {reason}")]
    InvalidField {
        /// The JSON key.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A config field asks for something this module does not implement.
    #[error("preprocessor config field `{field}`: {reason} is not supported")]
    Unsupported {
        /// The JSON key.
        field: &'static str,
        /// The unsupported value or option.
        reason: String,
    },
    /// Image dimensions or buffer length are inconsistent.
    #[error("invalid image: {0}")]
    InvalidImage(String),
}

type Result<T> = std::result::Result<T, PreprocessError>;

/// Pillow's antialiasing resampling filters (`PIL.Image.Resampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Resampling.BOX` (4).
    Box,
    /// `Resampling.BILINEAR` (2): triangle filter, support 1.
    Bilinear,
    /// `Resampling.HAMMING` (5).
    Hamming,
    /// `Resampling.BICUBIC` (3): cubic convolution with a = -0.5, support 2.
    Bicubic,
    /// `Resampling.LANCZOS` (1): 3-lobed Lanczos.
    Lanczos,
}

impl Filter {
    /// Maps a PIL resampling enum value. NEAREST (0) is refused because Pillow
    /// implements it with a different (affine, non-convolution) code path.
    /// The PIL `Resampling` code, as HF configs store it.
    pub fn to_pil(self) -> i64 {
        match self {
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    pub fn from_pil(code: i64) -> Result<Self> {
        let field = "resample";
        match code {
            1 => Ok(Self::Lanczos),
            2 => Ok(Self::Bilinear),
            3 => Ok(Self::Bicubic),
            4 => Ok(Self::Box),
            5 => Ok(Self::Hamming),
            0 => Err(PreprocessError::Unsupported {
                field,
                reason: "0 (NEAREST)".into(),
            }),
            _ => Err(PreprocessError::Unsupported {
                field,
                reason: format!(
                    "{code} (expected a PIL filter: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING)"
                ),
            }),
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    /// The kernels exactly as written in Resample.c (same operation order).
    /// HAMMING/LANCZOS call `sin`/`cos`, whose last bit could differ between
    /// libm implementations (no difference seen in tests, natively or on
    /// wasm32); BOX/BILINEAR/BICUBIC are pure IEEE arithmetic, the same
    /// everywhere.
    fn eval(self, x: f64) -> f64 {
        use std::f64::consts::PI;
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (x * PI).sin() / (x * PI)
            }
        };
        match self {
            Self::Box => (x > -0.5 && x <= 0.5) as u8 as f64,
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    // Pillow writes the constants as floats: 0.54f, 0.46f.
                    let x = x * PI;
                    x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// The subset of a Hugging Face `preprocessor_config.json` (ViTImageProcessor)
/// that determines CLIPSeg's `pixel_values`.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Resize to `width` x `height` (ignoring aspect ratio, as ViT does).
    pub do_resize: bool,
    /// Target height in pixels.
    pub height: usize,
    /// Target width in pixels.
    pub width: usize,
    /// Pillow filter for the resize (`resample`).
    pub resample: Filter,
    /// Multiply pixel values by `rescale_factor`.
    pub do_rescale: bool,
    /// Kept as f64: transformers multiplies in float64 before casting.
    pub rescale_factor: f64,
    /// Apply `(x - image_mean) / image_std` per channel.
    pub do_normalize: bool,
    /// Per-channel RGB mean; cast to f32 when used, as numpy does.
    pub image_mean: [f64; 3],
    /// Per-channel RGB std (all > 0); cast to f32 when used.
    pub image_std: [f64; 3],
}

impl Default for PreprocessConfig {
    /// transformers' `ViTImageProcessor` class defaults.
    fn default() -> Self {
        Self {
            do_resize: true,
            height: 224,
            width: 224,
            resample: Filter::Bilinear,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }
}

/// Raw JSON fields; every value is checked by hand so errors name the field.
/// `null` counts as missing, as in transformers.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct RawConfig {
    do_resize: Option<Value>,
    size: Option<Value>,
    resample: Option<Value>,
    do_rescale: Option<Value>,
    rescale_factor: Option<Value>,
    do_normalize: Option<Value>,
    image_mean: Option<Value>,
    image_std: Option<Value>,
    do_center_crop: Option<Value>,
    do_pad: Option<Value>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PreprocessError {
    PreprocessError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn get_bool(field: &'static str, v: Option<Value>, default: bool) -> Result<bool> {
    match v {
        None => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| invalid(field, format!("expected true/false, got {v}"))),
    }
}

fn get_side(field: &'static str, v: &Value) -> Result<usize> {
    v.as_u64()
        .filter(|&n| n > 0)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(field, format!("expected a positive integer, got {v}")))
}

fn get_f64(field: &'static str, v: &Value) -> Result<f64> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| invalid(field, format!("expected a finite number, got {v}")))
}

/// A number (broadcast to RGB, as transformers allows) or a list of 3 numbers.
fn get_rgb(field: &'static str, v: Option<Value>, default: [f64; 3]) -> Result<[f64; 3]> {
    match v {
        None => Ok(default),
        Some(Value::Array(a)) if a.len() == 3 => Ok([
            get_f64(field, &a[0])?,
            get_f64(field, &a[1])?,
            get_f64(field, &a[2])?,
        ]),
        Some(v @ Value::Number(_)) => Ok([get_f64(field, &v)?; 3]),
        Some(v) => Err(invalid(
            field,
            format!("expected a number or 3 numbers, got {v}"),
        )),
    }
}

/// `size` as transformers' `get_size_dict` reads it: `N` (square, since
/// ViT uses `default_to_square=True`), `[H, W]` or `{"height", "width"}`.
fn get_size(v: Option<Value>, default: (usize, usize)) -> Result<(usize, usize)> {
    let field = "size";
    match v {
        None => Ok(default),
        Some(n @ Value::Number(_)) => get_side(field, &n).map(|s| (s, s)),
        Some(Value::Array(a)) if a.len() == 2 => {
            Ok((get_side(field, &a[0])?, get_side(field, &a[1])?))
        }
        Some(Value::Object(m)) => {
            // transformers checks the aspect-ratio keys before height/width.
            for key in ["shortest_edge", "longest_edge", "max_height", "max_width"] {
                if m.get(key).is_some_and(|v| !v.is_null()) {
                    return Err(PreprocessError::Unsupported {
                        field,
                        reason: format!("`{key}` (aspect-preserving resize)"),
                    });
                }
            }
            match (m.get("height"), m.get("width")) {
                (Some(h), Some(w)) => Ok((get_side(field, h)?, get_side(field, w)?)),
                _ => Err(invalid(field, "expected {\"height\": H, \"width\": W}")),
            }
        }
        Some(v) => Err(invalid(
            field,
            format!("expected N, [H, W] or {{\"height\", \"width\"}}, got {v}"),
        )),
    }
}

impl PreprocessConfig {
    /// The values CIDAS/clipseg-rd64-refined ships: 352x352 bilinear, 1/255,
    /// ImageNet mean/std.
    pub fn clipseg_default() -> Self {
        Self {
            height: 352,
            width: 352,
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
            ..Self::default()
        }
    }

    /// `preprocessor_config.json` text that [`Self::from_json`] (and transformers) read back.
    pub fn to_json(&self) -> String {
        let json = serde_json::json!({
            "image_processor_type": "ViTImageProcessor",
            "do_resize": self.do_resize,
            "size": {"height": self.height, "width": self.width},
            "resample": self.resample.to_pil(),
            "do_rescale": self.do_rescale,
            "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
        });
        format!("{json:#}\n")
    }

    /// Parses a `preprocessor_config.json`. Missing or `null` fields take
    /// `ViTImageProcessor` defaults ([`Default`]); unknown fields are ignored.
    ///
    /// Note: serde_json's default (not `float_roundtrip`) parser is exact for
    /// short literals such as `0.00392156862745098`; a much longer literal
    /// could land 1 f64 ulp off, which matters only if the f32 result then
    /// sits exactly on a rounding boundary.
    pub fn from_json(json: &str) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(json).map_err(|e| PreprocessError::Json(e.to_string()))?;
        for (field, v) in [
            ("do_center_crop", raw.do_center_crop),
            ("do_pad", raw.do_pad),
        ] {
            if get_bool(field, v, false)? {
                return Err(PreprocessError::Unsupported {
                    field,
                    reason: "true".into(),
                });
            }
        }
        let d = Self::default();
        let (height, width) = get_size(raw.size, (d.height, d.width))?;
        let resample = match raw.resample {
            None => d.resample,
            Some(v) => Filter::from_pil(v.as_i64().ok_or_else(|| {
                invalid(
                    "resample",
                    format!("expected a PIL filter integer, got {v}"),
                )
            })?)?,
        };
        let rescale_factor = match raw.rescale_factor {
            None => d.rescale_factor,
            Some(v) => Some(get_f64("rescale_factor", &v)?)
                .filter(|&f| f > 0.0)
                .ok_or_else(|| invalid("rescale_factor", format!("must be > 0, got {v}")))?,
        };
        let image_std = get_rgb("image_std", raw.image_std, d.image_std)?;
        if let Some(s) = image_std.iter().find(|&&s| s <= 0.0) {
            return Err(invalid(
                "image_std",
                format!("every value must be > 0, got {s}"),
            ));
        }
        Ok(Self {
            do_resize: get_bool("do_resize", raw.do_resize, d.do_resize)?,
            height,
            width,
            resample,
            do_rescale: get_bool("do_rescale", raw.do_rescale, d.do_rescale)?,
            rescale_factor,
            do_normalize: get_bool("do_normalize", raw.do_normalize, d.do_normalize)?,
            image_mean: get_rgb("image_mean", raw.image_mean, d.image_mean)?,
            image_std,
        })
    }

    /// `(width, height)` of the model input for a `w` x `h` image.
    pub fn output_size(&self, w: usize, h: usize) -> (usize, usize) {
        if self.do_resize {
            (self.width, self.height)
        } else {
            (w, h)
        }
    }
}

/// `w * h * channels` if it is non-zero and fits in `usize`.
fn buffer_len(w: usize, h: usize, channels: usize) -> Option<usize> {
    w.checked_mul(h)?.checked_mul(channels).filter(|&n| n > 0)
}

/// Checks that an interleaved image buffer is `w * h * channels` bytes long
/// and neither side is 0. Upper limits on size are the caller's job.
pub fn validate_dims(len: usize, w: usize, h: usize, channels: usize) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(PreprocessError::InvalidImage(format!(
            "{w}x{h} pixels; both sides must be at least 1"
        )));
    }
    let expected = buffer_len(w, h, channels);
    if expected != Some(len) {
        return Err(PreprocessError::InvalidImage(format!(
            "{w}x{h}x{channels} image needs {} bytes, got {len}",
            expected.map_or("more than usize::MAX".to_string(), |n| n.to_string())
        )));
    }
    Ok(())
}

/// Drops the alpha channel of interleaved RGBA8 (what a browser canvas'
/// `getImageData` returns). This equals PIL's `Image.convert("RGB")`, which is
/// what the usual CLIPSeg Python snippets do; note that transformers'
/// `convert_to_rgb` would instead composite onto white, and that canvas data
/// of fully transparent pixels has usually lost its colour already. In place: a
/// second photo-sized buffer raised a page's wasm memory by its size (5.8 MB for a
/// 1600x1200 photo, tests/e2e/visit.mjs), which never shrinks.
pub fn rgba_to_rgb(mut rgba: Vec<u8>, w: usize, h: usize) -> Result<Vec<u8>> {
    validate_dims(rgba.len(), w, h, 4)?;
    for i in 0..w * h {
        rgba.copy_within(4 * i..4 * i + 3, 3 * i);
    }
    rgba.truncate(3 * w * h);
    Ok(rgba)
}

/// Pillow's `PRECISION_BITS = 32 - 8 - 2`: fixed-point fraction bits of the
/// 8-bit resampler's coefficients.
const PRECISION_BITS: u32 = 22;

/// One axis of Pillow's resampler: for each output index, the first input
/// index and the fixed-point weights of the inputs it reads.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>, // (first input index, number of inputs)
    weights: Vec<i32>,           // ksize per output index
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` from Resample.c. The window
/// widens by `scale` when downscaling (antialiasing); weights are computed in
/// f64, normalised to sum 1, then rounded half away from zero to 22-bit
/// fixed point. Pillow passes the box as float32, hence `as f32`.
fn precompute_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for (xx, kout) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; negatives are clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k[..n].iter_mut().enumerate() {
            *kx = filter.eval(((x + xmin) as f64 - center + 0.5) * inv_filterscale);
            ww += *kx;
        }
        for (kx, out) in k[..n].iter().zip(kout.iter_mut()) {
            let kx = if ww != 0.0 { kx / ww } else { *kx };
            let f = kx * (1u32 << PRECISION_BITS) as f64;
            *out = if kx < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: drop the fraction (arithmetic shift = floor) and clamp.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding bias the accumulators start from: `1 << (PRECISION_BITS - 1)`.
const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass over all rows of `src` (interleaved RGB, width `w`).
fn pass_horizontal(src: &[u8], w: usize, out_w: usize, c: &Coeffs) -> Vec<u8> {
    let rows = src.len() / (w * 3);
    let mut out = vec![0u8; out_w * rows * 3];
    for (row_in, row_out) in src.chunks_exact(w * 3).zip(out.chunks_exact_mut(out_w * 3)) {
        for (xx, px) in row_out.chunks_exact_mut(3).enumerate() {
            let (xmin, n) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..][..n];
            let mut acc = [HALF; 3];
            for (p, &kx) in row_in[xmin * 3..(xmin + n) * 3].chunks_exact(3).zip(k) {
                for ch in 0..3 {
                    acc[ch] += p[ch] as i64 * kx as i64;
                }
            }
            for ch in 0..3 {
                px[ch] = clip8(acc[ch]);
            }
        }
    }
    out
}

/// Vertical pass; `src` starts at source row `y0` (bounds are absolute).
fn pass_vertical(src: &[u8], w: usize, y0: usize, c: &Coeffs) -> Vec<u8> {
    let stride = w * 3;
    let mut out = vec![0u8; c.bounds.len() * stride];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, n) = c.bounds[yy];
        let k = &c.weights[yy * c.ksize..][..n];
        for (i, o) in row_out.iter_mut().enumerate() {
            let mut acc = HALF;
            for (y, &ky) in k.iter().enumerate() {
                acc += src[(ymin - y0 + y) * stride + i] as i64 * ky as i64;
            }
            *o = clip8(acc);
        }
    }
    out
}

/// Resizes interleaved RGB8 exactly like Pillow 13's `Image.resize((out_w,
/// out_h), filter)` on an RGB image (`ImagingResampleInner`).
///
/// Two separable passes, each skipped when its dimension is unchanged, with
/// the result rounded to uint8 between them (torchvision's antialiased resize
/// keeps floats; we follow PIL because the reference processor uses PIL).
/// The pass order matters for those roundings (±1 in some pixels). Pillow 13
/// (python-pillow#9549) runs the vertical pass first when the height shrinks
/// by more than twice as many pixels as the width, i.e. `out_h < h &&
/// h - out_h > 2 * (w - out_w)` (rule fitted and checked against Pillow 13.0.0
/// on ~3000 size pairs; portrait photos such as 480x640 -> 352x352 take it).
/// Otherwise it goes horizontal first, over only the source rows the vertical
/// pass reads (`ybox_first..ybox_last`). Older Pillow differs: <= 12.1 is
/// always horizontal-first; 12.2/12.3 go vertical-first only if `h > 100 * w`.
///
/// Returns an empty `Vec` if `src.len() != w * h * 3`, a dimension is 0 or a
/// buffer size overflows `usize`; call [`validate_dims`] first to get an
/// error instead.
pub fn resize_rgb8(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    // Every buffer (including the intermediate one) fits in max(w, out_w) x max(h, out_h).
    if validate_dims(src.len(), w, h, 3).is_err()
        || buffer_len(out_w.max(w), out_h.max(h), 3).is_none()
    {
        return Vec::new();
    }
    let horiz = (out_w != w).then(|| precompute_coeffs(w, out_w, filter));
    let vert = (out_h != h).then(|| precompute_coeffs(h, out_h, filter));
    match (horiz, vert) {
        (None, None) => src.to_vec(),
        (Some(hc), None) => pass_horizontal(src, w, out_w, &hc),
        (None, Some(vc)) => pass_vertical(src, w, 0, &vc),
        (Some(hc), Some(vc)) if out_h < h && h - out_h > 2 * w.saturating_sub(out_w) => {
            pass_horizontal(&pass_vertical(src, w, 0, &vc), w, out_w, &hc)
        }
        (Some(hc), Some(vc)) => {
            let (y0, y1) = (
                vc.bounds[0].0,
                vc.bounds[out_h - 1].0 + vc.bounds[out_h - 1].1,
            );
            pass_vertical(
                &pass_horizontal(&src[y0 * w * 3..y1 * w * 3], w, out_w, &hc),
                out_w,
                y0,
                &vc,
            )
        }
    }
}

/// Model input `pixel_values` for one interleaved RGB8 image: channel-first
/// `[3, H, W]` f32 with `(W, H) = cfg.output_size(w, h)`.
///
/// Matches transformers' PIL backend bit for bit: `resize` (PIL, uint8), then
/// `rescale` computes `uint8 -> float64 * rescale_factor` and casts to
/// float32, then `normalize` computes `(x - mean) / std` in float32 with mean
/// and std cast to float32. Without rescale, normalize starts from
/// `uint8 -> float32`.
pub fn pixel_values(cfg: &PreprocessConfig, rgb: &[u8], w: usize, h: usize) -> Result<Vec<f32>> {
    validate_dims(rgb.len(), w, h, 3)?;
    let (ow, oh) = cfg.output_size(w, h);
    let too_big = || PreprocessError::InvalidImage(format!("cannot resize {w}x{h} to {ow}x{oh}"));
    let out_len = buffer_len(ow, oh, 3).ok_or_else(too_big)?;
    let resized;
    let img = if cfg.do_resize {
        resized = resize_rgb8(rgb, w, h, ow, oh, cfg.resample);
        &resized[..]
    } else {
        rgb
    };
    if img.len() != out_len {
        return Err(too_big()); // resize_rgb8 refused the sizes
    }
    // Only 256 possible inputs per channel: build a lookup table.
    let lut: Vec<[f32; 256]> = (0..3)
        .map(|c| {
            let (mean, std) = (cfg.image_mean[c] as f32, cfg.image_std[c] as f32);
            std::array::from_fn(|v| {
                let x = if cfg.do_rescale {
                    (v as f64 * cfg.rescale_factor) as f32
                } else {
                    v as f32
                };
                if cfg.do_normalize {
                    (x - mean) / std
                } else {
                    x
                }
            })
        })
        .collect();
    let n = ow * oh;
    let mut out = vec![0f32; 3 * n];
    for (c, plane) in out.chunks_exact_mut(n).enumerate() {
        for (o, px) in plane.iter_mut().zip(img.chunks_exact(3)) {
            *o = lut[c][px[c] as usize];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test image shared with the Python generator
    /// (xorshift32 noise, hard 0/255 edges, or a gradient with noise).
    fn gen_image(w: usize, h: usize, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9) | 1;
        (0..w * h * 3)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let (x, y, c) = ((i / 3) % w, (i / 3) / w, i % 3);
                match seed % 3 {
                    0 => (s >> 24) as u8,
                    1 => {
                        if (x / (c + 1) + y / 2) % 2 == 0 {
                            255
                        } else {
                            0
                        }
                    }
                    _ => {
                        ((x * 255 / w.max(2) + y * 97 / h + c * 60 + (s >> 29) as usize) % 256)
                            as u8
                    }
                }
            })
            .collect()
    }

    fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// `(w, h, out_w, out_h, PIL filter, gen_image seed, FNV-1a of Pillow 13.0.0's
    /// `Image.resize` output)`. Covers both pass orders (incl. the boundary
    /// 40x30 -> 30x10 / 30x9), 1-pixel sources, up/down/mixed scaling.
    #[rustfmt::skip]
    const PILLOW_CASES: &[(usize, usize, usize, usize, i64, u32, u64)] = &[
        (40, 30, 30, 10, 2, 2, 0xf909626ae84225bf),
        (40, 30, 30, 10, 3, 3, 0xf01a7c70a93dd82f),
        (40, 30, 30, 10, 1, 1, 0xf9770b79df19e205),
        (40, 30, 30, 10, 4, 4, 0x80e1f99f8a72ba99),
        (40, 30, 30, 10, 5, 5, 0xe50e67191495497d),
        (40, 30, 30, 9, 2, 4, 0x4d84879d074f0b38),
        (40, 30, 30, 9, 3, 5, 0xce71a893f8b5959a),
        (1, 1, 5, 4, 2, 6, 0x5a996f6b0d1a1e01),
        (1, 1, 5, 4, 3, 7, 0x229c80d54f7c1679),
        (2, 3, 3, 2, 2, 8, 0x3d0ef17760d7a934),
        (2, 3, 3, 2, 3, 9, 0xd7c6fcca6cb6711c),
        (2, 3, 7, 9, 2, 10, 0x3b9a4d67869c2d78),
        (2, 3, 7, 9, 3, 11, 0x2c98b1638f26541b),
        (2, 3, 7, 9, 1, 9, 0xc3eb3e6a094944ed),
        (2, 3, 7, 9, 4, 12, 0x97bf6906aed091ee),
        (2, 3, 7, 9, 5, 13, 0x99312a8babf46cb8),
        (37, 23, 352, 352, 2, 12, 0xfa739208c236a007),
        (37, 23, 352, 352, 3, 13, 0x95dfc5922a194fb0),
        (37, 23, 16, 11, 2, 14, 0x663e15ebe3d838d2),
        (37, 23, 16, 11, 3, 15, 0xb67c8ddcd5733014),
        (640, 427, 352, 352, 2, 16, 0x3859cf6a8f7bfaf1),
        (640, 427, 352, 352, 3, 17, 0x1e81b759ff7835f9),
        (300, 517, 352, 352, 2, 18, 0x8e6364868ddad38a),
        (300, 517, 352, 352, 3, 19, 0x936e82e4305f44a7),
        (300, 517, 352, 352, 1, 17, 0x9851e5537f545ce1),
        (300, 517, 352, 352, 4, 20, 0xdb7f1af5fbd026ea),
        (300, 517, 352, 352, 5, 21, 0x8404cad6bd431697),
        (1000, 50, 352, 352, 2, 20, 0x1c4d7fce8ee33de3),
        (1000, 50, 352, 352, 3, 21, 0x31cdabc615c98d08),
        (50, 1000, 20, 30, 2, 22, 0x576a612dffa64435),
        (50, 1000, 20, 30, 3, 23, 0xbc6c334f0ab0fb80),
        (5, 600, 9, 40, 2, 24, 0x93d06698d703fbdc),
        (5, 600, 9, 40, 3, 25, 0x0e0de14987a8407b),
        (352, 100, 352, 352, 2, 26, 0x0e595ad58d90fdac),
        (352, 100, 352, 352, 3, 27, 0x4f3d2955557999a9),
        (352, 100, 352, 352, 1, 25, 0xb5b36226f89e900d),
        (352, 100, 352, 352, 4, 28, 0x8ecabc9a83d6bd25),
        (352, 100, 352, 352, 5, 29, 0xc645adcf32cbf39b),
        (100, 352, 352, 352, 2, 28, 0xb0a5dec9ccd11525),
        (100, 352, 352, 352, 3, 29, 0x02ac2326c86a5674),
        (64, 48, 48, 64, 2, 30, 0x68f3e50ff00ed4d0),
        (64, 48, 48, 64, 3, 31, 0x30662a8496cc0ce5),
    ];

    #[test]
    fn resize_matches_pillow() {
        for &(w, h, ow, oh, f, seed, want) in PILLOW_CASES {
            let out = resize_rgb8(
                &gen_image(w, h, seed),
                w,
                h,
                ow,
                oh,
                Filter::from_pil(f).unwrap(),
            );
            assert_eq!(out.len(), ow * oh * 3);
            assert_eq!(fnv1a(out), want, "{w}x{h} -> {ow}x{oh}, filter {f}");
        }
    }

    #[test]
    fn pixel_values_match_transformers() {
        // FNV-1a of the f32 bits of ViTImageProcessorPil(CIDAS config) output.
        let cfg = PreprocessConfig::clipseg_default();
        for (w, h, seed, want, first) in [
            (37, 23, 5, 0x6c87_3393_773a_5390, -2.015_155_6),
            (200, 300, 6, 0x4682_dfba_796c_6c02, 1.957_787_4),
        ] {
            let pv = pixel_values(&cfg, &gen_image(w, h, seed), w, h).unwrap();
            assert_eq!(pv.len(), 3 * 352 * 352);
            assert_eq!(pv[0], first);
            assert_eq!(fnv1a(pv.iter().flat_map(|v| v.to_le_bytes())), want);
        }
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = PreprocessConfig::from_json("{}").unwrap();
        assert_eq!(c, PreprocessConfig::default());
        let clipseg = r#"{"do_normalize": true, "do_resize": true, "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "ViTImageProcessor", "image_std": [0.229, 0.224, 0.225],
            "processor_class": "CLIPSegProcessor", "resample": 2, "rescale_factor": 0.00392156862745098,
            "size": {"height": 352, "width": 352}}"#;
        let c = PreprocessConfig::from_json(clipseg).unwrap();
        assert_eq!(c, PreprocessConfig::clipseg_default());
        assert_eq!(c.rescale_factor, 1.0 / 255.0);
        let c = PreprocessConfig::from_json(r#"{"size": 352, "resample": 3, "image_mean": null}"#)
            .unwrap();
        assert_eq!(
            (c.height, c.width, c.resample, c.image_mean),
            (352, 352, Filter::Bicubic, [0.5; 3])
        );
        let c = PreprocessConfig::from_json(r#"{"size": [10, 20], "image_std": 0.25}"#).unwrap();
        assert_eq!((c.height, c.width, c.image_std), (10, 20, [0.25; 3]));

        for (json, field) in [
            (r#"{"size": {"shortest_edge": 224}}"#, "size"),
            (r#"{"size": 0}"#, "size"),
            (r#"{"size": {"height": 3}}"#, "size"),
            (r#"{"resample": 0}"#, "resample"),
            (r#"{"resample": 7}"#, "resample"),
            (r#"{"resample": "bilinear"}"#, "resample"),
            (r#"{"do_resize": 1}"#, "do_resize"),
            (r#"{"rescale_factor": -1}"#, "rescale_factor"),
            (r#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
            (r#"{"image_std": [0.5, 0, 0.5]}"#, "image_std"),
            (r#"{"do_center_crop": true}"#, "do_center_crop"),
        ] {
            let e = PreprocessConfig::from_json(json).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("`{field}`")) && !msg.contains('\n'),
                "{json}: {msg}"
            );
        }
        assert!(matches!(
            PreprocessConfig::from_json("{"),
            Err(PreprocessError::Json(_))
        ));
        assert!(matches!(
            PreprocessConfig::from_json("[1]"),
            Err(PreprocessError::Json(_))
        ));
    }

    #[test]
    fn dims_and_rgba() {
        assert!(validate_dims(0, 0, 5, 3).is_err());
        assert!(validate_dims(6, 2, 1, 4).is_err());
        assert!(validate_dims(usize::MAX, usize::MAX, 2, 3).is_err());
        assert_eq!(
            rgba_to_rgb(vec![1, 2, 3, 4, 5, 6, 7, 8], 2, 1).unwrap(),
            vec![1, 2, 3, 5, 6, 7]
        );
        assert!(rgba_to_rgb(vec![1, 2, 3], 1, 1).is_err());
        assert!(resize_rgb8(&[0; 5], 1, 2, 3, 3, Filter::Bilinear).is_empty());
        assert!(resize_rgb8(&[], 0, 0, 3, 3, Filter::Bilinear).is_empty());
        let cfg = PreprocessConfig::clipseg_default();
        assert!(pixel_values(&cfg, &[0; 3], 0, 1).is_err());
        assert!(pixel_values(&cfg, &[0; 4], 1, 1).is_err());
    }

    #[test]
    fn resize_identity_is_copy() {
        let img = gen_image(13, 7, 4);
        assert_eq!(resize_rgb8(&img, 13, 7, 13, 7, Filter::Bicubic), img);
    }
}

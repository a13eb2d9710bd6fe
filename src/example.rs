//! Image prompts from a marked region of a photo: the CLIPSeg paper's visual prompt
//! engineering (Lüddecke & Ecker 2022, Table 6: its best variant crops to the object with 10%
//! context, blurs the background and lowers it to 10% intensity). The result is an ordinary
//! RGB image, shown to the user as the example and encoded like any other
//! ([`crate::Segmenter::encode_example`]); the CLI and the page run this same code.

use crate::Error;
use crate::postprocess::resize_bilinear_f32;
use crate::preprocess::{Filter, PreprocessConfig, resize_rgb8};

/// Context kept around the region, per side, as a fraction of its size (the paper's 0.1).
const CONTEXT: f64 = 0.1;
/// Background intensity around the mean colour, in the model's normalised units (10%).
const BACKGROUND: f32 = 0.1;
/// Gaussian blur of the background at the model's input size: sigma and radius in pixels
/// (the paper's 15x15 kernel at sigma 3).
const SIGMA: f32 = 3.0;
const RADIUS: usize = 7;

/// A rectangle of an image in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Region {
    /// `X,Y,W,H` (the CLI's and the element's form).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Input(format!(
                "region {text:?}: give X,Y,WIDTH,HEIGHT in pixels, e.g. 40,30,200,150"
            ))
        };
        let parts: Vec<usize> = (text.split(','))
            .map(|p| p.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [x, y, width, height] => Ok(Self {
                x,
                y,
                width,
                height,
            }),
            _ => Err(bad()),
        }
    }

    /// The region as a mask of a `width` x `height` image (1 inside); refused unless it is
    /// non-empty and inside the image.
    pub fn mask(self, width: usize, height: usize) -> Result<Vec<u8>, Error> {
        let fits = |start: usize, len: usize, side: usize| {
            len > 0 && start.checked_add(len).is_some_and(|end| end <= side)
        };
        if !fits(self.x, self.width, width) || !fits(self.y, self.height, height) {
            return Err(Error::Input(format!(
                "region {},{},{},{} is empty or outside the {width}x{height} image",
                self.x, self.y, self.width, self.height
            )));
        }
        let mut mask = vec![0u8; width * height];
        for row in mask.chunks_mut(width).skip(self.y).take(self.height) {
            row[self.x..self.x + self.width].fill(1);
        }
        Ok(mask)
    }
}

/// The example image for the marked pixels of `rgb` (`mask`: nonzero where marked): cropped
/// to the marks' bounding box with context, scaled so its longer side is the model's input
/// size, the unmarked pixels blurred and faded to 10% around the normalisation mean, padded to
/// a square with that mean. Returns the RGB pixels and their side.
pub fn from_marks(
    rgb: &[u8],
    width: usize,
    height: usize,
    mask: &[u8],
    preprocess: &PreprocessConfig,
) -> Result<(Vec<u8>, usize), Error> {
    if rgb.len() != width * height * 3 || mask.len() != width * height {
        return Err(Error::Input(format!(
            "a {width}x{height} image needs {} RGB bytes and a {}-byte mask, got {} and {}",
            width * height * 3,
            width * height,
            rgb.len(),
            mask.len()
        )));
    }
    let (x0, y0, x1, y1) = bounds(mask, width).ok_or_else(|| {
        Error::Input("mark a region of the image first: nothing is marked".into())
    })?;
    // The bounding box with its context, clamped to the image.
    let grow = |lo: usize, hi: usize, side: usize| {
        let pad = ((hi - lo) as f64 * CONTEXT) as usize;
        (lo.saturating_sub(pad), (hi + pad).min(side))
    };
    let (x0, x1) = grow(x0, x1, width);
    let (y0, y1) = grow(y0, y1, height);
    let (cw, ch) = (x1 - x0, y1 - y0);
    let crop: Vec<u8> = (y0..y1)
        .flat_map(|y| &rgb[(y * width + x0) * 3..(y * width + x1) * 3])
        .copied()
        .collect();
    let marks: Vec<f32> = (y0..y1)
        .flat_map(|y| &mask[y * width + x0..y * width + x1])
        .map(|&m| f32::from(u8::from(m != 0)))
        .collect();
    // Scaled so the longer side is the input size.
    let side = preprocess.width.max(1);
    let scale = side as f64 / cw.max(ch) as f64;
    let sw = ((cw as f64 * scale).round() as usize).clamp(1, side);
    let sh = ((ch as f64 * scale).round() as usize).clamp(1, side);
    let pixels = resize_rgb8(&crop, cw, ch, sw, sh, Filter::Bilinear);
    let inside = resize_bilinear_f32(&marks, ch, cw, sh, sw);
    let blurred = blur(&pixels, sw, sh);
    let mean = preprocess
        .image_mean
        .map(|m| (m / preprocess.rescale_factor) as f32);
    let mut out = Vec::with_capacity(side * side * 3);
    let (left, top) = ((side - sw) / 2, (side - sh) / 2);
    for y in 0..side {
        for x in 0..side {
            let at = (y.wrapping_sub(top) < sh && x.wrapping_sub(left) < sw)
                .then(|| (y - top) * sw + (x - left));
            for c in 0..3 {
                let value = match at {
                    Some(i) if inside[i] >= 0.5 => f32::from(pixels[i * 3 + c]),
                    Some(i) => mean[c] + BACKGROUND * (blurred[i * 3 + c] - mean[c]),
                    None => mean[c],
                };
                out.push(value.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Ok((out, side))
}

/// The smallest box (x0, y0, x1, y1), ends exclusive, holding every nonzero of `mask`.
fn bounds(mask: &[u8], width: usize) -> Option<(usize, usize, usize, usize)> {
    let mut found: Option<(usize, usize, usize, usize)> = None;
    for (y, row) in mask.chunks(width).enumerate() {
        let Some(first) = row.iter().position(|&m| m != 0) else {
            continue;
        };
        let last = row.iter().rposition(|&m| m != 0).unwrap_or(first);
        found = Some(match found {
            None => (first, y, last + 1, y + 1),
            Some((x0, y0, x1, _)) => (x0.min(first), y0, x1.max(last + 1), y + 1),
        });
    }
    found
}

/// Separable Gaussian blur of RGB pixels, borders clamped; f32 out.
fn blur(rgb: &[u8], width: usize, height: usize) -> Vec<f32> {
    let taps: Vec<f32> = (0..=2 * RADIUS)
        .map(|i| {
            let d = i as f32 - RADIUS as f32;
            (-d * d / (2.0 * SIGMA * SIGMA)).exp()
        })
        .collect();
    let total: f32 = taps.iter().sum();
    let taps: Vec<f32> = taps.iter().map(|t| t / total).collect();
    let pass = |src: &[f32], len: usize, at: &dyn Fn(usize, usize) -> usize| {
        let mut out = vec![0f32; src.len()];
        for line in 0..src.len() / 3 / len {
            for i in 0..len {
                for c in 0..3 {
                    let mut sum = 0.0;
                    for (k, t) in taps.iter().enumerate() {
                        let j = (i + k).saturating_sub(RADIUS).min(len - 1);
                        sum += t * src[at(line, j) * 3 + c];
                    }
                    out[at(line, i) * 3 + c] = sum;
                }
            }
        }
        out
    };
    let src: Vec<f32> = rgb.iter().map(|&v| f32::from(v)).collect();
    let rows = pass(&src, width, &|line, i| line * width + i);
    pass(&rows, height, &|line, i| i * width + line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PreprocessConfig {
        PreprocessConfig::clipseg_default()
    }

    #[test]
    fn regions_parse_and_must_fit() {
        let r = Region::parse("1, 2,3,4").unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (1, 2, 3, 4));
        for bad in ["1,2,3", "a,b,c,d", "1,2,3,4,5", "-1,0,2,2"] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
        assert!(r.mask(4, 6).is_ok());
        assert!(r.mask(3, 6).is_err());
        assert!(Region::parse("0,0,0,2").unwrap().mask(4, 4).is_err());
    }

    /// A marked box on a uniform photo: the marks keep their colour, the context around them
    /// is faded towards the mean, the padding is the mean, the output is square.
    #[test]
    fn marks_stay_background_fades_padding_is_the_mean() {
        let (w, h) = (200, 100);
        let rgb = vec![250u8; w * h * 3];
        let mask = Region::parse("50,20,100,50").unwrap().mask(w, h).unwrap();
        let (out, side) = from_marks(&rgb, w, h, &mask, &config()).unwrap();
        assert_eq!((side, out.len()), (352, 352 * 352 * 3));
        let px = |x: usize, y: usize| &out[(y * side + x) * 3..][..3];
        // The crop: 120x60 (10 px and 5 px of context each side), scaled to 352x176 at y 88;
        // the marks at x 29..323, y 103..249.
        let mean = [124u8, 116, 104];
        let faded: Vec<u8> = (0..3)
            .map(|c| (mean[c] as f32 + 0.1 * (250.0 - mean[c] as f32)).round() as u8)
            .collect();
        for (x, y) in [(176, 176), (40, 110), (310, 240)] {
            assert_eq!(px(x, y), [250, 250, 250], "marked ({x}, {y})");
        }
        for (x, y) in [(176, 95), (176, 258), (15, 176), (340, 176)] {
            let close = px(x, y)
                .iter()
                .zip(&faded)
                .all(|(a, b)| a.abs_diff(*b) <= 1);
            assert!(close, "context ({x}, {y}): {:?}", px(x, y));
        }
        assert_eq!(px(176, 10), mean, "padding");
        assert_eq!(px(176, 345), mean, "padding");
    }

    #[test]
    fn nothing_marked_and_bad_sizes_are_refused() {
        let rgb = vec![0u8; 4 * 4 * 3];
        let err = from_marks(&rgb, 4, 4, &[0; 16], &config()).unwrap_err();
        assert!(err.to_string().contains("nothing is marked"), "{err}");
        assert!(from_marks(&rgb, 4, 4, &[1; 15], &config()).is_err());
    }
}

//! From the decoder's logits to what users see, in one place for the CLI and the browser:
//! logits resized to the image's own size (torch's `interpolate(mode="bilinear",
//! align_corners=False)`, bit-exact on x86-64), probabilities, masks (`sigmoid(logit) >
//! threshold`) and the page's label map. Everything streams row by row: a 50-megapixel image's
//! full-size logits are never held.

/// A logit's probability.
pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// Logit maps of one image, [count, side, side] (one per prompt, in prompt order).
#[derive(Debug, Clone)]
pub struct Maps {
    logits: Vec<f32>,
    count: usize,
    side: usize,
}

/// No prompt's probability is above the threshold there ([`Maps::labels`]).
pub const NO_LABEL: u8 = 255;

impl Maps {
    /// `logits` [count, side, side].
    pub fn new(logits: Vec<f32>, count: usize, side: usize) -> Result<Self, crate::Error> {
        if count == 0 || side == 0 || Some(logits.len()) != count.checked_mul(side * side) {
            return Err(crate::Error::Input(format!(
                "{} logits are not {count} maps of {side}x{side}",
                logits.len()
            )));
        }
        Ok(Self {
            logits,
            count,
            side,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn side(&self) -> usize {
        self.side
    }

    /// All logits, [count, side, side].
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Map `k`'s logits, [side, side].
    pub fn map(&self, k: usize) -> &[f32] {
        &self.logits[k * self.side * self.side..][..self.side * self.side]
    }

    /// Map `k`'s logits at `width` x `height`, row-major.
    pub fn resized(&self, k: usize, width: usize, height: usize) -> Vec<f32> {
        resize_bilinear_f32(self.map(k), self.side, self.side, height, width)
    }

    /// Map `k`'s mask at `width` x `height`: 255 where `sigmoid(logit) > threshold`, else 0.
    pub fn mask(&self, k: usize, width: usize, height: usize, threshold: f32) -> Vec<u8> {
        self.per_pixel(k, width, height, |l| {
            if sigmoid(l) > threshold { 255 } else { 0 }
        })
    }

    /// Map `k`'s probabilities at `width` x `height`, scaled to 0..=255 (the heat map).
    pub fn probabilities(&self, k: usize, width: usize, height: usize) -> Vec<u8> {
        self.per_pixel(k, width, height, |l| (sigmoid(l) * 255.0).round() as u8)
    }

    /// At `width` x `height`: per pixel the index of the prompt with the highest logit among
    /// those whose mask holds the pixel ([`Self::mask`]), or [`NO_LABEL`]. At most 255 maps
    /// are labelled.
    pub fn labels(&self, width: usize, height: usize, threshold: f32) -> Vec<u8> {
        let resizer = Resizer::new(self.side, width, height);
        let mut out = vec![NO_LABEL; width * height];
        let mut rows = vec![0.0f32; self.count.min(255) * width];
        for (y, labels) in out.chunks_exact_mut(width.max(1)).enumerate() {
            for (k, row) in rows.chunks_exact_mut(width.max(1)).enumerate() {
                resizer.row(self.map(k), y, row);
            }
            for (x, label) in labels.iter_mut().enumerate() {
                let mut best: Option<(usize, f32)> = None;
                for (k, row) in rows.chunks_exact(width).enumerate() {
                    let l = row[x];
                    // Strict, as the masks: the first of equal logits wins.
                    if sigmoid(l) > threshold && best.is_none_or(|(_, b)| l > b) {
                        best = Some((k, l));
                    }
                }
                if let Some((k, _)) = best {
                    *label = k as u8;
                }
            }
        }
        out
    }

    /// Every map's probability at pixel (`x`, `y`) of a `width` x `height` image.
    pub fn probabilities_at(&self, width: usize, height: usize, x: usize, y: usize) -> Vec<f32> {
        if x >= width || y >= height {
            return Vec::new();
        }
        let (ty, tx) = (
            linear_tap(self.side, height, y),
            linear_tap(self.side, width, x),
        );
        (0..self.count)
            .map(|k| sigmoid(interpolate(self.map(k), self.side, ty, tx)))
            .collect()
    }

    fn per_pixel(&self, k: usize, width: usize, height: usize, f: impl Fn(f32) -> u8) -> Vec<u8> {
        let resizer = Resizer::new(self.side, width, height);
        let mut row = vec![0.0f32; width];
        let mut out = Vec::with_capacity(width * height);
        for y in 0..height {
            resizer.row(self.map(k), y, &mut row);
            out.extend(row.iter().map(|&l| f(l)));
        }
        out
    }
}

/// One channel, row-major `in_h x in_w` -> `out_h x out_w`: the same result as
/// `torch.nn.functional.interpolate(x, size=(out_h, out_w), mode="bilinear",
/// align_corners=False)` (no antialias: downscaling only samples 2x2 neighbourhoods, unlike
/// PIL). Empty if `src.len() != in_h * in_w` or a dimension is 0.
pub fn resize_bilinear_f32(
    src: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let sizes = [in_h, in_w, out_h, out_w];
    if sizes.contains(&0) || Some(src.len()) != in_h.checked_mul(in_w) {
        return Vec::new();
    }
    let Some(len) = out_h.checked_mul(out_w) else {
        return Vec::new();
    };
    let resizer = Resizer {
        in_w,
        ty: linear_taps(in_h, out_h),
        tx: linear_taps(in_w, out_w),
    };
    let mut out = vec![0.0; len];
    for (y, row) in out.chunks_exact_mut(out_w).enumerate() {
        resizer.row(src, y, row);
    }
    out
}

/// The taps of a bilinear resize, computed once per output size.
struct Resizer {
    in_w: usize,
    ty: Vec<Tap>,
    tx: Vec<Tap>,
}

/// Two source indices and their weights.
type Tap = (usize, usize, f32, f32);

impl Resizer {
    /// From a square `side` map to `width` x `height`.
    fn new(side: usize, width: usize, height: usize) -> Self {
        Self {
            in_w: side,
            ty: linear_taps(side, height),
            tx: linear_taps(side, width),
        }
    }

    /// Output row `y` of `src` into `out` (the output's width).
    fn row(&self, src: &[f32], y: usize, out: &mut [f32]) {
        let (y0, y1, wy0, wy1) = self.ty[y];
        let (r0, r1) = (
            &src[y0 * self.in_w..][..self.in_w],
            &src[y1 * self.in_w..][..self.in_w],
        );
        for (o, &(x0, x1, wx0, wx1)) in out.iter_mut().zip(&self.tx) {
            let t0 = fma(r0[x0], wx0, r0[x1] * wx1);
            let t1 = fma(r1[x0], wx0, r1[x1] * wx1);
            *o = fma(t0, wy0, t1 * wy1);
        }
    }
}

/// The resized value at one output pixel, as [`Resizer::row`] computes it.
fn interpolate(src: &[f32], in_w: usize, (y0, y1, wy0, wy1): Tap, (x0, x1, wx0, wx1): Tap) -> f32 {
    let (r0, r1) = (&src[y0 * in_w..][..in_w], &src[y1 * in_w..][..in_w]);
    let t0 = fma(r0[x0], wx0, r0[x1] * wx1);
    let t1 = fma(r1[x0], wx0, r1[x1] * wx1);
    fma(t0, wy0, t1 * wy1)
}

/// torch's `area_pixel_compute_source_index` + `guard_index_and_lambda` for
/// `align_corners=False`, in f32 as torch computes for float tensors: for each output index,
/// the two source indices and their weights.
fn linear_taps(in_size: usize, out_size: usize) -> Vec<Tap> {
    (0..out_size)
        .map(|i| linear_tap(in_size, out_size, i))
        .collect()
}

fn linear_tap(in_size: usize, out_size: usize, i: usize) -> Tap {
    if in_size == out_size {
        return (i, i, 1.0, 0.0);
    }
    let scale = in_size as f32 / out_size as f32;
    let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(in_size - 1);
    let l1 = (src - i0 as f32).clamp(0.0, 1.0);
    let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
    (i0, i1, 1.0 - l1, l1)
}

/// `a * b + c` rounded once, emulated in f64 (the product is exact there, and f64 arithmetic
/// is fast on every target, unlike a software `f32::mul_add`). torch's x86-64 CPU kernels are
/// compiled with FMA contraction, so its `t0 * w0 + t1 * w1` is really `fma(t0, w0, t1 * w1)`;
/// doing the same makes [`resize_bilinear_f32`] bit-exact with torch there instead of ~1 ulp
/// off.
fn fma(a: f32, b: f32, c: f32) -> f32 {
    (a as f64 * b as f64 + c as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    #[test]
    fn bilinear_f32_matches_torch() {
        let grid = |h: usize, w: usize| -> Vec<f32> {
            (0..h * w)
                .map(|i| ((i * 37 % 101) as f64 / 7.0 - 7.0) as f32)
                .collect()
        };
        // Tiny outputs (out_h + out_w <= 128) go through another torch kernel
        // whose rounding differs by ~1 ulp, so compare with a tolerance.
        #[rustfmt::skip]
        let want = [-7.0, -4.885714, -1.7142857, 1.4571435, 3.5714285, -6.285714, -4.171428, -1.0, 2.171429,
            4.285714, -5.571429, -3.4571428, -0.2857143, 2.8857148, 5.0];
        let got = resize_bilinear_f32(&grid(2, 3), 2, 3, 3, 5);
        assert!(
            got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{got:?}"
        );
        // Larger outputs use torch's generic kernel: bit-exact.
        for (ih, iw, oh, ow, hash) in [
            (4, 5, 70, 90, 0x015c_e38e_311d_a8b9),
            (30, 20, 7, 130, 0x34a2_f73b_ff41_d21f),
        ] {
            let out = resize_bilinear_f32(&grid(ih, iw), ih, iw, oh, ow);
            assert_eq!(
                fnv1a(out.iter().flat_map(|v| v.to_le_bytes())),
                hash,
                "{ih}x{iw} -> {oh}x{ow}"
            );
        }
        let same = grid(3, 4);
        assert_eq!(resize_bilinear_f32(&same, 3, 4, 3, 4), same);
    }

    #[test]
    fn bad_sizes_give_nothing() {
        assert!(resize_bilinear_f32(&[0.0; 3], 2, 2, 3, 3).is_empty());
        assert!(resize_bilinear_f32(&[0.0; 4], 2, 2, 0, 3).is_empty());
    }

    /// Masks, labels, heat and probe agree with the full-size resize they stream.
    #[test]
    fn masks_labels_and_probabilities_follow_the_resized_logits() {
        let side = 5;
        let logits: Vec<f32> = (0..3 * side * side)
            .map(|i| (i * 7919 % 211) as f32 / 20.0 - 5.0)
            .collect();
        let maps = Maps::new(logits, 3, side).unwrap();
        let (w, h, t) = (13, 7, 0.6);
        let full: Vec<Vec<f32>> = (0..3).map(|k| maps.resized(k, w, h)).collect();
        for (k, resized) in full.iter().enumerate() {
            let mask = maps.mask(k, w, h, t);
            let want: Vec<u8> = resized
                .iter()
                .map(|&l| if sigmoid(l) > t { 255 } else { 0 })
                .collect();
            assert_eq!(mask, want);
            let heat = maps.probabilities(k, w, h);
            assert!(
                heat.iter()
                    .zip(resized)
                    .all(|(&p, &l)| (p as f32 - sigmoid(l) * 255.0).abs() <= 0.5)
            );
        }
        let labels = maps.labels(w, h, t);
        for (i, &label) in labels.iter().enumerate() {
            let above: Vec<(usize, f32)> = (0..3)
                .map(|k| (k, full[k][i]))
                .filter(|&(_, l)| sigmoid(l) > t)
                .collect();
            match above
                .iter()
                .copied()
                .reduce(|a, b| if b.1 > a.1 { b } else { a })
            {
                Some((k, _)) => assert_eq!(label as usize, k, "pixel {i}"),
                None => assert_eq!(label, NO_LABEL, "pixel {i}"),
            }
        }
        assert!(labels.contains(&NO_LABEL) && labels.iter().any(|&l| l != NO_LABEL));
        let (x, y) = (9, 4);
        let probe = maps.probabilities_at(w, h, x, y);
        for k in 0..3 {
            assert_eq!(probe[k], sigmoid(full[k][y * w + x]));
        }
        assert!(maps.probabilities_at(w, h, w, 0).is_empty());
        assert!(Maps::new(vec![0.0; 24], 1, 5).is_err());
    }
}

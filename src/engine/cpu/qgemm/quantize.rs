//! Activations quantized per row on every call, and written in the kernel's A layout.

use super::Layout;

/// Symmetric per-row quantization: `q = round(x / scale)` with `scale = max |x| / 127`.
/// Returns the scale (0 for an all-zero row).
pub(super) fn quantize_row(row: &[f32], q: &mut [i8]) -> f32 {
    let peak = max_abs(row);
    let scale = peak / 127.0;
    let inv = if peak > 0.0 { 127.0 / peak } else { 0.0 };
    round_row(row, inv, q);
    scale
}

// 32 running maxima by comparison: one chain of 8 `f32::max` (a compare and a blend after each
// max, for its NaN rule) was a large part of a q8 product's A quantization. NaNs are skipped
// alike.
super::super::common::vectorized!(max_abs_into(row: &[f32], peak: &mut f32) {
    let mut acc = [0.0f32; 32];
    let chunks = row.chunks_exact(32);
    let tail = chunks.remainder().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            let v = v.abs();
            *a = if v > *a { v } else { *a };
        }
    }
    *peak = acc.iter().fold(tail, |m, &v| m.max(v));
});

fn max_abs(row: &[f32]) -> f32 {
    let mut peak = 0.0;
    max_abs_into(row, &mut peak);
    peak
}

super::super::common::vectorized!(round_row(row: &[f32], inv: f32, q: &mut [i8]) {
    for (q, &v) in q.iter_mut().zip(row) {
        *q = round_i8(v * inv);
    }
});

/// Asymmetric per-row quantization to 7 bits: `q = round(x / scale) + zero` in 0..=127, with
/// `scale = (max - min) / 127` over a range that includes 0 and an integer `zero`, so a zero
/// stays exact. Returns the scale and the zero point (0 and 0 for an all-zero row). On the
/// activations after GELU, mostly positive, this keeps about the 8-bit symmetric steps.
pub(super) fn quantize_row_u7(row: &[f32], q: &mut [i8]) -> (f32, i32) {
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    min_max_into(row, &mut lo, &mut hi);
    let scale = (hi - lo) / 127.0;
    if scale <= 0.0 || !scale.is_finite() {
        q.fill(0);
        return (0.0, 0);
    }
    let inv = 1.0 / scale;
    let zero = round_i8(-lo * inv).clamp(0, 127);
    round_row_u7(row, inv, f32::from(zero), q);
    (scale, i32::from(zero))
}

// As `max_abs_into`: 32 running minima and maxima by comparison, starting from 0 (the range
// always holds 0); NaNs are skipped.
super::super::common::vectorized!(min_max_into(row: &[f32], lo: &mut f32, hi: &mut f32) {
    let (mut min, mut max) = ([0.0f32; 32], [0.0f32; 32]);
    let chunks = row.chunks_exact(32);
    for &v in chunks.remainder() {
        *lo = if v < *lo { v } else { *lo };
        *hi = if v > *hi { v } else { *hi };
    }
    for c in chunks {
        for ((lo, hi), &v) in min.iter_mut().zip(max.iter_mut()).zip(c) {
            *lo = if v < *lo { v } else { *lo };
            *hi = if v > *hi { v } else { *hi };
        }
    }
    *lo = min.iter().fold(*lo, |m, &v| m.min(v));
    *hi = max.iter().fold(*hi, |m, &v| m.max(v));
});

super::super::common::vectorized!(round_row_u7(row: &[f32], inv: f32, zero: f32, q: &mut [i8]) {
    for (q, &v) in q.iter_mut().zip(row) {
        *q = round_i8((v * inv + zero).clamp(0.0, 127.0));
    }
});

/// `x.round_ties_even()` clamped to ±127, as i8, in arithmetic that vectorises (the std call
/// became a libm `rintf` per value, which dominated the quantization): adding 1.5 * 2^23 leaves
/// the rounded integer in the low mantissa bits.
#[inline(always)]
pub(super) fn round_i8(x: f32) -> i8 {
    let shifted = x.clamp(-127.0, 127.0) + 12_582_912.0;
    (shifted.to_bits() as i32 - 0x4B40_0000) as i8
}

/// Writes row `r` of a strip of `mr` rows in the kernel's A layout.
pub(super) fn scatter_row(layout: Layout, q: &[i8], r: usize, mr: usize, strip: &mut [u8]) {
    let g = layout.group();
    match layout {
        // Four bytes at a time: q + 128 as u8 is q's byte with the top bit flipped.
        Layout::U8Offset => {
            for (gi, quad) in q.chunks_exact(g).enumerate() {
                let at = (gi * mr + r) * g;
                let bytes = [quad[0] as u8, quad[1] as u8, quad[2] as u8, quad[3] as u8];
                let offset = (u32::from_le_bytes(bytes) ^ 0x8080_8080).to_le_bytes();
                strip[at..at + 4].copy_from_slice(&offset);
            }
        }
        // 64 k of row r at a time, beside the strip's other rows' 64.
        Layout::Tiles => {
            for (ci, piece) in q.chunks_exact(64).enumerate() {
                let at = (ci * mr + r) * 64;
                for (d, &v) in strip[at..at + 64].iter_mut().zip(piece) {
                    *d = v as u8 ^ 0x80;
                }
            }
        }
        // As `U8Offset`, the values as they are (0..=127).
        Layout::U7 => {
            for (gi, quad) in q.chunks_exact(g).enumerate() {
                let at = (gi * mr + r) * g;
                for (d, &v) in strip[at..at + 4].iter_mut().zip(quad) {
                    *d = v as u8;
                }
            }
        }
        // One little-endian i16 pair per group, the group's MR pairs apart.
        Layout::I16 => {
            let groups = strip.chunks_exact_mut(mr * g * 2);
            for (pair, group) in q.chunks_exact(g).zip(groups) {
                let (lo, hi) = (i16::from(pair[0]) as u16, i16::from(pair[1]) as u16);
                let word = (u32::from(hi) << 16) | u32::from(lo);
                group[r * 4..r * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
        }
    }
}

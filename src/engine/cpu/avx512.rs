//! AVX-512 pieces shared by the f32 softmax ([`super::common::softmax_rows`]) and the bf16 one
//! ([`super::bf16`]).

use std::arch::x86_64::*;

/// The mask of lanes `from..from + 16` that exist in a row `len` long (masked loads and stores
/// of a row's tail).
pub fn lanes(len: usize, from: usize) -> __mmask16 {
    ((1u32 << len.saturating_sub(from).min(16)) - 1) as __mmask16
}

/// e^(scale (x - max)) on 16 lanes (x <= max), the softmax's exponential: as
/// 2^(log2(e) scale (x - max)) = 2^n 2^f with n the nearest integer, |f| <= 1/2 and 2^f a
/// degree-6 polynomial (relative error within 3e-7; 2^n by `vscalefps`). `log2e_scale` is
/// log2(e) scale, broadcast. Three operations fewer a vector than e^x's range reduction by
/// ln 2 in two parts after its own multiply.
#[inline]
#[target_feature(enable = "avx512f")]
pub fn exp_scaled16(x: __m512, max: __m512, log2e_scale: __m512) -> __m512 {
    // (ln 2)^k / k!, highest first.
    const C: [f32; 6] = [
        1.540_353e-4,
        1.333_355_8e-3,
        9.618_129e-3,
        5.550_411e-2,
        0.240_226_5,
        std::f32::consts::LN_2,
    ];
    // Clamped at 2^-127 (~6e-39, nothing next to the row's largest term, 1): keeps -inf
    // scores from making NaN (inf - inf) below.
    let t = _mm512_max_ps(
        _mm512_mul_ps(_mm512_sub_ps(x, max), log2e_scale),
        _mm512_set1_ps(-127.0),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let f = _mm512_sub_ps(t, n);
    let mut p = _mm512_set1_ps(C[0]);
    for c in &C[1..] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(*c));
    }
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0));
    _mm512_scalef_ps(p, n)
}

/// One row of [`super::common::softmax_rows`] in place: e^(scale (x - max)) over
/// `row[..valid]`, zeros after, and 1 / sum returned. Four max and two sum accumulators: the
/// auto-vectorised loops ran their reductions as one 8-lane dependency chain each (NaN-aware
/// `f32::max`), much slower, where the decoder's 16-wide heads make the softmax a large share
/// of attention.
#[target_feature(enable = "avx512f")]
pub unsafe fn softmax_row(row: &mut [f32], valid: usize, scale: f32) -> f32 {
    assert!(valid <= row.len(), "softmax row shorter than its live part");
    let p = row.as_mut_ptr();
    // SAFETY: every load and store is masked to `..valid` (asserted inside the row).
    unsafe {
        let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
        let mut j = 0;
        while j + 64 <= valid {
            for (u, m) in max.iter_mut().enumerate() {
                *m = _mm512_max_ps(*m, _mm512_loadu_ps(p.add(j + 16 * u)));
            }
            j += 64;
        }
        while j < valid {
            max[0] = _mm512_mask_max_ps(
                max[0],
                lanes(valid, j),
                max[0],
                _mm512_maskz_loadu_ps(lanes(valid, j), p.add(j)),
            );
            j += 16;
        }
        let max = _mm512_max_ps(_mm512_max_ps(max[0], max[1]), _mm512_max_ps(max[2], max[3]));
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let scale = _mm512_set1_ps(scale * std::f32::consts::LOG2_E);
        let mut sum = [_mm512_setzero_ps(); 2];
        for (c, j) in (0..valid).step_by(16).enumerate() {
            let live = lanes(valid, j);
            let x = _mm512_maskz_loadu_ps(live, p.add(j));
            let e = _mm512_maskz_mov_ps(live, exp_scaled16(x, max, scale));
            _mm512_mask_storeu_ps(p.add(j), live, e);
            sum[c % 2] = _mm512_add_ps(sum[c % 2], e);
        }
        row[valid..].fill(0.0);
        1.0 / _mm512_reduce_add_ps(_mm512_add_ps(sum[0], sum[1]))
    }
}

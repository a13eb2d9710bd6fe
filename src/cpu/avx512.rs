//! AVX-512 pieces shared by the f32 softmax ([`super::softmax_rows`]) and the bf16 one
//! ([`super::bf16`]).

use std::arch::x86_64::*;

/// The mask of lanes `from..from + 16` that exist in a row `len` long (masked loads and stores
/// of a row's tail).
pub fn lanes(len: usize, from: usize) -> __mmask16 {
    ((1u32 << len.saturating_sub(from).min(16)) - 1) as __mmask16
}

/// [`super::exp`]'s arithmetic on 16 lanes of x <= 0 (the same range reduction and
/// polynomial; 2^n applied by `vscalefps`).
#[inline]
#[target_feature(enable = "avx512f")]
pub fn exp16(x: __m512) -> __m512 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.5));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// One row of [`super::softmax_rows`] in place: e^(scale (x - max)) over `row[..valid]`, zeros
/// after, and 1 / sum returned. Four max and two sum accumulators: the auto-vectorised
/// loops ran their reductions as one 8-lane dependency chain each (NaN-aware `f32::max`):
/// 1.1 ns a score against 0.44, where the decoder's 16-wide heads make the softmax a large
/// share of attention.
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
        let scale = _mm512_set1_ps(scale);
        let mut sum = [_mm512_setzero_ps(); 2];
        for (c, j) in (0..valid).step_by(16).enumerate() {
            let live = lanes(valid, j);
            let x = _mm512_maskz_loadu_ps(live, p.add(j));
            let e = _mm512_maskz_mov_ps(live, exp16(_mm512_mul_ps(_mm512_sub_ps(x, max), scale)));
            _mm512_mask_storeu_ps(p.add(j), live, e);
            sum[c % 2] = _mm512_add_ps(sum[c % 2], e);
        }
        row[valid..].fill(0.0);
        1.0 / _mm512_reduce_add_ps(_mm512_add_ps(sum[0], sum[1]))
    }
}

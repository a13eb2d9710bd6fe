//! x86-64 int8 kernels: AVX2 (`vpmaddwd`; `vpmaddubsw` for 7-bit activations) and AVX-512 VNNI.

use super::Epilogue;
use std::arch::x86_64::*;

/// 6 rows x 16 columns, 2 k per step, the wasm kernel's scheme on AVX2: 32 bytes of B
/// (16 columns x 2 k) sign-extended to two i16x16, `vpmaddwd` with the row's broadcast i16
/// pair into 12 ymm accumulators. About the f32 kernel's speed, at a quarter of its weight
/// memory, and the same integers as the other int8 kernels.
#[target_feature(enable = "avx2")]
pub unsafe fn kernel_madd_avx2(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
) {
    const MR: usize = 6;
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..groups {
            let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b as *const __m128i));
            let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(16) as *const __m128i));
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_epi32((a.add(4 * r) as *const i32).read_unaligned());
                row[0] = _mm256_add_epi32(row[0], _mm256_madd_epi16(x, b0));
                row[1] = _mm256_add_epi32(row[1], _mm256_madd_epi16(x, b1));
            }
            a = a.add(4 * MR);
            b = b.add(32);
        }
        epilogue_avx2(&acc, c, ldc, e, false);
    }
}

/// 6 rows x 16 columns, 4 k per step, for `Layout::U7`: two 32-byte loads of B (8 columns
/// x 4 k each), `vpmaddubsw` of the row's broadcast 7-bit quad (u8) with them (pairs of
/// products summed in i16: at most 127 * 128 * 2, no saturation), widened and summed by
/// `vpmaddwd` with ones, into 12 ymm accumulators: 3 instructions per 32 multiply-adds
/// where `kernel_madd_avx2` needs 2 per 16 and the widening of B.
#[target_feature(enable = "avx2")]
pub unsafe fn kernel_maddubs_avx2(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
) {
    const MR: usize = 6;
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        let ones = _mm256_set1_epi16(1);
        let (mut a, mut b) = (a, b);
        for _ in 0..groups {
            let b0 = _mm256_loadu_si256(b as *const __m256i);
            let b1 = _mm256_loadu_si256(b.add(32) as *const __m256i);
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_epi32((a.add(4 * r) as *const i32).read_unaligned());
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones);
                row[0] = _mm256_add_epi32(row[0], p0);
                row[1] = _mm256_add_epi32(row[1], p1);
            }
            a = a.add(4 * MR);
            b = b.add(64);
        }
        epilogue_avx2(&acc, c, ldc, e, true);
    }
}

/// `Epilogue` for 6 rows x 16 columns of sums; `zeros`: the rows' own zero points.
#[target_feature(enable = "avx2")]
unsafe fn epilogue_avx2(
    acc: &[[__m256i; 2]; 6],
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
    zeros: bool,
) {
    unsafe {
        for (r, row) in acc.iter().enumerate() {
            let sa = _mm256_set1_ps(*e.a_scale.add(r));
            let zero = _mm256_set1_epi32(*e.a_zero.add(r));
            for (v, &x) in row.iter().enumerate() {
                let mut corr = _mm256_loadu_si256(e.correction.add(8 * v) as *const __m256i);
                if zeros {
                    corr = _mm256_mullo_epi32(corr, zero);
                }
                let ws = _mm256_loadu_ps(e.w_scale.add(8 * v));
                let bias = _mm256_loadu_ps(e.bias.add(8 * v));
                let f = _mm256_cvtepi32_ps(_mm256_sub_epi32(x, corr));
                let y = _mm256_add_ps(_mm256_mul_ps(f, _mm256_mul_ps(sa, ws)), bias);
                _mm256_storeu_ps(c.add(r * ldc + 8 * v), y);
            }
        }
    }
}

/// Independent `vpmaddwd` + `vpaddd` chains: the AVX2 kernel's pair of instructions
/// (wrapping: only the rate counts).
#[target_feature(enable = "avx2")]
pub unsafe fn madd_loop(iters: usize) -> i32 {
    const CHAINS: usize = crate::engine::cpu::gemm::AVX2_CHAINS;
    let mut acc = [_mm256_setzero_si256(); CHAINS];
    let y = _mm256_set1_epi16(-2);
    for _ in 0..iters {
        for a in acc.iter_mut() {
            // Through the accumulator, or the product would be hoisted out of the loop.
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*a, y));
        }
    }
    let sum = acc
        .iter()
        .fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi32(s, a));
    let mut out = [0i32; 8];
    // SAFETY: out holds 8 i32.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), sum) };
    out.iter().fold(0, |s, &v| s.wrapping_add(v))
}

/// 16 independent `vpdpbusd` chains.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn dpbusd_loop(iters: usize) -> i32 {
    let mut acc = [_mm512_setzero_si512(); 16];
    let (x, y) = (_mm512_set1_epi8(3), _mm512_set1_epi8(-2));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_dpbusd_epi32(*a, x, y);
        }
    }
    acc.iter()
        .map(|&a| _mm512_reduce_add_epi32(a))
        .fold(0, i32::wrapping_add)
}

/// MR rows x 16*NV columns, 4 k per step: MR*NV zmm accumulators of i32, NV loads of B
/// (64 bytes each: 16 columns x 4 k) and MR 32-bit broadcasts of A per MR*NV `vpdpbusd`.
/// `ZEROS`: A is `Layout::U7`, each row's zero point multiplies the column sums.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn kernel_vnni<const MR: usize, const NV: usize, const ZEROS: bool>(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); NV]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..groups {
            let bv: [__m512i; NV] =
                std::array::from_fn(|v| _mm512_loadu_si512(b.add(64 * v) as *const __m512i));
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_epi32((a.add(4 * r) as *const i32).read_unaligned());
                for (v, y) in row.iter_mut().enumerate() {
                    *y = _mm512_dpbusd_epi32(*y, x, bv[v]);
                }
            }
            a = a.add(4 * MR);
            b = b.add(64 * NV);
        }
        let corr: [__m512i; NV] =
            std::array::from_fn(|v| _mm512_loadu_si512(e.correction.add(16 * v) as *const __m512i));
        let ws: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(e.w_scale.add(16 * v)));
        let bias: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(e.bias.add(16 * v)));
        for (r, row) in acc.iter().enumerate() {
            let sa = _mm512_set1_ps(*e.a_scale.add(r));
            let zero = _mm512_set1_epi32(*e.a_zero.add(r));
            for (v, &x) in row.iter().enumerate() {
                let corr = match ZEROS {
                    true => _mm512_mullo_epi32(corr[v], zero),
                    false => corr[v],
                };
                let f = _mm512_cvtepi32_ps(_mm512_sub_epi32(x, corr));
                let y = _mm512_fmadd_ps(f, _mm512_mul_ps(sa, ws[v]), bias[v]);
                _mm512_storeu_ps(c.add(r * ldc + 16 * v), y);
            }
        }
    }
}

//! wasm int8 kernels: simd128 (`i32x4.dot_i16x8_s`) and relaxed SIMD (`i32x4.relaxed_dot_i8x16_i7x16_add_s`, 7-bit activations).

use super::Epilogue;
use std::arch::wasm32::*;

/// MR rows x 8 columns, 2 k per step: one 16-byte load of B (8 columns x 2 k) sign-extended
/// to two i16x8, a 32-bit splat of A's i16 pair per row, `i32x4.dot_i16x8_s` (pmaddwd on
/// x86) into 2 * MR i32x4 accumulators. 4 rows: with 6 (12 accumulators) V8 spilled on x64
/// and the browser pass slowed; 5 was no faster than 4.
pub unsafe fn kernel_dot_i16<const MR: usize>(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
) {
    unsafe {
        let mut acc = [[i32x4_splat(0); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..groups {
            let w = v128_load(b as *const v128);
            let (b0, b1) = (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w));
            for (r, row) in acc.iter_mut().enumerate() {
                let x = v128_load32_splat(a.add(4 * r) as *const u32);
                row[0] = i32x4_add(row[0], i32x4_dot_i16x8(x, b0));
                row[1] = i32x4_add(row[1], i32x4_dot_i16x8(x, b1));
            }
            a = a.add(4 * MR);
            b = b.add(16);
        }
        epilogue(&acc, c, ldc, e, false);
    }
}

/// MR rows x 8 columns, 4 k per step: two 16-byte loads of B (4 columns x 4 k each), a
/// 32-bit splat of A's 4 k per row (7-bit, `Layout::U7`) and
/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` (16 multiply-adds into 4 sums), which every
/// engine computes exactly when one side fits 7 bits: B's weights x A's 0..=127 pairs stay
/// within i16 (127 * 128 * 2 < 32768) where an engine sums pairs in i16 first.
/// `SPLIT`: without the fused add, `i16x8.relaxed_dot_i8x16_i7x16_s` (one `pmaddubsw` on
/// x86-64) widened by `i32x4.extadd_pairwise_i16x8_s` and subtracted from negated sums (an
/// add would be fused back into the fused instruction, which V8 lowers to about six
/// instructions where x86-64 lacks AVX-VNNI).
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn kernel_relaxed<const MR: usize, const SPLIT: bool>(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
) {
    unsafe {
        let mut acc = [[i32x4_splat(0); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..groups {
            let w0 = v128_load(b as *const v128);
            let w1 = v128_load(b.add(16) as *const v128);
            for (r, row) in acc.iter_mut().enumerate() {
                let x = v128_load32_splat(a.add(4 * r) as *const u32);
                if SPLIT {
                    let d0 = i32x4_extadd_pairwise_i16x8(i16x8_relaxed_dot_i8x16_i7x16(w0, x));
                    let d1 = i32x4_extadd_pairwise_i16x8(i16x8_relaxed_dot_i8x16_i7x16(w1, x));
                    row[0] = i32x4_sub(row[0], d0);
                    row[1] = i32x4_sub(row[1], d1);
                } else {
                    row[0] = i32x4_relaxed_dot_i8x16_i7x16_add(w0, x, row[0]);
                    row[1] = i32x4_relaxed_dot_i8x16_i7x16_add(w1, x, row[1]);
                }
            }
            a = a.add(4 * MR);
            b = b.add(32);
        }
        if SPLIT {
            acc.iter_mut()
                .flatten()
                .for_each(|sum| *sum = i32x4_neg(*sum));
        }
        epilogue(&acc, c, ldc, e, true);
    }
}

/// The candidate that runs a 64 x 768 x 256 product fastest: the best of rounds of 2 products
/// each, the candidates alternating, for about 150 ms once per worker. That long because V8
/// first runs a function as compiled by its baseline tier and swaps in the optimised code
/// only once that is compiled, in the background: the early rounds time the baseline code.
#[cfg(target_feature = "relaxed-simd")]
pub fn fastest(candidates: &[super::QKernel]) -> super::QKernel {
    const BUDGET_MS: f64 = 150.0;
    let (m, k, n) = (64, 768, 256);
    let mut x = 0x9E37_79B9u32;
    let mut values = |len: usize| -> Vec<f32> {
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        };
        (0..len).map(|_| next()).collect()
    };
    let (a, w) = (values(m * k), values(k * n));
    let packed: Vec<_> = candidates
        .iter()
        .map(|&kern| super::QuantMatrix::pack_for(kern, &w, k, n, None))
        .collect();
    let mut out = vec![0.0f32; m * n];
    let mut best = vec![f64::INFINITY; candidates.len()];
    let start = now_ms();
    while now_ms() - start < BUDGET_MS {
        for (t, p) in best.iter_mut().zip(&packed) {
            let t0 = now_ms();
            p.matmul(&a, m, &mut out);
            p.matmul(&a, m, &mut out);
            *t = t.min(now_ms() - t0);
        }
    }
    let fastest = best.iter().enumerate().min_by(|x, y| x.1.total_cmp(y.1));
    candidates[fastest.map_or(0, |(i, _)| i)]
}

/// `performance.now()` of the worker or page (finer than `Date.now()`), else `Date.now()`.
#[cfg(target_feature = "relaxed-simd")]
fn now_ms() -> f64 {
    use wasm_bindgen::JsCast;
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &"performance".into())
        .ok()
        .and_then(|perf| {
            let now = js_sys::Reflect::get(&perf, &"now".into()).ok()?;
            now.dyn_into::<js_sys::Function>()
                .ok()?
                .call0(&perf)
                .ok()?
                .as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

/// `Epilogue` for MR rows x 8 columns of sums; `zeros`: the rows' own zero points.
#[inline(always)]
unsafe fn epilogue<const MR: usize>(
    acc: &[[v128; 2]; MR],
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
    zeros: bool,
) {
    unsafe {
        for (r, row) in acc.iter().enumerate() {
            let sa = f32x4_splat(*e.a_scale.add(r));
            for (v, &x) in row.iter().enumerate() {
                let mut corr = v128_load(e.correction.add(4 * v) as *const v128);
                if zeros {
                    corr = i32x4_mul(corr, i32x4_splat(*e.a_zero.add(r)));
                }
                let ws = v128_load(e.w_scale.add(4 * v) as *const v128);
                let bias = v128_load(e.bias.add(4 * v) as *const v128);
                let f = f32x4_convert_i32x4(i32x4_sub(x, corr));
                let y = f32x4_add(f32x4_mul(f, f32x4_mul(sa, ws)), bias);
                v128_store(c.add(r * ldc + 4 * v) as *mut v128, y);
            }
        }
    }
}

//! The pieces every CPU kernel shares (as llama.cpp's `common.h`): the per-CPU dispatch macro,
//! CPU feature checks, the elementwise kernels between the products (layer norm, softmax,
//! activations, residual sums), the integer products' epilogue and the row split over threads.
//! A leaf: it imports no other module of the library but the AVX-512 softmax.

use crate::config::Activation;

#[cfg(feature = "native")]
use rayon::prelude::*;

/// Whether the CPU has AVX-512 BF16 (and the AVX-512 parts its kernels use).
#[cfg(target_arch = "x86_64")]
pub fn avx512_bf16() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// Per-tile scales and sums an integer kernel applies after its integer loop: for row r and
/// column c, `out = a_scale[r] * w_scale[c] * (acc - a_zero[r] * correction[c]) + bias[c]`.
/// `a_zero` is 1 for every row except in the 7-bit layout, whose rows have their own zero
/// points; the kernels of the other layouts leave the multiply out.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue {
    pub(crate) a_scale: *const f32,
    pub(crate) a_zero: *const i32,
    pub(crate) w_scale: *const f32,
    pub(crate) correction: *const i32,
    pub(crate) bias: *const f32,
}

/// Whether the CPU kernels implement this activation (`gelu`'s erf is left to burn).
pub fn supports(activation: Activation) -> bool {
    !matches!(activation, Activation::Gelu)
}

/// `step(a_rows, b_rows)` on matching chunks of whole rows (`width` values each) of `a` and
/// `b` (or of `a` alone where `b` is empty), one chunk per rayon thread natively for steps of
/// 64K values or more: on one thread, the norms, residual sums and activation between the
/// GEMMs were a noticeable share of a q8 pass with AMX, and a larger one the more threads ran
/// the GEMMs. Below that (the text tower) one chunk.
pub fn rows_parallel(
    a: &mut [f32],
    b: &[f32],
    width: usize,
    step: impl Fn(&mut [f32], &[f32]) + Send + Sync,
) {
    assert!(
        b.is_empty() || b.len() == a.len(),
        "row chunks of unequal inputs"
    );
    #[cfg(feature = "native")]
    let threads = if a.len() >= 1 << 16 {
        rayon::current_num_threads()
    } else {
        1
    };
    #[cfg(not(feature = "native"))]
    let threads = 1;
    let width = width.max(1);
    let chunk = (a.len() / width).div_ceil(threads).max(1) * width;
    let b_chunk = |i: usize| {
        if b.is_empty() {
            b
        } else {
            &b[i * chunk..(i * chunk + chunk).min(b.len())]
        }
    };
    #[cfg(feature = "native")]
    if threads > 1 {
        a.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, a)| step(a, b_chunk(i)));
        return;
    }
    a.chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, a)| step(a, b_chunk(i)));
}

/// Runs `$body` compiled for AVX2+FMA when the CPU has them (LLVM vectorises the plain loops
/// below 8 wide there), else as built (SSE2 natively, simd128 in wasm).
macro_rules! vectorized {
    ($name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features were just detected.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features were just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use vectorized;

/// Sum and max of a row through 8 independent lanes, so LLVM can vectorise without
/// reassociating a single accumulator.
#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lanes_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// e^x for f32 in plain arithmetic (vectorisable, unlike libm's `expf`): Cody-Waite range
/// reduction to r in [-ln2/2, ln2/2] and a degree-6 polynomial; within 2 ulp of `f32::exp`
/// on [-87, 88], 0 below, +inf above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.5, 88.5);
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n by building the exponent bits; n + 127 stays in 1..=254 after the clamp. Adding
    // 1.5 * 2^23 puts that integer in the low mantissa bits, and the shift moves it into the
    // exponent field: unlike `n as i32` (saturating, so scalar code) this vectorises.
    p * f32::from_bits((n + 127.0 + 12_582_912.0).to_bits() << 23)
}

vectorized!(layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let h = gamma.len();
    for (row, o) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let mean = lanes_sum(row) / h as f32;
        for (o, &v) in o.iter_mut().zip(row) {
            *o = v - mean;
        }
        let var = {
            let mut acc = [0.0f32; 8];
            let chunks = o.chunks_exact(8);
            let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
            for c in chunks {
                for (a, v) in acc.iter_mut().zip(c) {
                    *a += v * v;
                }
            }
            (acc.iter().sum::<f32>() + tail) / h as f32
        };
        let inv = 1.0 / (var + eps).sqrt();
        for ((o, &g), &b) in o.iter_mut().zip(gamma).zip(beta) {
            *o = *o * inv * g + b;
        }
    }
});

/// The keys query `row` of a `seq`-long sequence attends to: all, or causal, 0..=row (the
/// rest get probability 0, as with HF's mask).
pub(crate) fn live_keys(seq: usize, row: usize, causal: bool) -> usize {
    if causal { (row + 1).min(seq) } else { seq }
}

/// Softmax of each row without its normalisation: e^(scale (x - max)) in place, 1 / sum into
/// `inv_sums` (the caller scales the product with V instead: one pass fewer over the scores).
/// Hand-vectorised with AVX-512 ([`super::avx512::softmax_row`]), else [`softmax_rows_auto`].
pub fn softmax_rows(
    scores: &mut [f32],
    seq: usize,
    first_row: usize,
    scale: f32,
    causal: bool,
    inv_sums: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for ((i, row), inv) in scores.chunks_exact_mut(seq).enumerate().zip(inv_sums) {
            let valid = live_keys(seq, first_row + i, causal);
            // SAFETY: the feature was just detected.
            *inv = unsafe { super::avx512::softmax_row(row, valid, scale) };
        }
        return;
    }
    softmax_rows_auto(scores, seq, first_row, scale, causal, inv_sums)
}

// [`softmax_rows`] in plain loops for LLVM to vectorise (wasm, AVX2).
vectorized!(softmax_rows_auto(scores: &mut [f32], seq: usize, first_row: usize, scale: f32, causal: bool, inv_sums: &mut [f32]) {
    for ((i, row), inv) in scores.chunks_exact_mut(seq).enumerate().zip(inv_sums) {
        let valid = live_keys(seq, first_row + i, causal);
        let (live, masked) = row.split_at_mut(valid);
        masked.fill(0.0);
        let max = lanes_max(live);
        // Separate loops: each vectorises whole (a fused exp-and-sum loop did not).
        for v in live.iter_mut() {
            *v = exp((*v - max) * scale);
        }
        *inv = 1.0 / lanes_sum(live);
    }
});

vectorized!(add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
});

vectorized!(quick_gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v /= 1.0 + exp(-1.702 * *v);
    }
});

vectorized!(silu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v /= 1.0 + exp(-*v);
    }
});

vectorized!(gelu_tanh(x: &mut [f32]) {
    // 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
    for v in x.iter_mut() {
        let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
        *v /= 1.0 + exp(-2.0 * u);
    }
});

vectorized!(relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
});

pub fn activate(act: Activation, x: &mut [f32]) {
    match act {
        Activation::QuickGelu => quick_gelu(x),
        Activation::Silu => silu(x),
        Activation::GeluTanh => gelu_tanh(x),
        Activation::Relu => relu(x),
        Activation::Gelu => unreachable!("the CPU kernels are not used for gelu (see `supports`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.5));
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    /// The softmax this CPU runs (AVX-512's where it has it) and the plain loops (wasm's)
    /// against one in f64: odd widths, a row longer than the unrolled loop, causal rows past a
    /// block's first row, the masked tail zero.
    #[test]
    fn softmax_rows_match_f64() {
        type Softmax = fn(&mut [f32], usize, usize, f32, bool, &mut [f32]);
        let cases = [
            (3, 5, 0, false),
            (4, 37, 0, true),
            (6, 485, 90, true),
            (2, 485, 0, false),
        ];
        let softmaxes: [Softmax; 2] = [softmax_rows, softmax_rows_auto];
        for (softmax, (rows, seq, first_row, causal)) in
            softmaxes.into_iter().flat_map(|f| cases.map(|c| (f, c)))
        {
            let scores: Vec<f32> = (0..rows * seq)
                .map(|i| ((i * 7919) % 1999) as f32 / 100.0 - 10.0)
                .collect();
            let (scale, mut got, mut inv) = (0.3, scores.clone(), vec![0.0; rows]);
            softmax(&mut got, seq, first_row, scale, causal, &mut inv);
            for i in 0..rows {
                let valid = if causal {
                    (first_row + i + 1).min(seq)
                } else {
                    seq
                };
                let row = &scores[i * seq..][..valid];
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let e: Vec<f64> = row
                    .iter()
                    .map(|&v| ((v as f64 - max) * scale as f64).exp())
                    .collect();
                let want_inv = 1.0 / e.iter().sum::<f64>();
                assert!(
                    ((inv[i] as f64 - want_inv) / want_inv).abs() < 1e-5,
                    "row {i} sum"
                );
                for j in 0..seq {
                    let g = got[i * seq + j] as f64;
                    let w = e.get(j).copied().unwrap_or(0.0);
                    assert!(
                        (g - w).abs() <= 1e-6 * w.max(1e-30),
                        "({i}, {j}): {g} vs {w}"
                    );
                }
            }
        }
    }
}

//! Attention's two products (Q·Kᵀ and P·V) in bf16 for the int8 path, on CPUs where that is
//! faster than f32 ([`pays`]): AVX-512 BF16 (`vdpbf16ps`: 32 multiply-adds of bf16 pairs into
//! f32 lanes per instruction, twice an f32 FMA's where it issues as often, as on Zen 4) or
//! AMX-BF16.
//!
//! Why: with the projections in int8 ([`super::qgemm`]), these f32 products (onnxruntime's q8
//! keeps them in f32 too) became a large share of a q8 pass. bf16 keeps f32's range with an
//! 8-bit mantissa, the same order of rounding as the int8 projections that made Q, K and V,
//! and the sums stay in f32. The f32 path (`--precision f32`) is untouched.
//!
//! With AMX-BF16 (Sapphire Rapids and later) the products run on tiles instead
//! ([`super::amx::kernel_bf16`]): several times the rate of `vdpbf16ps` per core, and the same
//! sums up to the order of f32 additions.
//!
//! Layout: the kernel's unit is two consecutive k values in one 32-bit lane. An A row converted
//! to bf16 in order is already that ([`to_pairs`]); B is packed into column panels `[k/2][nr]`
//! of such pairs ([`Panels`]). An odd k is padded with a zero; for AMX, k is padded to 32 (a
//! tile row) and A must have whole 32-row blocks to read ([`row_pairs`], [`readable_rows`]).

use std::arch::x86_64::*;

use super::aligned::Aligned;
use super::avx512::{exp_scaled16, lanes};
use super::common::avx512_bf16;

/// Whether attention's products run faster in bf16 than in f32 here: on AMX tiles, yes; with
/// `vdpbf16ps` only where it issues as often as an f32 FMA, so that its two multiply-adds a
/// lane double the rate ([`speedup`] near 2, as on Zen 4). Some Intel cores without AMX issue
/// it far less often, and there bf16 attention slowed the q8 pass (measured:
/// docs/benchmarks-history.md).
pub fn pays() -> bool {
    super::amx::available_bf16() || speedup().is_some_and(|x| x >= 1.5)
}

/// `vdpbf16ps`'s multiply-adds a second over the f32 FMA's on one core, measured once (a few
/// ms): None without AVX-512 BF16.
pub fn speedup() -> Option<f64> {
    static SPEEDUP: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *SPEEDUP.get_or_init(|| {
        if !avx512_bf16() {
            return None;
        }
        let iters = 20_000;
        // SAFETY: `avx512_bf16()` checked AVX-512F and AVX-512 BF16.
        let bf16 = super::gemm::best_of_10(|| unsafe { dpbf16_loop(iters) });
        let fma = super::gemm::best_of_10(|| unsafe { super::gemm::x86::fma_loop_avx512(iters) });
        // The same number of instructions; 32 multiply-adds each against 16.
        Some(2.0 * fma / bf16)
    })
}

/// 16 independent `vdpbf16ps` chains, as `gemm`'s FMA peak loop.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dpbf16_loop(iters: usize) -> f32 {
    let mut acc = [_mm512_setzero_ps(); 16];
    // bf16 1/64 in both halves of each lane: sums stay small and exact.
    // SAFETY: __m512bh and __m512i are both 64 bytes.
    let x: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3c80_3c80)) };
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_dpbf16_ps(*a, x, x);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// A `[k, n]` matrix in bf16 pairs along k, in column panels `[pairs][nr]` (`pairs`:
/// [`row_pairs`] of k), zero past `n` and past `k`.
pub struct Panels {
    pairs: usize,
    n: usize,
    kernel: Kernel,
    data: Aligned<u32>,
}

/// The register kernels: 8 rows x 48 columns, and 6 x 64 for widths that 48 pads more
/// (a 485-token sequence: 43 padded columns at 48, 27 at 64; a 64-wide head: none); or AMX
/// tiles, 32 x 32, where the CPU has them.
#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    run: KernelFn,
    /// AMX: k in whole tile rows, A in whole 32-row blocks, tiles configured around a product.
    tiles: bool,
}

/// `c[0..rows][0..cols]` (row stride `ldc`) = A rows (`lda` apart, `pairs` pairs each) · one B
/// panel (`[pairs][nr]`).
type KernelFn = unsafe fn(
    pairs: usize,
    a: *const u32,
    lda: usize,
    rows: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
);

const KERNELS: [Kernel; 2] = [
    Kernel {
        mr: 8,
        nr: 48,
        run: kernel::<8, 3>,
        tiles: false,
    },
    Kernel {
        mr: 6,
        nr: 64,
        run: kernel::<6, 4>,
        tiles: false,
    },
];

const AMX: Kernel = Kernel {
    mr: 32,
    nr: 32,
    run: super::amx::kernel_bf16,
    tiles: true,
};

fn kernel_for(n: usize) -> Kernel {
    if super::amx::available_bf16() {
        return AMX;
    }
    // min_by_key keeps the first of equals: 8x48.
    KERNELS
        .into_iter()
        .min_by_key(|k| n.div_ceil(k.nr) * k.nr - n)
        .expect("two kernels")
}

/// Which kernel attention's products use here, for benchmark output.
pub fn kernel_name() -> &'static str {
    if super::amx::available_bf16() {
        "amx bf16 32x32"
    } else {
        "avx512-bf16 8x48 / 6x64"
    }
}

/// The pairs an A row (and a panel) holds for `k` values here: k / 2 rounded up, and to a
/// whole tile row (16 pairs) with AMX. [`to_pairs`] and [`softmax_pairs`] zero the padding.
pub fn row_pairs(k: usize) -> usize {
    pairs_for(k, super::amx::available_bf16())
}

fn pairs_for(k: usize, tiles: bool) -> usize {
    let pairs = k.div_ceil(2);
    if tiles {
        pairs.next_multiple_of(16)
    } else {
        pairs
    }
}

/// The rows an A of `m` rows must have allocated for [`Panels::matmul`]: with AMX, whole
/// 32-row blocks (rows past m are read, and their products thrown away).
pub fn readable_rows(m: usize) -> usize {
    if super::amx::available_bf16() {
        m.next_multiple_of(AMX.mr)
    } else {
        m
    }
}

impl Panels {
    /// B = Mᵀ for M `[n, k]` with rows `ld` apart (attention's Kᵀ, read from the fused
    /// projection): B's pairs are consecutive values of M's rows.
    pub fn transposed(m: &[f32], k: usize, n: usize, ld: usize) -> Self {
        Self::transposed_for(kernel_for(n), m, k, n, ld)
    }

    fn transposed_for(kernel: Kernel, m: &[f32], k: usize, n: usize, ld: usize) -> Self {
        let pairs = pairs_for(k, kernel.tiles);
        let nr = kernel.nr;
        let mut data = Aligned::zeroed(n.div_ceil(nr) * pairs * nr);
        let mut row = vec![0u32; pairs];
        for j in 0..n {
            to_pairs(&m[j * ld..], 1, k, ld, &mut row, pairs);
            let (panel, col) = (j / nr, j % nr);
            let dst = &mut data[panel * pairs * nr..][..pairs * nr];
            for (kp, &x) in row.iter().enumerate() {
                dst[kp * nr + col] = x;
            }
        }
        Self {
            pairs,
            n,
            kernel,
            data,
        }
    }

    /// B `[k, n]` itself, rows `ld` apart (attention's V): pairs from two consecutive rows.
    pub fn rows(b: &[f32], k: usize, n: usize, ld: usize) -> Self {
        Self::rows_for(kernel_for(n), b, k, n, ld)
    }

    fn rows_for(kernel: Kernel, b: &[f32], k: usize, n: usize, ld: usize) -> Self {
        let pairs = pairs_for(k, kernel.tiles);
        let nr = kernel.nr;
        let mut data = Aligned::zeroed(n.div_ceil(nr) * pairs * nr);
        // SAFETY: `avx512_bf16()` is checked by the caller before any bf16 work; rows and
        // columns stay inside `b` and `data` (see `interleave_rows`).
        unsafe { interleave_rows(b, k, n, ld, nr, pairs, &mut data) };
        Self {
            pairs,
            n,
            kernel,
            data,
        }
    }

    /// `out[m, n]` (row stride `ldc`) = A · B for A in pairs (`to_pairs`, [`row_pairs`]
    /// wide), rows `lda` apart, [`readable_rows`] of them.
    pub fn matmul(&self, a: &[u32], m: usize, lda: usize, out: &mut [f32], ldc: usize) {
        let Kernel { mr, nr, run, tiles } = self.kernel;
        let readable = if tiles { m.next_multiple_of(mr) } else { m };
        assert!(
            m == 0 || (lda >= self.pairs && a.len() >= (readable - 1) * lda + self.pairs),
            "A is too short"
        );
        assert!(
            m == 0 || out.len() >= (m - 1) * ldc + self.n,
            "out is too short"
        );
        let _tiles = tiles.then(super::amx::Tiles::configure);
        for (panel, b) in self.data.chunks_exact(self.pairs * nr).enumerate() {
            let j = panel * nr;
            let cols = nr.min(self.n - j);
            for i in (0..m).step_by(mr) {
                // SAFETY: the asserts above bound every row read and written; `b` is one
                // whole panel; `avx512_bf16()` was checked by whoever built `self`.
                unsafe {
                    run(
                        self.pairs,
                        a.as_ptr().add(i * lda),
                        lda,
                        mr.min(m - i),
                        b.as_ptr(),
                        out.as_mut_ptr().add(i * ldc + j),
                        ldc,
                        cols,
                    )
                };
            }
        }
    }
}

/// A Linear layer's weight in bf16 panels on AMX tiles and its f32 bias: the decoder's
/// projections for a quantized pack ([`super::Precision::Bf16`]). The activations are rounded
/// to bf16 per call; the sums stay f32.
pub struct Linear {
    k: usize,
    panels: Panels,
    bias: Vec<f32>,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bf16::Linear({}x{})", self.k, self.panels.n)
    }
}

thread_local! {
    /// The bf16 pairs of one thread's rows of A, kept from call to call.
    static A_PAIRS: std::cell::RefCell<Aligned<u32>> = Default::default();
}

impl Linear {
    /// Row-major `w` `[k, n]` and bias `[n]`; only where [`super::amx::available_bf16`].
    pub fn pack(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), k * n, "weight is not {k}x{n}");
        let bias = bias.map_or_else(|| vec![0.0; n], <[f32]>::to_vec);
        assert_eq!(bias.len(), n, "bias is not {n} long");
        Self {
            k,
            panels: Panels::rows_for(AMX, w, k, n, n),
            bias,
        }
    }

    pub fn n(&self) -> usize {
        self.panels.n
    }

    /// `out[m, n] = a[m, k] · W + bias`, all row-major; natively rows split over the rayon
    /// threads in whole AMX blocks.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32]) {
        let (k, n) = (self.k, self.n());
        assert!(a.len() >= m * k, "input is not {m}x{k}");
        assert!(out.len() >= m * n, "output is not {m}x{n}");
        if m == 0 || n == 0 {
            return;
        }
        let block = row_block(m);
        let run = |(i, out): (usize, &mut [f32])| {
            let rows = out.len() / n;
            let a = &a[i * block * k..][..rows * k];
            A_PAIRS.with_borrow_mut(|a16| self.product(a, rows, a16, out));
            for row in out.chunks_exact_mut(n) {
                row.iter_mut().zip(&self.bias).for_each(|(v, b)| *v += b);
            }
        };
        let out = &mut out[..m * n];
        #[cfg(feature = "native")]
        {
            use rayon::prelude::*;
            out.par_chunks_mut(block * n).enumerate().for_each(run);
        }
        #[cfg(not(feature = "native"))]
        run((0, out));
    }

    /// `out = fc2(max(0, self(a)))` (the decoder's MLP), `inner` [m, self.n()] the f32
    /// intermediate: each thread takes its rows through both products, the bias, ReLU and
    /// bf16 rounding of a row of `inner` in one pass while it is in L1 (as separate steps
    /// they were two passes over 485 x 2048 values and a second dispatch to the threads).
    pub fn mlp_relu(&self, fc2: &Linear, a: &[f32], m: usize, inner: &mut [f32], out: &mut [f32]) {
        let (k, n1, n2) = (self.k, self.n(), fc2.n());
        assert_eq!(fc2.k, n1, "fc2 does not take fc1's {n1} outputs");
        assert!(a.len() >= m * k, "input is not {m}x{k}");
        assert!(inner.len() >= m * n1, "intermediate is not {m}x{n1}");
        assert!(out.len() >= m * n2, "output is not {m}x{n2}");
        if m == 0 || n1 == 0 || n2 == 0 {
            return;
        }
        let (block, pairs) = (row_block(m), fc2.panels.pairs);
        let run = |(i, (inner, out)): (usize, (&mut [f32], &mut [f32]))| {
            let rows = out.len() / n2;
            let a = &a[i * block * k..][..rows * k];
            A_PAIRS.with_borrow_mut(|a16| {
                self.product(a, rows, a16, inner);
                // fc1's input pairs are spent: the buffer takes fc2's.
                a16.resize_stale(readable_rows(rows) * pairs);
                for (row, row16) in inner.chunks_exact_mut(n1).zip(a16.chunks_exact_mut(pairs)) {
                    let add = row.iter_mut().zip(&self.bias);
                    add.for_each(|(v, b)| *v = (*v + b).max(0.0));
                    to_pairs(row, 1, n1, n1, row16, pairs);
                }
                fc2.panels.matmul(a16, rows, pairs, out, n2);
            });
            for row in out.chunks_exact_mut(n2) {
                row.iter_mut().zip(&fc2.bias).for_each(|(v, b)| *v += b);
            }
        };
        let (inner, out) = (&mut inner[..m * n1], &mut out[..m * n2]);
        #[cfg(feature = "native")]
        {
            use rayon::prelude::*;
            let jobs = inner
                .par_chunks_mut(block * n1)
                .zip(out.par_chunks_mut(block * n2));
            jobs.enumerate().for_each(run);
        }
        #[cfg(not(feature = "native"))]
        run((0, (inner, out)));
    }

    /// `out = a · W` (no bias) for `rows` rows, through `a16` (their bf16 pairs).
    fn product(&self, a: &[f32], rows: usize, a16: &mut Aligned<u32>, out: &mut [f32]) {
        let pairs = self.panels.pairs;
        // Every row is written; the rows past `rows` only feed outputs not stored.
        a16.resize_stale(readable_rows(rows) * pairs);
        to_pairs(a, rows, self.k, self.k, a16, pairs);
        self.panels.matmul(a16, rows, pairs, out, self.n());
    }
}

/// Rows per thread of a [`Linear`] product: natively split over the rayon threads in whole
/// AMX blocks.
fn row_block(m: usize) -> usize {
    #[cfg(feature = "native")]
    let threads = rayon::current_num_threads();
    #[cfg(not(feature = "native"))]
    let threads = 1;
    m.div_ceil(AMX.mr).div_ceil(threads) * AMX.mr
}

/// `rows` rows of `cols` f32 (`lds` apart) to bf16 in order, `ldd` u32 (pairs) apart, the odd
/// last value paired with a zero and zeros after it to `ldd`. Round to nearest even.
pub fn to_pairs(src: &[f32], rows: usize, cols: usize, lds: usize, dst: &mut [u32], ldd: usize) {
    let pairs = cols.div_ceil(2);
    assert!(ldd >= pairs, "destination rows are too short");
    for r in 0..rows {
        let (s, d) = (&src[r * lds..][..cols], &mut dst[r * ldd..][..ldd]);
        let (d, padding) = d.split_at_mut(pairs);
        // SAFETY: the slices bound every access; the caller checked `avx512_bf16()`.
        unsafe { row_to_pairs(s, d) };
        padding.fill(0);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn row_to_pairs(src: &[f32], dst: &mut [u32]) {
    unsafe {
        for (i, d) in dst.chunks_mut(16).enumerate() {
            let at = 32 * i;
            let left = src.len() - at;
            let lo = _mm512_maskz_loadu_ps(lanes(left, 0), src.as_ptr().add(at));
            let hi = _mm512_maskz_loadu_ps(lanes(left, 16), src.as_ptr().add(at + 16.min(left)));
            let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi32(d.as_mut_ptr() as *mut i32, lanes(d.len(), 0), bf);
        }
    }
}

/// Rows 2p and 2p + 1 of `b` interleaved per column into panel pairs, 16 columns at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave_rows(
    b: &[f32],
    k: usize,
    n: usize,
    ld: usize,
    nr: usize,
    pairs: usize,
    data: &mut [u32],
) {
    unsafe {
        // [lo0..lo15 | hi0..hi15] -> (lo0, hi0), (lo1, hi1), ... as 16-bit lanes.
        let order: [i16; 32] = std::array::from_fn(|i| ((i % 2) * 16 + i / 2) as i16);
        let order = _mm512_loadu_si512(order.as_ptr() as *const __m512i);
        for kp in 0..pairs {
            for j in (0..n).step_by(16) {
                let row = |kk: usize| {
                    if kk < k {
                        _mm512_maskz_loadu_ps(lanes(n, j), b.as_ptr().add(kk * ld + j))
                    } else {
                        _mm512_setzero_ps()
                    }
                };
                let both: __m512i =
                    std::mem::transmute(_mm512_cvtne2ps_pbh(row(2 * kp + 1), row(2 * kp)));
                let (panel, col) = (j / nr, j % nr);
                let dst = data.as_mut_ptr().add((panel * pairs + kp) * nr + col);
                _mm512_storeu_si512(dst as *mut __m512i, _mm512_permutexvar_epi16(order, both));
            }
        }
    }
}

/// The softmax of `rows` score rows (`seq` wide, row `first_row + i` of the sequence) without
/// its normalisation, as [`super::common::softmax_rows`] computes it, written as bf16 pairs (`ldd`
/// apart, zero past seq) for the product with V; 1 / sum into `inv_sums`. One pass fewer over
/// the block than the f32 softmax followed by [`to_pairs`].
#[allow(clippy::too_many_arguments)]
pub fn softmax_pairs(
    scores: &[f32],
    seq: usize,
    first_row: usize,
    scale: f32,
    causal: bool,
    dst: &mut [u32],
    ldd: usize,
    inv_sums: &mut [f32],
) {
    assert!(ldd >= seq.div_ceil(2), "destination rows are too short");
    for (i, (row, inv)) in scores.chunks_exact(seq).zip(inv_sums).enumerate() {
        let valid = super::common::live_keys(seq, first_row + i, causal);
        let (out, padding) = dst[i * ldd..][..ldd].split_at_mut(seq.div_ceil(2));
        // SAFETY: the slices bound every access; the caller checked `avx512_bf16()`.
        *inv = unsafe { softmax_row(row, valid, scale, out) };
        padding.fill(0);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn softmax_row(row: &[f32], valid: usize, scale: f32, out: &mut [u32]) -> f32 {
    unsafe {
        let p = row.as_ptr();
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for j in (0..valid).step_by(16) {
            let x = _mm512_mask_loadu_ps(max, lanes(valid, j), p.add(j));
            max = _mm512_max_ps(max, x);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let scale = _mm512_set1_ps(scale * std::f32::consts::LOG2_E);
        // e^(scale (x - max)) for the live lanes, 0 for the rest.
        let exp = |j: usize| {
            let live = lanes(valid, j);
            let x = _mm512_maskz_loadu_ps(live, p.add(j.min(row.len())));
            _mm512_maskz_mov_ps(live, exp_scaled16(x, max, scale))
        };
        let mut sum = _mm512_setzero_ps();
        for (c, o) in out.chunks_mut(16).enumerate() {
            let (lo, hi) = (exp(32 * c), exp(32 * c + 16));
            sum = _mm512_add_ps(sum, _mm512_add_ps(lo, hi));
            let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi32(o.as_mut_ptr() as *mut i32, lanes(o.len(), 0), bf);
        }
        1.0 / _mm512_reduce_add_ps(sum)
    }
}

/// MR rows x 16*NV columns: MR*NV zmm accumulators, NV panel loads and MR broadcast pairs per
/// step of two k (the f32 kernel's shape, [`super::gemm`], at twice the multiply-adds).
/// Rows past `rows` re-read the last row and are not stored; columns past `cols` are masked.
#[allow(clippy::too_many_arguments)] // the micro-kernel interface
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel<const MR: usize, const NV: usize>(
    pairs: usize,
    a: *const u32,
    lda: usize,
    rows: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    unsafe {
        let a_rows: [*const u32; MR] = std::array::from_fn(|r| a.add(r.min(rows - 1) * lda));
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for kp in 0..pairs {
            let bv: [__m512bh; NV] = std::array::from_fn(|v| {
                std::mem::transmute(_mm512_loadu_si512(
                    b.add(kp * 16 * NV + 16 * v) as *const __m512i
                ))
            });
            for (r, row) in acc.iter_mut().enumerate() {
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a_rows[r].add(kp) as i32));
                for (v, y) in row.iter_mut().enumerate() {
                    *y = _mm512_dpbf16_ps(*y, x, bv[v]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            for (v, &x) in row.iter().enumerate().take(cols.div_ceil(16)) {
                _mm512_mask_storeu_ps(c.add(r * ldc + 16 * v), lanes(cols, 16 * v), x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 to bf16 and back, rounding to nearest even (finite values).
    fn round(x: f32) -> f32 {
        let b = x.to_bits();
        f32::from_bits((b + 0x7fff + ((b >> 16) & 1)) & 0xffff_0000)
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// Every kernel here (the two register kernels, and AMX's where the CPU has it)
    /// through both packings, against f64 products of the bf16-rounded inputs: odd k,
    /// partial row blocks and partial panels, each kernel's width.
    #[test]
    fn products_match_rounded_reference() {
        if !avx512_bf16() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let amx = super::super::amx::available_bf16().then_some(AMX);
        for kernel in KERNELS.into_iter().chain(amx) {
            for (m, k, n) in [
                (1, 1, 1),
                (7, 64, 7),
                (13, 64, 485),
                (9, 485, 64),
                (17, 33, 50),
                (40, 70, 33),
            ] {
                products_match(kernel, m, k, n);
            }
        }
    }

    /// [`Linear`] (AMX) against f64 products of the bf16-rounded inputs plus the bias: the
    /// decoder's shapes (rows split over threads, a partial last block) and odd ones.
    #[test]
    fn linear_matches_rounded_reference() {
        if !super::super::amx::available_bf16() {
            eprintln!("skipped: this CPU has no AMX-BF16");
            return;
        }
        for (m, k, n) in [(485, 64, 2048), (485, 2048, 64), (5, 33, 17), (70, 64, 192)] {
            let (a, w, bias) = (random(m * k, 4), random(k * n, 5), random(n, 6));
            let linear = Linear::pack(&w, k, n, Some(&bias));
            let mut out = vec![f32::NAN; m * n + 1];
            linear.matmul(&a, m, &mut out);
            let want = rounded_linear(&a, &w, &bias, m, k, n);
            for (at, (&got, &want)) in out.iter().zip(&want).enumerate() {
                let tolerance = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
                assert!(
                    (got as f64 - want).abs() <= tolerance,
                    "{m}x{k}x{n} ({}, {}): {got} vs {want}",
                    at / n,
                    at % n
                );
            }
            assert!(out[m * n].is_nan(), "{m}x{k}x{n}: wrote past the output");
        }
    }

    /// The fused MLP against the two rounded products with ReLU between, on the decoder's
    /// shape and an odd one: the f32 intermediate it leaves against max(0, fc1), and the
    /// output against fc2 of that intermediate rounded to bf16 (from the reference's own
    /// intermediate, a value near a rounding boundary may round the other way: one bf16 step
    /// of a value near 50 is 0.25).
    #[test]
    fn mlp_matches_rounded_reference() {
        if !super::super::amx::available_bf16() {
            eprintln!("skipped: this CPU has no AMX-BF16");
            return;
        }
        for (m, k, inner, n) in [(485, 64, 2048, 64), (37, 33, 45, 17)] {
            let (a, w1, b1) = (random(m * k, 7), random(k * inner, 8), random(inner, 9));
            let (w2, b2) = (random(inner * n, 10), random(n, 11));
            let fc1 = Linear::pack(&w1, k, inner, Some(&b1));
            let fc2 = Linear::pack(&w2, inner, n, Some(&b2));
            let mut hidden = vec![f32::NAN; m * inner];
            let mut out = vec![f32::NAN; m * n + 1];
            fc1.mlp_relu(&fc2, &a, m, &mut hidden, &mut out);
            let relu = rounded_linear(&a, &w1, &b1, m, k, inner);
            for (at, (&got, &want)) in hidden.iter().zip(&relu).enumerate() {
                let want = want.max(0.0);
                let tolerance = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
                assert!(
                    (got as f64 - want).abs() <= tolerance,
                    "{m}x{k}x{inner} hidden ({}, {}): {got} vs {want}",
                    at / inner,
                    at % inner
                );
            }
            let want = rounded_linear(&hidden, &w2, &b2, m, inner, n);
            for (at, (&got, &want)) in out.iter().zip(&want).enumerate() {
                let tolerance = 1e-5 * (inner as f64).sqrt() * (1.0 + want.abs());
                assert!(
                    (got as f64 - want).abs() <= tolerance,
                    "{m}x{k}x{inner}x{n} ({}, {}): {got} vs {want}",
                    at / n,
                    at % n
                );
            }
            assert!(
                out[m * n].is_nan(),
                "{m}x{k}x{inner}x{n}: wrote past the output"
            );
        }
    }

    /// `a · w + bias` in f64 from bf16-rounded `a` and `w`.
    fn rounded_linear(
        a: &[f32],
        w: &[f32],
        bias: &[f32],
        m: usize,
        k: usize,
        n: usize,
    ) -> Vec<f64> {
        (0..m * n)
            .map(|at| {
                let (i, j) = (at / n, at % n);
                (0..k)
                    .map(|kk| round(a[i * k + kk]) as f64 * round(w[kk * n + j]) as f64)
                    .sum::<f64>()
                    + bias[j] as f64
            })
            .collect()
    }

    fn products_match(kernel: Kernel, m: usize, k: usize, n: usize) {
        let ld = n + 3;
        let a = random(m * k, 1);
        let b = random(k * ld, 2);
        let bt = random(n * (k + 5), 3);
        let want = |bv: &dyn Fn(usize, usize) -> f32| -> Vec<f64> {
            (0..m * n)
                .map(|at| {
                    let (i, j) = (at / n, at % n);
                    (0..k)
                        .map(|kk| round(a[i * k + kk]) as f64 * round(bv(kk, j)) as f64)
                        .sum()
                })
                .collect()
        };
        let lda = pairs_for(k, kernel.tiles) + 1;
        // Rows past m as AMX reads them: NaN, which must not reach rows that exist.
        let rows = if kernel.tiles {
            m.next_multiple_of(32)
        } else {
            m
        };
        let mut a16 = vec![0x7fc0_7fc0u32; rows * lda];
        to_pairs(&a, m, k, k, &mut a16, lda);
        for (name, panels, reference) in [
            (
                "rows",
                Panels::rows_for(kernel, &b, k, n, ld),
                want(&|kk, j| b[kk * ld + j]),
            ),
            (
                "transposed",
                Panels::transposed_for(kernel, &bt, k, n, k + 5),
                want(&|kk, j| bt[j * (k + 5) + kk]),
            ),
        ] {
            let ldc = n + 2;
            let mut out = vec![f32::NAN; m * ldc];
            panels.matmul(&a16, m, lda, &mut out, ldc);
            for (at, &w) in reference.iter().enumerate() {
                let got = out[(at / n) * ldc + at % n] as f64;
                let tol = 1e-5 * (1.0 + w.abs()) * (k as f64).sqrt();
                assert!(
                    (got - w).abs() < tol,
                    "{name} {}x{} {m}x{k}x{n} at {at}: {got} vs {w}",
                    kernel.mr,
                    kernel.nr
                );
            }
            // Nothing written past each row's n columns.
            for i in 0..m {
                assert!(out[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()));
            }
        }
    }

    /// The fused softmax against the f32 one ([`super::super::common::softmax_rows`]) rounded to
    /// bf16: causal rows across a block boundary, an odd width, the masked tail zero.
    #[test]
    fn softmax_pairs_matches_f32_softmax() {
        if !avx512_bf16() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        for (rows, seq, first_row, causal) in
            [(5, 37, 0, false), (6, 37, 30, true), (3, 485, 0, false)]
        {
            let scores: Vec<f32> = random(rows * seq, 5).iter().map(|x| 4.0 * x).collect();
            let mut want = scores.clone();
            let mut want_inv = vec![0.0; rows];
            super::super::common::softmax_rows(
                &mut want,
                seq,
                first_row,
                0.125,
                causal,
                &mut want_inv,
            );
            let ldd = seq.div_ceil(2) + 1;
            let mut pairs = vec![u32::MAX; rows * ldd + 1];
            let mut inv = vec![0.0; rows];
            softmax_pairs(
                &scores, seq, first_row, 0.125, causal, &mut pairs, ldd, &mut inv,
            );
            for i in 0..rows {
                assert!(
                    (inv[i] - want_inv[i]).abs() < 1e-6 * want_inv[i],
                    "row {i} sum"
                );
                for j in 0..seq {
                    let bits = (pairs[i * ldd + j / 2] >> (16 * (j % 2))) & 0xffff;
                    let got = f32::from_bits(bits << 16);
                    let w = want[i * seq + j];
                    // The two exps may differ by an ulp, and so round to neighbouring bf16s.
                    assert!(
                        (got - round(w)).abs() <= w * 2f32.powi(-7),
                        "({i}, {j}): {got} vs {w}"
                    );
                }
                assert_eq!(pairs[i * ldd + ldd - 1], 0, "row {i}: padding not zero");
            }
            assert_eq!(pairs[rows * ldd], u32::MAX, "wrote past the last row");
        }
    }

    #[test]
    fn conversion_rounds_to_nearest_even() {
        if !avx512_bf16() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let x = random(35, 4);
        let mut pairs = vec![0u32; 18];
        to_pairs(&x, 1, 35, 35, &mut pairs, 18);
        for (i, &v) in x.iter().enumerate() {
            let bits = (pairs[i / 2] >> (16 * (i % 2))) & 0xffff;
            assert_eq!(f32::from_bits(bits << 16), round(v), "value {i}");
        }
        assert_eq!(pairs[17] >> 16, 0, "odd length pads with zero");
    }
}

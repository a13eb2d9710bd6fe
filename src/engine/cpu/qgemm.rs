//! int8 GEMM for the encoder projections of a quantized (q8/q4) pack: what onnxruntime's
//! dynamic q8 does, and why its q8 runs well ahead of its f32.
//!
//! Weights are 8-bit integers with one scale per output column (so the scale factors out of
//! every dot product), packed once into column panels in the order the kernel reads them: a
//! quarter of the f32 panels' memory. Activations are quantized per row on every call
//! (symmetric, 127 steps; the row's largest value sets its scale). The integer dot products are
//! exact; scales and bias are applied in the kernel's epilogue.
//!
//! Kernels: AMX 32x32 (Sapphire Rapids and later: `tdpbusd` is a 16x16x64 block of u8 x i8
//! multiply-adds, 16x a VNNI instruction's; the same offset scheme, A in 64-byte rows per tile;
//! a GEMM of at most 16 rows, a prompt's, runs tiles of just its rows instead),
//! AVX-512 VNNI 8x48 (`vpdpbusd`: 64 multiply-adds of u8 x i8 per instruction, 4x an
//! f32 FMA; activations are offset by 128 into u8 and the offset is taken out again with the
//! weights' column sums), wasm simd128 4x8 (`i32x4.dot_i16x8_s` on sign-extended pairs: 8
//! multiply-adds per instruction where f32 needs a multiply and an add for 4), AVX2 6x16 (the
//! same scheme with `vpmaddwd`), and a scalar one for each layout (the reference the others are
//! tested against). All compute the same integers. Without any of them (a native build off
//! x86-64) `kernel()` is `None` and the layers stay on the f32 path.

#[cfg(feature = "native")]
use rayon::prelude::*;

use super::aligned::Aligned;
#[cfg(target_arch = "x86_64")]
use super::amx;
use super::common::Epilogue;

/// How a kernel wants A: `U8Offset` packs 4 consecutive k of a row as u8 (q + 128) for one
/// 32-bit broadcast, `I16` packs 2 as i16, `Tiles` keeps each row's u8 in 64-byte pieces (one
/// row of an AMX tile), the strip's rows one after another per 64 k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    // x86's VNNI and AMX kernels only (and the test reference).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    U8Offset,
    I16,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Tiles,
}

impl Layout {
    /// Consecutive k values per 32-bit lane (of A's broadcast, and of B's panels).
    const fn group(self) -> usize {
        match self {
            Layout::U8Offset | Layout::Tiles => 4,
            Layout::I16 => 2,
        }
    }

    /// K zero-padded to a whole group, or to a whole tile row (64) for AMX.
    const fn padded_k(self, k: usize) -> usize {
        let multiple = match self {
            Layout::Tiles => 64,
            _ => self.group(),
        };
        k.div_ceil(multiple) * multiple
    }

    /// Added to every quantized activation, removed again through the weights' column sums.
    const fn offset(self) -> i32 {
        match self {
            Layout::U8Offset | Layout::Tiles => 128,
            Layout::I16 => 0,
        }
    }
}

/// `c[0..MR][0..NR]` (row stride `ldc`) from `groups` k-groups of a packed A strip
/// (`[groups][MR][group]`) and B panel (`[groups][NR][group]` i8).
type QKernelFn =
    unsafe fn(groups: usize, a: *const u8, b: *const i8, c: *mut f32, ldc: usize, e: Epilogue);

#[derive(Clone, Copy)]
struct QKernel {
    mr: usize,
    nr: usize,
    layout: Layout,
    run: QKernelFn,
    name: &'static str,
}

/// The SIMD int8 kernels this CPU runs, best first (none: quantized packs run in f32, as the
/// scalar references would be slower than that).
// Which pushes exist depends on the target (wasm32 has only its own).
#[allow(clippy::vec_init_then_push)]
fn kernels() -> Vec<QKernel> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    if amx::available() {
        found.push(QKernel {
            mr: 32,
            nr: 32,
            layout: Layout::Tiles,
            run: amx::kernel,
            name: "amx int8 32x32",
        });
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vnni")
    {
        found.push(QKernel {
            mr: 8,
            nr: 48,
            layout: Layout::U8Offset,
            run: x86::kernel_vnni::<8, 3>,
            name: "avx512-vnni int8 8x48",
        });
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        found.push(QKernel {
            mr: 6,
            nr: 16,
            layout: Layout::I16,
            run: x86::kernel_madd_avx2,
            name: "avx2 int8 6x16",
        });
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    found.push(QKernel {
        mr: 4,
        nr: 8,
        layout: Layout::I16,
        run: wasm::kernel_dot_i16::<4>,
        name: "simd128 int8 4x8",
    });
    found
}

/// The scalar kernel of each layout: the references the SIMD ones are tested against.
#[cfg(test)]
fn reference_kernels() -> [QKernel; 2] {
    [
        QKernel {
            mr: 4,
            nr: 8,
            layout: Layout::U8Offset,
            run: kernel_scalar::<4, 8, 4>,
            name: "scalar int8 4x8 (u8)",
        },
        QKernel {
            mr: 4,
            nr: 8,
            layout: Layout::I16,
            run: kernel_scalar::<4, 8, 2>,
            name: "scalar int8 4x8 (i16)",
        },
    ]
}

/// The SIMD int8 kernel of this CPU, if it has one worth using over f32.
fn kernel() -> Option<QKernel> {
    static BEST: std::sync::OnceLock<Option<QKernel>> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| kernels().first().copied())
}

/// The int8 kernel's name where this CPU has one (else quantized packs run in f32).
pub fn kernel_name() -> Option<&'static str> {
    kernel().map(|k| k.name)
}

/// This core's int8 multiply-add rate of the int8 kernel's instruction, in GOP/s (2 per
/// multiply-add, as for FLOPs): best of 10 rounds, as [`super::gemm::peak_gflops`]. x86 only.
pub fn peak_gops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if kernel()?.layout == Layout::Tiles {
        let iters = 20_000;
        // SAFETY: `kernel()` found AMX.
        let best = super::gemm::best_of_10(|| unsafe { amx::tdpbusd_loop(iters) });
        // 4 tiles of 16 x 16 x 64 multiply-adds per iteration.
        return Some((iters * 4 * 16 * 16 * 64 * 2) as f64 / best / 1e9);
    }
    #[cfg(target_arch = "x86_64")]
    if kernel()?.layout == Layout::U8Offset {
        let iters = 200_000;
        // SAFETY: `kernel()` found VNNI.
        let best = super::gemm::best_of_10(|| unsafe { x86::dpbusd_loop(iters) });
        // 16 chains x 16 lanes x 4 multiply-adds per instruction.
        return Some((iters * 16 * 16 * 4 * 2) as f64 / best / 1e9);
    }
    #[cfg(target_arch = "x86_64")]
    if kernel()?.layout == Layout::I16 {
        let iters = 200_000;
        // SAFETY: `kernel()` found AVX2.
        let best = super::gemm::best_of_10(|| unsafe { x86::madd_loop(iters) });
        // Chains x 8 lanes x 2 multiply-adds per `vpmaddwd` (and its `vpaddd`).
        let chains = super::gemm::AVX2_CHAINS;
        return Some((iters * chains * 8 * 2 * 2) as f64 / best / 1e9);
    }
    None
}

/// A `[k, n]` weight quantized to int8 per output column, plus its bias, in column panels.
#[derive(Clone)]
pub struct QuantMatrix {
    k: usize,
    n: usize,
    kernel: QKernel,
    /// Panels of NR columns, each `[k / group][NR][group]` (k zero-padded to the group).
    panels: Aligned<i8>,
    /// Per column, padded to a multiple of NR.
    w_scale: Vec<f32>,
    correction: Vec<i32>,
    bias: Vec<f32>,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QuantMatrix({}x{}, {})",
            self.k, self.n, self.kernel.name
        )
    }
}

impl QuantMatrix {
    /// Quantizes row-major `w` `[k, n]` (burn's Linear layout) for this CPU's int8 kernel;
    /// `None` where it has none.
    pub fn pack(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Option<Self> {
        Some(Self::pack_for(kernel()?, w, k, n, bias))
    }

    fn pack_for(kernel: QKernel, w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), k * n, "weight is not {k}x{n}");
        let (nr, g) = (kernel.nr, kernel.layout.group());
        let (kp, np) = (kernel.layout.padded_k(k), n.div_ceil(nr) * nr);
        let mut w_scale = vec![0.0f32; np];
        for row in w.chunks_exact(n.max(1)).take(k) {
            for (s, v) in w_scale.iter_mut().zip(row) {
                *s = s.max(v.abs());
            }
        }
        for s in &mut w_scale {
            *s /= 127.0;
        }
        let inv: Vec<f32> = w_scale
            .iter()
            .map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 })
            .collect();
        let mut panels = Aligned::zeroed(kp * np);
        let mut sums = vec![0i32; np];
        for (kk, row) in w.chunks_exact(n.max(1)).take(k).enumerate() {
            for (p, cols) in row.chunks(nr).enumerate() {
                // Column c of panel p at [kk / g][c][kk % g].
                let at = p * kp * nr + (kk / g) * nr * g + kk % g;
                let (inv, sums) = (&inv[p * nr..], &mut sums[p * nr..]);
                for (c, (&v, &inv)) in cols.iter().zip(inv).enumerate() {
                    let q = round_i8(v * inv);
                    panels[at + c * g] = q;
                    sums[c] += i32::from(q);
                }
            }
        }
        let correction = sums.iter().map(|s| kernel.layout.offset() * s).collect();
        let mut padded_bias = vec![0.0f32; np];
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "bias is not {n} long");
            padded_bias[..n].copy_from_slice(b);
        }
        Self {
            k,
            n,
            kernel,
            panels,
            w_scale,
            correction,
            bias: padded_bias,
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// `out[m, n] = a[m, k] · W + bias`, all row-major; every rayon thread natively.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        assert!(a.len() >= m * k, "input is not {m}x{k}");
        assert!(out.len() >= m * n, "output is not {m}x{n}");
        if m == 0 || n == 0 {
            return;
        }
        let QKernel { mr, nr, layout, .. } = self.kernel;
        let g = layout.group();
        let groups = layout.padded_k(k) / g;
        let strips = m.div_ceil(mr);
        // Quantized A, strip by strip ([groups][MR][group] elements of 1 or 2 bytes), and the
        // scale of every row (0 past m).
        let strip_bytes = groups * mr * g * if layout == Layout::I16 { 2 } else { 1 };
        // Reused from call to call (a fresh zeroed buffer per GEMM cost page faults and a
        // memset). Rows past m keep stale bytes: their outputs are never written back.
        let mut packed_a = A_BUFFER.with(std::cell::Cell::take);
        packed_a.resize_stale(strips * strip_bytes);
        let mut a_scale = vec![0.0f32; strips * mr];
        // `row_q` is one row's quantized values, zero past k (the last group's padding).
        let quantize =
            |row_q: &mut Vec<i8>, (s, (strip, scales)): (usize, (&mut [u8], &mut [f32]))| {
                row_q.resize(groups * g, 0);
                for r in 0..mr.min(m - s * mr) {
                    let row = &a[(s * mr + r) * k..][..k];
                    scales[r] = quantize_row(row, &mut row_q[..k]);
                    scatter_row(layout, row_q, r, mr, strip);
                }
            };
        let chunk = strip_bytes.max(1);
        #[cfg(feature = "native")]
        packed_a
            .par_chunks_exact_mut(chunk)
            .zip(a_scale.par_chunks_exact_mut(mr))
            .enumerate()
            .for_each_init(Vec::new, quantize);
        #[cfg(not(feature = "native"))]
        {
            let mut row_q = Vec::new();
            let jobs = packed_a
                .chunks_exact_mut(chunk)
                .zip(a_scale.chunks_exact_mut(mr));
            jobs.enumerate().for_each(|job| quantize(&mut row_q, job));
        }

        let panels_n = n.div_ceil(nr);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let run_panels = |panels: std::ops::Range<usize>| {
            let ptr = out_ptr;
            // AMX's tile shapes are per-thread state, set for this thread's whole share.
            #[cfg(target_arch = "x86_64")]
            let _tiles = (layout == Layout::Tiles).then(|| match self.short_tiles(m) {
                true => amx::Tiles::configure_short(m),
                false => amx::Tiles::configure(),
            });
            for p in panels {
                let b = &self.panels[p * groups * g * nr..];
                for s in 0..strips {
                    let e = Epilogue {
                        a_scale: a_scale[s * mr..].as_ptr(),
                        w_scale: self.w_scale[p * nr..].as_ptr(),
                        correction: self.correction[p * nr..].as_ptr(),
                        bias: self.bias[p * nr..].as_ptr(),
                    };
                    let a_strip = &packed_a[s * strip_bytes..];
                    // SAFETY: panel p and strip s address a tile of `out` no other thread
                    // writes; `tile` clips it to out's bounds.
                    unsafe { self.tile(ptr.0, m, s * mr, p * nr, groups, a_strip, b, e) };
                }
            }
        };
        #[cfg(feature = "native")]
        let threads = rayon::current_num_threads().min(panels_n);
        #[cfg(not(feature = "native"))]
        let threads = 1;
        match m * n * k >= 1 << 21 {
            true => super::gemm::over_parts(threads, panels_n, run_panels),
            false => run_panels(0..panels_n),
        }
        A_BUFFER.with(|b| b.set(packed_a));
    }

    /// Whether a GEMM of `m` rows runs AMX's short tiles (`amx::kernel_short`): a prompt's
    /// few rows.
    #[cfg(target_arch = "x86_64")]
    fn short_tiles(&self, m: usize) -> bool {
        self.kernel.layout == Layout::Tiles && m <= 16
    }

    /// One MR x NR tile at (i, j) of `out` [m, n]; edge tiles go through a scratch tile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        &self,
        out: *mut f32,
        m: usize,
        i: usize,
        j: usize,
        groups: usize,
        a: &[u8],
        b: &[i8],
        e: Epilogue,
    ) {
        let QKernel { mr, nr, run, .. } = self.kernel;
        let n = self.n;
        let (rows, cols) = (mr.min(m - i), nr.min(n - j));
        // AMX's short kernel writes exactly its `rows` rows, every other kernel a whole MR x NR
        // tile (reading none of it).
        #[cfg(target_arch = "x86_64")]
        let short = self.short_tiles(m);
        #[cfg(not(target_arch = "x86_64"))]
        let short = false;
        let kernel = |c: *mut f32, ldc: usize| {
            #[cfg(target_arch = "x86_64")]
            if short {
                // SAFETY: the short tiles are configured on this thread (`matmul`), rows <= 16,
                // a and b hold `groups` full groups, c takes rows x NR at stride ldc.
                return unsafe {
                    amx::kernel_short(groups, a.as_ptr(), b.as_ptr(), c, ldc, e, rows)
                };
            }
            // SAFETY: a and b hold `groups` full groups; c takes MR x NR at stride ldc.
            unsafe { run(groups, a.as_ptr(), b.as_ptr(), c, ldc, e) }
        };
        if cols == nr && (rows == mr || short) {
            // SAFETY: the tile (rows x NR) lies inside out[m, n].
            return kernel(unsafe { out.add(i * n + j) }, n);
        }
        // Edge tiles through a scratch tile, not zeroed (4 KB for AMX's, per edge tile of every
        // GEMM): the kernel writes all of it that is copied out.
        let mut scratch = [std::mem::MaybeUninit::<f32>::uninit(); 1024];
        let scratch = scratch.as_mut_ptr().cast::<f32>();
        // Scratch holds mr*nr values (at most 1024 for every kernel).
        kernel(scratch, nr);
        for r in 0..rows {
            for c in 0..cols {
                // SAFETY: (i + r, j + c) is inside out[m, n]; the kernel wrote scratch's tile.
                unsafe { *out.add((i + r) * n + j + c) = *scratch.add(r * nr + c) };
            }
        }
    }
}

thread_local! {
    /// Quantized A of the last GEMM on this thread (see `QuantMatrix::matmul`).
    static A_BUFFER: std::cell::Cell<Aligned<u8>> = const { std::cell::Cell::new(Aligned::new()) };
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: threads write disjoint tiles (whole column panels) of the output.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Symmetric per-row quantization: `q = round(x / scale)` with `scale = max |x| / 127`.
/// Returns the scale (0 for an all-zero row).
fn quantize_row(row: &[f32], q: &mut [i8]) -> f32 {
    let peak = max_abs(row);
    let scale = peak / 127.0;
    let inv = if peak > 0.0 { 127.0 / peak } else { 0.0 };
    round_row(row, inv, q);
    scale
}

// 32 running maxima by comparison: one chain of 8 `f32::max` (a compare and a blend after each
// max, for its NaN rule) was a large part of a q8 product's A quantization. NaNs are skipped
// alike.
super::common::vectorized!(max_abs_into(row: &[f32], peak: &mut f32) {
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

super::common::vectorized!(round_row(row: &[f32], inv: f32, q: &mut [i8]) {
    for (q, &v) in q.iter_mut().zip(row) {
        *q = round_i8(v * inv);
    }
});

/// `x.round_ties_even()` clamped to ±127, as i8, in arithmetic that vectorises (the std call
/// became a libm `rintf` per value, which dominated the quantization): adding 1.5 * 2^23 leaves
/// the rounded integer in the low mantissa bits.
#[inline(always)]
fn round_i8(x: f32) -> i8 {
    let shifted = x.clamp(-127.0, 127.0) + 12_582_912.0;
    (shifted.to_bits() as i32 - 0x4B40_0000) as i8
}

/// Writes row `r` of a strip of `mr` rows in the kernel's A layout.
fn scatter_row(layout: Layout, q: &[i8], r: usize, mr: usize, strip: &mut [u8]) {
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

/// Portable kernel for either layout (G = 4: u8 offset, G = 2: i16): the reference the SIMD
/// ones are tested against.
#[cfg(test)]
unsafe fn kernel_scalar<const MR: usize, const NR: usize, const G: usize>(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
) {
    let mut acc = [[0i32; NR]; MR];
    for gi in 0..groups {
        for (r, row) in acc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                for t in 0..G {
                    let at = (gi * MR + r) * G + t;
                    // SAFETY: a holds groups*MR*G elements, b groups*NR*G.
                    let x = unsafe {
                        if G == 4 {
                            i32::from(*a.add(at))
                        } else {
                            i32::from(i16::from_le_bytes([*a.add(2 * at), *a.add(2 * at + 1)]))
                        }
                    };
                    *v += x * i32::from(unsafe { *b.add((gi * NR + j) * G + t) });
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: the epilogue vectors hold MR / NR values, c an MR x NR tile.
            unsafe {
                let scale = *e.a_scale.add(r) * *e.w_scale.add(j);
                *c.add(r * ldc + j) = (v - *e.correction.add(j)) as f32 * scale + *e.bias.add(j);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
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
            for (r, row) in acc.iter().enumerate() {
                let sa = _mm256_set1_ps(*e.a_scale.add(r));
                for (v, &x) in row.iter().enumerate() {
                    let corr = _mm256_loadu_si256(e.correction.add(8 * v) as *const __m256i);
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
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn kernel_vnni<const MR: usize, const NV: usize>(
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
            let corr: [__m512i; NV] = std::array::from_fn(|v| {
                _mm512_loadu_si512(e.correction.add(16 * v) as *const __m512i)
            });
            let ws: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(e.w_scale.add(16 * v)));
            let bias: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(e.bias.add(16 * v)));
            for (r, row) in acc.iter().enumerate() {
                let sa = _mm512_set1_ps(*e.a_scale.add(r));
                for (v, &x) in row.iter().enumerate() {
                    let f = _mm512_cvtepi32_ps(_mm512_sub_epi32(x, corr[v]));
                    let y = _mm512_fmadd_ps(f, _mm512_mul_ps(sa, ws[v]), bias[v]);
                    _mm512_storeu_ps(c.add(r * ldc + 16 * v), y);
                }
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
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
            for (r, row) in acc.iter().enumerate() {
                let sa = f32x4_splat(*e.a_scale.add(r));
                for (v, &x) in row.iter().enumerate() {
                    let corr = v128_load(e.correction.add(4 * v) as *const v128);
                    let ws = v128_load(e.w_scale.add(4 * v) as *const v128);
                    let bias = v128_load(e.bias.add(4 * v) as *const v128);
                    let f = f32x4_convert_i32x4(i32x4_sub(x, corr));
                    let y = f32x4_add(f32x4_mul(f, f32x4_mul(sa, ws)), bias);
                    v128_store(c.add(r * ldc + 4 * v) as *mut v128, y);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The quantized product computed plainly in f64 from the same integers and scales: every
    /// kernel must match it to f32 rounding of the epilogue (the integer sums are exact).
    fn quantized_reference(
        a: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut w_scale = vec![0.0f32; n];
        for kk in 0..k {
            for j in 0..n {
                w_scale[j] = w_scale[j].max(w[kk * n + j].abs());
            }
        }
        let w_scale: Vec<f32> = w_scale.iter().map(|s| s / 127.0).collect();
        let q = |v: f32, s: f32| {
            if s > 0.0 {
                (v * (1.0 / s)).round_ties_even().clamp(-127.0, 127.0) as f64
            } else {
                0.0
            }
        };
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            let row = &a[i * k..(i + 1) * k];
            let peak = row.iter().fold(0.0f32, |p, v| p.max(v.abs()));
            let a_scale = peak / 127.0;
            let inv = if peak > 0.0 { 127.0 / peak } else { 0.0 };
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|kk| {
                        let qa = (row[kk] * inv).round_ties_even().clamp(-127.0, 127.0) as f64;
                        qa * q(w[kk * n + j], w_scale[j])
                    })
                    .sum();
                out[i * n + j] = (dot * a_scale as f64 * w_scale[j] as f64
                    + bias.map_or(0.0, |b| b[j] as f64)) as f32;
            }
        }
        out
    }

    #[test]
    fn rounding_matches_std_including_ties() {
        for i in -600..=600 {
            let x = i as f32 * 0.25 + if i % 7 == 0 { 1e-3 } else { 0.0 };
            let want = x.round_ties_even().clamp(-127.0, 127.0) as i8;
            assert_eq!(round_i8(x), want, "{x}");
        }
    }

    /// Every int8 kernel this CPU has on shapes that hit every edge (rows and columns past the
    /// tile, k not a multiple of the group, k = 0, a zero row), against the quantized
    /// reference; and the quantization error against the f32 product stays at 8-bit size.
    #[test]
    fn kernels_match_quantized_reference_on_edge_shapes() {
        for kern in kernels().into_iter().chain(reference_kernels()) {
            for &(m, k, n, with_bias) in &[
                (1, 1, 1, false),
                (5, 3, 7, true),
                (13, 257, 33, true),
                (25, 600, 70, false),
                (97, 301, 65, true),
                (12, 0, 48, true),
                (9, 768, 96, true),
                // AMX's short tiles up to 16 rows (3 steps: the odd tail), and past them.
                (16, 130, 64, true),
                (17, 64, 32, false),
            ] {
                let mut a = values(m * k, 1);
                if m > 2 {
                    a[k..2 * k].fill(0.0);
                }
                let w = values(k * n, 2);
                let bias = with_bias.then(|| values(n, 3));
                let packed = QuantMatrix::pack_for(kern, &w, k, n, bias.as_deref());
                let mut out = vec![f32::NAN; m * n];
                packed.matmul(&a, m, &mut out);
                let want = quantized_reference(&a, &w, bias.as_deref(), m, k, n);
                for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{m}x{k}x{n} ({}) element {i}: {got} vs {want}",
                        kern.name
                    );
                }
                // 8-bit steps on both sides: error well under 2% of the dot product's scale.
                for i in 0..m {
                    for j in 0..n {
                        let exact: f32 = bias.as_ref().map_or(0.0, |b| b[j])
                            + (0..k).map(|kk| a[i * k + kk] * w[kk * n + j]).sum::<f32>();
                        let tol = 0.02 * (k as f32).sqrt() * 0.6 + 1e-5;
                        assert!(
                            (out[i * n + j] - exact).abs() <= tol,
                            "{m}x{k}x{n} ({}) ({i},{j}): {} vs f32 {exact}",
                            kern.name,
                            out[i * n + j]
                        );
                    }
                }
            }
        }
    }
}

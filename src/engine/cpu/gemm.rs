//! f32 GEMM with weights packed once at load, for the CPU inference path.
//!
//! A Linear layer's weight never changes, so it is laid out once in the order the register
//! kernel reads it (BLIS-style column panels) instead of being re-packed on every call as
//! flex's matmul (the `gemm` crate) does, and the register tile is picked for the machine at
//! run time: 8x48 or 12x32 with AVX-512 (16x16 for outputs at most 16 wide), 6x16 with
//! AVX2+FMA, 4x8 with wasm simd128 (6x8's 12 accumulators spilled in V8 on x64, which made the
//! browser pass slower), 4x8 scalar.
//! Bias is added in the kernel's epilogue. On the CLIP shapes this runs as fast as the `gemm`
//! crate does, near the core's FMA peak (measured: docs/benchmarks-history.md); the gain of the
//! CPU path is around the GEMM (see `super::layer`). `clipseg bench` prints GFLOP/s against the
//! measured peak.

#[cfg(feature = "native")]
use rayon::prelude::*;

/// K is cut into blocks of this many so that one packed B micro-panel (KC x NR) is reused from
/// L1 or L2 across every strip of A while a group of panels' outputs stays in L2.
const KC: usize = 256;
/// Products with fewer panels than 4 per thread are split by rows when A has at least this
/// many (the decoder's 64-wide outputs: two panels).
const SPLIT_ROWS: usize = 192;

/// A register micro-kernel: `c[0..MR][0..NR] (row stride ldc) = (accumulate ? c : init) +
/// a_strip · b_panel`, with `b` packed as [kc][NR] and `a` packed as [kc][MR] (`lda` unused),
/// or, for the `direct` variant, MR rows read in place `lda` apart; `init` is a bias row of NR
/// values or null (zeros).
type KernelFn = unsafe fn(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    init: *const f32,
);

#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    run: KernelFn,
    /// Reads A in place: for products whose A is used for few columns (attention's P·V, 64
    /// wide), where packing it costs as much as the product.
    direct: KernelFn,
    name: &'static str,
}

/// The kernels this CPU runs, best first (checked at run time, so one binary serves every
/// x86-64).
// Which pushes exist depends on the target (wasm32 has only the last ones).
#[allow(clippy::vec_init_then_push)]
fn kernels() -> Vec<Kernel> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            found.push(Kernel {
                mr: 8,
                nr: 48,
                run: x86::kernel_avx512::<8, 3, false>,
                direct: x86::kernel_avx512::<8, 3, true>,
                name: "avx512 8x48",
            });
            found.push(Kernel {
                mr: 12,
                nr: 32,
                run: x86::kernel_avx512::<12, 2, false>,
                direct: x86::kernel_avx512::<12, 2, true>,
                name: "avx512 12x32",
            });
            found.push(Kernel {
                mr: 16,
                nr: 16,
                run: x86::kernel_avx512::<16, 1, false>,
                direct: x86::kernel_avx512::<16, 1, true>,
                name: "avx512 16x16",
            });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            found.push(Kernel {
                mr: 6,
                nr: 16,
                run: x86::kernel_avx2::<false>,
                direct: x86::kernel_avx2::<true>,
                name: "avx2+fma 6x16",
            });
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    found.push(Kernel {
        mr: 4,
        nr: 8,
        run: wasm::kernel_simd128::<4, false>,
        direct: wasm::kernel_simd128::<4, true>,
        name: "simd128 4x8",
    });
    found.push(Kernel {
        mr: 4,
        nr: 8,
        run: kernel_scalar::<4, 8, false>,
        direct: kernel_scalar::<4, 8, true>,
        name: "scalar 4x8",
    });
    found
}

fn kernel() -> Kernel {
    static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| kernels()[0])
}

/// The kernel for a matrix `n` columns wide: the best one, unless it is AVX-512 8x48 and
/// 12x32 pads `n` less (attention's 64-wide V: 33% padding at 48, none at 32), or `n` is at
/// most 16 (the decoder's 16-wide V): 16x16, which does 16 useful multiply-adds per 17 loads
/// where 12x32 would do 12 of its 24 on padding.
fn kernel_for(n: usize) -> Kernel {
    static ALT: std::sync::OnceLock<[Option<Kernel>; 2]> = std::sync::OnceLock::new();
    let best = kernel();
    let padding = |nr: usize| n.div_ceil(nr) * nr - n;
    let [alt, narrow] = ALT.get_or_init(|| {
        let find = |mr, nr| kernels().into_iter().find(|k| k.mr == mr && k.nr == nr);
        [find(12, 32), find(16, 16)]
    });
    match (alt, narrow) {
        (_, Some(narrow)) if best.nr == 48 && n <= 16 => *narrow,
        (Some(alt), _) if best.nr == 48 && padding(alt.nr) < padding(best.nr) => *alt,
        _ => best,
    }
}

/// Which register kernel `PackedMatrix` uses here, for benchmark output.
pub fn kernel_name() -> &'static str {
    kernel().name
}

/// This core's f32 FMA throughput in GFLOP/s, at the kernel's vector width: the ceiling GEMM
/// efficiency is quoted against. The best of 10 rounds of ~10 ms of independent FMAs, so a
/// moment of contention from another process does not lower it. x86 only.
pub fn peak_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let k = kernel();
        if k.nr >= 16 {
            let iters = 200_000;
            let (lanes, chains) = match k.nr > 16 {
                true => (16, 16),
                false => (8, AVX2_CHAINS),
            };
            // SAFETY: the kernel choice above checked the features.
            let best = best_of_10(|| unsafe {
                if k.nr > 16 {
                    x86::fma_loop_avx512(iters)
                } else {
                    x86::fma_loop_avx2(iters)
                }
            });
            return Some((iters * chains * lanes * 2) as f64 / best / 1e9);
        }
    }
    None
}

/// Independent chains of the AVX2 peak loops: 12 accumulators and their operands fit the 16
/// ymm registers (16 spilled to the stack, and the f32 peak read far below what the 6x16
/// kernel itself reaches).
#[cfg(target_arch = "x86_64")]
pub(super) const AVX2_CHAINS: usize = 12;

/// The shortest of 10 timed runs of `run`, in seconds: a moment of contention from another
/// process lengthens some runs, never shortens one.
#[cfg(target_arch = "x86_64")]
pub(crate) fn best_of_10<T>(mut run: impl FnMut() -> T) -> f64 {
    (0..10)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(run());
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// A `[k, n]` weight (plus optional bias), packed into column panels of the kernel's NR,
/// each `[k][NR]`, zero-padded past `n`.
#[derive(Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    kernel: Kernel,
    panels: super::aligned::Aligned<f32>,
    /// Padded to a multiple of NR.
    bias: Option<Vec<f32>>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedMatrix({}x{}, {})",
            self.k, self.n, self.kernel.name
        )
    }
}

impl PackedMatrix {
    /// `w` is row-major `[k, n]` (burn's Linear layout: input x output).
    pub fn pack(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), k * n, "weight is not {k}x{n}");
        Self::pack_strided(w, k, n, n, 1, bias)
    }

    /// Element `(kk, j)` of the matrix is `w[kk * row_stride + j * col_stride]`: packs a
    /// transposed matrix (attention's K^T) or one head's columns without a copy first.
    pub fn pack_strided(
        w: &[f32],
        k: usize,
        n: usize,
        row_stride: usize,
        col_stride: usize,
        bias: Option<&[f32]>,
    ) -> Self {
        Self::pack_for(kernel_for(n), w, k, n, row_stride, col_stride, bias)
    }

    fn pack_for(
        kernel: Kernel,
        w: &[f32],
        k: usize,
        n: usize,
        row_stride: usize,
        col_stride: usize,
        bias: Option<&[f32]>,
    ) -> Self {
        let nr = kernel.nr;
        let panels_n = n.div_ceil(nr);
        let mut panels = super::aligned::Aligned::zeroed(panels_n * k * nr);
        // k == 0: nothing to pack (and no chunk size to cut by).
        for (p, panel) in panels
            .chunks_exact_mut((k * nr).max(1))
            .enumerate()
            .take(panels_n * usize::from(k > 0))
        {
            let j0 = p * nr;
            let width = nr.min(n - j0);
            for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
                if col_stride == 1 {
                    row[..width].copy_from_slice(&w[kk * row_stride + j0..][..width]);
                } else {
                    for (c, v) in row[..width].iter_mut().enumerate() {
                        *v = w[kk * row_stride + (j0 + c) * col_stride];
                    }
                }
            }
        }
        let bias = bias.map(|b| {
            assert_eq!(b.len(), n, "bias is not {n} long");
            let mut padded = vec![0.0; panels_n * nr];
            padded[..n].copy_from_slice(b);
            padded
        });
        Self {
            k,
            n,
            kernel,
            panels,
            bias,
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// `out[m, n] = a[m, k] · W + bias`, all row-major. Uses every rayon thread natively.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_strided(a, m, self.k, out, self.n, Mode::Parallel);
    }

    /// [`Self::matmul`] with row strides for `a` (`lda`) and `out` (`ldo`), so one attention
    /// head can read its columns of the fused QKV output and write its columns of the result.
    pub fn matmul_strided(
        &self,
        a: &[f32],
        m: usize,
        lda: usize,
        out: &mut [f32],
        ldo: usize,
        mode: Mode,
    ) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            lda >= k && a.len() >= (m - 1) * lda + k,
            "input is not {m}x{k} with stride {lda}"
        );
        assert!(
            ldo >= n && out.len() >= (m - 1) * ldo + n,
            "output is not {m}x{n} with stride {ldo}"
        );
        if k == 0 {
            for row in out.chunks_mut(ldo).take(m) {
                match &self.bias {
                    Some(bias) => row[..n].copy_from_slice(&bias[..n]),
                    None => row[..n].fill(0.0),
                }
            }
            return;
        }
        let Kernel { mr, nr, .. } = self.kernel;
        let panels_n = n.div_ceil(nr);
        let out_ptr = SendPtr(out.as_mut_ptr());
        // A used for at most two panels is read in place in parallel runs too: packing it
        // costs more than it saves (the decoder's 2048 x 64 fc2 is faster read in place).
        let direct = mode == Mode::DirectA || (mode == Mode::Parallel && panels_n <= 2);
        let strips = m.div_ceil(mr);
        let threads = if mode == Mode::Parallel {
            threads_for(m, n, k)
        } else {
            1
        };
        if direct {
            let run = |panels: std::ops::Range<usize>, strips: std::ops::Range<usize>| {
                let rows = strips.start * mr..(strips.end * mr).min(m);
                self.run_direct(a, lda, out_ptr, ldo, m, panels, rows)
            };
            over_threads(threads, panels_n, strips, m, run);
            return;
        }
        // All of A packed once, shared by the threads: strips of MR rows, K block by K block.
        let mut packed = PACKED_A.with(std::cell::Cell::take);
        packed.resize_stale(strips * mr * k);
        let pack = |strips_range: std::ops::Range<usize>, dst: SendPtr| {
            let rows = (strips_range.end * mr).min(m) - strips_range.start * mr;
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                let at = strips * mr * k0 + strips_range.start * mr * kc;
                // SAFETY: strips `strips_range` of this K block: a part of the buffer no other
                // thread writes, inside it (strips * mr * k values).
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(dst.0.add(at), strips_range.len() * mr * kc)
                };
                pack_a(
                    &a[strips_range.start * mr * lda..],
                    rows,
                    lda,
                    k0,
                    kc,
                    mr,
                    dst,
                );
            }
        };
        let dst = SendPtr(packed.as_mut_ptr());
        over_parts(threads, strips, |s| pack(s, dst));
        let packed_a: &[f32] = &packed;
        over_threads(threads, panels_n, strips, m, |panels, strips_range| {
            self.run_packed(packed_a, strips, out_ptr, ldo, m, panels, strips_range)
        });
        PACKED_A.with(|cell| cell.set(packed));
    }

    /// The product for column panels `panels` and strips `strips_range` of A packed by
    /// `matmul_strided` (`strips` strips in all), in groups of panels: a group's K blocks, then
    /// its panels, then every strip. A panel's K x NR weights stream in once, each KC block of
    /// them reused from L1 across all the strips, and the group's M x NR outputs stay in L2
    /// across its K blocks (MLAS's order, N outermost; K first cycled C through L3 per block).
    #[allow(clippy::too_many_arguments)]
    fn run_packed(
        &self,
        packed_a: &[f32],
        strips: usize,
        out: SendPtr,
        ldo: usize,
        m: usize,
        panels: std::ops::Range<usize>,
        strips_range: std::ops::Range<usize>,
    ) {
        let Kernel { mr, nr, .. } = self.kernel;
        let k = self.k;
        // Panels a group: outputs of at most 256 KB, so a block of A is read from L2 (not L3)
        // once per group rather than per panel.
        let group = ((256 << 10) / (strips_range.len() * mr * nr * 4).max(1)).max(1);
        for g0 in panels.clone().step_by(group) {
            let group = g0..(g0 + group).min(panels.end);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                let first = k0 == 0;
                let block = &packed_a[strips * mr * k0..];
                for p in group.clone() {
                    let b = &self.panels[p * k * nr + k0 * nr..];
                    let bias = self.bias_for(p, first);
                    for s in strips_range.clone() {
                        // SAFETY: panel p and strip s address a tile of `out` no other thread
                        // writes, inside its bounds (checked in `tile`).
                        unsafe {
                            self.tile(
                                out.0,
                                ldo,
                                m,
                                s * mr,
                                p * nr,
                                kc,
                                (&block[s * mr * kc..], 0),
                                b,
                                !first,
                                bias,
                            )
                        };
                    }
                }
            }
        }
    }

    /// The product for column panels `panels` and rows `row_range`, A's whole strips read in
    /// place (a last partial strip packed: the kernel would read past row m).
    #[allow(clippy::too_many_arguments)]
    fn run_direct(
        &self,
        a: &[f32],
        lda: usize,
        out: SendPtr,
        ldo: usize,
        m: usize,
        panels: std::ops::Range<usize>,
        row_range: std::ops::Range<usize>,
    ) {
        let Kernel { mr, nr, .. } = self.kernel;
        let k = self.k;
        let rows = row_range.len();
        let in_place = rows / mr;
        // Only a last partial strip is packed (P·V of every head runs here: no buffer per call
        // where there is none).
        let mut packed_a = match rows > in_place * mr {
            true => vec![0.0f32; mr * KC.min(k)],
            false => Vec::new(),
        };
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let first = k0 == 0;
            if rows > in_place * mr {
                let first_packed = row_range.start + in_place * mr;
                pack_a(
                    &a[first_packed * lda..],
                    rows - in_place * mr,
                    lda,
                    k0,
                    kc,
                    mr,
                    &mut packed_a,
                );
            }
            for p in panels.clone() {
                let b = &self.panels[p * k * nr + k0 * nr..];
                let bias = self.bias_for(p, first);
                for s in 0..rows.div_ceil(mr) {
                    let i = row_range.start + s * mr;
                    let (a_strip, a_ld) = if s < in_place {
                        (&a[i * lda + k0..], lda)
                    } else {
                        (&packed_a[..], 0)
                    };
                    // SAFETY: as in `run_packed`; rows read in place are whole rows of `a`,
                    // k0 + kc <= k <= lda.
                    unsafe {
                        self.tile(
                            out.0,
                            ldo,
                            m,
                            i,
                            p * nr,
                            kc,
                            (a_strip, a_ld),
                            b,
                            !first,
                            bias,
                        )
                    };
                }
            }
        }
    }

    /// The kernel's initial row for panel `p`: its bias in the first K block, else none (the
    /// kernel accumulates onto the output).
    fn bias_for(&self, p: usize, first: bool) -> *const f32 {
        match (&self.bias, first) {
            (Some(bias), true) => bias[p * self.kernel.nr..].as_ptr(),
            _ => std::ptr::null(),
        }
    }

    /// One MR x NR tile of `out` at (i, j); tiles past the edges go through a scratch tile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        &self,
        out: *mut f32,
        ldo: usize,
        m: usize,
        i: usize,
        j: usize,
        kc: usize,
        (a, lda): (&[f32], usize),
        b: &[f32],
        accumulate: bool,
        bias: *const f32,
    ) {
        let Kernel { mr, nr, .. } = self.kernel;
        let run = if lda == 0 {
            self.kernel.run
        } else {
            self.kernel.direct
        };
        let n = self.n;
        let (rows, cols) = (mr.min(m - i), nr.min(n - j));
        if rows == mr && cols == nr {
            // SAFETY: the tile lies inside out[m, n]; a and b hold kc*mr and kc*nr values.
            unsafe {
                run(
                    kc,
                    a.as_ptr(),
                    lda,
                    b.as_ptr(),
                    out.add(i * ldo + j),
                    ldo,
                    accumulate,
                    bias,
                )
            };
            return;
        }
        let mut scratch = [0.0f32; 384];
        for r in 0..rows {
            for c in 0..cols {
                // SAFETY: (i + r, j + c) is inside out[m, n].
                scratch[r * nr + c] = unsafe { *out.add((i + r) * ldo + j + c) };
            }
        }
        // SAFETY: scratch holds mr*nr values (at most 384 for every kernel).
        unsafe {
            run(
                kc,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                scratch.as_mut_ptr(),
                nr,
                accumulate,
                bias,
            )
        };
        for r in 0..rows {
            for c in 0..cols {
                // SAFETY: as above.
                unsafe { *out.add((i + r) * ldo + j + c) = scratch[r * nr + c] };
            }
        }
    }
}

/// How [`PackedMatrix::matmul_strided`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Over every rayon thread (natively, for products big enough), by column panels or, for
    /// a few panels, by rows; A read in place where it serves at most two panels.
    Parallel,
    /// On the calling thread (callers that split work themselves), A packed per block.
    Serial,
    /// On the calling thread, A's whole strips read in place: for A used for few columns
    /// (attention's P·V, 64 wide), where packing it costs about as much as the product.
    DirectA,
}

thread_local! {
    /// Packed A of the last product on this thread, kept for the next (A of a full pass is
    /// up to 6 MB: allocating and faulting it in per product cost more than packing).
    static PACKED_A: std::cell::Cell<super::aligned::Aligned<f32>> =
        const { std::cell::Cell::new(super::aligned::Aligned::new()) };
}

/// Threads for a product of this size natively (1 below 2 Mi multiply-adds: the dispatch
/// costs more than it saves); 1 on wasm.
fn threads_for(m: usize, n: usize, k: usize) -> usize {
    #[cfg(feature = "native")]
    if m * n * k >= 1 << 21 {
        return rayon::current_num_threads();
    }
    let _ = (m, n, k);
    1
}

/// Runs `run(panels, strips)` over the product's `panels` column panels and `strips` row strips
/// on `threads` threads: split by panels, or by rows where there are few panels (the
/// decoder's 64-wide outputs: two) and A has at least `SPLIT_ROWS` rows.
fn over_threads(
    threads: usize,
    panels: usize,
    strips: usize,
    m: usize,
    run: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    match panels < 4 * threads && m >= SPLIT_ROWS {
        true => over_parts(threads, strips, |s| run(0..panels, s)),
        false => over_parts(threads, panels, |p| run(p, 0..strips)),
    }
}

/// Runs `run(part)` for `threads` near-equal consecutive parts of `0..len`, one per thread.
pub(super) fn over_parts(threads: usize, len: usize, run: impl Fn(std::ops::Range<usize>) + Sync) {
    #[cfg(feature = "native")]
    if threads > 1 {
        let per = len.div_ceil(threads).max(1);
        let parts: Vec<_> = (0..len.div_ceil(per))
            .map(|t| t * per..((t + 1) * per).min(len))
            .collect();
        parts.into_par_iter().for_each(&run);
        return;
    }
    let _ = threads;
    run(0..len);
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: threads write disjoint parts through it: tiles (whole column panels or whole row
// strips) of the output, or strips of the packed A.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Packs rows of `a[:, k0..k0+kc]` (row stride `lda`) into strips of `mr` rows, each
/// `[kc][mr]`, zero-padded.
fn pack_a(a: &[f32], m: usize, lda: usize, k0: usize, kc: usize, mr: usize, dst: &mut [f32]) {
    match mr {
        16 => pack_a_mr::<16>(a, m, lda, k0, kc, dst),
        12 => pack_a_mr::<12>(a, m, lda, k0, kc, dst),
        8 => pack_a_mr::<8>(a, m, lda, k0, kc, dst),
        6 => pack_a_mr::<6>(a, m, lda, k0, kc, dst),
        4 => pack_a_mr::<4>(a, m, lda, k0, kc, dst),
        _ => unreachable!("no kernel has {mr} rows"),
    }
}

/// Writes each strip sequentially, reading its MR rows side by side (MR sequential read
/// streams): the other order, one row at a time, scatters stores MR floats apart, which
/// showed in a full pass.
fn pack_a_mr<const MR: usize>(
    a: &[f32],
    m: usize,
    lda: usize,
    k0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    for (s, strip) in dst
        .chunks_exact_mut(kc * MR)
        .take(m.div_ceil(MR))
        .enumerate()
    {
        let rows: [&[f32]; MR] = std::array::from_fn(|r| {
            let i = s * MR + r;
            if i < m {
                &a[i * lda + k0..i * lda + k0 + kc]
            } else {
                &[]
            }
        });
        if rows.iter().all(|row| row.len() == kc) {
            for (kk, out) in strip.chunks_exact_mut(MR).enumerate() {
                for (v, row) in out.iter_mut().zip(&rows) {
                    *v = row[kk];
                }
            }
        } else {
            for (kk, out) in strip.chunks_exact_mut(MR).enumerate() {
                for (v, row) in out.iter_mut().zip(&rows) {
                    *v = row.get(kk).copied().unwrap_or(0.0);
                }
            }
        }
    }
}

/// Portable kernel (and the reference the SIMD ones are tested against).
#[allow(clippy::too_many_arguments)] // the BLIS micro-kernel interface
unsafe fn kernel_scalar<const MR: usize, const NR: usize, const DIRECT: bool>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    init: *const f32,
) {
    let mut acc = [[0.0f32; NR]; MR];
    for (r, row) in acc.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // SAFETY: the caller passes a valid MR x NR tile and an NR-long init row.
            unsafe {
                *v = if accumulate {
                    *c.add(r * ldc + j)
                } else if !init.is_null() {
                    *init.add(j)
                } else {
                    0.0
                }
            };
        }
    }
    for kk in 0..kc {
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: a holds kc*MR values (or MR rows of kc, lda apart), b kc*NR.
            let x = unsafe { *a.add(if DIRECT { r * lda + kk } else { kk * MR + r }) };
            for (j, v) in row.iter_mut().enumerate() {
                *v += x * unsafe { *b.add(kk * NR + j) };
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            // SAFETY: as above.
            unsafe { *c.add(r * ldc + j) = *v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// MR rows x 16*NV columns: MR*NV zmm accumulators, NV for B, broadcasts of A from
    /// memory. 8x48 (24 accumulators, 3 B loads and 8 broadcasts per 24 FMAs) ran the CLIP
    /// shapes a little faster than 12x32 and 14x32 (measured: docs/benchmarks-history.md).
    #[allow(clippy::too_many_arguments)] // the BLIS micro-kernel interface
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel_avx512<const MR: usize, const NV: usize, const DIRECT: bool>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        init: *const f32,
    ) {
        unsafe {
            // C is read only after the k loop: its lines (often out in L3 between K blocks)
            // are prefetched now and arrive while the FMAs run.
            if accumulate {
                for r in 0..MR {
                    for v in 0..NV {
                        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + 16 * v) as *const i8);
                    }
                }
            }
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            if !accumulate && !init.is_null() {
                for row in acc.iter_mut() {
                    for (v, x) in row.iter_mut().enumerate() {
                        *x = _mm512_loadu_ps(init.add(16 * v));
                    }
                }
            }
            let (mut a, mut b) = (a, b);
            // Direct: element (r, k) at a[r * lda + k], so one row offset per r and a step of 1.
            let (row_step, k_step) = if DIRECT { (lda, 1) } else { (1, MR) };
            for _ in 0..kc {
                let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(r * row_step));
                    for (v, y) in row.iter_mut().enumerate() {
                        *y = _mm512_fmadd_ps(x, bv[v], *y);
                    }
                }
                a = a.add(k_step);
                b = b.add(16 * NV);
            }
            for (r, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    let out = c.add(r * ldc + 16 * v);
                    let x = if accumulate {
                        _mm512_add_ps(x, _mm512_loadu_ps(out))
                    } else {
                        x
                    };
                    _mm512_storeu_ps(out, x);
                }
            }
        }
    }

    /// 16 independent FMA chains (enough to cover latency x throughput).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_loop_avx512(iters: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 16];
        let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_loop_avx2(iters: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); super::AVX2_CHAINS];
        let (x, y) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut out = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        // SAFETY: out holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out.iter().sum()
    }

    /// 6 rows x 16 columns: 12 ymm accumulators, 2 for B, 1 broadcast.
    #[allow(clippy::too_many_arguments)] // the BLIS micro-kernel interface
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_avx2<const DIRECT: bool>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        init: *const f32,
    ) {
        const MR: usize = 6;
        unsafe {
            // As in the AVX-512 kernel: prefetch C now, add it after the k loop.
            if accumulate {
                for r in 0..MR {
                    _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
                }
            }
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            if !accumulate && !init.is_null() {
                let (b0, b1) = (_mm256_loadu_ps(init), _mm256_loadu_ps(init.add(8)));
                for row in acc.iter_mut() {
                    *row = [b0, b1];
                }
            }
            let (mut a, mut b) = (a, b);
            let (row_step, k_step) = if DIRECT { (lda, 1) } else { (1, MR) };
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(r * row_step));
                    row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(x, b1, row[1]);
                }
                a = a.add(k_step);
                b = b.add(16);
            }
            for (r, row) in acc.iter().enumerate() {
                let (mut v0, mut v1) = (row[0], row[1]);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c.add(r * ldc)));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c.add(r * ldc + 8)));
                }
                _mm256_storeu_ps(c.add(r * ldc), v0);
                _mm256_storeu_ps(c.add(r * ldc + 8), v1);
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use std::arch::wasm32::*;

    /// MR rows x 8 columns: 2 * MR v128 accumulators. V8 maps v128 to x64's 16 xmm registers and
    /// reserves scratch ones, so 6 rows (12 accumulators plus operands) spilled: MR = 4.
    #[allow(clippy::too_many_arguments)] // the BLIS micro-kernel interface
    pub unsafe fn kernel_simd128<const MR: usize, const DIRECT: bool>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        init: *const f32,
    ) {
        unsafe {
            let mut acc = [[f32x4_splat(0.0); 2]; MR];
            if accumulate {
                for (r, row) in acc.iter_mut().enumerate() {
                    row[0] = v128_load(c.add(r * ldc) as *const v128);
                    row[1] = v128_load(c.add(r * ldc + 4) as *const v128);
                }
            } else if !init.is_null() {
                let b0 = v128_load(init as *const v128);
                let b1 = v128_load(init.add(4) as *const v128);
                for row in acc.iter_mut() {
                    *row = [b0, b1];
                }
            }
            let (mut a, mut b) = (a, b);
            let (row_step, k_step) = if DIRECT { (lda, 1) } else { (1, MR) };
            for _ in 0..kc {
                let b0 = v128_load(b as *const v128);
                let b1 = v128_load(b.add(4) as *const v128);
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = f32x4_splat(*a.add(r * row_step));
                    row[0] = f32x4_add(row[0], f32x4_mul(x, b0));
                    row[1] = f32x4_add(row[1], f32x4_mul(x, b1));
                }
                a = a.add(k_step);
                b = b.add(8);
            }
            for (r, row) in acc.iter().enumerate() {
                v128_store(c.add(r * ldc) as *mut v128, row[0]);
                v128_store(c.add(r * ldc + 4) as *mut v128, row[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(
        a: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |b| b[j] as f64);
                for kk in 0..k {
                    s += a[i * k + kk] as f64 * w[kk * n + j] as f64;
                }
                out[i * n + j] = s;
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

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

    /// Every kernel this CPU has (SIMD ones and the scalar reference), packed and reading A in
    /// place, on shapes that hit every edge: rows and columns past the tile, K past one KC
    /// block, K = 0, strides, and both parallel splits over 3 threads (uneven shares).
    #[test]
    fn matches_f64_reference_on_edge_shapes() {
        #[cfg(feature = "native")]
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for kern in kernels() {
            for &(m, k, n, with_bias) in &[
                (1, 1, 1, false),
                (5, 3, 7, true),
                (13, 257, 33, true),
                (25, 600, 70, false),
                (97, 300, 65, true),
                (12, 0, 32, true),
                (485, 64, 96, true),
                // Parallel: rows split over threads, A packed (a few panels).
                (485, 64, 160, false),
                // Parallel: panels split over threads, in groups (the last one short), two
                // K blocks; and more, narrower groups.
                (485, 300, 400, true),
                (250, 520, 1000, false),
            ] {
                let a = values(m * k, 1);
                let w = values(k * n, 2);
                let bias = with_bias.then(|| values(n, 3));
                let packed = PackedMatrix::pack_for(kern, &w, k, n, n, 1, bias.as_deref());
                let want = reference(&a, &w, bias.as_deref(), m, k, n);
                for mode in [Mode::Parallel, Mode::Serial, Mode::DirectA] {
                    let mut out = vec![f32::NAN; m * n];
                    let run = || packed.matmul_strided(&a, m, k, &mut out, n, mode);
                    #[cfg(feature = "native")]
                    pool.install(run);
                    #[cfg(not(feature = "native"))]
                    run();
                    for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (got - want).abs()
                                <= 1e-5 * (1.0 + want.abs()) * (k as f32).sqrt().max(1.0),
                            "{m}x{k}x{n} ({}, {mode:?}) element {i}: {got} vs {want}",
                            kern.name
                        );
                    }
                }
            }
        }
    }

    /// Strided input and output (attention reads heads in place) and a transposed pack.
    #[test]
    fn strided_operands_match_reference() {
        let (m, k, n, lda, ldo) = (29, 40, 19, 57, 23);
        let a = values(m * lda, 7);
        let dense_a: Vec<f32> = (0..m)
            .flat_map(|i| a[i * lda..i * lda + k].to_vec())
            .collect();
        // W given transposed: element (kk, j) at wt[j * k + kk].
        let wt = values(n * k, 8);
        let w: Vec<f32> = (0..k)
            .flat_map(|kk| (0..n).map(move |j| (kk, j)))
            .map(|(kk, j)| wt[j * k + kk])
            .collect();
        for (kern, mode) in kernels()
            .into_iter()
            .flat_map(|kern| [Mode::Parallel, Mode::DirectA].map(|mode| (kern, mode)))
        {
            let packed = PackedMatrix::pack_for(kern, &wt, k, n, 1, k, None);
            let mut out = vec![f32::NAN; m * ldo];
            packed.matmul_strided(&a, m, lda, &mut out, ldo, mode);
            let want = reference(&dense_a, &w, None, m, k, n);
            for i in 0..m {
                for j in 0..n {
                    let (g, e) = (out[i * ldo + j], want[i * n + j]);
                    assert!(
                        (g - e).abs() < 1e-4,
                        "{} {mode:?} ({i},{j}): {g} vs {e}",
                        kern.name
                    );
                }
                assert!(
                    out[i * ldo + n..(i + 1) * ldo].iter().all(|v| v.is_nan()),
                    "wrote past n"
                );
            }
        }
    }
}

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
use quantize::{quantize_row, quantize_row_u7, round_i8, scatter_row};

/// How a kernel wants A: `U8Offset` packs 4 consecutive k of a row as u8 (q + 128) for one
/// 32-bit broadcast, `I16` packs 2 as i16, `Tiles` keeps each row's u8 in 64-byte pieces (one
/// row of an AMX tile), the strip's rows one after another per 64 k. `U7` packs 4 k as
/// `U8Offset` does, but quantized to 7 bits (0..=127) around a zero point of the row's own:
/// what wasm's relaxed dot product (8-bit x 7-bit) takes exactly on every engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    // x86's VNNI and AMX kernels only (and the test reference).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    U8Offset,
    I16,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Tiles,
    // x86's and wasm relaxed SIMD's kernels only (and the test reference).
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_feature = "relaxed-simd")),
        allow(dead_code)
    )]
    U7,
}

impl Layout {
    /// Consecutive k values per 32-bit lane (of A's broadcast, and of B's panels).
    const fn group(self) -> usize {
        match self {
            Layout::U8Offset | Layout::Tiles | Layout::U7 => 4,
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

    /// Added to every quantized activation, removed again through the weights' column sums
    /// (`correction`, this many times each sum). `U7`'s is 1: each row's zero point multiplies
    /// it in the epilogue.
    const fn offset(self) -> i32 {
        match self {
            Layout::U8Offset | Layout::Tiles => 128,
            Layout::I16 => 0,
            Layout::U7 => 1,
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
            run: x86::kernel_vnni::<8, 3, false>,
            name: "avx512-vnni int8 8x48",
        });
        found.push(QKernel {
            mr: 8,
            nr: 48,
            layout: Layout::U7,
            run: x86::kernel_vnni::<8, 3, true>,
            name: "avx512-vnni int8 x 7-bit 8x48",
        });
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        found.push(QKernel {
            mr: 6,
            nr: 16,
            layout: Layout::U7,
            run: x86::kernel_maddubs_avx2,
            name: "avx2 int8 x 7-bit 6x16",
        });
        found.push(QKernel {
            mr: 6,
            nr: 16,
            layout: Layout::I16,
            run: x86::kernel_madd_avx2,
            name: "avx2 int8 6x16",
        });
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    found.push(QKernel {
        mr: 4,
        nr: 8,
        layout: Layout::U7,
        run: wasm::kernel_relaxed::<4, false>,
        name: "relaxed-simd int8 x 7-bit 4x8",
    });
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    found.push(QKernel {
        mr: 4,
        nr: 8,
        layout: Layout::U7,
        run: wasm::kernel_relaxed::<4, true>,
        name: "relaxed-simd int8 x 7-bit 4x8 (split)",
    });
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
fn reference_kernels() -> [QKernel; 3] {
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
        QKernel {
            mr: 4,
            nr: 8,
            layout: Layout::U7,
            run: kernel_scalar::<4, 8, 4>,
            name: "scalar int8 x 7-bit 4x8",
        },
    ]
}

/// This CPU's best SIMD int8 kernel for 8-bit activations, or for 7-bit ones (`Layout::U7`),
/// if it has one worth using over f32.
fn kernel(seven_bit: bool) -> Option<QKernel> {
    use std::sync::OnceLock;
    static BEST: [OnceLock<Option<QKernel>>; 2] = [OnceLock::new(), OnceLock::new()];
    *BEST[usize::from(seven_bit)].get_or_init(|| {
        let mut found = kernels();
        found.retain(|k| (k.layout == Layout::U7) == seven_bit);
        // How fast relaxed SIMD's dot product runs depends on how the engine lowers it (one
        // instruction with Arm's dot product or x86-64's AVX-VNNI; about six in V8 on other
        // x86-64, where the split kernel wins): time the candidates once.
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        if seven_bit {
            return Some(wasm::fastest(&found));
        }
        found.first().copied()
    })
}

/// Whether this CPU's fastest int8 kernel takes 7-bit activations (`Layout::U7`): relaxed
/// SIMD in wasm, AVX2 without VNNI natively. Quantized packs then run `Precision::Int8A7` by
/// default.
pub fn seven_bit_preferred() -> bool {
    kernels().first().is_some_and(|k| k.layout == Layout::U7)
}

/// The int8 kernel's name for 8- or 7-bit activations where this CPU has one (else quantized
/// packs run in f32).
pub fn kernel_name(seven_bit: bool) -> Option<&'static str> {
    kernel(seven_bit).map(|k| k.name)
}

/// This core's int8 multiply-add rate of the instruction of the int8 kernel for 8- or 7-bit
/// activations, in GOP/s (2 per multiply-add, as for FLOPs): best of 10 rounds, as
/// [`super::gemm::peak_gflops`]. x86 only, and not for AVX2's 7-bit kernel.
pub fn peak_gops(seven_bit: bool) -> Option<f64> {
    let kernel = kernel(seven_bit)?;
    #[cfg(target_arch = "x86_64")]
    if kernel.layout == Layout::Tiles {
        let iters = 20_000;
        // SAFETY: `kernel()` found AMX.
        let best = super::gemm::best_of_10(|| unsafe { amx::tdpbusd_loop(iters) });
        // 4 tiles of 16 x 16 x 64 multiply-adds per iteration.
        return Some((iters * 4 * 16 * 16 * 64 * 2) as f64 / best / 1e9);
    }
    #[cfg(target_arch = "x86_64")]
    if kernel.layout == Layout::U8Offset || kernel.name.starts_with("avx512-vnni") {
        let iters = 200_000;
        // SAFETY: `kernel()` found VNNI.
        let best = super::gemm::best_of_10(|| unsafe { x86::dpbusd_loop(iters) });
        // 16 chains x 16 lanes x 4 multiply-adds per instruction.
        return Some((iters * 16 * 16 * 4 * 2) as f64 / best / 1e9);
    }
    #[cfg(target_arch = "x86_64")]
    if kernel.layout == Layout::I16 {
        let iters = 200_000;
        // SAFETY: `kernel()` found AVX2.
        let best = super::gemm::best_of_10(|| unsafe { x86::madd_loop(iters) });
        // Chains x 8 lanes x 2 multiply-adds per `vpmaddwd` (and its `vpaddd`).
        let chains = super::gemm::AVX2_CHAINS;
        return Some((iters * chains * 8 * 2 * 2) as f64 / best / 1e9);
    }
    let _ = kernel;
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
    /// Quantizes row-major `w` `[k, n]` (burn's Linear layout) for this CPU's int8 kernel for
    /// 8-bit activations, or 7-bit ones; `None` where it has none.
    pub fn pack(
        w: &[f32],
        k: usize,
        n: usize,
        bias: Option<&[f32]>,
        seven_bit: bool,
    ) -> Option<Self> {
        Some(Self::pack_for(kernel(seven_bit)?, w, k, n, bias))
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
        let mut a_zero = vec![1i32; strips * mr];
        // `row_q` is one row's quantized values, zero past k (the last group's padding).
        let quantize = |row_q: &mut Vec<i8>, (s, (strip, (scales, zeros))): QuantizeJob| {
            row_q.resize(groups * g, 0);
            for r in 0..mr.min(m - s * mr) {
                let row = &a[(s * mr + r) * k..][..k];
                if layout == Layout::U7 {
                    (scales[r], zeros[r]) = quantize_row_u7(row, &mut row_q[..k]);
                } else {
                    scales[r] = quantize_row(row, &mut row_q[..k]);
                }
                scatter_row(layout, row_q, r, mr, strip);
            }
        };
        let chunk = strip_bytes.max(1);
        #[cfg(feature = "native")]
        packed_a
            .par_chunks_exact_mut(chunk)
            .zip(
                a_scale
                    .par_chunks_exact_mut(mr)
                    .zip(a_zero.par_chunks_exact_mut(mr)),
            )
            .enumerate()
            .for_each_init(Vec::new, quantize);
        #[cfg(not(feature = "native"))]
        {
            let mut row_q = Vec::new();
            let jobs = packed_a.chunks_exact_mut(chunk).zip(
                a_scale
                    .chunks_exact_mut(mr)
                    .zip(a_zero.chunks_exact_mut(mr)),
            );
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
                        a_zero: a_zero[s * mr..].as_ptr(),
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

/// One strip of A to quantize: its index, its packed bytes, its rows' scales and zero points.
type QuantizeJob<'a> = (usize, (&'a mut [u8], (&'a mut [f32], &'a mut [i32])));

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: threads write disjoint tiles (whole column panels) of the output.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Portable kernel for every layout (G = 4: u8 offset or 7 bits, G = 2: i16): the reference
/// the SIMD ones are tested against.
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
                let correction = *e.a_zero.add(r) * *e.correction.add(j);
                *c.add(r * ldc + j) = (v - correction) as f32 * scale + *e.bias.add(j);
            }
        }
    }
}

mod quantize;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;

#[cfg(test)]
mod tests;

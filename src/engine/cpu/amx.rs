//! Intel AMX (Sapphire Rapids and later): the int8 tile kernel of [`super::qgemm`] and the
//! bf16 one of [`super::bf16`] (attention's products).
//!
//! AMX has eight tile registers of up to 16 rows x 64 bytes and a tile multiply, `tdpbusd`,
//! of a 16x64 u8 tile by a 64x16 i8 tile (stored as 16 rows of 16 columns x 4 k) into 16x16
//! i32: 16384 multiply-adds, 16x one AVX-512 VNNI instruction, at several times VNNI's rate
//! per core (`clipseg bench` prints both peaks). onnxruntime's q8 runs on it where the CPU has
//! it, and on such a machine our q8 pass trailed it by far until it did too.
//!
//! Rust has no stable AMX intrinsics (nor `is_x86_feature_detected!` for it), so the
//! instructions are inline assembly on fixed tile registers (nothing else in the program uses
//! them) and the CPU is asked through `cpuid`. Linux gives a process AMX's 8 KB register state
//! only once asked (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, kernel 5.16+); where that fails, the
//! VNNI kernel runs instead. `CLIPSEG_NO_AMX=1` in the environment turns AMX off (the VNNI and
//! AVX-512 BF16 kernels run), to compare the two on one machine.

use std::arch::asm;
use std::arch::x86_64::*;

use super::common::Epilogue;

/// Whether this CPU and OS run AMX int8 tiles.
pub fn available() -> bool {
    support().int8
}

/// Whether this CPU and OS run AMX bf16 tiles (with AVX-512 BF16 for the conversions).
pub fn available_bf16() -> bool {
    support().bf16
}

#[derive(Clone, Copy)]
struct Support {
    int8: bool,
    bf16: bool,
}

/// Asked once: `cpuid` traps to the hypervisor in a VM, so asking it per attention head showed
/// in a q8 pass.
fn support() -> Support {
    static SUPPORT: std::sync::OnceLock<Support> = std::sync::OnceLock::new();
    *SUPPORT.get_or_init(|| {
        // CPUID.(7,0):EDX bit 24 AMX-TILE, 25 AMX-INT8, 22 AMX-BF16. The epilogues need
        // AVX-512F, the bf16 conversions AVX-512 BF16.
        let edx = if __cpuid(0).eax >= 7 {
            __cpuid_count(7, 0).edx
        } else {
            0
        };
        let tiles = std::env::var_os("CLIPSEG_NO_AMX").is_none()
            && std::arch::is_x86_feature_detected!("avx512f")
            && edx & (1 << 24) != 0
            && request_permission();
        Support {
            int8: tiles && edx & (1 << 25) != 0,
            bf16: tiles && edx & (1 << 22) != 0 && super::common::avx512_bf16(),
        }
    })
}

#[cfg(target_os = "linux")]
fn request_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call; it changes only this process's permitted register state.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_permission() -> bool {
    false
}

/// Tile shapes, the `ldtilecfg` operand: every tile 16 rows of 64 bytes (A: 16 rows x 64 k of
/// u8; B: 16 k-groups x 16 columns x 4 i8; C: 16 rows x 16 i32).
#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// The tile configuration of the current thread, for as long as this lives: `ldtilecfg` costs
/// about as much as a whole 32x32x768 tile, so it is set once per thread per GEMM, not per
/// kernel call. Dropping it releases the tiles (the OS then saves no tile state for the
/// thread).
pub struct Tiles(());

impl Tiles {
    /// Only where [`available`].
    pub fn configure() -> Self {
        let mut config = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        config.bytes_per_row[..8].fill(64);
        config.rows[..8].fill(16);
        // SAFETY: AMX is available (the caller's contract) and the config is valid palette 1.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
        Tiles(())
    }
}

impl Tiles {
    /// The tile shapes of [`kernel_short`]: C (tmm0, tmm1) and A (tmm2, tmm3) `rows` rows,
    /// B (tmm4-7) 16. A tile multiply takes time by its rows: configured to the 7 rows of a
    /// prompt, it does not spend a 16-row tile's.
    pub fn configure_short(rows: usize) -> Self {
        assert!(
            (1..=16).contains(&rows),
            "a short tile has 1 to 16 rows, not {rows}"
        );
        let mut config = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        config.bytes_per_row[..8].fill(64);
        config.rows[..4].fill(rows as u8);
        config.rows[4..8].fill(16);
        // SAFETY: AMX is available (the caller's contract) and the config is valid palette 1.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
        Tiles(())
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured by `configure`.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// The operands of the 2x2 tile loop both kernels run (byte addresses and strides).
struct TileLoop {
    /// Steps of 16 B rows (one tile of each operand per step).
    steps: usize,
    /// A's two 16-row tiles, `a_stride` between rows, `a_step` further each step.
    a: *const u8,
    a16: *const u8,
    a_stride: usize,
    a_step: usize,
    /// B's two 16-column tiles side by side: rows of 128 bytes, 2048 bytes a step.
    b: *const u8,
    /// Where the four C tiles go: rows 0-15 at `out`, 16-31 at `out16`, columns 16-31 64
    /// bytes on, `out_stride` between rows.
    out: *mut u8,
    out16: *mut u8,
    out_stride: usize,
}

/// C (tmm0-3) = sum over the steps of A (tmm4, tmm5) times B (tmm6, tmm7) by `$op`, then C
/// stored: the loop of [`kernel`] (`tdpbusd`) and [`kernel_bf16`] (`tdpbf16ps`).
macro_rules! tile_loop {
    ($op:literal, $l:expr) => {{
        let l: TileLoop = $l;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "test {n}, {n}",
            "jz 3f",
            "2:",
            "tileloadd tmm4, [{a} + {sa}]",
            "tileloadd tmm5, [{a16} + {sa}]",
            "tileloadd tmm6, [{b} + {s128}]",
            "tileloadd tmm7, [{b} + {s128} + 64]",
            concat!($op, " tmm0, tmm4, tmm6"),
            concat!($op, " tmm1, tmm4, tmm7"),
            concat!($op, " tmm2, tmm5, tmm6"),
            concat!($op, " tmm3, tmm5, tmm7"),
            "add {a}, {step}",
            "add {a16}, {step}",
            "add {b}, 2048",
            "dec {n}",
            "jnz 2b",
            "3:",
            "tilestored [{o} + {so}], tmm0",
            "tilestored [{o} + {so} + 64], tmm1",
            "tilestored [{o16} + {so}], tmm2",
            "tilestored [{o16} + {so} + 64], tmm3",
            a = inout(reg) l.a => _,
            a16 = inout(reg) l.a16 => _,
            b = inout(reg) l.b => _,
            n = inout(reg) l.steps => _,
            sa = in(reg) l.a_stride,
            step = in(reg) l.a_step,
            s128 = in(reg) 128usize,
            o = in(reg) l.out,
            o16 = in(reg) l.out16,
            so = in(reg) l.out_stride,
            options(nostack),
        )
    }};
}

/// 32 rows x 32 columns of `c` (row stride `ldc`) from `groups` (a multiple of 16) k-groups:
/// A packed as `[groups / 16][32 rows][64 bytes]`, B as `[groups][32 columns][4]`. Per 64 k,
/// two A tiles (rows 0-15, 16-31; tmm4, tmm5) and two B tiles (columns 0-15, 16-31; tmm6,
/// tmm7) make four `tdpbusd` into tmm0-3; the i32 sums go through a stack tile to the
/// epilogue. Tiles must be configured on this thread ([`Tiles`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn kernel(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
) {
    // Every value is written by the tile stores, so the 4 KB are not zeroed per call.
    #[repr(align(64))]
    struct Sums([std::mem::MaybeUninit<i32>; 32 * 32]);
    let mut sums = Sums([std::mem::MaybeUninit::uninit(); 32 * 32]);
    let sums = sums.0.as_mut_ptr().cast::<i32>();
    // SAFETY: a holds groups / 16 * 2048 bytes, b as many; sums is 32 x 32 i32 (row stride
    // 128 bytes); the caller configured the tiles.
    unsafe {
        tile_loop!(
            "tdpbusd",
            TileLoop {
                steps: groups / 16,
                a,
                a16: a.add(1024),
                a_stride: 64,
                a_step: 2048,
                b: b.cast(),
                out: sums.cast(),
                out16: sums.add(16 * 32).cast(),
                out_stride: 128,
            }
        );
        epilogue(sums, 32, c, ldc, e);
    }
}

/// [`kernel`] for at most 16 rows (a prompt's tokens), with tiles configured by
/// [`Tiles::configure_short`]: `rows` x 32 of `c` from the first `rows` rows of the same
/// packed A strip. Each step's weights (2 KB, read once per prompt: the text tower streams
/// 38 MB of them) load into the other pair of B tiles than the last step's, so the loads
/// overlap the multiplies instead of waiting for them (tile registers are not renamed).
#[target_feature(enable = "avx512f")]
pub unsafe fn kernel_short(
    groups: usize,
    a: *const u8,
    b: *const i8,
    c: *mut f32,
    ldc: usize,
    e: Epilogue,
    rows: usize,
) {
    #[repr(align(64))]
    struct Sums([std::mem::MaybeUninit<i32>; 16 * 32]);
    let mut sums = Sums([std::mem::MaybeUninit::uninit(); 16 * 32]);
    let sums = sums.0.as_mut_ptr().cast::<i32>();
    let steps = groups / 16;
    // SAFETY: a holds steps * 2048 bytes (rows 64 bytes apart), b as many; sums holds
    // `rows` x 32 i32 (row stride 128 bytes); the caller configured the tiles.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "test {pairs}, {pairs}",
            "jz 3f",
            "2:",
            "tileloadd tmm2, [{a} + {s64}]",
            "tileloadd tmm4, [{b} + {s128}]",
            "tileloadd tmm5, [{b} + {s128} + 64]",
            "tdpbusd tmm0, tmm2, tmm4",
            "tdpbusd tmm1, tmm2, tmm5",
            "tileloadd tmm3, [{a} + {s64} + 2048]",
            "tileloadd tmm6, [{b} + {s128} + 2048]",
            "tileloadd tmm7, [{b} + {s128} + 2112]",
            "tdpbusd tmm0, tmm3, tmm6",
            "tdpbusd tmm1, tmm3, tmm7",
            "add {a}, 4096",
            "add {b}, 4096",
            "dec {pairs}",
            "jnz 2b",
            "3:",
            "test {odd}, {odd}",
            "jz 4f",
            "tileloadd tmm2, [{a} + {s64}]",
            "tileloadd tmm4, [{b} + {s128}]",
            "tileloadd tmm5, [{b} + {s128} + 64]",
            "tdpbusd tmm0, tmm2, tmm4",
            "tdpbusd tmm1, tmm2, tmm5",
            "4:",
            "tilestored [{o} + {s128}], tmm0",
            "tilestored [{o} + {s128} + 64], tmm1",
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            pairs = inout(reg) steps / 2 => _,
            odd = in(reg) steps % 2,
            s64 = in(reg) 64usize,
            s128 = in(reg) 128usize,
            o = in(reg) sums,
            options(nostack),
        );
        epilogue(sums, rows, c, ldc, e);
    }
}

/// `c[r][0..32] = a_scale[r] * w_scale * (sums[r] - correction) + bias` for `rows` rows of
/// 32 i32 sums.
#[target_feature(enable = "avx512f")]
unsafe fn epilogue(sums: *const i32, rows: usize, c: *mut f32, ldc: usize, e: Epilogue) {
    // SAFETY: the caller's: sums holds rows x 32 values, c rows x 32 at stride ldc, the
    // epilogue's vectors 32 values each.
    unsafe {
        let corr: [__m512i; 2] =
            std::array::from_fn(|v| _mm512_loadu_si512(e.correction.add(16 * v) as *const _));
        let ws: [__m512; 2] = std::array::from_fn(|v| _mm512_loadu_ps(e.w_scale.add(16 * v)));
        let bias: [__m512; 2] = std::array::from_fn(|v| _mm512_loadu_ps(e.bias.add(16 * v)));
        for r in 0..rows {
            let sa = _mm512_set1_ps(*e.a_scale.add(r));
            for v in 0..2 {
                let x = _mm512_load_si512(sums.add(r * 32 + 16 * v) as *const _);
                let f = _mm512_cvtepi32_ps(_mm512_sub_epi32(x, corr[v]));
                let y = _mm512_fmadd_ps(f, _mm512_mul_ps(sa, ws[v]), bias[v]);
                _mm512_storeu_ps(c.add(r * ldc + 16 * v), y);
            }
        }
    }
}

/// `c[0..rows][0..cols]` (row stride `ldc`) = 32 rows of A (bf16 pairs, rows `lda` u32
/// apart, all 32 readable) · one 32-column B panel (`[pairs][32]` u32), `pairs` a multiple of
/// 16: per 16 pairs, two A tiles (rows 0-15, 16-31) and two B tiles (columns 0-15, 16-31)
/// make four `tdpbf16ps` (16x16x32 bf16 multiply-adds into f32 each). A whole 32x32 block is
/// stored straight into `c`; a partial one through a stack tile. Tiles must be configured on
/// this thread ([`Tiles`]).
#[allow(clippy::too_many_arguments)] // the bf16 micro-kernel interface
#[target_feature(enable = "avx512f")]
pub unsafe fn kernel_bf16(
    pairs: usize,
    a: *const u32,
    lda: usize,
    rows: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    #[repr(align(64))]
    struct Block([std::mem::MaybeUninit<f32>; 32 * 32]);
    let mut block = Block([std::mem::MaybeUninit::uninit(); 32 * 32]);
    let direct = rows == 32 && cols == 32;
    let (out, ld) = if direct {
        (c, ldc)
    } else {
        (block.0.as_mut_ptr().cast::<f32>(), 32)
    };
    // SAFETY: A's 32 rows hold `pairs` u32 each, B's panel pairs x 32; `out` is c's 32x32
    // block (direct) or the stack block; the caller configured the tiles.
    unsafe {
        tile_loop!(
            "tdpbf16ps",
            TileLoop {
                steps: pairs / 16,
                a: a.cast(),
                a16: a.add(16 * lda).cast(),
                a_stride: 4 * lda,
                a_step: 64,
                b: b.cast(),
                out: out.cast(),
                out16: out.add(16 * ld).cast(),
                out_stride: 4 * ld,
            }
        );
        if !direct {
            let mask = ((1u32 << cols.min(16)) - 1) as __mmask16;
            let mask_hi = ((1u32 << cols.saturating_sub(16).min(16)) - 1) as __mmask16;
            for r in 0..rows {
                let from = out.add(32 * r);
                _mm512_mask_storeu_ps(c.add(r * ldc), mask, _mm512_load_ps(from));
                if cols > 16 {
                    let hi = _mm512_load_ps(from.add(16));
                    _mm512_mask_storeu_ps(c.add(r * ldc + 16), mask_hi, hi);
                }
            }
        }
    }
}

/// `iters` x four independent `tdpbusd` on tiles of ones (AMX skips work on zero tiles):
/// the instruction's peak rate.
pub unsafe fn tdpbusd_loop(iters: usize) {
    let ones = [1u8; 1024];
    let _tiles = Tiles::configure();
    // SAFETY: AMX is available (the caller's contract); tiles configured above; `ones` is one
    // 16 x 64-byte tile.
    unsafe {
        asm!(
            "tileloadd tmm4, [{p} + {s64}]",
            "tileloadd tmm5, [{p} + {s64}]",
            "tileloadd tmm6, [{p} + {s64}]",
            "tileloadd tmm7, [{p} + {s64}]",
            "2:",
            "tdpbusd tmm0, tmm4, tmm6",
            "tdpbusd tmm1, tmm4, tmm7",
            "tdpbusd tmm2, tmm5, tmm6",
            "tdpbusd tmm3, tmm5, tmm7",
            "dec {n}",
            "jnz 2b",
            p = in(reg) ones.as_ptr(),
            s64 = in(reg) 64usize,
            n = inout(reg) iters.max(1) => _,
            options(nostack, readonly),
        );
    }
}

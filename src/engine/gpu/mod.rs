//! WebGPU kernels (WGSL, on a wgpu device of their own: [`Gpu::request`]) for the layers of CLIPSeg:
//! the whole transformer layer ([`GpuLayer`]: `matmul.wgsl`, `layer_norm.wgsl`, and attention
//! as `scores.wgsl`, `softmax.wgsl`, `pv.wgsl`) and plain matrix products ([`GpuLinear`],
//! [`chain`]: the patch embedding, the decoder's reduces and its convolutional head). They take
//! plain weights ([`crate::engine::layer`]) and host slices; the engine decides where they run.
//! A matrix given as its pack stores it ([`crate::engine::layer::Weight::F16`] and `Int`)
//! stays so in GPU memory, a half (f16), a quarter (8 bits) or an eighth (4 bits) of its f32
//! size, and `matmul_f16.wgsl` / `matmul_q8.wgsl` / `matmul_q4.wgsl` decode it in registers to
//! the very floats the pack's decoder gives (f16 exactly; int times scale, one f32 product).
//!
//! Why hand-written kernels: on a CPU implementation of WebGPU (Chromium's SwiftShader, what a
//! browser without a usable GPU falls back to) burn-wgpu's matmul, which stages tiles in
//! workgroup memory behind barriers, is an order of magnitude slower than a register-blocked
//! kernel without barriers (`matmul.wgsl`, written by `tools/gen_matmul_wgsl.py`; compared by
//! `bench/swiftshader/run.mjs`; measured: docs/benchmarks-history.md). A whole layer is 9
//! dispatches (Q, K and V one matmul; bias, activation and residual in the matmul's epilogue;
//! attention's two products register-blocked the same way) instead of ~30 burn ops. On a real
//! GPU, whose registers would not hold the blocked kernel's 384 accumulators per invocation,
//! the matmul runs tiled in workgroup memory instead (`matmul_tiled*.wgsl`, [`Matmul`], chosen
//! from the adapter: CPU adapters keep the blocked kernel; not yet timed on a real GPU). With
//! the blocked kernel, attention's products take larger blocks too (`scores_wide.wgsl`,
//! `pv_wide.wgsl`, from `tools/gen_attention_wgsl.py`): on a CPU adapter every read from a buffer
//! is a gather, so the more products per value read the better, up to what the adapter's
//! compiler takes in reasonable time (the first pass compiles them).
//!
//! A tower's layers run back to back in one submission; only its input and the kept hidden
//! states cross to the host (awaited, never blocked on, so it works in the browser). The
//! buffers and bind groups of a run are built once per shape and replayed (`Plan`).

mod adapter;
mod device;
mod layer;
mod linear;

pub use adapter::{Matmul, override_f16_math, override_int8_dot};
pub use device::Gpu;
pub use layer::{GpuLayer, forward};
pub use linear::{GpuLinear, chain};

/// The kernels on this machine's adapter (lavapipe in CI), set up once per test process.
#[cfg(all(test, feature = "native"))]
pub(crate) fn test_gpu() -> std::sync::Arc<Gpu> {
    static GPU: std::sync::OnceLock<std::sync::Arc<Gpu>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = crate::engine::block_on(Gpu::request()).expect("a GPU adapter (lavapipe)");
        std::sync::Arc::new(gpu.with(Matmul::Blocked, false, false))
    })
    .clone()
}

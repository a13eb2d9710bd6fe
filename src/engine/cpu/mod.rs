//! CPU kernels (natively and in wasm) for the layers of CLIPSeg: packed f32 products
//! ([`gemm`]), int8 products for quantized packs ([`qgemm`]: AMX tiles, AVX-512 VNNI, AVX2 or
//! wasm simd128), bf16 products where they are faster than f32 ([`bf16`]), and the whole
//! transformer layer on them ([`PackedLayer`]). They take plain weights
//! ([`crate::engine::layer`]) and host slices; the engine decides where they run.

pub mod aligned;
#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
pub mod common;
pub mod gemm;
mod layer;
pub mod qgemm;

pub use common::supports;
pub use layer::{PackedLayer, Precision, Projection, Scratch, bf16_available};

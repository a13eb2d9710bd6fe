//! What several subcommands share: the backend and precision options, the device, image files.

use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;

use clipseg::burn::tensor::{Device, DeviceKind};
use clipseg::engine::{Gpu, Kernels, Precision, block_on};

#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Train,
    Val,
    Test,
    Miniv,
}

impl SplitArg {
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Val => "val",
            Self::Test => "test",
            Self::Miniv => "miniv",
        }
    }
}

/// What the CLIP encoders' projections compute in on the CPU backend.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum PrecisionArg {
    /// int8-bf16 for a q8/q4 pack (weights already 8-bit; int8-a7 where that is faster here),
    /// f32 otherwise.
    Auto,
    /// f32 (a quantized pack's weights decoded: the floats the WebGPU engine computes with).
    F32,
    /// int8 weights and activations, also for an f32 model (dynamic quantization), attention
    /// in f32: the browser's CPU engine's arithmetic.
    Int8,
    /// int8 weights, activations quantized to 7 bits (asymmetric per row), attention in f32:
    /// the browser's relaxed-SIMD build's arithmetic; the default for a q8/q4 pack where it
    /// is this CPU's fastest (AVX2 without VNNI).
    Int8A7,
    /// int8, and attention in bf16 where that is faster here (AMX, or AVX-512 BF16 at twice
    /// the f32 rate; else as int8).
    Int8Bf16,
}

impl PrecisionArg {
    /// `None`: the engine's own choice.
    pub fn precision(self) -> Option<Precision> {
        match self {
            Self::Auto => None,
            Self::F32 => Some(Precision::F32),
            Self::Int8 => Some(Precision::Int8),
            Self::Int8A7 => Some(Precision::Int8A7),
            Self::Int8Bf16 => Some(Precision::Int8Bf16),
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum Backend {
    /// burn's `flex` CPU backend.
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12 or GL): the engine's WGSL kernels (what the
    /// browser runs on WebGPU); burn's wgpu runtime for training.
    Wgpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        }
    }

    /// burn's device for the model as stored (training): flex, or burn's wgpu runtime.
    pub fn device(self) -> Device {
        match self {
            Self::Cpu => Device::flex(),
            Self::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
        }
    }

    /// Where an engine runs: on flex with its CPU kernels at `precision`, or with the WGSL
    /// kernels on a GPU (what lies between them on flex, as in the browser).
    pub fn engine(self, precision: PrecisionArg) -> Result<(Device, Kernels)> {
        let kernels = match self {
            Self::Cpu => Kernels::Packed(precision.precision()),
            Self::Wgpu => Kernels::Gpu(block_on(Gpu::request()).context("can't start wgpu")?),
        };
        Ok((Device::flex(), kernels))
    }
}

/// Decodes an image file to RGB8 as a browser shows it (EXIF orientation applied):
/// `clipseg::native::image_file`.
pub fn load_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let image = clipseg::native::image_file::load_rgb(path)?;
    Ok((image.pixels, image.width, image.height))
}

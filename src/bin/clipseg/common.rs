//! What several subcommands share: the backend and precision options, the device, image files.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use clipseg::burn::tensor::Device;
use clipseg::engine::{Kernels, Precision, register_gpu};
use clipseg::segmenter::MAX_SIDE;

/// The image decoder's memory cap: a bigger file is refused before its pixels are allocated.
const MAX_DECODE_BYTES: u64 = 1 << 30;

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

    /// The engine's kernels at this precision.
    pub fn kernels(self) -> Kernels {
        Kernels::Packed(self.precision())
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum Backend {
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn-wgpu (Vulkan, Metal, DX12 or GL through wgpu).
    Wgpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        }
    }

    pub fn device(self) -> Result<Device> {
        Ok(match self {
            Self::Cpu => Device::flex(),
            Self::Wgpu => {
                let (device, setup) = Device::wgpu_options()
                    .init_with_setup()
                    .context("can't start wgpu")?;
                // Engines built there run their layers on clipseg's kernels.
                register_gpu(&device, &setup);
                device
            }
        })
    }
}

/// Decodes any supported image file to RGB8, refusing oversized ones from their header alone.
pub fn load_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let open = || -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
        image::ImageReader::open(path)
            .with_context(|| format!("can't open {}", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("can't read {}", path.display()))
    };
    let (w, h) = open()?
        .into_dimensions()
        .with_context(|| format!("{} is not a readable image", path.display()))?;
    if w == 0 || h == 0 {
        bail!("{} is empty ({w}x{h} px)", path.display());
    }
    let max = MAX_SIDE as u32;
    if w > max || h > max {
        bail!(
            "{} is {w}x{h} px; the limit is {max} px per side",
            path.display()
        );
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max);
    limits.max_image_height = Some(max);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = open()?;
    reader.limits(limits);
    let decoded = reader
        .decode()
        .with_context(|| format!("{} is not a readable image", path.display()))?;
    Ok((decoded.into_rgb8().into_raw(), w as usize, h as usize))
}

//! `clipseg predict`: one image, one or more prompts, logits and masks out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use clipseg::engine::block_on;
use clipseg::{Segmenter, npy};

use crate::common::{Backend, PrecisionArg, load_rgb};

/// Segment one image for one or more prompts.
#[derive(clap::Args)]
pub struct Args {
    /// Model pack (`clipseg convert`) or HF model folder (config.json, model.safetensors,
    /// tokenizer.json, preprocessor_config.json).
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    image: PathBuf,
    /// Repeat for several prompts; the image is encoded once.
    #[arg(long = "prompt", required = true)]
    prompts: Vec<String>,
    /// Write raw logits as float32 .npy, shape [prompts, S, S] (S = 352 for CLIPSeg).
    #[arg(long)]
    logits: Option<PathBuf>,
    /// Write masks at the image's size: OUT itself for one prompt, OUT-0.png, OUT-1.png, ... for several.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Probability above which a pixel is in the mask.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    precision: PrecisionArg,
    /// Print load, image-encoding and prompt timings to stderr.
    #[arg(long)]
    verbose: bool,
}

pub fn run(args: Args) -> Result<()> {
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!("--threshold must be within 0..=1, got {}", args.threshold);
    }
    if args.logits.is_none() && args.mask.is_none() {
        bail!("nothing to write: give --logits OUT.npy and/or --mask OUT.png");
    }
    let (rgb, width, height) = load_rgb(&args.image)?;
    let device = args.backend.device()?;
    let start = Instant::now();
    let segmenter = Segmenter::open(&args.model, &device, args.precision.kernels())?;
    let loaded = Instant::now();
    let image = block_on(segmenter.encode_image(&rgb, width, height))?;
    device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let encoded = Instant::now();
    let maps = block_on(segmenter.segment(&image, &args.prompts))?;
    let (count, side) = (maps.count(), maps.side());
    if args.verbose {
        let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
        eprintln!(
            "load {:.3} s, image encoding {:.3} s, {count} prompt(s) {:.3} s",
            secs(start, loaded),
            secs(loaded, encoded),
            secs(encoded, Instant::now())
        );
    }
    if let Some(path) = &args.logits {
        std::fs::write(path, npy::to_bytes(maps.logits(), &[count, side, side]))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.mask {
        for k in 0..count {
            let pixels = maps.mask(k, width, height, args.threshold);
            let out = mask_path(path, k, count);
            image::GrayImage::from_raw(width as u32, height as u32, pixels)
                .context("mask buffer size")?
                .save(&out)
                .with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(())
}

/// `OUT.png` for one prompt; `OUT-0.png`, `OUT-1.png`, ... in prompt order for several.
fn mask_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or_else(|| "mask".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(|| "png".into(), |e| e.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-{index}.{ext}"))
}

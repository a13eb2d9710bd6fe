//! `clipseg eval`: a model on a PhraseCut-format split, scores as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use clipseg::Segmenter;
use clipseg::data::PhraseCut;
use clipseg::eval::{EvalOptions, evaluate};

use crate::common::{Backend, PrecisionArg, SplitArg};

/// Score a model on a PhraseCut-format split: seed, CLIPSeg and official PhraseCut metrics.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset folder: refer_{split}.json, image_data_split.json, images/.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = SplitArg::Val)]
    split: SplitArg,
    /// Model pack or HF model folder.
    #[arg(long)]
    model: PathBuf,
    /// Where the metrics JSON goes.
    #[arg(long)]
    out: PathBuf,
    /// Also write float32 {task_id}.npy logits, [352, 352], into this folder.
    #[arg(long)]
    save_logits: Option<PathBuf>,
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    precision: PrecisionArg,
}

pub fn run(args: Args) -> Result<()> {
    let dataset = PhraseCut::open(&args.data, args.split.name())?;
    let (device, kernels) = args.backend.engine(args.precision)?;
    let segmenter = Segmenter::open(&args.model, &device, kernels)?;
    let bar = ProgressBar::new(dataset.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks, {elapsed} elapsed, ETA {eta}")
            .context("progress template")?,
    );
    let options = EvalOptions {
        threshold: args.threshold,
        save_logits: args.save_logits.as_deref(),
    };
    let report = evaluate(&segmenter, &dataset, &options, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&report).context("serialising metrics")?;
    let out = &args.out;
    std::fs::write(out, json + "\n").with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "{} tasks scored ({} skipped): mIoU {:.4}, PhraseCut mean IoU {:.4} -> {}",
        report.count,
        report.skipped,
        report.clipseg.miou,
        report.phrasecut.mean_iou,
        out.display()
    );
    Ok(())
}

//! `clipseg train`: a decoder fitted on frozen CLIP, with checkpoints, Ctrl-C and `--resume`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use clipseg::Checkpoint;
use clipseg::config::UNetConfig;
use clipseg::data::{PhraseCut, PromptSet};
use clipseg::train::{DecoderKind, Event, Loss, RunFile, RunInfo, Session, TrainConfig, train};

use crate::common::{Backend, SplitArg};

/// Train a decoder (CLIPSeg's transformer or a U-Net) on frozen CLIP encoders; the
/// finished run folder is an HF checkpoint. Ctrl-C stops with a checkpoint.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset folder in PhraseCut's layout.
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// HF model folder or pack: the frozen encoders and (without --random-init) the starting decoder.
    #[arg(long, required_unless_present = "resume")]
    model: Option<PathBuf>,
    /// transformer (CLIPSeg's) or unet (conv decoder over several CLIP depths).
    #[arg(long, default_value = "transformer")]
    decoder: DecoderKind,
    /// Channels of the U-Net decoder.
    #[arg(long, default_value_t = 64)]
    unet_width: usize,
    /// bce, dice or bce+dice.
    #[arg(long, default_value = "bce+dice")]
    loss: Loss,
    #[arg(long, required_unless_present = "resume")]
    steps: Option<usize>,
    /// Run folder: train.json, log.csv, checkpoint/, and the finished HF checkpoint.
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Samples per micro-batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Micro-batches per optimisation step (gradient accumulation).
    #[arg(long, default_value_t = 1)]
    accum: usize,
    /// Peak learning rate, cosine-decayed to --lr-min (paper: 1e-3 -> 1e-4).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    lr_min: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start from a freshly initialised decoder instead of the checkpoint's.
    #[arg(long)]
    random_init: bool,
    /// Probability of a negative sample (another phrase, empty target).
    #[arg(long, default_value_t = 0.0)]
    negatives: f64,
    /// Probability of a horizontal flip (left/right swapped in the phrase, or no flip).
    #[arg(long, default_value_t = 0.0)]
    flip: f64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 500)]
    checkpoint_every: usize,
    /// Continue the run in this folder from its last checkpoint, with its train.json settings.
    #[arg(long, conflicts_with_all = ["data", "model", "steps", "out", "decoder", "unet_width",
        "loss", "batch", "accum", "lr", "lr_min", "seed", "random_init", "negatives", "flip", "split"])]
    resume: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
}

pub fn run(args: Args) -> Result<()> {
    let resuming = args.resume.is_some();
    let (run, out) = match (args.resume, args.data, args.model, args.steps, args.out) {
        (Some(dir), ..) => (RunFile::read(&dir)?, dir),
        (None, Some(data), Some(model), Some(steps), Some(out)) => {
            let config = TrainConfig {
                decoder: args.decoder,
                unet: UNetConfig {
                    width: args.unet_width,
                },
                loss: args.loss,
                steps,
                batch: args.batch,
                accum: args.accum,
                lr: args.lr,
                lr_min: args.lr_min,
                seed: args.seed,
                random_init: args.random_init,
                prompts: PromptSet::ShufflePlus,
                negatives: args.negatives,
                flip: args.flip,
            };
            let info = RunInfo {
                data: data.display().to_string(),
                split: args.split.name().into(),
                model: model.display().to_string(),
                backend: args.backend.name().into(),
                command: command_line(),
            };
            let run = RunFile {
                config,
                info,
                seconds: None,
                images_per_s: None,
            };
            (run, out)
        }
        _ => bail!("give --data, --model, --steps and --out, or --resume RUN"),
    };
    train_run(&run, &out, resuming, args.checkpoint_every)
}

/// Set by Ctrl-C: training stops after the current step and writes a checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

fn train_run(run: &RunFile, out: &Path, resume: bool, checkpoint_every: usize) -> Result<()> {
    let info = &run.info;
    let backend = Backend::from_str(&info.backend, false).map_err(|_| {
        anyhow::anyhow!(
            "{}: unknown backend {:?} (cpu, wgpu)",
            out.join("train.json").display(),
            info.backend
        )
    })?;
    let dataset = PhraseCut::open(&info.data, &info.split)?;
    // As stored: the run folder gets the whole model, frozen CLIP weights included.
    let mut checkpoint = Checkpoint::open(Path::new(&info.model), &backend.device())?;
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nstopped without a new checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: stopping after this step with a checkpoint (again to quit at once)");
    })
    .context("installing the Ctrl-C handler")?;
    let steps = run.config.steps as u64;
    let bar = ProgressBar::new(steps).with_style(
        ProgressStyle::with_template("{bar:40} step {pos}/{len} {msg} ETA {eta}")
            .context("progress template")?,
    );
    let mut running_iou = None;
    let session = Session {
        out,
        resume,
        checkpoint_every,
        stop: &STOP,
    };
    let summary = train(
        &mut checkpoint,
        &dataset,
        run,
        &session,
        |event| match event {
            Event::Step(log) => {
                let iou = running_iou.map_or(log.iou, |r: f32| 0.9 * r + 0.1 * log.iou);
                running_iou = Some(iou);
                bar.set_message(format!("loss {:.4} IoU {iou:.3}", log.loss));
                bar.set_position(log.step as u64 + 1);
            }
            Event::Skipped { task_id, reason } => {
                bar.suspend(|| eprintln!("skipping task {task_id}: {reason}"));
            }
            Event::Checkpoint { step } => bar.println(format!("checkpoint after step {step}")),
        },
    )?;
    bar.finish_and_clear();
    if !summary.skipped.is_empty() {
        eprintln!(
            "{} tasks skipped (listed in checkpoint/state.json)",
            summary.skipped.len()
        );
    }
    if let Some(step) = summary.interrupted_at {
        eprintln!(
            "stopped before step {step} of {steps}; continue with: clipseg train --resume {}",
            out.display()
        );
        std::process::exit(130);
    }
    let last = summary.logs.last().map_or(f32::NAN, |l| l.loss);
    eprintln!(
        "{steps} steps, final loss {last:.4}, {:.2} images/s -> {}",
        summary.images_per_s,
        out.display()
    );
    Ok(())
}

/// This process's arguments as one shell-pasteable line (for train.json).
fn command_line() -> String {
    std::iter::once("clipseg".to_string())
        .chain(
            std::env::args()
                .skip(1)
                .map(|a| clipseg::report::shell_quote(&a)),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

//! `clipseg`: the command-line face of the library (predict, convert, train, eval, report, bench,
//! synth, fetch).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use indicatif::{ProgressBar, ProgressStyle};

use clipseg::burn::tensor::Device;
use clipseg::cpu::Precision;
use clipseg::data::{PhraseCut, PromptSet, SyntheticSpec, generate};
use clipseg::eval::{EvalOptions, evaluate};
use clipseg::model::unet::UNetConfig;
use clipseg::segmenter::{Load, read_f32, sigmoid};
use clipseg::train::{DecoderKind, Event, Loss, RunFile, RunInfo, Session, TrainConfig, train};
use clipseg::weights::pack::{self, Quant};
use clipseg::{Segmenter, hub, npy, preprocess};

/// Largest image side accepted, and the decoder's memory cap: a bigger file is refused before
/// its pixels are allocated.
const MAX_SIDE: u32 = 16384;
const MAX_DECODE_BYTES: u64 = 1 << 30;

#[derive(Parser)]
#[command(
    name = "clipseg",
    version,
    about = "Segment images from text prompts with CLIPSeg"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment one image for one or more prompts.
    Predict {
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
    },
    /// Score a model on a PhraseCut-format split: seed, CLIPSeg and official PhraseCut metrics.
    Eval {
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
    },
    /// Train a decoder (CLIPSeg's transformer or a U-Net) on frozen CLIP encoders; the
    /// finished run folder is an HF checkpoint. Ctrl-C stops with a checkpoint.
    Train {
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
    },
    /// Write a model as one pack file for the browser (and `--model`), with a .sha256 beside it.
    Convert {
        /// HF model folder or an existing pack.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// f32, f16, or 8-/4-bit weight quantization of the large matrices.
        #[arg(long, default_value = "q8")]
        quant: String,
    },
    /// Time a full pass (image + prompt) and a re-prompt of an encoded image; prints one JSON line.
    Bench {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        image: PathBuf,
        #[arg(long, default_value = "a photo of a cat")]
        prompt: String,
        /// Timed runs after one warm-up; medians are reported.
        #[arg(long, default_value_t = 5)]
        iters: usize,
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
        precision: PrecisionArg,
        /// cpu: also time burn's own ops (the unpacked model) in the same process first, and
        /// print the ratio.
        #[arg(long)]
        compare_burn: bool,
    },
    /// Write a synthetic dataset in PhraseCut's format (coloured shapes, phrases, negatives).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 40)]
        images: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Download an HF model folder (resumable, checksums verified).
    Fetch {
        #[arg(long, default_value = "CIDAS/clipseg-rd64-refined")]
        repo: String,
        #[arg(long, default_value = "main")]
        revision: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Compare training runs: a markdown table plus loss and IoU charts (SVG) beside it.
    Report {
        /// Run folders written by `clipseg train` (with `metrics.json` from `clipseg eval` when
        /// evaluated), in table order.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The markdown file; the charts go beside it as <stem>-loss.svg and <stem>-iou.svg.
        #[arg(long)]
        out: PathBuf,
        /// Markdown copied verbatim under the title.
        #[arg(long)]
        notes: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Val,
    Test,
    Miniv,
}

impl SplitArg {
    fn name(self) -> &'static str {
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
enum PrecisionArg {
    /// int8-bf16 for a q8/q4 pack (weights already 8-bit), f32 otherwise.
    Auto,
    /// f32 (a quantized pack's weights dequantized, as the WebGPU engine runs them).
    F32,
    /// int8 weights and activations, also for an f32 model (dynamic quantization), attention
    /// in f32: the browser's CPU engine's arithmetic.
    Int8,
    /// int8, and attention in bf16 where that is faster here (AMX, or AVX-512 BF16 at twice
    /// the f32 rate; else as int8).
    Int8Bf16,
}

impl PrecisionArg {
    /// `None`: the segmenter's own choice.
    fn precision(self) -> Option<Precision> {
        match self {
            Self::Auto => None,
            Self::F32 => Some(Precision::F32),
            Self::Int8 => Some(Precision::Int8),
            Self::Int8Bf16 => Some(Precision::Int8Bf16),
        }
    }

    fn load(self) -> Load {
        Load::Inference(self.precision())
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Backend {
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn-wgpu (Vulkan, Metal, DX12 or GL through wgpu).
    Wgpu,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Predict {
            model,
            image,
            prompts,
            logits,
            mask,
            threshold,
            backend,
            precision,
            verbose,
        } => {
            let outputs = Outputs {
                logits: logits.as_deref(),
                mask: mask.as_deref(),
                threshold,
            };
            predict(
                &model, &image, &prompts, &outputs, backend, precision, verbose,
            )
        }
        Command::Eval {
            data,
            split,
            model,
            out,
            save_logits,
            threshold,
            backend,
            precision,
        } => {
            let dataset = PhraseCut::open(&data, split.name())?;
            let segmenter = Segmenter::open_with(&model, &device(backend)?, precision.load())?;
            let bar = ProgressBar::new(dataset.len() as u64).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} tasks, {elapsed} elapsed, ETA {eta}",
                )
                .context("progress template")?,
            );
            let options = EvalOptions {
                threshold,
                save_logits: save_logits.as_deref(),
            };
            let report = evaluate(&segmenter, &dataset, &options, |done, _| {
                bar.set_position(done as u64)
            })?;
            bar.finish_and_clear();
            let json = serde_json::to_string_pretty(&report).context("serialising metrics")?;
            std::fs::write(&out, json + "\n")
                .with_context(|| format!("writing {}", out.display()))?;
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
        Command::Train {
            data,
            split,
            model,
            decoder,
            unet_width,
            loss,
            steps,
            out,
            batch,
            accum,
            lr,
            lr_min,
            seed,
            random_init,
            negatives,
            flip,
            checkpoint_every,
            resume,
            backend,
        } => {
            let resuming = resume.is_some();
            let (run, out) = match (resume, data, model, steps, out) {
                (Some(dir), ..) => (RunFile::read(&dir)?, dir),
                (None, Some(data), Some(model), Some(steps), Some(out)) => {
                    let config = TrainConfig {
                        decoder,
                        unet: UNetConfig { width: unet_width },
                        loss,
                        steps,
                        batch,
                        accum,
                        lr,
                        lr_min,
                        seed,
                        random_init,
                        prompts: PromptSet::ShufflePlus,
                        negatives,
                        flip,
                    };
                    let info = RunInfo {
                        data: data.display().to_string(),
                        split: split.name().into(),
                        model: model.display().to_string(),
                        backend: backend.name().into(),
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
            train_command(&run, &out, resuming, checkpoint_every)
        }
        Command::Convert { model, out, quant } => convert(&model, &out, &quant),
        Command::Bench {
            model,
            image,
            prompt,
            iters,
            backend,
            precision,
            compare_burn,
        } => bench(
            &model,
            &image,
            &prompt,
            iters,
            backend,
            precision,
            compare_burn,
        ),
        Command::Synth { out, images, seed } => {
            let spec = SyntheticSpec {
                images,
                seed,
                ..SyntheticSpec::default()
            };
            let summary = generate(&out, &spec)?;
            eprintln!(
                "{} images, {} tasks ({} negatives); train/val/test/miniv images {:?} -> {}",
                summary.images.iter().sum::<usize>(),
                summary.tasks.iter().sum::<usize>(),
                summary.negatives.iter().sum::<usize>(),
                summary.images,
                out.display()
            );
            Ok(())
        }
        Command::Fetch {
            repo,
            revision,
            out,
        } => {
            let endpoint =
                std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
            let request = hub::FetchRequest {
                endpoint,
                repo,
                revision,
                out,
                token: std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
                progress: true,
            };
            let report = hub::fetch(&request)?;
            eprintln!(
                "{} files ({:.1} MB, {} downloaded) of {} at commit {} in {}",
                report.files.len(),
                report.total_bytes() as f64 / 1e6,
                report.downloaded_count(),
                report.repo,
                report.commit.as_deref().unwrap_or("?"),
                report.out.display()
            );
            Ok(())
        }
        Command::Report { runs, out, notes } => {
            let written = clipseg::report::write_report(&runs, &out, notes.as_deref())?;
            eprintln!(
                "{} runs -> {}, {}, {}",
                runs.len(),
                written.markdown.display(),
                written.loss_svg.display(),
                written.iou_svg.display()
            );
            Ok(())
        }
    }
}

/// Set by Ctrl-C: training stops after the current step and writes a checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

fn train_command(run: &RunFile, out: &Path, resume: bool, checkpoint_every: usize) -> Result<()> {
    let info = &run.info;
    let backend = Backend::from_str(&info.backend, false).map_err(|_| {
        anyhow::anyhow!(
            "{}: unknown backend {:?} (cpu, wgpu)",
            out.join("train.json").display(),
            info.backend
        )
    })?;
    let dataset = PhraseCut::open(&info.data, &info.split)?;
    // Not packed for the CPU path: the run folder gets the whole model, frozen CLIP weights
    // included, and packing releases them.
    let mut segmenter = Segmenter::open(Path::new(&info.model), &device(backend)?)?;
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
        &mut segmenter,
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

fn convert(model: &Path, out: &Path, quant: &str) -> Result<()> {
    let quant: Quant = quant.parse()?;
    let segmenter = Segmenter::open(model, &Device::flex())?;
    let bytes = pack::write(&segmenter, quant)?;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out needs a file name")?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let sha_path = PathBuf::from(format!("{}.sha256", out.display()));
    std::fs::write(&sha_path, pack::sha256_line(&bytes, name))
        .with_context(|| format!("writing {}", sha_path.display()))?;
    eprintln!(
        "{} pack: {:.2} MB -> {} (+ {})",
        quant.name(),
        bytes.len() as f64 / 1e6,
        out.display(),
        sha_path.display()
    );
    Ok(())
}

fn device(backend: Backend) -> Result<Device> {
    Ok(match backend {
        Backend::Cpu => Device::flex(),
        Backend::Wgpu => {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup()
                .context("can't start wgpu")?;
            // Models loaded for inference run their encoder layers on clipseg's kernels.
            clipseg::gpu::register(&device, &setup);
            device
        }
    })
}

struct Outputs<'a> {
    logits: Option<&'a Path>,
    mask: Option<&'a Path>,
    threshold: f32,
}

fn predict(
    model_dir: &Path,
    image_path: &Path,
    prompts: &[String],
    outputs: &Outputs,
    backend: Backend,
    precision: PrecisionArg,
    verbose: bool,
) -> Result<()> {
    let Outputs {
        logits: logits_out,
        mask: mask_out,
        threshold,
    } = *outputs;
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold must be within 0..=1, got {threshold}");
    }
    if logits_out.is_none() && mask_out.is_none() {
        bail!("nothing to write: give --logits OUT.npy and/or --mask OUT.png");
    }
    let (rgb, width, height) = load_rgb(image_path)?;
    let device = device(backend)?;
    let start = Instant::now();
    let segmenter = Segmenter::open_with(model_dir, &device, precision.load())?;
    let loaded = Instant::now();
    let image = segmenter.encode_image(&rgb, width, height)?;
    device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let encoded = Instant::now();
    let logits = segmenter.segment(&image, prompts)?;
    let [count, h, w] = logits.dims();
    let values = read_f32(logits)?;
    if verbose {
        let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
        eprintln!(
            "load {:.3} s, image encoding {:.3} s, {count} prompt(s) {:.3} s",
            secs(start, loaded),
            secs(loaded, encoded),
            secs(encoded, Instant::now())
        );
    }

    if let Some(path) = logits_out {
        std::fs::write(path, npy::to_bytes(&values, &[count, h, w]))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = mask_out {
        for (k, map) in values.chunks_exact(h * w).enumerate() {
            let resized = preprocess::resize_bilinear_f32(map, h, w, height, width);
            let pixels = resized
                .iter()
                .map(|&l| if sigmoid(l) > threshold { 255 } else { 0 })
                .collect();
            let out = mask_path(path, k, count);
            image::GrayImage::from_raw(width as u32, height as u32, pixels)
                .context("mask buffer size")?
                .save(&out)
                .with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(())
}

/// Medians over `iters` runs after a warm-up; each run ends with the logits read back, so
/// asynchronous backends are timed to completion. On cpu the packed path is timed, after
/// burn's own ops when `compare_burn` asks for the reference in the same process.
fn bench(
    model_dir: &Path,
    image_path: &Path,
    prompt: &str,
    iters: usize,
    backend: Backend,
    precision: PrecisionArg,
    compare_burn: bool,
) -> Result<()> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    if compare_burn && backend != Backend::Cpu {
        bail!("--compare-burn needs --backend cpu");
    }
    let (rgb, width, height) = load_rgb(image_path)?;
    let device = device(backend)?;
    // As `predict` loads (packing each layer as it arrives), unless burn's own ops are timed
    // first: then the whole model loads and is packed after.
    let start = Instant::now();
    let mut segmenter = if compare_burn {
        Segmenter::open(model_dir, &device)?
    } else {
        Segmenter::open_with(model_dir, &device, precision.load())?
    };
    let open_s = start.elapsed().as_secs_f64();
    let prompts = [prompt];
    let time = |segmenter: &Segmenter| -> Result<(f64, f64, f64)> {
        let run = |features: Option<&clipseg::model::ImageFeatures>| -> Result<f64> {
            let start = Instant::now();
            let encoded;
            let features = match features {
                Some(f) => f,
                None => {
                    encoded = segmenter.encode_image(&rgb, width, height)?;
                    &encoded
                }
            };
            let logits = segmenter.segment(features, &prompts)?;
            read_f32(logits)?;
            Ok(start.elapsed().as_secs_f64())
        };
        let first_s = run(None)?;
        let full: Vec<f64> = (0..iters).map(|_| run(None)).collect::<Result<_>>()?;
        let features = segmenter.encode_image(&rgb, width, height)?;
        let reprompt: Vec<f64> = (0..iters)
            .map(|_| run(Some(&features)))
            .collect::<Result<_>>()?;
        Ok((first_s, median(full), median(reprompt)))
    };
    let mut reference = None;
    let mut load_s = open_s;
    if compare_burn {
        reference = Some(time(&segmenter)?);
        let pack_start = Instant::now();
        segmenter.pack_for_cpu(precision.precision())?;
        // Reading the files plus packing; the burn runs in between are not load.
        load_s += pack_start.elapsed().as_secs_f64();
    }
    let (first_s, full_s, reprompt_s) = time(&segmenter)?;
    let tokens = segmenter.tokenize(&prompts)?[0].len();
    let gflop = pass_gflop(segmenter.config(), segmenter.preprocess.height, tokens);
    let mut line = serde_json::json!({
        "backend": format!("{device:?}"),
        "iters": iters,
        "load_s": load_s,
        "first_pass_s": first_s,
        "full_pass_s": full_s,
        "reprompt_s": reprompt_s,
        "tokens": tokens,
        "gflop": gflop,
        "gflops": gflop / full_s,
    });
    if backend == Backend::Wgpu {
        let packed = segmenter.model.is_packed_for_gpu();
        line["gpu_path"] = if packed { "clipseg kernels" } else { "burn" }.into();
    }
    if backend == Backend::Cpu {
        line["cpu_path"] = if segmenter.model.is_packed_for_cpu() {
            "packed"
        } else {
            "burn"
        }
        .into();
        line["kernel"] = clipseg::cpu::gemm::kernel_name().into();
        let threads = rayon::current_num_threads() as f64;
        line["threads"] = rayon::current_num_threads().into();
        let precision = segmenter.cpu_precision;
        let int8 = clipseg::cpu::qgemm::kernel_name()
            .filter(|_| matches!(precision, Some(Precision::Int8 | Precision::Int8Bf16)));
        let bf16 = precision.is_some_and(Precision::bf16_attention);
        line["attention"] = if bf16 { "bf16" } else { "f32" }.into();
        // The decoder's projections, as packed beside the towers (bf16 for a quantized pack
        // on AMX).
        let decoder_bf16 = precision.map(Precision::decoder) == Some(Precision::Bf16);
        line["decoder_projections"] = if decoder_bf16 { "bf16" } else { "f32" }.into();
        #[cfg(target_arch = "x86_64")]
        if bf16 {
            line["attention_kernel"] = clipseg::cpu::bf16::kernel_name().into();
        }
        // What decided it without AMX: `vdpbf16ps`'s rate over the f32 FMA's.
        #[cfg(target_arch = "x86_64")]
        if let (Some(Precision::Int8Bf16), Some(x)) = (precision, clipseg::cpu::bf16::speedup()) {
            line["bf16_speedup"] = x.into();
        }
        if let Some(peak) = clipseg::cpu::gemm::peak_gflops() {
            line["peak_gflops_per_thread"] = peak.into();
            // Against the f32 peak only where the projections run in f32.
            if int8.is_none() {
                line["efficiency"] = (gflop / full_s / (peak * threads)).into();
            }
        }
        if let Some(name) = int8 {
            // The projections (~90% of the FLOPs) run in int8, attention in f32.
            line["int8_kernel"] = name.into();
            if let Some(peak) = clipseg::cpu::qgemm::peak_gops() {
                line["peak_int8_gops_per_thread"] = peak.into();
            }
        }
    }
    if let Some((first, full, reprompt)) = reference {
        line["burn_first_pass_s"] = first.into();
        line["burn_full_pass_s"] = full.into();
        line["burn_reprompt_s"] = reprompt.into();
        line["full_pass_vs_burn"] = (full_s / full).into();
    }
    println!("{line}");
    Ok(())
}

/// FLOPs (2 per multiply-add) of one full pass's matmuls: the vision layers run, the text
/// layers at `tokens`, the decoder's reduces and layers. Convolutions, norms and softmax are
/// left out (under 2% of the total for rd64 at 352 px).
fn pass_gflop(c: &clipseg::ClipSegConfig, image: usize, tokens: usize) -> f64 {
    let layer = |seq: usize, hidden: usize, inter: usize| {
        let (s, h, i) = (seq as f64, hidden as f64, inter as f64);
        2.0 * s * (4.0 * h * h + 2.0 * h * i) + 4.0 * s * s * h
    };
    let (t, v) = (&c.text_config, &c.vision_config);
    let seq = (image / v.patch_size).pow(2) + 1;
    let vision = c.vision_layers_used() as f64 * layer(seq, v.hidden_size, v.intermediate_size);
    let text = t.num_hidden_layers as f64 * layer(tokens, t.hidden_size, t.intermediate_size);
    let reduces = c.extract_layers.len() as f64 * 2.0 * (seq * v.hidden_size * c.reduce_dim) as f64;
    let decoder =
        c.extract_layers.len() as f64 * layer(seq, c.reduce_dim, c.decoder_intermediate_size);
    (vision + text + reduces + decoder) / 1e9
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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

/// Decodes any supported image file to RGB8, refusing oversized ones from their header alone.
fn load_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
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
    if w > MAX_SIDE || h > MAX_SIDE {
        bail!(
            "{} is {w}x{h} px; the limit is {MAX_SIDE} px per side",
            path.display()
        );
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = open()?;
    reader.limits(limits);
    let decoded = reader
        .decode()
        .with_context(|| format!("{} is not a readable image", path.display()))?;
    Ok((decoded.into_rgb8().into_raw(), w as usize, h as usize))
}

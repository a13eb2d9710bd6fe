//! `clipseg train`: fits a decoder (CLIPSeg's transformer or our U-Net) on frozen CLIP encoders.
//!
//! The encoders run without autodiff (they are frozen, so no graph is kept for them); only the
//! decoder lives on the autodiff device. A run folder holds:
//!
//! - `train.json`: the settings (enough to `--resume` with nothing else), and when finished the
//!   wall time and images/s;
//! - `log.csv`: one row per optimisation step;
//! - `checkpoint/`: decoder and AdamW state as burnpack files plus the sampler's RNG state,
//!   replaced atomically (`checkpoint.tmp` → rename), so a crash or Ctrl-C while writing never
//!   loses the previous one;
//! - when finished, an HF model folder (`config.json`, `model.safetensors`, tokenizer,
//!   preprocessing) that `predict`, `eval` and `convert` read like any checkpoint.
//!
//! Not here: mixed precision (flex computes in f32; burn's f16 path on wgpu is untested here)
//! and multi-GPU data parallelism.

pub mod loss;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use loss::Loss;

use crate::config::UNetConfig;
use crate::data::{
    PhraseCut, PromptSet, SplitMix64, TaskRef, hflip_sample, resize_nearest, sample_negative_phrase,
};
use crate::engine::executor::host_values as read_f32;
use crate::model::{Decoder, UNetDecoder};
use crate::{Checkpoint, Error};

/// Which decoder a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    Transformer,
    Unet,
}

impl std::str::FromStr for DecoderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "transformer" => Ok(Self::Transformer),
            "unet" => Ok(Self::Unet),
            other => Err(format!("unknown decoder {other:?} (transformer, unet)")),
        }
    }
}

/// Hyper-parameters of a run (the paper's: AdamW, lr 1e-3 cosine-decayed to 1e-4).
/// Everything here must be the same for `--resume` to continue the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub decoder: DecoderKind,
    /// Shape of the U-Net when `decoder` is `unet`.
    pub unet: UNetConfig,
    pub loss: Loss,
    /// Optimisation steps.
    pub steps: usize,
    /// Samples per micro-batch.
    pub batch: usize,
    /// Micro-batches whose gradients are summed into one step (effective batch = batch x accum).
    pub accum: usize,
    pub lr: f64,
    pub lr_min: f64,
    pub seed: u64,
    /// Start from freshly initialised decoder weights instead of the loaded ones.
    pub random_init: bool,
    /// Prompt templates wrapped around each phrase.
    pub prompts: PromptSet,
    /// Probability of replacing a sample's phrase by another one with an empty target.
    pub negatives: f64,
    /// Probability of mirroring a sample; phrases that can't be made true mirrored are kept unflipped.
    pub flip: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            decoder: DecoderKind::Transformer,
            unet: UNetConfig::default(),
            loss: Loss::BceDice,
            steps: 1000,
            batch: 16,
            accum: 1,
            lr: 1e-3,
            lr_min: 1e-4,
            seed: 0,
            random_init: false,
            prompts: PromptSet::ShufflePlus,
            negatives: 0.0,
            flip: 0.0,
        }
    }
}

impl TrainConfig {
    /// Names the first bad setting by its CLI flag.
    fn validate(&self) -> Result<(), Error> {
        let checks = [
            (self.steps > 0, "--steps must be at least 1"),
            (self.batch > 0, "--batch must be at least 1"),
            (self.accum > 0, "--accum must be at least 1"),
            (
                self.lr > 0.0 && self.lr.is_finite(),
                "--lr must be a positive number",
            ),
            (
                (0.0..=self.lr).contains(&self.lr_min),
                "--lr-min must be within 0..=--lr",
            ),
            (
                (0.0..=1.0).contains(&self.negatives),
                "--negatives is a probability (0..=1)",
            ),
            (
                (0.0..=1.0).contains(&self.flip),
                "--flip is a probability (0..=1)",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(Error::Input(message.into())),
            None => Ok(()),
        }
    }
}

/// Where the run came from, recorded in `train.json` so `--resume` and `clipseg report` need
/// nothing else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub data: String,
    pub split: String,
    pub model: String,
    pub backend: String,
    /// The command line that started the run.
    pub command: String,
}

/// `train.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFile {
    #[serde(flatten)]
    pub config: TrainConfig,
    #[serde(flatten)]
    pub info: RunInfo,
    /// Wall time of the last invocation that finished the run (None while unfinished).
    pub seconds: Option<f64>,
    pub images_per_s: Option<f64>,
}

impl RunFile {
    pub fn read(run: &Path) -> Result<Self, Error> {
        let path = run.join("train.json");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
    }

    fn write(&self, run: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Input(e.to_string()))?;
        write_file(&run.join("train.json"), text.as_bytes())
    }
}

/// One logged optimisation step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLog {
    pub step: usize,
    pub lr: f64,
    pub loss: f32,
    /// Mean IoU of the step's masks (sigmoid > 0.5) at the model resolution.
    pub iou: f32,
}

/// What `train` reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    Step(&'a StepLog),
    /// A sample that can't be used; it is never drawn again.
    Skipped {
        task_id: &'a str,
        reason: &'a str,
    },
    Checkpoint {
        step: usize,
    },
}

/// How a call to [`train`] ended.
#[derive(Debug)]
pub struct Summary {
    /// The steps run by this call (a resumed run logs the earlier ones in `log.csv`).
    pub logs: Vec<StepLog>,
    /// `Some(step)` when stopped early: `checkpoint/` holds the state before `step`.
    pub interrupted_at: Option<usize>,
    /// Tasks skipped as unusable, with the reason.
    pub skipped: Vec<(String, String)>,
    pub images_per_s: f64,
}

/// Cosine decay from `lr` to `lr_min` over `steps`.
pub fn cosine_lr(config: &TrainConfig, step: usize) -> f64 {
    let t = step as f64 / config.steps.max(1) as f64;
    config.lr_min + 0.5 * (config.lr - config.lr_min) * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The module the optimiser updates.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per run: boxing would only add an indirection
pub enum Trainable {
    Transformer(Decoder),
    Unet(UNetDecoder),
}

impl Trainable {
    /// Raw activations (`extract_layers` order) and prompt embeddings to logits.
    fn forward(
        &self,
        activations: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        match self {
            Self::Transformer(d) => Ok(d.forward(&d.reduce(activations), conditional)),
            Self::Unet(u) => Ok(u.forward(&u.reduce(activations), conditional)),
        }
    }
}

/// The checkpoint's plain-data part (`checkpoint/state.json`).
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    /// The next step to run.
    step: usize,
    rng: u64,
    skipped: Vec<(String, String)>,
}

/// Where and how a call to [`train`] runs.
pub struct Session<'a> {
    /// The run folder.
    pub out: &'a Path,
    /// Continue the run in `out` from its checkpoint instead of starting one.
    pub resume: bool,
    /// Steps between checkpoints (one is also written at the end and when stopped).
    pub checkpoint_every: usize,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub stop: &'a AtomicBool,
}

/// Trains a decoder on `data` into `session.out`, or continues the run there from its
/// checkpoint (same settings required; on CPU the losses are those of an uninterrupted run).
pub fn train(
    checkpoint: &mut Checkpoint,
    data: &PhraseCut,
    run: &RunFile,
    session: &Session,
    mut on_event: impl FnMut(Event),
) -> Result<Summary, Error> {
    let (out, resume, stop) = (session.out, session.resume, session.stop);
    let checkpoint_every = session.checkpoint_every;
    let config = &run.config;
    config.validate()?;
    if data.is_empty() {
        return Err(Error::Input("the dataset split has no tasks".into()));
    }
    if resume {
        let saved = RunFile::read(out)?;
        if saved.config != *config {
            return Err(Error::Input(format!(
                "{}: the run was started with other settings; resume it with those",
                out.join("train.json").display()
            )));
        }
    } else {
        if out.join("train.json").exists() {
            return Err(Error::Input(format!(
                "{} already holds a run: use --resume to continue it, or another --out",
                out.display()
            )));
        }
        std::fs::create_dir_all(out).map_err(|source| Error::Io {
            path: out.display().to_string(),
            source,
        })?;
        run.write(out)?;
    }

    let base = checkpoint
        .model
        .decoder
        .devices()
        .first()
        .cloned()
        .unwrap_or_else(Device::flex);
    base.seed(config.seed);
    let autodiff = base.clone().autodiff();
    let model_config = checkpoint.config().clone();
    let init = match (config.decoder, &checkpoint.model.unet) {
        (DecoderKind::Transformer, _) if !config.random_init => {
            Trainable::Transformer(checkpoint.model.decoder.clone())
        }
        (DecoderKind::Transformer, _) => Trainable::Transformer(Decoder::new(&model_config, &base)),
        (DecoderKind::Unet, Some(unet))
            if !config.random_init && model_config.unet_decoder.as_ref() == Some(&config.unet) =>
        {
            Trainable::Unet(unet.clone())
        }
        (DecoderKind::Unet, _) => {
            config.unet.validate(&model_config)?;
            Trainable::Unet(UNetDecoder::new(&model_config, &config.unet, &base))
        }
    };
    let mut module = init.to_device(&autodiff).set_require_grad(true).train();
    let mut optimizer = AdamWConfig::new().init();
    let mut state = CheckpointState {
        step: 0,
        rng: config.seed,
        skipped: Vec::new(),
    };
    // A run stopped before its first checkpoint (killed while starting) resumes from step 0.
    if resume && let Some(saved) = load_checkpoint(out, module.clone(), optimizer.clone())? {
        (module, optimizer, state) = saved;
    }
    let log_path = out.join("log.csv");
    let mut csv = open_log(&log_path, state.step)?;
    let io = |source| Error::Io {
        path: log_path.display().to_string(),
        source,
    };

    let mut sampler = Sampler {
        data,
        phrases: if config.negatives > 0.0 {
            data.phrases()
        } else {
            Vec::new()
        },
        rng: SplitMix64::new(state.rng),
        skipped: state.skipped.iter().map(|(id, _)| id.clone()).collect(),
    };
    let mut skipped = state.skipped;
    let mut logs = Vec::new();
    let started = Instant::now();
    let mut images = 0usize;
    let mut interrupted_at = None;
    for step in state.step..config.steps {
        if stop.load(Ordering::SeqCst) {
            interrupted_at = Some(step);
            break;
        }
        let mut accumulator = GradientsAccumulator::new();
        let (mut loss_sum, mut iou_sum) = (0.0f32, 0.0f32);
        for _ in 0..config.accum {
            let batch = sampler.batch(checkpoint, config, &mut |task_id, reason| {
                skipped.push((task_id.to_string(), reason.to_string()));
                on_event(Event::Skipped { task_id, reason });
            })?;
            images += batch.task_ids.len();
            let activations: Vec<Tensor<3>> = batch
                .activations
                .into_iter()
                .map(Tensor::autodiff)
                .collect();
            let logits = module.forward(&activations, batch.conditional.autodiff())?;
            let target = batch.target.autodiff();
            let loss = config.loss.forward(logits.clone(), target.clone());
            let loss_value = scalar(loss.clone().without_autodiff())?;
            if !loss_value.is_finite() {
                return Err(Error::Input(format!(
                    "loss became {loss_value} at step {step} on tasks {}; the last checkpoint is \
                     kept in {}; try a lower --lr",
                    batch.task_ids.join(", "),
                    out.join("checkpoint").display()
                )));
            }
            iou_sum += batch_iou(logits.without_autodiff(), target.without_autodiff())?;
            loss_sum += loss_value;
            let loss = loss.div_scalar(config.accum as f32);
            accumulator.accumulate(
                &module,
                GradientsParams::from_grads(loss.backward(), &module),
            );
        }
        let lr = cosine_lr(config, step);
        module = optimizer.step(lr, module, accumulator.grads());
        let log = StepLog {
            step,
            lr,
            loss: loss_sum / config.accum as f32,
            iou: iou_sum / config.accum as f32,
        };
        writeln!(
            csv,
            "{},{:.6e},{:.6},{:.6}",
            log.step, log.lr, log.loss, log.iou
        )
        .map_err(io)?;
        on_event(Event::Step(&log));
        logs.push(log);
        let next = step + 1;
        if next % checkpoint_every.max(1) == 0
            || next == config.steps
            || stop.load(Ordering::SeqCst)
        {
            csv.flush().map_err(io)?;
            let state = CheckpointState {
                step: next,
                rng: sampler.rng.state(),
                skipped: skipped.clone(),
            };
            save_checkpoint(out, &module, &optimizer, &state)?;
            on_event(Event::Checkpoint { step: next });
        }
    }
    csv.flush().map_err(io)?;
    let seconds = started.elapsed().as_secs_f64();
    let images_per_s = images as f64 / seconds.max(1e-9);
    if interrupted_at.is_none() {
        let trained = module.valid().to_device(&base);
        match trained {
            Trainable::Transformer(decoder) => {
                checkpoint.model.decoder = decoder;
                checkpoint.model.unet = None;
                checkpoint.model.config.unet_decoder = None;
            }
            Trainable::Unet(unet) => {
                checkpoint.model.unet = Some(unet);
                checkpoint.model.config.unet_decoder = Some(config.unet.clone());
            }
        }
        save_run(checkpoint, out)?;
        RunFile {
            seconds: Some(seconds),
            images_per_s: Some(images_per_s),
            ..run.clone()
        }
        .write(out)?;
    }
    Ok(Summary {
        logs,
        interrupted_at,
        skipped,
        images_per_s,
    })
}

/// Opens `log.csv` for appending after keeping the header and the rows of steps before `step`
/// (a resumed run may have logged steps past its last checkpoint).
fn open_log(path: &Path, step: usize) -> Result<std::fs::File, Error> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut kept = String::from("step,lr,loss,iou\n");
    if step > 0 {
        let text = std::fs::read_to_string(path).map_err(io)?;
        for line in text.lines().skip(1).take(step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    write_file(path, kept.as_bytes())?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io)
}

fn save_checkpoint(
    out: &Path,
    module: &Trainable,
    optimizer: &ModuleOptimizer,
    state: &CheckpointState,
) -> Result<(), Error> {
    let tmp = out.join("checkpoint.tmp");
    let current = out.join("checkpoint");
    let old = out.join("checkpoint.old");
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let record = |path: PathBuf, e: burn::store::RecordError| {
        Error::Weights(format!("{}: {e}", path.display()))
    };
    module
        .clone()
        .save_file(tmp.join("decoder.bpk"))
        .map_err(|e| record(tmp.join("decoder.bpk"), e))?;
    optimizer
        .save(tmp.join("optimizer.bpk"))
        .map_err(|e| record(tmp.join("optimizer.bpk"), e))?;
    let text = serde_json::to_string(state).map_err(|e| Error::Input(e.to_string()))?;
    write_file(&tmp.join("state.json"), text.as_bytes())?;
    // Either `checkpoint` or `checkpoint.old` is complete at every moment.
    if current.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&current, &old).map_err(io(&current))?;
    }
    std::fs::rename(&tmp, &current).map_err(io(&tmp))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The last checkpoint in `out`, or None if the run has none yet.
fn load_checkpoint(
    out: &Path,
    module: Trainable,
    optimizer: ModuleOptimizer,
) -> Result<Option<(Trainable, ModuleOptimizer, CheckpointState)>, Error> {
    let Some(dir) = [out.join("checkpoint"), out.join("checkpoint.old")]
        .into_iter()
        .find(|d| d.join("state.json").exists())
    else {
        return Ok(None);
    };
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let damaged = |file: &str, e: burn::store::RecordError| {
        Error::Weights(format!("{}: {e}", dir.join(file).display()))
    };
    let module = module
        .try_load_file(dir.join("decoder.bpk"))
        .map_err(|e| damaged("decoder.bpk", e))?;
    let record = burn::optim::OptimizerRecord::load(dir.join("optimizer.bpk"))
        .map_err(|e| damaged("optimizer.bpk", e))?;
    Ok(Some((module, optimizer.load_record(record), state)))
}

struct Batch {
    /// Raw CLIP activations per extracted layer, [batch, tokens, hidden].
    activations: Vec<Tensor<3>>,
    conditional: Tensor<2>,
    target: Tensor<3>,
    task_ids: Vec<String>,
}

/// Draws training samples: task, prompt template, optional negative and flip.
struct Sampler<'a> {
    data: &'a PhraseCut,
    /// All phrases, for negatives.
    phrases: Vec<String>,
    rng: SplitMix64,
    /// Task ids found unusable; never drawn again.
    skipped: std::collections::HashSet<String>,
}

impl Sampler<'_> {
    /// Draws `config.batch` usable tasks, runs the frozen encoders on them and builds the
    /// targets (ground truth nearest-resized to the model's output size, as CLIPSeg's loader does).
    fn batch(
        &mut self,
        checkpoint: &Checkpoint,
        config: &TrainConfig,
        on_skip: &mut dyn FnMut(&str, &str),
    ) -> Result<Batch, Error> {
        let model = &checkpoint.model;
        let extract = &model.config.extract_layers;
        let mut per_layer: Vec<Vec<Tensor<3>>> = vec![Vec::new(); extract.len()];
        let mut prompts = Vec::with_capacity(config.batch);
        let mut targets = Vec::new();
        let mut task_ids = Vec::new();
        let mut side = (0, 0);
        while prompts.len() < config.batch {
            if self.skipped.len() >= self.data.len() {
                return Err(Error::Input(
                    "no usable task left: every task was skipped (see the messages above)".into(),
                ));
            }
            let index = self.rng.below(self.data.len() as u64) as usize;
            let Some(task) = self.data.get(index) else {
                continue;
            };
            if self.skipped.contains(&task.task.task_id) {
                continue;
            }
            let (mut pixels, mut gt, w, h) = match load_sample(&task) {
                Ok(sample) => sample,
                Err(reason) => {
                    self.skipped.insert(task.task.task_id.clone());
                    on_skip(&task.task.task_id, &reason);
                    continue;
                }
            };
            let mut phrase = task.phrase().to_string();
            if self.rng.chance(config.flip)
                && let Ok(flipped) = hflip_sample(&mut pixels, 3, &mut gt, &phrase)
            {
                phrase = flipped;
            }
            if let Some(other) =
                sample_negative_phrase(&self.phrases, &phrase, config.negatives, &mut self.rng)
            {
                phrase = other.to_string();
                gt = crate::data::Mask::new(gt.width, gt.height);
            }
            let pixel_values = checkpoint.pixel_values(&pixels, w, h)?;
            side = (pixel_values.dims()[2], pixel_values.dims()[3]);
            for (layer, activation) in per_layer
                .iter_mut()
                .zip(model.clip.vision_model.forward(pixel_values, extract)?)
            {
                layer.push(activation);
            }
            prompts.push(config.prompts.sample(&phrase, &mut self.rng));
            targets.extend(
                resize_nearest(&gt.data, w, h, side.1, side.0)
                    .into_iter()
                    .map(f32::from),
            );
            task_ids.push(task.task.task_id.clone());
        }
        let count = prompts.len();
        let device = model.decoder.film_mul.weight.device();
        Ok(Batch {
            activations: per_layer.into_iter().map(|l| Tensor::cat(l, 0)).collect(),
            conditional: model.encode_text(&checkpoint.tokenize(&prompts)?)?,
            target: Tensor::from_data(TensorData::new(targets, [count, side.0, side.1]), &device),
            task_ids,
        })
    }
}

/// A task's RGB pixels and ground truth at the original size, or why it can't be trained on:
/// an image that is missing or doesn't decode, a size other than `image_data_split.json` says,
/// or polygons that all rasterise to nothing (fewer than 3 points, zero area, outside the image).
fn load_sample(task: &TaskRef) -> Result<(Vec<u8>, crate::data::Mask, usize, usize), String> {
    let image = task.load_image().map_err(|e| e.to_string())?;
    let (w, h) = (image.width(), image.height());
    if (w, h) != task.size() {
        return Err(format!(
            "image is {w}x{h} but image_data_split.json says {}x{}",
            task.size().0,
            task.size().1
        ));
    }
    let gt = task.gt_mask();
    if gt.is_blank() && task.task.all_polygons().next().is_some() {
        return Err("its polygons cover no pixel (degenerate or outside the image)".into());
    }
    Ok((image.into_raw(), gt, w as usize, h as usize))
}

/// Mean over the batch of each sample's IoU at probability 0.5 (logit 0); empty vs empty is 1.
fn batch_iou(logits: Tensor<3>, target: Tensor<3>) -> Result<f32, Error> {
    let [batch, h, w] = logits.dims();
    let pred = logits.greater_elem(0.0).float().reshape([batch, h * w]);
    let target = target.reshape([batch, h * w]);
    let inter = (pred.clone() * target.clone()).sum_dim(1);
    let union = (pred + target).sum_dim(1) - inter.clone();
    let inter = read_f32(inter)?;
    let union = read_f32(union)?;
    Ok(inter
        .iter()
        .zip(&union)
        .map(|(i, u)| if *u == 0.0 { 1.0 } else { i / u })
        .sum::<f32>()
        / batch as f32)
}

fn scalar(t: Tensor<1>) -> Result<f32, Error> {
    read_f32(t)?
        .first()
        .copied()
        .ok_or_else(|| Error::Input("empty loss".into()))
}

/// Writes `path` whole or not at all (a temporary file renamed over it): a run killed while
/// writing keeps the previous version.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes `checkpoint` as an HF folder: its config (with `unet_decoder` when it has one),
/// tokenizer and preprocessing, and all weights under HF's names (`unet.*` for ours).
pub fn save_run(checkpoint: &Checkpoint, out: &Path) -> Result<(), Error> {
    let config = serde_json::to_string_pretty(checkpoint.config())
        .map_err(|e| Error::Config(e.to_string()))?;
    write_file(&out.join("config.json"), config.as_bytes())?;
    write_file(
        &out.join("tokenizer.json"),
        checkpoint.tokenizer.to_json()?.as_bytes(),
    )?;
    write_file(
        &out.join("preprocessor_config.json"),
        checkpoint.preprocess.to_json().as_bytes(),
    )?;
    let remap = KeyRemapper::new()
        .add_pattern(
            r"^decoder\.transposed_convolution\.layer(\d+)\.",
            "decoder.transposed_convolution.$1.",
        )
        .map_err(|e| Error::Weights(e.to_string()))?;
    let path = out.join("model.safetensors");
    let mut store = SafetensorsStore::from_file(&path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remap)
        .skip_enum_variants(true)
        .overwrite(true);
    checkpoint
        .model
        .save_into(&mut store)
        .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
}

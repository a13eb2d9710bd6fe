//! `clipseg train`: fits the CLIPSeg decoder on frozen CLIP encoders.
//!
//! The encoders run without autodiff (they are frozen, so no graph is kept for them); only the
//! decoder lives on the autodiff device. A finished run is an HF model folder (`config.json`,
//! `model.safetensors` with the trained decoder, tokenizer, preprocessing), so `predict` and
//! `eval` read it like any downloaded checkpoint.
//!
//! Not yet here (issue 5): the U-Net decoder, `--resume`, gradient accumulation, mixed
//! precision, multi-GPU.

pub mod loss;

use std::io::Write;
use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};

pub use loss::Loss;

use crate::data::{PhraseCut, PromptSet, SplitMix64, resize_nearest};
use crate::model::Decoder;
use crate::segmenter::read_f32;
use crate::{Error, Segmenter};

/// Hyper-parameters of a run (the paper's: AdamW, lr 1e-3 cosine-decayed to 1e-4).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub lr_min: f64,
    pub loss: Loss,
    pub seed: u64,
    /// Start from freshly initialised decoder weights instead of the loaded ones.
    pub random_init: bool,
    /// Prompt templates wrapped around each phrase.
    pub prompts: PromptSet,
}

/// One logged optimisation step.
#[derive(Debug, Clone, Copy)]
pub struct StepLog {
    pub step: usize,
    pub lr: f64,
    pub loss: f32,
    /// IoU of the batch's masks (sigmoid > 0.5) at 352x352, summed over the batch.
    pub iou: f32,
}

/// Cosine decay from `lr` to `lr_min` over `steps`.
pub fn cosine_lr(config: &TrainConfig, step: usize) -> f64 {
    let t = step as f64 / config.steps.max(1) as f64;
    config.lr_min + 0.5 * (config.lr - config.lr_min) * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Trains `segmenter`'s decoder on `data` and writes the run folder `out` (HF layout plus
/// `log.csv`). `on_step` sees every step's log.
pub fn train(
    segmenter: &mut Segmenter,
    data: &PhraseCut,
    config: &TrainConfig,
    out: &Path,
    mut on_step: impl FnMut(&StepLog),
) -> Result<Vec<StepLog>, Error> {
    if data.is_empty() || config.steps == 0 || config.batch == 0 {
        return Err(Error::Input(
            "training needs tasks, --steps > 0 and --batch > 0".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.display().to_string(),
        source,
    })?;
    let base = segmenter
        .model
        .decoder
        .devices()
        .first()
        .cloned()
        .unwrap_or_else(Device::flex);
    base.seed(config.seed);
    let autodiff = base.clone().autodiff();
    let init = if config.random_init {
        Decoder::new(segmenter.config(), &base)
    } else {
        segmenter.model.decoder.clone()
    };
    let mut decoder = init.to_device(&autodiff).set_require_grad(true).train();
    let mut optimizer = AdamWConfig::new().init();
    let mut rng = SplitMix64::new(config.seed);
    let mut logs = Vec::with_capacity(config.steps);
    let log_path = out.join("log.csv");
    let io = |source| Error::Io {
        path: log_path.display().to_string(),
        source,
    };
    let mut csv = std::fs::File::create(&log_path).map_err(io)?;
    writeln!(csv, "step,lr,loss,iou").map_err(io)?;

    for step in 0..config.steps {
        let batch = sample_batch(segmenter, data, config, &mut rng)?;
        let activations: Vec<Tensor<3>> = batch
            .activations
            .into_iter()
            .map(Tensor::autodiff)
            .collect();
        let logits = decoder.forward(&decoder.reduce(&activations), batch.conditional.autodiff());
        let target = batch.target.autodiff();
        let loss = config.loss.forward(logits.clone(), target.clone());
        let iou = batch_iou(logits.without_autodiff(), target.without_autodiff())?;
        let loss_value = scalar(loss.clone().without_autodiff())?;
        if !loss_value.is_finite() {
            return Err(Error::Input(format!(
                "loss became {loss_value} at step {step}; try a lower --lr"
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &decoder);
        let lr = cosine_lr(config, step);
        decoder = optimizer.step(lr, decoder, grads);
        let log = StepLog {
            step,
            lr,
            loss: loss_value,
            iou,
        };
        writeln!(
            csv,
            "{},{:.6e},{:.6},{:.6}",
            log.step, log.lr, log.loss, log.iou
        )
        .map_err(io)?;
        on_step(&log);
        logs.push(log);
    }
    segmenter.model.decoder = decoder.valid().to_device(&base);
    save_run(segmenter, out)?;
    Ok(logs)
}

struct Batch {
    /// Raw CLIP activations per extracted layer, [batch, tokens, hidden].
    activations: Vec<Tensor<3>>,
    conditional: Tensor<2>,
    target: Tensor<3>,
}

/// Draws `config.batch` tasks, runs the frozen encoders on them and builds the targets
/// (ground truth nearest-resized to the model's output size, as CLIPSeg's loader does).
fn sample_batch(
    segmenter: &Segmenter,
    data: &PhraseCut,
    config: &TrainConfig,
    rng: &mut SplitMix64,
) -> Result<Batch, Error> {
    let model = &segmenter.model;
    let extract = &model.config.extract_layers;
    let mut per_layer: Vec<Vec<Tensor<3>>> = vec![Vec::new(); extract.len()];
    let mut prompts = Vec::with_capacity(config.batch);
    let mut targets = Vec::new();
    let mut side = (0, 0);
    for _ in 0..config.batch {
        let index = rng.below(data.len() as u64) as usize;
        let Some(task) = data.get(index) else {
            continue;
        };
        let image = task.load_image().map_err(|e| Error::Image(e.to_string()))?;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let pixels = segmenter.pixel_values(image.as_raw(), w, h)?;
        side = (pixels.dims()[2], pixels.dims()[3]);
        for (layer, activation) in per_layer
            .iter_mut()
            .zip(model.clip.vision_model.forward(pixels, extract)?)
        {
            layer.push(activation);
        }
        prompts.push(config.prompts.sample(task.phrase(), rng));
        let gt = task.gt_mask();
        targets.extend(
            resize_nearest(
                &gt.data,
                gt.width as usize,
                gt.height as usize,
                side.1,
                side.0,
            )
            .into_iter()
            .map(f32::from),
        );
    }
    let count = prompts.len();
    let device = model.decoder.film_mul.weight.device();
    Ok(Batch {
        activations: per_layer.into_iter().map(|l| Tensor::cat(l, 0)).collect(),
        conditional: model.encode_text(&segmenter.tokenize(&prompts)?)?,
        target: Tensor::from_data(TensorData::new(targets, [count, side.0, side.1]), &device),
    })
}

/// Sum over the batch of each sample's IoU at probability 0.5 (logit 0); empty vs empty is 1.
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

/// Writes `segmenter` as an HF folder: the source folder's config, tokenizer and
/// preprocessing, and all weights under HF's names.
pub fn save_run(segmenter: &Segmenter, out: &Path) -> Result<(), Error> {
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    };
    let config = serde_json::to_string_pretty(segmenter.config())
        .map_err(|e| Error::Config(e.to_string()))?;
    write("config.json", config.as_bytes())?;
    write("tokenizer.json", segmenter.tokenizer.to_json()?.as_bytes())?;
    write(
        "preprocessor_config.json",
        segmenter.preprocess.to_json().as_bytes(),
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
    segmenter
        .model
        .save_into(&mut store)
        .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
}

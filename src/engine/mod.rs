//! Inference: the model's weights on the fastest kernels the device offers, built once for a
//! device and a precision from a pack or a loaded model ([`Engine::from_pack`],
//! [`Engine::from_model`]). It owns the tower loops; each part (a tower's layers, the patch
//! embedding, the decoder's reduces, layers and head) runs on one executor chosen when it is
//! built: burn's ops ([`crate::model`]'s own math), the packed CPU kernels ([`cpu`], on flex)
//! or the WGSL kernels ([`gpu`], on a wgpu device of their own, [`Gpu`]). The kernel libraries
//! take plain weights ([`layer`]) and host slices; only this module knows the model.
//!
//! What runs between the kernels (embeddings, the final norms, pooling, FiLM) is burn's ops on
//! the engine's device: flex for both kernel libraries, so the browser needs no burn GPU
//! runtime (and the native CLI runs exactly what the browser runs).
//!
//! Everything is async (a GPU readback in the browser must be awaited); natively
//! [`block_on`] runs a call to completion.

mod build;
pub mod cpu;
mod decoder;
pub(crate) mod executor;
pub mod gpu;
mod head;
pub mod layer;
mod stack;
#[cfg(all(test, feature = "native"))]
mod tests;
mod text;
mod vision;

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use crate::Error;
use crate::config::ClipSegConfig;
use crate::model::{ClipSeg, ImageFeatures};
use crate::weights::pack::Pack;
use build::Weights;
pub use cpu::Precision;
use executor::Executor;
pub use executor::{Place, read_values};
pub use gpu::Gpu;

/// Which executors an engine's parts get, chosen once when it is built.
#[derive(Clone, Debug)]
pub enum Kernels {
    /// burn's ops everywhere: the model's own math (the reference, `bench --compare-burn`).
    Burn,
    /// The CPU kernels where they fit, on flex, in `precision` (`None`: int8 for a quantized
    /// pack, f32 otherwise); burn's ops for what they lack and on any other device.
    Packed(Option<Precision>),
    /// The WGSL kernels on this GPU where they fit (matrices as the pack stores them); burn's
    /// ops on the engine's device (flex) for what they lack and between them.
    Gpu(Arc<Gpu>),
}

/// Where each part of an engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub text_layers: Place,
    /// The token table stays on the host as the pack stores it (f16, 8 or 4 bits; kernels
    /// only).
    pub stored_tokens: bool,
    /// Both towers' layers run on the GPU kernels with their matrices kept as the pack stores
    /// them (f16, 8 or 4 bits).
    pub packed_weights: bool,
    pub patch_embedding: Place,
    pub vision_layers: Place,
    /// `None` with the U-Net decoder (burn's ops).
    pub reduces: Option<Place>,
    pub decoder_layers: Option<Place>,
    pub head: Option<Place>,
    /// The CPU kernels' precision, where they run.
    pub precision: Option<Precision>,
}

/// CLIPSeg ready for inference on one device.
pub struct Engine {
    config: ClipSegConfig,
    text: text::TextTower,
    vision: vision::VisionTower,
    decoder: decoder::DecoderRun,
    precision: Option<Precision>,
    gpu: Option<Arc<Gpu>>,
    device: Device,
}

impl Engine {
    /// From `model` (an HF folder loaded whole, natively: its weights are read synchronously
    /// where the kernels need them). `quantized`: its towers' weights came 8-bit or coarser,
    /// so the CPU kernels default to int8.
    pub fn from_model(model: ClipSeg, kernels: Kernels, quantized: bool) -> Result<Self, Error> {
        let device = model.clip.text_projection.weight.device();
        let executor = executor(kernels, &device, quantized);
        Self::build(model, &Weights::Loaded, &executor, &device)
    }

    /// From `pack`, one part at a time: each layer's weights are read, handed to its kernels
    /// and dropped before the next is read, so the float copy of all of them never exists at
    /// once; weights for the GPU kernels are read on the host, never back from the GPU.
    pub fn from_pack(pack: &Pack, device: &Device, kernels: Kernels) -> Result<Self, Error> {
        let executor = executor(kernels, device, pack.is_quantized());
        let model = ClipSeg::for_checkpoint(&pack.header.config, |n| pack.has(n), device)?;
        let engine = Self::build(model, &Weights::Pack(pack), &executor, device)?;
        pack.check_all_used()?;
        Ok(engine)
    }

    fn build(
        model: ClipSeg,
        weights: &Weights,
        executor: &Executor,
        device: &Device,
    ) -> Result<Self, Error> {
        let ClipSeg {
            clip,
            decoder,
            unet,
            config,
        } = model;
        let text =
            text::TextTower::build(clip.text_model, clip.text_projection, weights, executor)?;
        let vision = vision::VisionTower::build(
            clip.vision_model,
            clip.visual_projection,
            weights,
            executor,
            device,
        )?;
        let decoder = decoder::DecoderRun::build(decoder, unet, &config, weights, executor)?;
        let precision = match executor {
            Executor::Cpu(p) => Some(*p),
            _ => None,
        };
        let gpu = match executor {
            Executor::Gpu(gpu) => Some(gpu.clone()),
            _ => None,
        };
        Ok(Self {
            config,
            text,
            vision,
            decoder,
            precision,
            gpu,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ClipSegConfig {
        &self.config
    }

    /// Where each part runs.
    pub fn placement(&self) -> Placement {
        let (reduces, decoder_layers, head) = self.decoder.placement();
        let (text_layers, stored_tokens, text_packed) = self.text.placement();
        let cpu = [
            text_layers,
            self.vision.placement().1,
            decoder_layers.unwrap_or(Place::Burn),
        ];
        Placement {
            text_layers,
            stored_tokens,
            packed_weights: text_packed && self.vision.packed_layers(),
            patch_embedding: self.vision.placement().0,
            vision_layers: self.vision.placement().1,
            reduces,
            decoder_layers,
            head,
            precision: self.precision.filter(|_| cpu.contains(&Place::Cpu)),
        }
    }

    /// Bytes the weights hold in GPU memory (the WGSL kernels' buffers, and burn's parameters
    /// where the engine's device is a GPU); `None` where nothing runs on a GPU.
    pub fn gpu_weight_bytes(&self) -> Option<u64> {
        let on_gpu = self.device != Device::flex() || self.gpu.is_some();
        let bytes =
            self.text.device_bytes() + self.vision.device_bytes() + self.decoder.device_bytes();
        on_gpu.then_some(bytes)
    }

    /// The GPU its WGSL kernels run on, if built with [`Kernels::Gpu`].
    pub fn gpu(&self) -> Option<&Gpu> {
        self.gpu.as_deref()
    }

    /// Token ids (one list per prompt, with BOS/EOS) to conditional embeddings
    /// [prompts, projection_dim].
    pub async fn encode_text(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        self.text.forward(ids).await
    }

    /// Example images' `pixel_values` [examples, 3, S, S] to conditional embeddings
    /// [examples, projection_dim] (image prompts).
    pub async fn encode_examples(&self, pixel_values: Tensor<4>) -> Result<Tensor<2>, Error> {
        self.vision.encode_examples(pixel_values).await
    }

    /// `pixel_values` [1, 3, S, S] to the decoder's cached view of the image.
    pub async fn encode_image(&self, pixel_values: Tensor<4>) -> Result<ImageFeatures, Error> {
        let extract = &self.config.extract_layers;
        let activations = self.vision.forward(pixel_values, extract).await?;
        self.decoder.image_features(&activations).await
    }

    /// Logits [prompts, S, S] for one encoded image and the prompts' conditional embeddings.
    pub async fn decode(
        &self,
        image: &ImageFeatures,
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        self.decoder.forward(image, conditional).await
    }
}

fn executor(kernels: Kernels, device: &Device, quantized: bool) -> Executor {
    match kernels {
        Kernels::Packed(precision) if *device == Device::flex() => {
            let default = if quantized && cpu::qgemm::seven_bit_preferred() {
                Precision::Int8A7
            } else if quantized {
                Precision::Int8Bf16
            } else {
                Precision::F32
            };
            Executor::Cpu(precision.unwrap_or(default))
        }
        Kernels::Burn | Kernels::Packed(_) => Executor::Burn,
        Kernels::Gpu(gpu) => Executor::Gpu(gpu),
    }
}

/// Runs an engine call to completion, natively (GPU readbacks finish inside their own
/// `poll`): the CLI's and the tests' blocking face of the async API. The browser awaits.
#[cfg(not(target_family = "wasm"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

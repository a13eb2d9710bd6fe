//! Inference: the model's weights on the fastest kernels the device offers, built once for a
//! device and a precision from a pack or a loaded model ([`Engine::from_pack`],
//! [`Engine::from_model`]). It owns the tower loops; each part (a tower's layers, the patch
//! embedding, the decoder's reduces, layers and head) runs on one executor chosen when it is
//! built: burn's ops ([`crate::model`]'s own math), the packed CPU kernels ([`cpu`], on flex)
//! or the WGSL kernels ([`gpu`], on a wgpu device registered with [`register_gpu`]). The kernel
//! libraries take plain weights ([`layer`]) and host slices; only this module knows the model.
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

use std::sync::{Arc, Mutex};

use burn::tensor::wgpu::WgpuSetup;
use burn::tensor::{Device, Tensor};

use crate::Error;
use crate::config::ClipSegConfig;
use crate::model::{ClipSeg, ImageFeatures};
use crate::weights::pack::Pack;
use build::Weights;
pub use cpu::Precision;
use executor::Executor;
pub use executor::{Place, read_values};
use gpu::Gpu;

/// Which executors an engine's parts get, chosen once when it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// burn's ops everywhere: the model's own math (the reference, `bench --compare-burn`).
    Burn,
    /// This crate's kernels where they fit: the CPU kernels on flex, in `precision` (`None`:
    /// int8 for a quantized pack, f32 otherwise), the WGSL kernels on a wgpu device
    /// registered with [`register_gpu`] (f32); burn's ops for what they lack.
    Packed(Option<Precision>),
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
        Ok(Self {
            config,
            text,
            vision,
            decoder,
            precision,
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

    /// Bytes the weights hold in GPU memory (the kernels' buffers and burn's parameters on a
    /// wgpu device); `None` on the CPU.
    pub fn gpu_weight_bytes(&self) -> Option<u64> {
        let on_gpu = self.device != Device::flex();
        let bytes =
            self.text.device_bytes() + self.vision.device_bytes() + self.decoder.device_bytes();
        on_gpu.then_some(bytes)
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
        Kernels::Burn => Executor::Burn,
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
        Kernels::Packed(_) => gpu_for(device).map_or(Executor::Burn, Executor::Gpu),
    }
}

static GPUS: Mutex<Vec<(Device, Arc<Gpu>)>> = Mutex::new(Vec::new());

/// Makes the WGSL kernels available on `device`, burn's runtime over `setup` (from
/// `Device::wgpu_options().init_with_setup*`): engines built there with [`Kernels::Packed`]
/// use them.
pub fn register_gpu(device: &Device, setup: &WgpuSetup) {
    let info = setup.adapter.get_info();
    let variant = gpu::Matmul::for_adapter(&info);
    let int8_dot = gpu::int8_dot_for(setup.instance.wgsl_language_features(), &info);
    let f16_math = gpu::f16_math_for(variant);
    let (wgpu_device, queue) = (setup.device.clone(), setup.queue.clone());
    let gpu = Gpu::new(wgpu_device, queue, variant, int8_dot, f16_math);
    register(device, Arc::new(gpu));
}

/// Whether q8 matrices on `device`'s WGSL kernels run on the integer dot product, if registered.
pub fn gpu_int8_dot(device: &Device) -> Option<bool> {
    gpu_for(device).map(|g| g.int8_dot())
}

/// Whether f16 matrices on `device`'s WGSL kernels are multiplied in half precision, if
/// registered.
pub fn gpu_f16_math(device: &Device) -> Option<bool> {
    gpu_for(device).map(|g| g.f16_math())
}

/// The matmul kernels the WGSL kernels on `device` run ("blocked" or "tiled"), if registered.
pub fn gpu_matmul(device: &Device) -> Option<&'static str> {
    gpu_for(device).map(|g| g.matmul_variant().name())
}

fn register(device: &Device, gpu: Arc<Gpu>) {
    let mut gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
    gpus.retain(|(d, _)| d != device);
    gpus.push((device.clone(), gpu));
}

fn gpu_for(device: &Device) -> Option<Arc<Gpu>> {
    let gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
    gpus.iter()
        .find(|(d, _)| d == device)
        .map(|(_, g)| g.clone())
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

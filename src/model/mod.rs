//! CLIPSeg (`CLIPSegForImageSegmentation`) in burn. Module and field names follow HF's
//! `modeling_clipseg.py`, so HF weight names map onto fields one to one.

pub mod decoder;
pub mod text;
pub mod transformer;
pub mod unet;
pub mod vision;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

pub use decoder::Decoder;
pub use text::TextModel;
pub use unet::UNetDecoder;
pub use vision::VisionModel;

use crate::Error;
use crate::config::ClipSegConfig;
use crate::cpu::Precision;

/// `CLIPSegModel`: the frozen CLIP towers (`clip.*` weights).
#[derive(Module, Debug)]
pub struct Clip {
    pub text_model: TextModel,
    pub vision_model: VisionModel,
    /// Linear without bias, hidden -> projection_dim.
    pub text_projection: Linear,
}

/// `CLIPSegForImageSegmentation`.
#[derive(Module, Debug)]
pub struct ClipSeg {
    pub clip: Clip,
    pub decoder: Decoder,
    /// Present when `config.unet_decoder` is: then it, not `decoder`, produces the logits.
    pub unet: Option<UNetDecoder>,
    #[module(skip)]
    pub config: ClipSegConfig,
}

/// What the decoder needs from one image, deepest layer first. Keeping these lets further
/// prompts skip the vision tower entirely.
#[derive(Debug, Clone)]
pub enum ImageFeatures {
    /// [`Decoder::reduce`]'s token sequences.
    Transformer(Vec<Tensor<3>>),
    /// [`UNetDecoder::reduce`]'s skip feature maps.
    UNet(Vec<Tensor<4>>),
}

impl ImageFeatures {
    /// One value of the features, for waiting until the device has computed them.
    pub fn probe(&self) -> Tensor<1> {
        match self {
            Self::Transformer(t) => t[0].clone().slice([0..1, 0..1, 0..1]).reshape([1]),
            Self::UNet(t) => t[0].clone().slice([0..1, 0..1, 0..1, 0..1]).reshape([1]),
        }
    }
}

impl ClipSeg {
    /// A model of `config`'s shape with freshly initialised weights.
    pub fn new(config: &ClipSegConfig, device: &Device) -> Result<Self, Error> {
        config.validate()?;
        let t = &config.text_config;
        Ok(Self {
            clip: Clip {
                text_model: TextModel::new(t, device),
                vision_model: VisionModel::new(
                    &config.vision_config,
                    config.vision_layers_used(),
                    device,
                ),
                text_projection: LinearConfig::new(t.hidden_size, config.projection_dim)
                    .with_bias(false)
                    .init(device),
            },
            decoder: Decoder::new(config, device),
            unet: config
                .unet_decoder
                .as_ref()
                .map(|u| UNetDecoder::new(config, u, device)),
            config: config.clone(),
        })
    }

    /// On flex, moves the frozen CLIP towers' encoder layers to the packed CPU path
    /// ([`crate::cpu`]): ~2x faster inference. Their projection weights then exist only in
    /// packed form, so a packed model cannot be written out again (see [`Self::is_packed_for_cpu`]).
    /// Elsewhere (wgpu) a no-op.
    pub fn pack_for_cpu(&mut self, precision: Precision) -> Result<(), Error> {
        if self.clip.text_projection.weight.device() != Device::flex() {
            return Ok(());
        }
        self.clip.text_model.pack_for_cpu(precision)?;
        self.clip.vision_model.pack_for_cpu(precision)?;
        let spec = decoder::Decoder::spec(&self.config);
        self.decoder.pack_for_cpu(spec, precision.decoder())
    }

    /// Whether packing for the CPU ([`Self::pack_for_cpu`], a pack loaded for inference)
    /// released any burn weights.
    pub fn is_packed_for_cpu(&self) -> bool {
        let layers = self.clip.text_model.encoder.layers.iter();
        self.clip.text_model.embeddings.cpu_tokens.is_some()
            || layers
                .chain(&self.clip.vision_model.encoder.layers)
                .any(|l| l.cpu.is_some())
    }

    /// Whether [`Self::pack_for_gpu`] (or a pack loaded for inference on the GPU) released
    /// any burn weights.
    pub fn is_packed_for_gpu(&self) -> bool {
        let layers = self.clip.text_model.encoder.layers.iter();
        layers
            .chain(&self.clip.vision_model.encoder.layers)
            .any(|l| l.gpu.is_some())
    }

    /// `pixel_values` [1, 3, S, S] to the decoder's cached view of the image.
    pub fn encode_image(&self, pixel_values: Tensor<4>) -> Result<ImageFeatures, Error> {
        crate::gpu::block_on(self.encode_image_async(pixel_values))
    }

    /// [`Self::encode_image`], awaiting the GPU where layers run on [`crate::gpu`].
    pub async fn encode_image_async(
        &self,
        pixel_values: Tensor<4>,
    ) -> Result<ImageFeatures, Error> {
        let activations = self
            .clip
            .vision_model
            .forward_async(pixel_values, &self.config.extract_layers)
            .await?;
        self.image_features(&activations).await
    }

    /// [`Self::encode_text`], awaiting the GPU where layers run on [`crate::gpu`].
    pub async fn encode_text_async(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        let pooled = self.clip.text_model.forward_async(ids).await?;
        Ok(self.clip.text_projection.forward(pooled))
    }

    /// On a wgpu device with [`crate::gpu`] registered, moves the CLIP towers' encoder layers
    /// there, and uploads the vision patch embedding (as a GEMM) and the decoder's layers,
    /// reduces and head, which keep their burn weights. Reads the weights synchronously: native only;
    /// the browser loads a pack layer by layer instead. Elsewhere a no-op.
    pub fn pack_for_gpu(&mut self) -> Result<(), Error> {
        let device = self.clip.text_projection.weight.device();
        let Some(gpu) = crate::gpu::for_device(&device) else {
            return Ok(());
        };
        let clip = &mut self.clip;
        let text = TextModel::spec(&clip.text_model.config);
        let vision = VisionModel::spec(&clip.vision_model.config);
        clip.text_model.encoder.pack_for_gpu(&gpu, text)?;
        clip.vision_model.encoder.pack_for_gpu(&gpu, vision)?;
        let patch = &clip.vision_model.embeddings.patch_embedding;
        let weight = crate::cpu::values(patch.weight.val())?;
        clip.vision_model
            .pack_patch_embedding_for_gpu(&gpu, &weight)?;
        self.decoder
            .pack_for_gpu(&gpu, decoder::Decoder::spec(&self.config))
    }

    /// Token ids (one list per prompt, with BOS/EOS) to conditional embeddings [prompts, projection_dim].
    pub fn encode_text(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        crate::gpu::block_on(self.encode_text_async(ids))
    }

    /// Raw vision activations (in `extract_layers` order) to what the active decoder caches.
    pub async fn image_features(&self, activations: &[Tensor<3>]) -> Result<ImageFeatures, Error> {
        Ok(match &self.unet {
            Some(unet) => ImageFeatures::UNet(unet.reduce(activations)),
            None => ImageFeatures::Transformer(self.decoder.reduce_async(activations).await?),
        })
    }

    /// Logits [prompts, S, S] for one encoded image and the prompts' conditional embeddings.
    pub fn decode(
        &self,
        image: &ImageFeatures,
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        crate::gpu::block_on(self.decode_async(image, conditional))
    }

    /// [`Self::decode`], awaiting the GPU where layers run on [`crate::gpu`].
    pub async fn decode_async(
        &self,
        image: &ImageFeatures,
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        match (image, &self.unet) {
            (ImageFeatures::UNet(skips), Some(unet)) => Ok(unet.forward(skips, conditional)),
            (ImageFeatures::Transformer(reduced), None) => {
                self.decoder.forward_async(reduced, conditional).await
            }
            _ => Err(Error::Input(
                "these image features were encoded by a model with the other decoder".into(),
            )),
        }
    }

    /// The whole model on one image and several prompts.
    pub fn forward(&self, pixel_values: Tensor<4>, ids: &[Vec<u32>]) -> Result<Tensor<3>, Error> {
        let image = self.encode_image(pixel_values)?;
        self.decode(&image, self.encode_text(ids)?)
    }
}

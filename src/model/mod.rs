//! CLIPSeg (`CLIPSegForImageSegmentation`) in burn: HF's math and names, trainable, the
//! reference every faster path is tested against. Module and field names follow HF's
//! `modeling_clipseg.py`, so HF weight names map onto fields one to one. It runs on burn's ops
//! only; the inference engine (`src/engine`) runs the same weights on faster kernels.
//!
//! A prompt becomes a mask in three steps, as in `modeling_clipseg.py`: the text tower turns
//! the prompt into a conditional embedding ([`ClipSeg::encode_text`]), the vision tower turns
//! the image into activations of a few layers ([`ClipSeg::encode_image`]), and the decoder
//! turns both into logits ([`ClipSeg::decode`]). An example image can take the prompt's place
//! (image prompts, CLIPSeg's one-shot mode): the whole vision tower and `visual_projection`
//! turn it into the conditional embedding ([`ClipSeg::encode_examples`]).

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

/// `CLIPSegModel`: the frozen CLIP towers (`clip.*` weights).
#[derive(Module, Debug)]
pub struct Clip {
    pub text_model: TextModel,
    pub vision_model: VisionModel,
    /// Linear without bias, hidden -> projection_dim.
    pub text_projection: Linear,
    /// Linear without bias, vision hidden -> projection_dim; held for image prompts only.
    pub visual_projection: Option<Linear>,
}

/// The checkpoint tensor whose presence says a checkpoint serves image prompts.
pub const VISUAL_PROJECTION: &str = "clip.visual_projection.weight";

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

/// Features encoded by a model with the other decoder.
pub(crate) fn other_decoder() -> Error {
    Error::Input("these image features were encoded by a model with the other decoder".into())
}

impl ClipSeg {
    /// A model of `config`'s shape for text prompts only, with freshly initialised weights
    /// (initialised lazily: a parameter that is loaded before it is read never allocates its
    /// random values). Its vision tower stops at the deepest layer the decoder reads.
    pub fn new(config: &ClipSegConfig, device: &Device) -> Result<Self, Error> {
        Self::build(config, false, device)
    }

    /// The model a checkpoint holding the tensors `has` names can fill: with what image
    /// prompts need too (every vision layer, `post_layernorm`, `visual_projection`) when it has
    /// [`VISUAL_PROJECTION`].
    pub fn for_checkpoint(
        config: &ClipSegConfig,
        has: impl Fn(&str) -> bool,
        device: &Device,
    ) -> Result<Self, Error> {
        Self::build(config, has(VISUAL_PROJECTION), device)
    }

    fn build(config: &ClipSegConfig, image_prompts: bool, device: &Device) -> Result<Self, Error> {
        config.validate()?;
        let (t, v) = (&config.text_config, &config.vision_config);
        let layers = match image_prompts {
            true => v.num_hidden_layers,
            false => config.vision_layers_used(),
        };
        Ok(Self {
            clip: Clip {
                text_model: TextModel::new(t, device),
                vision_model: VisionModel::new(v, layers, image_prompts, device),
                text_projection: LinearConfig::new(t.hidden_size, config.projection_dim)
                    .with_bias(false)
                    .init(device),
                visual_projection: image_prompts.then(|| {
                    LinearConfig::new(v.hidden_size, config.projection_dim)
                        .with_bias(false)
                        .init(device)
                }),
            },
            decoder: Decoder::new(config, device),
            unet: config
                .unet_decoder
                .as_ref()
                .map(|u| UNetDecoder::new(config, u, device)),
            config: config.clone(),
        })
    }

    /// Step 1: token ids (one list per prompt, with BOS/EOS) to conditional embeddings
    /// [prompts, projection_dim].
    pub fn encode_text(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        let pooled = self.clip.text_model.forward(ids)?;
        Ok(self.clip.text_projection.forward(pooled))
    }

    /// Whether it holds what image prompts need.
    pub fn has_image_prompts(&self) -> bool {
        self.clip.visual_projection.is_some()
    }

    /// Drops what only image prompts need (`convert --text-only`).
    pub fn text_only(mut self) -> Self {
        let vision = &mut self.clip.vision_model;
        vision
            .encoder
            .layers
            .truncate(self.config.vision_layers_used());
        vision.post_layernorm = None;
        self.clip.visual_projection = None;
        self
    }

    /// Step 1 for image prompts: example images' `pixel_values` [examples, 3, S, S] to
    /// conditional embeddings [examples, projection_dim] (HF's `get_image_features`).
    pub fn encode_examples(&self, pixel_values: Tensor<4>) -> Result<Tensor<2>, Error> {
        let pooled = self.clip.vision_model.pooled(pixel_values)?;
        let projection = self.clip.visual_projection.as_ref();
        Ok(projection
            .ok_or_else(vision::no_image_prompts)?
            .forward(pooled))
    }

    /// Step 2: `pixel_values` [1, 3, S, S] to the decoder's cached view of the image.
    pub fn encode_image(&self, pixel_values: Tensor<4>) -> Result<ImageFeatures, Error> {
        let extract = &self.config.extract_layers;
        let activations = self.clip.vision_model.forward(pixel_values, extract)?;
        Ok(self.image_features(&activations))
    }

    /// Raw vision activations (in `extract_layers` order) to what the active decoder caches.
    pub fn image_features(&self, activations: &[Tensor<3>]) -> ImageFeatures {
        match &self.unet {
            Some(unet) => ImageFeatures::UNet(unet.reduce(activations)),
            None => ImageFeatures::Transformer(self.decoder.reduce(activations)),
        }
    }

    /// Step 3: logits [prompts, S, S] for one encoded image and the prompts' conditional
    /// embeddings.
    pub fn decode(
        &self,
        image: &ImageFeatures,
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        match (image, &self.unet) {
            (ImageFeatures::UNet(skips), Some(unet)) => Ok(unet.forward(skips, conditional)),
            (ImageFeatures::Transformer(reduced), None) => {
                Ok(self.decoder.forward(reduced, conditional))
            }
            _ => Err(other_decoder()),
        }
    }

    /// The whole model on one image and several prompts.
    pub fn forward(&self, pixel_values: Tensor<4>, ids: &[Vec<u32>]) -> Result<Tensor<3>, Error> {
        let image = self.encode_image(pixel_values)?;
        self.decode(&image, self.encode_text(ids)?)
    }
}

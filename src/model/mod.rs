//! CLIPSeg (`CLIPSegForImageSegmentation`) in burn. Module and field names follow HF's
//! `modeling_clipseg.py`, so HF weight names map onto fields one to one.

pub mod decoder;
pub mod text;
pub mod transformer;
pub mod vision;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

pub use decoder::Decoder;
pub use text::TextModel;
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
}

/// `CLIPSegForImageSegmentation`.
#[derive(Module, Debug)]
pub struct ClipSeg {
    pub clip: Clip,
    pub decoder: Decoder,
    #[module(skip)]
    pub config: ClipSegConfig,
}

/// What the decoder needs from one image: the reduced activations, deepest first.
/// Keeping these lets further prompts skip the vision tower entirely.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    pub reduced: Vec<Tensor<3>>,
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
            config: config.clone(),
        })
    }

    /// `pixel_values` [1, 3, S, S] to the decoder's cached view of the image.
    pub fn encode_image(&self, pixel_values: Tensor<4>) -> Result<ImageFeatures, Error> {
        let activations = self
            .clip
            .vision_model
            .forward(pixel_values, &self.config.extract_layers)?;
        Ok(ImageFeatures {
            reduced: self.decoder.reduce(&activations),
        })
    }

    /// Token ids (one list per prompt, with BOS/EOS) to conditional embeddings [prompts, projection_dim].
    pub fn encode_text(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        Ok(self
            .clip
            .text_projection
            .forward(self.clip.text_model.forward(ids)?))
    }

    /// Logits [prompts, S, S] for one encoded image and the prompts' conditional embeddings.
    pub fn decode(&self, image: &ImageFeatures, conditional: Tensor<2>) -> Tensor<3> {
        self.decoder.forward(&image.reduced, conditional)
    }

    /// The whole model on one image and several prompts.
    pub fn forward(&self, pixel_values: Tensor<4>, ids: &[Vec<u32>]) -> Result<Tensor<3>, Error> {
        let image = self.encode_image(pixel_values)?;
        Ok(self.decode(&image, self.encode_text(ids)?))
    }
}

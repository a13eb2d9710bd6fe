//! `CLIPSegDecoder`: reduces CLIP activations, FiLM-conditions them on the prompt embedding,
//! runs post-norm transformer layers and upsamples patch tokens to a full-resolution logit map.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::transformer::EncoderLayer;
use crate::config::ClipSegConfig;

/// HF's `nn.Sequential(Conv2d, ReLU, ConvTranspose2d, ReLU, ConvTranspose2d)`; the field names
/// keep the Sequential indices (`transposed_convolution.0.weight` fills `layer0`).
#[derive(Module, Debug)]
pub struct RefinedHead {
    pub layer0: Conv2d,
    pub layer2: ConvTranspose2d,
    pub layer4: ConvTranspose2d,
}

/// `decoder.transposed_convolution`: one 16x16 (patch-size) transposed conv, or the refined
/// head of `use_complex_transposed_convolution` (rd64-refined).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model: boxing would only add an indirection
pub enum TransposedConvolution {
    Plain(ConvTranspose2d),
    Refined(RefinedHead),
}

impl TransposedConvolution {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Plain(conv) => conv.forward(x),
            Self::Refined(head) => {
                let x = relu(head.layer0.forward(x));
                let x = relu(head.layer2.forward(x));
                head.layer4.forward(x)
            }
        }
    }

    /// The last layer's states [batch, seq, rd] (class token first) to logits [batch, H, W].
    pub fn logits(&self, states: Tensor<3>) -> Tensor<3> {
        let [batch, seq, rd] = states.dims();
        let grid = ((seq - 1) as f64).sqrt() as usize;
        let tokens = states
            .narrow(1, 1, seq - 1)
            .swap_dims(1, 2)
            .reshape([batch, rd, grid, grid]);
        let logits = self.forward(tokens);
        let [_, _, h, w] = logits.dims();
        logits.reshape([batch, h, w])
    }
}

/// `CLIPSegDecoder`.
#[derive(Module, Debug)]
pub struct Decoder {
    pub film_mul: Linear,
    pub film_add: Linear,
    pub transposed_convolution: TransposedConvolution,
    /// One per extracted layer; `reduces[0]` takes the deepest activation.
    pub reduces: Vec<Linear>,
    pub layers: Vec<EncoderLayer>,
    #[module(skip)]
    pub conditional_layer: usize,
}

impl Decoder {
    pub fn new(c: &ClipSegConfig, device: &Device) -> Self {
        let (rd, patch) = (c.reduce_dim, c.vision_config.patch_size);
        let depth = c.extract_layers.len();
        let transposed_convolution = if c.use_complex_transposed_convolution {
            let k = patch / 4;
            TransposedConvolution::Refined(RefinedHead {
                layer0: Conv2dConfig::new([rd, rd], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                layer2: ConvTranspose2dConfig::new([rd, rd / 2], [k, k])
                    .with_stride([k, k])
                    .init(device),
                layer4: ConvTranspose2dConfig::new([rd / 2, 1], [k, k])
                    .with_stride([k, k])
                    .init(device),
            })
        } else {
            TransposedConvolution::Plain(
                ConvTranspose2dConfig::new([rd, 1], [patch, patch])
                    .with_stride([patch, patch])
                    .init(device),
            )
        };
        let spec = c.decoder_spec();
        Self {
            film_mul: LinearConfig::new(c.projection_dim, rd).init(device),
            film_add: LinearConfig::new(c.projection_dim, rd).init(device),
            transposed_convolution,
            reduces: (0..depth)
                .map(|_| LinearConfig::new(c.vision_config.hidden_size, rd).init(device))
                .collect(),
            layers: (0..depth)
                .map(|_| EncoderLayer::new(spec, device))
                .collect(),
            conditional_layer: c.conditional_layer,
        }
    }

    /// Applies `reduces` to activations given in `extract_layers` order, returning them in
    /// decoder order (deepest first). Prompt-independent, so cached per image.
    pub fn reduce(&self, activations: &[Tensor<3>]) -> Vec<Tensor<3>> {
        (activations.iter().rev().zip(&self.reduces))
            .map(|(a, r)| r.forward(a.clone()))
            .collect()
    }

    /// `reduced` (from [`Self::reduce`], batch 1 or `prompts`) and `conditional` [prompts,
    /// projection_dim] to logits [prompts, H, W].
    pub fn forward(&self, reduced: &[Tensor<3>], conditional: Tensor<2>) -> Tensor<3> {
        let mut output: Option<Tensor<3>> = None;
        for (i, (r, layer)) in reduced.iter().zip(&self.layers).enumerate() {
            let mut x = match output.take() {
                Some(o) => r.clone() + o,
                None => r.clone(),
            };
            if i == self.conditional_layer {
                x = film(&self.film_mul, &self.film_add, x, &conditional);
            }
            output = Some(layer.forward_post_norm(x));
        }
        let Some(output) = output else {
            unreachable!("config validation guarantees at least one extract layer")
        };
        self.transposed_convolution.logits(output)
    }
}

/// FiLM: `x` [batch, seq, rd] scaled and shifted per prompt by `film_mul` and `film_add` of its
/// conditional embedding (`conditional` [prompts, projection_dim]).
pub fn film(
    film_mul: &Linear,
    film_add: &Linear,
    x: Tensor<3>,
    conditional: &Tensor<2>,
) -> Tensor<3> {
    let mul = film_mul.forward(conditional.clone()).unsqueeze_dim(1);
    let add = film_add.forward(conditional.clone()).unsqueeze_dim(1);
    mul * x + add
}

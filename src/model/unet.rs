//! A U-Net style conv decoder (ours, not in HF): the alternative to CLIPSeg's transformer
//! decoder that `clipseg train --decoder unet` fits.
//!
//! ViT activations all sit on the same 1/patch grid, so the multi-scale inputs are made the
//! way UNETR does: the deepest extracted layer enters at the patch grid, each shallower one is
//! upsampled 2x further by its own transposed conv and joins the decoder path as a skip
//! connection at that finer scale. Every scale is FiLM-conditioned on the prompt embedding;
//! a last transposed conv brings the finest scale up to the image size.
//!
//! Weight names: `unet.reduces.{i}`, `unet.skip_ups.{i}`, `unet.film_mul.{i}`,
//! `unet.film_add.{i}`, `unet.convs.{i}`, `unet.ups.{i}`, `unet.head` (i = 0 deepest).

use crate::config::{ClipSegConfig, UNetConfig};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct UNetDecoder {
    /// Token-wise projection of each activation to `width` channels (deepest first).
    pub reduces: Vec<Linear>,
    /// Skip i (i >= 1) upsampled by 2^i to meet the decoder path.
    pub skip_ups: Vec<ConvTranspose2d>,
    pub film_mul: Vec<Linear>,
    pub film_add: Vec<Linear>,
    /// 3x3 conv per scale; after the first it takes [path, skip] concatenated.
    pub convs: Vec<Conv2d>,
    /// 2x upsampling between scales.
    pub ups: Vec<ConvTranspose2d>,
    /// Finest scale to one logit channel at the image size.
    pub head: ConvTranspose2d,
}

impl UNetDecoder {
    pub fn new(c: &ClipSegConfig, u: &UNetConfig, device: &Device) -> Self {
        let (w, depth) = (u.width, c.extract_layers.len());
        let hidden = c.vision_config.hidden_size;
        let up = |channels: [usize; 2], factor: usize| {
            ConvTranspose2dConfig::new(channels, [factor, factor])
                .with_stride([factor, factor])
                .init(device)
        };
        let conv = |inputs: usize| {
            Conv2dConfig::new([inputs, w], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let film = || {
            (0..depth)
                .map(|_| LinearConfig::new(c.projection_dim, w).init(device))
                .collect()
        };
        let last = c.vision_config.patch_size >> (depth - 1);
        Self {
            reduces: (0..depth)
                .map(|_| LinearConfig::new(hidden, w).init(device))
                .collect(),
            skip_ups: (1..depth).map(|i| up([w, w], 1 << i)).collect(),
            film_mul: film(),
            film_add: film(),
            convs: (0..depth)
                .map(|i| conv(if i == 0 { w } else { 2 * w }))
                .collect(),
            ups: (1..depth).map(|_| up([w, w], 2)).collect(),
            head: up([w, 1], last),
        }
    }

    /// Activations in `extract_layers` order to the skips (deepest first), each
    /// [batch, width, grid * 2^i, grid * 2^i]. Prompt-independent, so cached per image.
    pub fn reduce(&self, activations: &[Tensor<3>]) -> Vec<Tensor<4>> {
        activations
            .iter()
            .rev()
            .zip(&self.reduces)
            .enumerate()
            .map(|(i, (a, reduce))| {
                let [batch, seq, _] = a.dims();
                let grid = ((seq - 1) as f64).sqrt() as usize;
                let x = reduce
                    .forward(a.clone().narrow(1, 1, seq - 1))
                    .swap_dims(1, 2);
                let width = x.dims()[1];
                let x = x.reshape([batch, width, grid, grid]);
                match i {
                    0 => x,
                    i => self.skip_ups[i - 1].forward(x),
                }
            })
            .collect()
    }

    /// Skips (batch 1 or `prompts`) and `conditional` [prompts, projection_dim] to logits
    /// [prompts, H, W].
    pub fn forward(&self, skips: &[Tensor<4>], conditional: Tensor<2>) -> Tensor<3> {
        let mut path: Option<Tensor<4>> = None;
        for (i, skip) in skips.iter().enumerate() {
            let mul = self.film_mul[i].forward(conditional.clone());
            let add = self.film_add[i].forward(conditional.clone());
            let skip =
                mul.unsqueeze_dims::<4>(&[2, 3]) * skip.clone() + add.unsqueeze_dims::<4>(&[2, 3]);
            let x = match path {
                None => skip,
                Some(p) => Tensor::cat(vec![self.ups[i - 1].forward(p), skip], 1),
            };
            path = Some(relu(self.convs[i].forward(x)));
        }
        let Some(path) = path else {
            unreachable!("config validation guarantees at least one extract layer")
        };
        let logits = self.head.forward(path);
        let [prompts, _, h, w] = logits.dims();
        logits.reshape([prompts, h, w])
    }
}

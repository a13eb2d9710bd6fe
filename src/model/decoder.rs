//! `CLIPSegDecoder`: reduces CLIP activations, FiLM-conditions them on the prompt embedding,
//! runs post-norm transformer layers and upsamples patch tokens to a full-resolution logit map.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use std::sync::Arc;

use super::transformer::{EncoderLayer, LayerSpec};
use crate::Error;
use crate::config::{Activation, ClipSegConfig};
use crate::cpu::Precision;
use crate::gpu::{Gpu, GpuLinear};

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
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Plain(conv) => conv.forward(x),
            Self::Refined(head) => {
                let x = relu(head.layer0.forward(x));
                let x = relu(head.layer2.forward(x));
                head.layer4.forward(x)
            }
        }
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
    /// `reduces` on [`crate::gpu`]'s matmul kernel (set with the layers by
    /// [`Self::pack_for_gpu`], or by a pack loaded for inference there); empty elsewhere.
    #[module(skip)]
    pub gpu_reduces: Vec<Arc<GpuLinear>>,
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
        let spec = Self::spec(c);
        Self {
            film_mul: LinearConfig::new(c.projection_dim, rd).init(device),
            film_add: LinearConfig::new(c.projection_dim, rd).init(device),
            transposed_convolution,
            reduces: (0..depth)
                .map(|_| LinearConfig::new(c.vision_config.hidden_size, rd).init(device))
                .collect(),
            gpu_reduces: Vec::new(),
            layers: (0..depth)
                .map(|_| EncoderLayer::new(spec, device))
                .collect(),
            conditional_layer: c.conditional_layer,
        }
    }

    /// The decoder layers on the packed CPU path too, in f32, keeping their burn weights.
    pub fn pack_for_cpu(&mut self, spec: LayerSpec) -> Result<(), Error> {
        for layer in &mut self.layers {
            layer.pack_for_cpu_keeping_weights(spec, Precision::F32)?;
        }
        Ok(())
    }

    /// The spec its layers were built with.
    pub fn spec(c: &ClipSegConfig) -> LayerSpec {
        // HF copies the vision config and overrides size, heads, intermediate size and act.
        LayerSpec {
            hidden: c.reduce_dim,
            heads: c.decoder_num_attention_heads,
            intermediate: c.decoder_intermediate_size,
            activation: Activation::Relu,
            eps: c.vision_config.layer_norm_eps,
        }
    }

    /// Applies `reduces` to activations given in `extract_layers` order, returning them in
    /// decoder order (deepest first). Prompt-independent, so cached per image.
    pub fn reduce(&self, activations: &[Tensor<3>]) -> Result<Vec<Tensor<3>>, Error> {
        crate::gpu::block_on(self.reduce_async(activations))
    }

    /// [`Self::reduce`], awaiting the GPU where the reduces run on [`crate::gpu`].
    pub async fn reduce_async(&self, activations: &[Tensor<3>]) -> Result<Vec<Tensor<3>>, Error> {
        let mut reduced = Vec::with_capacity(self.reduces.len());
        for (i, (a, r)) in activations.iter().rev().zip(&self.reduces).enumerate() {
            let gpu = self.gpu_reduces.get(i);
            reduced.push(match gpu.zip(crate::gpu::for_device(&a.device())) {
                Some((linear, gpu)) => linear.forward_tensor(&gpu, a.clone()).await?,
                None => r.forward(a.clone()),
            });
        }
        Ok(reduced)
    }

    /// `reduces` (read synchronously: flex, or any native device) uploaded for
    /// [`Self::reduce_async`]: all, or none if the kernel does not fit their shape.
    pub fn upload_reduces(gpu: &Gpu, reduces: &[Linear]) -> Result<Vec<Arc<GpuLinear>>, Error> {
        let uploaded: Option<Vec<GpuLinear>> = reduces
            .iter()
            .map(|r| GpuLinear::from_linear(gpu, r))
            .collect::<Result<_, _>>()?;
        Ok(uploaded
            .unwrap_or_default()
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    /// The decoder layers and reduces on [`crate::gpu`] too, keeping their burn weights
    /// (native: reads them synchronously). No-op for shapes the kernels lack.
    pub fn pack_for_gpu(&mut self, gpu: &Gpu, spec: LayerSpec) -> Result<(), Error> {
        self.gpu_reduces = Self::upload_reduces(gpu, &self.reduces)?;
        if !crate::gpu::GpuLayer::supports(spec) {
            return Ok(());
        }
        for layer in &mut self.layers {
            if layer.gpu.is_none() {
                let uploaded = crate::gpu::GpuLayer::new(gpu, layer, spec)?;
                layer.gpu = Some(std::sync::Arc::new(uploaded));
            }
        }
        Ok(())
    }

    /// `reduced` (from [`Self::reduce`], batch 1 or `prompts`) and `conditional` [prompts,
    /// projection_dim] to logits [prompts, H, W].
    pub fn forward(
        &self,
        reduced: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        crate::gpu::block_on(self.forward_async(reduced, conditional))
    }

    /// [`Self::forward`], awaiting the GPU where layers run on [`crate::gpu`] (the browser).
    pub async fn forward_async(
        &self,
        reduced: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        let mut output: Option<Tensor<3>> = None;
        for (i, (r, layer)) in reduced.iter().zip(&self.layers).enumerate() {
            let mut x = match output {
                Some(o) => r.clone() + o,
                None => r.clone(),
            };
            if i == self.conditional_layer {
                let mul = self.film_mul.forward(conditional.clone()).unsqueeze_dim(1);
                let add = self.film_add.forward(conditional.clone()).unsqueeze_dim(1);
                x = mul * x + add;
            }
            output = Some(layer.forward_post_norm_async(x).await?);
        }
        let Some(output) = output else {
            unreachable!("config validation guarantees at least one extract layer")
        };
        let [batch, seq, rd] = output.dims();
        let grid = ((seq - 1) as f64).sqrt() as usize;
        let tokens = output
            .narrow(1, 1, seq - 1)
            .swap_dims(1, 2)
            .reshape([batch, rd, grid, grid]);
        let logits = self.transposed_convolution.forward(tokens);
        let [_, _, h, w] = logits.dims();
        Ok(logits.reshape([batch, h, w]))
    }
}

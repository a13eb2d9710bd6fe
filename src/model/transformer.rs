//! The blocks the three towers share, named as in `modeling_clipseg.py`: `CLIPSegAttention`,
//! `CLIPSegMLP`, `CLIPSegEncoderLayer` (pre-norm, text and vision) and `CLIPSegDecoderLayer`
//! (post-norm, decoder).

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor, TensorData};

use crate::Error;
use crate::config::Activation;
use crate::cpu::{PackedLayer, Precision};
use crate::gpu::GpuLayer;

/// Applies a config's `hidden_act`.
pub fn activate<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    match act {
        // CLIP's own approximation: x * sigmoid(1.702 x). Not in burn-nn.
        Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::Silu => x.clone() * sigmoid(x),
    }
}

/// `CLIPSegAttention`: multi-head self-attention, scale head_dim^-0.5.
#[derive(Module, Debug)]
pub struct Attention {
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub q_proj: Linear,
    pub out_proj: Linear,
    #[module(skip)]
    pub num_heads: usize,
}

impl Attention {
    pub fn new(embed_dim: usize, num_heads: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(embed_dim, embed_dim).init(device);
        Self {
            k_proj: linear(),
            v_proj: linear(),
            q_proj: linear(),
            out_proj: linear(),
            num_heads,
        }
    }

    /// `x`: [batch, seq, embed]. `causal` masks future positions (text tower).
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [batch, seq, embed] = x.dims();
        let heads = |t: Tensor<3>| {
            t.reshape([batch, seq, self.num_heads, embed / self.num_heads])
                .swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(x.clone()));
        let k = heads(self.k_proj.forward(x.clone()));
        let v = heads(self.v_proj.forward(x));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        };
        let out = attention(q, k, v, None, None, options);
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([batch, seq, embed]))
    }
}

/// `CLIPSegMLP`: fc1, activation, fc2.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    pub fn new(
        hidden: usize,
        intermediate: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        Self {
            fc1: LinearConfig::new(hidden, intermediate).init(device),
            fc2: LinearConfig::new(intermediate, hidden).init(device),
            activation,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2
            .forward(activate(self.activation, self.fc1.forward(x)))
    }
}

/// Hyper-parameters of one transformer layer; the decoder derives its own from the vision
/// config as HF does (`reduce_dim`, decoder heads and intermediate size, ReLU).
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub activation: Activation,
    pub eps: f64,
}

/// `CLIPSegEncoderLayer` / `CLIPSegDecoderLayer`: same weights, the norm placement differs.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: Attention,
    pub layer_norm1: LayerNorm,
    pub mlp: Mlp,
    pub layer_norm2: LayerNorm,
    /// Set by [`Self::pack_for_cpu`]: the layer then runs on [`crate::cpu`].
    #[module(skip)]
    pub cpu: Option<Arc<PackedLayer>>,
    /// Set when loaded for inference on a registered wgpu device: the layer then runs on
    /// [`crate::gpu`].
    #[module(skip)]
    pub gpu: Option<Arc<GpuLayer>>,
}

impl EncoderLayer {
    pub fn new(spec: LayerSpec, device: &Device) -> Self {
        let norm = || {
            LayerNormConfig::new(spec.hidden)
                .with_epsilon(spec.eps)
                .init(device)
        };
        Self {
            self_attn: Attention::new(spec.hidden, spec.heads, device),
            layer_norm1: norm(),
            mlp: Mlp::new(spec.hidden, spec.intermediate, spec.activation, device),
            layer_norm2: norm(),
            cpu: None,
            gpu: None,
        }
    }

    /// Packs the layer for the CPU path and releases the burn copies of its six projection
    /// weights (they would double the memory); norms stay. After this the layer only runs
    /// through [`super::text::Encoder::forward`] on flex and must not be saved. No-op for
    /// activations the CPU path lacks.
    pub fn pack_for_cpu(&mut self, spec: LayerSpec, precision: Precision) -> Result<(), Error> {
        if self.pack_for_cpu_keeping_weights(spec, precision)? {
            self.release_projections();
        }
        Ok(())
    }

    /// Drops the burn copies of the six projection weights once a packed path holds them.
    pub fn release_projections(&mut self) {
        let attn = &mut self.self_attn;
        for linear in [
            &mut attn.q_proj,
            &mut attn.k_proj,
            &mut attn.v_proj,
            &mut attn.out_proj,
            &mut self.mlp.fc1,
            &mut self.mlp.fc2,
        ] {
            let device = linear.weight.device();
            linear.weight = Param::from_tensor(Tensor::zeros([0, 0], &device));
        }
    }

    /// Packs the layer for the CPU path and keeps the burn weights too (the decoder's layers:
    /// 1% of the model, and the ones training and `convert` need). Whether it packed now.
    pub fn pack_for_cpu_keeping_weights(
        &mut self,
        spec: LayerSpec,
        precision: Precision,
    ) -> Result<bool, Error> {
        if self.cpu.is_some() || !crate::cpu::supports(spec.activation) {
            return Ok(false);
        }
        self.cpu = Some(Arc::new(PackedLayer::new(self, spec, precision)?));
        Ok(true)
    }

    /// Pre-norm (CLIP encoders): x + attn(ln1(x)), then x + mlp(ln2(x)). Burn's ops only: a
    /// layer packed for the CPU path runs through [`super::text::Encoder::forward`].
    pub fn forward_pre_norm(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), causal);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }

    /// Post-norm (CLIPSeg decoder): ln1(x + attn(x)), then ln2(x + mlp(x)). See
    /// [`Self::forward_post_norm_async`].
    pub fn forward_post_norm(&self, x: Tensor<3>) -> Result<Tensor<3>, Error> {
        crate::gpu::block_on(self.forward_post_norm_async(x))
    }

    /// On [`crate::gpu`] where the layer is there (awaiting its readback), on the packed CPU
    /// path where it has one (flex inference), else burn's ops.
    pub async fn forward_post_norm_async(&self, x: Tensor<3>) -> Result<Tensor<3>, Error> {
        if let (Some(layer), Some(gpu)) = (&self.gpu, crate::gpu::for_device(&x.device())) {
            let post = crate::gpu::Norm::Post;
            let mut out = crate::gpu::forward_tensor(&gpu, &[layer], x, post, &[0]).await?;
            return Ok(out.remove(0));
        }
        if let Some(packed) = &self.cpu {
            let [batch, seq, hidden] = x.dims();
            let device = x.device();
            let mut values = crate::cpu::values(x)?;
            packed.forward_post_norm(&mut values, batch, seq, &mut Default::default());
            let data = TensorData::new(values, [batch, seq, hidden]);
            return Ok(Tensor::from_data(data, &device));
        }
        Ok(self.forward_post_norm_burn(x))
    }

    fn forward_post_norm_burn(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self
            .layer_norm1
            .forward(x.clone() + self.self_attn.forward(x, false));
        self.layer_norm2.forward(x.clone() + self.mlp.forward(x))
    }
}

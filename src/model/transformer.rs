//! The blocks the three towers share, named as in `modeling_clipseg.py`: `CLIPSegAttention`,
//! `CLIPSegMLP`, `CLIPSegEncoderLayer` (pre-norm, text and vision) and `CLIPSegDecoderLayer`
//! (post-norm, decoder).

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

use crate::config::{Activation, LayerSpec};

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

/// `CLIPSegEncoderLayer` / `CLIPSegDecoderLayer`: same weights, the norm placement differs.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: Attention,
    pub layer_norm1: LayerNorm,
    pub mlp: Mlp,
    pub layer_norm2: LayerNorm,
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
        }
    }

    /// Pre-norm (CLIP encoders): x + attn(ln1(x)), then x + mlp(ln2(x)).
    pub fn forward_pre_norm(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), causal);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }

    /// Post-norm (CLIPSeg decoder): ln1(x + attn(x)), then ln2(x + mlp(x)).
    pub fn forward_post_norm(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self
            .layer_norm1
            .forward(x.clone() + self.self_attn.forward(x, false));
        self.layer_norm2.forward(x.clone() + self.mlp.forward(x))
    }
}

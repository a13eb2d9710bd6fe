//! The plain weights the kernel libraries ([`super::cpu`], [`super::gpu`]) take: no burn
//! modules, no tensors, so the kernels know nothing of the model they serve.

use std::borrow::Cow;

use burn::tensor::f16;

use crate::config::LayerSpec;
pub use crate::weights::pack::Quantized;

/// A matrix product's weights: `w` row-major [k, n] (input features by output features, as
/// burn's `Linear` stores it) and a bias [n].
#[derive(Debug, Clone)]
pub struct Matrix {
    pub w: Weight,
    pub k: usize,
    pub n: usize,
    pub bias: Option<Vec<f32>>,
}

/// A weight's values: floats, or as a pack stores them (f16 bits; the integers and block
/// scales of a quantized pack, rows along k), for kernels that decode them in registers.
#[derive(Debug, Clone)]
pub enum Weight {
    F32(Vec<f32>),
    F16(Vec<u16>),
    Int(Quantized),
}

impl Weight {
    /// The values in f32 (decoded as every reader of a pack decodes them).
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        match self {
            Weight::F32(w) => Cow::Borrowed(w),
            Weight::F16(h) => Cow::Owned(h.iter().map(|&b| f16::from_bits(b).to_f32()).collect()),
            Weight::Int(q) => Cow::Owned(q.to_f32()),
        }
    }

    /// Rows `ids` (each below the row count) of a matrix `width` wide, decoded to f32 and
    /// concatenated: a table's lookup.
    pub fn rows_f32(&self, ids: impl IntoIterator<Item = usize>, width: usize) -> Vec<f32> {
        match self {
            Weight::Int(q) => q.rows_f32(ids),
            Weight::F32(w) => ids
                .into_iter()
                .flat_map(|r| w[r * width..(r + 1) * width].iter().copied())
                .collect(),
            Weight::F16(h) => ids
                .into_iter()
                .flat_map(|r| h[r * width..(r + 1) * width].iter())
                .map(|&b| f16::from_bits(b).to_f32())
                .collect(),
        }
    }

    /// Values in all.
    pub fn numel(&self) -> usize {
        match self {
            Weight::F32(w) => w.len(),
            Weight::F16(h) => h.len(),
            Weight::Int(q) => q.rows * q.width,
        }
    }
}

/// A LayerNorm's gamma and beta, [hidden] each.
#[derive(Debug, Clone)]
pub struct NormWeights {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// One transformer layer (`CLIPSegEncoderLayer` / `CLIPSegDecoderLayer`: the same weights).
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub spec: LayerSpec,
    pub layer_norm1: NormWeights,
    /// `q_proj | k_proj | v_proj` side by side: [hidden, 3 * hidden], one product for three.
    pub qkv: Matrix,
    pub out_proj: Matrix,
    pub layer_norm2: NormWeights,
    pub fc1: Matrix,
    pub fc2: Matrix,
}

/// Where a layer normalises: CLIP's encoders before attention and MLP (`causal` masks future
/// positions: the text tower), CLIPSeg's decoder after each residual sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    Pre { causal: bool },
    Post,
}

#[cfg(test)]
impl LayerWeights {
    /// Random weights of `spec`'s shape (norms away from 1 and 0), the same for one `seed`.
    pub fn random(spec: LayerSpec, seed: u64) -> Self {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut values = |n: usize, scale: f32, offset: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    offset + scale * ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                })
                .collect()
        };
        let (h, i) = (spec.hidden, spec.intermediate);
        let mut matrix = |k: usize, n: usize| Matrix {
            w: Weight::F32(values(k * n, 2.0 / (k as f32).sqrt(), 0.0)),
            k,
            n,
            bias: Some(values(n, 0.2, 0.0)),
        };
        let (qkv, out_proj, fc1, fc2) =
            (matrix(h, 3 * h), matrix(h, h), matrix(h, i), matrix(i, h));
        let mut norm = || NormWeights {
            gamma: values(h, 1.0, 1.0),
            beta: values(h, 1.0, 0.0),
        };
        Self {
            spec,
            layer_norm1: norm(),
            qkv,
            out_proj,
            layer_norm2: norm(),
            fc1,
            fc2,
        }
    }
}

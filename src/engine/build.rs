//! Where an engine's weights come from while it is built, and the model's modules as the
//! plain weights the kernels take.

use burn::nn::{LayerNorm, Linear};
use burn::store::ModuleSnapshot;
use burn::tensor::Device;

use super::executor::host_values;
use super::layer::{LayerWeights, Matrix, NormWeights};
use crate::Error;
use crate::config::LayerSpec;
use crate::model::transformer::EncoderLayer;
use crate::weights::pack::Pack;

/// The source of an engine's weights.
pub(super) enum Weights<'a> {
    /// Every module of the model already holds its weights (an HF folder loaded whole,
    /// natively: readable in place on any device).
    Loaded,
    /// A pack, read into each module as the engine takes it.
    Pack(&'a Pack),
}

impl Weights<'_> {
    /// Fills `module` (its parameters under `prefix` in the pack) on its own device, for
    /// burn's ops.
    pub fn fill<M: ModuleSnapshot>(&self, module: &mut M, prefix: &str) -> Result<(), Error> {
        self.fill_except(module, prefix, |_| false)
    }

    /// [`Self::fill`] but for the parameters whose paths `later` accepts (filled separately).
    pub fn fill_except<M: ModuleSnapshot>(
        &self,
        module: &mut M,
        prefix: &str,
        later: impl Fn(&str) -> bool,
    ) -> Result<(), Error> {
        match self {
            Weights::Loaded => Ok(()),
            Weights::Pack(pack) => pack.apply(module, prefix, later),
        }
    }

    /// `module` with its weights, readable on the host for the kernels: itself where it is
    /// loaded already or lives on flex, else a copy on flex made by `make` and filled (the
    /// browser cannot read the GPU synchronously).
    pub fn host<M: ModuleSnapshot>(
        &self,
        module: M,
        device: &Device,
        make: impl FnOnce(&Device) -> M,
        prefix: &str,
    ) -> Result<M, Error> {
        let mut module = match self {
            Weights::Loaded => return Ok(module),
            Weights::Pack(_) if *device == Device::flex() => module,
            Weights::Pack(_) => make(&Device::flex()),
        };
        self.fill(&mut module, prefix)?;
        Ok(module)
    }
}

/// A `Linear` as a [`Matrix`] (burn stores the weight [in, out], the kernels' layout).
pub(super) fn matrix(linear: &Linear) -> Result<Matrix, Error> {
    let [k, n] = linear.weight.dims();
    let bias = linear
        .bias
        .as_ref()
        .map(|b| host_values(b.val()))
        .transpose()?;
    Ok(Matrix {
        w: host_values(linear.weight.val())?,
        k,
        n,
        bias,
    })
}

fn norm(n: &LayerNorm) -> Result<NormWeights, Error> {
    let gamma = host_values(n.gamma.val())?;
    let beta = match &n.beta {
        Some(b) => host_values(b.val())?,
        None => vec![0.0; gamma.len()],
    };
    Ok(NormWeights { gamma, beta })
}

/// A layer's weights, `q_proj | k_proj | v_proj` fused into one [hidden, 3 * hidden] matrix.
pub(super) fn layer_weights(layer: &EncoderLayer, spec: LayerSpec) -> Result<LayerWeights, Error> {
    let attn = &layer.self_attn;
    let h = spec.hidden;
    let [q, k, v] = [&attn.q_proj, &attn.k_proj, &attn.v_proj].map(matrix);
    let (q, k, v) = (q?, k?, v?);
    let mut qkv = Vec::with_capacity(3 * h * h);
    for row in 0..h {
        for m in [&q, &k, &v] {
            qkv.extend_from_slice(&m.w[row * h..(row + 1) * h]);
        }
    }
    let bias = [q.bias, k.bias, v.bias]
        .into_iter()
        .flat_map(|b| b.unwrap_or_else(|| vec![0.0; h]))
        .collect();
    Ok(LayerWeights {
        spec,
        layer_norm1: norm(&layer.layer_norm1)?,
        qkv: Matrix {
            w: qkv,
            k: h,
            n: 3 * h,
            bias: Some(bias),
        },
        out_proj: matrix(&attn.out_proj)?,
        layer_norm2: norm(&layer.layer_norm2)?,
        fc1: matrix(&layer.mlp.fc1)?,
        fc2: matrix(&layer.mlp.fc2)?,
    })
}

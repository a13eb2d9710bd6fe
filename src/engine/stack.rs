//! A run of transformer layers (a tower's encoder, the decoder's layers) on one executor.

use std::ops::Range;
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use super::build::{Stored, Weights, layer_weights};
use super::cpu::{self, PackedLayer, Scratch};
use super::executor::{Executor, Place, host_values, param_bytes, read_values};
use super::gpu::{self, Gpu, GpuLayer};
use super::layer::Norm;
use crate::Error;
use crate::config::LayerSpec;
use crate::model::transformer::EncoderLayer;

pub(super) enum Stack {
    Burn(Vec<EncoderLayer>),
    Cpu(Vec<PackedLayer>),
    Gpu(Arc<Gpu>, Vec<GpuLayer>),
}

impl Stack {
    /// `layers` (parameters under `prefix` + their index) on `executor`'s kernels where they
    /// fit `spec`, else on burn's ops. For the kernels each layer is read, converted and
    /// dropped before the next.
    pub fn build(
        layers: Vec<EncoderLayer>,
        spec: LayerSpec,
        prefix: &str,
        weights: &Weights,
        executor: &Executor,
        device: &Device,
    ) -> Result<Self, Error> {
        // `stored`: keep the matrices a pack stores in f16, 8 or 4 bits as they are (the GPU
        // kernels decode them in registers); the CPU kernels repack them from f32.
        let plain = |i: usize, layer: EncoderLayer, stored: bool| {
            let prefix = format!("{prefix}{i}.");
            let kept = match stored {
                true => weights.stored_matrices(&prefix, spec)?,
                false => Stored::default(),
            };
            let make = |d: &Device| EncoderLayer::new(spec, d);
            let layer = weights.host_except(layer, device, make, &prefix, |p| kept.has(p))?;
            layer_weights(&layer, spec, kept)
        };
        let each = layers.into_iter().enumerate();
        Ok(match executor {
            Executor::Cpu(precision) if cpu::supports(spec.activation) => Stack::Cpu(
                each.map(|(i, l)| Ok(PackedLayer::new(&plain(i, l, false)?, *precision)))
                    .collect::<Result<_, Error>>()?,
            ),
            Executor::Gpu(gpu) if GpuLayer::supports(spec) => Stack::Gpu(
                gpu.clone(),
                each.map(|(i, l)| GpuLayer::new(gpu, &plain(i, l, true)?))
                    .collect::<Result<_, Error>>()?,
            ),
            _ => Stack::Burn(
                each.map(|(i, mut l)| {
                    weights.fill(&mut l, &format!("{prefix}{i}."))?;
                    Ok(l)
                })
                .collect::<Result<_, Error>>()?,
            ),
        })
    }

    pub fn place(&self) -> Place {
        match self {
            Stack::Burn(_) => Place::Burn,
            Stack::Cpu(_) => Place::Cpu,
            Stack::Gpu(..) => Place::Gpu,
        }
    }

    /// Bytes its weights hold in GPU memory (the kernels' buffers, burn's parameters off flex).
    pub fn device_bytes(&self) -> u64 {
        match self {
            Stack::Burn(l) => l.iter().map(param_bytes).sum(),
            Stack::Cpu(_) => 0,
            Stack::Gpu(_, l) => l.iter().map(GpuLayer::weight_bytes).sum(),
        }
    }

    /// Whether it runs on the GPU kernels with every matrix as its pack stores it.
    pub fn is_packed(&self) -> bool {
        matches!(self, Stack::Gpu(_, l) if !l.is_empty() && l.iter().all(GpuLayer::is_packed))
    }

    pub fn len(&self) -> usize {
        match self {
            Stack::Burn(l) => l.len(),
            Stack::Cpu(l) => l.len(),
            Stack::Gpu(_, l) => l.len(),
        }
    }

    /// The layers up to the deepest in `keep` on `x` [batch, seq, hidden]: the hidden states
    /// after each layer in `keep`, in that order (indices past the last layer give nothing).
    pub async fn forward(
        &self,
        x: Tensor<3>,
        norm: Norm,
        keep: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        let deepest = keep.iter().max().map_or(0, |&l| l + 1).min(self.len());
        let keep: Vec<usize> = keep.iter().copied().filter(|&l| l < deepest).collect();
        self.run(0..deepest, x, norm, &keep).await
    }

    /// Layer `i` alone on `x`.
    pub async fn layer(&self, i: usize, x: Tensor<3>, norm: Norm) -> Result<Tensor<3>, Error> {
        let mut out = self.run(i..i + 1, x, norm, &[i]).await?;
        out.pop()
            .ok_or_else(|| Error::Input(format!("layer {i} was not loaded")))
    }

    /// `layers` on `x`; the states after the layers in `keep` (indices into the stack).
    async fn run(
        &self,
        layers: Range<usize>,
        x: Tensor<3>,
        norm: Norm,
        keep: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        if layers.is_empty() {
            return Ok(Vec::new());
        }
        let [batch, seq, hidden] = x.dims();
        let device = x.device();
        let tensor =
            |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [batch, seq, hidden]), &device);
        let mut states: Vec<Option<Tensor<3>>> = vec![None; keep.len()];
        let mut keep_at = |i: usize, state: &dyn Fn() -> Tensor<3>| {
            for (slot, _) in keep.iter().enumerate().filter(|&(_, &k)| k == i) {
                states[slot] = Some(state());
            }
        };
        match self {
            Stack::Burn(all) => {
                let mut x = x;
                for i in layers {
                    x = match norm {
                        Norm::Pre { causal } => all[i].forward_pre_norm(x, causal),
                        Norm::Post => all[i].forward_post_norm(x),
                    };
                    keep_at(i, &|| x.clone());
                }
            }
            Stack::Cpu(all) => {
                // Layer after layer on one host buffer (flex only: read synchronously).
                let mut values = host_values(x)?;
                let scratch = &mut Scratch::default();
                for i in layers {
                    all[i].forward(&mut values, batch, seq, norm, scratch);
                    keep_at(i, &|| tensor(values.clone()));
                }
            }
            Stack::Gpu(gpu, all) => {
                // One submission; the input and the kept states cross to the host once each.
                let first = layers.start;
                let run: Vec<&GpuLayer> = all[layers].iter().collect();
                let relative: Vec<usize> = keep.iter().map(|k| k - first).collect();
                let values = read_values(x).await?;
                let out = gpu::forward(gpu, &run, &values, batch, seq, norm, &relative).await?;
                return Ok(out.into_iter().map(tensor).collect());
            }
        }
        Ok(states.into_iter().flatten().collect())
    }
}

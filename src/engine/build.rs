//! Where an engine's weights come from while it is built, and the model's modules as the
//! plain weights the kernels take.

use burn::nn::{LayerNorm, Linear};
use burn::store::ModuleSnapshot;
use burn::tensor::Device;

use super::executor::host_values;
use super::layer::{LayerWeights, Matrix, NormWeights, Quantized, Weight};
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
        self.host_except(module, device, make, prefix, |_| false)
    }

    /// [`Self::host`] but for the parameters whose paths `later` accepts (left unread).
    pub fn host_except<M: ModuleSnapshot>(
        &self,
        module: M,
        device: &Device,
        make: impl FnOnce(&Device) -> M,
        prefix: &str,
        later: impl Fn(&str) -> bool,
    ) -> Result<M, Error> {
        let mut module = match self {
            Weights::Loaded => return Ok(module),
            Weights::Pack(_) if *device == Device::flex() => module,
            Weights::Pack(_) => make(&Device::flex()),
        };
        self.fill_except(&mut module, prefix, later)?;
        Ok(module)
    }

    /// A layer's matrices that the pack stores in f16, 8 or 4 bits, as stored, by their paths
    /// under `prefix` ([`LAYER_MATRICES`]); none from a loaded model.
    pub fn stored_matrices(&self, prefix: &str, spec: LayerSpec) -> Result<Stored, Error> {
        let (h, i) = (spec.hidden, spec.intermediate);
        let shapes = [[h, h], [h, h], [h, h], [h, h], [h, i], [i, h]];
        let mut stored = Stored::default();
        for (path, shape) in LAYER_MATRICES.into_iter().zip(shapes) {
            if let Some(w) = self.stored(&format!("{prefix}{path}"), shape)? {
                stored.0.push((path, w, shape));
            }
        }
        Ok(stored)
    }

    /// Matrix `name` of `shape` as the pack stores it, where that is f16, 8 or 4 bits; `None`
    /// otherwise and from a loaded model.
    pub fn stored(&self, name: &str, shape: [usize; 2]) -> Result<Option<Weight>, Error> {
        let Weights::Pack(pack) = self else {
            return Ok(None);
        };
        Ok(match pack.quantized(name, shape)? {
            Some(q) => Some(Weight::Int(q)),
            None => pack.half(name, shape)?.map(Weight::F16),
        })
    }
}

/// A transformer layer's matrices, by their paths in [`EncoderLayer`].
pub(super) const LAYER_MATRICES: [&str; 6] = [
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.out_proj.weight",
    "mlp.fc1.weight",
    "mlp.fc2.weight",
];

/// Matrices kept as a pack stores them, by path, with their shapes [k, n]
/// ([`Weights::stored_matrices`]).
#[derive(Default)]
pub(super) struct Stored(Vec<(&'static str, Weight, [usize; 2])>);

impl Stored {
    pub fn has(&self, path: &str) -> bool {
        self.0.iter().any(|(p, ..)| *p == path)
    }

    fn take(&mut self, path: &str) -> Option<(Weight, [usize; 2])> {
        let at = self.0.iter().position(|(p, ..)| *p == path)?;
        let (_, w, shape) = self.0.swap_remove(at);
        Some((w, shape))
    }
}

/// A `Linear` as a [`Matrix`] (burn stores the weight [in, out], the kernels' layout).
pub(super) fn matrix(linear: &Linear) -> Result<Matrix, Error> {
    stored_matrix(linear, None)
}

/// [`matrix`] with the weight `stored` (as a pack stores it) where given: then the module's
/// own weight is never read.
fn stored_matrix(linear: &Linear, stored: Option<(Weight, [usize; 2])>) -> Result<Matrix, Error> {
    let bias = linear
        .bias
        .as_ref()
        .map(|b| host_values(b.val()))
        .transpose()?;
    let (k, n, w) = match stored {
        Some((w, [k, n])) => (k, n, w),
        None => {
            let [k, n] = linear.weight.dims();
            (k, n, Weight::F32(host_values(linear.weight.val())?))
        }
    };
    Ok(Matrix { w, k, n, bias })
}

fn norm(n: &LayerNorm) -> Result<NormWeights, Error> {
    let gamma = host_values(n.gamma.val())?;
    let beta = match &n.beta {
        Some(b) => host_values(b.val())?,
        None => vec![0.0; gamma.len()],
    };
    Ok(NormWeights { gamma, beta })
}

/// A layer's weights, `q_proj | k_proj | v_proj` fused into one [hidden, 3 * hidden] matrix;
/// the matrices in `stored` as the pack stores them, the rest read from `layer`.
pub(super) fn layer_weights(
    layer: &EncoderLayer,
    spec: LayerSpec,
    mut stored: Stored,
) -> Result<LayerWeights, Error> {
    let attn = &layer.self_attn;
    let mut take =
        |linear: &Linear, i: usize| stored_matrix(linear, stored.take(LAYER_MATRICES[i]));
    let q = take(&attn.q_proj, 0)?;
    let k = take(&attn.k_proj, 1)?;
    let v = take(&attn.v_proj, 2)?;
    let out_proj = take(&attn.out_proj, 3)?;
    let fc1 = take(&layer.mlp.fc1, 4)?;
    let fc2 = take(&layer.mlp.fc2, 5)?;
    let h = spec.hidden;
    let bias = [q.bias, k.bias, v.bias]
        .into_iter()
        .flat_map(|b| b.unwrap_or_else(|| vec![0.0; h]))
        .collect();
    let w = fuse_columns([q.w, k.w, v.w], h);
    Ok(LayerWeights {
        spec,
        layer_norm1: norm(&layer.layer_norm1)?,
        qkv: Matrix {
            w,
            k: h,
            n: 3 * h,
            bias: Some(bias),
        },
        out_proj,
        layer_norm2: norm(&layer.layer_norm2)?,
        fc1,
        fc2,
    })
}

/// Three [k, k] matrices side by side, [k, 3k]: row by row. f16 ones stay f16; quantized ones
/// stay quantized where their rows are whole bytes and blocks (the same bit width and block,
/// the row a multiple of both); otherwise all three are decoded to f32.
fn fuse_columns(parts: [Weight; 3], k: usize) -> Weight {
    if let [Weight::F16(a), Weight::F16(b), Weight::F16(c)] = &parts {
        return Weight::F16(side_by_side([a, b, c], k, k));
    }
    if let [Weight::Int(a), Weight::Int(b), Weight::Int(c)] = &parts {
        let same = [b, c]
            .iter()
            .all(|q| (q.bits, q.block, q.rows, q.width) == (a.bits, a.block, a.rows, a.width));
        let row_bits = a.width * a.bits as usize;
        if same && a.width.is_multiple_of(a.block) && row_bits.is_multiple_of(8) {
            let (row_bytes, blocks) = (row_bits / 8, a.blocks_per_row());
            return Weight::Int(Quantized {
                bits: a.bits,
                block: a.block,
                rows: a.rows,
                width: 3 * a.width,
                scales: side_by_side([&a.scales, &b.scales, &c.scales], a.rows, blocks),
                ints: side_by_side([&a.ints, &b.ints, &c.ints], a.rows, row_bytes),
            });
        }
    }
    let [a, b, c] = parts.map(|w| w.to_f32().into_owned());
    Weight::F32(side_by_side([&a, &b, &c], k, k))
}

/// Three row-major [rows, width] arrays side by side: [rows, 3 * width].
fn side_by_side<T: Copy>(parts: [&[T]; 3], rows: usize, width: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(3 * rows * width);
    for r in 0..rows {
        for part in parts {
            out.extend_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
    out
}

#[cfg(all(test, feature = "native"))]
mod tests {
    use super::*;
    use crate::weights::pack::quantize;

    /// q, k and v side by side: kept in their integers where rows are whole bytes and blocks,
    /// decoded otherwise; the same values either way.
    #[test]
    fn fused_columns_keep_integers_where_blocks_line_up() {
        let k = 16;
        let part = |seed: usize| -> Vec<f32> {
            (0..k * k)
                .map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        for (bits, block, stays_int) in [(8, 16, true), (4, 8, true), (4, 16, true), (4, 12, false)]
        {
            let parts = [0, 1, 2].map(|s| Weight::Int(quantize(&part(s), k, bits, block)));
            let want: Vec<f32> = (0..k)
                .flat_map(|row| {
                    let decoded = parts.clone().map(|p| p.to_f32().into_owned());
                    decoded
                        .into_iter()
                        .flat_map(move |p| p[row * k..(row + 1) * k].to_vec())
                })
                .collect();
            let fused = fuse_columns(parts, k);
            assert_eq!(
                matches!(fused, Weight::Int(_)),
                stays_int,
                "{bits} bits, block {block}"
            );
            assert_eq!(
                fused.to_f32().as_ref(),
                &want[..],
                "{bits} bits, block {block}"
            );
        }
    }
}

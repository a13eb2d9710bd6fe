//! `CLIPSegTextModel` + `text_projection`: prompt ids to the conditional embedding.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::transformer::{EncoderLayer, LayerSpec};
use crate::Error;
use crate::config::TextConfig;
use crate::cpu::{Precision, QuantRows};
use crate::gpu::{Gpu, GpuLayer};

/// `CLIPSegTextEmbeddings`.
#[derive(Module, Debug)]
pub struct TextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    /// Set while loading a q8 pack for inference: the token table stays 8-bit as stored (a
    /// quarter of its 100 MB in f32) and `token_embedding` is released.
    #[module(skip)]
    pub cpu_tokens: Option<Arc<QuantRows>>,
}

/// `CLIPSegEncoder` (its only weights are `layers`).
#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// See [`EncoderLayer::pack_for_cpu`].
    pub fn pack_for_cpu(&mut self, spec: LayerSpec, precision: Precision) -> Result<(), Error> {
        self.layers
            .iter_mut()
            .try_for_each(|l| l.pack_for_cpu(spec, precision))
    }

    /// Pre-norm layers up to the deepest in `keep`; returns the hidden states after each
    /// layer in `keep`, in that order. See [`Self::forward_async`].
    pub fn forward(
        &self,
        x: Tensor<3>,
        causal: bool,
        keep: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        crate::gpu::block_on(self.forward_async(x, causal, keep))
    }

    /// Layers on [`crate::gpu`] run in one submission (their input and kept states cross to
    /// the host once each, awaited); packed layers ([`EncoderLayer::pack_for_cpu`]) back to
    /// back on one host buffer; the others on burn's ops.
    pub async fn forward_async(
        &self,
        x: Tensor<3>,
        causal: bool,
        keep: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        let deepest = keep
            .iter()
            .max()
            .map_or(0, |&l| l + 1)
            .min(self.layers.len());
        if let Some((gpu, layers)) = self.on_gpu(deepest, &x.device()) {
            let keep: Vec<usize> = keep.iter().copied().filter(|&l| l < deepest).collect();
            let norm_at = crate::gpu::Norm::Pre { causal };
            return crate::gpu::forward_tensor(&gpu, &layers, x, norm_at, &keep).await;
        }
        let layers = &self.layers[..deepest];
        let mut states = vec![None; deepest];
        // A tower is packed whole or not at all (`pack_for_cpu`), and only on flex, so only
        // flex tensors are read back here.
        let packed: Option<Vec<_>> = layers.iter().map(|l| l.cpu.as_deref()).collect();
        match packed {
            Some(packed) => {
                let [batch, seq, hidden] = x.dims();
                let device = x.device();
                let mut values = crate::cpu::values(x)?;
                let scratch = &mut crate::cpu::Scratch::default();
                for (i, layer) in packed.iter().enumerate() {
                    layer.forward_pre_norm(&mut values, batch, seq, causal, scratch);
                    if keep.contains(&i) {
                        let data = TensorData::new(values.clone(), [batch, seq, hidden]);
                        states[i] = Some(Tensor::from_data(data, &device));
                    }
                }
            }
            None => {
                let mut x = x;
                for (i, layer) in layers.iter().enumerate() {
                    x = layer.forward_pre_norm(x, causal);
                    if keep.contains(&i) {
                        states[i] = Some(x.clone());
                    }
                }
            }
        }
        Ok(keep
            .iter()
            .filter_map(|&l| states.get(l).cloned().flatten())
            .collect())
    }

    /// The first `deepest` layers and the kernels, if they all run on [`crate::gpu`] here.
    fn on_gpu(&self, deepest: usize, device: &Device) -> Option<(Arc<Gpu>, Vec<&GpuLayer>)> {
        let layers: Vec<&GpuLayer> = self.layers[..deepest]
            .iter()
            .map(|l| l.gpu.as_deref())
            .collect::<Option<_>>()?;
        if layers.is_empty() {
            return None;
        }
        Some((crate::gpu::for_device(device)?, layers))
    }

    /// Uploads the layers to the GPU kernels and releases their burn projections (native:
    /// reads the weights synchronously). No-op for layer shapes the kernels lack.
    pub fn pack_for_gpu(&mut self, gpu: &Gpu, spec: LayerSpec) -> Result<(), Error> {
        if !GpuLayer::supports(spec) {
            return Ok(());
        }
        for layer in &mut self.layers {
            if layer.gpu.is_none() {
                layer.gpu = Some(Arc::new(GpuLayer::new(gpu, layer, spec)?));
                layer.release_projections();
            }
        }
        Ok(())
    }
}

/// `CLIPSegTextModel`.
#[derive(Module, Debug)]
pub struct TextModel {
    pub embeddings: TextEmbeddings,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
    #[module(skip)]
    pub config: TextConfig,
}

impl TextModel {
    pub fn new(c: &TextConfig, device: &Device) -> Self {
        let spec = Self::spec(c);
        Self {
            embeddings: TextEmbeddings {
                token_embedding: EmbeddingConfig::new(c.vocab_size, c.hidden_size).init(device),
                position_embedding: EmbeddingConfig::new(c.max_position_embeddings, c.hidden_size)
                    .init(device),
                cpu_tokens: None,
            },
            encoder: Encoder {
                layers: (0..c.num_hidden_layers)
                    .map(|_| EncoderLayer::new(spec, device))
                    .collect(),
            },
            final_layer_norm: LayerNormConfig::new(c.hidden_size)
                .with_epsilon(c.layer_norm_eps)
                .init(device),
            config: c.clone(),
        }
    }

    pub fn spec(c: &TextConfig) -> LayerSpec {
        LayerSpec {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            activation: c.hidden_act,
            eps: c.layer_norm_eps,
        }
    }

    /// See [`EncoderLayer::pack_for_cpu`].
    pub fn pack_for_cpu(&mut self, precision: Precision) -> Result<(), Error> {
        self.encoder
            .pack_for_cpu(Self::spec(&self.config), precision)
    }

    /// Pooled output for each prompt: [prompts, hidden].
    ///
    /// Prompts of different lengths are right-padded into one batch. No padding mask is needed:
    /// the causal mask already keeps every token up to the pooled EOS blind to what follows.
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        crate::gpu::block_on(self.forward_async(ids))
    }

    /// [`Self::forward`], awaiting the GPU where layers run on [`crate::gpu`] (the browser).
    pub async fn forward_async(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        let (x, pooled) = self.embed(ids)?;
        let keep = self.encoder.layers.len().checked_sub(1);
        let x = match keep {
            Some(last) => self
                .encoder
                .forward_async(x, true, &[last])
                .await?
                .remove(0),
            None => x,
        };
        Ok(self.pool(x, pooled))
    }

    /// Checks the ids; token + position embeddings [prompts, len, hidden] and the row of each
    /// prompt's pooled token in the flattened batch.
    fn embed(&self, ids: &[Vec<u32>]) -> Result<(Tensor<3>, Vec<i64>), Error> {
        let c = &self.config;
        let device = self.final_layer_norm.gamma.device();
        let len = ids.iter().map(Vec::len).max().unwrap_or(0);
        if ids.is_empty() || len == 0 {
            return Err(Error::Input("no prompt tokens to encode".into()));
        }
        if len > c.max_position_embeddings {
            return Err(Error::Input(format!(
                "a prompt has {len} tokens, the text model takes at most {}",
                c.max_position_embeddings
            )));
        }
        let mut flat = Vec::with_capacity(ids.len() * len);
        let mut pooled = Vec::with_capacity(ids.len());
        for (row, prompt) in ids.iter().enumerate() {
            if let Some(&bad) = prompt.iter().find(|&&id| id as usize >= c.vocab_size) {
                return Err(Error::Input(format!(
                    "token id {bad} is outside the vocabulary ({} entries)",
                    c.vocab_size
                )));
            }
            flat.extend(prompt.iter().map(|&id| id as i64));
            flat.extend(std::iter::repeat_n(0i64, len - prompt.len()));
            pooled.push((row * len + pool_index(prompt, c.eos_token_id)) as i64);
        }
        let batch = ids.len();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
        let tokens = match &self.embeddings.cpu_tokens {
            Some(table) => {
                let rows = table.gather(&flat);
                let data = TensorData::new(rows, [batch, len, c.hidden_size]);
                Tensor::from_data(data, &device)
            }
            None => {
                let input =
                    Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, len]), &device);
                self.embeddings.token_embedding.forward(input)
            }
        };
        Ok((
            tokens + self.embeddings.position_embedding.forward(positions),
            pooled,
        ))
    }

    /// `final_layer_norm`, then the pooled token of each prompt: [prompts, hidden].
    fn pool(&self, x: Tensor<3>, pooled: Vec<i64>) -> Tensor<2> {
        let [batch, len, hidden] = x.dims();
        let x = self
            .final_layer_norm
            .forward(x)
            .reshape([batch * len, hidden]);
        let index = Tensor::<1, Int>::from_data(TensorData::new(pooled, [batch]), &x.device());
        x.select(0, index)
    }
}

/// Where HF pools a prompt: the first EOS, or for legacy configs (`eos_token_id == 2`) the
/// first occurrence of the largest id (which is EOS in CLIP's vocabulary).
fn pool_index(ids: &[u32], eos_token_id: i64) -> usize {
    if eos_token_id == 2 {
        let max = ids.iter().copied().max().unwrap_or(0);
        ids.iter().position(|&id| id == max).unwrap_or(0)
    } else {
        ids.iter()
            .position(|&id| i64::from(id) == eos_token_id)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::pool_index;

    #[test]
    fn pooling_follows_hf() {
        let ids = [49406, 320, 49407, 49407];
        assert_eq!(pool_index(&ids, 49407), 2);
        assert_eq!(pool_index(&ids, 2), 2);
        // Without EOS, torch's argmax of an all-false row is 0.
        assert_eq!(pool_index(&[5, 6], 49407), 0);
        assert_eq!(pool_index(&[5, 9, 6], 2), 1);
    }
}

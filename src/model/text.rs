//! `CLIPSegTextModel` + `text_projection`: prompt ids to the conditional embedding.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::transformer::EncoderLayer;
use crate::Error;
use crate::config::TextConfig;

/// `CLIPSegTextEmbeddings`.
#[derive(Module, Debug)]
pub struct TextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

/// `CLIPSegEncoder` (its only weights are `layers`).
#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// Pre-norm layers up to the deepest in `keep`; the hidden states after each layer in
    /// `keep`, in that order.
    pub fn forward(&self, x: Tensor<3>, causal: bool, keep: &[usize]) -> Vec<Tensor<3>> {
        let deepest = keep.iter().max().map_or(0, |&l| l + 1);
        let mut states = vec![None; deepest.min(self.layers.len())];
        let mut x = x;
        for (i, layer) in self.layers.iter().take(deepest).enumerate() {
            x = layer.forward_pre_norm(x, causal);
            if keep.contains(&i) {
                states[i] = Some(x.clone());
            }
        }
        keep.iter()
            .filter_map(|&l| states.get(l).cloned().flatten())
            .collect()
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
        let spec = c.layer_spec();
        Self {
            embeddings: TextEmbeddings {
                token_embedding: EmbeddingConfig::new(c.vocab_size, c.hidden_size).init(device),
                position_embedding: EmbeddingConfig::new(c.max_position_embeddings, c.hidden_size)
                    .init(device),
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

    /// Pooled output for each prompt: [prompts, hidden].
    ///
    /// Prompts of different lengths are right-padded into one batch. No padding mask is needed:
    /// the causal mask already keeps every token up to the pooled EOS blind to what follows.
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        let device = self.final_layer_norm.gamma.device();
        let batch = TokenBatch::new(&self.config, ids)?;
        let tokens = self.embeddings.token_embedding.forward(batch.ids(&device));
        let x = tokens + positions(&self.embeddings.position_embedding, batch.len, &device);
        let x = match self.encoder.layers.len().checked_sub(1) {
            Some(last) => self.encoder.forward(x, true, &[last]).remove(0),
            None => x,
        };
        Ok(pool(&self.final_layer_norm, x, &batch))
    }
}

/// Prompts' ids checked, right-padded into one batch [prompts, len], with the row of each
/// prompt's pooled token in the flattened batch.
pub struct TokenBatch {
    /// [prompts * len], padded with 0.
    pub flat: Vec<i64>,
    pub prompts: usize,
    pub len: usize,
    pooled: Vec<i64>,
}

impl TokenBatch {
    pub fn new(c: &TextConfig, ids: &[Vec<u32>]) -> Result<Self, Error> {
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
        Ok(Self {
            flat,
            prompts: ids.len(),
            len,
            pooled,
        })
    }

    /// The ids as a tensor [prompts, len].
    pub fn ids(&self, device: &Device) -> Tensor<2, Int> {
        let data = TensorData::new(self.flat.clone(), [self.prompts, self.len]);
        Tensor::from_data(data, device)
    }
}

/// Position embeddings of the first `len` positions, [1, len, hidden].
pub fn positions(table: &Embedding, len: usize, device: &Device) -> Tensor<3> {
    let positions = Tensor::<1, Int>::arange(0..len as i64, device).reshape([1, len]);
    table.forward(positions)
}

/// `final_layer_norm`, then the pooled token of each prompt: [prompts, hidden].
pub fn pool(final_layer_norm: &LayerNorm, x: Tensor<3>, batch: &TokenBatch) -> Tensor<2> {
    let [prompts, len, hidden] = x.dims();
    let x = final_layer_norm.forward(x).reshape([prompts * len, hidden]);
    let pooled = TensorData::new(batch.pooled.clone(), [prompts]);
    let pooled = Tensor::<1, Int>::from_data(pooled, &x.device());
    x.select(0, pooled)
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

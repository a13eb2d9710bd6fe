//! Step 1, the text tower: prompt ids to conditional embeddings.

use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Tensor, TensorData};

use super::build::Weights;
use super::executor::{Executor, Place, param_bytes};
use super::layer::{Norm, Weight};
use super::stack::Stack;
use crate::Error;
use crate::config::TextConfig;
use crate::model::text::{TextEmbeddings, TextModel, TokenBatch, pool, positions};

const PREFIX: &str = "clip.text_model.";
const TOKENS: &str = "clip.text_model.embeddings.token_embedding.weight";

/// The token table: burn's, or on the host as a pack stores it (f16 half, q8 a quarter, q4
/// an eighth of its f32 size) for the kernels, its rows decoded on lookup with the pack
/// decoder's arithmetic (the values of the f32 table it would have made). On a GPU it then
/// holds no device memory at all: the looked-up rows are the tower's input.
enum Tokens {
    Burn(Embedding),
    Stored(Weight),
}

pub(super) struct TextTower {
    tokens: Tokens,
    position_embedding: Embedding,
    layers: Stack,
    final_layer_norm: LayerNorm,
    text_projection: Linear,
    config: TextConfig,
}

impl TextTower {
    pub fn build(
        model: TextModel,
        mut text_projection: Linear,
        weights: &Weights,
        executor: &Executor,
    ) -> Result<Self, Error> {
        let TextModel {
            embeddings:
                TextEmbeddings {
                    mut token_embedding,
                    mut position_embedding,
                },
            encoder,
            mut final_layer_norm,
            config,
        } = model;
        let device = final_layer_norm.gamma.device();
        let shape = [config.vocab_size, config.hidden_size];
        let stored = match executor {
            Executor::Cpu(_) | Executor::Gpu(_) => weights.stored(TOKENS, shape)?,
            Executor::Burn => None,
        };
        let tokens = match stored {
            Some(table) => Tokens::Stored(table),
            None => {
                weights.fill(
                    &mut token_embedding,
                    &format!("{PREFIX}embeddings.token_embedding."),
                )?;
                Tokens::Burn(token_embedding)
            }
        };
        let prefix = format!("{PREFIX}embeddings.position_embedding.");
        weights.fill(&mut position_embedding, &prefix)?;
        let prefix = format!("{PREFIX}encoder.layers.");
        let layers = Stack::build(
            encoder.layers,
            config.layer_spec(),
            &prefix,
            weights,
            executor,
            &device,
        )?;
        weights.fill(&mut final_layer_norm, &format!("{PREFIX}final_layer_norm."))?;
        weights.fill(&mut text_projection, "clip.text_projection.")?;
        Ok(Self {
            tokens,
            position_embedding,
            layers,
            final_layer_norm,
            text_projection,
            config,
        })
    }

    /// Where its layers run, whether the token table stays as the pack stores it, and
    /// whether the layers keep the pack's f16 or integers.
    pub fn placement(&self) -> (Place, bool, bool) {
        let stored = matches!(self.tokens, Tokens::Stored(_));
        (self.layers.place(), stored, self.layers.is_packed())
    }

    /// Bytes its weights hold in GPU memory (a stored token table: none, it stays on the host).
    pub fn device_bytes(&self) -> u64 {
        let tokens = match &self.tokens {
            Tokens::Burn(table) => param_bytes(table),
            Tokens::Stored(_) => 0,
        };
        tokens
            + param_bytes(&self.position_embedding)
            + self.layers.device_bytes()
            + param_bytes(&self.final_layer_norm)
            + param_bytes(&self.text_projection)
    }

    /// Conditional embeddings [prompts, projection_dim]; as [`TextModel::forward`] and
    /// `text_projection`.
    pub async fn forward(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        let device = self.final_layer_norm.gamma.device();
        let batch = TokenBatch::new(&self.config, ids)?;
        let tokens = match &self.tokens {
            Tokens::Burn(table) => table.forward(batch.ids(&device)),
            Tokens::Stored(table) => {
                let shape = [batch.prompts, batch.len, self.config.hidden_size];
                let ids = batch.flat.iter().map(|&id| id as usize);
                let rows = TensorData::new(table.rows_f32(ids, self.config.hidden_size), shape);
                Tensor::from_data(rows, &device)
            }
        };
        let x = tokens + positions(&self.position_embedding, batch.len, &device);
        let x = match self.layers.len().checked_sub(1) {
            Some(last) => {
                let norm = Norm::Pre { causal: true };
                self.layers.forward(x, norm, &[last]).await?.remove(0)
            }
            None => x,
        };
        let pooled = pool(&self.final_layer_norm, x, &batch);
        Ok(self.text_projection.forward(pooled))
    }
}

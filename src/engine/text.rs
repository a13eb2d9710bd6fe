//! Step 1, the text tower: prompt ids to conditional embeddings.

use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Tensor, TensorData};

use super::build::Weights;
use super::cpu::QuantRows;
use super::executor::{Executor, Place};
use super::layer::Norm;
use super::stack::Stack;
use crate::Error;
use crate::config::TextConfig;
use crate::model::text::{TextEmbeddings, TextModel, TokenBatch, pool, positions};

const PREFIX: &str = "clip.text_model.";
const TOKENS: &str = "clip.text_model.embeddings.token_embedding.weight";

/// The token table: burn's, or 8-bit as a q8 pack stores it (a quarter of its f32 size) for
/// the CPU kernels.
enum Tokens {
    Burn(Embedding),
    Int8(QuantRows),
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
        let int8 = match (weights, executor) {
            (Weights::Pack(pack), Executor::Cpu(_)) => pack.q8_rows(TOKENS, shape)?,
            _ => None,
        };
        let tokens = match int8 {
            Some(rows) => Tokens::Int8(QuantRows {
                width: config.hidden_size,
                ints: rows.ints,
                scales: rows.scales,
            }),
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

    /// Where its layers run, and whether the token table stays 8-bit.
    pub fn placement(&self) -> (Place, bool) {
        (self.layers.place(), matches!(self.tokens, Tokens::Int8(_)))
    }

    /// Conditional embeddings [prompts, projection_dim]; as [`TextModel::forward`] and
    /// `text_projection`.
    pub async fn forward(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, Error> {
        let device = self.final_layer_norm.gamma.device();
        let batch = TokenBatch::new(&self.config, ids)?;
        let tokens = match &self.tokens {
            Tokens::Burn(table) => table.forward(batch.ids(&device)),
            Tokens::Int8(table) => {
                let shape = [batch.prompts, batch.len, self.config.hidden_size];
                let rows = TensorData::new(table.gather(&batch.flat), shape);
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

//! Step 2, the vision tower: pixels to the activations of the layers the decoder reads.

use std::sync::{Arc, Mutex};

use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use super::build::Weights;
use super::cpu::Projection;
use super::executor::{Executor, Place, host_values, param_bytes, read_values, tensor_bytes};
use super::gpu::{Gpu, GpuLinear};
use super::layer::{Matrix, Norm, Weight};
use super::stack::Stack;
use crate::Error;
use crate::config::VisionConfig;
use crate::model::vision::{
    VisionEmbeddings, VisionModel, check_pixels, class_token, no_image_prompts, pooling,
    position_embeddings, with_class_and_positions,
};

const PREFIX: &str = "clip.vision_model.";

/// The patch embedding: burn's convolution, or the same as one product over the image's
/// patches on the kernels.
enum Patches {
    Burn(Conv2d),
    Cpu(Projection),
    Gpu(Arc<Gpu>, GpuLinear),
}

pub(super) struct VisionTower {
    class_embedding: Tensor<1>,
    patches: Patches,
    /// The learned position embeddings, and those resampled for the grid last asked for.
    position_embedding: Tensor<2>,
    resampled: Mutex<Option<(usize, Tensor<2>)>>,
    pre_layrnorm: LayerNorm,
    layers: Stack,
    /// `post_layernorm` and `visual_projection`: image prompts only (burn's ops: one row each).
    pooled: Option<(LayerNorm, Linear)>,
    config: VisionConfig,
}

impl VisionTower {
    pub fn build(
        model: VisionModel,
        visual_projection: Option<Linear>,
        weights: &Weights,
        executor: &Executor,
        device: &Device,
    ) -> Result<Self, Error> {
        let VisionModel {
            mut embeddings,
            mut pre_layrnorm,
            encoder,
            post_layernorm,
            config,
        } = model;
        // The patch embedding is loaded where it runs (below).
        let conv = |path: &str| path.starts_with("patch_embedding.");
        weights.fill_except(&mut embeddings, &format!("{PREFIX}embeddings."), conv)?;
        let VisionEmbeddings {
            class_embedding,
            patch_embedding,
            position_embedding,
        } = embeddings;
        let patches = Self::patches(patch_embedding, &config, weights, executor, device)?;
        weights.fill(&mut pre_layrnorm, &format!("{PREFIX}pre_layrnorm."))?;
        let prefix = format!("{PREFIX}encoder.layers.");
        let spec = config.layer_spec();
        let layers = Stack::build(encoder.layers, spec, &prefix, weights, executor, device)?;
        let pooled = match (post_layernorm, visual_projection) {
            (Some(mut norm), Some(mut projection)) => {
                weights.fill(&mut norm, &format!("{PREFIX}post_layernorm."))?;
                weights.fill(&mut projection, "clip.visual_projection.")?;
                Some((norm, projection))
            }
            _ => None,
        };
        Ok(Self {
            class_embedding: class_embedding.val(),
            patches,
            position_embedding: position_embedding.weight.val(),
            resampled: Default::default(),
            pre_layrnorm,
            layers,
            pooled,
            config,
        })
    }

    fn patches(
        mut conv: Conv2d,
        c: &VisionConfig,
        weights: &Weights,
        executor: &Executor,
        device: &Device,
    ) -> Result<Patches, Error> {
        let prefix = format!("{PREFIX}embeddings.patch_embedding.");
        let k = c.num_channels * c.patch_size * c.patch_size;
        let fits_gpu = GpuLinear::supports(k, c.hidden_size);
        if matches!(executor, Executor::Burn) || (matches!(executor, Executor::Gpu(_)) && !fits_gpu)
        {
            weights.fill(&mut conv, &prefix)?;
            return Ok(Patches::Burn(conv));
        }
        let make = |d: &Device| {
            let stub = VisionModel::new(c, 0, false, d);
            stub.embeddings.patch_embedding
        };
        let conv = weights.host(conv, device, make, &prefix)?;
        let m = patch_matrix(&host_values(conv.weight.val())?, c);
        Ok(match executor {
            Executor::Cpu(precision) => {
                Patches::Cpu(Projection::pack(&m.w.to_f32(), m.k, m.n, None, *precision))
            }
            Executor::Gpu(gpu) => Patches::Gpu(gpu.clone(), GpuLinear::new(gpu, &m)?),
            Executor::Burn => unreachable!("handled above"),
        })
    }

    /// Whether its layers keep the pack's f16 or integers.
    pub fn packed_layers(&self) -> bool {
        self.layers.is_packed()
    }

    /// Where the patch embedding and the layers run.
    pub fn placement(&self) -> (Place, Place) {
        let patches = match self.patches {
            Patches::Burn(_) => Place::Burn,
            Patches::Cpu(_) => Place::Cpu,
            Patches::Gpu(..) => Place::Gpu,
        };
        (patches, self.layers.place())
    }

    /// Bytes its weights hold in GPU memory.
    pub fn device_bytes(&self) -> u64 {
        let patches = match &self.patches {
            Patches::Burn(conv) => param_bytes(conv),
            Patches::Cpu(_) => 0,
            Patches::Gpu(_, linear) => linear.weight_bytes(),
        };
        let tensors = tensor_bytes(&self.class_embedding) + tensor_bytes(&self.position_embedding);
        let pooled = (self.pooled.as_ref()).map_or(0, |(n, p)| param_bytes(n) + param_bytes(p));
        tensors + patches + param_bytes(&self.pre_layrnorm) + self.layers.device_bytes() + pooled
    }

    /// As [`crate::model::ClipSeg::encode_examples`]: example images' `pixel_values`
    /// [examples, 3, S, S] to conditional embeddings [examples, projection_dim].
    pub async fn encode_examples(&self, pixel_values: Tensor<4>) -> Result<Tensor<2>, Error> {
        let (norm, projection) = self.pooled.as_ref().ok_or_else(no_image_prompts)?;
        let norm = pooling(Some(norm), &self.config, self.layers.len())?;
        let last = self.config.num_hidden_layers - 1;
        let states = self.forward(pixel_values, &[last]).await?.remove(0);
        Ok(projection.forward(class_token(norm, states)))
    }

    /// As [`VisionModel::forward`]: `pixel_values` [batch, 3, S, S] to the hidden states after
    /// each layer in `extract`, in that order.
    pub async fn forward(
        &self,
        pixel_values: Tensor<4>,
        extract: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        let c = &self.config;
        let dims = pixel_values.dims();
        let grid = check_pixels(c, dims, self.layers.len(), extract)?;
        let [batch, channels, size, _] = dims;
        let device = pixel_values.device();
        let rows = batch * grid * grid;
        let product = |out: Vec<f32>| {
            Tensor::from_data(
                TensorData::new(out, [batch, grid * grid, c.hidden_size]),
                &device,
            )
        };
        let patches = match &self.patches {
            Patches::Burn(conv) => conv
                .forward(pixel_values)
                .reshape([batch, c.hidden_size, grid * grid])
                .swap_dims(1, 2),
            Patches::Cpu(projection) => {
                let pixels = host_values(pixel_values)?;
                let a = patch_rows(&pixels, batch, channels, size, c.patch_size);
                let mut out = vec![0.0; rows * c.hidden_size];
                projection.matmul(&a, rows, &mut out);
                product(out)
            }
            Patches::Gpu(gpu, linear) => {
                let pixels = read_values(pixel_values).await?;
                let a = patch_rows(&pixels, batch, channels, size, c.patch_size);
                product(linear.forward(gpu, &a, rows).await?)
            }
        };
        let x = with_class_and_positions(
            self.class_embedding.clone(),
            patches,
            self.positions(grid, &device),
        );
        let x = self.pre_layrnorm.forward(x);
        self.layers
            .forward(x, Norm::Pre { causal: false }, extract)
            .await
    }

    /// Position embeddings for a `grid` x `grid` input, resampled once per grid (a
    /// [grid², 196] x [196, hidden] product for CLIPSeg's 352 px).
    fn positions(&self, grid: usize, device: &Device) -> Tensor<2> {
        let mut kept = self.resampled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, table)) = kept.as_ref()
            && *g == grid
        {
            return table.clone();
        }
        let table = position_embeddings(self.position_embedding.clone(), grid, device);
        *kept = Some((grid, table.clone()));
        table
    }
}

/// The conv weight [hidden, channels, patch, patch] as the [k, hidden] matrix of one product
/// over [`patch_rows`].
fn patch_matrix(w: &[f32], c: &VisionConfig) -> Matrix {
    let (k, hidden) = (c.num_channels * c.patch_size * c.patch_size, c.hidden_size);
    let w = (0..k)
        .flat_map(|kk| (0..hidden).map(move |j| w[j * k + kk]))
        .collect();
    Matrix {
        w: Weight::F32(w),
        k,
        n: hidden,
        bias: None,
    }
}

/// The non-overlapping `patch` x `patch` tiles of `pixels` [batch, channels, size, size] as rows
/// [batch * grid², channels * patch²], each in (channel, y, x) order: a stride-`patch` conv
/// becomes one product with its weight viewed as [out, channels * patch²].
fn patch_rows(
    pixels: &[f32],
    batch: usize,
    channels: usize,
    size: usize,
    patch: usize,
) -> Vec<f32> {
    let grid = size / patch;
    let mut rows = Vec::with_capacity(batch * grid * grid * channels * patch * patch);
    for b in 0..batch {
        for gy in 0..grid {
            for gx in 0..grid {
                for c in 0..channels {
                    let plane = &pixels[(b * channels + c) * size * size..][..size * size];
                    for y in 0..patch {
                        let at = (gy * patch + y) * size + gx * patch;
                        rows.extend_from_slice(&plane[at..at + patch]);
                    }
                }
            }
        }
    }
    rows
}

//! `CLIPSegVisionModel`, run only up to the deepest layer the decoder reads.

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::text::Encoder;
use super::transformer::{EncoderLayer, LayerSpec};
use crate::Error;
use crate::config::VisionConfig;
use crate::cpu::{Precision, Projection};
use crate::gpu::{Gpu, GpuLinear};

/// `CLIPSegVisionEmbeddings`.
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    pub class_embedding: Param<Tensor<1>>,
    /// Conv without bias, kernel = stride = patch size.
    pub patch_embedding: Conv2d,
    /// Learned at `image_size`; resampled for other inputs (CLIPSeg runs at 352, not 224).
    pub position_embedding: Embedding,
    /// `patch_embedding` as one GEMM for the CPU path (set by [`VisionModel::pack_for_cpu`]; the
    /// conv weight stays, it is 0.6% of the model).
    #[module(skip)]
    pub cpu_patch_embedding: Option<Arc<Projection>>,
    /// The same GEMM on [`crate::gpu`]'s matmul kernel (set by
    /// [`VisionModel::pack_patch_embedding_for_gpu`]).
    #[module(skip)]
    pub gpu_patch_embedding: Option<Arc<GpuLinear>>,
    /// `position_embedding` resampled for one grid, kept by [`VisionModel::keep_positions_for`]
    /// once the weights are final (loaded for inference), so a pass does not redo the
    /// resampling: a [grid², 196] x [196, hidden] matmul, on burn's ops on WebGPU.
    #[module(skip)]
    pub resampled_positions: Option<(usize, Tensor<2>)>,
}

/// `CLIPSegVisionModel` minus `post_layernorm`, which only feeds the pooled output.
#[derive(Module, Debug)]
pub struct VisionModel {
    pub embeddings: VisionEmbeddings,
    pub pre_layrnorm: LayerNorm,
    /// Only `layers_used` layers: nothing deeper reaches the decoder.
    pub encoder: Encoder,
    #[module(skip)]
    pub config: VisionConfig,
}

impl VisionModel {
    pub fn new(c: &VisionConfig, layers_used: usize, device: &Device) -> Self {
        let spec = Self::spec(c);
        let grid = c.image_size / c.patch_size;
        Self {
            embeddings: VisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::zeros([c.hidden_size], device)),
                patch_embedding: Conv2dConfig::new(
                    [c.num_channels, c.hidden_size],
                    [c.patch_size, c.patch_size],
                )
                .with_stride([c.patch_size, c.patch_size])
                .with_bias(false)
                .init(device),
                position_embedding: EmbeddingConfig::new(grid * grid + 1, c.hidden_size)
                    .init(device),
                cpu_patch_embedding: None,
                gpu_patch_embedding: None,
                resampled_positions: None,
            },
            pre_layrnorm: LayerNormConfig::new(c.hidden_size)
                .with_epsilon(c.layer_norm_eps)
                .init(device),
            encoder: Encoder {
                layers: (0..layers_used)
                    .map(|_| EncoderLayer::new(spec, device))
                    .collect(),
            },
            config: c.clone(),
        }
    }

    pub fn spec(c: &VisionConfig) -> LayerSpec {
        LayerSpec {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            activation: c.hidden_act,
            eps: c.layer_norm_eps,
        }
    }

    /// See [`EncoderLayer::pack_for_cpu`]; the patch embedding is packed too.
    pub fn pack_for_cpu(&mut self, precision: Precision) -> Result<(), Error> {
        self.encoder
            .pack_for_cpu(Self::spec(&self.config), precision)?;
        if self.embeddings.cpu_patch_embedding.is_none() {
            let w = crate::cpu::values(self.embeddings.patch_embedding.weight.val())?;
            let (k, wt) = self.patch_matrix(&w);
            let packed = Projection::pack(&wt, k, self.config.hidden_size, None, precision);
            self.embeddings.cpu_patch_embedding = Some(Arc::new(packed));
        }
        Ok(())
    }

    /// Uploads the patch embedding to `gpu` as one GEMM, from `weight`: the conv's
    /// [hidden, channels, patch, patch] values, read on the host (the browser cannot read the
    /// GPU synchronously). A no-op for shapes the kernel lacks.
    pub fn pack_patch_embedding_for_gpu(&mut self, gpu: &Gpu, weight: &[f32]) -> Result<(), Error> {
        let (k, wt) = self.patch_matrix(weight);
        let hidden = self.config.hidden_size;
        if GpuLinear::supports(k, hidden) {
            let linear = GpuLinear::new(gpu, &wt, k, hidden, None)?;
            self.embeddings.gpu_patch_embedding = Some(Arc::new(linear));
        }
        Ok(())
    }

    /// The conv weight [hidden, channels, patch, patch] viewed as [hidden, k] and transposed
    /// to [k, hidden], the GEMM form of the patch embedding; with k.
    fn patch_matrix(&self, w: &[f32]) -> (usize, Vec<f32>) {
        let c = &self.config;
        let (k, hidden) = (c.num_channels * c.patch_size * c.patch_size, c.hidden_size);
        let wt = (0..k)
            .flat_map(|kk| (0..hidden).map(move |j| w[j * k + kk]))
            .collect();
        (k, wt)
    }

    /// `pixel_values` [batch, 3, H, W] (square, H a multiple of the patch size) to the hidden
    /// states after each layer in `extract`, in that order: [batch, 1 + (H/patch)^2, hidden].
    pub fn forward(
        &self,
        pixel_values: Tensor<4>,
        extract: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        crate::gpu::block_on(self.forward_async(pixel_values, extract))
    }

    /// [`Self::forward`], awaiting the GPU where layers run on [`crate::gpu`] (the browser).
    pub async fn forward_async(
        &self,
        pixel_values: Tensor<4>,
        extract: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        let x = self.embed(pixel_values, extract).await?;
        self.encoder.forward_async(x, false, extract).await
    }

    /// Checks the input, then patch, class and position embeddings and `pre_layrnorm`.
    async fn embed(&self, pixel_values: Tensor<4>, extract: &[usize]) -> Result<Tensor<3>, Error> {
        let c = &self.config;
        let [batch, channels, height, width] = pixel_values.dims();
        if channels != c.num_channels
            || height != width
            || height % c.patch_size != 0
            || height == 0
        {
            return Err(Error::Input(format!(
                "pixel values must be [batch, {}, S, S] with S a multiple of {}, got [{batch}, {channels}, {height}, {width}]",
                c.num_channels, c.patch_size
            )));
        }
        if let Some(&l) = extract.iter().find(|&&l| l >= self.encoder.layers.len()) {
            return Err(Error::Input(format!("layer {l} was not loaded")));
        }
        let device = pixel_values.device();
        let grid = height / c.patch_size;
        let hidden = c.hidden_size;
        let gpu = self.embeddings.gpu_patch_embedding.as_ref();
        let gpu = gpu.and_then(|linear| Some((linear, crate::gpu::for_device(&device)?)));
        let patches = match (&self.embeddings.cpu_patch_embedding, gpu) {
            (Some(conv), _) => {
                let pixels = crate::cpu::values(pixel_values)?;
                let rows = crate::cpu::patch_rows(&pixels, batch, channels, height, c.patch_size);
                let mut out = vec![0.0; batch * grid * grid * hidden];
                conv.matmul(&rows, batch * grid * grid, &mut out);
                let data = TensorData::new(out, [batch, grid * grid, hidden]);
                Tensor::from_data(data, &device)
            }
            (None, Some((linear, gpu))) => {
                let pixels = crate::gpu::values_async(pixel_values).await?;
                let rows = crate::cpu::patch_rows(&pixels, batch, channels, height, c.patch_size);
                let out = linear.forward(&gpu, &rows, batch * grid * grid).await?;
                let data = TensorData::new(out, [batch, grid * grid, hidden]);
                Tensor::from_data(data, &device)
            }
            (None, None) => self
                .embeddings
                .patch_embedding
                .forward(pixel_values)
                .reshape([batch, hidden, grid * grid])
                .swap_dims(1, 2),
        };
        let class = self
            .embeddings
            .class_embedding
            .val()
            .reshape([1, 1, hidden])
            .expand([batch, 1, hidden]);
        let x = Tensor::cat(vec![class, patches], 1)
            + self.position_embeddings(grid, &device).unsqueeze_dim(0);
        Ok(self.pre_layrnorm.forward(x))
    }

    /// Keeps the position embeddings resampled for `grid` x `grid` inputs (the preprocessor's
    /// size over the patch size), so passes at that size skip the resampling. Call only once
    /// the weights are final: the kept table does not follow later changes to them.
    pub fn keep_positions_for(&mut self, grid: usize) {
        let device = self.embeddings.position_embedding.weight.device();
        let table = self.position_embeddings(grid, &device);
        self.embeddings.resampled_positions = Some((grid, table));
    }

    /// Position embeddings for a `grid` x `grid` input: the learned ones, or HF's
    /// `interpolate_pos_encoding` (torch bicubic, A = -0.75, align_corners=False), done as one
    /// matmul with host-computed weights so every backend resamples identically.
    fn position_embeddings(&self, grid: usize, device: &Device) -> Tensor<2> {
        if let Some((kept, table)) = &self.embeddings.resampled_positions
            && *kept == grid
            && table.device() == *device
        {
            return table.clone();
        }
        let table = self.embeddings.position_embedding.weight.val();
        let [positions, _] = table.dims();
        let src = ((positions - 1) as f64).sqrt() as usize;
        if src == grid {
            return table;
        }
        let class = table.clone().narrow(0, 0, 1);
        let patch = table.narrow(0, 1, positions - 1);
        let weights = bicubic_weights_2d(src, grid);
        let weights =
            Tensor::<2>::from_data(TensorData::new(weights, [grid * grid, src * src]), device);
        Tensor::cat(vec![class, weights.matmul(patch)], 0)
    }
}

/// Row-major [dst*dst, src*src] matrix of torch's separable bicubic resampling of a square grid.
fn bicubic_weights_2d(src: usize, dst: usize) -> Vec<f32> {
    let w1 = bicubic_weights_1d(src, dst);
    let mut out = vec![0f32; dst * dst * src * src];
    for i in 0..dst {
        for j in 0..dst {
            let row = &mut out[(i * dst + j) * src * src..][..src * src];
            for a in 0..src {
                for b in 0..src {
                    row[a * src + b] = (w1[i * src + a] * w1[j * src + b]) as f32;
                }
            }
        }
    }
    out
}

/// [dst, src] weights of `upsample_bicubic2d` along one axis (ATen's
/// `get_cubic_upsample_coefficients`, taps clamped at the borders).
fn bicubic_weights_1d(src: usize, dst: usize) -> Vec<f64> {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = src as f64 / dst as f64;
    let mut w = vec![0f64; dst * src];
    for d in 0..dst {
        let real = scale * (d as f64 + 0.5) - 0.5;
        let floor = real.floor();
        let t = real - floor;
        let coeffs = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, coeff) in coeffs.iter().enumerate() {
            let tap = (floor as i64 - 1 + k as i64).clamp(0, src as i64 - 1) as usize;
            w[d * src + tap] += coeff;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::bicubic_weights_1d;

    #[test]
    fn bicubic_rows_sum_to_one_and_identity_at_same_size() {
        let w = bicubic_weights_1d(14, 22);
        for row in w.chunks(14) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        let id = bicubic_weights_1d(5, 5);
        for (i, row) in id.chunks(5).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }
}

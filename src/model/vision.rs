//! `CLIPSegVisionModel`: run up to the deepest layer the decoder reads for the image to
//! segment, and through every layer to `post_layernorm` for an example image (image prompts).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::text::Encoder;
use super::transformer::EncoderLayer;
use crate::Error;
use crate::config::VisionConfig;

/// `CLIPSegVisionEmbeddings`.
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    pub class_embedding: Param<Tensor<1>>,
    /// Conv without bias, kernel = stride = patch size.
    pub patch_embedding: Conv2d,
    /// Learned at `image_size`; resampled for other inputs (CLIPSeg runs at 352, not 224).
    pub position_embedding: Embedding,
}

/// `CLIPSegVisionModel`. A model for text prompts only holds the layers the decoder reads and
/// no `post_layernorm`; one for image prompts holds every layer and `post_layernorm`, which
/// feed the pooled output ([`VisionModel::pooled`]).
#[derive(Module, Debug)]
pub struct VisionModel {
    pub embeddings: VisionEmbeddings,
    pub pre_layrnorm: LayerNorm,
    pub encoder: Encoder,
    pub post_layernorm: Option<LayerNorm>,
    #[module(skip)]
    pub config: VisionConfig,
}

impl VisionModel {
    /// With `layers` encoder layers, and `post_layernorm` when `pooled`.
    pub fn new(c: &VisionConfig, layers: usize, pooled: bool, device: &Device) -> Self {
        let spec = c.layer_spec();
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
            },
            pre_layrnorm: LayerNormConfig::new(c.hidden_size)
                .with_epsilon(c.layer_norm_eps)
                .init(device),
            encoder: Encoder {
                layers: (0..layers)
                    .map(|_| EncoderLayer::new(spec, device))
                    .collect(),
            },
            post_layernorm: pooled.then(|| {
                LayerNormConfig::new(c.hidden_size)
                    .with_epsilon(c.layer_norm_eps)
                    .init(device)
            }),
            config: c.clone(),
        }
    }

    /// `pixel_values` [batch, 3, H, W] (square, H a multiple of the patch size) to the hidden
    /// states after each layer in `extract`, in that order: [batch, 1 + (H/patch)^2, hidden].
    pub fn forward(
        &self,
        pixel_values: Tensor<4>,
        extract: &[usize],
    ) -> Result<Vec<Tensor<3>>, Error> {
        let c = &self.config;
        let layers = self.encoder.layers.len();
        let grid = check_pixels(c, pixel_values.dims(), layers, extract)?;
        let [batch, ..] = pixel_values.dims();
        let device = pixel_values.device();
        let patches = self
            .embeddings
            .patch_embedding
            .forward(pixel_values)
            .reshape([batch, c.hidden_size, grid * grid])
            .swap_dims(1, 2);
        let table = self.embeddings.position_embedding.weight.val();
        let positions = position_embeddings(table, grid, &device);
        let class = self.embeddings.class_embedding.val();
        let x = self
            .pre_layrnorm
            .forward(with_class_and_positions(class, patches, positions));
        Ok(self.encoder.forward(x, false, extract))
    }

    /// HF's `pooler_output`: the class token after every layer, through `post_layernorm`
    /// [batch, hidden].
    pub fn pooled(&self, pixel_values: Tensor<4>) -> Result<Tensor<2>, Error> {
        let post = pooling(
            self.post_layernorm.as_ref(),
            &self.config,
            self.encoder.layers.len(),
        )?;
        let last = self.config.num_hidden_layers - 1;
        let states = self.forward(pixel_values, &[last])?.remove(0);
        Ok(class_token(post, states))
    }
}

/// `post_layernorm` if the model holds everything the pooled output needs, else why not.
pub fn pooling<'a>(
    post_layernorm: Option<&'a LayerNorm>,
    c: &VisionConfig,
    layers: usize,
) -> Result<&'a LayerNorm, Error> {
    match post_layernorm {
        Some(norm) if layers == c.num_hidden_layers && layers > 0 => Ok(norm),
        _ => Err(no_image_prompts()),
    }
}

/// A model without the parts image prompts need was asked for one.
pub fn no_image_prompts() -> Error {
    Error::Input(
        "this model cannot take image prompts: it was packed with --text-only (convert it again without)"
            .into(),
    )
}

/// The class token of the last states [batch, seq, hidden] through `post_layernorm`.
pub fn class_token(post_layernorm: &LayerNorm, states: Tensor<3>) -> Tensor<2> {
    let [batch, _, hidden] = states.dims();
    post_layernorm.forward(states.narrow(1, 0, 1).reshape([batch, hidden]))
}

/// Checks pixel values of shape `dims` against the config and the `layers` loaded; the side of
/// their patch grid.
pub fn check_pixels(
    c: &VisionConfig,
    [batch, channels, height, width]: [usize; 4],
    layers: usize,
    extract: &[usize],
) -> Result<usize, Error> {
    if channels != c.num_channels || height != width || height % c.patch_size != 0 || height == 0 {
        return Err(Error::Input(format!(
            "pixel values must be [batch, {}, S, S] with S a multiple of {}, got [{batch}, {channels}, {height}, {width}]",
            c.num_channels, c.patch_size
        )));
    }
    if let Some(&l) = extract.iter().find(|&&l| l >= layers) {
        return Err(Error::Input(format!("layer {l} was not loaded")));
    }
    Ok(height / c.patch_size)
}

/// The class token before the patch embeddings [batch, grid², hidden], and the position
/// embeddings [1 + grid², hidden] added: [batch, 1 + grid², hidden].
pub fn with_class_and_positions(
    class: Tensor<1>,
    patches: Tensor<3>,
    positions: Tensor<2>,
) -> Tensor<3> {
    let [batch, _, hidden] = patches.dims();
    let class = class.reshape([1, 1, hidden]).expand([batch, 1, hidden]);
    Tensor::cat(vec![class, patches], 1) + positions.unsqueeze_dim(0)
}

/// Position embeddings for a `grid` x `grid` input from the learned `table` [1 + src², hidden]:
/// the table itself, or HF's `interpolate_pos_encoding` (torch bicubic, A = -0.75,
/// align_corners=False), done as one matmul with host-computed weights so every backend
/// resamples identically.
pub fn position_embeddings(table: Tensor<2>, grid: usize, device: &Device) -> Tensor<2> {
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

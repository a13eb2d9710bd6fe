//! `CLIPSegDecoder`: reduces CLIP activations, FiLM-conditions them on the prompt embedding,
//! runs post-norm transformer layers and upsamples patch tokens to a full-resolution logit map.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use std::sync::Arc;

use super::transformer::{EncoderLayer, LayerSpec};
use crate::Error;
use crate::config::{Activation, ClipSegConfig};
use crate::cpu::Precision;
use crate::cpu::gemm::PackedMatrix;
use crate::gpu::{Gpu, GpuLinear};

/// HF's `nn.Sequential(Conv2d, ReLU, ConvTranspose2d, ReLU, ConvTranspose2d)`; the field names
/// keep the Sequential indices (`transposed_convolution.0.weight` fills `layer0`).
#[derive(Module, Debug)]
pub struct RefinedHead {
    pub layer0: Conv2d,
    pub layer2: ConvTranspose2d,
    pub layer4: ConvTranspose2d,
}

/// `decoder.transposed_convolution`: one 16x16 (patch-size) transposed conv, or the refined
/// head of `use_complex_transposed_convolution` (rd64-refined).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model: boxing would only add an indirection
pub enum TransposedConvolution {
    Plain(ConvTranspose2d),
    Refined(RefinedHead),
}

impl TransposedConvolution {
    /// Its convolutions as matrices ([`HeadMatrices`]), if each is of a shape that maps to one
    /// and `fits(k, n)` takes it; the weights read synchronously (flex, or any native device).
    fn matrices(&self, fits: impl Fn(usize, usize) -> bool) -> Result<Option<HeadMatrices>, Error> {
        let (conv, transposed) = match self {
            Self::Plain(t) => (None, vec![t]),
            Self::Refined(h) => (Some(&h.layer0), vec![&h.layer2, &h.layer4]),
        };
        let conv = match conv {
            Some(conv) => match conv3x3_matrix(conv, &fits)? {
                Some(m) => Some(m),
                None => return Ok(None),
            },
            None => None,
        };
        // Logits: the last transposed conv has one output channel.
        if transposed.last().is_none_or(|t| t.weight.dims()[1] != 1) {
            return Ok(None);
        }
        let mut steps = Vec::with_capacity(transposed.len());
        for t in transposed {
            let Some(step) = transposed_matrix(t, &fits)? else {
                return Ok(None);
            };
            steps.push(step);
        }
        Ok(Some(HeadMatrices {
            conv,
            transposed: steps,
        }))
    }

    /// On [`crate::gpu`]'s matmul kernel, if its convolutions fit.
    fn upload(&self, gpu: &Gpu) -> Result<Option<GpuHead>, Error> {
        let Some(m) = self.matrices(GpuLinear::supports)? else {
            return Ok(None);
        };
        let linear = |(w, k, n, bias): Matrix| GpuLinear::new(gpu, &w, k, n, bias);
        Ok(Some(GpuHead {
            conv: m.conv.map(linear).transpose()?,
            transposed: (m.transposed.into_iter())
                .map(|(w, kernel)| Ok((linear(w)?, kernel)))
                .collect::<Result<_, Error>>()?,
        }))
    }

    /// On [`crate::cpu`]'s packed f32 GEMM, if its convolutions map to matrices.
    fn pack_for_cpu(&self) -> Result<Option<CpuHead>, Error> {
        let Some(m) = self.matrices(|_, _| true)? else {
            return Ok(None);
        };
        let pack = |(w, k, n, bias): Matrix| PackedMatrix::pack(&w, k, n, bias.as_deref());
        Ok(Some(CpuHead {
            conv: m.conv.map(pack),
            transposed: (m.transposed.into_iter())
                .map(|(w, kernel)| (pack(w), kernel))
                .collect(),
        }))
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Plain(conv) => conv.forward(x),
            Self::Refined(head) => {
                let x = relu(head.layer0.forward(x));
                let x = relu(head.layer2.forward(x));
                head.layer4.forward(x)
            }
        }
    }
}

/// [`TransposedConvolution`] on [`crate::gpu`]: its [`HeadMatrices`] in one submission (the
/// im2col rows built on the host). On SwiftShader burn-wgpu's convolutions took ~0.26 s a
/// prompt.
#[derive(Debug)]
pub struct GpuHead {
    conv: Option<GpuLinear>,
    transposed: Vec<(GpuLinear, usize)>,
}

impl GpuHead {
    /// Tokens [batch, grid * grid, channels] (row-major y, x) to logits [batch, H, W].
    pub async fn forward(
        &self,
        gpu: &Gpu,
        tokens: &[f32],
        batch: usize,
        grid: usize,
    ) -> Result<(Vec<f32>, usize), Error> {
        let input = match &self.conv {
            Some(_) => im2col3x3(tokens, batch, grid),
            None => tokens.to_vec(),
        };
        // The refined head has a ReLU after each convolution but the last.
        let refined = self.conv.is_some();
        let mut steps: Vec<(&GpuLinear, bool)> = self.conv.iter().map(|c| (c, true)).collect();
        let last = self.transposed.len() - 1;
        for (i, (t, _)) in self.transposed.iter().enumerate() {
            steps.push((t, refined && i < last));
        }
        let out = crate::gpu::chain(gpu, &steps, &input).await?;
        let kernels: Vec<usize> = self.transposed.iter().map(|(_, k)| *k).collect();
        Ok(place_blocks(&out, &kernels, batch, grid))
    }
}

/// [`TransposedConvolution`] on [`crate::cpu`]: its [`HeadMatrices`] on the packed f32 GEMM
/// (flex's convolutions were ~7% of a re-prompt's decoder).
#[derive(Debug)]
pub struct CpuHead {
    conv: Option<PackedMatrix>,
    transposed: Vec<(PackedMatrix, usize)>,
}

impl CpuHead {
    /// Tokens [batch, grid * grid, channels] (row-major y, x) to logits [batch, H, W] and H.
    pub fn forward(&self, tokens: &[f32], batch: usize, grid: usize) -> (Vec<f32>, usize) {
        let product = |m: &PackedMatrix, x: &[f32], relu: bool| {
            let rows = x.len() / m.k();
            let mut out = vec![0.0; rows * m.n()];
            m.matmul(x, rows, &mut out);
            if relu {
                crate::cpu::relu(&mut out);
            }
            out
        };
        let mut x = match &self.conv {
            Some(conv) => product(conv, &im2col3x3(tokens, batch, grid), true),
            None => tokens.to_vec(),
        };
        // The refined head has a ReLU after each convolution but the last.
        let (refined, last) = (self.conv.is_some(), self.transposed.len() - 1);
        for (i, (t, _)) in self.transposed.iter().enumerate() {
            x = product(t, &x, refined && i < last);
        }
        let kernels: Vec<usize> = self.transposed.iter().map(|(_, k)| *k).collect();
        place_blocks(&x, &kernels, batch, grid)
    }
}

/// The last layer's states [prompts, seq, rd] without each prompt's class token, for a head,
/// and the side of the patch grid they form.
fn patch_tokens(states: &[f32], seq: usize, rd: usize) -> (Vec<f32>, usize) {
    let grid = ((seq - 1) as f64).sqrt() as usize;
    let tokens = (states.chunks_exact(seq * rd))
        .flat_map(|prompt| &prompt[rd..])
        .copied()
        .collect();
    (tokens, grid)
}

/// A weight matrix: row-major [k, n], k, n and the bias [n].
type Matrix = (Vec<f32>, usize, usize, Option<Vec<f32>>);

/// [`TransposedConvolution`] as matrix products: every convolution in it is one (the 3x3 conv
/// over im2col rows; a transposed conv whose stride is its kernel maps each input pixel to
/// its own k x k block).
struct HeadMatrices {
    /// The refined head's 3x3 conv: [9 * channels, channels] over im2col rows (c, ky, kx).
    conv: Option<Matrix>,
    /// Each transposed conv as [c_in, k * k * c_out], columns (ky, kx, o), and its k; the last
    /// one has one output channel. Each product reads the one before as rows of its own k.
    transposed: Vec<(Matrix, usize)>,
}

/// The head's last product `out` to logits [batch, side, side] and side: values come out as
/// (b, y, x, ky1, kx1, ky2, kx2, ...), and each level's block goes to (y * k + ky, x * k + kx)
/// of the next. Each pixel's block of values goes through one table of offsets (per value
/// divisions were 12% of a re-prompt's CPU decoder).
fn place_blocks(out: &[f32], kernels: &[usize], batch: usize, grid: usize) -> (Vec<f32>, usize) {
    let block = kernels.iter().product::<usize>();
    let side = grid * block;
    let offsets: Vec<usize> = (0..block * block)
        .map(|j| {
            let (mut rest, mut y, mut x, mut scale) = (j, 0, 0, 1);
            for &k in kernels.iter().rev() {
                x += rest % k * scale;
                y += rest / k % k * scale;
                rest /= k * k;
                scale *= k;
            }
            y * side + x
        })
        .collect();
    let mut logits = vec![0.0; batch * side * side];
    for (pixel, values) in out.chunks_exact(block * block).enumerate() {
        let (b, y0, x0) = (pixel / (grid * grid), pixel / grid % grid, pixel % grid);
        let at = &mut logits[(b * side + y0 * block) * side + x0 * block..];
        for (&offset, &v) in offsets.iter().zip(values) {
            at[offset] = v;
        }
    }
    (logits, side)
}

/// A 3x3, stride-1, padding-1 conv as [9 * c_in, c_out] (rows c, ky, kx) and its bias; `None`
/// for any other conv, or one `fits` refuses.
fn conv3x3_matrix(
    conv: &Conv2d,
    fits: impl Fn(usize, usize) -> bool,
) -> Result<Option<Matrix>, Error> {
    let [c_out, c_in, kh, kw] = conv.weight.dims();
    let padded = matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1));
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    if [kh, kw] != [3, 3] || !padded || !plain || !fits(9 * c_in, c_out) {
        return Ok(None);
    }
    let w = crate::cpu::values(conv.weight.val())?;
    let mut m = vec![0.0; 9 * c_in * c_out];
    for (o, filter) in w.chunks_exact(9 * c_in).enumerate() {
        for (row, &v) in filter.iter().enumerate() {
            m[row * c_out + o] = v;
        }
    }
    let bias = conv
        .bias
        .as_ref()
        .map(|b| crate::cpu::values(b.val()))
        .transpose()?;
    Ok(Some((m, 9 * c_in, c_out, bias)))
}

/// A transposed conv whose stride equals its (square) kernel, unpadded, as [c_in, k * k *
/// c_out] (columns ky, kx, o) with its bias per column, and k; `None` for any other, or one
/// `fits` refuses.
fn transposed_matrix(
    t: &ConvTranspose2d,
    fits: impl Fn(usize, usize) -> bool,
) -> Result<Option<(Matrix, usize)>, Error> {
    let [c_in, c_out, kh, kw] = t.weight.dims();
    let k = kh;
    let fits_shape = kw == k
        && t.stride == [k, k]
        && t.padding == [0, 0]
        && t.padding_out == [0, 0]
        && t.dilation == [1, 1]
        && t.groups == 1;
    let n = k * k * c_out;
    if !fits_shape || !fits(c_in, n) {
        return Ok(None);
    }
    // weight [c_in, c_out, ky, kx]
    let w = crate::cpu::values(t.weight.val())?;
    let mut m = vec![0.0; c_in * n];
    for (i, &v) in w.iter().enumerate() {
        let (kx, ky, o, c) = (i % k, i / k % k, i / (k * k) % c_out, i / (k * k * c_out));
        m[c * n + (ky * k + kx) * c_out + o] = v;
    }
    let bias = match &t.bias {
        Some(b) => {
            let b = crate::cpu::values(b.val())?;
            Some((0..n).map(|j| b[j % c_out]).collect())
        }
        None => None,
    };
    Ok(Some(((m, c_in, n, bias), k)))
}

/// [batch, grid * grid, c] to im2col rows [batch * grid * grid, c * 9] (columns c, ky, kx) of a
/// 3x3 window with zero padding 1.
fn im2col3x3(x: &[f32], batch: usize, grid: usize) -> Vec<f32> {
    let c = x.len() / (batch * grid * grid).max(1);
    let mut out = vec![0.0; batch * grid * grid * c * 9];
    for (row, cols) in out.chunks_exact_mut(c * 9).enumerate() {
        let (b, y, x0) = (row / (grid * grid), row / grid % grid, row % grid);
        for ky in 0..3 {
            for kx in 0..3 {
                let (sy, sx) = ((y + ky).wrapping_sub(1), (x0 + kx).wrapping_sub(1));
                if sy >= grid || sx >= grid {
                    continue;
                }
                let at = ((b * grid + sy) * grid + sx) * c;
                for (ch, &v) in x[at..at + c].iter().enumerate() {
                    cols[ch * 9 + ky * 3 + kx] = v;
                }
            }
        }
    }
    out
}

/// `CLIPSegDecoder`.
#[derive(Module, Debug)]
pub struct Decoder {
    pub film_mul: Linear,
    pub film_add: Linear,
    pub transposed_convolution: TransposedConvolution,
    /// One per extracted layer; `reduces[0]` takes the deepest activation.
    pub reduces: Vec<Linear>,
    /// `reduces` on [`crate::gpu`]'s matmul kernel (set with the layers by
    /// [`Self::pack_for_gpu`], or by a pack loaded for inference there); empty elsewhere.
    #[module(skip)]
    pub gpu_reduces: Vec<Arc<GpuLinear>>,
    /// `transposed_convolution` on [`crate::gpu`], set with the reduces where it fits.
    #[module(skip)]
    pub gpu_head: Option<Arc<GpuHead>>,
    /// `transposed_convolution` on [`crate::cpu`], set with the layers by
    /// [`Self::pack_for_cpu`] where it maps to matrices.
    #[module(skip)]
    pub cpu_head: Option<Arc<CpuHead>>,
    pub layers: Vec<EncoderLayer>,
    #[module(skip)]
    pub conditional_layer: usize,
}

impl Decoder {
    pub fn new(c: &ClipSegConfig, device: &Device) -> Self {
        let (rd, patch) = (c.reduce_dim, c.vision_config.patch_size);
        let depth = c.extract_layers.len();
        let transposed_convolution = if c.use_complex_transposed_convolution {
            let k = patch / 4;
            TransposedConvolution::Refined(RefinedHead {
                layer0: Conv2dConfig::new([rd, rd], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                layer2: ConvTranspose2dConfig::new([rd, rd / 2], [k, k])
                    .with_stride([k, k])
                    .init(device),
                layer4: ConvTranspose2dConfig::new([rd / 2, 1], [k, k])
                    .with_stride([k, k])
                    .init(device),
            })
        } else {
            TransposedConvolution::Plain(
                ConvTranspose2dConfig::new([rd, 1], [patch, patch])
                    .with_stride([patch, patch])
                    .init(device),
            )
        };
        let spec = Self::spec(c);
        Self {
            film_mul: LinearConfig::new(c.projection_dim, rd).init(device),
            film_add: LinearConfig::new(c.projection_dim, rd).init(device),
            transposed_convolution,
            reduces: (0..depth)
                .map(|_| LinearConfig::new(c.vision_config.hidden_size, rd).init(device))
                .collect(),
            gpu_reduces: Vec::new(),
            gpu_head: None,
            cpu_head: None,
            layers: (0..depth)
                .map(|_| EncoderLayer::new(spec, device))
                .collect(),
            conditional_layer: c.conditional_layer,
        }
    }

    /// The decoder layers and head on the packed CPU path too, keeping their burn weights:
    /// the head in f32, the layers in `precision` ([`Precision::decoder`] of the towers').
    pub fn pack_for_cpu(&mut self, spec: LayerSpec, precision: Precision) -> Result<(), Error> {
        for layer in &mut self.layers {
            layer.pack_for_cpu_keeping_weights(spec, precision)?;
        }
        if self.cpu_head.is_none() {
            self.cpu_head = self.transposed_convolution.pack_for_cpu()?.map(Arc::new);
        }
        Ok(())
    }

    /// The spec its layers were built with.
    pub fn spec(c: &ClipSegConfig) -> LayerSpec {
        // HF copies the vision config and overrides size, heads, intermediate size and act.
        LayerSpec {
            hidden: c.reduce_dim,
            heads: c.decoder_num_attention_heads,
            intermediate: c.decoder_intermediate_size,
            activation: Activation::Relu,
            eps: c.vision_config.layer_norm_eps,
        }
    }

    /// Applies `reduces` to activations given in `extract_layers` order, returning them in
    /// decoder order (deepest first). Prompt-independent, so cached per image.
    pub fn reduce(&self, activations: &[Tensor<3>]) -> Result<Vec<Tensor<3>>, Error> {
        crate::gpu::block_on(self.reduce_async(activations))
    }

    /// [`Self::reduce`], awaiting the GPU where the reduces run on [`crate::gpu`].
    pub async fn reduce_async(&self, activations: &[Tensor<3>]) -> Result<Vec<Tensor<3>>, Error> {
        let mut reduced = Vec::with_capacity(self.reduces.len());
        for (i, (a, r)) in activations.iter().rev().zip(&self.reduces).enumerate() {
            let gpu = self.gpu_reduces.get(i);
            reduced.push(match gpu.zip(crate::gpu::for_device(&a.device())) {
                Some((linear, gpu)) => linear.forward_tensor(&gpu, a.clone()).await?,
                None => r.forward(a.clone()),
            });
        }
        Ok(reduced)
    }

    /// `from`'s reduces and head uploaded, for `gpu_reduces` and `gpu_head` (`from`: the
    /// decoder itself, or a host copy of its weights; read synchronously, so flex or any native
    /// device). The reduces go all or none, each part only where the kernel fits its shape.
    #[allow(clippy::type_complexity)]
    pub fn upload_reduces_and_head(
        gpu: &Gpu,
        from: &Decoder,
    ) -> Result<(Vec<Arc<GpuLinear>>, Option<Arc<GpuHead>>), Error> {
        let reduces: Option<Vec<GpuLinear>> = (from.reduces.iter())
            .map(|r| GpuLinear::from_linear(gpu, r))
            .collect::<Result<_, _>>()?;
        let reduces = reduces.unwrap_or_default().into_iter().map(Arc::new);
        let head = from.transposed_convolution.upload(gpu)?.map(Arc::new);
        Ok((reduces.collect(), head))
    }

    /// The decoder layers, reduces and head on [`crate::gpu`] too, keeping their burn weights
    /// (native: reads them synchronously). No-op for shapes the kernels lack.
    pub fn pack_for_gpu(&mut self, gpu: &Gpu, spec: LayerSpec) -> Result<(), Error> {
        (self.gpu_reduces, self.gpu_head) = Self::upload_reduces_and_head(gpu, self)?;
        if !crate::gpu::GpuLayer::supports(spec) {
            return Ok(());
        }
        for layer in &mut self.layers {
            if layer.gpu.is_none() {
                let uploaded = crate::gpu::GpuLayer::new(gpu, layer, spec)?;
                layer.gpu = Some(std::sync::Arc::new(uploaded));
            }
        }
        Ok(())
    }

    /// `reduced` (from [`Self::reduce`], batch 1 or `prompts`) and `conditional` [prompts,
    /// projection_dim] to logits [prompts, H, W].
    pub fn forward(
        &self,
        reduced: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        crate::gpu::block_on(self.forward_async(reduced, conditional))
    }

    /// [`Self::forward`], awaiting the GPU where layers run on [`crate::gpu`] (the browser).
    pub async fn forward_async(
        &self,
        reduced: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        let Some(last) = reduced.len().min(self.layers.len()).checked_sub(1) else {
            unreachable!("config validation guarantees at least one extract layer")
        };
        let device = conditional.device();
        if let Some(logits) = self.forward_cpu(reduced, conditional.clone())? {
            return Ok(logits);
        }
        let gpu_head = self.gpu_head.as_ref().zip(crate::gpu::for_device(&device));
        let mut output: Option<Tensor<3>> = None;
        for (i, (r, layer)) in reduced.iter().zip(&self.layers).enumerate() {
            let mut x = match output.take() {
                Some(o) => r.clone() + o,
                None => r.clone(),
            };
            if i == self.conditional_layer {
                let mul = self.film_mul.forward(conditional.clone()).unsqueeze_dim(1);
                let add = self.film_add.forward(conditional.clone()).unsqueeze_dim(1);
                x = mul * x + add;
            }
            // The GPU head takes the last layer's output as the kernels leave it on the host
            // (not uploaded as a tensor and read back again).
            if let (true, Some((head, gpu)), Some(gpu_layer)) = (i == last, &gpu_head, &layer.gpu) {
                let [batch, seq, rd] = x.dims();
                let values = crate::gpu::values_async(x).await?;
                let post = crate::gpu::Norm::Post;
                let mut out =
                    crate::gpu::forward(gpu, &[gpu_layer], &values, batch, seq, post, &[0]).await?;
                return Self::head_on_gpu(head, gpu, &out.remove(0), [batch, seq, rd], &device)
                    .await;
            }
            output = Some(layer.forward_post_norm_async(x).await?);
        }
        let Some(output) = output else {
            unreachable!("the loop runs up to `last`")
        };
        let [batch, seq, rd] = output.dims();
        if let Some((head, gpu)) = &gpu_head {
            let values = crate::gpu::values_async(output).await?;
            return Self::head_on_gpu(head, gpu, &values, [batch, seq, rd], &device).await;
        }
        let grid = ((seq - 1) as f64).sqrt() as usize;
        let tokens = output
            .narrow(1, 1, seq - 1)
            .swap_dims(1, 2)
            .reshape([batch, rd, grid, grid]);
        let logits = self.transposed_convolution.forward(tokens);
        let [_, _, h, w] = logits.dims();
        Ok(logits.reshape([batch, h, w]))
    }

    /// [`Self::forward`] on [`crate::cpu`] from the reduced activations to the logits, the
    /// hidden states in one buffer and the layers' buffers kept (through burn tensors, layer by
    /// layer, each layer copied its states out and back and zeroed a fresh 4.6 MB scratch: the
    /// memset alone was 8% of the decoder); `None` unless the layers and head are packed for it
    /// ([`Self::pack_for_cpu`]).
    fn forward_cpu(
        &self,
        reduced: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Option<Tensor<3>>, Error> {
        let layers: Option<Vec<&crate::cpu::PackedLayer>> =
            self.layers.iter().map(|l| l.cpu.as_deref()).collect();
        let (Some(layers), Some(head)) = (layers, &self.cpu_head) else {
            return Ok(None);
        };
        let device = conditional.device();
        let [prompts, _] = conditional.dims();
        let mul = crate::cpu::values(self.film_mul.forward(conditional.clone()))?;
        let add = crate::cpu::values(self.film_add.forward(conditional))?;
        let (mut x, mut seq, mut rd) = (Vec::new(), 0, 0);
        crate::cpu::Scratch::with_kept(|scratch| -> Result<(), Error> {
            for (i, (r, layer)) in reduced.iter().zip(layers).enumerate() {
                let [batch, r_seq, r_rd] = r.dims();
                if (batch != 1 && batch != prompts) || (i > 0 && [r_seq, r_rd] != [seq, rd]) {
                    return Err(Error::Input(format!(
                        "reduced activations [{batch}, {r_seq}, {r_rd}] do not match {prompts} \
                     prompts and the other layers"
                    )));
                }
                (seq, rd) = (r_seq, r_rd);
                // Batch 1 (one image for every prompt) is added to each prompt's states.
                let r = crate::cpu::values(r.clone())?;
                let per_prompt = |p: usize| &r[(p % batch) * seq * rd..][..seq * rd];
                if i == 0 {
                    x = (0..prompts).flat_map(per_prompt).copied().collect();
                } else {
                    for (p, states) in x.chunks_exact_mut(seq * rd).enumerate() {
                        states
                            .iter_mut()
                            .zip(per_prompt(p))
                            .for_each(|(v, r)| *v += r);
                    }
                }
                if i == self.conditional_layer {
                    // FiLM: each prompt's states scaled and shifted by its embedding's.
                    for (p, states) in x.chunks_exact_mut(seq * rd).enumerate() {
                        let (mul, add) = (&mul[p * rd..][..rd], &add[p * rd..][..rd]);
                        for row in states.chunks_exact_mut(rd) {
                            for ((v, m), a) in row.iter_mut().zip(mul).zip(add) {
                                *v = m * *v + a;
                            }
                        }
                    }
                }
                layer.forward_post_norm(&mut x, prompts, seq, scratch);
            }
            Ok(())
        })?;
        let (tokens, grid) = patch_tokens(&x, seq, rd);
        let (logits, side) = head.forward(&tokens, prompts, grid);
        let data = TensorData::new(logits, [prompts, side, side]);
        Ok(Some(Tensor::from_data(data, &device)))
    }

    /// The last layer's output `values` [batch, seq, rd] through the GPU head.
    async fn head_on_gpu(
        head: &GpuHead,
        gpu: &Gpu,
        values: &[f32],
        [batch, seq, rd]: [usize; 3],
        device: &Device,
    ) -> Result<Tensor<3>, Error> {
        let (tokens, grid) = patch_tokens(values, seq, rd);
        let (logits, side) = head.forward(gpu, &tokens, batch, grid).await?;
        Ok(Tensor::from_data(
            TensorData::new(logits, [batch, side, side]),
            device,
        ))
    }
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::Distribution;

    /// The head on the GPU kernel and on the CPU GEMM against burn's convolutions: refined
    /// (3x3 conv, two transposed convs) and plain, two prompts, random weights and biases.
    #[test]
    fn gpu_and_cpu_heads_match_burn() {
        let host = Device::flex();
        let gpu = crate::gpu::tests::gpu();
        let random = |shape: [usize; 4]| {
            Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.3), &host))
        };
        let (rd, grid, batch) = (8, 5, 2);
        for (complex, patch) in [(true, 8), (false, 4)] {
            let mut c = ClipSegConfig::default();
            (c.reduce_dim, c.use_complex_transposed_convolution) = (rd, complex);
            c.vision_config.patch_size = patch;
            let mut head = Decoder::new(&c, &host).transposed_convolution;
            match &mut head {
                TransposedConvolution::Refined(h) => {
                    h.layer0.weight = random(h.layer0.weight.dims());
                    h.layer2.weight = random(h.layer2.weight.dims());
                    h.layer4.weight = random(h.layer4.weight.dims());
                }
                TransposedConvolution::Plain(t) => t.weight = random(t.weight.dims()),
            }
            let tokens: Tensor<3> = Tensor::random(
                [batch, grid * grid, rd],
                Distribution::Normal(0.0, 1.0),
                &host,
            );
            let image = tokens
                .clone()
                .swap_dims(1, 2)
                .reshape([batch, rd, grid, grid]);
            let want = head.forward(image);
            let [_, _, h, w] = want.dims();
            let want = crate::cpu::values(want).unwrap();
            let uploaded = head
                .upload(&gpu)
                .unwrap()
                .expect("the head fits the kernel");
            let values = crate::cpu::values(tokens).unwrap();
            let on_gpu = uploaded.forward(&gpu, &values, batch, grid);
            let on_gpu = crate::gpu::block_on(on_gpu).unwrap();
            let packed = head
                .pack_for_cpu()
                .unwrap()
                .expect("the head maps to matrices");
            let on_cpu = packed.forward(&values, batch, grid);
            for (name, (got, side)) in [("gpu", on_gpu), ("cpu", on_cpu)] {
                assert_eq!([side, side], [h, w], "{name}");
                let diff = (got.iter().zip(&want))
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(diff < 1e-4, "{name}, complex {complex}: max |diff| {diff}");
            }
        }
    }
}

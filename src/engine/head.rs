//! The decoder's head (`transposed_convolution`) as matrix products on the kernels: a 3x3
//! convolution is one product over im2col rows, a transposed convolution whose stride is its
//! kernel one product that maps each input pixel to its own k x k block.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};

use super::cpu::{self, gemm::PackedMatrix};
use super::executor::host_values;
use super::gpu::{self, Gpu, GpuLinear};
use super::layer::{Matrix, Weight};
use crate::Error;
use crate::model::decoder::TransposedConvolution;

impl GpuHead {
    /// `head` uploaded, if its convolutions fit the kernel.
    pub fn new(gpu: &Gpu, head: &TransposedConvolution) -> Result<Option<Self>, Error> {
        let Some(m) = head_matrices(head, GpuLinear::supports)? else {
            return Ok(None);
        };
        let linear = |m: Matrix| GpuLinear::new(gpu, &m);
        Ok(Some(Self {
            conv: m.conv.map(linear).transpose()?,
            transposed: (m.transposed.into_iter())
                .map(|(m, kernel)| Ok((linear(m)?, kernel)))
                .collect::<Result<_, Error>>()?,
        }))
    }
}

impl CpuHead {
    /// `head` packed, if its convolutions map to matrices.
    pub fn new(head: &TransposedConvolution) -> Result<Option<Self>, Error> {
        let Some(m) = head_matrices(head, |_, _| true)? else {
            return Ok(None);
        };
        let pack = |m: Matrix| PackedMatrix::pack(&m.w.to_f32(), m.k, m.n, m.bias.as_deref());
        Ok(Some(Self {
            conv: m.conv.map(pack),
            transposed: (m.transposed.into_iter())
                .map(|(m, kernel)| (pack(m), kernel))
                .collect(),
        }))
    }
}

/// `head`'s convolutions as matrices ([`HeadMatrices`]), if each is of a shape that maps to
/// one and `fits(k, n)` takes it; the weights read synchronously (flex, or any native device).
fn head_matrices(
    head: &TransposedConvolution,
    fits: impl Fn(usize, usize) -> bool,
) -> Result<Option<HeadMatrices>, Error> {
    let (conv, transposed) = match head {
        TransposedConvolution::Plain(t) => (None, vec![t]),
        TransposedConvolution::Refined(h) => (Some(&h.layer0), vec![&h.layer2, &h.layer4]),
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

/// [`TransposedConvolution`] on the WGSL kernels: its [`HeadMatrices`] in one submission (the
/// im2col rows built on the host).
#[derive(Debug)]
pub(super) struct GpuHead {
    conv: Option<GpuLinear>,
    transposed: Vec<(GpuLinear, usize)>,
}

impl GpuHead {
    /// Bytes its weights hold on the device.
    pub fn weight_bytes(&self) -> u64 {
        let transposed = self.transposed.iter().map(|(l, _)| l.weight_bytes());
        self.conv
            .iter()
            .map(GpuLinear::weight_bytes)
            .chain(transposed)
            .sum()
    }

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
        let out = gpu::chain(gpu, &steps, &input).await?;
        let kernels: Vec<usize> = self.transposed.iter().map(|(_, k)| *k).collect();
        Ok(place_blocks(&out, &kernels, batch, grid))
    }
}

/// [`TransposedConvolution`] on the CPU kernels: its [`HeadMatrices`] on the packed f32 GEMM.
#[derive(Debug)]
pub(super) struct CpuHead {
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
                cpu::common::relu(&mut out);
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
pub(super) fn patch_tokens(states: &[f32], seq: usize, rd: usize) -> (Vec<f32>, usize) {
    let grid = ((seq - 1) as f64).sqrt() as usize;
    let tokens = (states.chunks_exact(seq * rd))
        .flat_map(|prompt| &prompt[rd..])
        .copied()
        .collect();
    (tokens, grid)
}

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
    let w = host_values(conv.weight.val())?;
    let mut m = vec![0.0; 9 * c_in * c_out];
    for (o, filter) in w.chunks_exact(9 * c_in).enumerate() {
        for (row, &v) in filter.iter().enumerate() {
            m[row * c_out + o] = v;
        }
    }
    let bias = conv
        .bias
        .as_ref()
        .map(|b| host_values(b.val()))
        .transpose()?;
    Ok(Some(Matrix {
        w: Weight::F32(m),
        k: 9 * c_in,
        n: c_out,
        bias,
    }))
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
    let w = host_values(t.weight.val())?;
    let mut m = vec![0.0; c_in * n];
    for (i, &v) in w.iter().enumerate() {
        let (kx, ky, o, c) = (i % k, i / k % k, i / (k * k) % c_out, i / (k * k * c_out));
        m[c * n + (ky * k + kx) * c_out + o] = v;
    }
    let bias = match &t.bias {
        Some(b) => {
            let b = host_values(b.val())?;
            Some((0..n).map(|j| b[j % c_out]).collect())
        }
        None => None,
    };
    let m = Matrix {
        w: Weight::F32(m),
        k: c_in,
        n,
        bias,
    };
    Ok(Some((m, k)))
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

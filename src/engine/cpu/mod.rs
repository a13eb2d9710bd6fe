//! The CPU inference path of the frozen CLIP encoder layers (and the decoder's layers and the
//! patch embedding): the same `CLIPSegEncoderLayer` math as [`crate::model::transformer`], on
//! plain `f32` slices with weights packed once, the projections in f32 ([`gemm`]) or, for a
//! quantized pack, int8 ([`qgemm`]), and then natively attention's products in bf16 where that
//! is faster than f32 on this CPU ([`bf16::pays`]).
//!
//! Why: on flex the layer was ~45% outside its matmuls (per-op tensor allocation, copies for
//! head split/merge, scalar `expf` in softmax and QuickGELU) and its matmuls re-packed the
//! weights on every call. Here Q, K and V are one GEMM, attention reads heads in place from
//! its output, and the elementwise work is vectorised. The burn path stays the reference: the
//! parity tests run through this one, and tests below compare the two on random weights.
//!
//! Used only for flex (`Device::flex()`) inference; on wgpu [`crate::gpu`] plays this part, and
//! training keeps burn's ops.

pub mod aligned;
#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
pub mod gemm;
pub mod qgemm;

use burn::tensor::Tensor;

use crate::Error;
use crate::config::Activation;
use crate::model::transformer::{EncoderLayer, LayerSpec};
use aligned::Aligned;
use gemm::{Mode, PackedMatrix};
use qgemm::QuantMatrix;

#[cfg(feature = "native")]
use rayon::prelude::*;

/// One pre-norm encoder layer, packed. Built from an [`EncoderLayer`] by [`Self::new`].
#[derive(Debug)]
pub struct PackedLayer {
    hidden: usize,
    heads: usize,
    activation: Activation,
    eps: f32,
    ln1: (Vec<f32>, Vec<f32>),
    /// `q_proj | k_proj | v_proj` side by side: [hidden, 3 * hidden].
    qkv: Projection,
    out_proj: Projection,
    ln2: (Vec<f32>, Vec<f32>),
    fc1: Projection,
    fc2: Projection,
    /// Attention's products in bf16 ([`bf16`]): int8 layers on CPUs that have it.
    bf16_attention: bool,
}

/// Which arithmetic the packed layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// int8 weights and per-row int8 activations ([`qgemm`]) where the CPU has an int8 kernel,
    /// else f32: for weights that were 8-bit (or coarser) already. Attention stays f32, so every
    /// int8 kernel computes the same values, the browser's included.
    Int8,
    /// [`Self::Int8`], and attention's two products in bf16 where that is faster than f32 here
    /// ([`bf16::pays`]; elsewhere the same as `Int8`): what a quantized pack runs natively.
    Int8Bf16,
    /// The projections in bf16 on AMX tiles ([`bf16::Linear`]) where the CPU has them, else
    /// f32; attention f32: the decoder's layers beside `Int8Bf16` towers ([`Self::decoder`]).
    Bf16,
}

impl Precision {
    /// Whether attention runs in bf16 at this precision, here.
    pub fn bf16_attention(self) -> bool {
        self == Self::Int8Bf16 && bf16_pays()
    }

    /// What the decoder's layers run in beside towers at this precision: f32, or for a
    /// quantized pack's `Int8Bf16` on AMX, bf16 projections (its f32 MLP was a third of a
    /// re-prompt; the decoder's weights come as f16 in a pack, the towers' as 8-bit).
    pub fn decoder(self) -> Self {
        if self == Self::Int8Bf16 && bf16_projections() {
            return Self::Bf16;
        }
        Self::F32
    }
}

/// Whether [`Precision::Bf16`] projections run in bf16 here (on AMX), not f32.
pub fn bf16_projections() -> bool {
    #[cfg(target_arch = "x86_64")]
    return amx::available_bf16();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A Linear layer's weight and bias, packed for one of the GEMMs.
#[derive(Debug)]
pub enum Projection {
    F32(PackedMatrix),
    Int8(QuantMatrix),
    #[cfg(target_arch = "x86_64")]
    Bf16(bf16::Linear),
}

impl Projection {
    /// Row-major `w` `[k, n]` (and bias `[n]`) in `precision`.
    pub fn pack(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>, precision: Precision) -> Self {
        let int8 = match precision {
            Precision::Int8 | Precision::Int8Bf16 => QuantMatrix::pack(w, k, n, bias),
            Precision::F32 | Precision::Bf16 => None,
        };
        #[cfg(target_arch = "x86_64")]
        if precision == Precision::Bf16 && bf16_projections() {
            return Projection::Bf16(bf16::Linear::pack(w, k, n, bias));
        }
        match int8 {
            Some(q) => Projection::Int8(q),
            None => Projection::F32(PackedMatrix::pack(w, k, n, bias)),
        }
    }

    pub fn n(&self) -> usize {
        match self {
            Projection::F32(p) => p.n(),
            Projection::Int8(q) => q.n(),
            #[cfg(target_arch = "x86_64")]
            Projection::Bf16(l) => l.n(),
        }
    }

    /// `out[m, n] = a[m, k] · W + bias`.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32]) {
        match self {
            Projection::F32(p) => p.matmul(a, m, out),
            Projection::Int8(q) => q.matmul(a, m, out),
            #[cfg(target_arch = "x86_64")]
            Projection::Bf16(l) => l.matmul(a, m, out),
        }
    }
}

pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, Error> {
    let err = |e: &dyn std::fmt::Debug| {
        Error::Weights(format!("reading a tensor for the CPU path: {e:?}"))
    };
    t.try_into_data()
        .map_err(|e| err(&e))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| err(&e))
}

/// `q_proj | k_proj | v_proj` side by side, [hidden, 3 * hidden] row-major, and their biases:
/// one GEMM instead of three.
pub(crate) fn fused_qkv(layer: &EncoderLayer, h: usize) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let attn = &layer.self_attn;
    let (q, qb) = linear_parts(&attn.q_proj)?;
    let (k, kb) = linear_parts(&attn.k_proj)?;
    let (v, vb) = linear_parts(&attn.v_proj)?;
    let mut qkv = Vec::with_capacity(3 * h * h);
    for row in 0..h {
        for w in [&q, &k, &v] {
            qkv.extend_from_slice(&w[row * h..(row + 1) * h]);
        }
    }
    let bias = [qb, kb, vb]
        .into_iter()
        .flat_map(|b| b.unwrap_or_else(|| vec![0.0; h]))
        .collect();
    Ok((qkv, bias))
}

pub(crate) fn linear_parts(l: &burn::nn::Linear) -> Result<(Vec<f32>, Option<Vec<f32>>), Error> {
    let bias = match &l.bias {
        Some(b) => Some(values(b.val())?),
        None => None,
    };
    Ok((values(l.weight.val())?, bias))
}

pub(crate) fn norm_parts(n: &burn::nn::LayerNorm) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let gamma = values(n.gamma.val())?;
    let beta = match &n.beta {
        Some(b) => values(b.val())?,
        None => vec![0.0; gamma.len()],
    };
    Ok((gamma, beta))
}

/// Whether the CPU path implements this activation (`gelu`'s erf is left to burn).
pub fn supports(activation: Activation) -> bool {
    !matches!(activation, Activation::Gelu)
}

impl PackedLayer {
    pub fn new(layer: &EncoderLayer, spec: LayerSpec, precision: Precision) -> Result<Self, Error> {
        let (h, inter) = (spec.hidden, spec.intermediate);
        let (qkv, qkv_bias) = fused_qkv(layer, h)?;
        let (o, ob) = linear_parts(&layer.self_attn.out_proj)?;
        let (f1, f1b) = linear_parts(&layer.mlp.fc1)?;
        let (f2, f2b) = linear_parts(&layer.mlp.fc2)?;
        Ok(Self {
            hidden: h,
            heads: spec.heads,
            activation: spec.activation,
            eps: spec.eps as f32,
            ln1: norm_parts(&layer.layer_norm1)?,
            qkv: Projection::pack(&qkv, h, 3 * h, Some(&qkv_bias), precision),
            out_proj: Projection::pack(&o, h, h, ob.as_deref(), precision),
            ln2: norm_parts(&layer.layer_norm2)?,
            fc1: Projection::pack(&f1, h, inter, f1b.as_deref(), precision),
            fc2: Projection::pack(&f2, inter, h, f2b.as_deref(), precision),
            bf16_attention: precision.bf16_attention(),
        })
    }

    /// Pre-norm layer in place on `x` [batch * seq, hidden]: x + attn(ln1(x)), then
    /// x + mlp(ln2(x)). `scratch` carries the buffers from layer to layer.
    pub fn forward_pre_norm(
        &self,
        x: &mut [f32],
        batch: usize,
        seq: usize,
        causal: bool,
        scratch: &mut Scratch,
    ) {
        let (h, rows) = (self.hidden, batch * seq);
        assert_eq!(x.len(), rows * h, "hidden states are not [{rows}, {h}]");
        scratch.resize(rows, h, self.fc1.n());
        let Scratch {
            normed,
            qkv,
            out,
            inner,
        } = scratch;
        let (ln1, ln2, eps) = (&self.ln1, &self.ln2, self.eps);
        rows_parallel(normed, x, h, |o, x| layer_norm(x, &ln1.0, &ln1.1, eps, o));
        self.qkv.matmul(normed, rows, qkv);
        // `normed` is free again: it takes the merged heads.
        attention(
            qkv,
            batch,
            seq,
            h,
            self.heads,
            causal,
            self.bf16_attention,
            normed,
        );
        self.out_proj.matmul(normed, rows, out);
        rows_parallel(x, out, h, add_assign);

        rows_parallel(normed, x, h, |o, x| layer_norm(x, &ln2.0, &ln2.1, eps, o));
        self.mlp(normed, rows, inner, out);
        rows_parallel(x, out, h, add_assign);
    }

    /// `out = fc2(act(fc1(input)))` for `rows` rows, through `inner`.
    fn mlp(&self, input: &[f32], rows: usize, inner: &mut [f32], out: &mut [f32]) {
        let act = self.activation;
        #[cfg(target_arch = "x86_64")]
        if let (Projection::Bf16(fc1), Projection::Bf16(fc2), Activation::Relu) =
            (&self.fc1, &self.fc2, act)
        {
            return fc1.mlp_relu(fc2, input, rows, inner, out);
        }
        self.fc1.matmul(input, rows, inner);
        rows_parallel(inner, &[], self.fc1.n(), |x, _| activate(act, x));
        self.fc2.matmul(inner, rows, out);
    }

    /// Post-norm layer (CLIPSeg's decoder) in place on `x` [batch * seq, hidden]:
    /// ln1(x + attn(x)), then ln2(x + mlp(x)).
    pub fn forward_post_norm(
        &self,
        x: &mut [f32],
        batch: usize,
        seq: usize,
        scratch: &mut Scratch,
    ) {
        let (h, rows) = (self.hidden, batch * seq);
        assert_eq!(x.len(), rows * h, "hidden states are not [{rows}, {h}]");
        scratch.resize(rows, h, self.fc1.n());
        let Scratch {
            normed,
            qkv,
            out,
            inner,
        } = scratch;
        self.qkv.matmul(x, rows, qkv);
        attention(
            qkv,
            batch,
            seq,
            h,
            self.heads,
            false,
            self.bf16_attention,
            normed,
        );
        let (ln1, ln2, eps) = (&self.ln1, &self.ln2, self.eps);
        self.out_proj.matmul(normed, rows, out);
        rows_parallel(out, x, h, add_assign);
        rows_parallel(x, out, h, |o, x| layer_norm(x, &ln1.0, &ln1.1, eps, o));

        self.mlp(x, rows, inner, out);
        rows_parallel(out, x, h, add_assign);
        rows_parallel(x, out, h, |o, x| layer_norm(x, &ln2.0, &ln2.1, eps, o));
    }
}

/// The non-overlapping `patch` x `patch` tiles of `pixels` [batch, channels, size, size] as rows
/// [batch * grid^2, channels * patch^2], each in (channel, y, x) order: a stride-`patch` conv
/// becomes one GEMM with its weight viewed as [out, channels * patch^2].
pub fn patch_rows(
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

/// An embedding table kept as a q8 pack stores it: 8-bit values with one scale per row. Rows
/// are dequantized on lookup with the pack decoder's arithmetic, so the values are those of the
/// f32 table it would have made.
#[derive(Debug)]
pub struct QuantRows {
    pub width: usize,
    pub ints: Vec<i8>,
    pub scales: Vec<f32>,
}

impl QuantRows {
    /// Rows `ids` (checked against the table by the caller), concatenated.
    pub fn gather(&self, ids: &[i64]) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * self.width);
        for &id in ids {
            let id = id as usize;
            let scale = self.scales[id];
            let row = &self.ints[id * self.width..(id + 1) * self.width];
            out.extend(row.iter().map(|&q| q as f32 * scale));
        }
        out
    }
}

/// Intermediate buffers of [`PackedLayer::forward_pre_norm`], kept across a tower's layers
/// (fresh multi-megabyte allocations per layer cost page faults).
/// Aligned ([`aligned`]): they are the GEMMs' inputs and outputs.
#[derive(Default)]
pub struct Scratch {
    normed: Aligned<f32>,
    qkv: Aligned<f32>,
    out: Aligned<f32>,
    inner: Aligned<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = Default::default();
}

impl Scratch {
    /// `f` with this thread's kept scratch (the decoder's, from prompt to prompt: ~5 MB zeroed
    /// and faulted in afresh per re-prompt otherwise), or a fresh one where that is in use
    /// (a rayon job run while the caller waits, say).
    pub fn with_kept<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
        SCRATCH.with(|kept| match kept.try_borrow_mut() {
            Ok(mut scratch) => f(&mut scratch),
            Err(_) => f(&mut Scratch::default()),
        })
    }

    fn resize(&mut self, rows: usize, hidden: usize, intermediate: usize) {
        self.normed.resize(rows * hidden);
        self.qkv.resize(rows * 3 * hidden);
        self.out.resize(rows * hidden);
        self.inner.resize(rows * intermediate);
    }
}

/// Query rows per attention block: 96 x 485 scores are 182 KB. A multiple of AMX's 32-row
/// blocks ([`bf16::readable_rows`]).
const ATTENTION_ROWS: usize = 96;

/// Multi-head attention on the fused projection `qkv` [batch * seq, 3 * hidden] (HF scales
/// q by head_dim^-0.5 before the product; here the scale goes into the softmax). Writes the
/// merged heads to `out` [batch * seq, hidden]. Heads run in parallel natively. `bf16`: the
/// two products in bf16 ([`bf16`]; only ever set where the CPU has it).
#[allow(clippy::too_many_arguments)]
fn attention(
    qkv: &[f32],
    batch: usize,
    seq: usize,
    hidden: usize,
    heads: usize,
    causal: bool,
    bf16: bool,
    out: &mut [f32],
) {
    let d = hidden / heads;
    let ld = 3 * hidden;
    let scale = (d as f32).powf(-0.5);
    assert!(
        out.len() >= batch * seq * hidden,
        "attention output too short"
    );
    let out = HeadColumns(out.as_mut_ptr());
    let head = |&(b, hd): &(usize, usize)| {
        let base = b * seq * ld + hd * d;
        let (q, k, v) = (
            &qkv[base..],
            &qkv[base + hidden..],
            &qkv[base + 2 * hidden..],
        );
        HEAD_SCRATCH.with_borrow_mut(|scratch| {
            let HeadScratch { block, o, q16, p16 } = scratch;
            block.resize(ATTENTION_ROWS.min(seq) * seq, 0.0);
            o.resize(seq * d, 0.0);
            #[cfg(target_arch = "x86_64")]
            if bf16 {
                // Q in bf16 pairs once per head; each block's probabilities as the softmax
                // makes them.
                let (qp, sp) = (bf16::row_pairs(d), bf16::row_pairs(seq));
                q16.resize(bf16::readable_rows(seq) * qp);
                bf16::to_pairs(q, seq, d, ld, q16, qp);
                let kt = bf16::Panels::transposed(k, d, seq, ld);
                let v = bf16::Panels::rows(v, seq, d, ld);
                p16.resize(bf16::readable_rows(ATTENTION_ROWS.min(seq)) * sp);
                attention_head(
                    (seq, d),
                    block,
                    o,
                    |i0, rows, scores| kt.matmul(&q16[i0 * qp..], rows, qp, scores, seq),
                    |i0, rows, scores, inv_sums, o| {
                        bf16::softmax_pairs(scores, seq, i0, scale, causal, p16, sp, inv_sums);
                        v.matmul(p16, rows, sp, o, d);
                    },
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (bf16, q16, p16);
            if !bf16 {
                // K^T and V packed straight from the fused rows; P read in place.
                let kt = PackedMatrix::pack_strided(k, d, seq, 1, ld, None);
                let v = PackedMatrix::pack_strided(v, seq, d, ld, 1, None);
                attention_head(
                    (seq, d),
                    block,
                    o,
                    |i0, rows, scores| {
                        kt.matmul_strided(&q[i0 * ld..], rows, ld, scores, seq, Mode::Serial)
                    },
                    |i0, rows, scores, inv_sums, o| {
                        softmax_rows(scores, seq, i0, scale, causal, inv_sums);
                        v.matmul_strided(scores, rows, seq, o, d, Mode::DirectA);
                    },
                );
            }
            for (i, row) in o.chunks_exact(d).enumerate() {
                // SAFETY: inside `out` (asserted above); each job writes only its head's d
                // columns, so no two threads write the same values, and nothing reads them
                // until every job is done.
                unsafe { out.write((b * seq + i) * hidden + hd * d, row) };
            }
        });
    };
    let jobs: Vec<(usize, usize)> = (0..batch)
        .flat_map(|b| (0..heads).map(move |hd| (b, hd)))
        .collect();
    #[cfg(feature = "native")]
    jobs.par_iter().for_each(head);
    #[cfg(not(feature = "native"))]
    jobs.iter().for_each(head);
}

/// `attention`'s output, which its parallel jobs write column slices of.
#[derive(Clone, Copy)]
struct HeadColumns(*mut f32);
// SAFETY: see the write in `attention`: disjoint columns per job.
unsafe impl Send for HeadColumns {}
unsafe impl Sync for HeadColumns {}

impl HeadColumns {
    /// SAFETY: `at..at + values.len()` is inside the output and written by this job only.
    unsafe fn write(self, at: usize, values: &[f32]) {
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(at), values.len()) };
    }
}

/// One attention job's buffers, kept per thread: fresh ones for every head of every layer
/// (~0.3 MB) cost page faults (bf16 attention of a ViT-B/16 layer 6.4 ms with them, 5.4 ms
/// without).
#[derive(Default)]
struct HeadScratch {
    block: Vec<f32>,
    o: Vec<f32>,
    /// bf16 only: Q and one block's probabilities as bf16 pairs (aligned: AMX reads them
    /// as tiles).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    q16: Aligned<u32>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    p16: Aligned<u32>,
}

thread_local! {
    static HEAD_SCRATCH: std::cell::RefCell<HeadScratch> = Default::default();
}

/// One head, [seq, d], into `o`, in blocks of query rows (`block`: the scores of
/// `ATTENTION_ROWS` rows), so that a block's scores stay in L2 from the product through the
/// softmax to the product with V: `scores(i0, rows, block)` writes Q[i0..i0 + rows]·Kᵀ,
/// `softmax_times_v(i0, rows, block, inv_sums, o)` the unnormalised softmax · V and each
/// row's 1 / sum.
fn attention_head(
    (seq, d): (usize, usize),
    block: &mut [f32],
    o: &mut [f32],
    mut scores: impl FnMut(usize, usize, &mut [f32]),
    mut softmax_times_v: impl FnMut(usize, usize, &mut [f32], &mut [f32], &mut [f32]),
) {
    let mut inv_sums = [0.0f32; ATTENTION_ROWS];
    for i0 in (0..seq).step_by(ATTENTION_ROWS) {
        let rows = ATTENTION_ROWS.min(seq - i0);
        let (block, inv_sums) = (&mut block[..rows * seq], &mut inv_sums[..rows]);
        let o_block = &mut o[i0 * d..(i0 + rows) * d];
        scores(i0, rows, block);
        softmax_times_v(i0, rows, block, inv_sums, o_block);
        // The softmax's normalisation, on d outputs per row instead of seq scores.
        for (row, &inv) in o_block.chunks_exact_mut(d).zip(inv_sums.iter()) {
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// `step(a_rows, b_rows)` on matching chunks of whole rows (`width` values each) of `a` and
/// `b` (or of `a` alone where `b` is empty), one chunk per rayon thread natively for steps of
/// 64K values or more: the norms, residual sums and activation between the GEMMs had run on
/// one thread (6.6% of a 1-thread q8 pass with AMX, so twice that share of a 2-thread one).
/// Below that (the text tower) one chunk.
fn rows_parallel(
    a: &mut [f32],
    b: &[f32],
    width: usize,
    step: impl Fn(&mut [f32], &[f32]) + Send + Sync,
) {
    assert!(
        b.is_empty() || b.len() == a.len(),
        "row chunks of unequal inputs"
    );
    #[cfg(feature = "native")]
    let threads = if a.len() >= 1 << 16 {
        rayon::current_num_threads()
    } else {
        1
    };
    #[cfg(not(feature = "native"))]
    let threads = 1;
    let width = width.max(1);
    let chunk = (a.len() / width).div_ceil(threads).max(1) * width;
    let b_chunk = |i: usize| {
        if b.is_empty() {
            b
        } else {
            &b[i * chunk..(i * chunk + chunk).min(b.len())]
        }
    };
    #[cfg(feature = "native")]
    if threads > 1 {
        a.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, a)| step(a, b_chunk(i)));
        return;
    }
    a.chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, a)| step(a, b_chunk(i)));
}

/// Whether [`bf16`]'s kernels run here.
#[cfg(test)]
fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return bf16::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether [`bf16`]'s kernels run here and are faster than f32 ([`bf16::pays`]).
fn bf16_pays() -> bool {
    #[cfg(target_arch = "x86_64")]
    return bf16::pays();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Runs `$body` compiled for AVX2+FMA when the CPU has them (LLVM vectorises the plain loops
/// below 8 wide there), else as built (SSE2 natively, simd128 in wasm).
macro_rules! vectorized {
    ($name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features were just detected.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features were just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use vectorized;

/// Sum and max of a row through 8 independent lanes, so LLVM can vectorise without
/// reassociating a single accumulator.
#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lanes_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// e^x for f32 in plain arithmetic (vectorisable, unlike libm's `expf`): Cody-Waite range
/// reduction to r in [-ln2/2, ln2/2] and a degree-6 polynomial; within 2 ulp of `f32::exp`
/// on [-87, 88], 0 below, +inf above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.5, 88.5);
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n by building the exponent bits; n + 127 stays in 1..=254 after the clamp. Adding
    // 1.5 * 2^23 puts that integer in the low mantissa bits, and the shift moves it into the
    // exponent field: unlike `n as i32` (saturating, so scalar code) this vectorises.
    p * f32::from_bits((n + 127.0 + 12_582_912.0).to_bits() << 23)
}

vectorized!(layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let h = gamma.len();
    for (row, o) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let mean = lanes_sum(row) / h as f32;
        for (o, &v) in o.iter_mut().zip(row) {
            *o = v - mean;
        }
        let var = {
            let mut acc = [0.0f32; 8];
            let chunks = o.chunks_exact(8);
            let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
            for c in chunks {
                for (a, v) in acc.iter_mut().zip(c) {
                    *a += v * v;
                }
            }
            (acc.iter().sum::<f32>() + tail) / h as f32
        };
        let inv = 1.0 / (var + eps).sqrt();
        for ((o, &g), &b) in o.iter_mut().zip(gamma).zip(beta) {
            *o = *o * inv * g + b;
        }
    }
});

/// The keys query `row` of a `seq`-long sequence attends to: all, or causal, 0..=row (the
/// rest get probability 0, as with HF's mask).
pub(crate) fn live_keys(seq: usize, row: usize, causal: bool) -> usize {
    if causal { (row + 1).min(seq) } else { seq }
}

/// Softmax of each row without its normalisation: e^(scale (x - max)) in place, 1 / sum into
/// `inv_sums` (the caller scales the product with V instead: one pass fewer over the scores).
/// Hand-vectorised with AVX-512 ([`avx512::softmax_row`]), else [`softmax_rows_auto`].
pub fn softmax_rows(
    scores: &mut [f32],
    seq: usize,
    first_row: usize,
    scale: f32,
    causal: bool,
    inv_sums: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for ((i, row), inv) in scores.chunks_exact_mut(seq).enumerate().zip(inv_sums) {
            let valid = live_keys(seq, first_row + i, causal);
            // SAFETY: the feature was just detected.
            *inv = unsafe { avx512::softmax_row(row, valid, scale) };
        }
        return;
    }
    softmax_rows_auto(scores, seq, first_row, scale, causal, inv_sums)
}

// [`softmax_rows`] in plain loops for LLVM to vectorise (wasm, AVX2).
vectorized!(softmax_rows_auto(scores: &mut [f32], seq: usize, first_row: usize, scale: f32, causal: bool, inv_sums: &mut [f32]) {
    for ((i, row), inv) in scores.chunks_exact_mut(seq).enumerate().zip(inv_sums) {
        let valid = live_keys(seq, first_row + i, causal);
        let (live, masked) = row.split_at_mut(valid);
        masked.fill(0.0);
        let max = lanes_max(live);
        // Separate loops: each vectorises whole (a fused exp-and-sum loop did not).
        for v in live.iter_mut() {
            *v = exp((*v - max) * scale);
        }
        *inv = 1.0 / lanes_sum(live);
    }
});

vectorized!(add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
});

vectorized!(quick_gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v /= 1.0 + exp(-1.702 * *v);
    }
});

vectorized!(silu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v /= 1.0 + exp(-*v);
    }
});

vectorized!(gelu_tanh(x: &mut [f32]) {
    // 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
    for v in x.iter_mut() {
        let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
        *v /= 1.0 + exp(-2.0 * u);
    }
});

vectorized!(relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
});

fn activate(act: Activation, x: &mut [f32]) {
    match act {
        Activation::QuickGelu => quick_gelu(x),
        Activation::Silu => silu(x),
        Activation::GeluTanh => gelu_tanh(x),
        Activation::Relu => relu(x),
        Activation::Gelu => unreachable!("PackedLayer is not built for gelu (see `supports`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.5));
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    /// The softmax this CPU runs (AVX-512's where it has it) and the plain loops (wasm's)
    /// against one in f64: odd widths, a row longer than the unrolled loop, causal rows past a
    /// block's first row, the masked tail zero.
    #[test]
    fn softmax_rows_match_f64() {
        type Softmax = fn(&mut [f32], usize, usize, f32, bool, &mut [f32]);
        let cases = [
            (3, 5, 0, false),
            (4, 37, 0, true),
            (6, 485, 90, true),
            (2, 485, 0, false),
        ];
        let softmaxes: [Softmax; 2] = [softmax_rows, softmax_rows_auto];
        for (softmax, (rows, seq, first_row, causal)) in
            softmaxes.into_iter().flat_map(|f| cases.map(|c| (f, c)))
        {
            let scores: Vec<f32> = (0..rows * seq)
                .map(|i| ((i * 7919) % 1999) as f32 / 100.0 - 10.0)
                .collect();
            let (scale, mut got, mut inv) = (0.3, scores.clone(), vec![0.0; rows]);
            softmax(&mut got, seq, first_row, scale, causal, &mut inv);
            for i in 0..rows {
                let valid = if causal {
                    (first_row + i + 1).min(seq)
                } else {
                    seq
                };
                let row = &scores[i * seq..][..valid];
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let e: Vec<f64> = row
                    .iter()
                    .map(|&v| ((v as f64 - max) * scale as f64).exp())
                    .collect();
                let want_inv = 1.0 / e.iter().sum::<f64>();
                assert!(
                    ((inv[i] as f64 - want_inv) / want_inv).abs() < 1e-5,
                    "row {i} sum"
                );
                for j in 0..seq {
                    let g = got[i * seq + j] as f64;
                    let w = e.get(j).copied().unwrap_or(0.0);
                    assert!(
                        (g - w).abs() <= 1e-6 * w.max(1e-30),
                        "({i}, {j}): {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The packed layer against burn's `EncoderLayer` on random weights, both towers' masks.
    #[test]
    fn packed_layer_matches_burn_layer() {
        let device = Device::flex();
        for (activation, causal, batch, seq) in [
            (Activation::QuickGelu, false, 1, 37),
            (Activation::QuickGelu, true, 3, 9),
            // Longer than one block of query rows, causal across blocks.
            (Activation::QuickGelu, true, 1, 2 * ATTENTION_ROWS + 5),
            (Activation::GeluTanh, false, 2, 5),
            (Activation::Relu, true, 1, 1),
        ] {
            let spec = LayerSpec {
                hidden: 48,
                heads: 4,
                intermediate: 96,
                activation,
                eps: 1e-5,
            };
            let mut layer = EncoderLayer::new(spec, &device);
            // Non-trivial norms: burn initialises gamma to 1 and beta to 0.
            layer.layer_norm1.gamma = burn::module::Param::from_tensor(Tensor::random(
                [48],
                Distribution::Uniform(0.5, 1.5),
                &device,
            ));
            layer.layer_norm2.beta = Some(burn::module::Param::from_tensor(Tensor::random(
                [48],
                Distribution::Uniform(-0.5, 0.5),
                &device,
            )));
            let x: Tensor<3> =
                Tensor::random([batch, seq, 48], Distribution::Normal(0.0, 1.0), &device);
            let worst = |got: &[f32], want: &[f32]| {
                got.iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max)
            };
            let pre = values(layer.forward_pre_norm(x.clone(), causal)).unwrap();
            // Burn's ops: the layer itself is not packed.
            let post = values(layer.forward_post_norm(x.clone()).unwrap()).unwrap();
            // int8 (where this CPU has a kernel) within 8-bit quantization error of f32.
            for (precision, tol) in [
                (Precision::F32, 1e-4),
                (Precision::Int8, 0.05),
                (Precision::Int8Bf16, 0.05),
            ] {
                let mut packed = PackedLayer::new(&layer, spec, precision).unwrap();
                // bf16 attention where asked for and faster here; tested wherever the CPU
                // has it.
                let want_bf16 = precision == Precision::Int8Bf16 && bf16_pays();
                assert_eq!(packed.bf16_attention, want_bf16);
                packed.bf16_attention |= precision == Precision::Int8Bf16 && bf16_available();
                let mut got = values(x.clone()).unwrap();
                packed.forward_pre_norm(&mut got, batch, seq, causal, &mut Scratch::default());
                let diff = worst(&got, &pre);
                assert!(
                    diff < tol,
                    "{activation:?} {precision:?} causal={causal}: max |diff| {diff}"
                );
                if !causal {
                    let mut got = values(x.clone()).unwrap();
                    packed.forward_post_norm(&mut got, batch, seq, &mut Scratch::default());
                    let diff = worst(&got, &post);
                    assert!(
                        diff < tol,
                        "post-norm {activation:?} {precision:?}: max |diff| {diff}"
                    );
                }
            }
        }
    }
}

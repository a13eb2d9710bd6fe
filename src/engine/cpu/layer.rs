//! One transformer layer on the CPU kernels: the same `CLIPSegEncoderLayer` /
//! `CLIPSegDecoderLayer` math as the model, on plain `f32` slices with the weights packed once
//! ([`PackedLayer`]), the projections in f32 ([`super::gemm`]) or int8 ([`super::qgemm`]),
//! attention's products in f32 or, where that is faster here, bf16 ([`super::bf16`]). Q, K and V
//! are one product, attention reads the heads in place from its output, and the elementwise work
//! between the products is vectorised ([`super::common`]).

use super::aligned::Aligned;
use super::common::{activate, add_assign, layer_norm, rows_parallel, softmax_rows};
use super::gemm::{Mode, PackedMatrix};
use super::qgemm::QuantMatrix;
use crate::config::Activation;
use crate::engine::layer::{LayerWeights, Matrix, Norm, NormWeights};

#[cfg(feature = "native")]
use rayon::prelude::*;

/// One transformer layer with its weights packed for the kernels ([`Self::new`]).
#[derive(Debug)]
pub struct PackedLayer {
    hidden: usize,
    heads: usize,
    activation: Activation,
    eps: f32,
    ln1: NormWeights,
    /// `q_proj | k_proj | v_proj` side by side: [hidden, 3 * hidden].
    qkv: Projection,
    out_proj: Projection,
    ln2: NormWeights,
    fc1: Projection,
    fc2: Projection,
    /// Attention's products in bf16 ([`super::bf16`]): int8 layers on CPUs that have it.
    bf16_attention: bool,
}
/// Which arithmetic the packed layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// int8 weights and per-row int8 activations ([`super::qgemm`]) where the CPU has an int8
    /// kernel, else f32: for weights that were 8-bit (or coarser) already. Attention stays f32, so
    /// every int8 kernel computes the same values, the browser's simd128 build's included.
    Int8,
    /// [`Self::Int8`] with activations quantized to 7 bits (asymmetric per row, the
    /// `qgemm::Layout::U7` kernels): what the browser's relaxed-SIMD build computes (its dot
    /// product takes one 7-bit side exactly everywhere), and the default where such a kernel is
    /// this CPU's fastest ([`super::qgemm::seven_bit_preferred`]).
    Int8A7,
    /// [`Self::Int8`], and attention's two products in bf16 where that is faster than f32 here
    /// ([`super::bf16::pays`]; elsewhere the same as `Int8`): what a quantized pack runs natively.
    Int8Bf16,
    /// The projections in bf16 on AMX tiles ([`super::bf16::Linear`]) where the CPU has them, else
    /// f32; attention f32: the decoder's layers beside `Int8Bf16` towers ([`Self::decoder`]).
    Bf16,
}

impl Precision {
    /// The int8 kernel this precision's projections run on here, if they run in int8.
    pub fn int8_kernel(self) -> Option<&'static str> {
        let seven_bit = self == Self::Int8A7;
        let int8 = seven_bit || matches!(self, Self::Int8 | Self::Int8Bf16);
        super::qgemm::kernel_name(seven_bit).filter(|_| int8)
    }

    /// Whether attention runs in bf16 at this precision, here.
    pub fn bf16_attention(self) -> bool {
        self == Self::Int8Bf16 && bf16_pays()
    }

    /// What the decoder's layers run in beside towers at this precision: f32, or for a
    /// quantized pack's `Int8Bf16` on AMX, bf16 projections (its f32 MLP was a large share of
    /// a re-prompt; the decoder's weights come as f16 in a pack, the towers' as 8-bit).
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
    return super::amx::available_bf16();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A Linear layer's weight and bias, packed for one of the GEMMs.
#[derive(Debug)]
pub enum Projection {
    F32(PackedMatrix),
    Int8(QuantMatrix),
    #[cfg(target_arch = "x86_64")]
    Bf16(super::bf16::Linear),
}

impl Projection {
    /// Row-major `w` `[k, n]` (and bias `[n]`) in `precision`.
    pub fn pack(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>, precision: Precision) -> Self {
        let int8 = match precision {
            Precision::Int8 | Precision::Int8Bf16 => QuantMatrix::pack(w, k, n, bias, false),
            Precision::Int8A7 => QuantMatrix::pack(w, k, n, bias, true),
            Precision::F32 | Precision::Bf16 => None,
        };
        #[cfg(target_arch = "x86_64")]
        if precision == Precision::Bf16 && bf16_projections() {
            return Projection::Bf16(super::bf16::Linear::pack(w, k, n, bias));
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
impl PackedLayer {
    /// `w`'s weights packed in `precision`.
    pub fn new(w: &LayerWeights, precision: Precision) -> Self {
        let spec = w.spec;
        let pack =
            |m: &Matrix| Projection::pack(&m.w.to_f32(), m.k, m.n, m.bias.as_deref(), precision);
        Self {
            hidden: spec.hidden,
            heads: spec.heads,
            activation: spec.activation,
            eps: spec.eps as f32,
            ln1: w.layer_norm1.clone(),
            qkv: pack(&w.qkv),
            out_proj: pack(&w.out_proj),
            ln2: w.layer_norm2.clone(),
            fc1: pack(&w.fc1),
            fc2: pack(&w.fc2),
            bf16_attention: precision.bf16_attention(),
        }
    }

    /// Whether attention's products run in bf16.
    pub fn bf16_attention(&self) -> bool {
        self.bf16_attention
    }

    /// Runs attention in bf16 wherever the CPU has it, faster or not: for tests of that path.
    #[cfg(test)]
    pub fn force_bf16_attention(&mut self) {
        self.bf16_attention |= bf16_available();
    }

    /// The layer in place on `x` [batch * seq, hidden], normalising where `norm` says.
    /// `scratch` carries the buffers from layer to layer.
    pub fn forward(
        &self,
        x: &mut [f32],
        batch: usize,
        seq: usize,
        norm: Norm,
        scratch: &mut Scratch,
    ) {
        match norm {
            Norm::Pre { causal } => self.forward_pre_norm(x, batch, seq, causal, scratch),
            Norm::Post => self.forward_post_norm(x, batch, seq, scratch),
        }
    }

    /// Pre-norm layer in place on `x` [batch * seq, hidden]: x + attn(ln1(x)), then
    /// x + mlp(ln2(x)). `scratch` carries the buffers from layer to layer.
    fn forward_pre_norm(
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
        rows_parallel(normed, x, h, |o, x| {
            layer_norm(x, &ln1.gamma, &ln1.beta, eps, o)
        });
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

        rows_parallel(normed, x, h, |o, x| {
            layer_norm(x, &ln2.gamma, &ln2.beta, eps, o)
        });
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
    fn forward_post_norm(&self, x: &mut [f32], batch: usize, seq: usize, scratch: &mut Scratch) {
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
        rows_parallel(x, out, h, |o, x| {
            layer_norm(x, &ln1.gamma, &ln1.beta, eps, o)
        });

        self.mlp(x, rows, inner, out);
        rows_parallel(out, x, h, add_assign);
        rows_parallel(x, out, h, |o, x| {
            layer_norm(x, &ln2.gamma, &ln2.beta, eps, o)
        });
    }
}

/// Intermediate buffers of [`PackedLayer::forward`], kept across a tower's layers
/// (fresh multi-megabyte allocations per layer cost page faults).
/// Aligned ([`Aligned`]): they are the GEMMs' inputs and outputs.
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
/// blocks ([`super::bf16::readable_rows`]).
const ATTENTION_ROWS: usize = 96;

/// Multi-head attention on the fused projection `qkv` [batch * seq, 3 * hidden] (HF scales
/// q by head_dim^-0.5 before the product; here the scale goes into the softmax). Writes the
/// merged heads to `out` [batch * seq, hidden]. Heads run in parallel natively. `bf16`: the
/// two products in bf16 ([`super::bf16`]; only ever set where the CPU has it).
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
                let (qp, sp) = (super::bf16::row_pairs(d), super::bf16::row_pairs(seq));
                q16.resize(super::bf16::readable_rows(seq) * qp);
                super::bf16::to_pairs(q, seq, d, ld, q16, qp);
                let kt = super::bf16::Panels::transposed(k, d, seq, ld);
                let v = super::bf16::Panels::rows(v, seq, d, ld);
                p16.resize(super::bf16::readable_rows(ATTENTION_ROWS.min(seq)) * sp);
                attention_head(
                    (seq, d),
                    block,
                    o,
                    |i0, rows, scores| kt.matmul(&q16[i0 * qp..], rows, qp, scores, seq),
                    |i0, rows, scores, inv_sums, o| {
                        super::bf16::softmax_pairs(
                            scores, seq, i0, scale, causal, p16, sp, inv_sums,
                        );
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
/// (~0.3 MB) cost page faults.
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
/// Whether [`super::bf16`]'s kernels run here (whether or not they are faster).
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::common::avx512_bf16();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether [`super::bf16`]'s kernels run here and are faster than f32 ([`super::bf16::pays`],
/// a timing); `CLIPSEG_BF16_ATTENTION=on|off` decides instead (tests: a timing taken under
/// load can differ between processes).
fn bf16_pays() -> bool {
    match std::env::var("CLIPSEG_BF16_ATTENTION").as_deref() {
        Ok("on") => return bf16_available(),
        Ok("off") => return false,
        _ => {}
    }
    #[cfg(target_arch = "x86_64")]
    return super::bf16::pays();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

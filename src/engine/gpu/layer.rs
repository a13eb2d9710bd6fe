//! A run of transformer layers on the kernels ([`forward`]): per layer 9 or 10 dispatches, the
//! whole run in one submission, its buffers and bind groups kept per shape ([`Plan`]).

use std::sync::Mutex;

use super::device::{Dispatch, Gpu, GpuBuffer, Projection, activation_code, bytes};
use crate::Error;
use crate::config::LayerSpec;
use crate::engine::layer::{LayerWeights, Norm, NormWeights};

/// One encoder (or decoder) layer's weights on the GPU.
#[derive(Debug)]
pub struct GpuLayer {
    /// Tells layers apart in [`PlanKey`]s.
    id: u64,
    /// The plans of the runs that start at this layer, most recent last.
    plans: Mutex<Vec<Plan>>,
    hidden: usize,
    heads: usize,
    activation: u32,
    eps: f32,
    ln1: (GpuBuffer, GpuBuffer),
    /// `q_proj | k_proj | v_proj` side by side: [hidden, 3 * hidden].
    qkv: Projection,
    out_proj: Projection,
    ln2: (GpuBuffer, GpuBuffer),
    fc1: Projection,
    fc2: Projection,
}

impl GpuLayer {
    /// Whether the kernels fit this layer shape: `gelu` (erf) is left to burn, and every
    /// kernel works on vectors of 4.
    pub fn supports(spec: LayerSpec) -> bool {
        let head_dim = spec.hidden / spec.heads.max(1);
        let code = activation_code(spec.activation);
        code.is_some()
            && spec.heads > 0
            && spec.hidden.is_multiple_of(spec.heads)
            && spec.hidden.is_multiple_of(4)
            && spec.intermediate.is_multiple_of(4)
            && head_dim.is_multiple_of(4)
    }

    /// Uploads `w`.
    pub fn new(gpu: &Gpu, w: &LayerWeights) -> Result<Self, Error> {
        let spec = w.spec;
        let activation = activation_code(spec.activation)
            .filter(|_| Self::supports(spec))
            .ok_or_else(|| Error::Config(format!("the GPU kernels do not fit layer {spec:?}")))?;
        let norm = |n: &NormWeights| {
            let upload = |label, values| gpu.storage(label, values, wgpu::BufferUsages::empty());
            (upload("gamma", &n.gamma), upload("beta", &n.beta))
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            plans: Mutex::new(Vec::new()),
            hidden: spec.hidden,
            heads: spec.heads,
            activation,
            eps: spec.eps as f32,
            ln1: norm(&w.layer_norm1),
            qkv: Projection::new(gpu, &w.qkv),
            out_proj: Projection::new(gpu, &w.out_proj),
            ln2: norm(&w.layer_norm2),
            fc1: Projection::new(gpu, &w.fc1),
            fc2: Projection::new(gpu, &w.fc2),
        })
    }

    /// Bytes its weights hold on the device.
    pub fn weight_bytes(&self) -> u64 {
        let norms = [&self.ln1, &self.ln2].map(|(g, b)| g.size() + b.size());
        let matrices = [&self.qkv, &self.out_proj, &self.fc1, &self.fc2].map(|p| p.bytes());
        norms.iter().chain(&matrices).sum()
    }

    /// Whether its matrices stayed as their pack stores them (f16 or integers).
    pub fn is_packed(&self) -> bool {
        [&self.qkv, &self.out_proj, &self.fc1, &self.fc2]
            .iter()
            .all(|p| p.is_packed())
    }
}

/// `layers` on `x` [batch * seq, hidden]: the hidden states after each layer whose index is in
/// `keep`, in `keep`'s order.
///
/// Sequences are independent, so a batch whose plan would pass [`MAX_PLAN_BYTES`] or whose
/// buffers would pass the device's limits runs in chunks of sequences (32 prompts through a
/// decoder layer: chunks of 7, ~60 MB of scratch instead of ~280 MB).
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    gpu: &Gpu,
    layers: &[&GpuLayer],
    x: &[f32],
    batch: usize,
    seq: usize,
    norm_at: Norm,
    keep: &[usize],
) -> Result<Vec<Vec<f32>>, Error> {
    forward_within(gpu, layers, x, [batch, seq], norm_at, keep, MAX_PLAN_BYTES).await
}

/// [`forward`] with plans of at most `budget` bytes where one sequence allows it.
async fn forward_within(
    gpu: &Gpu,
    layers: &[&GpuLayer],
    x: &[f32],
    [batch, seq]: [usize; 2],
    norm_at: Norm,
    keep: &[usize],
    budget: u64,
) -> Result<Vec<Vec<f32>>, Error> {
    let Some(first) = layers.first() else {
        return Err(Error::Input("no layers to run".into()));
    };
    let (h, rows) = (first.hidden, batch * seq);
    let same = |l: &&GpuLayer| l.hidden == h && l.fc1.n == first.fc1.n && l.heads == first.heads;
    if x.len() != rows * h || !layers.iter().all(same) {
        return Err(Error::Input(format!(
            "hidden states are not [{rows}, {h}] or the layers differ in shape"
        )));
    }
    if let Some(k) = keep.iter().find(|&&k| k >= layers.len()) {
        return Err(Error::Input(format!("layer {k} was not loaded")));
    }
    if rows == 0 {
        return Ok(vec![Vec::new(); keep.len()]);
    }
    let chunk = sequences_per_plan(gpu, first, seq, keep.len(), budget)?;
    let mut kept = vec![Vec::with_capacity(x.len()); keep.len()];
    for part in x.chunks(chunk * seq * h) {
        let key = PlanKey {
            layers: layers.iter().map(|l| l.id).collect(),
            batch: part.len() / (seq * h),
            seq,
            norm_at,
            keep: keep.to_vec(),
        };
        for (all, states) in kept
            .iter_mut()
            .zip(run_plan(gpu, layers, part, key, budget).await?)
        {
            all.extend(states);
        }
    }
    Ok(kept)
}

/// How many sequences of `seq` tokens one plan takes: as many as keep its scratch within
/// `budget` bytes and each buffer within the device's limits, at least one.
fn sequences_per_plan(
    gpu: &Gpu,
    first: &GpuLayer,
    seq: usize,
    keep: usize,
    budget: u64,
) -> Result<usize, Error> {
    let one = scratch_floats(first, 1, seq, keep).map(|floats| floats as u64 * 4);
    let (total, largest) = (one.iter().sum::<u64>(), one.into_iter().max().unwrap_or(0));
    let limit = buffer_limit(gpu);
    if largest > limit {
        return Err(Error::Input(format!(
            "a sequence of {seq} tokens needs a {largest}-byte GPU buffer; this GPU allows {limit}"
        )));
    }
    Ok(((budget / total.max(1)).min(limit / largest.max(1)) as usize).max(1))
}

/// The largest storage buffer the device takes, in bytes.
fn buffer_limit(gpu: &Gpu) -> u64 {
    let limits = gpu.device.limits();
    (limits.max_storage_buffer_binding_size).min(limits.max_buffer_size)
}

/// Floats in a plan's scratch buffers for `batch` sequences of `seq` tokens: the hidden states,
/// their norm, attention's output, q | k | v, the scores (each query's padded to a multiple of
/// 8 keys), the MLP's inner activations, and the kept states read back.
fn scratch_floats(first: &GpuLayer, batch: usize, seq: usize, keep: usize) -> [usize; 7] {
    let (h, rows) = (first.hidden, batch * seq);
    let scores = batch * first.heads * seq * seq.next_multiple_of(8);
    [
        rows * h,
        rows * h,
        rows * h,
        rows * 3 * h,
        scores,
        rows * first.fc1.n,
        keep * rows * h,
    ]
}

/// One plan's run: the layer's kept plan for `key` or a new one, kept afterwards while the
/// plans kept hold at most `budget` bytes (the oldest go first).
async fn run_plan(
    gpu: &Gpu,
    layers: &[&GpuLayer],
    x: &[f32],
    key: PlanKey,
    budget: u64,
) -> Result<Vec<Vec<f32>>, Error> {
    let first = layers[0];
    // Taken out while it runs: a call that overlaps this one builds its own.
    let plan = {
        let mut plans = first.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans
            .iter()
            .position(|p| p.key == key)
            .map(|i| plans.remove(i))
    };
    let plan = plan.unwrap_or_else(|| Plan::new(gpu, layers, key));
    let states = plan.run(gpu, x).await;
    if plan.size_bytes() > budget {
        return states; // its buffers freed now (GpuBuffer)
    }
    let mut plans = first.plans.lock().unwrap_or_else(|e| e.into_inner());
    plans.push(plan);
    let held = |plans: &Vec<Plan>| plans.iter().map(Plan::size_bytes).sum::<u64>();
    while plans.len() > MAX_PLANS || held(&plans) > budget {
        plans.remove(0);
    }
    states
}

/// Shapes whose plans a layer keeps (prompts of different lengths, batches of prompts).
const MAX_PLANS: usize = 4;

/// The most scratch a plan holds, and the plans a layer keeps together: the vision tower's
/// plan is ~25 MB, a decoder layer's ~9 MB a prompt.
const MAX_PLAN_BYTES: u64 = 64 << 20;

#[derive(Debug, PartialEq)]
struct PlanKey {
    /// [`GpuLayer::id`]s, in order.
    layers: Vec<u64>,
    batch: usize,
    seq: usize,
    norm_at: Norm,
    keep: Vec<usize>,
}

/// One shape of [`forward`], built once and replayed: its buffers, and every dispatch with its
/// bind group. In Chromium (WebGPU from a worker, SwiftShader) creating a bind group is so
/// slow that doing it per run cost a text tower more than its kernels (measured:
/// docs/benchmarks-history.md).
struct Plan {
    key: PlanKey,
    /// The hidden states [rows, hidden], updated in place layer by layer.
    state: GpuBuffer,
    /// One slot per entry of `keep`, in its order.
    staging: GpuBuffer,
    /// Per layer: its dispatches (one compute pass), then the `staging` slots it fills.
    steps: Vec<(Vec<Dispatch>, Vec<usize>)>,
    /// The scratch and parameter buffers the bind groups use, owned here.
    buffers: Vec<GpuBuffer>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("key", &self.key).finish()
    }
}

impl Plan {
    fn new(gpu: &Gpu, layers: &[&GpuLayer], key: PlanKey) -> Self {
        let (batch, seq, norm_at) = (key.batch, key.seq, key.norm_at);
        let first = layers[0];
        let causal = norm_at == Norm::Pre { causal: true };
        let (h, rows) = (first.hidden, batch * seq);
        use wgpu::BufferUsages as U;
        let [state, normed, merged, qkv, scores, inner, staging] =
            scratch_floats(first, batch, seq, key.keep.len());
        let state = gpu.scratch(
            "hidden states",
            state,
            U::STORAGE | U::COPY_SRC | U::COPY_DST,
        );
        let normed = gpu.scratch("normed", normed, U::STORAGE);
        let merged = gpu.scratch("attention", merged, U::STORAGE);
        let qkv = gpu.scratch("qkv", qkv, U::STORAGE);
        // Each query's scores, padded to a multiple of 8 keys.
        let cols = seq.next_multiple_of(8);
        let score_rows = batch * first.heads * seq;
        let scores = gpu.scratch("scores", scores, U::STORAGE);
        let inner = gpu.scratch("mlp", inner, U::STORAGE);
        let staging = gpu.scratch("kept states", staging, U::MAP_READ | U::COPY_DST);

        let norm_params = gpu.uniform(&[rows as u32, h as u32, first.eps.to_bits(), 0]);
        let (heads, head_dim) = (first.heads, h / first.heads);
        let scale = (head_dim as f32).powf(-0.5);
        let attention_params = gpu.uniform(&[
            seq as u32,
            h as u32,
            causal as u32,
            scale.to_bits(),
            cols as u32,
            heads as u32,
            0,
            0,
        ]);
        let softmax_params = gpu.uniform(&[score_rows as u32, cols as u32, 0, 0]);
        let attention = gpu.attention(head_dim);
        let qkv_params = gpu.matmul_params(rows, &first.qkv, 0, false);
        let out_params = gpu.matmul_params(rows, &first.out_proj, 0, true);
        let fc1_params = gpu.matmul_params(rows, &first.fc1, first.activation, false);
        let fc2_params = gpu.matmul_params(rows, &first.fc2, 0, true);

        let norm = |(g, b): &(GpuBuffer, GpuBuffer), from, to| {
            let buffers: [&wgpu::Buffer; 5] = [&norm_params, from, g, b, to];
            gpu.bind(&gpu.layer_norm, &buffers, [rows.div_ceil(32), 1, 1])
        };
        let steps = layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let mut d = Vec::with_capacity(10);
                // The attention block's input: ln1(state) before, state itself after.
                let input = match norm_at {
                    Norm::Pre { .. } => {
                        d.push(norm(&layer.ln1, &state, &normed));
                        &normed
                    }
                    Norm::Post => &state,
                };
                d.push(gpu.matmul(&qkv_params, input, &layer.qkv, &qkv, rows));
                let groups = attention.scores_groups(seq, cols, batch * heads);
                let buffers: [&wgpu::Buffer; 3] = [&attention_params, &qkv, &scores];
                d.push(gpu.bind(&attention.scores, &buffers, groups));
                let groups = [score_rows.div_ceil(32), 1, 1];
                d.push(gpu.bind(&gpu.softmax, &[&softmax_params, &scores], groups));
                let groups = attention.pv_groups(seq, batch * heads);
                let buffers: [&wgpu::Buffer; 4] = [&attention_params, &qkv, &scores, &merged];
                d.push(gpu.bind(&attention.pv, &buffers, groups));
                d.push(gpu.matmul(&out_params, &merged, &layer.out_proj, &state, rows));
                // The MLP's input x: ln2(state) before (pre-norm), ln1(state) after (post-norm).
                let mid = match norm_at {
                    Norm::Pre { .. } => &layer.ln2,
                    Norm::Post => &layer.ln1,
                };
                d.push(norm(mid, &state, &normed));
                d.push(gpu.matmul(&fc1_params, &normed, &layer.fc1, &inner, rows));
                match norm_at {
                    // state + mlp(x)
                    Norm::Pre { .. } => {
                        d.push(gpu.matmul(&fc2_params, &inner, &layer.fc2, &state, rows));
                    }
                    // ln2(x + mlp(x))
                    Norm::Post => {
                        d.push(gpu.matmul(&fc2_params, &inner, &layer.fc2, &normed, rows));
                        d.push(norm(&layer.ln2, &normed, &state));
                    }
                }
                let slots = (key.keep.iter().enumerate())
                    .filter(|&(_, &k)| k == i)
                    .map(|(slot, _)| slot)
                    .collect();
                (d, slots)
            })
            .collect();
        let buffers = vec![
            normed,
            merged,
            qkv,
            scores,
            inner,
            norm_params,
            attention_params,
            softmax_params,
            qkv_params,
            out_params,
            fc1_params,
            fc2_params,
        ];
        Self {
            key,
            state,
            staging,
            steps,
            buffers,
        }
    }

    /// Bytes in the buffers it owns (its dispatches' own scratch aside).
    fn size_bytes(&self) -> u64 {
        let buffers = self.buffers.iter().chain([&self.state, &self.staging]);
        buffers.map(|b| b.size()).sum()
    }

    /// The plan on `x`, in one submission; the kept states read back once.
    async fn run(&self, gpu: &Gpu, x: &[f32]) -> Result<Vec<Vec<f32>>, Error> {
        gpu.queue.write_buffer(&self.state, 0, &bytes(x));
        let size = (x.len() * 4) as u64;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for (dispatches, slots) in &self.steps {
            {
                let pass = &mut encoder.begin_compute_pass(&Default::default());
                for d in dispatches {
                    d.record(pass);
                }
            }
            for &slot in slots {
                let at = slot as u64 * size;
                encoder.copy_buffer_to_buffer(&self.state, 0, &self.staging, at, size);
            }
        }
        gpu.queue.submit([encoder.finish()]);
        let all = gpu
            .read(&self.staging, self.key.keep.len() * x.len())
            .await?;
        Ok(all.chunks_exact(x.len()).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(all(test, feature = "native"))]
mod tests {
    use super::*;
    use crate::config::Activation;
    use crate::engine::block_on;

    fn spec(hidden: usize, heads: usize, intermediate: usize, activation: Activation) -> LayerSpec {
        LayerSpec {
            hidden,
            heads,
            intermediate,
            activation,
            eps: 1e-5,
        }
    }

    /// A plan is kept per shape and replayed on new inputs: each run gives that input's
    /// states (those of a fresh plan), and a layer keeps at most `MAX_PLANS` of them, none over
    /// `MAX_PLAN_BYTES`.
    #[test]
    fn plans_are_kept_per_shape_and_rerun_on_new_inputs() {
        let gpu = super::super::test_gpu();
        let spec = spec(32, 4, 72, Activation::QuickGelu);
        let upload = || -> Vec<GpuLayer> {
            (0..2)
                .map(|seed| GpuLayer::new(&gpu, &LayerWeights::random(spec, seed)).unwrap())
                .collect()
        };
        let kept = upload();
        let refs: Vec<&GpuLayer> = kept.iter().collect();
        let norm = Norm::Pre { causal: true };
        let input = |seq: usize| -> Vec<f32> {
            (0..seq * 32)
                .map(|i| ((i * 7919 + seq) % 211) as f32 / 50.0 - 2.0)
                .collect()
        };
        let run = |layers: &[&GpuLayer], seq: usize, x: &[f32]| {
            block_on(forward(&gpu, layers, x, 1, seq, norm, &[1]))
                .unwrap()
                .remove(0)
        };
        let fresh = |seq: usize, x: &[f32]| {
            let layers = upload();
            run(&layers.iter().collect::<Vec<_>>(), seq, x)
        };
        let (a, b, c) = (
            input(5),
            input(5).iter().map(|v| -v).collect::<Vec<_>>(),
            input(9),
        );
        let first = run(&refs, 5, &a);
        assert_eq!(first, fresh(5, &a));
        assert_eq!(
            run(&refs, 5, &b),
            fresh(5, &b),
            "a replayed plan on a new input"
        );
        run(&refs, 9, &c);
        assert_eq!(
            run(&refs, 5, &a),
            first,
            "a replayed plan gives the same states"
        );
        assert_eq!(kept[0].plans.lock().unwrap().len(), 2, "one plan per shape");
        for seq in 10..10 + MAX_PLANS {
            run(&refs, seq, &input(seq));
        }
        let seqs = || -> Vec<usize> {
            let plans = kept[0].plans.lock().unwrap();
            plans.iter().map(|p| p.key.seq).collect()
        };
        assert_eq!(seqs(), (10..10 + MAX_PLANS).collect::<Vec<_>>());
        // 4 heads' scores alone are 4 * 2100 * 2104 floats (71 MB): run, then not kept.
        run(&refs, 2100, &input(2100));
        assert_eq!(seqs(), (10..10 + MAX_PLANS).collect::<Vec<_>>());
    }

    /// A batch over the plan budget runs in chunks of sequences, each chunk's states those of
    /// the whole batch run at once, and the plans kept stay within the budget; a sequence
    /// whose buffers pass the device's limits is refused with a message.
    #[test]
    fn batches_over_the_budget_run_in_chunks() {
        let gpu = super::super::test_gpu();
        let spec = spec(32, 4, 72, Activation::QuickGelu);
        let layers: Vec<GpuLayer> = (0..2)
            .map(|seed| GpuLayer::new(&gpu, &LayerWeights::random(spec, seed)).unwrap())
            .collect();
        let refs: Vec<&GpuLayer> = layers.iter().collect();
        let (batch, seq, norm) = (5, 7, Norm::Post);
        let x: Vec<f32> = (0..batch * seq * 32)
            .map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0)
            .collect();
        let run = |budget: u64| {
            block_on(forward_within(
                &gpu,
                &refs,
                &x,
                [batch, seq],
                norm,
                &[0, 1],
                budget,
            ))
            .unwrap()
        };
        let whole = run(u64::MAX);
        assert_eq!(layers[0].plans.lock().unwrap().len(), 1);
        layers[0].plans.lock().unwrap().clear();
        let one: u64 = scratch_floats(refs[0], 1, seq, 2).iter().sum::<usize>() as u64 * 4;
        // Two sequences a plan: chunks of 2, 2 and 1.
        let chunked = run(2 * one + one / 2);
        assert_eq!(chunked, whole, "chunks of 2 sequences");
        let plans = layers[0].plans.lock().unwrap();
        let batches: Vec<usize> = plans.iter().map(|p| p.key.batch).collect();
        let held: u64 = plans.iter().map(Plan::size_bytes).sum();
        assert!(held <= 2 * one + one / 2, "{held} bytes kept");
        assert_eq!(
            batches,
            vec![1],
            "the 2-sequence plan made way for the last chunk's"
        );
        drop(plans);
        assert_eq!(run(1), whole, "one sequence at a time");

        // One head's scores alone over the limit.
        let long = ((buffer_limit(&gpu) / 4) as f64).sqrt() as usize + 8;
        let x = vec![0.0; long * 32];
        let err = block_on(forward(&gpu, &refs, &x, 1, long, norm, &[0])).unwrap_err();
        assert!(err.to_string().contains("this GPU allows"), "{err}");
        let empty = block_on(forward(&gpu, &refs, &[], 0, seq, norm, &[0, 1])).unwrap();
        assert_eq!(empty, vec![Vec::<f32>::new(); 2], "no sequences, no states");
    }

    #[test]
    fn shapes_the_kernels_lack_are_refused() {
        assert!(GpuLayer::supports(spec(24, 2, 48, Activation::QuickGelu)));
        assert!(!GpuLayer::supports(spec(16, 2, 32, Activation::Gelu)));
        assert!(!GpuLayer::supports(spec(20, 2, 40, Activation::QuickGelu)));
        assert!(!GpuLayer::supports(spec(24, 4, 48, Activation::QuickGelu)));
        assert!(!GpuLayer::supports(spec(24, 2, 42, Activation::QuickGelu)));
        assert!(GpuLayer::supports(spec(24, 2, 44, Activation::QuickGelu)));
        let gpu = super::super::test_gpu();
        let gelu = LayerWeights::random(spec(16, 2, 32, Activation::Gelu), 0);
        let err = GpuLayer::new(&gpu, &gelu).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}

//! The WebGPU path of the frozen CLIP encoder layers and the decoder's layers: the same
//! `CLIPSegEncoderLayer` / `CLIPSegDecoderLayer` math as [`crate::model::transformer`] in
//! hand-written WGSL kernels (`matmul.wgsl`, `layer_norm.wgsl`, and attention as `scores.wgsl`,
//! `softmax.wgsl`, `pv.wgsl`), run on burn's own wgpu device and queue. The matrices around
//! them (the patch embedding, the decoder's reduces and its convolutional head) run on the
//! matmul kernel too ([`GpuLinear`], [`chain`]).
//!
//! Why: on a CPU implementation of WebGPU (Chromium's SwiftShader, what a browser without a
//! usable GPU falls back to) burn-wgpu's matmul, which stages tiles in workgroup memory behind
//! barriers, ran at 0.4 GFLOP/s on the ViT's MLP shape; a register-blocked kernel without
//! barriers (`matmul.wgsl`, written by `tools/gen_matmul_wgsl.py`) runs at 6.1
//! (`bench/swiftshader/run.mjs`). The whole layer also becomes 9
//! dispatches (Q, K and V one matmul; bias, activation and residual in the matmul's epilogue;
//! attention's two products register-blocked the same way) instead of ~30 burn ops. Nothing was
//! measured on a real GPU, where a tiled kernel may do better.
//!
//! A tower's layers run back to back in one submission; only its input and the kept hidden
//! states cross to the host (awaited, never blocked on, so it works in the browser). The
//! buffers and bind groups of a run are built once per shape and replayed (`Plan`). Used for
//! inference on a wgpu device registered with [`register`]; training keeps burn's ops.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use burn::tensor::wgpu::{WgpuSetup, wgpu};
use burn::tensor::{Device, Tensor, TensorData};
use wgpu::util::DeviceExt;

use crate::Error;
use crate::config::Activation;
use crate::model::transformer::{EncoderLayer, LayerSpec};

/// Rows and vec4 columns one invocation of `matmul.wgsl`'s `main` and `small` computes
/// (`tools/gen_matmul_wgsl.py`).
const MATMUL_BLOCK: [usize; 2] = [16, 6];
const MATMUL_SMALL_BLOCK: [usize; 2] = [8, 2];

/// The kernels, built once per device.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    matmul: wgpu::ComputePipeline,
    /// For at most 8 rows (a short prompt's text tower), which `matmul` leaves half empty.
    matmul_small: wgpu::ComputePipeline,
    layer_norm: wgpu::ComputePipeline,
    softmax: wgpu::ComputePipeline,
    /// The scores and P·V kernels by head_dim / 4, a constant of theirs.
    attention: Mutex<HashMap<usize, [wgpu::ComputePipeline; 2]>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gpu")
    }
}

static REGISTRY: Mutex<Vec<(Device, Arc<Gpu>)>> = Mutex::new(Vec::new());

/// Makes the kernels available on `device`, burn's runtime over `setup` (from
/// `Device::wgpu_options().init_with_setup*`): models loaded for inference there use them.
pub fn register(device: &Device, setup: &WgpuSetup) {
    let gpu = Arc::new(Gpu::new(setup.device.clone(), setup.queue.clone()));
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.retain(|(d, _)| d != device);
    registry.push((device.clone(), gpu));
}

/// The kernels registered for `device`, if any.
pub fn for_device(device: &Device) -> Option<Arc<Gpu>> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry
        .iter()
        .find(|(d, _)| d == device)
        .map(|(_, g)| g.clone())
}

impl Gpu {
    fn new(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let matmul_source = include_str!("matmul.wgsl");
        let matmul = pipeline(&device, "matmul", matmul_source, "main");
        let matmul_small = pipeline(&device, "matmul small", matmul_source, "small");
        let layer_norm = pipeline(
            &device,
            "layer_norm",
            include_str!("layer_norm.wgsl"),
            "main",
        );
        let softmax = pipeline(&device, "softmax", include_str!("softmax.wgsl"), "main");
        Self {
            device,
            queue,
            matmul,
            matmul_small,
            layer_norm,
            softmax,
            attention: Mutex::new(HashMap::new()),
        }
    }

    /// The scores and P·V kernels for `head_dim`.
    fn attention(&self, head_dim: usize) -> [wgpu::ComputePipeline; 2] {
        let mut cache = self.attention.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(head_dim / 4)
            .or_insert_with(|| {
                let build = |label, source: &str| {
                    let source = source.replace("{HD4}", &(head_dim / 4).to_string());
                    pipeline(&self.device, label, &source, "main")
                };
                [
                    build("scores", include_str!("scores.wgsl")),
                    build("pv", include_str!("pv.wgsl")),
                ]
            })
            .clone()
    }

    fn storage(&self, label: &str, values: &[f32], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &bytes(values),
                usage: wgpu::BufferUsages::STORAGE | usage,
            })
    }

    fn scratch(&self, label: &str, floats: usize, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (floats.max(1) * 4) as u64,
            usage,
            mapped_at_creation: false,
        })
    }

    fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        let contents: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &contents,
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// A dispatch of `pipeline` with `buffers` at bindings 0, 1, ..., to record into passes.
    fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        groups: [usize; 3],
    ) -> Dispatch {
        let entries: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            pipeline: pipeline.clone(),
            group,
            groups: groups.map(|g| g as u32),
        }
    }

    /// `out = act(a · w + bias)` (+ `out` when `residual`) for `m` rows.
    fn matmul(
        &self,
        params: &wgpu::Buffer,
        a: &wgpu::Buffer,
        p: &Projection,
        out: &wgpu::Buffer,
        m: usize,
    ) -> Dispatch {
        let (kernel, [rows, cols]) = if m <= MATMUL_SMALL_BLOCK[0] {
            (&self.matmul_small, MATMUL_SMALL_BLOCK)
        } else {
            (&self.matmul, MATMUL_BLOCK)
        };
        let blocks = (p.n / 4).div_ceil(cols) * m.div_ceil(rows);
        let groups = blocks.div_ceil(32);
        let groups = [groups.min(65535), groups.div_ceil(65535), 1];
        self.bind(kernel, &[params, a, &p.w, &p.bias, out], groups)
    }

    fn matmul_params(&self, m: usize, p: &Projection, act: u32, residual: bool) -> wgpu::Buffer {
        let flags = act | if residual { 16 } else { 0 };
        self.uniform(&[m as u32, p.n as u32, p.k as u32, flags])
    }

    /// Copies of `buffer`'s first `floats` values, once the queue has run.
    async fn read(&self, buffer: &wgpu::Buffer, floats: usize) -> Result<Vec<f32>, Error> {
        let slice = buffer.slice(..(floats * 4) as u64);
        let mapped = Mapped::default();
        let signal = mapped.0.clone();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let mut state = signal.lock().unwrap_or_else(|e| e.into_inner());
            state.0 = Some(result);
            if let Some(waker) = state.1.take() {
                waker.wake();
            }
        });
        // Natively callbacks only run inside `poll`; in the browser the event loop runs them.
        #[cfg(not(target_family = "wasm"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Input(format!("GPU: {e}")))?;
        mapped
            .await
            .map_err(|e| Error::Input(format!("GPU: reading results back: {e}")))?;
        let values = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Input(format!("GPU: reading results back: {e}")))?;
            view.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        buffer.unmap();
        Ok(values)
    }
}

fn pipeline(
    device: &wgpu::Device,
    label: &str,
    source: &str,
    entry: &str,
) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// A pipeline with its bind group and grid, recorded into a pass as often as needed.
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl Dispatch {
    fn record(&self, pass: &mut wgpu::ComputePass) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Resolves when a `map_async` callback has run.
#[derive(Default)]
#[allow(clippy::type_complexity)]
struct Mapped(Arc<Mutex<(Option<Result<(), wgpu::BufferAsyncError>>, Option<Waker>)>>);

impl Future for Mapped {
    type Output = Result<(), wgpu::BufferAsyncError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match state.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The synchronous face of the async forwards. Natively it runs the future to completion (GPU
/// readbacks finish inside their own `poll`). In the browser nothing may block: a future that
/// is not done on its first poll (it waits on the GPU) is refused, so the CPU engine and burn's
/// ops, which never wait, still run synchronously there.
pub fn block_on<T>(future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    #[cfg(target_family = "wasm")]
    return match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(Error::Input(
            "in the browser, models on the GPU run through the async API".into(),
        )),
    };
    #[cfg(not(target_family = "wasm"))]
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// A Linear layer's weight [k, n] and bias [n] on the GPU.
#[derive(Debug)]
struct Projection {
    w: wgpu::Buffer,
    bias: wgpu::Buffer,
    k: usize,
    n: usize,
}

impl Projection {
    fn new(gpu: &Gpu, w: &[f32], k: usize, n: usize, bias: Option<Vec<f32>>) -> Self {
        Self {
            w: gpu.storage("weight", w, wgpu::BufferUsages::empty()),
            bias: gpu.storage(
                "bias",
                &bias.unwrap_or_else(|| vec![0.0; n]),
                wgpu::BufferUsages::empty(),
            ),
            k,
            n,
        }
    }
}

/// `x · w + bias` on the matmul kernel, for the matrices outside the layers: the vision
/// tower's patch embedding and the decoder's reduces (on SwiftShader burn-wgpu's conv took
/// ~0.8 s a pass, its three reduce matmuls ~0.5 s).
#[derive(Debug)]
pub struct GpuLinear(Projection);

impl GpuLinear {
    /// Whether the kernel fits a [k, n] weight (it works on vectors of 4).
    pub fn supports(k: usize, n: usize) -> bool {
        k > 0 && n > 0 && k.is_multiple_of(4) && n.is_multiple_of(4)
    }

    /// Uploads `w`, row-major `[k, n]`, and `bias` `[n]`.
    pub fn new(
        gpu: &Gpu,
        w: &[f32],
        k: usize,
        n: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<Self, Error> {
        let bias_fits = bias.as_ref().is_none_or(|b| b.len() == n);
        if !Self::supports(k, n) || w.len() != k * n || !bias_fits {
            return Err(Error::Config(format!(
                "the GPU matmul does not fit a [{k}, {n}] weight of {} values",
                w.len()
            )));
        }
        Ok(Self(Projection::new(gpu, w, k, n, bias)))
    }

    /// Uploads a burn `Linear` (one whose tensors can be read synchronously: on flex, or any
    /// native device); `None` for shapes the kernel lacks.
    pub fn from_linear(gpu: &Gpu, linear: &burn::nn::Linear) -> Result<Option<Self>, Error> {
        let [k, n] = linear.weight.dims();
        if !Self::supports(k, n) {
            return Ok(None);
        }
        let (w, bias) = crate::cpu::linear_parts(linear)?;
        Self::new(gpu, &w, k, n, bias).map(Some)
    }

    /// [`Self::forward`] on a burn tensor [batch, seq, k], the result on its device.
    pub async fn forward_tensor(&self, gpu: &Gpu, x: Tensor<3>) -> Result<Tensor<3>, Error> {
        let [batch, seq, _] = x.dims();
        let device = x.device();
        let values = values_async(x).await?;
        let out = self.forward(gpu, &values, batch * seq).await?;
        let data = TensorData::new(out, [batch, seq, self.0.n]);
        Ok(Tensor::from_data(data, &device))
    }

    /// `x` [rows, k] to `x · w` [rows, n], awaited.
    pub async fn forward(&self, gpu: &Gpu, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        if x.len() != rows * self.0.k {
            return Err(Error::Input(format!("input is not [{rows}, {}]", self.0.k)));
        }
        chain(gpu, &[(self, false)], x).await
    }
}

/// `x` through `steps` back to back in one submission, each step reading the values before it
/// as rows of its own `k` (so a step may fold columns into rows: the decoder's transposed
/// convolutions), with a ReLU after the steps flagged so; the last step's values, awaited.
pub async fn chain(gpu: &Gpu, steps: &[(&GpuLinear, bool)], x: &[f32]) -> Result<Vec<f32>, Error> {
    use wgpu::BufferUsages as U;
    let mut buffers = vec![gpu.storage("input", x, U::empty())];
    let mut params = Vec::with_capacity(steps.len());
    let mut len = x.len();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let pass = &mut encoder.begin_compute_pass(&Default::default());
        for (linear, relu) in steps {
            let p = &linear.0;
            if !len.is_multiple_of(p.k) {
                return Err(Error::Input(format!(
                    "{len} values are not rows of {}",
                    p.k
                )));
            }
            let rows = len / p.k;
            len = rows * p.n;
            let out = gpu.scratch("output", len, U::STORAGE | U::COPY_SRC);
            let act = if *relu {
                activation_code(Activation::Relu).unwrap_or(0)
            } else {
                0
            };
            let step_params = gpu.matmul_params(rows, p, act, false);
            let input = &buffers[buffers.len() - 1];
            gpu.matmul(&step_params, input, p, &out, rows).record(pass);
            params.push(step_params);
            buffers.push(out);
        }
    }
    let staging = gpu.scratch("output", len, U::MAP_READ | U::COPY_DST);
    encoder.copy_buffer_to_buffer(&buffers[steps.len()], 0, &staging, 0, (len * 4) as u64);
    gpu.queue.submit([encoder.finish()]);
    let out = gpu.read(&staging, len).await;
    // Freed now rather than when the browser collects them (a batch of prompts' head: ~100 MB).
    for buffer in buffers.iter().chain(&params).chain([&staging]) {
        buffer.destroy();
    }
    out
}

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
    ln1: (wgpu::Buffer, wgpu::Buffer),
    /// `q_proj | k_proj | v_proj` side by side: [hidden, 3 * hidden].
    qkv: Projection,
    out_proj: Projection,
    ln2: (wgpu::Buffer, wgpu::Buffer),
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

    /// Uploads `layer`'s weights (a layer whose tensors can be read synchronously: on flex,
    /// or any native device).
    pub fn new(gpu: &Gpu, layer: &EncoderLayer, spec: LayerSpec) -> Result<Self, Error> {
        let (h, inter) = (spec.hidden, spec.intermediate);
        let activation = activation_code(spec.activation)
            .filter(|_| Self::supports(spec))
            .ok_or_else(|| Error::Config(format!("the GPU kernels do not fit layer {spec:?}")))?;
        let (qkv, qkv_bias) = crate::cpu::fused_qkv(layer, h)?;
        let (o, ob) = crate::cpu::linear_parts(&layer.self_attn.out_proj)?;
        let (f1, f1b) = crate::cpu::linear_parts(&layer.mlp.fc1)?;
        let (f2, f2b) = crate::cpu::linear_parts(&layer.mlp.fc2)?;
        let norm = |n: &burn::nn::LayerNorm| -> Result<_, Error> {
            let (gamma, beta) = crate::cpu::norm_parts(n)?;
            let upload = |label, values| gpu.storage(label, values, wgpu::BufferUsages::empty());
            Ok((upload("gamma", &gamma), upload("beta", &beta)))
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            plans: Mutex::new(Vec::new()),
            hidden: h,
            heads: spec.heads,
            activation,
            eps: spec.eps as f32,
            ln1: norm(&layer.layer_norm1)?,
            qkv: Projection::new(gpu, &qkv, h, 3 * h, Some(qkv_bias)),
            out_proj: Projection::new(gpu, &o, h, h, ob),
            ln2: norm(&layer.layer_norm2)?,
            fc1: Projection::new(gpu, &f1, h, inter, f1b),
            fc2: Projection::new(gpu, &f2, inter, h, f2b),
        })
    }
}

fn activation_code(activation: Activation) -> Option<u32> {
    match activation {
        Activation::QuickGelu => Some(1),
        Activation::GeluTanh => Some(2),
        Activation::Relu => Some(3),
        Activation::Silu => Some(4),
        Activation::Gelu => None,
    }
}

/// A burn tensor's values as f32 on the host, awaited (the browser cannot block on a read).
pub async fn values_async<const D: usize>(x: Tensor<D>) -> Result<Vec<f32>, Error> {
    let err = |e: &dyn std::fmt::Debug| Error::Input(format!("reading a tensor back: {e:?}"));
    let data = x.into_data_async().await.map_err(|e| err(&e))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| err(&e))
}

/// [`forward`] on a burn tensor [batch, seq, hidden]: read back (awaited), run, and the kept
/// states uploaded to the tensor's device.
pub async fn forward_tensor(
    gpu: &Gpu,
    layers: &[&GpuLayer],
    x: Tensor<3>,
    norm_at: Norm,
    keep: &[usize],
) -> Result<Vec<Tensor<3>>, Error> {
    let [batch, seq, hidden] = x.dims();
    let device = x.device();
    let values = values_async(x).await?;
    let states = forward(gpu, layers, &values, batch, seq, norm_at, keep).await?;
    Ok(states
        .into_iter()
        .map(|v| Tensor::from_data(TensorData::new(v, [batch, seq, hidden]), &device))
        .collect())
}

/// Where a layer normalises: CLIP's encoders before attention and MLP (`causal` masks future
/// positions: the text tower), CLIPSeg's decoder after each residual sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    Pre { causal: bool },
    Post,
}

/// `layers` on `x` [batch * seq, hidden]: the hidden states after each layer whose index is in
/// `keep`, in `keep`'s order.
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
    let key = PlanKey {
        layers: layers.iter().map(|l| l.id).collect(),
        batch,
        seq,
        norm_at,
        keep: keep.to_vec(),
    };
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
    if plan.size_bytes() > MAX_PLAN_BYTES {
        plan.destroy();
        return states;
    }
    let mut plans = first.plans.lock().unwrap_or_else(|e| e.into_inner());
    plans.push(plan);
    if plans.len() > MAX_PLANS {
        plans.remove(0).destroy();
    }
    states
}

/// Shapes whose plans a layer keeps (prompts of different lengths, batches of prompts).
const MAX_PLANS: usize = 4;

/// The largest plan kept (its scratch buffers), so that a big batch of prompts does not hold
/// GPU memory after it ran: the vision tower's plan is ~25 MB, a decoder layer's ~9 MB a prompt
/// (32 prompts: ~280 MB).
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
/// bind group. In Chromium (WebGPU from a worker, SwiftShader) creating a bind group took
/// ~4.7 ms: 0.5 s of a text tower's 108 dispatches, more than its kernels (0.3 s).
struct Plan {
    key: PlanKey,
    /// The hidden states [rows, hidden], updated in place layer by layer.
    state: wgpu::Buffer,
    /// One slot per entry of `keep`, in its order.
    staging: wgpu::Buffer,
    /// Per layer: its dispatches (one compute pass), then the `staging` slots it fills.
    steps: Vec<(Vec<Dispatch>, Vec<usize>)>,
    /// The scratch and parameter buffers the bind groups use, owned here.
    buffers: Vec<wgpu::Buffer>,
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
        let state = gpu.scratch(
            "hidden states",
            rows * h,
            U::STORAGE | U::COPY_SRC | U::COPY_DST,
        );
        let normed = gpu.scratch("normed", rows * h, U::STORAGE);
        let merged = gpu.scratch("attention", rows * h, U::STORAGE);
        let qkv = gpu.scratch("qkv", rows * 3 * h, U::STORAGE);
        // Each query's scores, padded to a multiple of 8 keys.
        let cols = seq.next_multiple_of(8);
        let score_rows = batch * first.heads * seq;
        let scores = gpu.scratch("scores", score_rows * cols, U::STORAGE);
        let inner = gpu.scratch("mlp", rows * first.fc1.n, U::STORAGE);
        let staging = gpu.scratch(
            "kept states",
            key.keep.len() * rows * h,
            U::MAP_READ | U::COPY_DST,
        );

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
        let [score_kernel, pv_kernel] = gpu.attention(head_dim);
        let qkv_params = gpu.matmul_params(rows, &first.qkv, 0, false);
        let out_params = gpu.matmul_params(rows, &first.out_proj, 0, true);
        let fc1_params = gpu.matmul_params(rows, &first.fc1, first.activation, false);
        let fc2_params = gpu.matmul_params(rows, &first.fc2, 0, true);

        let norm = |(g, b): &(wgpu::Buffer, wgpu::Buffer), from, to| {
            let buffers = [&norm_params, from, g, b, to];
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
                let groups = [(cols / 8).div_ceil(32), seq.div_ceil(4), batch * heads];
                let buffers = [&attention_params, &qkv, &scores];
                d.push(gpu.bind(&score_kernel, &buffers, groups));
                let groups = [score_rows.div_ceil(32), 1, 1];
                d.push(gpu.bind(&gpu.softmax, &[&softmax_params, &scores], groups));
                let groups = [
                    (seq.div_ceil(8) * head_dim / 4).div_ceil(32),
                    1,
                    batch * heads,
                ];
                let buffers = [&attention_params, &qkv, &scores, &merged];
                d.push(gpu.bind(&pv_kernel, &buffers, groups));
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

    /// Every GPU buffer it owns.
    fn all_buffers(&self) -> impl Iterator<Item = &wgpu::Buffer> {
        self.buffers.iter().chain([&self.state, &self.staging])
    }

    /// Bytes in all its buffers.
    fn size_bytes(&self) -> u64 {
        self.all_buffers().map(wgpu::Buffer::size).sum()
    }

    /// Frees its GPU memory now (the browser's WebGPU frees a dropped buffer only when it is
    /// garbage-collected). Only for a plan no run uses.
    fn destroy(self) {
        self.all_buffers().for_each(wgpu::Buffer::destroy);
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

#[cfg(all(test, not(target_family = "wasm")))]
pub(crate) mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::Distribution;

    /// The kernels on this machine's wgpu adapter (lavapipe in CI), set up once per process:
    /// burn's runtime can be initialised only once.
    pub(crate) fn gpu() -> Arc<Gpu> {
        static GPU: std::sync::OnceLock<Arc<Gpu>> = std::sync::OnceLock::new();
        GPU.get_or_init(|| {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup()
                .expect("a wgpu adapter (lavapipe: mesa-vulkan-drivers)");
            register(&device, &setup);
            for_device(&device).expect("registered")
        })
        .clone()
    }

    /// Two layers run back to back against burn's `EncoderLayer` on flex, pre- and post-norm:
    /// odd row counts (not a multiple of the 16-row blocks or the 32-wide workgroups), widths
    /// not a multiple of the 24-column blocks, matmuls over several workgroups, batches, the
    /// causal mask, every activation the kernels have, both kept states.
    #[test]
    fn gpu_layers_match_burn_layers() {
        let host = Device::flex();
        let gpu = gpu();
        for (activation, causal, batch, seq, hidden, heads) in [
            (Activation::QuickGelu, false, 1, 37, 48, 4),
            (Activation::QuickGelu, true, 3, 9, 48, 4),
            (Activation::GeluTanh, false, 2, 5, 32, 2),
            (Activation::Relu, true, 1, 1, 48, 12),
            (Activation::Silu, false, 1, 70, 64, 1),
            // Widths that end in a partial block of 24 columns (20, 60).
            (Activation::QuickGelu, false, 2, 11, 20, 5),
            // At most 8 rows (the `small` kernel), widths that end in a partial block of 8.
            (Activation::QuickGelu, true, 1, 6, 20, 5),
            (Activation::GeluTanh, false, 2, 4, 36, 3),
            // Q|K|V 816 columns (34 blocks), fc1 552; 300 rows: several workgroups a matmul.
            (Activation::QuickGelu, false, 1, 300, 272, 4),
        ] {
            let spec = LayerSpec {
                hidden,
                heads,
                intermediate: 2 * hidden + 8,
                activation,
                eps: 1e-5,
            };
            assert!(GpuLayer::supports(spec));
            let layers: Vec<EncoderLayer> = (0..2)
                .map(|_| {
                    let mut layer = EncoderLayer::new(spec, &host);
                    // Non-trivial norms: burn initialises gamma to 1 and beta to 0.
                    let uniform = |lo, hi| {
                        Param::from_tensor(Tensor::random(
                            [hidden],
                            Distribution::Uniform(lo, hi),
                            &host,
                        ))
                    };
                    layer.layer_norm1.gamma = uniform(0.5, 1.5);
                    layer.layer_norm2.beta = Some(uniform(-0.5, 0.5));
                    layer
                })
                .collect();
            let x: Tensor<3> =
                Tensor::random([batch, seq, hidden], Distribution::Normal(0.0, 1.0), &host);
            let uploaded: Vec<GpuLayer> = layers
                .iter()
                .map(|l| GpuLayer::new(&gpu, l, spec).unwrap())
                .collect();
            let refs: Vec<&GpuLayer> = uploaded.iter().collect();
            let input = crate::cpu::values(x.clone()).unwrap();
            // The decoder's post-norm layers: not causal.
            let norms = [Norm::Pre { causal }, Norm::Post];
            for norm_at in &norms[..if causal { 1 } else { 2 }] {
                let burn = |layer: &EncoderLayer, x: Tensor<3>| match norm_at {
                    Norm::Pre { causal } => layer.forward_pre_norm(x, *causal),
                    Norm::Post => layer.forward_post_norm(x).unwrap(),
                };
                let first = burn(&layers[0], x.clone());
                let second = burn(&layers[1], first.clone());
                // Asked for out of order: results come in `keep`'s order.
                let got = forward(&gpu, &refs, &input, batch, seq, *norm_at, &[1, 0]);
                let got = block_on(got).unwrap();
                for (state, want) in got.iter().zip([second, first]) {
                    let want = crate::cpu::values(want).unwrap();
                    let diff = state
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max);
                    assert!(
                        diff < 1e-4,
                        "{activation:?} {norm_at:?} [{batch}, {seq}, {hidden}]: max |diff| {diff}"
                    );
                }
            }
        }
    }

    /// A plan is kept per shape and replayed on new inputs: each run gives that input's
    /// states, and a layer keeps at most `MAX_PLANS` of them, none over `MAX_PLAN_BYTES`.
    #[test]
    fn plans_are_kept_per_shape_and_rerun_on_new_inputs() {
        let host = Device::flex();
        let gpu = gpu();
        let spec = LayerSpec {
            hidden: 32,
            heads: 4,
            intermediate: 72,
            activation: Activation::QuickGelu,
            eps: 1e-5,
        };
        let layers: Vec<EncoderLayer> = (0..2).map(|_| EncoderLayer::new(spec, &host)).collect();
        let uploaded: Vec<GpuLayer> = layers
            .iter()
            .map(|l| GpuLayer::new(&gpu, l, spec).unwrap())
            .collect();
        let refs: Vec<&GpuLayer> = uploaded.iter().collect();
        let norm_at = Norm::Pre { causal: true };
        let run = |seq: usize, x: &Tensor<3>| {
            let input = crate::cpu::values(x.clone()).unwrap();
            let got = forward(&gpu, &refs, &input, 1, seq, norm_at, &[1]);
            let got = block_on(got).unwrap().remove(0);
            let want = layers
                .iter()
                .fold(x.clone(), |x, l| l.forward_pre_norm(x, true));
            let want = crate::cpu::values(want).unwrap();
            let diff = (got.iter().zip(&want))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-4, "seq {seq}: max |diff| {diff}");
            got
        };
        let input = |seq| Tensor::random([1, seq, 32], Distribution::Normal(0.0, 1.0), &host);
        let (a, b, c) = (input(5), input(5), input(9));
        let first = run(5, &a);
        run(5, &b);
        run(9, &c);
        assert_eq!(run(5, &a), first, "a replayed plan gives the same states");
        assert_eq!(refs[0].plans.lock().unwrap().len(), 2, "one plan per shape");
        for seq in 10..10 + MAX_PLANS {
            run(seq, &input(seq));
        }
        let seqs = || -> Vec<usize> {
            refs[0]
                .plans
                .lock()
                .unwrap()
                .iter()
                .map(|p| p.key.seq)
                .collect()
        };
        assert_eq!(seqs(), (10..10 + MAX_PLANS).collect::<Vec<_>>());
        // 4 heads' scores alone are 4 * 2100 * 2104 floats (71 MB): run, then not kept.
        run(2100, &input(2100));
        assert_eq!(seqs(), (10..10 + MAX_PLANS).collect::<Vec<_>>());
    }

    #[test]
    fn shapes_the_kernels_lack_are_refused() {
        let spec = |hidden, heads, intermediate, activation| LayerSpec {
            hidden,
            heads,
            intermediate,
            activation,
            eps: 1e-5,
        };
        assert!(GpuLayer::supports(spec(24, 2, 48, Activation::QuickGelu)));
        assert!(!GpuLayer::supports(spec(16, 2, 32, Activation::Gelu)));
        assert!(!GpuLayer::supports(spec(20, 2, 40, Activation::QuickGelu)));
        assert!(!GpuLayer::supports(spec(24, 4, 48, Activation::QuickGelu)));
        assert!(!GpuLayer::supports(spec(24, 2, 42, Activation::QuickGelu)));
        assert!(GpuLayer::supports(spec(24, 2, 44, Activation::QuickGelu)));
        let layer = EncoderLayer::new(spec(16, 2, 32, Activation::Gelu), &Device::flex());
        let err = GpuLayer::new(&gpu(), &layer, spec(16, 2, 32, Activation::Gelu)).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}

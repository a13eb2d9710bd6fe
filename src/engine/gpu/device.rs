//! The kernels on one wgpu device ([`Gpu`]): pipelines, buffers, dispatches and readback.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use super::adapter::Matmul;
use crate::Error;
use crate::config::Activation;
use crate::engine::layer::{Matrix, Quantized, Weight};

/// Rows and vec4 columns one invocation of `matmul.wgsl`'s `main` and `small` computes
/// (`tools/gen_matmul_wgsl.py`).
pub(super) const MATMUL_BLOCK: [usize; 2] = [16, 6];
pub(super) const MATMUL_SMALL_BLOCK: [usize; 2] = [8, 2];

/// Queries x keys one invocation of `scores_wide.wgsl` computes, and queries x vec4 of values
/// one of `pv_wide.wgsl` (`tools/gen_attention_wgsl.py`): the attention kernels of CPU adapters.
const ATTENTION_WIDE: [[usize; 2]; 2] = [[8, 16], [16, 4]];

/// Attention's scores and P·V kernels for one head size, and their grids.
#[derive(Clone)]
pub(super) struct Attention {
    pub(super) scores: wgpu::ComputePipeline,
    pub(super) pv: wgpu::ComputePipeline,
    /// `scores_wide.wgsl` and `pv_wide.wgsl` (CPU adapters), else `scores.wgsl` and `pv.wgsl`.
    wide: bool,
    head_dim: usize,
}

impl Attention {
    /// The scores kernel's grid for `seq` queries, rows of `cols` keys and `heads` (batch x heads).
    pub(super) fn scores_groups(&self, seq: usize, cols: usize, heads: usize) -> [usize; 3] {
        if self.wide {
            let [rows, keys] = ATTENTION_WIDE[0];
            let blocks = seq.div_ceil(rows) * cols.div_ceil(keys);
            [blocks.div_ceil(32), 1, heads]
        } else {
            [(cols / 8).div_ceil(32), seq.div_ceil(4), heads]
        }
    }

    /// The P·V kernel's grid.
    pub(super) fn pv_groups(&self, seq: usize, heads: usize) -> [usize; 3] {
        let [rows, vecs] = if self.wide { ATTENTION_WIDE[1] } else { [8, 1] };
        let blocks = seq.div_ceil(rows) * (self.head_dim / 4).div_ceil(vecs);
        [blocks.div_ceil(32), 1, heads]
    }
}

/// A compiled matmul entry point: the blocked kernel's `main` and `small` (at most 8 rows, a
/// short prompt's text tower, which `main` leaves half empty), or the tiled kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Entry {
    Main,
    /// `main` reading one scale per step along k (8-bit weights, [`Projection::one_scale`]).
    MainOneScale,
    Small,
    Tiled,
}

/// The kernels, built once per device.
pub struct Gpu {
    pub(super) device: wgpu::Device,
    /// The adapter's name and API, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) on Vulkan".
    pub(super) adapter: String,
    pub(super) queue: wgpu::Queue,
    variant: Matmul,
    /// q8 matrices as [`Kind::Q8Dot`] (chosen from the adapter by [`Gpu::request`]).
    int8_dot: bool,
    /// f16 matrices as [`Kind::F16Math`] (chosen by [`Gpu::request`], where the device has `shader-f16`
    /// and the matmul is tiled: the blocked kernel has no half form).
    f16_math: bool,
    /// `matmul*.wgsl` by weight kind and entry point, compiled when first used.
    matmul: Mutex<HashMap<(Kind, Entry), wgpu::ComputePipeline>>,
    pub(super) layer_norm: wgpu::ComputePipeline,
    pub(super) softmax: wgpu::ComputePipeline,
    /// `quantize_rows.wgsl`, compiled when first used.
    quantize_rows: std::sync::OnceLock<wgpu::ComputePipeline>,
    /// The scores and P·V kernels by head_dim, whose quarter is a constant of theirs.
    attention: Mutex<HashMap<usize, Attention>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gpu")
    }
}

impl Gpu {
    /// The kernels on `device`, compiled once, with the
    /// matmul `variant`, q8 matrices on the integer dot product where `int8_dot`, and f16
    /// matrices in half precision where `f16_math` and the device and variant allow it.
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        variant: Matmul,
        int8_dot: bool,
        f16_math: bool,
    ) -> Self {
        let f16_math = f16_math
            && variant == Matmul::Tiled
            && device.features().contains(wgpu::Features::SHADER_F16);
        let layer_norm = pipeline(
            &device,
            "layer_norm",
            include_str!("layer_norm.wgsl"),
            "main",
        );
        let softmax = pipeline(&device, "softmax", include_str!("softmax.wgsl"), "main");
        Self {
            device,
            adapter: String::new(),
            queue,
            variant,
            int8_dot,
            f16_math,
            matmul: Mutex::new(HashMap::new()),
            layer_norm,
            softmax,
            quantize_rows: std::sync::OnceLock::new(),
            attention: Mutex::new(HashMap::new()),
        }
    }

    /// The wgpu device they run on.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The adapter's name and API ("" where not known).
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Its matmul kernels.
    pub fn matmul_variant(&self) -> Matmul {
        self.variant
    }

    /// Whether q8 matrices run on the integer dot product.
    pub fn int8_dot(&self) -> bool {
        self.int8_dot
    }

    /// Whether f16 matrices are multiplied in half precision.
    pub fn f16_math(&self) -> bool {
        self.f16_math
    }

    /// The same device and queue with the other matmul `variant` (the tests run both), q8 on
    /// the integer dot product or not, f16 in half precision or not.
    #[cfg(test)]
    pub fn with(&self, variant: Matmul, int8_dot: bool, f16_math: bool) -> Self {
        let (device, queue) = (self.device.clone(), self.queue.clone());
        let adapter = self.adapter.clone();
        Self {
            adapter,
            ..Self::new(device, queue, variant, int8_dot, f16_math)
        }
    }

    /// The matmul kernel for `kind`'s weights at `entry`.
    fn matmul_kernel(&self, kind: Kind, entry: Entry) -> wgpu::ComputePipeline {
        let mut cache = self.matmul.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry((kind, entry))
            .or_insert_with(|| {
                let source = match (entry, kind) {
                    (Entry::Tiled, Kind::F32) => include_str!("matmul_tiled.wgsl"),
                    (Entry::Tiled, Kind::F16) => include_str!("matmul_tiled_f16.wgsl"),
                    (Entry::Tiled, Kind::Q8) => include_str!("matmul_tiled_q8.wgsl"),
                    (Entry::Tiled, Kind::Q4) => include_str!("matmul_tiled_q4.wgsl"),
                    (Entry::Tiled, Kind::Q8Dot) => include_str!("matmul_tiled_q8dot.wgsl"),
                    (Entry::Tiled, Kind::F16Math) => include_str!("matmul_tiled_f16h.wgsl"),
                    (_, Kind::F32) => include_str!("matmul.wgsl"),
                    // The same words; the blocked kernel decodes them to f32 (grids too tall
                    // for the tiled one).
                    (_, Kind::F16 | Kind::F16Math) => include_str!("matmul_f16.wgsl"),
                    (_, Kind::Q8) => include_str!("matmul_q8.wgsl"),
                    (_, Kind::Q4) => include_str!("matmul_q4.wgsl"),
                    (_, Kind::Q8Dot) => include_str!("matmul_q8dot.wgsl"),
                };
                let name = match entry {
                    Entry::Small => "small",
                    Entry::MainOneScale => "main_one_scale",
                    Entry::Main | Entry::Tiled => "main",
                };
                pipeline(&self.device, "matmul", source, name)
            })
            .clone()
    }

    /// The scores and P·V kernels for `head_dim`: with the blocked matmul (CPU adapters) the
    /// wide ones, which read each value for more products.
    pub(super) fn attention(&self, head_dim: usize) -> Attention {
        let mut cache = self.attention.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(head_dim)
            .or_insert_with(|| {
                let build = |label, source: &str| {
                    let source = source.replace("{HD4}", &(head_dim / 4).to_string());
                    pipeline(&self.device, label, &source, "main")
                };
                let wide = self.variant == Matmul::Blocked;
                let (scores, pv) = if wide {
                    (
                        include_str!("scores_wide.wgsl"),
                        include_str!("pv_wide.wgsl"),
                    )
                } else {
                    (include_str!("scores.wgsl"), include_str!("pv.wgsl"))
                };
                Attention {
                    scores: build("scores", scores),
                    pv: build("pv", pv),
                    wide,
                    head_dim,
                }
            })
            .clone()
    }

    pub(super) fn storage(
        &self,
        label: &str,
        values: &[f32],
        usage: wgpu::BufferUsages,
    ) -> GpuBuffer {
        self.storage_bytes(label, &bytes(values), usage)
    }

    /// A storage buffer holding `contents` (padded to whole words).
    pub(super) fn storage_bytes(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> GpuBuffer {
        let mut contents = std::borrow::Cow::Borrowed(contents);
        if !contents.len().is_multiple_of(4) {
            let padded = contents.len().next_multiple_of(4);
            contents.to_mut().resize(padded, 0);
        }
        GpuBuffer(
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: &contents,
                    usage: wgpu::BufferUsages::STORAGE | usage,
                }),
        )
    }

    pub(super) fn scratch(
        &self,
        label: &str,
        floats: usize,
        usage: wgpu::BufferUsages,
    ) -> GpuBuffer {
        GpuBuffer(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (floats.max(1) * 4) as u64,
            usage,
            mapped_at_creation: false,
        }))
    }

    pub(super) fn uniform(&self, words: &[u32]) -> GpuBuffer {
        let contents: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        GpuBuffer(
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: &contents,
                    usage: wgpu::BufferUsages::UNIFORM,
                }),
        )
    }

    /// A dispatch of `pipeline` with `buffers` at bindings 0, 1, ..., to record into passes.
    pub(super) fn bind(
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
            before: None,
            pipeline: pipeline.clone(),
            group,
            groups: groups.map(|g| g as u32),
            _scratch: Vec::new(),
        }
    }

    /// `out = act(a · w + bias)` (+ `out` when `residual`) for `m` rows.
    pub(super) fn matmul(
        &self,
        params: &wgpu::Buffer,
        a: &wgpu::Buffer,
        p: &Projection,
        out: &wgpu::Buffer,
        m: usize,
    ) -> Dispatch {
        // The tiled grid is 64-row tiles in y, at most 65535 of them (4 M rows; far more
        // than a batch of prompts makes).
        let (entry, groups) = if self.variant == Matmul::Tiled && m.div_ceil(64) <= 65535 {
            (Entry::Tiled, [(p.n / 4).div_ceil(16), m.div_ceil(64), 1])
        } else {
            let small = m <= MATMUL_SMALL_BLOCK[0];
            let ([rows, cols], entry) = if small {
                (MATMUL_SMALL_BLOCK, Entry::Small)
            } else if p.one_scale() {
                (MATMUL_BLOCK, Entry::MainOneScale)
            } else {
                (MATMUL_BLOCK, Entry::Main)
            };
            let blocks = (p.n / 4).div_ceil(cols) * m.div_ceil(rows);
            let groups = blocks.div_ceil(32);
            (entry, [groups.min(65535), groups.div_ceil(65535), 1])
        };
        let kernel = self.matmul_kernel(p.kind, entry);
        match (&p.scales, p.kind) {
            // A quantized first (scratch buffers the bind groups keep alive), then the product.
            (Some(scales), Kind::Q8Dot) => {
                use wgpu::BufferUsages as U;
                let quantized = self.scratch("quantized rows", m * p.k / 4, U::STORAGE);
                let row_scales = self.scratch("row scales", m, U::STORAGE);
                let quantize = self.quantize_rows.get_or_init(|| {
                    pipeline(
                        &self.device,
                        "quantize_rows",
                        include_str!("quantize_rows.wgsl"),
                        "main",
                    )
                });
                let rows = [m.min(65535), m.div_ceil(65535), 1];
                let first = self.bind(
                    quantize,
                    &[params, a, scales, &quantized, &row_scales],
                    rows,
                );
                let buffers = [params, &quantized, &p.w, &p.bias, out, &row_scales];
                let product = self.bind(&kernel, &buffers, groups);
                Dispatch {
                    before: Some(Box::new(first)),
                    _scratch: vec![quantized, row_scales],
                    ..product
                }
            }
            (Some(scales), _) => {
                self.bind(&kernel, &[params, a, &p.w, &p.bias, out, scales], groups)
            }
            (None, _) => self.bind(&kernel, &[params, a, &p.w, &p.bias, out], groups),
        }
    }

    pub(super) fn matmul_params(
        &self,
        m: usize,
        p: &Projection,
        act: u32,
        residual: bool,
    ) -> GpuBuffer {
        let flags = act | if residual { 16 } else { 0 };
        let words = [m as u32, p.n as u32, p.k as u32, flags];
        match p.kind {
            Kind::F32 | Kind::F16 | Kind::F16Math | Kind::Q8Dot => self.uniform(&words),
            Kind::Q8 | Kind::Q4 => self.uniform(&[&words[..], &[p.block as u32, 0, 0, 0]].concat()),
        }
    }

    /// Copies of `buffer`'s first `floats` values, once the queue has run.
    pub(super) async fn read(
        &self,
        buffer: &wgpu::Buffer,
        floats: usize,
    ) -> Result<Vec<f32>, Error> {
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

/// A pipeline with its bind group and grid, recorded into a pass as often as needed (after the
/// dispatch it needs first, if any). Keep it until the work recorded is submitted: it owns
/// the scratch buffers only its bind groups use.
pub(super) struct Dispatch {
    before: Option<Box<Dispatch>>,
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    groups: [u32; 3],
    /// Buffers only the bind groups use, held so (freed with the dispatch).
    _scratch: Vec<GpuBuffer>,
}

impl Dispatch {
    pub(super) fn record(&self, pass: &mut wgpu::ComputePass) {
        if let Some(before) = &self.before {
            before.record(pass);
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// A GPU buffer destroyed when dropped. wgpu's WebGPU backend leaves a dropped buffer to the
/// page's garbage collector, which GPU memory does not prompt: a long visit held hundreds of
/// MB of buffers of engines and runs long gone (tests/e2e/visit.mjs). Work already submitted
/// is safe: WebGPU, and wgpu natively, free a destroyed buffer once that work is done.
#[derive(Debug)]
pub(super) struct GpuBuffer(wgpu::Buffer);

impl std::ops::Deref for GpuBuffer {
    type Target = wgpu::Buffer;

    fn deref(&self) -> &wgpu::Buffer {
        &self.0
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        self.0.destroy();
    }
}

pub(super) fn bytes(values: &[f32]) -> Vec<u8> {
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

/// How a [`Projection`]'s weight is held: f32, or as its pack stores it: f16, or the integers
/// of a quantized pack with their block scales (`matmul_f16.wgsl`, `matmul_q8.wgsl`,
/// `matmul_q4.wgsl` decode them in registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    F32,
    F16,
    /// f16 as stored, multiplied in half precision (`matmul_tiled_f16h.wgsl`, `shader-f16`).
    F16Math,
    Q8,
    Q4,
    /// q8 integers [k / 4, n], four k of a column to a word, multiplied by 8-bit activations
    /// (`matmul_q8dot.wgsl`); `scales` [k] fold into the activations (`quantize_rows.wgsl`).
    Q8Dot,
}

/// A matrix's weight [k, n] and bias [n] on the GPU.
#[derive(Debug)]
pub(super) struct Projection {
    pub(super) w: GpuBuffer,
    pub(super) bias: GpuBuffer,
    /// The block scales of integer weights.
    scales: Option<GpuBuffer>,
    kind: Kind,
    /// Columns per scale (integer weights).
    block: usize,
    pub(super) k: usize,
    pub(super) n: usize,
}

impl Projection {
    /// Uploads `m`: f16 weights as they are; integer weights as they are where the kernels
    /// take their layout (a row of whole words, each vec4 of columns in one block); else f32.
    pub(super) fn new(gpu: &Gpu, m: &Matrix) -> Self {
        let (k, n) = (m.k, m.n);
        let bias = m.bias.clone().unwrap_or_else(|| vec![0.0; n]);
        let bias = gpu.storage("bias", &bias, wgpu::BufferUsages::empty());
        let none = wgpu::BufferUsages::empty();
        let (w, scales, kind, block) = match &m.w {
            Weight::Int(q) if gpu.int8_dot && Self::takes_dot(q) => {
                let w = gpu.storage_bytes("weight", &words_along_k(q), none);
                let scales = gpu.storage_bytes("scales", &bytes(&q.scales), none);
                (w, Some(scales), Kind::Q8Dot, n)
            }
            Weight::Int(q) if Self::takes(q) => {
                let (kind, scales) = if q.bits == 8 {
                    (Kind::Q8, bytes(&q.scales))
                } else {
                    // Scales as the pack stores them: bf16, exact (they were decoded from it).
                    let halves = q.scales.iter().flat_map(|s| {
                        let bits = (s.to_bits() >> 16) as u16;
                        bits.to_le_bytes()
                    });
                    (Kind::Q4, halves.collect())
                };
                let w = gpu.storage_bytes("weight", &q.ints, none);
                let scales = gpu.storage_bytes("scales", &scales, none);
                (w, Some(scales), kind, q.block)
            }
            Weight::F16(h) => {
                let halves: Vec<u8> = h.iter().flat_map(|b| b.to_le_bytes()).collect();
                let kind = if gpu.f16_math {
                    Kind::F16Math
                } else {
                    Kind::F16
                };
                (gpu.storage_bytes("weight", &halves, none), None, kind, 0)
            }
            w => (gpu.storage("weight", &w.to_f32(), none), None, Kind::F32, 0),
        };
        Self {
            w,
            bias,
            scales,
            kind,
            block,
            k,
            n,
        }
    }

    /// 8-bit weights whose blocks of scales span whole blocks of `main`'s columns (one block a
    /// row, or a multiple of its 24 columns): `main_one_scale` reads one scale per step along k.
    fn one_scale(&self) -> bool {
        self.kind == Kind::Q8
            && (self.block >= self.n || self.block.is_multiple_of(4 * MATMUL_BLOCK[1]))
    }

    /// Whether the integer kernels take `q` as stored.
    fn takes(q: &Quantized) -> bool {
        let word = if q.bits == 8 { 4 } else { 8 };
        matches!(q.bits, 4 | 8)
            && q.width.is_multiple_of(word)
            && q.block.is_multiple_of(4)
            && q.block > 0
    }

    /// Whether `matmul_q8dot.wgsl` takes `q`: 8 bits, one scale per row (a q8 pack's), whole
    /// vec4s of k and n.
    fn takes_dot(q: &Quantized) -> bool {
        q.bits == 8
            && q.blocks_per_row() == 1
            && q.rows.is_multiple_of(4)
            && q.width.is_multiple_of(4)
            && q.scales.len() == q.rows
    }

    /// Bytes its buffers hold on the device.
    pub(super) fn bytes(&self) -> u64 {
        let scales = self.scales.as_ref().map_or(0, |s| s.size());
        self.w.size() + self.bias.size() + scales
    }

    /// Whether the weight stayed as its pack stores it (f16 or integers).
    pub(super) fn is_packed(&self) -> bool {
        self.kind != Kind::F32
    }
}

/// The bytes of `q` ([k, n] 8-bit, k a multiple of 4) as `matmul_q8dot.wgsl` reads them: word
/// (kk, c) holds rows 4kk..4kk+4 of column c, row 4kk + i in byte i.
fn words_along_k(q: &Quantized) -> Vec<u8> {
    let (k, n) = (q.rows, q.width);
    let mut out = vec![0u8; k * n];
    for (r, row) in q.ints.chunks_exact(n).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[((r / 4) * n + c) * 4 + r % 4] = v;
        }
    }
    out
}

/// The activation's code in the kernels' epilogue; `None` where they lack it.
pub(super) fn activation_code(activation: Activation) -> Option<u32> {
    match activation {
        Activation::QuickGelu => Some(1),
        Activation::GeluTanh => Some(2),
        Activation::Relu => Some(3),
        Activation::Silu => Some(4),
        Activation::Gelu => None,
    }
}

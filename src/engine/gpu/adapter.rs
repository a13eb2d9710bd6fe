//! The GPU the kernels run on and the kernel variants it gets: an adapter asked of wgpu
//! (WebGPU in the browser; natively Vulkan, Metal, DX12 or GL), a device of its own with what
//! the kernels use, and the matmul, integer and half-precision choices made from what the
//! adapter is. Nothing of burn's: its GPU runtime is not in the browser's build.

use std::sync::Arc;

use super::Gpu;
use crate::Error;

/// Which matmul kernels a [`Gpu`] runs, chosen once from its adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Matmul {
    /// `matmul*.wgsl`: register-blocked, no workgroup memory, no barriers: for CPU
    /// implementations of WebGPU (SwiftShader, lavapipe), where barriers are coroutine
    /// switches.
    Blocked,
    /// `matmul_tiled*.wgsl`: 64 x 64 tiles staged in workgroup memory, 16 outputs per
    /// invocation: for real GPUs, whose registers would not hold the blocked kernel's 384.
    Tiled,
}

impl Matmul {
    /// `Blocked` for a CPU adapter (by its device type, or by name where the browser does not
    /// say: SwiftShader, llvmpipe / lavapipe), `Tiled` otherwise; natively
    /// `CLIPSEG_GPU_MATMUL=blocked|tiled` overrides the choice.
    fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        #[cfg(not(target_family = "wasm"))]
        match std::env::var("CLIPSEG_GPU_MATMUL").as_deref() {
            Ok("blocked") => return Matmul::Blocked,
            Ok("tiled") => return Matmul::Tiled,
            _ => {}
        }
        match software_adapter(info) {
            Some(_) => Matmul::Blocked,
            None => Matmul::Tiled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Matmul::Blocked => "blocked",
            Matmul::Tiled => "tiled",
        }
    }
}

/// Which CPU implementation of WebGPU / Vulkan `info` is, if it is one: by its device type, or
/// by name where the browser does not say ("llvmpipe", "lavapipe" or "swiftshader"; "" for a
/// CPU adapter the browser names not: SwiftShader, the only one browsers have).
fn software_adapter(info: &wgpu::AdapterInfo) -> Option<&'static str> {
    let names = format!("{} {} {}", info.name, info.driver, info.driver_info).to_lowercase();
    let known = ["llvmpipe", "lavapipe", "swiftshader"];
    let named = known.into_iter().find(|s| names.contains(s));
    named.or((info.device_type == wgpu::DeviceType::Cpu).then_some(""))
}

/// A kernel choice that tests and pages may force: set by a call, natively also by an
/// environment variable (`VAR=on|off` with its own words for on and off).
struct Override {
    /// 0 none, 1 off, 2 on.
    set: std::sync::atomic::AtomicU8,
    var: &'static str,
    words: [&'static str; 2],
}

impl Override {
    const fn new(var: &'static str, on: &'static str) -> Self {
        let set = std::sync::atomic::AtomicU8::new(0);
        Self {
            set,
            var,
            words: [on, "off"],
        }
    }

    fn store(&self, choice: Option<bool>) {
        let code = choice.map_or(0, |on| 1 + u8::from(on));
        self.set.store(code, std::sync::atomic::Ordering::Relaxed);
    }

    /// The forced choice, if any: the call's, else the environment's.
    fn forced(&self) -> Option<bool> {
        match self.set.load(std::sync::atomic::Ordering::Relaxed) {
            1 => return Some(false),
            2 => return Some(true),
            _ => {}
        }
        // (No environment in the browser: there this finds nothing.)
        if let Ok(word) = std::env::var(self.var) {
            return self.words.iter().position(|w| *w == word).map(|i| i == 0);
        }
        None
    }
}

static INT8_DOT: Override = Override::new("CLIPSEG_GPU_INT8", "dot4");
static F16_MATH: Override = Override::new("CLIPSEG_GPU_F16", "half");

/// Overrides whether q8 matrices run on `dot4I8Packed` (`int8_dot_for`) for the GPUs set up
/// from now on (`None`: the adapter decides).
pub fn override_int8_dot(choice: Option<bool>) {
    INT8_DOT.store(choice);
}

/// Whether a q8 pack's matrices run on `matmul_q8dot.wgsl` (integer products of activations
/// quantized to 8 bits, `dot4I8Packed`) rather than decoded to f32 in registers: wherever
/// WGSL has `packed_4x8_integer_dot_product`, except on CPU adapters other than lavapipe
/// (where the emulated instruction was measured slower than decoding: docs/benchmarks.md,
/// run U), unless [`override_int8_dot`] or, natively, `CLIPSEG_GPU_INT8=dot4|off` says
/// otherwise.
fn int8_dot_for(features: wgpu::WgslLanguageFeatures, info: &wgpu::AdapterInfo) -> bool {
    if !features.contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct) {
        return false;
    }
    INT8_DOT
        .forced()
        .unwrap_or_else(|| matches!(software_adapter(info), None | Some("llvmpipe" | "lavapipe")))
}

/// Overrides whether f16 matrices are multiplied in half precision (`f16_math_for`) for the
/// GPUs set up from now on (`None`: the adapter decides).
pub fn override_f16_math(choice: Option<bool>) {
    F16_MATH.store(choice);
}

/// Whether an f16 pack's matrices are multiplied in half precision (`matmul_tiled_f16h.wgsl`,
/// on devices with `shader-f16`) rather than decoded to f32 in registers: with the tiled
/// matmul (real GPUs, whose f16 arithmetic is packed two to a lane; a CPU adapter emulates
/// it), unless [`override_f16_math`] or, natively, `CLIPSEG_GPU_F16=half|off` says otherwise.
fn f16_math_for(variant: Matmul) -> bool {
    F16_MATH.forced().unwrap_or(variant == Matmul::Tiled)
}

impl Gpu {
    /// The kernels on a new device of the best adapter wgpu finds (in the browser, the one
    /// WebGPU offers; natively a real GPU before a CPU implementation, Vulkan first), with
    /// `shader-f16` where it has it and all of its limits (weights need large buffers).
    pub async fn request() -> Result<Arc<Gpu>, Error> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = adapter(&instance).await?;
        let required_features = adapter.features() & wgpu::Features::SHADER_F16;
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("clipseg"),
            required_features,
            required_limits: adapter.limits(),
            // Weights are a few large buffers made once: no pooling ahead of use.
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            ..Default::default()
        };
        let (device, queue) = (adapter.request_device(&descriptor).await)
            .map_err(|e| Error::Input(format!("the GPU refused a device: {e}")))?;
        Ok(Arc::new(Self::for_adapter(
            &instance, &adapter, device, queue,
        )))
    }

    /// The kernels on `device` of `adapter`, each variant chosen from what the adapter is
    /// ([`Matmul::for_adapter`], [`int8_dot_for`], [`f16_math_for`]).
    fn for_adapter(
        instance: &wgpu::Instance,
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Self {
        let info = adapter.get_info();
        let variant = Matmul::for_adapter(&info);
        let int8_dot = int8_dot_for(instance.wgsl_language_features(), &info);
        let mut gpu = Self::new(device, queue, variant, int8_dot, f16_math_for(variant));
        gpu.adapter = format!("{} on {:?}", info.name, info.backend);
        gpu
    }
}

/// The browser's WebGPU adapter (asked for high performance).
#[cfg(target_family = "wasm")]
async fn adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter, Error> {
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    (instance.request_adapter(&options).await)
        .map_err(|e| Error::Input(format!("no GPU adapter: {e}")))
}

/// Of the adapters wgpu lists, a discrete GPU before an integrated, a virtual or any other,
/// and those before a CPU implementation (lavapipe, llvmpipe); Vulkan before the other APIs.
#[cfg(not(target_family = "wasm"))]
async fn adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter, Error> {
    use wgpu::{Backend, DeviceType};
    let kinds = [
        DeviceType::DiscreteGpu,
        DeviceType::IntegratedGpu,
        DeviceType::VirtualGpu,
        DeviceType::Other,
        DeviceType::Cpu,
    ];
    let apis = [Backend::Vulkan, Backend::Metal, Backend::Dx12, Backend::Gl];
    let rank = |a: &wgpu::Adapter| {
        let info = a.get_info();
        let kind = kinds.iter().position(|k| *k == info.device_type);
        let api = apis.iter().position(|b| *b == info.backend);
        (kind.unwrap_or(kinds.len()), api.unwrap_or(apis.len()))
    };
    let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    adapters.into_iter().min_by_key(rank).ok_or_else(|| {
        Error::Input("no GPU adapter (no Vulkan, Metal, DX12 or GL driver found)".into())
    })
}

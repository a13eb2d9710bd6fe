//! The browser engine: a thin wasm-bindgen shell over [`Segmenter`] and [`Maps`], run inside
//! a Web Worker (`pkg/worker.js`). It hands the page finished masks, label maps and
//! probabilities at the image's size (the page only draws them). Every GPU readback is
//! awaited, never blocked on; every error reaches JavaScript as a rejected promise with a
//! one-line message.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use wasm_bindgen::prelude::*;

use crate::compose::Compose;
use crate::engine::{Gpu, Kernels, Precision};
use crate::example::{Region, from_marks};
use crate::model::ImageFeatures;
use crate::postprocess::Maps;
use crate::preprocess::rgba_to_rgb;
use crate::segmenter::{MAX_PIXELS, MAX_PROMPTS, MAX_SIDE, Prompt, Segmenter, check_image_size};
use crate::weights::pack::{Pack, Source};

/// The page's pack, read a tensor at a time: it stays in JS memory instead of being copied
/// whole into wasm memory, which never shrinks.
struct JsSource(js_sys::Uint8Array);

// SAFETY: this wasm build has no threads; the array never leaves the worker's one thread.
unsafe impl Send for JsSource {}
unsafe impl Sync for JsSource {}

impl Source for JsSource {
    fn size(&self) -> u64 {
        u64::from(self.0.length())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), crate::Error> {
        let start = u32::try_from(offset).ok();
        let end = start.and_then(|s| s.checked_add(u32::try_from(out.len()).ok()?));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.0.length() => {
                self.0.subarray(start, end).copy_to(out);
                Ok(())
            }
            _ => Err(crate::Error::Weights(
                "model pack: read past its end".into(),
            )),
        }
    }
}

thread_local! {
    /// The kernels on the WebGPU device, set up once per wasm instance: a second pack loaded
    /// into the same worker reuses the device and its compiled pipelines.
    static WEBGPU: RefCell<Option<Arc<Gpu>>> = const { RefCell::new(None) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
    /// Why the browser took the WebGPU device away, once it has.
    static DEVICE_LOST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Test hook (the worker calls it only for a client made with `testHooks`): "panic" panics as a
/// bug would, "lose-device" destroys the WebGPU device as a driver reset or a GPU process crash
/// would (the loss callback reports it as any other loss).
#[wasm_bindgen]
pub fn test_fault(fault: &str) -> Result<(), JsError> {
    match fault {
        "panic" => panic!("test_fault(\"panic\"): a panic injected by a test"),
        "lose-device" => match WEBGPU.with(|w| w.borrow().clone()) {
            Some(gpu) => {
                gpu.device().destroy();
                Ok(())
            }
            None => Err(js_error(
                "no WebGPU device to lose: load a pack on WebGPU first",
            )),
        },
        other => Err(js_error(format!(
            "unknown fault {other:?}: use \"panic\" or \"lose-device\""
        ))),
    }
}

/// A Rust panic aborts the wasm instance; its message is kept for the worker to report.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
    }));
}

/// The message of the last Rust panic ("" if none). After a panic this instance is unusable
/// and the worker must be restarted.
#[wasm_bindgen]
pub fn last_panic() -> String {
    LAST_PANIC.with(|p| p.borrow().clone())
}

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Why the WebGPU device was lost ("" while it is fine). burn's runtime can't be re-created in
/// this instance, so after a loss the worker must be restarted.
#[wasm_bindgen]
pub fn device_lost() -> String {
    DEVICE_LOST.with(|l| l.borrow().clone()).unwrap_or_default()
}

/// After a device loss nothing on it can run again: say so instead of failing obscurely.
fn check_device() -> Result<(), JsError> {
    match device_lost().as_str() {
        "" => Ok(()),
        why => Err(js_error(format!("the WebGPU device was lost ({why})"))),
    }
}

/// How a q8 pack's matrices will run on WebGPU (the device is set up at the first WebGPU
/// load; later calls change nothing): "auto" (the engine's choice), "dot4" (on the integer
/// dot product, `dot4I8Packed`, where the browser's WGSL has it) or "off" (decoded to f32 in
/// the kernels).
#[wasm_bindgen]
pub fn gpu_int8(mode: &str) -> Result<(), JsError> {
    let choice = match mode {
        "auto" => None,
        "dot4" => Some(true),
        "off" => Some(false),
        other => {
            return Err(js_error(format!(
                "unknown GPU int8 mode {other:?}: use \"auto\", \"dot4\" or \"off\""
            )));
        }
    };
    crate::engine::gpu::override_int8_dot(choice);
    Ok(())
}

/// The engine's input limits, `{max_side, max_pixels, max_prompts}`: the page checks an image
/// against them before extracting its pixels.
#[wasm_bindgen]
pub fn limits() -> Result<JsValue, JsError> {
    let limits = js_sys::Object::new();
    for (key, value) in [
        ("max_side", MAX_SIDE),
        ("max_pixels", MAX_PIXELS),
        ("max_prompts", MAX_PROMPTS),
    ] {
        js_sys::Reflect::set(&limits, &key.into(), &(value as f64).into())
            .map_err(|_| js_error("setting a limit"))?;
    }
    Ok(limits.into())
}

#[global_allocator]
static ALLOCATOR: crate::counting_alloc::Counting = crate::counting_alloc::Counting;

/// Bytes of the wasm heap in use (allocated, not freed): the worker's stats request.
#[wasm_bindgen]
pub fn heap_in_use() -> f64 {
    crate::counting_alloc::live() as f64
}

/// `pixels` (`width * height` bytes: a mask; four times that: RGBA, a cut-out) as an 8-bit
/// PNG, by the encoder the CLI writes its masks with: the same pixels, the same file.
#[wasm_bindgen]
pub fn encode_png(pixels: Vec<u8>, width: usize, height: usize) -> Result<Vec<u8>, JsError> {
    crate::compose::encode_png(width, height, &pixels).map_err(js_error)
}

/// The last encoded image: its activations and size.
#[derive(Clone)]
struct Image {
    features: ImageFeatures,
    width: usize,
    height: usize,
}

/// Most example images an engine keeps encoded at once.
const MAX_EXAMPLES: usize = 64;

/// One loaded model on one device, the last encoded image, the last segmentation's maps and
/// the example images (image prompts) encoded so far, by id.
#[wasm_bindgen]
pub struct Engine {
    segmenter: Rc<Segmenter>,
    image: Rc<RefCell<Option<Image>>>,
    maps: Rc<RefCell<Option<Maps>>>,
    examples: Rc<RefCell<Vec<(u32, Tensor<2>)>>>,
    next_example: std::cell::Cell<u32>,
    backend: String,
}

/// An encoded example image: its id for [`Engine::segment`], and what the model saw of a
/// marked region (the paper's visual prompt engineering: RGBA, `side` x `side`; empty for a
/// whole image, which the model sees as it is).
#[wasm_bindgen]
pub struct Example {
    id: u32,
    view: Vec<u8>,
    side: usize,
}

#[wasm_bindgen]
impl Example {
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> u32 {
        self.id
    }

    #[wasm_bindgen(getter)]
    pub fn side(&self) -> usize {
        self.side
    }

    /// The RGBA view (moved out: a second call gives an empty array).
    #[wasm_bindgen(js_name = takeView)]
    pub fn take_view(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.view)
    }
}

#[wasm_bindgen]
impl Engine {
    /// Parses and verifies a pack and loads it onto `backend` ("webgpu" or "cpu"). `verified`:
    /// the bytes were checked against a published sha256 (the worker's pack cache): the data
    /// section's own checksum, a second pass over every byte, is skipped.
    pub async fn load(
        pack: js_sys::Uint8Array,
        backend: String,
        verified: bool,
    ) -> Result<Engine, JsError> {
        // On WebGPU the layers run on the WGSL kernels, what lies between them on flex.
        let kernels = match backend.as_str() {
            "webgpu" => Kernels::Gpu(webgpu().await?),
            "cpu" => Kernels::Packed(None),
            other => {
                return Err(js_error(format!(
                    "unknown backend {other:?}: use \"webgpu\" or \"cpu\""
                )));
            }
        };
        let source = Arc::new(JsSource(pack));
        let read = if verified {
            Pack::read_verified(source)
        } else {
            Pack::read(source)
        };
        let segmenter = read
            .and_then(|pack| Segmenter::from_read_pack(pack, &Device::flex(), kernels))
            .map_err(js_error)?;
        Ok(Engine {
            segmenter: Rc::new(segmenter),
            image: Rc::default(),
            maps: Rc::default(),
            examples: Rc::default(),
            next_example: Default::default(),
            backend,
        })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Bytes the weights hold in GPU memory (undefined on the CPU).
    #[wasm_bindgen(getter, js_name = gpuWeightBytes)]
    pub fn gpu_weight_bytes(&self) -> Option<f64> {
        self.segmenter.engine.gpu_weight_bytes().map(|b| b as f64)
    }

    /// Whether the towers' matrices stayed as the pack stores them (f16, 8 or 4 bits) on the
    /// GPU.
    #[wasm_bindgen(getter, js_name = packedWeights)]
    pub fn packed_weights(&self) -> bool {
        self.segmenter.engine.placement().packed_weights
    }

    /// Whether a q8 pack's matrices run on the GPU's integer dot product (undefined on the CPU).
    #[wasm_bindgen(getter, js_name = gpuInt8Dot)]
    pub fn gpu_int8_dot(&self) -> Option<bool> {
        self.segmenter.engine.gpu().map(Gpu::int8_dot)
    }

    /// Whether an f16 pack's matrices are multiplied in half precision on the GPU (`shader-f16`
    /// with the tiled matmul; undefined on the CPU).
    #[wasm_bindgen(getter, js_name = gpuF16Math)]
    pub fn gpu_f16_math(&self) -> Option<bool> {
        self.segmenter.engine.gpu().map(Gpu::f16_math)
    }

    /// The CPU's int8 kernel where the encoder projections run in int8 (a q8 or q4 pack on the
    /// CPU), e.g. "relaxed-simd int8 x 7-bit 4x8"; undefined otherwise.
    #[wasm_bindgen(getter, js_name = int8Kernel)]
    pub fn int8_kernel(&self) -> Option<String> {
        let precision = self.segmenter.engine.placement().precision;
        precision.and_then(Precision::int8_kernel).map(String::from)
    }

    /// Runs the vision tower on an RGBA image (canvas `getImageData` layout) and keeps its
    /// activations on the device for any number of `segment` calls. Resolves once the device
    /// has finished, so the time it takes is the real cost.
    pub async fn encode_image(
        &self,
        rgba: Vec<u8>,
        width: usize,
        height: usize,
    ) -> Result<(), JsError> {
        check_image_size(width, height).map_err(js_error)?;
        check_device()?;
        let rgb = rgba_to_rgb(rgba, width, height).map_err(js_error)?;
        // A failed encode must not leave the previous image's activations looking current.
        self.image.borrow_mut().take();
        self.maps.borrow_mut().take();
        let features = self
            .segmenter
            .encode_image(&rgb, width, height)
            .await
            .map_err(js_error)?;
        let done = features.probe();
        self.image.replace(Some(Image {
            features,
            width,
            height,
        }));
        done.into_data_async()
            .await
            .map_err(|e| js_error(format!("{e:?}")))?;
        Ok(())
    }

    /// Encodes an example image (an image prompt, RGBA) through the whole vision tower; with
    /// `region` ([x, y, width, height] in pixels) only that region, with `marks` (one byte per
    /// pixel, nonzero where marked: a brush) only that part, as the CLI's `--visual-prompt
    /// REF@X,Y,W,H` and `REF@MASK.png` do. The embedding stays here under the returned id until
    /// [`Self::drop_example`].
    pub async fn encode_example(
        &self,
        rgba: Vec<u8>,
        width: usize,
        height: usize,
        region: Option<Vec<usize>>,
        marks: Option<Vec<u8>>,
    ) -> Result<Example, JsError> {
        check_image_size(width, height).map_err(js_error)?;
        check_device()?;
        if self.examples.borrow().len() >= MAX_EXAMPLES {
            return Err(js_error(format!(
                "{MAX_EXAMPLES} example images are kept already: drop one first"
            )));
        }
        let rgb = rgba_to_rgb(rgba, width, height).map_err(js_error)?;
        let marks = match (region.as_deref(), marks) {
            (None, None) => None,
            (Some(&[x, y, w, h]), None) => {
                let region = Region {
                    x,
                    y,
                    width: w,
                    height: h,
                };
                Some(region.mask(width, height).map_err(js_error)?)
            }
            (Some(other), None) => {
                return Err(js_error(format!(
                    "a region is [x, y, width, height], got {} numbers",
                    other.len()
                )));
            }
            (None, Some(marks)) => Some(marks),
            (Some(_), Some(_)) => return Err(js_error("give a region or marks, not both")),
        };
        let (rgb, width, height, view, side) = match marks {
            None => (rgb, width, height, Vec::new(), 0),
            Some(marks) => {
                let preprocess = &self.segmenter.preprocess;
                let (rgb, side) =
                    from_marks(&rgb, width, height, &marks, preprocess).map_err(js_error)?;
                let view = rgb
                    .chunks(3)
                    .flat_map(|p| [p[0], p[1], p[2], 255])
                    .collect();
                (rgb, side, side, view, side)
            }
        };
        let embedding = (self.segmenter)
            .encode_example(&rgb, width, height)
            .await
            .map_err(js_error)?;
        embedding
            .clone()
            .into_data_async()
            .await
            .map_err(|e| js_error(format!("{e:?}")))?;
        let id = self.next_example.get();
        self.next_example.set(id + 1);
        self.examples.borrow_mut().push((id, embedding));
        Ok(Example { id, view, side })
    }

    /// Forgets example `id` (unknown ids are ignored).
    pub fn drop_example(&self, id: u32) {
        self.examples.borrow_mut().retain(|(k, _)| *k != id);
    }

    /// Segments the encoded image with `prompts`, each a text or an example's id (a number,
    /// from [`Self::encode_example`]), keeps the maps for [`Self::labels`], [`Self::mask`],
    /// [`Self::probabilities`] and [`Self::probabilities_at`] (a refused or failed call keeps
    /// the previous ones), and returns the label map at `threshold`. An empty prompt is
    /// refused: CLIPSeg would answer it, but never with anything meant.
    pub async fn segment(&self, prompts: Vec<JsValue>, threshold: f32) -> Result<Vec<u8>, JsError> {
        let threshold = check_threshold(threshold)?;
        check_device()?;
        enum Given {
            Text(String),
            /// An index into `examples`.
            Example(usize),
        }
        // Tensor handles: no borrow is held across the awaits below.
        let examples = self.examples.borrow().clone();
        let mut given = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            given.push(match (p.as_string(), p.as_f64()) {
                (Some(text), _) if text.trim().is_empty() => {
                    return Err(js_error(format!("prompt {} is empty", i + 1)));
                }
                (Some(text), _) => Given::Text(text),
                (None, Some(id)) => {
                    let found = examples.iter().position(|(k, _)| f64::from(*k) == id);
                    let Some(at) = found else {
                        return Err(js_error(format!(
                            "prompt {}: no example {id} in this engine (encode it again)",
                            i + 1
                        )));
                    };
                    Given::Example(at)
                }
                (None, None) => {
                    return Err(js_error(format!(
                        "prompt {} is neither a text nor an example's id",
                        i + 1
                    )));
                }
            });
        }
        let prompts: Vec<Prompt> = (given.iter())
            .map(|g| match g {
                Given::Text(t) => Prompt::Text(t),
                Given::Example(at) => Prompt::Example(&examples[*at].1),
            })
            .collect();
        // A clone (tensor handles): no borrow is held across the awaits below.
        let Some(image) = self.image.borrow().clone() else {
            return Err(js_error("no image encoded yet: call encode_image first"));
        };
        let maps = self
            .segmenter
            .segment_with(&image.features, &prompts)
            .await
            .map_err(js_error)?;
        let labels = maps.labels(image.width, image.height, threshold);
        self.maps.replace(Some(maps));
        Ok(labels)
    }

    /// The last segmentation's logits, [prompts, size, size] as the CLI's `--logits` writes
    /// them (tests and benchmarks compare them with the CLI's).
    pub fn logits(&self) -> Result<Vec<f32>, JsError> {
        self.with_maps(|maps, _, _| Ok(maps.logits().to_vec()))
    }

    /// Side of the model's logit maps (352 for CLIPSeg).
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> usize {
        self.segmenter.preprocess.height
    }

    /// Width of the encoded image, the size of everything below.
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.image.borrow().as_ref().map_or(0, |i| i.width)
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.image.borrow().as_ref().map_or(0, |i| i.height)
    }

    /// Per pixel the index of the prompt whose mask holds it with the highest logit, 255 where
    /// none does ([`Maps::labels`]): the page's overlay. Re-thresholding never re-runs the
    /// model.
    pub fn labels(&self, threshold: f32) -> Result<Vec<u8>, JsError> {
        let threshold = check_threshold(threshold)?;
        self.with_maps(|maps, w, h| Ok(maps.labels(w, h, threshold)))
    }

    /// Prompt `index`'s mask, 255 inside and 0 outside, as the CLI writes it.
    pub fn mask(&self, index: usize, threshold: f32) -> Result<Vec<u8>, JsError> {
        let threshold = check_threshold(threshold)?;
        self.with_maps(|maps, w, h| Ok(maps.mask(check_index(maps, index)?, w, h, threshold)))
    }

    /// Prompt `index`'s probabilities scaled to 0..=255: the heat map.
    pub fn probabilities(&self, index: usize) -> Result<Vec<u8>, JsError> {
        self.with_maps(|maps, w, h| Ok(maps.probabilities(check_index(maps, index)?, w, h)))
    }

    /// A mask made from the last segmentation's maps as the CLI's `--union`, `--subtract`,
    /// `--dilate` / `--erode`, `--feather` and `--soft` make it ([`Compose`]): the maps
    /// `include` joined, those of `subtract` removed, grown by `grow` px (shrunk where
    /// negative), edges feathered over `feather` px, or probabilities as grey (`soft`); as
    /// the CLI's PNG file where `png`.
    #[allow(clippy::too_many_arguments)]
    pub fn compose(
        &self,
        include: Vec<u32>,
        subtract: Vec<u32>,
        grow: i32,
        feather: u32,
        soft: bool,
        threshold: f32,
        png: bool,
    ) -> Result<Vec<u8>, JsError> {
        let threshold = check_threshold(threshold)?;
        let index = |v: Vec<u32>| v.into_iter().map(|k| k as usize).collect();
        let compose = Compose {
            include: index(include),
            subtract: index(subtract),
            grow,
            feather,
            soft,
        };
        self.with_maps(|maps, w, h| {
            let mask = compose.mask(maps, w, h, threshold).map_err(js_error)?;
            match png {
                true => crate::compose::encode_png(w, h, &mask).map_err(js_error),
                false => Ok(mask),
            }
        })
    }

    /// Every prompt's probability at pixel (`x`, `y`); empty outside the image.
    pub fn probabilities_at(&self, x: usize, y: usize) -> Result<Vec<f32>, JsError> {
        self.with_maps(|maps, w, h| Ok(maps.probabilities_at(w, h, x, y)))
    }

    fn with_maps<T>(
        &self,
        f: impl FnOnce(&Maps, usize, usize) -> Result<T, JsError>,
    ) -> Result<T, JsError> {
        let (image, maps) = (self.image.borrow(), self.maps.borrow());
        match (image.as_ref(), maps.as_ref()) {
            (Some(image), Some(maps)) => f(maps, image.width, image.height),
            _ => Err(js_error("nothing segmented yet: call segment first")),
        }
    }
}

fn check_threshold(threshold: f32) -> Result<f32, JsError> {
    if (0.0..=1.0).contains(&threshold) {
        Ok(threshold)
    } else {
        Err(js_error(format!(
            "the threshold must be within 0..=1, got {threshold}"
        )))
    }
}

fn check_index(maps: &Maps, index: usize) -> Result<usize, JsError> {
    if index < maps.count() {
        Ok(index)
    } else {
        Err(js_error(format!(
            "there is no prompt {index} (of {})",
            maps.count()
        )))
    }
}

/// The kernels on the browser's WebGPU, set up once per instance. (wgpu can't name a browser's
/// adapter; the worker asks WebGPU itself.)
async fn webgpu() -> Result<Arc<Gpu>, JsError> {
    if let Some(gpu) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(gpu);
    }
    let gpu = Gpu::request()
        .await
        .map_err(|e| js_error(format!("WebGPU: {e}")))?;
    gpu.device().set_device_lost_callback(|reason, message| {
        let why = format!("{reason:?}: {message}");
        DEVICE_LOST.with(|l| *l.borrow_mut() = Some(why.clone()));
        // The worker restarts at once (a request waiting on the GPU might never settle).
        let hook = js_sys::Reflect::get(&js_sys::global(), &"clipsegDeviceLost".into());
        if let Ok(hook) = hook.and_then(|h| h.dyn_into::<js_sys::Function>()) {
            let _ = hook.call1(&JsValue::NULL, &why.into());
        }
    });
    WEBGPU.with(|w| *w.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

//! One object that owns model, tokenizer and preprocessing: image + prompts in, logits out.
//! The CLI and the wasm API are thin shells over it.

use std::sync::Arc;

use burn::store::SafetensorsStore;
use burn::tensor::{Device, Tensor, TensorData};

use crate::cpu::Precision;
use crate::model::{ClipSeg, ImageFeatures};
use crate::preprocess::{self, PreprocessConfig};
use crate::tokenizer::ClipTokenizer;
use crate::weights::hf;
#[cfg(feature = "native")]
use crate::weights::pack::FileSource;
use crate::weights::pack::{Pack, Source};
use crate::{ClipSegConfig, Error};

/// Largest image side accepted, in pixels (browsers' canvas limit is of this order).
pub const MAX_SIDE: usize = 16384;
/// Largest image accepted, in pixels: 50 MP of RGBA is 200 MB before any model work.
pub const MAX_PIXELS: usize = 50_000_000;
/// Most prompts per call: each costs a text-encoder and decoder pass and a 352x352 map.
pub const MAX_PROMPTS: usize = 32;

/// Model, tokenizer and preprocessing of one checkpoint on one device.
pub struct Segmenter {
    pub model: ClipSeg,
    pub tokenizer: ClipTokenizer,
    pub preprocess: PreprocessConfig,
    /// The towers' matrices came 8-bit (or coarser) from a q8/q4 pack: packing for the CPU
    /// then runs them in int8 unless told otherwise.
    pub quantized: bool,
    /// What the encoder projections run in once packed for the CPU ([`Load::Inference`],
    /// [`Self::pack_for_cpu`]); `None` while they run on burn's ops.
    pub cpu_precision: Option<Precision>,
}

/// How a model is made ready while it loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// As stored: burn's ops, every weight kept (`convert`, `train`).
    AsStored,
    /// Packed for the CPU path on flex, or for [`crate::gpu`] on a wgpu device registered
    /// there (elsewhere as stored), a pack's encoder layers one at a time as they load, so the
    /// peak memory is near the packed model's. The precision is the CPU path's (`None`: int8
    /// for a q8/q4 pack, f32 otherwise); the GPU path runs f32.
    Inference(Option<Precision>),
}

impl Segmenter {
    /// Builds from the contents of an HF folder's files. `safetensors` is the whole
    /// `model.safetensors`; `preprocessor_config` defaults to CLIPSeg's when absent.
    pub fn from_hf_bytes(
        config_json: &str,
        safetensors: Vec<u8>,
        tokenizer_json: &[u8],
        preprocessor_config: Option<&str>,
        device: &Device,
    ) -> Result<Self, Error> {
        let tokenizer = ClipTokenizer::from_bytes(tokenizer_json)?;
        let (mut model, preprocess) = Self::parts(config_json, preprocessor_config, device)?;
        let header = hf::read_header(&safetensors, safetensors.len() as u64)?;
        hf::check_header(&model, &header)?;
        hf::apply(&mut model, SafetensorsStore::from_bytes(Some(safetensors)))?;
        Ok(Self {
            model,
            tokenizer,
            preprocess,
            quantized: false,
            cpu_precision: None,
        })
    }

    /// Builds from a model pack (see [`crate::weights::pack`]): everything in one file.
    pub fn from_pack(bytes: Vec<u8>, device: &Device) -> Result<Self, Error> {
        Self::from_source(Arc::new(bytes), device, Load::AsStored)
    }

    /// [`Self::from_pack`] ready for inference ([`Load::Inference`]).
    pub fn from_pack_for_inference(bytes: Vec<u8>, device: &Device) -> Result<Self, Error> {
        Self::from_source(Arc::new(bytes), device, Load::Inference(None))
    }

    /// A pack read in ranges from `source` (a file, the page's buffer), so it is never copied
    /// whole.
    pub fn from_source(
        source: Arc<dyn Source>,
        device: &Device,
        load: Load,
    ) -> Result<Self, Error> {
        let pack = Pack::read(source)?;
        let header = &pack.header;
        let tokenizer = ClipTokenizer::from_bytes(header.tokenizer.as_bytes())?;
        let config =
            serde_json::to_string(&header.config).map_err(|e| Error::Config(e.to_string()))?;
        let (mut model, preprocess) = Self::parts(&config, Some(&header.preprocessor), device)?;
        let quantized = pack.is_quantized();
        let mut cpu_precision = None;
        match load {
            Load::Inference(precision) if *device == Device::flex() => {
                let precision = Self::resolve(precision, quantized);
                pack.apply_packed_for_cpu(&mut model, precision)?;
                cpu_precision = model.is_packed_for_cpu().then_some(precision);
            }
            Load::Inference(_) => match crate::gpu::for_device(device) {
                Some(gpu) => pack.apply_packed_for_gpu(&mut model, &gpu)?,
                None => pack.apply(&mut model)?,
            },
            Load::AsStored => pack.apply(&mut model)?,
        }
        let mut segmenter = Self {
            model,
            tokenizer,
            preprocess,
            quantized,
            cpu_precision,
        };
        if let Load::Inference(_) = load {
            segmenter.keep_positions();
        }
        Ok(segmenter)
    }

    /// The vision tower's position embeddings resampled once for the preprocessor's size
    /// (inference only: the weights are final then).
    fn keep_positions(&mut self) {
        let grid = self.preprocess.height / self.config().vision_config.patch_size;
        self.model.clip.vision_model.keep_positions_for(grid);
    }

    /// A pack file or an HF model folder.
    #[cfg(feature = "native")]
    pub fn open(path: &std::path::Path, device: &Device) -> Result<Self, Error> {
        Self::open_with(path, device, Load::AsStored)
    }

    /// [`Self::open`] ready for inference ([`Load::Inference`]; an HF folder loads whole, then
    /// is packed).
    #[cfg(feature = "native")]
    pub fn open_with(path: &std::path::Path, device: &Device, load: Load) -> Result<Self, Error> {
        if path.is_file() {
            let source = Arc::new(FileSource::open(path)?);
            return Self::from_source(source, device, load)
                .map_err(|e| Error::Weights(format!("{}: {e}", path.display())));
        }
        let mut segmenter = Self::from_hf_dir(path, device)?;
        if let Load::Inference(precision) = load {
            segmenter.pack_for_cpu(precision)?;
            segmenter.model.pack_for_gpu()?;
            segmenter.keep_positions();
        }
        Ok(segmenter)
    }

    /// Loads an HF model folder: `config.json`, `model.safetensors` (or `pytorch_model.bin`),
    /// `tokenizer.json` (or `vocab.json` + `merges.txt`), optional `preprocessor_config.json`.
    #[cfg(feature = "native")]
    pub fn from_hf_dir(dir: &std::path::Path, device: &Device) -> Result<Self, Error> {
        use std::io::Read;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })
        };
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "{}: no such model folder",
                dir.display()
            )));
        }
        let config = String::from_utf8(read("config.json")?)
            .map_err(|_| Error::Config("config.json is not UTF-8".into()))?;
        let preprocessor = match read("preprocessor_config.json") {
            Ok(bytes) => Some(
                String::from_utf8(bytes)
                    .map_err(|_| Error::Config("preprocessor_config.json is not UTF-8".into()))?,
            ),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let tokenizer = if dir.join("tokenizer.json").exists() || !dir.join("vocab.json").exists() {
            ClipTokenizer::from_bytes(&read("tokenizer.json")?)?
        } else {
            let merges = String::from_utf8(read("merges.txt")?)
                .map_err(|_| Error::Tokenizer("merges.txt is not UTF-8".into()))?;
            ClipTokenizer::from_vocab_merges(&read("vocab.json")?, &merges)?
        };
        let (mut model, preprocess) = Self::parts(&config, preprocessor.as_deref(), device)?;

        let safetensors = dir.join("model.safetensors");
        let pytorch = dir.join("pytorch_model.bin");
        if !safetensors.exists() && pytorch.exists() {
            hf::load_pytorch(&mut model, &pytorch)?;
            return Ok(Self {
                model,
                tokenizer,
                preprocess,
                quantized: false,
                cpu_precision: None,
            });
        }
        let path = safetensors;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut prefix = [0u8; 8];
        file.read_exact(&mut prefix).map_err(|_| {
            Error::Weights(format!(
                "{}: file of {file_len} bytes is too short to be safetensors",
                path.display()
            ))
        })?;
        let header_len = u64::from_le_bytes(prefix).min(file_len);
        let mut head = prefix.to_vec();
        file.take(header_len).read_to_end(&mut head).map_err(io)?;
        hf::check_header(&model, &hf::read_header(&head, file_len)?)?;
        hf::apply(&mut model, SafetensorsStore::from_file(&path))?;
        Ok(Self {
            model,
            tokenizer,
            preprocess,
            quantized: false,
            cpu_precision: None,
        })
    }

    fn parts(
        config_json: &str,
        preprocessor_config: Option<&str>,
        device: &Device,
    ) -> Result<(ClipSeg, PreprocessConfig), Error> {
        let config = ClipSegConfig::from_json(config_json)?;
        let preprocess = match preprocessor_config {
            Some(text) => PreprocessConfig::from_json(text)?,
            None => PreprocessConfig::clipseg_default(),
        };
        let (h, w) = (preprocess.height, preprocess.width);
        let patch = config.vision_config.patch_size;
        if h != w || h % patch != 0 {
            return Err(Error::Config(format!(
                "preprocessor size {h}x{w} must be square and a multiple of the patch size {patch}"
            )));
        }
        Ok((ClipSeg::new(&config, device)?, preprocess))
    }

    /// For inference on flex: see [`ClipSeg::pack_for_cpu`] (~2x faster; `precision` as in
    /// [`Load::Inference`]). The segmenter can then no longer be converted to a pack.
    pub fn pack_for_cpu(&mut self, precision: Option<Precision>) -> Result<(), Error> {
        let precision = Self::resolve(precision, self.quantized);
        self.model.pack_for_cpu(precision)?;
        self.cpu_precision = self.model.is_packed_for_cpu().then_some(precision);
        Ok(())
    }

    fn resolve(precision: Option<Precision>, quantized: bool) -> Precision {
        precision.unwrap_or(if quantized {
            Precision::Int8Bf16
        } else {
            Precision::F32
        })
    }

    pub fn config(&self) -> &ClipSegConfig {
        &self.model.config
    }

    /// Interleaved RGB8 pixels to the model input [1, 3, S, S], as the HF processor makes it.
    pub fn pixel_values(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Tensor<4>, Error> {
        let values = preprocess::pixel_values(&self.preprocess, rgb, width, height)?;
        let (w, h) = self.preprocess.output_size(width, height);
        Ok(Tensor::from_data(
            TensorData::new(values, [1, 3, h, w]),
            &self.device(),
        ))
    }

    /// Runs the vision tower once; the result serves any number of prompts.
    pub fn encode_image(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<ImageFeatures, Error> {
        crate::gpu::block_on(self.encode_image_async(rgb, width, height))
    }

    /// [`Self::encode_image`], awaiting the GPU where layers run on [`crate::gpu`] (the
    /// browser: the sync version refuses to wait there).
    pub async fn encode_image_async(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<ImageFeatures, Error> {
        check_image_size(width, height)?;
        let pixels = self.pixel_values(rgb, width, height)?;
        self.model.encode_image_async(pixels).await
    }

    /// Token ids per prompt, truncated to the text model's length.
    pub fn tokenize<S: AsRef<str>>(&self, prompts: &[S]) -> Result<Vec<Vec<u32>>, Error> {
        let max_len = self.config().text_config.max_position_embeddings;
        if prompts.len() > MAX_PROMPTS {
            return Err(Error::Input(format!(
                "{} prompts at once; the limit is {MAX_PROMPTS} per call",
                prompts.len()
            )));
        }
        prompts
            .iter()
            .map(|p| self.tokenizer.encode(p.as_ref(), max_len))
            .collect()
    }

    /// Logits [prompts, S, S] (sigmoid gives probabilities) for an encoded image.
    pub fn segment<S: AsRef<str>>(
        &self,
        image: &ImageFeatures,
        prompts: &[S],
    ) -> Result<Tensor<3>, Error> {
        crate::gpu::block_on(self.segment_async(image, prompts))
    }

    /// [`Self::segment`], awaiting the GPU where layers run on [`crate::gpu`].
    pub async fn segment_async<S: AsRef<str>>(
        &self,
        image: &ImageFeatures,
        prompts: &[S],
    ) -> Result<Tensor<3>, Error> {
        if prompts.is_empty() {
            return Err(Error::Input("give at least one prompt".into()));
        }
        let ids = self.tokenize(prompts)?;
        let conditional = self.model.encode_text_async(&ids).await?;
        self.model.decode_async(image, conditional).await
    }

    fn device(&self) -> Device {
        self.model.clip.text_projection.weight.device()
    }
}

/// Rejects images no one means to segment (0 px) or that would exhaust memory.
pub fn check_image_size(width: usize, height: usize) -> Result<(), Error> {
    if width == 0 || height == 0 {
        return Err(Error::Image(format!(
            "the image is {width}x{height} px; both sides must be at least 1"
        )));
    }
    if width > MAX_SIDE || height > MAX_SIDE || width.saturating_mul(height) > MAX_PIXELS {
        return Err(Error::Image(format!(
            "the image is {width}x{height} px; the limit is {MAX_SIDE} px per side and {} megapixels",
            MAX_PIXELS / 1_000_000
        )));
    }
    Ok(())
}

/// A logit's probability.
pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// Reads a tensor back as f32 values. Synchronous: native only (in wasm every readback is async).
#[cfg(feature = "native")]
pub fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, Error> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Input(format!("reading a tensor back: {e:?}")))
}

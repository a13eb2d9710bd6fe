//! A checkpoint's parts behind one call: image and prompts in, logits out. [`Checkpoint`] is
//! a model as stored (trainable, convertible, burn's ops); [`Segmenter`] is one ready for
//! inference on the engine. The CLI and the wasm API are thin shells over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::store::SafetensorsStore;
use burn::tensor::{Device, Tensor, TensorData};

use crate::engine::{Engine, Kernels, read_values};
use crate::model::{ClipSeg, ImageFeatures};
use crate::postprocess::Maps;
use crate::preprocess::{self, PreprocessConfig};
use crate::tokenizer::ClipTokenizer;
use crate::weights::hf;
use crate::weights::pack::{Pack, Source};
use crate::{ClipSegConfig, Error};

/// Largest image side accepted, in pixels (browsers' canvas limit is of this order).
pub const MAX_SIDE: usize = 16384;
/// Largest image accepted, in pixels: 50 MP of RGBA is 200 MB before any model work.
pub const MAX_PIXELS: usize = 50_000_000;
/// Most prompts per call: each costs a text-encoder and decoder pass and a 352x352 map.
pub const MAX_PROMPTS: usize = 32;

/// A checkpoint as stored: the model on burn's ops with every weight (what training,
/// `convert` and the parity reference use), its tokenizer and preprocessing.
#[derive(Clone)]
pub struct Checkpoint {
    pub model: ClipSeg,
    pub tokenizer: ClipTokenizer,
    pub preprocess: PreprocessConfig,
    /// The towers' matrices came 8-bit (or coarser) from a q8/q4 pack: the CPU kernels then
    /// run them in int8 unless told otherwise.
    pub quantized: bool,
}

impl Checkpoint {
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
        let header = hf::read_header(&safetensors, safetensors.len() as u64)?;
        let backed = (hf::values(&header), "model.safetensors".to_string());
        let (mut model, preprocess) =
            parts(config_json, preprocessor_config, device, &header, backed)?;
        hf::check_header(&model, &header)?;
        hf::apply(&mut model, SafetensorsStore::from_bytes(Some(safetensors)))?;
        Ok(Self {
            model,
            tokenizer,
            preprocess,
            quantized: false,
        })
    }

    /// From a model pack (see [`crate::weights::pack`]), every weight decoded to f32.
    pub fn from_pack(bytes: Vec<u8>, device: &Device) -> Result<Self, Error> {
        Self::from_source(Arc::new(bytes), device)
    }

    /// A pack read in ranges from `source` (a file, the page's buffer).
    pub fn from_source(source: Arc<dyn Source>, device: &Device) -> Result<Self, Error> {
        let pack = Pack::read(source)?;
        let (tokenizer, preprocess) = pack_inputs(&pack)?;
        let mut model = ClipSeg::for_checkpoint(&pack.header.config, |n| pack.has(n), device)?;
        pack.apply(&mut model, "", |_| false)?;
        pack.check_all_used()?;
        Ok(Self {
            model,
            tokenizer,
            preprocess,
            quantized: pack.is_quantized(),
        })
    }

    pub fn config(&self) -> &ClipSegConfig {
        &self.model.config
    }

    /// Token ids per prompt, truncated to the text model's length.
    pub fn tokenize<S: AsRef<str>>(&self, prompts: &[S]) -> Result<Vec<Vec<u32>>, Error> {
        tokenize(&self.tokenizer, self.config(), prompts)
    }

    /// Interleaved RGB8 pixels to the model input [1, 3, S, S], as the HF processor makes it.
    pub fn pixel_values(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Tensor<4>, Error> {
        let device = self.model.clip.text_projection.weight.device();
        pixel_values(&self.preprocess, rgb, width, height, &device)
    }
}

/// A checkpoint ready for inference on one device: its weights on the engine.
pub struct Segmenter {
    pub engine: Engine,
    pub tokenizer: ClipTokenizer,
    pub preprocess: PreprocessConfig,
    /// See [`Checkpoint::quantized`].
    pub quantized: bool,
    device: Device,
}

impl Segmenter {
    /// `checkpoint`'s model on the engine (its weights read where the kernels need them,
    /// synchronously: native, or flex in wasm).
    pub fn new(checkpoint: Checkpoint, kernels: Kernels) -> Result<Self, Error> {
        let Checkpoint {
            model,
            tokenizer,
            preprocess,
            quantized,
        } = checkpoint;
        let device = model.clip.text_projection.weight.device();
        Ok(Self {
            engine: Engine::from_model(model, kernels, quantized)?,
            tokenizer,
            preprocess,
            quantized,
            device,
        })
    }

    /// A pack read in ranges from `source` (a file, the page's buffer), so it is never copied
    /// whole; each part of the model is read as the engine takes it.
    pub fn from_source(
        source: Arc<dyn Source>,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Self, Error> {
        Self::from_read_pack(Pack::read(source)?, device, kernels)
    }

    /// From a pack already read (see [`Pack::read`] and [`Pack::read_verified`]).
    pub fn from_read_pack(pack: Pack, device: &Device, kernels: Kernels) -> Result<Self, Error> {
        let (tokenizer, preprocess) = pack_inputs(&pack)?;
        Ok(Self {
            engine: Engine::from_pack(&pack, device, kernels)?,
            tokenizer,
            preprocess,
            quantized: pack.is_quantized(),
            device: device.clone(),
        })
    }

    /// [`Self::from_source`] on a pack in memory.
    pub fn from_pack(bytes: Vec<u8>, device: &Device, kernels: Kernels) -> Result<Self, Error> {
        Self::from_source(Arc::new(bytes), device, kernels)
    }

    pub fn config(&self) -> &ClipSegConfig {
        self.engine.config()
    }

    /// Token ids per prompt, truncated to the text model's length.
    pub fn tokenize<S: AsRef<str>>(&self, prompts: &[S]) -> Result<Vec<Vec<u32>>, Error> {
        tokenize(&self.tokenizer, self.config(), prompts)
    }

    /// Runs the vision tower once; the result serves any number of prompts.
    pub async fn encode_image(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<ImageFeatures, Error> {
        check_image_size(width, height)?;
        let pixels = pixel_values(&self.preprocess, rgb, width, height, &self.device)?;
        self.engine.encode_image(pixels).await
    }

    /// An example image (an image prompt) to its conditional embedding [1, projection_dim]:
    /// the whole vision tower once, reusable with any image to segment.
    pub async fn encode_example(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Tensor<2>, Error> {
        check_image_size(width, height)?;
        let pixels = pixel_values(&self.preprocess, rgb, width, height, &self.device)?;
        self.engine.encode_examples(pixels).await
    }

    /// The logit maps [prompts, S, S] (read back to the host) for an encoded image.
    pub async fn segment<S: AsRef<str>>(
        &self,
        image: &ImageFeatures,
        prompts: &[S],
    ) -> Result<Maps, Error> {
        let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::Text(p.as_ref())).collect();
        self.segment_with(image, &prompts).await
    }

    /// The logit maps [prompts, S, S] for an encoded image and prompts of either kind, in
    /// their order (the text prompts encoded in one batch).
    pub async fn segment_with(
        &self,
        image: &ImageFeatures,
        prompts: &[Prompt<'_>],
    ) -> Result<Maps, Error> {
        if prompts.is_empty() {
            return Err(Error::Input("give at least one prompt".into()));
        }
        if prompts.len() > MAX_PROMPTS {
            return Err(too_many(prompts.len()));
        }
        let texts: Vec<&str> = (prompts.iter())
            .filter_map(|p| match p {
                Prompt::Text(t) => Some(*t),
                Prompt::Example(_) => None,
            })
            .collect();
        let mut text_rows = match texts.is_empty() {
            true => Vec::new(),
            false => {
                let all = self.engine.encode_text(&self.tokenize(&texts)?).await?;
                (0..texts.len())
                    .map(|i| all.clone().narrow(0, i, 1))
                    .collect()
            }
        }
        .into_iter();
        let rows = prompts.iter().filter_map(|p| match p {
            Prompt::Example(e) => Some((*e).clone()),
            Prompt::Text(_) => text_rows.next(),
        });
        let conditional = Tensor::cat(rows.collect(), 0);
        let logits = self.engine.decode(image, conditional).await?;
        let [count, side, _] = logits.dims();
        Maps::new(read_values(logits).await?, count, side)
    }
}

/// One prompt: a text, or an example image's conditional embedding [1, projection_dim]
/// ([`Segmenter::encode_example`]).
#[derive(Clone, Copy)]
pub enum Prompt<'a> {
    Text(&'a str),
    Example(&'a Tensor<2>),
}

fn too_many(count: usize) -> Error {
    Error::Input(format!(
        "{count} prompts at once; the limit is {MAX_PROMPTS} per call"
    ))
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

fn tokenize<S: AsRef<str>>(
    tokenizer: &ClipTokenizer,
    config: &ClipSegConfig,
    prompts: &[S],
) -> Result<Vec<Vec<u32>>, Error> {
    let max_len = config.text_config.max_position_embeddings;
    if prompts.len() > MAX_PROMPTS {
        return Err(too_many(prompts.len()));
    }
    prompts
        .iter()
        .map(|p| tokenizer.encode(p.as_ref(), max_len))
        .collect()
}

fn pixel_values(
    preprocess: &PreprocessConfig,
    rgb: &[u8],
    width: usize,
    height: usize,
    device: &Device,
) -> Result<Tensor<4>, Error> {
    let values = preprocess::pixel_values(preprocess, rgb, width, height)?;
    let (w, h) = preprocess.output_size(width, height);
    Ok(Tensor::from_data(
        TensorData::new(values, [1, 3, h, w]),
        device,
    ))
}

fn pack_inputs(pack: &Pack) -> Result<(ClipTokenizer, PreprocessConfig), Error> {
    let header = &pack.header;
    let tokenizer = ClipTokenizer::from_bytes(header.tokenizer.as_bytes())?;
    Ok((
        tokenizer,
        preprocess_config(Some(&header.preprocessor), &header.config)?,
    ))
}

/// The model `config_json` describes, once checked against the weights' file (`backed`: the
/// values it holds and its name; `header`: its tensors), and the preprocessor config.
fn parts(
    config_json: &str,
    preprocessor_config: Option<&str>,
    device: &Device,
    header: &BTreeMap<String, (String, Vec<usize>)>,
    backed: (u128, String),
) -> Result<(ClipSeg, PreprocessConfig), Error> {
    let config = ClipSegConfig::from_json(config_json)?;
    config.check_backed(backed.0, &backed.1)?;
    let preprocess = preprocess_config(preprocessor_config, &config)?;
    let model = ClipSeg::for_checkpoint(&config, |n| header.contains_key(n), device)?;
    Ok((model, preprocess))
}

/// The preprocessor config (CLIPSeg's when absent), checked against the model's patches.
fn preprocess_config(
    text: Option<&str>,
    config: &ClipSegConfig,
) -> Result<PreprocessConfig, Error> {
    let preprocess = match text {
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
    Ok(preprocess)
}

/// Opening checkpoints from files and writing packs: native only.
#[cfg(feature = "native")]
mod files {

    use burn::store::SafetensorsStore;
    use burn::tensor::Device;

    use super::{Checkpoint, Segmenter, parts};
    use crate::Error;
    use crate::engine::Kernels;
    use crate::tokenizer::ClipTokenizer;
    use crate::weights::hf;
    use crate::weights::pack::{self, Quant};

    impl Checkpoint {
        /// A pack file or an HF model folder.
        pub fn open(path: &std::path::Path, device: &Device) -> Result<Self, Error> {
            if path.is_file() {
                return Self::from_source(pack::open_file(path)?, device)
                    .map_err(|e| Error::Weights(format!("{}: {e}", path.display())));
            }
            Self::from_hf_dir(path, device)
        }

        /// Loads an HF model folder: `config.json`, `model.safetensors` (or `pytorch_model.bin`),
        /// `tokenizer.json` (or `vocab.json` + `merges.txt`), optional `preprocessor_config.json`.
        pub fn from_hf_dir(dir: &std::path::Path, device: &Device) -> Result<Self, Error> {
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
                Ok(bytes) => {
                    Some(String::from_utf8(bytes).map_err(|_| {
                        Error::Config("preprocessor_config.json is not UTF-8".into())
                    })?)
                }
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    None
                }
                Err(e) => return Err(e),
            };
            let tokenizer =
                if dir.join("tokenizer.json").exists() || !dir.join("vocab.json").exists() {
                    ClipTokenizer::from_bytes(&read("tokenizer.json")?)?
                } else {
                    let merges = String::from_utf8(read("merges.txt")?)
                        .map_err(|_| Error::Tokenizer("merges.txt is not UTF-8".into()))?;
                    ClipTokenizer::from_vocab_merges(&read("vocab.json")?, &merges)?
                };
            // The weights' header first: the config is checked against it before any part of
            // the model is built.
            let safetensors = dir.join("model.safetensors");
            let pytorch = dir.join("pytorch_model.bin");
            let from_pytorch = !safetensors.exists() && pytorch.exists();
            let header = if from_pytorch {
                hf::pytorch_header(&pytorch)?
            } else {
                safetensors_header(&safetensors)?
            };
            let file = if from_pytorch { &pytorch } else { &safetensors };
            let backed = (hf::values(&header), file.display().to_string());
            let (mut model, preprocess) =
                parts(&config, preprocessor.as_deref(), device, &header, backed)?;
            hf::check_header(&model, &header)?;
            let checkpoint = |model| Self {
                model,
                tokenizer,
                preprocess,
                quantized: false,
            };
            if from_pytorch {
                hf::load_pytorch(&mut model, &pytorch)?;
                return Ok(checkpoint(model));
            }
            hf::apply(&mut model, SafetensorsStore::from_file(&safetensors))?;
            Ok(checkpoint(model))
        }

        /// This checkpoint as a pack (see [`crate::weights::pack`]).
        pub fn to_pack(&self, quant: Quant) -> Result<Vec<u8>, Error> {
            pack::write(&self.model, &self.tokenizer, &self.preprocess, quant)
        }
    }

    /// The header of the safetensors file at `path`, read without the tensors.
    fn safetensors_header(
        path: &std::path::Path,
    ) -> Result<std::collections::BTreeMap<String, (String, Vec<usize>)>, Error> {
        use std::io::Read;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
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
        hf::read_header(&head, file_len)
    }

    impl Segmenter {
        /// A pack file (read a part at a time) or an HF model folder (loaded whole first).
        pub fn open(
            path: &std::path::Path,
            device: &Device,
            kernels: Kernels,
        ) -> Result<Self, Error> {
            if path.is_file() {
                return Self::from_source(pack::open_file(path)?, device, kernels)
                    .map_err(|e| Error::Weights(format!("{}: {e}", path.display())));
            }
            Self::new(Checkpoint::from_hf_dir(path, device)?, kernels)
        }
    }
}

//! Model packs: one file with everything a browser needs (config, tokenizer, preprocessing,
//! weights), optionally quantized, written by `clipseg convert` and read natively and in wasm.
//!
//! Layout: `CLIPSEGP` magic, format version (u32 LE), header length (u64 LE), the header as
//! deflated JSON ([`Header`]; the tokenizer in it shrinks 3x), then the data section. Weights are stored under burn's own parameter
//! paths and layouts, so loading needs no name map. The header records the data section's
//! sha256, checked on every load: a truncated or corrupted download fails with a message, not
//! with wrong masks.
//!
//! Quantization is weight-only and symmetric (CLIP's matrices are zero-centred): the matrices
//! of both towers become 8- or 4-bit integers with one scale per block. The decoder (1% of the
//! weights, but the part whose errors show most in the mask), position embeddings (added to
//! every token), norms and biases are stored as f16. [`Pack::apply`] dequantizes every weight to
//! f32 as it loads (the float model every backend runs, WebGPU included);
//! [`Pack::apply_packed_for_cpu`] hands the encoder layers to the CPU path one at a time, where
//! a quantized pack runs in int8, and keeps the q8 token table 8-bit. The pack is what the
//! browser downloads and caches; it is read in ranges ([`Source`]), never held whole.

use std::sync::Arc;

use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::{DType, Shape, TensorData, bf16};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::model::ClipSeg;

const MAGIC: &[u8; 8] = b"CLIPSEGP";
/// Bumped whenever a reader of the previous format would misread a new pack.
pub const FORMAT_VERSION: u32 = 1;
/// Values per scale in 4-bit blocks: 4 bits need small blocks to keep outliers from flattening
/// their neighbours; 8 bits are fine with one scale per row.
#[cfg(feature = "native")]
const Q4_BLOCK: usize = 32;
/// Bytes hashed per read while checking a pack.
const CHECKSUM_CHUNK: usize = 4 << 20;
/// Largest inflated header accepted: a real one is ~2 MB; this bounds a hostile file.
const MAX_HEADER: usize = 64 << 20;

/// How weights are stored in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    F32,
    F16,
    Q8,
    Q4,
}

impl std::str::FromStr for Quant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "f32" => Ok(Quant::F32),
            "f16" => Ok(Quant::F16),
            "q8" => Ok(Quant::Q8),
            "q4" => Ok(Quant::Q4),
            _ => Err(Error::Input(format!(
                "unknown quantization {s:?}: use f32, f16, q8 or q4"
            ))),
        }
    }
}

impl Quant {
    pub fn name(self) -> &'static str {
        match self {
            Quant::F32 => "f32",
            Quant::F16 => "f16",
            Quant::Q8 => "q8",
            Quant::Q4 => "q4",
        }
    }
}

/// Everything but the weights' bytes.
#[derive(Serialize, Deserialize)]
pub struct Header {
    pub producer: String,
    pub quant: String,
    pub config: crate::ClipSegConfig,
    /// `preprocessor_config.json` text.
    pub preprocessor: String,
    /// `tokenizer.json` text.
    pub tokenizer: String,
    pub data_len: u64,
    pub data_sha256: String,
    pub tensors: Vec<Entry>,
}

/// One parameter: its burn path and shape, and where and how its bytes are stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub shape: Vec<usize>,
    #[serde(flatten)]
    pub storage: Storage,
    pub offset: u64,
    pub len: u64,
}

/// Byte encodings of one tensor. Quantized ones view the tensor as rows of
/// `numel / shape[0]` values, cut each row into blocks of `block` values (the last one may be
/// shorter) and store every block's scale (q8: f32; q4: bf16, whose 8-bit mantissa is far finer
/// than 4-bit steps and whose range can't underflow), then the integers (4-bit ones two to a
/// byte, low nibble first, offset by 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "dtype", rename_all = "lowercase")]
pub enum Storage {
    F32,
    F16,
    Q8 { block: usize },
    Q4 { block: usize },
}

impl Storage {
    /// The storage `quant` gives to parameter `name` of `shape`.
    #[cfg(feature = "native")]
    fn choose(quant: Quant, name: &str, shape: &[usize]) -> Self {
        let matrix = shape.len() >= 2
            && name.starts_with("clip.")
            && name.ends_with(".weight")
            && !name.contains("position_embedding");
        let row = shape.iter().product::<usize>() / shape.first().copied().unwrap_or(1).max(1);
        match quant {
            Quant::F32 => Storage::F32,
            Quant::F16 => Storage::F16,
            Quant::Q8 if matrix => Storage::Q8 { block: row },
            Quant::Q4 if matrix => Storage::Q4 {
                block: Q4_BLOCK.min(row),
            },
            Quant::Q8 | Quant::Q4 => Storage::F16,
        }
    }

    /// Bits per value, values per scale, bytes per scale.
    fn bits(self) -> Option<(u32, usize, usize)> {
        match self {
            Storage::Q8 { block } => Some((8, block, 4)),
            Storage::Q4 { block } => Some((4, block, 2)),
            _ => None,
        }
    }

    /// Stored bytes of a tensor of this shape.
    fn byte_len(self, shape: &[usize]) -> Option<usize> {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        match self {
            Storage::F32 => numel.checked_mul(4),
            Storage::F16 => numel.checked_mul(2),
            Storage::Q8 { .. } | Storage::Q4 { .. } => {
                let (_, block, scale_bytes) = self.bits()?;
                let rows = shape.first().copied().unwrap_or(1).max(1);
                let row = numel / rows;
                if block == 0 || (row == 0 && numel > 0) {
                    return None;
                }
                let scales = rows
                    .checked_mul(row.div_ceil(block))?
                    .checked_mul(scale_bytes)?;
                let values = if matches!(self, Storage::Q8 { .. }) {
                    numel
                } else {
                    numel.div_ceil(2)
                };
                scales.checked_add(values)
            }
        }
    }

    #[cfg(feature = "native")]
    fn encode(self, values: &[f32], shape: &[usize], out: &mut Vec<u8>) {
        match self {
            Storage::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
            Storage::F16 => out.extend(
                values
                    .iter()
                    .flat_map(|&v| burn::tensor::f16::from_f32(v).to_le_bytes()),
            ),
            Storage::Q8 { .. } | Storage::Q4 { .. } => {
                let (bits, block, _) = self.bits().unwrap_or((8, 1, 4));
                let qmax = ((1i32 << (bits - 1)) - 1) as f32;
                let row = values.len() / shape.first().copied().unwrap_or(1).max(1);
                let mut ints = Vec::with_capacity(values.len());
                for row_values in values.chunks(row.max(1)) {
                    for chunk in row_values.chunks(block) {
                        let peak = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                        // Quantize against the scale as stored, so decoding inverts it exactly.
                        let scale = if bits == 8 {
                            out.extend((peak / qmax).to_le_bytes());
                            peak / qmax
                        } else {
                            let stored = bf16::from_f32(peak / qmax);
                            out.extend(stored.to_le_bytes());
                            stored.to_f32()
                        };
                        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                        ints.extend(
                            chunk
                                .iter()
                                .map(|v| (v * inv).round().clamp(-qmax, qmax) as i8),
                        );
                    }
                }
                if bits == 8 {
                    out.extend(ints.iter().map(|&q| q as u8));
                } else {
                    out.extend(ints.chunks(2).map(|pair| {
                        let nibble = |q: i8| (q + 8) as u8;
                        nibble(pair[0]) | (pair.get(1).map_or(0, |&q| nibble(q)) << 4)
                    }));
                }
            }
        }
    }

    /// A quantized tensor's bytes as its block scales (row by row) and its packed integers.
    fn split_quantized<'a>(self, bytes: &'a [u8], shape: &[usize]) -> (Vec<f32>, &'a [u8]) {
        let (_, block, scale_bytes) = self.bits().unwrap_or((8, 1, 4));
        let numel: usize = shape.iter().product();
        let rows = shape.first().copied().unwrap_or(1).max(1);
        let blocks = rows * (numel / rows).div_ceil(block);
        let (scales, ints) = bytes.split_at(blocks * scale_bytes);
        let scales = scales
            .chunks_exact(scale_bytes)
            .map(|s| {
                if scale_bytes == 4 {
                    f32::from_le_bytes([s[0], s[1], s[2], s[3]])
                } else {
                    bf16::from_le_bytes([s[0], s[1]]).to_f32()
                }
            })
            .collect();
        (scales, ints)
    }

    /// Inverse of [`Self::encode`]; `bytes` has exactly [`Self::byte_len`] bytes.
    fn decode(self, bytes: &[u8], shape: &[usize]) -> Vec<f32> {
        match self {
            Storage::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Storage::F16 => bytes
                .chunks_exact(2)
                .map(|b| burn::tensor::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Storage::Q8 { .. } | Storage::Q4 { .. } => {
                let (bits, block, _) = self.bits().unwrap_or((8, 1, 4));
                let numel: usize = shape.iter().product();
                let rows = shape.first().copied().unwrap_or(1).max(1);
                let row = numel / rows;
                let blocks_per_row = row.div_ceil(block);
                let (scales, ints) = self.split_quantized(bytes, shape);
                let int = |i: usize| -> f32 {
                    (((ints[i / 2] >> (4 * (i % 2))) & 0xf) as i32 - 8) as f32
                };
                // Block by block (a per-value index split made this 16% of loading a pack).
                let mut out = Vec::with_capacity(numel);
                for r in 0..rows {
                    for b in 0..blocks_per_row {
                        let s = scales[r * blocks_per_row + b];
                        let start = r * row + b * block;
                        let end = (start + block).min((r + 1) * row);
                        if bits == 8 {
                            out.extend(ints[start..end].iter().map(|&q| q as i8 as f32 * s));
                        } else {
                            out.extend((start..end).map(|i| int(i) * s));
                        }
                    }
                }
                out
            }
        }
    }
}

/// Writes `model` with `config`, tokenizer and preprocessing as one pack. Native: reads every
/// parameter back synchronously.
#[cfg(feature = "native")]
pub fn write(segmenter: &crate::Segmenter, quant: Quant) -> Result<Vec<u8>, Error> {
    if segmenter.model.is_packed_for_cpu() || segmenter.model.is_packed_for_gpu() {
        return Err(Error::Weights(
            "this model was packed for inference and no longer holds its projection weights; load it again to convert it".into(),
        ));
    }
    let mut data = Vec::new();
    let mut tensors = Vec::new();
    for tensor in segmenter.model.collect(None, None, false) {
        let name = tensor.name.clone();
        let shape = tensor.shape.to_vec();
        let values = bridge::into_data(tensor)
            .and_then(|d| {
                d.convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| burn::store::burn_pack::Error::ValidationError(format!("{e:?}")))
            })
            .map_err(|e| Error::Weights(format!("reading {name}: {e}")))?;
        let storage = Storage::choose(quant, &name, &shape);
        let offset = data.len() as u64;
        storage.encode(&values, &shape, &mut data);
        tensors.push(Entry {
            name,
            shape,
            storage,
            offset,
            len: data.len() as u64 - offset,
        });
    }
    let header = Header {
        producer: format!("clipseg {}", env!("CARGO_PKG_VERSION")),
        quant: quant.name().into(),
        config: segmenter.config().clone(),
        preprocessor: segmenter.preprocess.to_json(),
        tokenizer: segmenter.tokenizer.to_json()?,
        data_len: data.len() as u64,
        data_sha256: hex(&Sha256::digest(&data)),
        tensors,
    };
    let header = serde_json::to_vec(&header).map_err(|e| Error::Weights(e.to_string()))?;
    let header = miniz_oxide::deflate::compress_to_vec(&header, 9);
    let mut out = Vec::with_capacity(20 + header.len() + data.len());
    out.extend(MAGIC);
    out.extend(FORMAT_VERSION.to_le_bytes());
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    out.extend(data);
    Ok(out)
}

/// Where a pack's bytes are read from: a buffer, a file (natively) or the page's
/// `Uint8Array` (wasm). Reading ranges instead of holding the whole file keeps it out of the
/// peak memory of a load: only one tensor's bytes are copied at a time.
pub trait Source: Send + Sync {
    /// Bytes in all.
    fn size(&self) -> u64;
    /// Fills `out` from `offset`; the range was checked against `size`.
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error>;
}

impl Source for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        out.copy_from_slice(&self[offset as usize..offset as usize + out.len()]);
        Ok(())
    }
}

/// A pack file read in ranges. If it changes while loading, a tensor may differ from what the
/// checksum saw: the shapes stay checked, the values are what the file then holds.
#[cfg(feature = "native")]
pub struct FileSource {
    file: std::sync::Mutex<std::fs::File>,
    len: u64,
    path: String,
}

#[cfg(feature = "native")]
impl FileSource {
    pub fn open(path: &std::path::Path) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(Self {
            file: std::sync::Mutex::new(file),
            len,
            path: path.display().to_string(),
        })
    }
}

#[cfg(feature = "native")]
impl Source for FileSource {
    fn size(&self) -> u64 {
        self.len
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        // A panic elsewhere while holding the lock leaves the file usable.
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(out).map_err(io)
    }
}

/// Bytes read from `source` at `offset`, as a fresh buffer.
fn read_vec(source: &dyn Source, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; len as usize];
    source.read(offset, &mut out)?;
    Ok(out)
}

/// A parsed pack whose data section matched its checksum.
pub struct Pack {
    pub header: Header,
    /// Shared by the tensors' loaders.
    source: Arc<dyn Source>,
    data_start: u64,
}

impl Pack {
    /// Checks magic, version, header, every tensor's extent and the data checksum.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, Error> {
        Self::read(Arc::new(bytes))
    }

    /// [`Self::parse`] reading from `source`: the data is streamed through the checksum in
    /// chunks, then each tensor is read when the model takes it.
    pub fn read(source: Arc<dyn Source>) -> Result<Self, Error> {
        let bad = |msg: String| Error::Weights(format!("model pack: {msg}"));
        let total = source.size();
        let start = if total >= 20 {
            read_vec(source.as_ref(), 0, 20)?
        } else {
            Vec::new()
        };
        if start.len() < 20 || &start[..8] != MAGIC {
            return Err(bad(format!(
                "not a clipseg pack ({total} bytes without the CLIPSEGP signature; make one with `clipseg convert`)"
            )));
        }
        let version = u32::from_le_bytes([start[8], start[9], start[10], start[11]]);
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}, but this build reads version {FORMAT_VERSION}; convert the model again with this version's `clipseg convert`"
            )));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&start[12..20]);
        let header_len = u64::from_le_bytes(len);
        let data_start = 20u64.saturating_add(header_len);
        if data_start > total {
            return Err(bad(format!(
                "header of {header_len} bytes does not fit in {total} bytes (truncated download?)"
            )));
        }
        let deflated = read_vec(source.as_ref(), 20, header_len)?;
        let header = miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, MAX_HEADER)
            .map_err(|e| bad(format!("unreadable header ({e}): the file is corrupted")))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|e| bad(format!("unreadable header ({e})")))?;
        let data_len = total - data_start;
        if data_len != header.data_len {
            return Err(bad(format!(
                "data section has {data_len} bytes but the header says {} (truncated download?)",
                header.data_len
            )));
        }
        for entry in &header.tensors {
            let expected = entry.storage.byte_len(&entry.shape);
            let end = entry.offset.checked_add(entry.len);
            if expected.map(|n| n as u64) != Some(entry.len)
                || end.is_none_or(|e| e > header.data_len)
            {
                return Err(bad(format!(
                    "tensor {} has an inconsistent extent",
                    entry.name
                )));
            }
        }
        let mut sha = Sha256::new();
        let mut chunk = vec![0u8; CHECKSUM_CHUNK.min(data_len as usize)];
        let mut at = data_start;
        while at < total {
            let n = chunk.len().min((total - at) as usize);
            source.read(at, &mut chunk[..n])?;
            sha.update(&chunk[..n]);
            at += n as u64;
        }
        let sha = hex(&sha.finalize());
        if sha != header.data_sha256 {
            return Err(bad(format!(
                "checksum mismatch (data sha256 {sha}, header says {}): the file is corrupted",
                header.data_sha256
            )));
        }
        Ok(Self {
            header,
            source,
            data_start,
        })
    }

    /// Whether any matrix is stored in 8 or 4 bits.
    pub fn is_quantized(&self) -> bool {
        self.header
            .tensors
            .iter()
            .any(|t| matches!(t.storage, Storage::Q8 { .. } | Storage::Q4 { .. }))
    }

    /// Fills `model` (built from this pack's config) with the pack's weights, one tensor at a
    /// time: each is decoded to f32 only when the model takes it.
    pub fn apply(&self, model: &mut ClipSeg) -> Result<(), Error> {
        let result = model.apply(
            self.tensors(|name| Some(name.to_string())),
            None,
            None,
            false,
        );
        check(&result, "", |_| false)
    }

    /// [`Self::apply`] for inference on flex: the towers' encoder layers are loaded and packed
    /// for the CPU path ([`ClipSeg::pack_for_cpu`]) one at a time, so the f32 copy of all of
    /// them (4x a q8 pack) never exists at once.
    pub fn apply_packed_for_cpu(
        &self,
        model: &mut ClipSeg,
        precision: crate::cpu::Precision,
    ) -> Result<(), Error> {
        self.apply_layer_by_layer(model, true, |layer, tensors, spec, prefix| {
            check(&layer.apply(tensors, None, None, false), prefix, |_| false)?;
            layer.pack_for_cpu(spec, precision)
        })?;
        // The rest of the CPU path (the decoder's layers).
        model.pack_for_cpu(precision)
    }

    /// [`Self::apply`] for inference on a wgpu device with [`crate::gpu`] kernels: each
    /// encoder layer is read on the host (no synchronous GPU readback, which the browser lacks)
    /// and uploaded to `gpu` in f32, its burn projections never filled; the vision patch
    /// embedding (as a GEMM) and the decoder's reduces and layers are uploaded too, and keep
    /// their burn weights.
    pub fn apply_packed_for_gpu(
        &self,
        model: &mut ClipSeg,
        gpu: &crate::gpu::Gpu,
    ) -> Result<(), Error> {
        self.apply_layer_by_layer(model, false, |layer, tensors, spec, prefix| {
            if !crate::gpu::GpuLayer::supports(spec) {
                return check(&layer.apply(tensors, None, None, false), prefix, |_| false);
            }
            layer.gpu = Some(Arc::new(stage_on_gpu(gpu, tensors, spec, prefix)?));
            layer.release_projections();
            Ok(())
        })?;
        // The patch embedding's conv weight, staged on the host the same way.
        let vision = &mut model.clip.vision_model;
        let prefix = "clip.vision_model.embeddings.patch_embedding.";
        let tensors = self.tensors(|name| name.strip_prefix(prefix).map(str::to_string));
        let host = burn::tensor::Device::flex();
        let mut staged = crate::model::vision::VisionModel::new(&vision.config, 0, &host);
        let conv = &mut staged.embeddings.patch_embedding;
        check(&conv.apply(tensors, None, None, false), prefix, |_| false)?;
        let weight = crate::cpu::values(conv.weight.val())?;
        vision.pack_patch_embedding_for_gpu(gpu, &weight)?;
        // The decoder's reduces and head, staged the same way (only they are read into
        // `staged`).
        use crate::model::decoder::Decoder;
        let mut staged = Decoder::new(&model.config, &host);
        let staged_part = |name: &str| {
            name.starts_with("reduces.") || name.starts_with("transposed_convolution.")
        };
        let tensors = self.tensors(|name| {
            let name = name.strip_prefix("decoder.")?;
            staged_part(name).then(|| name.to_string())
        });
        let applied = staged.apply(tensors, None, None, false);
        check(&applied, "decoder.", |path| !staged_part(path))?;
        let decoder = &mut model.decoder;
        (decoder.gpu_reduces, decoder.gpu_head) = Decoder::upload_reduces_and_head(gpu, &staged)?;
        let spec = Decoder::spec(&model.config);
        if crate::gpu::GpuLayer::supports(spec) {
            for (i, layer) in model.decoder.layers.iter_mut().enumerate() {
                let prefix = format!("decoder.layers.{i}.");
                let tensors = self.tensors(|name| name.strip_prefix(&prefix).map(str::to_string));
                layer.gpu = Some(Arc::new(stage_on_gpu(gpu, tensors, spec, &prefix)?));
            }
        }
        Ok(())
    }

    /// Loads everything but the towers' encoder layers (and, with `tokens_8bit`, a q8 token
    /// table, kept 8-bit for the CPU path), then hands `load_layer` each layer with its
    /// tensors, one at a time.
    fn apply_layer_by_layer(
        &self,
        model: &mut ClipSeg,
        tokens_8bit: bool,
        mut load_layer: impl FnMut(
            &mut crate::model::transformer::EncoderLayer,
            Vec<burn::store::burn_pack::Tensor>,
            crate::model::transformer::LayerSpec,
            &str,
        ) -> Result<(), Error>,
    ) -> Result<(), Error> {
        const TOWERS: [&str; 2] = [
            "clip.text_model.encoder.layers.",
            "clip.vision_model.encoder.layers.",
        ];
        const TOKENS: &str = "clip.text_model.embeddings.token_embedding.weight";
        let text = &model.clip.text_model.config;
        let tokens = match tokens_8bit {
            true => self.quant_rows(TOKENS, [text.vocab_size, text.hidden_size])?,
            false => None,
        };
        let later = |path: &str| {
            TOWERS.iter().any(|t| path.starts_with(t)) || (tokens.is_some() && path == TOKENS)
        };
        let rest = self.tensors(|name| (!later(name)).then(|| name.to_string()));
        check(&model.apply(rest, None, None, false), "", later)?;
        if let Some(table) = tokens {
            let embeddings = &mut model.clip.text_model.embeddings;
            let device = embeddings.position_embedding.weight.device();
            // Never initialised: released right away.
            embeddings.token_embedding.weight =
                burn::module::Param::from_tensor(burn::tensor::Tensor::zeros([0, 0], &device));
            embeddings.cpu_tokens = Some(Arc::new(table));
        }
        let clip = &mut model.clip;
        let text_spec = crate::model::text::TextModel::spec(&clip.text_model.config);
        let vision_spec = crate::model::vision::VisionModel::spec(&clip.vision_model.config);
        let towers = [
            (&mut clip.text_model.encoder.layers, text_spec),
            (&mut clip.vision_model.encoder.layers, vision_spec),
        ];
        for ((layers, spec), tower) in towers.into_iter().zip(TOWERS) {
            // A layer index the config does not have.
            if let Some(entry) = self.header.tensors.iter().find(|t| {
                t.name
                    .strip_prefix(tower)
                    .and_then(|rest| rest.split('.').next()?.parse::<usize>().ok())
                    .is_some_and(|i| i >= layers.len())
            }) {
                return Err(Error::Weights(format!(
                    "model pack: tensor {} is not part of the model its config describes",
                    entry.name
                )));
            }
            for (i, layer) in layers.iter_mut().enumerate() {
                let prefix = format!("{tower}{i}.");
                let tensors = self.tensors(|name| name.strip_prefix(&prefix).map(str::to_string));
                load_layer(layer, tensors, spec, &prefix)?;
            }
        }
        Ok(())
    }

    /// Tensor `name` as 8-bit rows with one scale each, if it is stored so (q8) with the
    /// `shape` the model expects (else the plain load reports the mismatch).
    fn quant_rows(
        &self,
        name: &str,
        shape: [usize; 2],
    ) -> Result<Option<crate::cpu::QuantRows>, Error> {
        let Some(entry) = self.header.tensors.iter().find(|t| t.name == name) else {
            return Ok(None);
        };
        let width = shape[1];
        if entry.shape != shape || entry.storage != (Storage::Q8 { block: width }) {
            return Ok(None);
        }
        let raw = read_vec(
            self.source.as_ref(),
            self.data_start + entry.offset,
            entry.len,
        )?;
        let (scales, ints) = entry.storage.split_quantized(&raw, &shape);
        Ok(Some(crate::cpu::QuantRows {
            width,
            ints: ints.iter().map(|&b| b as i8).collect(),
            scales,
        }))
    }

    /// Deferred loaders of the tensors `rename` keeps, under the names it gives.
    fn tensors(
        &self,
        rename: impl Fn(&str) -> Option<String>,
    ) -> Vec<burn::store::burn_pack::Tensor> {
        self.header
            .tensors
            .iter()
            .filter_map(|entry| {
                let name = rename(&entry.name)?;
                let (source, start, entry) = (self.source.clone(), self.data_start, entry.clone());
                Some(bridge::deferred(
                    name,
                    DType::F32,
                    Shape::from(entry.shape.clone()),
                    None,
                    move || {
                        let raw = read_vec(source.as_ref(), start + entry.offset, entry.len)
                            .map_err(|e| burn::store::burn_pack::Error::IoError(e.to_string()))?;
                        let values = entry.storage.decode(&raw, &entry.shape);
                        Ok(TensorData::new(values, entry.shape.clone()))
                    },
                ))
            })
            .collect()
    }
}

/// One layer's tensors loaded into a host (flex) copy of the layer, then uploaded.
fn stage_on_gpu(
    gpu: &crate::gpu::Gpu,
    tensors: Vec<burn::store::burn_pack::Tensor>,
    spec: crate::model::transformer::LayerSpec,
    prefix: &str,
) -> Result<crate::gpu::GpuLayer, Error> {
    let host = burn::tensor::Device::flex();
    let mut staged = crate::model::transformer::EncoderLayer::new(spec, &host);
    check(&staged.apply(tensors, None, None, false), prefix, |_| false)?;
    crate::gpu::GpuLayer::new(gpu, &staged, spec)
}

/// The first problem of an apply, with paths under `prefix`; missing paths `later` accepts are
/// loaded by a later apply.
fn check(
    result: &burn::store::ApplyResult,
    prefix: &str,
    later: impl Fn(&str) -> bool,
) -> Result<(), Error> {
    if let Some(err) = result.errors.first() {
        return Err(Error::Weights(format!("model pack: {err}")));
    }
    if let Some((path, _)) = result.missing.iter().find(|(path, _)| !later(path)) {
        return Err(Error::Weights(format!(
            "model pack: it has no tensor {prefix}{path}"
        )));
    }
    if let Some(path) = result.unused.first() {
        return Err(Error::Weights(format!(
            "model pack: tensor {prefix}{path} is not part of the model its config describes"
        )));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `sha256sum` line for a pack file named `file_name`, written beside it by `convert`.
pub fn sha256_line(pack: &[u8], file_name: &str) -> String {
    format!("{}  {file_name}\n", hex(&Sha256::digest(pack)))
}

#[cfg(all(test, feature = "native"))]
mod tests {
    use super::*;

    fn roundtrip(storage: Storage, shape: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 5) as f32))
            .collect();
        let mut bytes = Vec::new();
        storage.encode(&values, shape, &mut bytes);
        assert_eq!(Some(bytes.len()), storage.byte_len(shape));
        (values, storage.decode(&bytes, shape))
    }

    /// Worst error relative to the largest magnitude a block can hold.
    fn worst(values: &[f32], back: &[f32]) -> f32 {
        let peak = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        values
            .iter()
            .zip(back)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / peak
    }

    #[test]
    fn float_storages_round_trip() {
        let (v, b) = roundtrip(Storage::F32, &[3, 5]);
        assert_eq!(v, b);
        let (v, b) = roundtrip(Storage::F16, &[3, 5]);
        assert!(worst(&v, &b) < 1e-3);
    }

    #[test]
    fn quantized_error_is_within_half_a_step() {
        // Odd sizes: ragged last block per row, and a dangling nibble.
        // q4's bf16 scales may round down by up to 2^-8, clamping the peak by that much.
        for (storage, bound) in [
            (Storage::Q8 { block: 7 }, 0.5 / 127.0 + 1e-6),
            (Storage::Q4 { block: 4 }, 0.5 / 7.0 + 7.0 / 7.0 / 256.0),
            (Storage::Q8 { block: 15 }, 0.5 / 127.0 + 1e-6),
        ] {
            let (v, b) = roundtrip(storage, &[3, 5, 3]);
            let err = worst(&v, &b);
            assert!(err <= bound, "{storage:?}: {err}");
            assert!(err > 0.0);
        }
    }

    #[test]
    fn zero_blocks_stay_zero() {
        let storage = Storage::Q4 { block: 2 };
        let mut bytes = Vec::new();
        storage.encode(&[0.0, 0.0, 1.0], &[1, 3], &mut bytes);
        // An all-zero block has scale 0: exact zeros, not NaN.
        let back = storage.decode(&bytes, &[1, 3]);
        assert_eq!(back[..2], [0.0, 0.0]);
        assert!((back[2] - 1.0).abs() < 1e-2, "{back:?}");
    }

    #[test]
    fn what_gets_quantized() {
        let q = |name, shape: &[usize]| Storage::choose(Quant::Q4, name, shape);
        assert_eq!(
            q(
                "clip.text_model.embeddings.token_embedding.weight",
                &[49408, 512]
            ),
            Storage::Q4 { block: 32 }
        );
        assert_eq!(
            q(
                "clip.vision_model.embeddings.patch_embedding.weight",
                &[768, 3, 16, 16]
            ),
            Storage::Q4 { block: 32 }
        );
        assert_eq!(
            q(
                "clip.vision_model.embeddings.position_embedding.weight",
                &[197, 768]
            ),
            Storage::F16
        );
        assert_eq!(
            q("clip.vision_model.pre_layrnorm.gamma", &[768]),
            Storage::F16
        );
        assert_eq!(q("decoder.reduces.0.weight", &[768, 64]), Storage::F16);
        assert_eq!(
            Storage::choose(Quant::Q8, "clip.text_projection.weight", &[512, 512]),
            Storage::Q8 { block: 512 }
        );
        assert_eq!(
            Storage::choose(Quant::F32, "clip.text_projection.weight", &[512, 512]),
            Storage::F32
        );
    }

    #[test]
    fn bad_packs_are_named() {
        let msg = |bytes: Vec<u8>| match Pack::parse(bytes) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert!(msg(b"PK\x03\x04 a zip".to_vec()).contains("not a clipseg pack"));
        let mut future = MAGIC.to_vec();
        future.extend(2u32.to_le_bytes());
        future.extend(0u64.to_le_bytes());
        assert!(msg(future).contains("format version 2"));
        let mut cut = MAGIC.to_vec();
        cut.extend(FORMAT_VERSION.to_le_bytes());
        cut.extend(1000u64.to_le_bytes());
        cut.extend(b"{}");
        assert!(msg(cut).contains("truncated"));
    }
}

//! Writing packs (`clipseg convert`) and reading them from files: native only.

use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::bf16;
use sha2::{Digest, Sha256};

use super::{Entry, FORMAT_VERSION, Header, MAGIC, Quant, Source, Storage, hex};
use crate::Error;
use crate::model::ClipSeg;
use crate::{preprocess::PreprocessConfig, tokenizer::ClipTokenizer};

/// Values per scale in 4-bit blocks: 4 bits need small blocks to keep outliers from flattening
/// their neighbours; 8 bits are fine with one scale per row.
const Q4_BLOCK: usize = 32;

impl Storage {
    /// The storage `quant` gives to parameter `name` of `shape`.
    pub(super) fn choose(quant: Quant, name: &str, shape: &[usize]) -> Self {
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

    pub(super) fn encode(self, values: &[f32], shape: &[usize], out: &mut Vec<u8>) {
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
}

/// Writes `model` with its config, `tokenizer` and `preprocess` as one pack. Native: reads
/// every parameter back synchronously.
pub fn write(
    model: &ClipSeg,
    tokenizer: &ClipTokenizer,
    preprocess: &PreprocessConfig,
    quant: Quant,
) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    let mut tensors = Vec::new();
    for tensor in model.collect(None, None, false) {
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
        config: model.config.clone(),
        preprocessor: preprocess.to_json(),
        tokenizer: tokenizer.to_json()?,
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

/// A pack file read in ranges. If it changes while loading, a tensor may differ from what the
/// checksum saw: the shapes stay checked, the values are what the file then holds.
pub struct FileSource {
    file: std::sync::Mutex<std::fs::File>,
    len: u64,
    path: String,
}

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

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
//! every token), norms and biases are stored as f16. [`Pack::apply`] fills a module (the whole
//! model or one part of it) and decodes each weight to f32 only when the module takes it;
//! [`Pack::quantized`] and [`Pack::half`] hand out a matrix as stored ([`Quantized`], f16
//! bits). The pack is what the browser downloads and caches; it is read in ranges
//! ([`Source`]), never held whole.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::{DType, Shape, TensorData, bf16};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

mod quantized;
pub mod split;
pub use quantized::Quantized;

const MAGIC: &[u8; 8] = b"CLIPSEGP";
/// Bumped whenever a reader of the previous format would misread a new pack.
pub const FORMAT_VERSION: u32 = 1;
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
                // A block wider than the row is not what `convert` writes, and its index
                // arithmetic would overflow.
                if block == 0 || block > row.max(1) || (row == 0 && numel > 0) {
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
            Storage::Q8 { .. } | Storage::Q4 { .. } => self.quantized(bytes, shape).to_f32(),
        }
    }

    /// A quantized tensor's bytes (exactly [`Self::byte_len`]) as its rows, scales and integers.
    fn quantized(self, bytes: &[u8], shape: &[usize]) -> Quantized {
        let (bits, block, _) = self.bits().unwrap_or((8, 1, 4));
        let numel: usize = shape.iter().product();
        let rows = shape.first().copied().unwrap_or(1).max(1);
        let (scales, ints) = self.split_quantized(bytes, shape);
        Quantized {
            bits,
            block,
            rows,
            width: numel / rows,
            scales,
            ints: ints.to_vec(),
        }
    }
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
        Bytes(self).read(offset, out)
    }
}

/// A borrowed buffer.
struct Bytes<'a>(&'a [u8]);

impl Source for Bytes<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        out.copy_from_slice(&self.0[offset as usize..offset as usize + out.len()]);
        Ok(())
    }
}

/// The sha256 (hex) of `source`'s bytes from `start` to `end`, read a chunk at a time.
fn sha256_range(source: &dyn Source, start: u64, end: u64) -> Result<String, Error> {
    let mut sha = Sha256::new();
    let mut chunk = vec![0u8; CHECKSUM_CHUNK.min((end - start) as usize)];
    let mut at = start;
    while at < end {
        let n = chunk.len().min((end - at) as usize);
        source.read(at, &mut chunk[..n])?;
        sha.update(&chunk[..n]);
        at += n as u64;
    }
    Ok(hex(&sha.finalize()))
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
    /// Names of the tensors handed out so far ([`Self::check_all_used`]).
    used: Mutex<HashSet<String>>,
}

impl Pack {
    /// Checks magic, version, header, every tensor's extent and the data checksum.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, Error> {
        Self::read(Arc::new(bytes))
    }

    /// [`Self::parse`] reading from `source`: the data is streamed through the checksum in
    /// chunks, then each tensor is read when the model takes it.
    pub fn read(source: Arc<dyn Source>) -> Result<Self, Error> {
        let pack = Self::read_verified(source)?;
        let sha = sha256_range(pack.source.as_ref(), pack.data_start, pack.source.size())?;
        if sha != pack.header.data_sha256 {
            return Err(Error::Weights(format!(
                "model pack: checksum mismatch (data sha256 {sha}, header says {}): the file is corrupted",
                pack.header.data_sha256
            )));
        }
        Ok(pack)
    }

    /// [`Self::read`] without the data section's checksum, for bytes already checked against a
    /// published sha256 (the page's pack cache does so for every download): header, extents
    /// and shapes are still checked.
    pub fn read_verified(source: Arc<dyn Source>) -> Result<Self, Error> {
        let (header, data_start) = Self::header_of(source.as_ref())?;
        Ok(Self {
            header,
            source,
            data_start,
            used: Mutex::default(),
        })
    }

    /// A pack's header, checked (magic, version, tensor extents, the config against the
    /// weights), and where its data section starts; the data is not read.
    fn header_of(source: &dyn Source) -> Result<(Header, u64), Error> {
        let bad = |msg: String| Error::Weights(format!("model pack: {msg}"));
        let total = source.size();
        let start = if total >= 20 {
            read_vec(source, 0, 20)?
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
        let deflated = read_vec(source, 20, header_len)?;
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
        // Extents are checked: the shapes are what the bytes hold.
        let count = |shape: &[usize]| shape.iter().map(|&d| d as u128).product::<u128>();
        let values: u128 = header.tensors.iter().map(|t| count(&t.shape)).sum();
        (header.config)
            .check_backed(values, "the pack")
            .map_err(|e| bad(e.to_string()))?;
        Ok((header, data_start))
    }

    /// The header of a whole pack in memory (see [`Self::header_of`]).
    pub fn read_header(pack: &[u8]) -> Result<Header, Error> {
        Ok(Self::header_of(&Bytes(pack))?.0)
    }

    /// Whether it holds tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.header.tensors.iter().any(|t| t.name == name)
    }

    /// Whether any matrix is stored in 8 or 4 bits.
    pub fn is_quantized(&self) -> bool {
        self.header
            .tensors
            .iter()
            .any(|t| matches!(t.storage, Storage::Q8 { .. } | Storage::Q4 { .. }))
    }

    /// Fills `module` with the tensors under `prefix` (their names relative to it, burn's
    /// parameter paths), one at a time: each is decoded to f32 only when the module takes it.
    /// Refuses a parameter the pack lacks (unless `skip` accepts its path: loaded otherwise)
    /// and a tensor the module lacks.
    pub fn apply<M: ModuleSnapshot>(
        &self,
        module: &mut M,
        prefix: &str,
        skip: impl Fn(&str) -> bool,
    ) -> Result<(), Error> {
        let tensors = self.tensors(|name| {
            let name = name.strip_prefix(prefix)?;
            (!skip(name)).then(|| name.to_string())
        });
        let result = module.apply(tensors, None, None, false);
        if let Some(err) = result.errors.first() {
            return Err(Error::Weights(format!("model pack: {err}")));
        }
        if let Some((path, _)) = result.missing.iter().find(|(path, _)| !skip(path)) {
            return Err(Error::Weights(format!(
                "model pack: it has no tensor {prefix}{path}"
            )));
        }
        if let Some(path) = result.unused.first() {
            return Err(not_in_model(&format!("{prefix}{path}")));
        }
        Ok(())
    }

    /// Matrix `name` as stored, if it is of `shape` and stored in 8 or 4 bits; `None` for any
    /// other storage or shape (a plain [`Self::apply`] then loads it, or reports the mismatch).
    pub fn quantized(&self, name: &str, shape: [usize; 2]) -> Result<Option<Quantized>, Error> {
        let raw = self.raw(name, shape, |s| s.bits().is_some())?;
        Ok(raw.map(|(storage, raw)| storage.quantized(&raw, &shape)))
    }

    /// Matrix `name` as f16 bits, if it is of `shape` and stored in f16 (`None` otherwise, as
    /// [`Self::quantized`]).
    pub fn half(&self, name: &str, shape: [usize; 2]) -> Result<Option<Vec<u16>>, Error> {
        let raw = self.raw(name, shape, |s| s == Storage::F16)?;
        Ok(raw.map(|(_, raw)| {
            raw.chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect()
        }))
    }

    /// Tensor `name`'s bytes and storage, marked used, if it is of `shape` and its storage is
    /// one `wanted` takes.
    fn raw(
        &self,
        name: &str,
        shape: [usize; 2],
        wanted: impl Fn(Storage) -> bool,
    ) -> Result<Option<(Storage, Vec<u8>)>, Error> {
        let Some(entry) = self.header.tensors.iter().find(|t| t.name == name) else {
            return Ok(None);
        };
        if entry.shape != shape || !wanted(entry.storage) {
            return Ok(None);
        }
        let raw = read_vec(
            self.source.as_ref(),
            self.data_start + entry.offset,
            entry.len,
        )?;
        self.mark_used(name);
        Ok(Some((entry.storage, raw)))
    }

    /// Refuses a pack with a tensor no [`Self::apply`], [`Self::quantized`] or [`Self::half`] took: one the
    /// model its config describes does not have.
    pub fn check_all_used(&self) -> Result<(), Error> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        match self.header.tensors.iter().find(|t| !used.contains(&t.name)) {
            Some(entry) => Err(not_in_model(&entry.name)),
            None => Ok(()),
        }
    }

    fn mark_used(&self, name: &str) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.insert(name.to_string());
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
                self.mark_used(&entry.name);
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

fn not_in_model(name: &str) -> Error {
    Error::Weights(format!(
        "model pack: tensor {name} is not part of the model its config describes"
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `sha256sum` line for a pack file named `file_name`, written beside it by `convert`.
pub fn sha256_line(pack: &[u8], file_name: &str) -> String {
    format!("{}  {file_name}\n", hex(&Sha256::digest(pack)))
}

/// `values` [rows, width] quantized to `bits` (8 or 4) in blocks of `block` as a pack stores
/// them: what the kernels' tests feed the integer paths.
#[cfg(all(test, feature = "native"))]
pub(crate) fn quantize(values: &[f32], rows: usize, bits: u32, block: usize) -> Quantized {
    let storage = if bits == 8 {
        Storage::Q8 { block }
    } else {
        Storage::Q4 { block }
    };
    let shape = [rows, values.len() / rows];
    let mut bytes = Vec::new();
    storage.encode(values, &shape, &mut bytes);
    storage.quantized(&bytes, &shape)
}

#[cfg(feature = "native")]
mod write;
#[cfg(feature = "native")]
pub use split::open_file;
#[cfg(feature = "native")]
pub use write::{FileSource, write};

#[cfg(all(test, feature = "native"))]
mod tests {
    use super::*;

    /// Found by tests/fuzz.rs: a block of u64::MAX columns matched its extent (one scale per
    /// row) and then overflowed the decoder's index arithmetic into a panic.
    #[test]
    fn blocks_wider_than_a_row_are_refused() {
        for storage in [Storage::Q8 { block: usize::MAX }, Storage::Q4 { block: 9 }] {
            assert_eq!(storage.byte_len(&[8, 8]), None);
        }
        assert_eq!(Storage::Q8 { block: 8 }.byte_len(&[8, 8]), Some(64 + 8 * 4));
    }

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

//! Split packs: a pack cut into numbered parts of at most a given size, plus a small JSON
//! manifest naming them, for hosts that refuse large files (GitHub: 100 MB, Cloudflare Pages:
//! 25 MiB). The parts concatenated are the single-file pack, byte for byte; the manifest holds
//! each part's size and sha256, so a reader verifies (and a browser caches) part by part and an
//! interrupted download resumes at the first missing part.
//!
//! ```json
//! {"format": "clipseg-split", "version": 1, "size": 139034112, "data_sha256": "…",
//!  "parts": [{"file": "clipseg-q8.bpk.000", "size": 20000000, "sha256": "…"}, …]}
//! ```
//! `data_sha256` is the pack header's checksum of its data section (what the engine checks).
//! Part names are relative to the manifest's location (a folder or a URL).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::hex;
use crate::Error;

/// What `format` says in every manifest.
pub const FORMAT: &str = "clipseg-split";
/// Bumped whenever a reader of the previous manifest would misread a new one.
pub const VERSION: u32 = 1;
/// Largest manifest read: a real one is a few hundred bytes per part.
pub const MAX_MANIFEST: u64 = 1 << 20;
/// Most parts a manifest may name.
pub const MAX_PARTS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Bytes of the whole pack (the parts' sizes summed).
    pub size: u64,
    pub data_sha256: String,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// File name, relative to the manifest.
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// Whether `bytes` (a file's start) is a manifest rather than a pack: JSON starts with `{`.
pub fn is_manifest(start: &[u8]) -> bool {
    start.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

impl Manifest {
    /// `pack` cut into parts of at most `part_size` bytes, named `{stem}.000`, `{stem}.001`…
    /// Returns the manifest and each part's bytes.
    pub fn split<'a>(
        pack: &'a [u8],
        part_size: u64,
        stem: &str,
    ) -> Result<(Self, Vec<&'a [u8]>), Error> {
        let data_sha256 = data_sha256(pack)?;
        if part_size == 0 {
            return Err(Error::Input("the part size must be at least 1 byte".into()));
        }
        let chunks: Vec<&[u8]> = pack
            .chunks(part_size.min(usize::MAX as u64) as usize)
            .collect();
        if chunks.len() > MAX_PARTS {
            return Err(Error::Input(format!(
                "{} parts of {part_size} bytes: at most {MAX_PARTS}; choose a larger part size",
                chunks.len()
            )));
        }
        // Three digits sort by name up to 1000 parts; more take as many as they need.
        let digits = (chunks.len().max(1) - 1).to_string().len().max(3);
        let parts = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| Part {
                file: format!("{stem}.{i:0digits$}"),
                size: c.len() as u64,
                sha256: hex(&Sha256::digest(c)),
            })
            .collect();
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            size: pack.len() as u64,
            data_sha256,
            parts,
        };
        Ok((manifest, chunks))
    }

    /// Parses and checks a manifest: format, version, part names, sizes summing to `size`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |msg: String| Error::Weights(format!("split-pack manifest: {msg}"));
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(format!("{e}")))?;
        if m.format != FORMAT {
            return Err(bad(format!("format is {:?}, not {FORMAT:?}", m.format)));
        }
        if m.version != VERSION {
            return Err(bad(format!(
                "version {}, but this build reads version {VERSION}; split the pack again with this version's `clipseg convert --split`",
                m.version
            )));
        }
        if m.parts.is_empty() || m.parts.len() > MAX_PARTS {
            return Err(bad(format!(
                "{} parts (1 to {MAX_PARTS} allowed)",
                m.parts.len()
            )));
        }
        let mut total = 0u64;
        for p in &m.parts {
            let plain = !p.file.is_empty()
                && p.file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !p.file.starts_with('.');
            if !plain {
                return Err(bad(format!(
                    "part name {:?} is not a plain file name (letters, digits, . _ -)",
                    p.file
                )));
            }
            if !is_sha256(&p.sha256) {
                return Err(bad(format!("part {}: sha256 is not 64 hex digits", p.file)));
            }
            total = total
                .checked_add(p.size)
                .ok_or_else(|| bad("sizes overflow".into()))?;
        }
        if total != m.size {
            return Err(bad(format!(
                "the parts hold {total} bytes but the manifest says {}",
                m.size
            )));
        }
        if !is_sha256(&m.data_sha256) {
            return Err(bad("data_sha256 is not 64 hex digits".into()));
        }
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest serializes") + "\n"
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The data section's sha256 as the pack's header records it.
fn data_sha256(pack: &[u8]) -> Result<String, Error> {
    let header = super::Pack::read_header(pack)?;
    Ok(header.data_sha256)
}

/// `20MB`, `25MiB`, `512kB`, `1000000`: bytes (k/M/G are powers of 1000, Ki/Mi/Gi of 1024; the
/// trailing B is optional).
pub fn parse_size(text: &str) -> Result<u64, Error> {
    let bad = || {
        Error::Input(format!(
            "part size {text:?}: give a number of bytes with an optional unit, e.g. 20MB or 25MiB"
        ))
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let scale = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1048576.0,
        "Gi" => 1073741824.0,
        _ => return Err(bad()),
    };
    let bytes = (number * scale).floor();
    if !(1.0..=1e15).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(feature = "native")]
pub use native::{SplitSource, open_file};

#[cfg(feature = "native")]
mod native {
    use std::io::Read;
    use std::path::Path;
    use std::sync::Arc;

    use super::{MAX_MANIFEST, Manifest, is_manifest};
    use crate::Error;
    use crate::weights::pack::{FileSource, Source, sha256_range};

    /// A pack file or a split pack's manifest (`clipseg convert --split`), as one source.
    pub fn open_file(path: &Path) -> Result<Arc<dyn Source>, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut start = [0u8; 8];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut start))
            .map_err(io)?;
        if !is_manifest(&start[..n]) {
            return Ok(Arc::new(FileSource::open(path)?));
        }
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_MANIFEST {
            return Err(Error::Weights(format!(
                "{}: {len} bytes is too large for a split-pack manifest",
                path.display()
            )));
        }
        let manifest = Manifest::parse(&std::fs::read(path).map_err(io)?)?;
        Ok(Arc::new(SplitSource::open(path, &manifest)?))
    }

    /// The parts of a split pack read as one pack. Every part's size and sha256 are checked on
    /// opening, so a damaged or missing part is named.
    pub struct SplitSource {
        /// Each part's offset in the pack and its file.
        parts: Vec<(u64, FileSource)>,
        size: u64,
    }

    impl SplitSource {
        pub fn open(manifest_path: &Path, manifest: &Manifest) -> Result<Self, Error> {
            let dir = manifest_path.parent().unwrap_or(Path::new("."));
            let count = manifest.parts.len();
            let mut parts = Vec::with_capacity(count);
            let mut at = 0u64;
            for (i, part) in manifest.parts.iter().enumerate() {
                let path = dir.join(&part.file);
                let which = format!("part {} of {count} ({})", i + 1, path.display());
                let source = FileSource::open(&path).map_err(|e| match e {
                    Error::Io { source, .. } => Error::Weights(format!("{which}: {source}")),
                    e => e,
                })?;
                if source.size() != part.size {
                    return Err(Error::Weights(format!(
                        "{which} has {} bytes, the manifest says {} (incomplete copy?)",
                        source.size(),
                        part.size
                    )));
                }
                if sha256_range(&source, 0, part.size)? != part.sha256 {
                    return Err(Error::Weights(format!(
                        "{which}: sha256 mismatch with the manifest: the file is damaged or from another pack"
                    )));
                }
                parts.push((at, source));
                at += part.size;
            }
            Ok(Self { parts, size: at })
        }
    }

    impl Source for SplitSource {
        fn size(&self) -> u64 {
            self.size
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
            // The first part holding `offset`, then on across part boundaries.
            let mut k = self.parts.partition_point(|(start, _)| *start <= offset) - 1;
            let mut done = 0usize;
            while done < out.len() {
                let (start, part) = &self.parts[k];
                let from = offset + done as u64 - start;
                let n = ((part.size() - from) as usize).min(out.len() - done);
                part.read(from, &mut out[done..done + n])?;
                done += n;
                k += 1;
            }
            Ok(())
        }
    }
}

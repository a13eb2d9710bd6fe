//! `clipseg convert`: a model as one pack file for the browser, with its .sha256, or as a
//! split pack (a manifest and parts of at most a given size).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use clipseg::Checkpoint;
use clipseg::burn::tensor::Device;
use clipseg::weights::pack::split::{self, Manifest};
use clipseg::weights::pack::{self, Quant};

/// Write a model as one pack file for the browser (and `--model`), with a .sha256 beside it;
/// with --split, as parts of at most that size and a manifest (OUT.json) that names them.
#[derive(clap::Args)]
pub struct Args {
    /// HF model folder or an existing pack.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// f32, f16, or 8-/4-bit weight quantization of the large matrices.
    #[arg(long, default_value = "q8")]
    quant: String,
    /// Largest part, e.g. 20MB or 25MiB: writes OUT.json (the manifest, what --model and the
    /// page take) and OUT.000, OUT.001... instead of OUT (for hosts that limit file sizes).
    #[arg(long, value_name = "SIZE")]
    split: Option<String>,
    /// Leave out what only image prompts (--visual-prompt) need: the vision layers past the
    /// deepest the decoder reads, `post_layernorm` and `visual_projection`.
    #[arg(long)]
    text_only: bool,
}

pub fn run(args: Args) -> Result<()> {
    let quant: Quant = args.quant.parse()?;
    let part_size = args.split.as_deref().map(split::parse_size).transpose()?;
    let out = &args.out;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out needs a file name")?;
    let mut checkpoint = Checkpoint::open(&args.model, &Device::flex())?;
    if args.text_only {
        checkpoint.model = checkpoint.model.text_only();
    }
    let bytes = checkpoint.to_pack(quant)?;
    if let Some(part_size) = part_size {
        return write_split(&bytes, part_size, out, name, quant);
    }
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let sha_path = PathBuf::from(format!("{}.sha256", out.display()));
    std::fs::write(&sha_path, pack::sha256_line(&bytes, name))
        .with_context(|| format!("writing {}", sha_path.display()))?;
    eprintln!(
        "{} pack: {:.2} MB -> {} (+ {})",
        quant.name(),
        bytes.len() as f64 / 1e6,
        out.display(),
        sha_path.display()
    );
    Ok(())
}

/// The pack as parts beside `out` (named after it) and the manifest OUT.json; OUT itself is not
/// written. Parts are written before the manifest, so a manifest never names missing parts.
fn write_split(bytes: &[u8], part_size: u64, out: &Path, name: &str, quant: Quant) -> Result<()> {
    let (manifest, parts) = Manifest::split(bytes, part_size, name)?;
    let dir = out.parent().unwrap_or(Path::new(""));
    for (part, data) in manifest.parts.iter().zip(&parts) {
        let path = dir.join(&part.file);
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    }
    let path = PathBuf::from(format!("{}.json", out.display()));
    std::fs::write(&path, manifest.to_json())
        .with_context(|| format!("writing {}", path.display()))?;
    let largest = manifest.parts.iter().map(|p| p.size).max().unwrap_or(0);
    eprintln!(
        "{} pack: {:.2} MB in {} parts of at most {:.2} MB -> {} ({}.000 ...)",
        quant.name(),
        bytes.len() as f64 / 1e6,
        parts.len(),
        largest as f64 / 1e6,
        path.display(),
        out.display()
    );
    Ok(())
}

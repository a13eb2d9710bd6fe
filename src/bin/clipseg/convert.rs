//! `clipseg convert`: a model as one pack file for the browser, with its .sha256.

use std::path::PathBuf;

use anyhow::{Context, Result};

use clipseg::Checkpoint;
use clipseg::burn::tensor::Device;
use clipseg::weights::pack::{self, Quant};

/// Write a model as one pack file for the browser (and `--model`), with a .sha256 beside it.
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
}

pub fn run(args: Args) -> Result<()> {
    let quant: Quant = args.quant.parse()?;
    let out = &args.out;
    let bytes = Checkpoint::open(&args.model, &Device::flex())?.to_pack(quant)?;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out needs a file name")?;
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

//! `clipseg fetch`: an HF model folder, downloaded resumably with checksums.

use std::path::PathBuf;

use anyhow::Result;

use clipseg::hub;

/// Download an HF model folder (resumable, checksums verified).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "CIDAS/clipseg-rd64-refined")]
    repo: String,
    #[arg(long, default_value = "main")]
    revision: String,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let request = hub::FetchRequest {
        endpoint,
        repo: args.repo,
        revision: args.revision,
        out: args.out,
        token: std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
        progress: true,
    };
    let report = hub::fetch(&request)?;
    eprintln!(
        "{} files ({:.1} MB, {} downloaded) of {} at commit {} in {}",
        report.files.len(),
        report.total_bytes() as f64 / 1e6,
        report.downloaded_count(),
        report.repo,
        report.commit.as_deref().unwrap_or("?"),
        report.out.display()
    );
    Ok(())
}

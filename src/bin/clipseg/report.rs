//! `clipseg report`: training runs side by side, a markdown table and charts.

use std::path::PathBuf;

use anyhow::Result;

/// Compare training runs: a markdown table plus loss and IoU charts (SVG) beside it.
#[derive(clap::Args)]
pub struct Args {
    /// Run folders written by `clipseg train` (with `metrics.json` from `clipseg eval` when
    /// evaluated), in table order.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The markdown file; the charts go beside it as <stem>-loss.svg and <stem>-iou.svg.
    #[arg(long)]
    out: PathBuf,
    /// Markdown copied verbatim under the title.
    #[arg(long)]
    notes: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let written = clipseg::report::write_report(&args.runs, &args.out, args.notes.as_deref())?;
    eprintln!(
        "{} runs -> {}, {}, {}",
        args.runs.len(),
        written.markdown.display(),
        written.loss_svg.display(),
        written.iou_svg.display()
    );
    Ok(())
}

//! `clipseg synth`: a synthetic dataset in PhraseCut's format.

use std::path::PathBuf;

use anyhow::Result;

use clipseg::data::{SyntheticSpec, generate};

/// Write a synthetic dataset in PhraseCut's format (coloured shapes, phrases, negatives).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 40)]
    images: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    let spec = SyntheticSpec {
        images: args.images,
        seed: args.seed,
        ..SyntheticSpec::default()
    };
    let summary = generate(&args.out, &spec)?;
    eprintln!(
        "{} images, {} tasks ({} negatives); train/val/test/miniv images {:?} -> {}",
        summary.images.iter().sum::<usize>(),
        summary.tasks.iter().sum::<usize>(),
        summary.negatives.iter().sum::<usize>(),
        summary.images,
        args.out.display()
    );
    Ok(())
}

//! `clipseg`: the command-line face of the library, one module per subcommand.

mod bench;
mod common;
mod convert;
mod eval;
mod fetch;
mod predict;
mod report;
mod synth;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "clipseg",
    version,
    about = "Segment images from text prompts with CLIPSeg"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Predict(predict::Args),
    Eval(eval::Args),
    Train(train::Args),
    Convert(convert::Args),
    Bench(bench::Args),
    Synth(synth::Args),
    Fetch(fetch::Args),
    Report(report::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Predict(args) => predict::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Train(args) => train::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Report(args) => report::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

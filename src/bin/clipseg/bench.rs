//! `clipseg bench`: times a full pass and a re-prompt; prints one JSON line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};

use clipseg::engine::{Kernels, Place, Precision, block_on, cpu};
use clipseg::model::ImageFeatures;
use clipseg::weights::pack::{self, Pack};
use clipseg::{Checkpoint, Segmenter};

use crate::common::{Backend, PrecisionArg, load_rgb};

/// Time a full pass (image + prompt) and a re-prompt of an encoded image; prints one JSON line.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    image: PathBuf,
    #[arg(long, default_value = "a photo of a cat")]
    prompt: String,
    /// Timed runs after one warm-up; medians are reported.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    precision: PrecisionArg,
    /// cpu: also time burn's own ops (the model as stored) in the same process first, and
    /// print the ratio.
    #[arg(long)]
    compare_burn: bool,
}

/// Medians over `iters` runs after a warm-up; each run ends with the logits read back, so
/// asynchronous backends are timed to completion. With `compare_burn`, burn's own ops on the
/// same loaded model are timed first.
pub fn run(args: Args) -> Result<()> {
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if args.compare_burn && args.backend != Backend::Cpu {
        bail!("--compare-burn needs --backend cpu");
    }
    let (rgb, width, height) = load_rgb(&args.image)?;
    let (device, kernels) = args.backend.engine(args.precision)?;
    let prompts = [args.prompt.as_str()];
    let time = |segmenter: &Segmenter| -> Result<(f64, f64, f64)> {
        let run = |features: Option<&ImageFeatures>| -> Result<f64> {
            let start = Instant::now();
            let encoded;
            let features = match features {
                Some(f) => f,
                None => {
                    encoded = block_on(segmenter.encode_image(&rgb, width, height))?;
                    &encoded
                }
            };
            block_on(segmenter.segment(features, &prompts))?;
            Ok(start.elapsed().as_secs_f64())
        };
        let first_s = run(None)?;
        let full: Vec<f64> = (0..args.iters).map(|_| run(None)).collect::<Result<_>>()?;
        let features = block_on(segmenter.encode_image(&rgb, width, height))?;
        let reprompt: Vec<f64> = (0..args.iters)
            .map(|_| run(Some(&features)))
            .collect::<Result<_>>()?;
        Ok((first_s, median(full), median(reprompt)))
    };
    let start = Instant::now();
    let mut reference = None;
    // As `predict` loads (a pack's layers converted as they arrive), unless burn's own ops are
    // timed first: then the whole model loads, and the engine is built from it after.
    let (segmenter, load_s) = if args.compare_burn {
        let checkpoint = Checkpoint::open(&args.model, &device)?;
        let open_s = start.elapsed().as_secs_f64();
        let burn = Segmenter::new(checkpoint.clone(), Kernels::Burn)?;
        reference = Some(time(&burn)?);
        drop(burn);
        let build = Instant::now();
        let segmenter = Segmenter::new(checkpoint, kernels)?;
        // Reading the files plus building; the burn runs in between are not load.
        (segmenter, open_s + build.elapsed().as_secs_f64())
    } else {
        let segmenter = Segmenter::open(&args.model, &device, kernels)?;
        (segmenter, start.elapsed().as_secs_f64())
    };
    let (first_s, full_s, reprompt_s) = time(&segmenter)?;
    let tokens = segmenter.tokenize(&prompts)?[0].len();
    let gflop = segmenter
        .config()
        .pass_gflop(segmenter.preprocess.height, tokens);
    let mut line = serde_json::json!({
        "backend": args.backend.name(),
        "iters": args.iters,
        "load_s": load_s,
        "first_pass_s": first_s,
        "full_pass_s": full_s,
        "reprompt_s": reprompt_s,
        "tokens": tokens,
        "gflop": gflop,
        "gflops": gflop / full_s,
    });
    let placement = segmenter.engine.placement();
    let towers = placement.vision_layers;
    if args.backend == Backend::Wgpu {
        let on_kernels = towers == Place::Gpu;
        line["gpu_path"] = if on_kernels {
            "clipseg kernels"
        } else {
            "burn"
        }
        .into();
        if let Some(gpu) = segmenter.engine.gpu() {
            line["gpu_adapter"] = gpu.adapter().into();
            line["gpu_matmul"] = gpu.matmul_variant().name().into();
            // q8 matrices on `dot4I8Packed` with 8-bit activations, or decoded to f32.
            line["gpu_int8_dot"] = gpu.int8_dot().into();
            // f16 matrices multiplied in half precision (`shader-f16`), or decoded to f32.
            line["gpu_f16_math"] = gpu.f16_math().into();
        }
        line["gpu_weights"] = if placement.packed_weights {
            "as the pack stores them"
        } else {
            "f32"
        }
        .into();
        if let Some(bytes) = segmenter.engine.gpu_weight_bytes() {
            line["gpu_weight_bytes"] = bytes.into();
            // Against what the pack stores (its data section: weights in its encodings).
            if args.model.is_file() {
                let pack = Pack::read(pack::open_file(&args.model)?)?;
                line["pack_data_bytes"] = pack.header.data_len.into();
                line["gpu_weight_bytes_vs_pack"] =
                    (bytes as f64 / pack.header.data_len as f64).into();
            }
        }
    }
    if args.backend == Backend::Cpu {
        line["cpu_path"] = if towers == Place::Cpu {
            "packed"
        } else {
            "burn"
        }
        .into();
        cpu_lines(&mut line, placement.precision, gflop / full_s);
    }
    if let Some((first, full, reprompt)) = reference {
        line["burn_first_pass_s"] = first.into();
        line["burn_full_pass_s"] = full.into();
        line["burn_reprompt_s"] = reprompt.into();
        line["full_pass_vs_burn"] = (full_s / full).into();
    }
    println!("{line}");
    Ok(())
}

/// The CPU kernels this machine runs at `precision`, their measured peaks and the pass's
/// efficiency against them (`gflops` achieved).
fn cpu_lines(line: &mut serde_json::Value, precision: Option<Precision>, gflops: f64) {
    line["kernel"] = cpu::gemm::kernel_name().into();
    let threads = rayon::current_num_threads() as f64;
    line["threads"] = rayon::current_num_threads().into();
    let seven_bit = precision == Some(Precision::Int8A7);
    let int8 = precision.and_then(Precision::int8_kernel);
    let bf16 = precision.is_some_and(Precision::bf16_attention);
    line["attention"] = if bf16 { "bf16" } else { "f32" }.into();
    // The decoder's projections, as packed beside the towers (bf16 for a quantized pack on
    // AMX).
    let decoder_bf16 = precision.map(Precision::decoder) == Some(Precision::Bf16);
    line["decoder_projections"] = if decoder_bf16 { "bf16" } else { "f32" }.into();
    #[cfg(target_arch = "x86_64")]
    if bf16 {
        line["attention_kernel"] = cpu::bf16::kernel_name().into();
    }
    // What decided it without AMX: `vdpbf16ps`'s rate over the f32 FMA's.
    #[cfg(target_arch = "x86_64")]
    if let (Some(Precision::Int8Bf16), Some(x)) = (precision, cpu::bf16::speedup()) {
        line["bf16_speedup"] = x.into();
    }
    if let Some(peak) = cpu::gemm::peak_gflops() {
        line["peak_gflops_per_thread"] = peak.into();
        // Against the f32 peak only where the projections run in f32.
        if int8.is_none() {
            line["efficiency"] = (gflops / (peak * threads)).into();
        }
    }
    if let Some(name) = int8 {
        // The projections (~90% of the FLOPs) run in int8, attention in f32.
        line["int8_kernel"] = name.into();
        if let Some(peak) = cpu::qgemm::peak_gops(seven_bit) {
            line["peak_int8_gops_per_thread"] = peak.into();
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

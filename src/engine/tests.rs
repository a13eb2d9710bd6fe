//! Every executor against the model's own math (burn's ops on flex), in one table, in the
//! spirit of llama.cpp's `test-backend-ops`: {burn, CPU f32, CPU int8, CPU int8 with bf16
//! attention, WebGPU (lavapipe in CI) with the register-blocked and with the tiled matmul} x
//! {pre-norm encoder layer, causal text layer, decoder layer, decoder head, whole model}, plus
//! the shapes at the kernels' edges, the GPU's integer weights against their floats, and the
//! GPU's integer dot product against the CPU's int8 path.

use std::sync::Arc;

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor, f16};

use super::build::Weights;
use super::cpu::Precision;
use super::executor::{Executor, host_values};
use super::gpu::{Matmul, test_gpu};
use super::head::{CpuHead, GpuHead};
use super::layer::Norm;
use super::stack::Stack;
use super::{Engine, Kernels, block_on};
use crate::Checkpoint;
use crate::config::{Activation, ClipSegConfig, LayerSpec};
use crate::model::decoder::{Decoder, TransposedConvolution};
use crate::model::transformer::EncoderLayer;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture image's RGB bytes, width and height.
fn fixture_image(name: &str) -> (Vec<u8>, usize, usize) {
    let image = image::open(fixtures().join("images").join(name))
        .unwrap()
        .into_rgb8();
    let (w, h) = image.dimensions();
    (image.into_raw(), w as usize, h as usize)
}

/// The logits of a whole pass: the image, the prompts, the decoder.
fn run(engine: &Engine, pixels: Tensor<4>, ids: &[Vec<u32>]) -> Vec<f32> {
    let logits = block_on(async {
        let image = engine.encode_image(pixels).await?;
        let conditional = engine.encode_text(ids).await?;
        engine.decode(&image, conditional).await
    });
    host_values(logits.unwrap()).unwrap()
}

struct Backend {
    name: &'static str,
    executor: Executor,
    /// Largest |difference| from burn's ops a layer's output may show.
    tolerance: f32,
}

fn backends() -> Vec<Backend> {
    let gpu = test_gpu();
    let tiled = Arc::new(gpu.with(Matmul::Tiled, false, false));
    let cpu = |name, precision, tolerance| Backend {
        name,
        executor: Executor::Cpu(precision),
        tolerance,
    };
    vec![
        Backend {
            name: "burn",
            executor: Executor::Burn,
            tolerance: 0.0,
        },
        cpu("cpu f32", Precision::F32, 1e-4),
        // 8-bit weights and activations: within quantization error of f32.
        cpu("cpu int8", Precision::Int8, 0.05),
        cpu("cpu int8-bf16", Precision::Int8Bf16, 0.05),
        cpu("cpu int8-a7", Precision::Int8A7, 0.05),
        Backend {
            name: "webgpu blocked",
            executor: Executor::Gpu(gpu),
            tolerance: 1e-4,
        },
        // The real GPUs' kernel, on lavapipe here.
        Backend {
            name: "webgpu tiled",
            executor: Executor::Gpu(tiled),
            tolerance: 1e-4,
        },
    ]
}

fn spec(hidden: usize, heads: usize, activation: Activation) -> LayerSpec {
    LayerSpec {
        hidden,
        heads,
        intermediate: 2 * hidden + 8,
        activation,
        eps: 1e-5,
    }
}

/// Two random layers on flex, their norms away from burn's 1 and 0.
fn random_layers(spec: LayerSpec) -> Vec<EncoderLayer> {
    let host = Device::flex();
    (0..2)
        .map(|_| {
            let mut layer = EncoderLayer::new(spec, &host);
            let uniform = |lo, hi| {
                Param::from_tensor(Tensor::random(
                    [spec.hidden],
                    Distribution::Uniform(lo, hi),
                    &host,
                ))
            };
            layer.layer_norm1.gamma = uniform(0.5, 1.5);
            layer.layer_norm2.beta = Some(uniform(-0.5, 0.5));
            layer
        })
        .collect()
}

/// The IoU of two logit maps' masks at probability 0.5 (1 where both are empty).
fn mask_iou(a: &[f32], b: &[f32]) -> f64 {
    let (a, b) = (a.iter().map(|&v| v > 0.0), b.iter().map(|&v| v > 0.0));
    let (inter, union) = a.zip(b).fold((0, 0), |(i, u), (a, b)| {
        (i + usize::from(a && b), u + usize::from(a || b))
    });
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Layers back to back on every executor against burn's: both kept states, asked for out of
/// order. The named rows are the model's three kinds of layer; the rest are the kernels'
/// edges: row counts not a multiple of the blocks or workgroups, widths ending in a partial
/// block, at most 8 rows (the GPU's small kernel), causal attention across blocks of query
/// rows, several workgroups a product, every activation the kernels have.
#[test]
fn layers_match_burn_on_every_executor() {
    let pre = Norm::Pre { causal: false };
    let causal = Norm::Pre { causal: true };
    let q = Activation::QuickGelu;
    let cases = [
        ("pre-norm encoder layer", pre, 1, 37, spec(48, 4, q)),
        ("causal text layer", causal, 3, 9, spec(48, 4, q)),
        (
            "decoder layer",
            Norm::Post,
            2,
            11,
            spec(20, 5, Activation::Relu),
        ),
        (
            "causal across attention blocks",
            causal,
            1,
            197,
            spec(48, 4, q),
        ),
        ("gelu-tanh", pre, 2, 5, spec(32, 2, Activation::GeluTanh)),
        (
            "silu, one head",
            Norm::Post,
            1,
            70,
            spec(64, 1, Activation::Silu),
        ),
        (
            "relu, one row",
            causal,
            1,
            1,
            spec(48, 12, Activation::Relu),
        ),
        ("at most 8 rows", causal, 1, 6, spec(20, 5, q)),
        (
            "partial column blocks",
            Norm::Post,
            2,
            4,
            spec(36, 3, Activation::GeluTanh),
        ),
        ("several workgroups", pre, 1, 300, spec(272, 4, q)),
    ];
    let host = Device::flex();
    for (name, norm, batch, seq, spec) in cases {
        let layers = random_layers(spec);
        let x: Tensor<3> = Tensor::random(
            [batch, seq, spec.hidden],
            Distribution::Normal(0.0, 1.0),
            &host,
        );
        let burn = |layer: &EncoderLayer, x| match norm {
            Norm::Pre { causal } => layer.forward_pre_norm(x, causal),
            Norm::Post => layer.forward_post_norm(x),
        };
        let first = burn(&layers[0], x.clone());
        let want = [burn(&layers[1], first.clone()), first].map(|t| host_values(t).unwrap());
        for backend in backends() {
            let mut stack = Stack::build(
                layers.clone(),
                spec,
                "",
                &Weights::Loaded,
                &backend.executor,
                &host,
            )
            .unwrap();
            if let Stack::Cpu(packed) = &mut stack {
                let bf16 = matches!(backend.executor, Executor::Cpu(Precision::Int8Bf16));
                for layer in packed {
                    // Chosen where it is faster here; tested wherever the CPU has it.
                    assert_eq!(
                        layer.bf16_attention(),
                        bf16 && Precision::Int8Bf16.bf16_attention()
                    );
                    if bf16 {
                        layer.force_bf16_attention();
                    }
                }
            }
            let got = block_on(stack.forward(x.clone(), norm, &[1, 0])).unwrap();
            assert_eq!(got.len(), 2, "{name} on {}", backend.name);
            for (state, want) in got.into_iter().zip(&want) {
                let diff = max_diff(&host_values(state).unwrap(), want);
                assert!(
                    diff <= backend.tolerance,
                    "{name} [{batch}, {seq}, {}] on {}: max |diff| {diff}",
                    spec.hidden,
                    backend.name
                );
            }
        }
    }
}

/// Layers whose matrices stay as a pack stores them, decoded in the GPU kernels (f16,
/// `matmul_q8.wgsl`, `matmul_q4.wgsl`; blocked and tiled), against the same layers given the
/// decoded floats (the f32 kernel, itself checked against burn above): the same weights, so
/// the same outputs up to rounding. Blocks of a whole row, of 48 columns (`main_one_scale`: one
/// scale per step) and of 16 (`main`: one per vec4 of columns) (q8), of 32 and 8 columns and a
/// ragged last block (q4), and a width the 4-bit layout lacks (uploaded as f32 instead).
#[test]
fn gpu_integer_weights_match_their_decoded_floats() {
    use super::gpu::{self, GpuLayer};
    use super::layer::{LayerWeights, Matrix, Weight};
    use crate::weights::pack::quantize;
    let blocked = test_gpu();
    let tiled = blocked.with(Matmul::Tiled, false, false);
    let q = Activation::QuickGelu;
    let pre = Norm::Pre { causal: false };
    let causal = Norm::Pre { causal: true };
    // (name, bits (16: f16), block (0: a whole row), norm, batch, seq, spec, whether all stay
    // as stored)
    let cases = [
        ("f16", 16, 0, pre, 1, 37, spec(48, 4, q), true),
        ("q8 rows", 8, 0, pre, 1, 37, spec(48, 4, q), true),
        (
            "q8 causal, at most 8 rows",
            8,
            0,
            causal,
            2,
            5,
            spec(32, 2, q),
            true,
        ),
        ("q8 blocks of 48", 8, 48, pre, 1, 37, spec(48, 4, q), true),
        ("q8 blocks of 16", 8, 16, pre, 1, 37, spec(48, 4, q), true),
        ("q4 blocks of 32", 4, 32, pre, 1, 37, spec(64, 4, q), true),
        (
            "q4 blocks of 8",
            4,
            8,
            Norm::Post,
            2,
            11,
            spec(24, 3, Activation::Relu),
            true,
        ),
        (
            "q4 ragged last blocks",
            4,
            32,
            pre,
            1,
            19,
            spec(40, 5, q),
            true,
        ),
        (
            "q4, width not whole words",
            4,
            8,
            pre,
            1,
            9,
            spec(36, 3, q),
            false,
        ),
    ];
    for (name, bits, block, norm, batch, seq, spec, all_int) in cases {
        let floats = LayerWeights::random(spec, 7);
        let int = |m: &Matrix| {
            let w = m.w.to_f32();
            let block = if block == 0 { m.n } else { block.min(m.n) };
            let w = match bits {
                16 => Weight::F16(w.iter().map(|&v| f16::from_f32(v).to_bits()).collect()),
                _ => Weight::Int(quantize(&w, m.k, bits, block)),
            };
            Matrix { w, ..m.clone() }
        };
        let ints = LayerWeights {
            qkv: int(&floats.qkv),
            out_proj: int(&floats.out_proj),
            fc1: int(&floats.fc1),
            fc2: int(&floats.fc2),
            ..floats.clone()
        };
        let decode = |m: &Matrix| Matrix {
            w: Weight::F32(m.w.to_f32().into_owned()),
            ..m.clone()
        };
        let decoded = LayerWeights {
            qkv: decode(&ints.qkv),
            out_proj: decode(&ints.out_proj),
            fc1: decode(&ints.fc1),
            fc2: decode(&ints.fc2),
            ..floats.clone()
        };
        for gpu in [blocked.as_ref(), &tiled] {
            let variant = gpu.matmul_variant();
            let on_int = GpuLayer::new(gpu, &ints).unwrap();
            let on_f32 = GpuLayer::new(gpu, &decoded).unwrap();
            assert_eq!(on_int.is_packed(), all_int, "{name} ({variant:?})");
            if all_int {
                // The integers and their scales (q8: f32 per row, q4: bf16 per block) against f32,
                // with a quarter more for the biases and norms (f32 in both).
                let (per_value, per_scale) = match bits {
                    16 => (2.0, 0.0),
                    8 => (1.0, 4.0),
                    _ => (0.5, 2.0),
                };
                let block = if block == 0 { spec.hidden } else { block };
                let want = (per_value + per_scale / block as f64) / 4.0 * 1.25;
                let ratio = on_int.weight_bytes() as f64 / on_f32.weight_bytes() as f64;
                assert!(
                    ratio < want,
                    "{name} ({variant:?}): {ratio} of f32's bytes, want < {want}"
                );
            }
            let x: Vec<f32> = (0..batch * seq * spec.hidden)
                .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let run = |layer: &GpuLayer| {
                let layers = [layer, layer];
                block_on(gpu::forward(gpu, &layers, &x, batch, seq, norm, &[1])).unwrap()
            };
            let (got, want) = (run(&on_int), run(&on_f32));
            let diff = max_diff(&got[0], &want[0]);
            assert!(diff <= 1e-5, "{name} ({variant:?}): max |diff| {diff}");
        }
    }
}

/// The decoder's head (refined: 3x3 conv and two transposed convs; plain: one transposed
/// conv) on the CPU GEMM and the GPU kernel against burn's convolutions, two prompts.
#[test]
fn heads_match_burn_on_every_executor() {
    let host = Device::flex();
    let random = |shape: [usize; 4]| {
        Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.3), &host))
    };
    let (rd, grid, batch) = (8, 5, 2);
    for (complex, patch) in [(true, 8), (false, 4)] {
        let mut c = ClipSegConfig::default();
        (c.reduce_dim, c.use_complex_transposed_convolution) = (rd, complex);
        c.vision_config.patch_size = patch;
        let mut head = Decoder::new(&c, &host).transposed_convolution;
        match &mut head {
            TransposedConvolution::Refined(h) => {
                h.layer0.weight = random(h.layer0.weight.dims());
                h.layer2.weight = random(h.layer2.weight.dims());
                h.layer4.weight = random(h.layer4.weight.dims());
            }
            TransposedConvolution::Plain(t) => t.weight = random(t.weight.dims()),
        }
        let states: Tensor<3> = Tensor::random(
            [batch, 1 + grid * grid, rd],
            Distribution::Normal(0.0, 1.0),
            &host,
        );
        let want = head.logits(states.clone());
        let side = want.dims()[1];
        let want = host_values(want).unwrap();
        let (tokens, g) =
            super::head::patch_tokens(&host_values(states).unwrap(), 1 + grid * grid, rd);
        assert_eq!(g, grid);
        for backend in backends() {
            let (got, got_side) = match &backend.executor {
                Executor::Burn => continue,
                Executor::Cpu(_) => {
                    let cpu = CpuHead::new(&head)
                        .unwrap()
                        .expect("the head maps to matrices");
                    cpu.forward(&tokens, batch, grid)
                }
                Executor::Gpu(gpu) => {
                    let on_gpu = GpuHead::new(gpu, &head).unwrap().expect("the head fits");
                    block_on(on_gpu.forward(gpu, &tokens, batch, grid)).unwrap()
                }
            };
            assert_eq!(got_side, side, "{}", backend.name);
            let diff = max_diff(&got, &want);
            assert!(
                diff < 1e-4,
                "{}, complex {complex}: max |diff| {diff}",
                backend.name
            );
        }
    }
}

/// Whole fixture models (plain and refined heads) through the engine on every executor
/// against the model's own forward: an image, two prompts, logits.
#[test]
fn whole_models_match_burn_on_every_executor() {
    let fixtures = fixtures();
    let (rgb, w, h) = fixture_image("tiny.png");
    for model in ["plain", "refined"] {
        let dir = fixtures.join("models").join(model);
        let reference = Checkpoint::from_hf_dir(&dir, &Device::flex()).unwrap();
        let ids = reference
            .tokenize(&["a cat", "the thing on the left"])
            .unwrap();
        let pixels = reference.pixel_values(&rgb, w, h).unwrap();
        let want = reference.model.forward(pixels.clone(), &ids).unwrap();
        let want = host_values(want).unwrap();
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for backend in backends() {
            let kernels = match &backend.executor {
                Executor::Burn => Kernels::Burn,
                Executor::Cpu(p) => Kernels::Packed(Some(*p)),
                Executor::Gpu(gpu) => Kernels::Gpu(gpu.clone()),
            };
            let checkpoint = Checkpoint::from_hf_dir(&dir, &Device::flex()).unwrap();
            let pixels = checkpoint.pixel_values(&rgb, w, h).unwrap();
            let engine = Engine::from_model(checkpoint.model, kernels, false).unwrap();
            let diff = max_diff(&run(&engine, pixels, &ids), &want);
            // f32 to the parity tests' bound; int8 within quantization error.
            let bound = if backend.tolerance > 1e-3 { 0.2 } else { 1e-4 } * scale;
            assert!(
                diff <= bound,
                "{model} on {}: max |diff| {diff} (bound {bound})",
                backend.name
            );
        }
    }
}

/// q8 packs on the GPU's integer dot product (`matmul_q8dot.wgsl` after `quantize_rows.wgsl`,
/// both matmul variants) against the same pack's weights decoded to f32 on the GPU: masks at
/// probability 0.5 with IoU >= 0.99; masks IoU and logits error against the CPU's int8 path
/// printed beside (it quantizes the activations against weights requantized per column, the
/// GPU after folding the weights' per-k scales into them).
#[test]
fn gpu_int8_dot_masks_match_the_decoded_pack() {
    use crate::weights::pack::{Pack, Quant};
    let fixtures = fixtures();
    let (rgb, w, h) = fixture_image("landscape.png");
    let gpu = test_gpu();
    for model in ["plain", "refined"] {
        let dir = fixtures.join("models").join(model);
        let reference = Checkpoint::from_hf_dir(&dir, &Device::flex()).unwrap();
        let ids = reference
            .tokenize(&["a cat", "the thing on the left"])
            .unwrap();
        let pack = Pack::parse(reference.to_pack(Quant::Q8).unwrap()).unwrap();
        let logits = |engine: &Engine| {
            let pixels = reference.pixel_values(&rgb, w, h).unwrap();
            run(engine, pixels, &ids)
        };
        let int8 = Kernels::Packed(Some(Precision::Int8));
        let cpu = Engine::from_pack(&pack, &Device::flex(), int8).unwrap();
        let want = logits(&cpu);
        for variant in [Matmul::Blocked, Matmul::Tiled] {
            let on = |int8_dot: bool| {
                let kernels = Kernels::Gpu(Arc::new(gpu.with(variant, int8_dot, false)));
                let engine = Engine::from_pack(&pack, &Device::flex(), kernels).unwrap();
                assert!(engine.placement().packed_weights, "{model} {variant:?}");
                logits(&engine)
            };
            let (dot, decoded) = (on(true), on(false));
            let iou = mask_iou;
            eprintln!(
                "{model} {variant:?}: masks IoU / max |logit diff|: dot4 vs CPU int8 {:.5} / {:.3e}; decoded f32 vs CPU int8 {:.5} / {:.3e}; dot4 vs decoded f32 {:.5} / {:.3e}",
                iou(&dot, &want),
                max_diff(&dot, &want),
                iou(&decoded, &want),
                max_diff(&decoded, &want),
                iou(&dot, &decoded),
                max_diff(&dot, &decoded),
            );
            // Against the pack's own floats (decoded), where only the activations' 8 bits
            // differ. The CPU's int8 path also requantizes the weights per column: it is itself
            // at IoU 0.991 from the decoded floats on `refined`, so against it only printed.
            let iou = iou(&dot, &decoded);
            assert!(iou >= 0.99, "{model} {variant:?}: IoU {iou}");
            // The integer path ran: its logits are not the decoded floats'.
            assert!(max_diff(&dot, &decoded) > 0.0, "{model} {variant:?}");
        }
    }
}

/// f16 packs multiplied in half precision (`matmul_tiled_f16h.wgsl`, `shader-f16`: lavapipe has
/// it) against the CPU's f32 path of the same pack (its halves decoded to f32): masks at
/// probability 0.5 with IoU >= 0.99, logits error printed, beside the GPU's f32 products of the
/// same halves.
#[test]
fn gpu_f16_math_masks_match_the_cpu_f16_pack() {
    use crate::weights::pack::{Pack, Quant};
    let (rgb, w, h) = fixture_image("landscape.png");
    let gpu = test_gpu();
    for model in ["plain", "refined"] {
        let dir = fixtures().join("models").join(model);
        let reference = Checkpoint::from_hf_dir(&dir, &Device::flex()).unwrap();
        let ids = reference
            .tokenize(&["a cat", "the thing on the left"])
            .unwrap();
        let pack = Pack::parse(reference.to_pack(Quant::F16).unwrap()).unwrap();
        let logits = |engine: &Engine| {
            let pixels = reference.pixel_values(&rgb, w, h).unwrap();
            run(engine, pixels, &ids)
        };
        let f32 = Kernels::Packed(Some(Precision::F32));
        let cpu = Engine::from_pack(&pack, &Device::flex(), f32).unwrap();
        let want = logits(&cpu);
        let on = |f16_math: bool| {
            let kernels = Arc::new(gpu.with(Matmul::Tiled, false, f16_math));
            assert_eq!(kernels.f16_math(), f16_math, "shader-f16 on this adapter");
            let engine = Engine::from_pack(&pack, &Device::flex(), Kernels::Gpu(kernels)).unwrap();
            assert!(engine.placement().packed_weights, "{model}");
            logits(&engine)
        };
        let (half, decoded) = (on(true), on(false));
        eprintln!(
            "{model}: masks IoU / max |logit diff| against the CPU: f16 math {:.5} / {:.3e}; f32 math {:.5} / {:.3e}",
            mask_iou(&half, &want),
            max_diff(&half, &want),
            mask_iou(&decoded, &want),
            max_diff(&decoded, &want),
        );
        let iou = mask_iou(&half, &want);
        assert!(iou >= 0.99, "{model}: IoU {iou}");
        // The half kernel ran: its logits are not the f32 products'.
        assert!(max_diff(&half, &decoded) > 0.0, "{model}");
    }
}

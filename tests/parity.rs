//! Parity with HF transformers' `CLIPSegForImageSegmentation` on random-weight checkpoints of
//! several configs (plain and refined heads, different extract/conditional layers, patch sizes,
//! activations, legacy and new EOS pooling), from image file to logits and masks.

mod common;

use clipseg::burn::tensor::Device;
use clipseg::engine::{Kernels, Place, block_on};
use clipseg::postprocess::resize_bilinear_f32;
use clipseg::preprocess::{self, Filter};
use clipseg::{Checkpoint, Prompt, Segmenter};
use common::*;

/// Token ids, conditional embeddings, logits and image-size masks of one case on `device`:
/// the model as stored (burn's ops), or (`kernels`) the engine built with its kernels: the
/// packed CPU kernels or the GPU kernels, on flex (not the `odd` model's towers, whose erf
/// GELU they lack).
fn check_case(case: &Case, device: &Device, kernels: Option<Kernels>) {
    let label = label(&kernels);
    let dir = fixtures().join("models").join(&case.model);
    let checkpoint =
        Checkpoint::open(&dir, device).unwrap_or_else(|e| panic!("{}: {e}", case.model));
    let (rgb, w, h) = read_rgb(&case.image);
    assert_eq!([h, w], case.orig_size);
    assert_eq!(
        checkpoint.tokenize(&case.prompts).unwrap(),
        case.input_ids,
        "{}",
        case.model
    );
    let (cond, logits, dims) = if let Some(kernels) = kernels {
        let on_wgpu = matches!(kernels, Kernels::Gpu(_));
        let segmenter = Segmenter::new(checkpoint, kernels).unwrap();
        let placed = segmenter.engine.placement();
        let ours = if on_wgpu { Place::Gpu } else { Place::Cpu };
        let towers = if case.model == "odd" {
            Place::Burn
        } else {
            ours
        };
        assert_eq!(placed.text_layers, towers, "{}", case.model);
        assert_eq!(placed.vision_layers, towers, "{}", case.model);
        assert_eq!(placed.patch_embedding, ours, "{}", case.model);
        assert_eq!(placed.decoder_layers, Some(ours), "{}", case.model);
        assert_eq!(placed.head, Some(ours), "{}", case.model);
        // On flex the reduces stay on burn's ops (a product burn runs well there).
        let reduces = if on_wgpu { Place::Gpu } else { Place::Burn };
        assert_eq!(placed.reduces, Some(reduces), "{}", case.model);
        let cond = block_on(segmenter.engine.encode_text(&case.input_ids)).unwrap();
        let image = block_on(segmenter.encode_image(&rgb, w, h)).unwrap();
        let maps = block_on(segmenter.segment(&image, &case.prompts)).unwrap();
        let dims = vec![maps.count(), maps.side(), maps.side()];
        (cond, maps.logits().to_vec(), dims)
    } else {
        let model = &checkpoint.model;
        let cond = model.encode_text(&case.input_ids).unwrap();
        let pixels = checkpoint.pixel_values(&rgb, w, h).unwrap();
        let logits = model.forward(pixels, &case.input_ids).unwrap();
        let dims = logits.dims().to_vec();
        (cond, logits.try_into_vec_as::<f32>().unwrap(), dims)
    };
    let (cond_ref, _) = read_npy(&case.cond);
    let cond = cond.try_into_vec_as::<f32>().unwrap();
    let cond_err = max_abs_diff(&cond, &cond_ref);

    let (reference, ref_shape) = read_npy(&case.logits);
    assert_eq!(dims, ref_shape, "{} {}", case.model, case.image);
    let err = max_abs_diff(&logits, &reference);
    let limit = bound(case);
    eprintln!(
        "{:>8} {:<22} {device:?} {label}: max|err| {err:.2e} (bound {limit:.2e}, max|ref| {:.2}), cond {cond_err:.2e}",
        case.model, case.image, case.max_abs_logit
    );
    assert!(
        err <= limit,
        "{} {}: logits differ by {err} > {limit}",
        case.model,
        case.image
    );

    let s = dims[0];
    let side = ref_shape[1];
    for (k, mask_rel) in case.masks.iter().enumerate() {
        let map = &logits[k * side * side..(k + 1) * side * side];
        let ours: Vec<bool> = resize_bilinear_f32(map, side, side, h, w)
            .iter()
            .map(|&l| l > 0.0)
            .collect();
        let reference = read_mask(&fixtures().join(mask_rel));
        let score = iou(&ours, &reference);
        assert!(
            score >= 0.99,
            "{} {} prompt {k}/{s}: mask IoU {score}",
            case.model,
            case.image
        );
    }
}

/// One case of tests/fixtures/visual/cases.json (tools/make_visual_prompt_fixtures.py).
#[derive(serde::Deserialize)]
struct VisualCase {
    model: String,
    targets: Vec<String>,
    examples: Vec<String>,
    cond: String,
    logits: Vec<String>,
}

/// Image prompts: HF's `model(pixel_values=P(target), conditional_pixel_values=P(example))`.
/// The examples' conditional embeddings (every vision layer, `post_layernorm`,
/// `visual_projection`) and, per target, the logits for all examples, with the examples
/// encoded once for all targets; on burn's ops or (`kernels`) the engine.
fn check_visual(device: &Device, kernels: Option<Kernels>) {
    let label = label(&kernels);
    let text = std::fs::read_to_string(fixtures().join("visual/cases.json")).unwrap();
    let cases: Vec<VisualCase> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let dir = fixtures().join("models").join(&case.model);
        let checkpoint = Checkpoint::open(&dir, device).unwrap();
        assert!(checkpoint.model.has_image_prompts(), "{}", case.model);
        let pixels = |rel: &str| {
            let (rgb, w, h) = read_rgb(rel);
            checkpoint.pixel_values(&rgb, w, h).unwrap()
        };
        let examples: Vec<_> = case.examples.iter().map(|e| pixels(e)).collect();
        let targets: Vec<_> = case.targets.iter().map(|t| pixels(t)).collect();
        let (cond, logits): (Vec<f32>, Vec<Vec<f32>>) = if let Some(kernels) = &kernels {
            let segmenter = Segmenter::new(checkpoint, kernels.clone()).unwrap();
            let encode = |e: &String| {
                let (rgb, w, h) = read_rgb(e);
                block_on(segmenter.encode_example(&rgb, w, h)).unwrap()
            };
            let embeddings: Vec<_> = case.examples.iter().map(encode).collect();
            let prompts: Vec<_> = embeddings.iter().map(Prompt::Example).collect();
            let logits = (case.targets.iter())
                .map(|t| {
                    let (rgb, w, h) = read_rgb(t);
                    let image = block_on(segmenter.encode_image(&rgb, w, h)).unwrap();
                    let maps = segmenter.segment_with(&image, &prompts);
                    block_on(maps).unwrap().logits().to_vec()
                })
                .collect();
            let cond = clipseg::burn::tensor::Tensor::cat(embeddings, 0);
            (cond.try_into_vec_as::<f32>().unwrap(), logits)
        } else {
            let model = &checkpoint.model;
            // The examples as one batch.
            let cond = model
                .encode_examples(clipseg::burn::tensor::Tensor::cat(examples, 0))
                .unwrap();
            let logits = (targets.into_iter())
                .map(|t| {
                    let image = model.encode_image(t).unwrap();
                    let logits = model.decode(&image, cond.clone()).unwrap();
                    logits.try_into_vec_as::<f32>().unwrap()
                })
                .collect();
            (cond.try_into_vec_as::<f32>().unwrap(), logits)
        };
        let (cond_ref, _) = read_npy(&case.cond);
        let peak = cond_ref.iter().fold(1f32, |m, v| m.max(v.abs()));
        let cond_err = max_abs_diff(&cond, &cond_ref);
        eprintln!(
            "{:>8} examples {:?} {device:?} {label}: cond max|err| {cond_err:.2e}",
            case.model, case.examples
        );
        assert!(
            cond_err <= 1e-4 * peak,
            "{}: cond differs by {cond_err}",
            case.model
        );
        for (target, (ours, rel)) in case.targets.iter().zip(logits.iter().zip(&case.logits)) {
            let (reference, _) = read_npy(rel);
            let peak = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(ours, &reference);
            eprintln!("{:>8} {target:<22} logits max|err| {err:.2e}", case.model);
            assert!(
                err <= 1e-4 * peak,
                "{} {target}: logits differ by {err}",
                case.model
            );
        }
    }
}

/// burn's flex ops, then the packed CPU kernels the CLI and the browser's CPU fallback use.
#[test]
fn logits_and_masks_match_transformers_on_cpu() {
    let device = Device::flex();
    for case in cases() {
        check_case(&case, &device, None);
        check_case(&case, &device, Some(Kernels::Packed(None)));
    }
}

#[test]
fn image_prompts_match_transformers_on_cpu() {
    check_visual(&Device::flex(), None);
    check_visual(&Device::flex(), Some(Kernels::Packed(None)));
}

#[test]
fn image_prompts_match_transformers_on_wgpu() {
    check_visual(&wgpu(), None);
    check_visual(&Device::flex(), Some(gpu_kernels()));
}

/// The same checkpoints on burn-wgpu (lavapipe in CI, so CPU Vulkan): burn's ops, then the
/// GPU kernels the browser's WebGPU engine runs the layers on.
#[test]
fn logits_and_masks_match_transformers_on_wgpu() {
    let device = wgpu();
    for case in cases() {
        check_case(&case, &device, None);
        check_case(&case, &Device::flex(), Some(gpu_kernels()));
    }
}

/// What a line of output calls `kernels`.
fn label(kernels: &Option<Kernels>) -> &'static str {
    match kernels {
        None => "burn's ops",
        Some(Kernels::Gpu(_)) => "GPU kernels",
        Some(_) => "CPU kernels",
    }
}

/// PIL's resampler ported byte for byte: the processor's resize is the first thing that can drift.
#[test]
fn resize_matches_pillow_exactly() {
    let dir = fixtures().join("reference/resized");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (src, w, h) = read_rgb(&format!("images/{stem}.png"));
        let expected = image::open(&path).unwrap().into_rgb8();
        let (ow, oh) = expected.dimensions();
        let ours = preprocess::resize_rgb8(&src, w, h, ow as usize, oh as usize, Filter::Bilinear);
        assert!(
            ours == expected.into_raw(),
            "{stem}: resize differs from Pillow"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} resized references");
}

#[derive(serde::Deserialize)]
struct Tokens {
    prompt: String,
    ids: Vec<u32>,
    ids_truncated: Vec<u32>,
}

#[test]
fn tokenizer_matches_hf_on_hostile_prompts() {
    let tokenizer_json = std::fs::read(fixtures().join("tokenizer.json")).unwrap();
    let tokenizer = clipseg::tokenizer::ClipTokenizer::from_bytes(&tokenizer_json).unwrap();
    let text = std::fs::read_to_string(fixtures().join("tokens.json")).unwrap();
    let cases: Vec<Tokens> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 20);
    assert!(
        cases.iter().any(|c| c.ids.len() > 77),
        "no over-long prompt in tokens.json"
    );
    for c in &cases {
        assert_eq!(
            tokenizer.encode(&c.prompt, 1 << 20).unwrap(),
            c.ids,
            "{:?}",
            c.prompt
        );
        assert_eq!(
            tokenizer.encode(&c.prompt, 77).unwrap(),
            c.ids_truncated,
            "{:?} (truncated)",
            c.prompt
        );
    }
    assert_eq!(
        tokenizer.encode("a photo of a cat", 77).unwrap(),
        [49406, 320, 1125, 539, 320, 2368, 49407]
    );
}

/// Older HF folders: `pytorch_model.bin` instead of safetensors, `vocab.json` + `merges.txt`
/// instead of `tokenizer.json`. Both must give the reference logits and token ids.
#[test]
fn pytorch_bin_and_vocab_merges_folders_match_transformers() {
    let src = fixtures().join("models/refined");
    let dir = std::env::temp_dir().join(format!("clipseg-legacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in [
        "config.json",
        "preprocessor_config.json",
        "pytorch_model.bin",
    ] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    // vocab.json and merges.txt as transformers writes them, taken from the tokenizer.json.
    let tokenizer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("tokenizer.json")).unwrap()).unwrap();
    std::fs::write(
        dir.join("vocab.json"),
        tokenizer["model"]["vocab"].to_string(),
    )
    .unwrap();
    let mut merges = String::from("#version: 0.2\n");
    for pair in tokenizer["model"]["merges"].as_array().unwrap() {
        merges.push_str(&format!(
            "{} {}\n",
            pair[0].as_str().unwrap(),
            pair[1].as_str().unwrap()
        ));
    }
    std::fs::write(dir.join("merges.txt"), merges).unwrap();

    let checkpoint = Checkpoint::from_hf_dir(&dir, &Device::flex()).unwrap();
    let tokens: Vec<Tokens> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tokens.json")).unwrap())
            .unwrap();
    for t in &tokens {
        assert_eq!(
            checkpoint.tokenize(&[&t.prompt]).unwrap()[0],
            t.ids_truncated,
            "{:?}",
            t.prompt
        );
    }
    for case in cases().iter().filter(|c| c.model == "refined") {
        let (_, err) = reference_logits(&checkpoint, case);
        assert!(err <= bound(case), "{}: {err}", case.image);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The in-memory loader (what the browser uses: no file system) gives the same model.
#[test]
fn loading_from_bytes_matches_transformers() {
    let dir = fixtures().join("models/plain");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let config = String::from_utf8(read("config.json")).unwrap();
    let preprocessor = String::from_utf8(read("preprocessor_config.json")).unwrap();
    let checkpoint = Checkpoint::from_hf_bytes(
        &config,
        read("model.safetensors"),
        &read("tokenizer.json"),
        Some(&preprocessor),
        &Device::flex(),
    )
    .unwrap();
    let case = cases().into_iter().find(|c| c.model == "plain").unwrap();
    let (_, err) = reference_logits(&checkpoint, &case);
    assert!(err <= bound(&case), "{err}");

    let mut truncated = read("model.safetensors");
    truncated.truncate(truncated.len() - 100);
    let err = Checkpoint::from_hf_bytes(
        &config,
        truncated,
        &read("tokenizer.json"),
        None,
        &Device::flex(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("truncated"), "{err}");
}

//! Model packs against the HF folders they were made from: an f32 pack gives the reference's
//! logits bit for bit, quantized packs stay close, and damaged packs fail with a message.

mod common;

use clipseg::burn::tensor::Device;
use clipseg::engine::{Kernels, Place, Placement, block_on};
use clipseg::weights::pack::Quant;
use clipseg::{Checkpoint, Segmenter};

use common::*;

fn hf(model: &str) -> Checkpoint {
    Checkpoint::from_hf_dir(&fixtures().join("models").join(model), &Device::flex()).unwrap()
}

fn packed(model: &str, quant: Quant) -> Vec<u8> {
    hf(model).to_pack(quant).unwrap()
}

fn kernels() -> Kernels {
    Kernels::Packed(None)
}

fn load_err(bytes: Vec<u8>) -> String {
    match Checkpoint::from_pack(bytes, &Device::flex()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a damaged pack loaded"),
    }
}

#[test]
fn f32_pack_reproduces_the_reference() {
    for case in cases() {
        let checkpoint =
            Checkpoint::from_pack(packed(&case.model, Quant::F32), &Device::flex()).unwrap();
        let (logits, err) = reference_logits(&checkpoint, &case);
        assert!(err <= bound(&case), "{}: {err}", case.model);
        // Same weights, same code: identical to loading the HF folder.
        let (from_dir, _) = reference_logits(&hf(&case.model), &case);
        assert_eq!(logits, from_dir, "{}", case.model);
    }
}

/// An engine built from a pack part by part (each layer read, converted and dropped; an f16,
/// q8 or q4 token table kept as stored; on the GPU the towers' matrices kept in their f16, 8 or
/// 4 bits and decoded in the kernels) is the engine built from the whole model loaded first:
/// the right tensors reached the right layers, with the same floats, for f32, f16, q8 and q4,
/// on the CPU kernels and on the GPU kernels.
#[test]
fn engines_built_from_a_pack_match_engines_built_from_the_model() {
    // q8 matrices decoded to f32 on the GPU too, so that a pack's logits equal the model's bit
    // for bit (the integer dot product has its own test in src/engine/tests.rs). Set before
    // gpu_kernels() sets the kernels up: no other test in this file uses the GPU.
    clipseg::engine::gpu::override_int8_dot(Some(false));
    let device = Device::flex();
    for (kernels, on_gpu) in [(kernels(), false), (gpu_kernels(), true)] {
        for case in cases() {
            let mut gpu_bytes = Vec::new();
            for quant in [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4] {
                let bytes = packed(&case.model, quant);
                let whole = Checkpoint::from_pack(bytes.clone(), &device).unwrap();
                let after = Segmenter::new(whole, kernels.clone()).unwrap();
                let during = Segmenter::from_pack(bytes, &device, kernels.clone()).unwrap();
                assert_eq!(during.quantized, matches!(quant, Quant::Q8 | Quant::Q4));
                let placed = during.engine.placement();
                // The same executors (only a pack can keep its weights as stored).
                let stored = (placed.stored_tokens, placed.packed_weights);
                let same = Placement {
                    stored_tokens: stored.0,
                    packed_weights: stored.1,
                    ..after.engine.placement()
                };
                assert_eq!(placed, same, "{} {quant:?}", case.model);
                // A token table in f16, 8 or 4 bits stays as stored on the kernels, and gives
                // the same rows as the decoded one.
                assert_eq!(placed.stored_tokens, quant != Quant::F32);
                if on_gpu {
                    // The decoder's ReLU layers, its reduces and head, and the patch embedding
                    // fit the kernels in every fixture, `odd`'s too.
                    let gpu = Some(Place::Gpu);
                    assert_eq!(
                        [placed.reduces, placed.decoder_layers, placed.head],
                        [gpu; 3]
                    );
                    assert_eq!(placed.patch_embedding, Place::Gpu, "{}", case.model);
                    // Towers on the kernels keep the pack's f16 or integers (`odd`'s erf GELU
                    // layers run on burn's ops).
                    let kernels_towers = placed.vision_layers == Place::Gpu;
                    assert_eq!(
                        placed.packed_weights,
                        kernels_towers && quant != Quant::F32,
                        "{} {quant:?}",
                        case.model
                    );
                    gpu_bytes.push(during.engine.gpu_weight_bytes().unwrap());
                } else {
                    assert!(!placed.packed_weights);
                    assert_eq!(during.engine.gpu_weight_bytes(), None);
                }
                let (want, _) = case_logits(&after, &case);
                let (got, err) = case_logits(&during, &case);
                assert_eq!(got, want, "{} {quant:?} GPU {on_gpu}", case.model);
                if quant == Quant::F32 {
                    assert!(err <= bound(&case), "{}: {err}", case.model);
                }
            }
            if let [f32, f16, q8, q4] = gpu_bytes[..] {
                eprintln!(
                    "{}: GPU weight bytes f32 {f32}, f16 {f16}, q8 {q8}, q4 {q4}",
                    case.model
                );
                if case.model != "odd" {
                    let order = q4 < q8 && q8 < f16 && f16 < f32;
                    assert!(order, "{}: {gpu_bytes:?}", case.model);
                }
            }
        }
    }
}

/// A pack whose tensors do not match its config's layer count fails to load with the tensor's
/// name, as an engine and as stored.
#[test]
fn layer_count_mismatch_is_refused() {
    let load = |checkpoint: &Checkpoint| {
        let bytes = checkpoint.to_pack(Quant::Q8).unwrap();
        let engine = Segmenter::from_pack(bytes.clone(), &Device::flex(), kernels()).err();
        let stored = Checkpoint::from_pack(bytes, &Device::flex()).err();
        match (engine, stored) {
            (Some(a), Some(b)) => [a.to_string(), b.to_string()],
            _ => panic!("a pack with a layer too few or too many loaded"),
        }
    };
    let mut fewer = hf("plain");
    fewer.model.clip.vision_model.encoder.layers.pop();
    for err in load(&fewer) {
        assert!(
            err.contains("has no tensor clip.vision_model.encoder.layers."),
            "{err}"
        );
    }
    let mut more = hf("plain");
    let extra = more.model.clip.text_model.encoder.layers[0].clone();
    more.model.clip.text_model.encoder.layers.push(extra);
    for err in load(&more) {
        assert!(
            err.contains("clip.text_model.encoder.layers.")
                && err.contains("not part of the model"),
            "{err}"
        );
    }
}

/// A pack whose config claims far more weights than its tensors hold (text layers by the
/// trillion, a vocabulary of billions, a billion vision layers) or layers by the hundred
/// thousand, however small, is refused before anything is built from it, as an engine and as
/// stored: building first would allocate without bound.
#[test]
fn configs_claiming_more_than_the_tensors_hold_are_refused() {
    let implied = "the config implies at least";
    type Claim = (fn(&mut clipseg::ClipSegConfig), &'static str);
    let claims: [Claim; 4] = [
        (|c| c.text_config.num_hidden_layers = 1 << 40, implied),
        (|c| c.text_config.vocab_size = 1 << 34, implied),
        (
            |c| {
                c.vision_config.num_hidden_layers = 1 << 30;
                c.extract_layers = vec![(1 << 30) - 1];
            },
            implied,
        ),
        (
            |c| {
                let t = &mut c.text_config;
                (t.num_hidden_layers, t.hidden_size) = (100_000, 1);
                (t.num_attention_heads, t.intermediate_size) = (1, 1);
            },
            "at most 1024",
        ),
    ];
    for (claim, needle) in claims {
        let mut checkpoint = hf("plain");
        claim(&mut checkpoint.model.config);
        let bytes = checkpoint.to_pack(Quant::Q8).unwrap();
        let engine = Segmenter::from_pack(bytes.clone(), &Device::flex(), kernels()).err();
        let stored = Checkpoint::from_pack(bytes, &Device::flex()).err();
        for err in [engine, stored] {
            let err = err
                .expect("a pack claiming a huge model loaded")
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}

/// Masks of quantized packs against the f32 masks, on every fixture case. The tiny random models
/// have logits close to 0, which makes their masks far more fragile than a trained model's: the
/// full-size numbers are in the README (tools/pack_report.py).
#[test]
fn quantized_packs_stay_close() {
    for case in cases() {
        let (reference, _) = reference_logits(&hf(&case.model), &case);
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (quant, min_iou) in [(Quant::F16, 0.99), (Quant::Q8, 0.9), (Quant::Q4, 0.5)] {
            let bytes = packed(&case.model, quant);
            // As inference loads it: q8 and q4 then run the encoders in int8.
            let segmenter = Segmenter::from_pack(bytes, &Device::flex(), kernels()).unwrap();
            let (logits, _) = case_logits(&segmenter, &case);
            let err = max_abs_diff(&logits, &reference);
            let mask = |l: &[f32]| l.iter().map(|&v| v > 0.0).collect::<Vec<_>>();
            let iou = iou(&mask(&logits), &mask(&reference));
            eprintln!(
                "{} {} {quant:?}: IoU {iou:.4}, max |logit error| {err:.2e} (max |logit| {scale:.3})",
                case.model, case.image
            );
            assert!(iou >= min_iou, "{} {quant:?}: IoU {iou}", case.model);
        }
    }
}

#[test]
fn damaged_packs_are_refused_with_a_reason() {
    let good = packed("plain", Quant::Q8);
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    // Bytes checked elsewhere (the page's cache, against a published sha256) skip the pass.
    let source = std::sync::Arc::new(flipped.clone());
    assert!(clipseg::weights::pack::Pack::read_verified(source).is_ok());
    assert!(load_err(flipped).contains("checksum mismatch"));
    let half = good[..good.len() / 2].to_vec();
    let err = load_err(half);
    assert!(err.contains("truncated"), "{err}");
    let mut header = good.clone();
    header[30] ^= 0xff;
    let err = load_err(header);
    assert!(
        err.contains("corrupted") || err.contains("unreadable"),
        "{err}"
    );
    let mut future = good;
    future[8] = 99;
    assert!(load_err(future).contains("format version 99"));
    assert!(load_err(Vec::new()).contains("not a clipseg pack"));
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let segmenter = Segmenter::new(hf("plain"), kernels()).unwrap();
    fn err<T>(r: Result<T, clipseg::Error>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }
    let encode = |rgb: &[u8], w, h| block_on(segmenter.encode_image(rgb, w, h));
    assert!(err(encode(&[], 0, 0)).contains("at least 1"));
    // Refused on its size alone, before the (absent) pixels are looked at.
    assert!(err(encode(&[0; 12], 20000, 20000)).contains("the limit is"));
    let (rgb, w, h) = read_rgb("images/tiny.png");
    let image = encode(&rgb, w, h).unwrap();
    let many: Vec<String> = (0..100).map(|i| format!("thing {i}")).collect();
    assert!(err(block_on(segmenter.segment(&image, &many))).contains("100 prompts"));
    // Still usable afterwards.
    block_on(segmenter.segment(&image, &["a cat"])).unwrap();
}

/// A split pack (`convert --split`) loads as the pack it was cut from, with parts so small that
/// tensors straddle them, and a damaged, missing or resized part is named.
#[test]
fn split_packs_load_as_their_pack_and_name_a_bad_part() {
    use clipseg::weights::pack::split::Manifest;
    let dir = std::env::temp_dir().join(format!("clipseg-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = packed("plain", Quant::Q8);
    let (manifest, parts) = Manifest::split(&bytes, 4099, "plain.bpk").unwrap();
    assert!(parts.len() > 10 && parts.iter().all(|p| p.len() <= 4099));
    assert_eq!(parts.concat(), bytes);
    let write = |manifest: &Manifest| {
        for (part, data) in manifest.parts.iter().zip(&parts) {
            std::fs::write(dir.join(&part.file), data).unwrap();
        }
        std::fs::write(dir.join("plain.bpk.json"), manifest.to_json()).unwrap();
    };
    write(&manifest);
    let open = || Checkpoint::open(&dir.join("plain.bpk.json"), &Device::flex());
    let case = cases().into_iter().find(|c| c.model == "plain").unwrap();
    let (split_logits, _) = reference_logits(&open().unwrap(), &case);
    let whole = Checkpoint::from_pack(bytes.clone(), &Device::flex()).unwrap();
    assert_eq!(split_logits, reference_logits(&whole, &case).0);
    let err = |open: Result<Checkpoint, clipseg::Error>| match open {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a damaged split pack loaded"),
    };

    let third = dir.join(&manifest.parts[2].file);
    let mut damaged = parts[2].to_vec();
    damaged[7] ^= 1;
    std::fs::write(&third, &damaged).unwrap();
    let e = err(open());
    assert!(
        e.contains("part 3 of") && e.contains("sha256 mismatch"),
        "{e}"
    );
    std::fs::remove_file(&third).unwrap();
    let e = err(open());
    assert!(
        e.contains("part 3 of") && e.contains("plain.bpk.002"),
        "{e}"
    );
    write(&manifest);
    let mut resized = manifest.clone();
    resized.parts[1].size += 1;
    resized.size += 1;
    write(&resized);
    let e = err(open());
    assert!(
        e.contains("part 2 of") && e.contains("the manifest says 4100"),
        "{e}"
    );
    resized.size -= 1;
    write(&resized);
    let e = err(open());
    assert!(e.contains("the manifest says"), "{e}");
    let mut escaping = manifest.clone();
    escaping.parts[0].file = "../plain.bpk.000".into();
    write(&escaping);
    assert!(err(open()).contains("not a plain file name"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn part_sizes_are_read_with_their_units() {
    use clipseg::weights::pack::split::parse_size;
    assert_eq!(parse_size("20MB").unwrap(), 20_000_000);
    assert_eq!(parse_size("25MiB").unwrap(), 25 << 20);
    assert_eq!(parse_size("1.5k").unwrap(), 1500);
    assert_eq!(parse_size("4099").unwrap(), 4099);
    for bad in ["", "MB", "20XB", "0", "-5MB", "1e3"] {
        let e = parse_size(bad).unwrap_err().to_string();
        assert!(e.contains("e.g. 20MB"), "{bad}: {e}");
    }
}

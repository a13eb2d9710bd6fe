//! Model packs against the HF folders they were made from: an f32 pack gives the reference's
//! logits bit for bit, quantized packs stay close, and damaged packs fail with a message.

mod common;

use clipseg::Segmenter;
use clipseg::burn::tensor::Device;
use clipseg::weights::pack::{self, Quant};

use common::*;

fn hf(model: &str) -> Segmenter {
    Segmenter::from_hf_dir(&fixtures().join("models").join(model), &Device::flex()).unwrap()
}

fn packed(model: &str, quant: Quant) -> Vec<u8> {
    pack::write(&hf(model), quant).unwrap()
}

fn load_err(bytes: Vec<u8>) -> String {
    match Segmenter::from_pack(bytes, &Device::flex()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a damaged pack loaded"),
    }
}

#[test]
fn f32_pack_reproduces_the_reference() {
    for case in cases() {
        let segmenter =
            Segmenter::from_pack(packed(&case.model, Quant::F32), &Device::flex()).unwrap();
        let (_, err) = case_logits(&segmenter, &case);
        assert!(err <= bound(&case), "{}: {err}", case.model);
        // Same weights, same code: identical to loading the HF folder.
        let (from_dir, _) = case_logits(&hf(&case.model), &case);
        assert_eq!(case_logits(&segmenter, &case).0, from_dir, "{}", case.model);
    }
}

/// A segmenter packed for the CPU path has released its projection weights: converting it must
/// fail with a reason, not write a pack of empty tensors.
#[test]
fn a_model_packed_for_cpu_is_not_converted() {
    let mut segmenter = hf("plain");
    segmenter.pack_for_cpu(None).unwrap();
    assert!(segmenter.model.is_packed_for_cpu());
    let err = pack::write(&segmenter, Quant::F32).unwrap_err().to_string();
    assert!(err.contains("load it again"), "{err}");
}

/// Loading for inference packs each encoder layer as it arrives (and keeps a q8 token table
/// 8-bit): the same model as loading all of it and packing after (the right tensors reached the
/// right layers), for f32 and for q8 (int8 on CPUs with an int8 kernel).
#[test]
fn loading_for_inference_matches_packing_after_loading() {
    for case in cases() {
        for quant in [Quant::F32, Quant::Q8] {
            let bytes = packed(&case.model, quant);
            let mut after = Segmenter::from_pack(bytes.clone(), &Device::flex()).unwrap();
            after.pack_for_cpu(None).unwrap();
            let during = Segmenter::from_pack_for_inference(bytes, &Device::flex()).unwrap();
            assert!(during.model.is_packed_for_cpu() || !after.model.is_packed_for_cpu());
            // A q8 token table stays 8-bit, and gives the same rows as the decoded one.
            let tokens = &during.model.clip.text_model.embeddings.cpu_tokens;
            assert_eq!(tokens.is_some(), quant == Quant::Q8);
            assert_eq!(during.quantized, quant == Quant::Q8);
            let (want, _) = case_logits(&after, &case);
            let (got, err) = case_logits(&during, &case);
            assert_eq!(got, want, "{} {quant:?}", case.model);
            if quant == Quant::F32 {
                assert!(err <= bound(&case), "{}: {err}", case.model);
            }
        }
    }
}

/// On a wgpu device with the GPU kernels, loading for inference uploads each encoder layer as
/// it arrives (and the decoder's): the same model as loading all of it and uploading after,
/// and one that can no longer be converted (its burn projections were never filled).
#[test]
fn loading_for_inference_on_the_gpu_matches_uploading_after_loading() {
    let device = wgpu();
    for case in cases() {
        for quant in [Quant::F32, Quant::Q8] {
            let bytes = packed(&case.model, quant);
            let mut after = Segmenter::from_pack(bytes.clone(), &device).unwrap();
            after.model.pack_for_gpu().unwrap();
            let during = Segmenter::from_pack_for_inference(bytes, &device).unwrap();
            let on_gpu = case.model != "odd";
            assert_eq!(during.model.is_packed_for_gpu(), on_gpu, "{}", case.model);
            assert_eq!(after.model.is_packed_for_gpu(), on_gpu, "{}", case.model);
            // The decoder's ReLU layers, its reduces and head, and the patch embedding fit
            // the kernels in every fixture, `odd`'s too.
            let decoder = &during.model.decoder;
            let layers_on_gpu = decoder.layers.iter().all(|l| l.gpu.is_some());
            let reduces_on_gpu = decoder.gpu_reduces.len() == decoder.reduces.len();
            let head_on_gpu = decoder.gpu_head.is_some() && after.model.decoder.gpu_head.is_some();
            let embeddings = &during.model.clip.vision_model.embeddings;
            let patch_on_gpu = embeddings.gpu_patch_embedding.is_some();
            assert!(
                layers_on_gpu && reduces_on_gpu && head_on_gpu && patch_on_gpu,
                "{}",
                case.model
            );
            let (want, _) = case_logits(&after, &case);
            let (got, err) = case_logits(&during, &case);
            assert_eq!(got, want, "{} {quant:?}", case.model);
            if quant == Quant::F32 {
                assert!(err <= bound(&case), "{}: {err}", case.model);
            }
            if on_gpu {
                let err = pack::write(&during, Quant::F32).unwrap_err().to_string();
                assert!(err.contains("load it again"), "{err}");
            }
        }
    }
}

/// A pack whose tensors do not match its config's layer count fails to load for inference
/// with the tensor's name, as the plain load does.
#[test]
fn layer_count_mismatch_is_refused_when_loading_for_inference() {
    let load = |segmenter: &Segmenter| {
        let bytes = pack::write(segmenter, Quant::Q8).unwrap();
        match Segmenter::from_pack_for_inference(bytes, &Device::flex()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a pack with a layer too few or too many loaded"),
        }
    };
    let mut fewer = hf("plain");
    fewer.model.clip.vision_model.encoder.layers.pop();
    let err = load(&fewer);
    assert!(
        err.contains("has no tensor clip.vision_model.encoder.layers."),
        "{err}"
    );
    let mut more = hf("plain");
    let extra = more.model.clip.text_model.encoder.layers[0].clone();
    more.model.clip.text_model.encoder.layers.push(extra);
    let err = load(&more);
    assert!(
        err.contains("clip.text_model.encoder.layers.") && err.contains("not part of the model"),
        "{err}"
    );
}

/// Masks of quantized packs against the f32 masks, on every fixture case. The tiny random models
/// have logits close to 0, which makes their masks far more fragile than a trained model's: the
/// full-size numbers are in the README (tools/pack_report.py).
#[test]
fn quantized_packs_stay_close() {
    for case in cases() {
        let (reference, _) = case_logits(&hf(&case.model), &case);
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (quant, min_iou) in [(Quant::F16, 0.99), (Quant::Q8, 0.9), (Quant::Q4, 0.5)] {
            let bytes = packed(&case.model, quant);
            // As inference loads it: q8 and q4 then run the encoders in int8.
            let segmenter = Segmenter::from_pack_for_inference(bytes, &Device::flex()).unwrap();
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
    let segmenter = hf("plain");
    fn err<T>(r: Result<T, clipseg::Error>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }
    assert!(err(segmenter.encode_image(&[], 0, 0)).contains("at least 1"));
    // Refused on its size alone, before the (absent) pixels are looked at.
    assert!(err(segmenter.encode_image(&[0; 12], 20000, 20000)).contains("the limit is"));
    let (rgb, w, h) = read_rgb("images/tiny.png");
    let image = segmenter.encode_image(&rgb, w, h).unwrap();
    let many: Vec<String> = (0..100).map(|i| format!("thing {i}")).collect();
    assert!(err(segmenter.segment(&image, &many)).contains("100 prompts"));
    // Still usable afterwards.
    segmenter.segment(&image, &["a cat"]).unwrap();
}

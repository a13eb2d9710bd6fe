//! Fixture access shared by the integration tests. Fixtures come from `tools/make_fixtures.py`
//! (HF transformers on random weights); nothing here is hand-written expected output.
#![allow(dead_code)]

use std::path::PathBuf;

use clipseg::npy;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(serde::Deserialize, Debug, Clone)]
pub struct Case {
    pub model: String,
    pub image: String,
    pub prompts: Vec<String>,
    pub input_ids: Vec<Vec<u32>>,
    pub logits: String,
    pub cond: String,
    pub masks: Vec<String>,
    pub max_abs_logit: f32,
    pub orig_size: [usize; 2],
}

/// burn-wgpu on this machine's adapter (lavapipe in CI): burn's ops on a GPU.
pub fn wgpu() -> clipseg::burn::tensor::Device {
    clipseg::burn::tensor::Device::wgpu(clipseg::burn::tensor::DeviceKind::DefaultDevice)
}

/// clipseg's WGSL kernels on this machine's adapter (lavapipe in CI), what the browser's
/// WebGPU engine runs; set up once per test binary.
pub fn gpu_kernels() -> clipseg::engine::Kernels {
    use clipseg::engine::{Gpu, block_on};
    static GPU: std::sync::OnceLock<std::sync::Arc<Gpu>> = std::sync::OnceLock::new();
    let gpu = GPU.get_or_init(|| block_on(Gpu::request()).expect("a GPU adapter (lavapipe)"));
    clipseg::engine::Kernels::Gpu(gpu.clone())
}

pub fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(fixtures().join("reference/cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

pub fn read_npy(rel: &str) -> (Vec<f32>, Vec<usize>) {
    npy::from_bytes(&std::fs::read(fixtures().join(rel)).expect(rel)).expect(rel)
}

pub fn read_rgb(rel: &str) -> (Vec<u8>, usize, usize) {
    let img = image::open(fixtures().join(rel)).expect(rel).into_rgb8();
    let (w, h) = img.dimensions();
    (img.into_raw(), w as usize, h as usize)
}

pub fn read_mask(path: &std::path::Path) -> Vec<bool> {
    image::open(path)
        .expect("mask png")
        .into_luma8()
        .into_raw()
        .into_iter()
        .map(|v| v > 127)
        .collect()
}

/// Our logits for a case's image and prompts, and their max abs error against the reference.
pub fn case_logits(segmenter: &clipseg::Segmenter, case: &Case) -> (Vec<f32>, f32) {
    use clipseg::engine::block_on;
    let (rgb, w, h) = read_rgb(&case.image);
    let image = block_on(segmenter.encode_image(&rgb, w, h)).unwrap();
    let maps = block_on(segmenter.segment(&image, &case.prompts)).unwrap();
    let logits = maps.logits().to_vec();
    let err = max_abs_diff(&logits, &read_npy(&case.logits).0);
    (logits, err)
}

/// The model's own logits (burn's ops, as stored) for a case, and their max abs error.
pub fn reference_logits(checkpoint: &clipseg::Checkpoint, case: &Case) -> (Vec<f32>, f32) {
    let (rgb, w, h) = read_rgb(&case.image);
    let pixels = checkpoint.pixel_values(&rgb, w, h).unwrap();
    let ids = checkpoint.tokenize(&case.prompts).unwrap();
    let logits = checkpoint.model.forward(pixels, &ids).unwrap();
    let logits = logits.try_into_vec_as::<f32>().unwrap();
    let err = max_abs_diff(&logits, &read_npy(&case.logits).0);
    (logits, err)
}

/// The bound: max |ours - ref| <= 1e-4 * max(1, max |ref|).
pub fn bound(case: &Case) -> f32 {
    1e-4 * case.max_abs_logit.max(1.0)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// IoU of two masks; two empty masks agree perfectly.
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    assert_eq!(a.len(), b.len());
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

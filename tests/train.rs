//! Training the decoder on a tiny random-weight model and a synthetic PhraseCut set: the loss
//! falls, a few samples are overfitted, and the run folder is a loadable HF checkpoint.

mod common;

use clipseg::Segmenter;
use clipseg::burn::tensor::Device;
use clipseg::data::{PhraseCut, PromptSet, SyntheticSpec, generate};
use clipseg::train::{Loss, TrainConfig, train};
use common::*;

#[test]
fn decoder_overfits_a_few_samples_and_the_run_loads() {
    let dir = std::env::temp_dir().join(format!("clipseg-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // One image with one object and no negative: the decoder alone must learn its mask.
    let spec = SyntheticSpec {
        images: 1,
        seed: 7,
        max_objects: 1,
        negatives_per_image: 0,
        split_weights: [1, 0, 0, 0],
        ..SyntheticSpec::default()
    };
    generate(dir.join("data"), &spec).unwrap();
    let data = PhraseCut::open(dir.join("data"), "train").unwrap();
    assert_eq!(data.len(), 1);

    let device = Device::flex();
    let mut segmenter = Segmenter::from_hf_dir(&fixtures().join("models/plain"), &device).unwrap();
    let config = TrainConfig {
        steps: 300,
        batch: 1,
        lr: 5e-3,
        lr_min: 5e-4,
        loss: Loss::BceDice,
        seed: 1,
        random_init: true,
        prompts: PromptSet::Plain,
    };
    let run = dir.join("run");
    let logs = train(&mut segmenter, &data, &config, &run, |_| {}).unwrap();
    let mean = |s: &[clipseg::train::StepLog], f: fn(&clipseg::train::StepLog) -> f32| {
        s.iter().map(f).sum::<f32>() / s.len() as f32
    };
    let (first, last) = (&logs[..10], &logs[logs.len() - 10..]);
    let (loss0, loss1) = (mean(first, |l| l.loss), mean(last, |l| l.loss));
    let (iou0, iou1) = (mean(first, |l| l.iou), mean(last, |l| l.iou));
    eprintln!(
        "{} tasks: loss {loss0:.3} -> {loss1:.3}, train IoU {iou0:.3} -> {iou1:.3}",
        data.len()
    );
    assert!(loss1 < 0.5 * loss0, "loss did not fall: {loss0} -> {loss1}");
    assert!(iou1 >= 0.8, "train IoU only {iou1}");

    // The run folder is an HF checkpoint carrying the trained decoder.
    let reloaded = Segmenter::from_hf_dir(&run, &device).unwrap();
    let task = data.get(0).unwrap();
    let image = task.load_image().unwrap();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let logits = |s: &Segmenter| {
        let features = s.encode_image(image.as_raw(), w, h).unwrap();
        s.segment(&features, &[task.phrase()])
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap()
    };
    assert!(max_abs_diff(&logits(&segmenter), &logits(&reloaded)) < 1e-5);
    let csv = std::fs::read_to_string(run.join("log.csv")).unwrap();
    assert_eq!(csv.lines().count(), config.steps + 1);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Same seed, same data: the same losses, bit for bit, on CPU.
#[test]
fn training_is_deterministic_on_cpu() {
    let dir = std::env::temp_dir().join(format!("clipseg-train-det-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    generate(
        dir.join("data"),
        &SyntheticSpec {
            images: 3,
            seed: 2,
            ..SyntheticSpec::default()
        },
    )
    .unwrap();
    let data = PhraseCut::open(dir.join("data"), "train").unwrap();
    let config = TrainConfig {
        steps: 4,
        batch: 2,
        lr: 1e-3,
        lr_min: 1e-4,
        loss: Loss::Bce,
        seed: 11,
        random_init: true,
        prompts: PromptSet::ShufflePlus,
    };
    let run = |name: &str| {
        let mut segmenter =
            Segmenter::from_hf_dir(&fixtures().join("models/refined"), &Device::flex()).unwrap();
        let logs = train(&mut segmenter, &data, &config, &dir.join(name), |_| {}).unwrap();
        logs.iter().map(|l| l.loss).collect::<Vec<_>>()
    };
    let (a, b) = (run("a"), run("b"));
    assert_eq!(a, b);
    assert!(a.iter().all(|l| l.is_finite() && *l > 0.0), "{a:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

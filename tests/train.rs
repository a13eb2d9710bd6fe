//! Training decoders on a tiny random-weight model and a synthetic PhraseCut set: both decoders
//! overfit a few samples, runs reload as checkpoints and packs, `--resume` continues exactly,
//! and unusable samples are skipped by name.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clipseg::Checkpoint;
use clipseg::burn::tensor::{Device, DeviceKind};
use clipseg::data::{PhraseCut, PromptSet, SyntheticSpec, generate};
use clipseg::train::{
    DecoderKind, Event, Loss, RunFile, RunInfo, Session, StepLog, Summary, TrainConfig, train,
};
use clipseg::weights::pack::Quant;
use common::*;

/// Held by each test for its whole run: training seeds and draws from burn's process-wide
/// random generator, so two trainings at once would interleave their draws (the determinism
/// test once saw two same-seed runs differ under CI load).
static ONE_TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_training() -> std::sync::MutexGuard<'static, ()> {
    ONE_TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clipseg-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run_file(config: TrainConfig) -> RunFile {
    RunFile {
        config,
        info: RunInfo::default(),
        seconds: None,
        images_per_s: None,
    }
}

fn start(checkpoint: &mut Checkpoint, data: &PhraseCut, run: &RunFile, out: &Path) -> Summary {
    let stop = AtomicBool::new(false);
    let session = Session {
        out,
        resume: false,
        checkpoint_every: 1000,
        stop: &stop,
    };
    train(checkpoint, data, run, &session, |_| {}).unwrap()
}

/// One image with one object and no negative: the decoder alone must learn its mask.
fn one_sample(dir: &Path) -> PhraseCut {
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
    data
}

/// The model's own logits (burn's ops) for the first task.
fn logits(checkpoint: &Checkpoint, data: &PhraseCut) -> Vec<f32> {
    let task = data.get(0).unwrap();
    let image = task.load_image().unwrap();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let pixels = checkpoint.pixel_values(image.as_raw(), w, h).unwrap();
    let ids = checkpoint.tokenize(&[task.phrase()]).unwrap();
    let logits = checkpoint.model.forward(pixels, &ids).unwrap();
    logits.try_into_vec_as::<f32>().unwrap()
}

fn overfit(decoder: DecoderKind, lr: f64) {
    let dir = temp(&format!("overfit-{decoder:?}"));
    let data = one_sample(&dir);
    let device = Device::flex();
    let mut checkpoint =
        Checkpoint::from_hf_dir(&fixtures().join("models/plain"), &device).unwrap();
    let run = run_file(TrainConfig {
        decoder,
        steps: 300,
        batch: 1,
        lr,
        lr_min: lr / 10.0,
        seed: 1,
        random_init: true,
        prompts: PromptSet::Plain,
        ..TrainConfig::default()
    });
    let out = dir.join("run");
    let logs = start(&mut checkpoint, &data, &run, &out).logs;
    let mean =
        |s: &[StepLog], f: fn(&StepLog) -> f32| s.iter().map(f).sum::<f32>() / s.len() as f32;
    let (first, last) = (&logs[..10], &logs[logs.len() - 10..]);
    let (loss0, loss1) = (mean(first, |l| l.loss), mean(last, |l| l.loss));
    let (iou0, iou1) = (mean(first, |l| l.iou), mean(last, |l| l.iou));
    eprintln!("{decoder:?}: loss {loss0:.3} -> {loss1:.3}, train IoU {iou0:.3} -> {iou1:.3}");
    assert!(loss1 < 0.5 * loss0, "loss did not fall: {loss0} -> {loss1}");
    assert!(iou1 >= 0.8, "train IoU only {iou1}");

    // The run folder is an HF checkpoint carrying the trained decoder, and so is its pack.
    let trained = logits(&checkpoint, &data);
    let reloaded = Checkpoint::from_hf_dir(&out, &device).unwrap();
    assert!(max_abs_diff(&trained, &logits(&reloaded, &data)) < 1e-5);
    let packed = Checkpoint::from_pack(reloaded.to_pack(Quant::F32).unwrap(), &device).unwrap();
    assert!(max_abs_diff(&trained, &logits(&packed, &data)) < 1e-5);
    let csv = std::fs::read_to_string(out.join("log.csv")).unwrap();
    assert_eq!(csv.lines().count(), run.config.steps + 1);
    let saved = RunFile::read(&out).unwrap();
    assert_eq!(saved.config, run.config);
    assert!(saved.images_per_s.unwrap() > 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn transformer_decoder_overfits_a_sample_and_the_run_loads() {
    let _one = one_training();
    overfit(DecoderKind::Transformer, 5e-3);
}

#[test]
fn unet_decoder_overfits_a_sample_and_the_run_loads() {
    let _one = one_training();
    overfit(DecoderKind::Unet, 5e-3);
}

fn three_images(dir: &Path) -> PhraseCut {
    let spec = SyntheticSpec {
        images: 3,
        seed: 2,
        split_weights: [1, 0, 0, 0],
        ..SyntheticSpec::default()
    };
    generate(dir.join("data"), &spec).unwrap();
    PhraseCut::open(dir.join("data"), "train").unwrap()
}

/// Same seed, same data: the same losses, bit for bit, on CPU; and a run stopped after step 3
/// and resumed from its checkpoint logs exactly what the uninterrupted run logs.
#[test]
fn training_is_deterministic_and_resumes_exactly() {
    let _one = one_training();
    let dir = temp("resume");
    let data = three_images(&dir);
    for decoder in [DecoderKind::Transformer, DecoderKind::Unet] {
        let run = run_file(TrainConfig {
            decoder,
            steps: 6,
            batch: 2,
            accum: 2,
            loss: Loss::Bce,
            seed: 11,
            random_init: true,
            negatives: 0.3,
            flip: 0.5,
            ..TrainConfig::default()
        });
        let checkpoint = || {
            Checkpoint::from_hf_dir(&fixtures().join("models/refined"), &Device::flex()).unwrap()
        };
        let straight = |name: &str| {
            let out = dir.join(format!("{decoder:?}-{name}"));
            start(&mut checkpoint(), &data, &run, &out);
            std::fs::read_to_string(out.join("log.csv")).unwrap()
        };
        let (a, b) = (straight("a"), straight("b"));
        assert_eq!(a, b);
        assert_eq!(a.lines().count(), 7);

        let out = dir.join(format!("{decoder:?}-stopped"));
        let stop = AtomicBool::new(false);
        let mut session = Session {
            out: &out,
            resume: false,
            checkpoint_every: 2,
            stop: &stop,
        };
        let first = train(&mut checkpoint(), &data, &run, &session, |event| {
            if let Event::Step(log) = event
                && log.step == 2
            {
                stop.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
        assert_eq!(first.interrupted_at, Some(3));
        assert!(!out.join("model.safetensors").exists());
        // A fresh process: new module, new optimizer, parameter ids restored from the checkpoint.
        session.resume = true;
        let no_stop = AtomicBool::new(false);
        session.stop = &no_stop;
        let mut resumed_checkpoint = checkpoint();
        let second = train(&mut resumed_checkpoint, &data, &run, &session, |_| {}).unwrap();
        assert_eq!(second.logs.first().map(|l| l.step), Some(3));
        assert_eq!(std::fs::read_to_string(out.join("log.csv")).unwrap(), a);
        let finished = Checkpoint::from_hf_dir(&out, &Device::flex()).unwrap();
        let straight_run =
            Checkpoint::from_hf_dir(&dir.join(format!("{decoder:?}-a")), &Device::flex()).unwrap();
        assert_eq!(logits(&finished, &data), logits(&straight_run, &data));

        // Resuming with other settings, or starting over an existing run, is refused.
        let mut other = run.clone();
        other.config.lr *= 2.0;
        let err = train(&mut checkpoint(), &data, &other, &session, |_| {}).unwrap_err();
        assert!(err.to_string().contains("other settings"), "{err}");
        session.resume = false;
        let err = train(&mut checkpoint(), &data, &run, &session, |_| {}).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// An image that doesn't decode and a task whose polygon lies outside its image are skipped
/// with their task ids; training goes on with the rest.
#[test]
fn unusable_samples_are_skipped_by_name() {
    let _one = one_training();
    let dir = temp("skip");
    let data = three_images(&dir);
    let tasks = data.tasks().to_vec();
    let broken_image = tasks[0].image_id;
    std::fs::write(
        dir.join(format!("data/images/{broken_image}.jpg")),
        b"not a jpeg",
    )
    .unwrap();
    let outside = tasks
        .iter()
        .find(|t| t.image_id != broken_image && !t.polygons.is_empty())
        .unwrap()
        .task_id
        .clone();
    let refer = dir.join("data/refer_train.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&refer).unwrap()).unwrap();
    for task in json.as_array_mut().unwrap() {
        if task["task_id"] == outside.as_str() {
            task["Polygons"] = serde_json::json!([[[[-50, -50], [-40, -50], [-40, -40]]]]);
        }
    }
    std::fs::write(&refer, json.to_string()).unwrap();
    let data = PhraseCut::open(dir.join("data"), "train").unwrap();

    let run = run_file(TrainConfig {
        steps: 8,
        batch: 2,
        random_init: true,
        ..TrainConfig::default()
    });
    let mut checkpoint =
        Checkpoint::from_hf_dir(&fixtures().join("models/plain"), &Device::flex()).unwrap();
    let summary = start(&mut checkpoint, &data, &run, &dir.join("run"));
    let skipped: Vec<&str> = summary.skipped.iter().map(|(id, _)| id.as_str()).collect();
    assert!(skipped.contains(&outside.as_str()), "{skipped:?}");
    let image_tasks: Vec<&str> = tasks
        .iter()
        .filter(|t| t.image_id == broken_image)
        .map(|t| t.task_id.as_str())
        .collect();
    assert!(
        skipped.iter().any(|id| image_tasks.contains(id)),
        "{skipped:?}"
    );
    for (id, reason) in &summary.skipped {
        if *id == outside {
            assert!(reason.contains("cover no pixel"), "{reason}");
        } else {
            assert!(reason.contains("decode"), "{reason}");
        }
    }
    assert_eq!(summary.logs.len(), 8);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Training on burn-wgpu (lavapipe in CI) takes the same steps as on the CPU: same loaded
/// decoder, same samples, losses equal to float tolerance.
#[test]
fn training_on_wgpu_matches_the_cpu() {
    let _one = one_training();
    let dir = temp("wgpu");
    let data = three_images(&dir);
    let run = run_file(TrainConfig {
        steps: 3,
        batch: 2,
        ..TrainConfig::default()
    });
    let losses = |device: Device, name: &str| {
        let mut checkpoint =
            Checkpoint::from_hf_dir(&fixtures().join("models/refined"), &device).unwrap();
        let logs = start(&mut checkpoint, &data, &run, &dir.join(name)).logs;
        logs.iter().map(|l| l.loss).collect::<Vec<_>>()
    };
    let cpu = losses(Device::flex(), "cpu");
    let gpu = losses(Device::wgpu(DeviceKind::DefaultDevice), "wgpu");
    eprintln!("cpu {cpu:?}\nwgpu {gpu:?}");
    assert!(max_abs_diff(&cpu, &gpu) < 1e-4, "cpu {cpu:?} wgpu {gpu:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

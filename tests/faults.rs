//! Faults a user's machine deals out: `clipseg train` killed (SIGKILL, no chance to clean up) at
//! random moments, then resumed, must finish with the weights and log of a run never
//! interrupted. CLIPSEG_TRAIN_KILLS sets the number of kills that land while a run is working
//! (default 3, CI's short pass; the long run: 20).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixtures;

fn clipseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clipseg"))
}

fn run(args: &[&str]) {
    let out = clipseg().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "clipseg {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh run's arguments; every step checkpointed, so that each kill loses at most one.
fn train_args(data: &Path, out: &Path) -> Vec<String> {
    let model = fixtures().join("models/refined");
    [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "24",
        "--batch",
        "2",
        "--negatives",
        "0.3",
        "--seed",
        "7",
        "--checkpoint-every",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// xorshift64*: the kill moments, reproducible from the printed seed.
struct Moments(u64);

impl Moments {
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn training_killed_at_random_moments_resumes_to_the_same_weights() {
    let kills: usize = std::env::var("CLIPSEG_TRAIN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir: PathBuf = std::env::temp_dir().join(format!("clipseg-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    run(&["synth", "--out", data_arg, "--images", "4", "--seed", "3"]);

    let straight = dir.join("straight");
    let started = Instant::now();
    run(&train_args(&data, &straight)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let whole = started.elapsed();
    // A process with nothing left to do: start-up (model, data) and exit.
    let started = Instant::now();
    run(&["train", "--resume", straight.to_str().unwrap()]);
    let startup = started.elapsed();
    let step = (whole.saturating_sub(startup)) / 24;

    // First a kill the moment the run's settings (train.json) exist: before any checkpoint.
    let killed = dir.join("killed");
    let mut child = clipseg()
        .args(train_args(&data, &killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !killed.join("train.json").exists() && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.join("checkpoint").exists(),
        "the kill came too late"
    );

    // Then each kill lands within start-up and the next three steps' worth of time: over the run,
    // kills hit start-up, steps, checkpoint writes and the final save.
    let seed = 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    let mut moments = Moments(seed);
    let (mut landed, mut finished) = (0, 0);
    while landed < kills && finished < 3 {
        // Started over while the run has no train.json yet, resumed once it has.
        let args = if killed.join("train.json").exists() {
            vec![
                "train".into(),
                "--resume".into(),
                killed.display().to_string(),
            ]
        } else {
            train_args(&data, &killed)
        };
        let mut child = clipseg()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + (startup + 3 * step).mul_f64(moments.next_fraction());
        let mut status = None;
        while Instant::now() < deadline && status.is_none() {
            std::thread::sleep(Duration::from_millis(2));
            status = child.try_wait().unwrap();
        }
        if status.is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            landed += 1;
            continue;
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "clipseg {} after a kill (seed {seed:#x}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        finished += 1;
    }
    eprintln!(
        "{landed} kills landed (seed {seed:#x}; a run: {whole:?}, start-up {startup:?}); {finished} \
         runs finished before their kill"
    );
    assert_eq!(
        landed, kills,
        "the run finished before all the kills landed"
    );
    run(&["train", "--resume", killed.to_str().unwrap()]);

    let read = |run: &Path, file: &str| std::fs::read(run.join(file)).unwrap();
    assert_eq!(
        String::from_utf8(read(&killed, "log.csv")).unwrap(),
        String::from_utf8(read(&straight, "log.csv")).unwrap(),
        "seed {seed:#x}"
    );
    let (a, b) = (
        tensors(&read(&killed, "model.safetensors")),
        tensors(&read(&straight, "model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for (name, bytes) in &b {
        assert!(
            a.get(name) == Some(bytes),
            "{name}: the resumed run's weights differ from the uninterrupted run's (seed {seed:#x})"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A safetensors file's tensors by name: dtype, shape and bytes. (burn writes the header's
/// metadata in hash order, so two files of the same weights may differ in bytes.)
fn tensors(file: &[u8]) -> std::collections::BTreeMap<String, (String, Vec<u8>)> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).unwrap();
    let data = &file[8 + n..];
    (header.as_object().unwrap().iter())
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, t)| {
            let [start, end] = [0, 1].map(|i| t["data_offsets"][i].as_u64().unwrap() as usize);
            let kind = format!("{} {}", t["dtype"], t["shape"]);
            (name.clone(), (kind, data[start..end].to_vec()))
        })
        .collect()
}

//! Faults and loads a user's machine deals out:
//! - `clipseg train` killed (SIGKILL, no chance to clean up) at random moments, then resumed,
//!   must finish with the weights and log of a run never interrupted. CLIPSEG_TRAIN_KILLS sets
//!   the number of kills that land while a run is working (default 3, CI's short pass; the
//!   issue's long run: 20).
//! - `clipseg predict` over a folder of generated photos of mixed sizes and formats with broken
//!   files among them: every broken file named, every other one segmented, and the process's
//!   peak memory reached early and flat after. CLIPSEG_LOAD_IMAGES sets the number of images
//!   (default 60 up to 3000x2000, CI's pass; 500 takes sizes up to 8000x6000).

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

/// A count from the environment variable `name`, else `default`.
fn env_count(name: &str, default: usize) -> usize {
    (std::env::var(name).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let kills = env_count("CLIPSEG_TRAIN_KILLS", 3);
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

/// `count` generated images in `dir`, every 20th broken (truncated, random bytes, empty); the
/// largest size comes first in each format, so the peak memory of the run should be reached
/// at once. Returns the broken files' names.
fn photo_folder(dir: &Path, count: usize) -> Vec<String> {
    use image::{ImageFormat, Rgb, RgbImage};
    std::fs::create_dir_all(dir).unwrap();
    let largest = if count >= 500 {
        (8000, 6000)
    } else {
        (3000, 2000)
    };
    let sizes = [
        largest,
        (1, 1),
        (640, 480),
        (37, 1200),
        (1920, 1080),
        (333, 333),
        (4000, 30),
    ];
    let formats = [
        (ImageFormat::Jpeg, "jpg"),
        (ImageFormat::Png, "png"),
        (ImageFormat::WebP, "webp"),
        (ImageFormat::Bmp, "bmp"),
        (ImageFormat::Gif, "gif"),
    ];
    let mut broken = Vec::new();
    for i in 0..count {
        // The largest size in every format first; then sizes and formats in turn.
        let (w, h) = if i < formats.len() {
            largest
        } else {
            sizes[i % sizes.len()]
        };
        let (format, ext) = formats[i % formats.len()];
        // GIF encoding quantizes colours, slowly: its images stay small.
        let cap = if ext == "gif" { (1200, 1200) } else { largest };
        let (w, h) = (w.min(cap.0), h.min(cap.1));
        let name = format!("img{i:03}.{ext}");
        let path = dir.join(&name);
        if i % 20 == 19 {
            // Broken: a truncated file, noise with the extension, an empty file in turn.
            let bytes: Vec<u8> = match (i / 20) % 3 {
                0 => {
                    let mut full = Vec::new();
                    RgbImage::from_pixel(64, 64, Rgb([9, 99, 199]))
                        .write_to(&mut std::io::Cursor::new(&mut full), format)
                        .unwrap();
                    full[..full.len() / 3].to_vec()
                }
                1 => (0..4096u32)
                    .map(|k| (k.wrapping_mul(2654435761) >> 24) as u8)
                    .collect(),
                _ => Vec::new(),
            };
            std::fs::write(&path, bytes).unwrap();
            broken.push(name);
            continue;
        }
        let img = RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x ^ y) & 0xff) as u8,
            ])
        });
        img.save_with_format(&path, format).unwrap();
    }
    broken
}

/// VmHWM (peak resident memory so far) of a running process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn batch_predict_names_broken_files_and_its_memory_stays_flat() {
    let count = env_count("CLIPSEG_LOAD_IMAGES", 60);
    let dir = std::env::temp_dir().join(format!("clipseg-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (photos, out) = (dir.join("photos"), dir.join("masks"));
    let broken = photo_folder(&photos, count);
    let model = fixtures().join("models/refined");
    let mut child = clipseg()
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a cat",
        ])
        .args([
            "--image",
            photos.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The peak so far, sampled against the number of masks written.
    let mut samples: Vec<(usize, u64)> = Vec::new();
    while child.try_wait().unwrap().is_none() {
        let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
        if let Some(peak) = peak_rss(child.id()) {
            samples.push((written, peak));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "broken files must fail the run: {stderr}"
    );
    for name in &broken {
        assert!(
            stderr.contains(&format!("skipped {}", photos.join(name).display())),
            "{name} not named: {stderr}"
        );
    }
    let masks = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(masks, count - broken.len(), "{stderr}");
    // Flat: the peak once a tenth of the images (the largest among them) are done, against
    // the peak at the end.
    let early = samples.iter().find(|(w, _)| *w >= count / 10).map(|s| s.1);
    let last = samples.last().map(|s| s.1);
    let (Some(early), Some(last)) = (early, last) else {
        panic!("too few samples: {samples:?}")
    };
    eprintln!(
        "{count} images ({} broken): peak RSS {:.0} MiB after {} images, {:.0} MiB at the end",
        broken.len(),
        early as f64 / 1048576.0,
        count / 10,
        last as f64 / 1048576.0
    );
    assert!(
        last as f64 <= early as f64 * 1.1,
        "the peak grew from {early} to {last} bytes over the run"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

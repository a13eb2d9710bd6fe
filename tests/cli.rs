//! The `clipseg` binary as a user meets it: outputs on the fixtures, and one-line errors (exit
//! code != 0, no panic) for every bad input the issue lists.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn clipseg(args: &[&str]) -> (bool, String) {
    clipseg_with(args, &[])
}

/// [`clipseg`] with environment variables set for it.
fn clipseg_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clipseg"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clipseg-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of a fixture model folder that a test may damage.
fn model_copy(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let src = fixtures().join("models/plain");
    for file in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
    ] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    dir
}

/// A synthetic PhraseCut-format dataset in `out`.
fn synth(out: &std::path::Path, images: &str, seed: &str) {
    let (ok, err) = clipseg(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--images",
        images,
        "--seed",
        seed,
    ]);
    assert!(ok, "{err}");
}

fn assert_one_line_error(ok: bool, stderr: &str, needle: &str) {
    assert!(!ok, "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

fn predict_args<'a>(model: &'a str, image: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "predict", "--model", model, "--image", image, "--prompt", "a cat", "--logits", out,
    ]
}

/// `clipseg predict` on the plain fixture model, then `args`.
fn predict_plain(args: &[&str]) -> (bool, String) {
    let model = fixtures().join("models/plain");
    let mut all = vec!["predict", "--model", model.to_str().unwrap()];
    all.extend(args);
    clipseg(&all)
}

/// A path as a command-line argument.
fn arg(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn predict_writes_reference_logits_and_masks() {
    let case = cases().into_iter().find(|c| c.model == "refined").unwrap();
    let dir = temp_dir("predict");
    let logits = dir.join("l.npy");
    let mask = dir.join("m.png");
    let model = fixtures().join("models").join(&case.model);
    let image = fixtures().join(&case.image);
    let mut args = vec![
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
    ];
    for p in &case.prompts {
        args.extend(["--prompt", p.as_str()]);
    }
    args.extend([
        "--logits",
        logits.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
    ]);
    let (ok, stderr) = clipseg(&args);
    assert!(ok, "{stderr}");

    let (ours, shape) = clipseg::npy::from_bytes(&std::fs::read(&logits).unwrap()).unwrap();
    let (reference, ref_shape) = read_npy(&case.logits);
    assert_eq!(shape, ref_shape);
    assert!(max_abs_diff(&ours, &reference) <= bound(&case));
    for (k, ref_mask) in case.masks.iter().enumerate() {
        let ours = read_mask(&dir.join(format!("m-{k}.png")));
        assert!(iou(&ours, &read_mask(&fixtures().join(ref_mask))) >= 0.99);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Phone photos: for each EXIF orientation, the masks come out at the displayed size and match
/// those of the same photo turned upright beforehand (Pillow's `exif_transpose` of the same
/// JPEG, saved losslessly: tests/fixtures/formats, tools/make_format_fixtures.py).
#[test]
fn predict_applies_the_exif_orientation() {
    let dir = temp_dir("orientation");
    let formats = fixtures().join("formats");
    let mask_of = |image: PathBuf, name: &str| {
        let mask = dir.join(name);
        let (ok, stderr) = predict_plain(&[
            "--image",
            arg(&image),
            "--prompt",
            "a red square",
            "--mask",
            arg(&mask),
        ]);
        assert!(ok, "{stderr}");
        let png = image::open(&mask).unwrap();
        ((png.width(), png.height()), read_mask(&mask))
    };
    for n in 1..=8 {
        let (size, got) = mask_of(formats.join(format!("orient-{n}.jpg")), "got.png");
        let upright = formats.join(format!("want/orient-{n}.jpg.png"));
        let (want_size, want) = mask_of(upright, "want.png");
        // Orientations 5 to 8 turn the 40 x 24 photo by a quarter.
        assert_eq!(
            size,
            if n >= 5 { (24, 40) } else { (40, 24) },
            "orientation {n}"
        );
        assert_eq!(size, want_size, "orientation {n}");
        let iou = iou(&got, &want);
        assert!(iou >= 0.99, "orientation {n}: IoU {iou}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Many images in one run: a folder and a file, a broken file among them. The good ones get
/// the masks (and logits) a single-image run writes, byte for byte; the broken one is named,
/// skipped, and makes the exit status non-zero; --skip-existing then redoes nothing.
#[test]
fn predict_over_many_images() {
    let dir = temp_dir("batch");
    let images = dir.join("in");
    std::fs::create_dir_all(&images).unwrap();
    for name in ["landscape.png", "portrait.png"] {
        std::fs::copy(fixtures().join("images").join(name), images.join(name)).unwrap();
    }
    std::fs::write(images.join("broken.jpg"), "not a JPEG").unwrap();
    std::fs::write(images.join("notes.txt"), "not an image, not picked").unwrap();
    let photo = fixtures().join("images/photo.jpg");
    let out = dir.join("out");
    let prompts = ["--prompt", "a cat", "--prompt", "the sky"];
    let batch = |extra: &[&str]| {
        let mut args = vec!["--image", arg(&images), "--image", arg(&photo)];
        args.extend(prompts);
        args.extend(["--out-dir", arg(&out), "--save-logits"]);
        args.extend(extra);
        predict_plain(&args)
    };
    let (ok, err) = batch(&[]);
    assert!(!ok, "a broken file must fail the run: {err}");
    assert!(
        err.contains("skipped") && err.contains("broken.jpg"),
        "{err}"
    );
    assert!(err.contains("3 image(s) segmented"), "{err}");
    assert!(
        err.lines().last().unwrap().contains("1 of 4 images"),
        "{err}"
    );
    for stem in ["landscape", "portrait", "photo"] {
        let image = if stem == "photo" {
            photo.clone()
        } else {
            images.join(format!("{stem}.png"))
        };
        let single = dir.join(format!("single-{stem}.png"));
        let logits = dir.join(format!("single-{stem}.npy"));
        let mut args = vec!["--image", arg(&image), "--mask", arg(&single)];
        args.extend(["--logits", arg(&logits)]);
        args.extend(prompts);
        let (ok, err) = predict_plain(&args);
        assert!(ok, "{err}");
        for k in 0..2 {
            let read = |p: PathBuf| std::fs::read(p).unwrap();
            let batch_mask = read(out.join(format!("{stem}-{k}.png")));
            assert_eq!(
                batch_mask,
                read(dir.join(format!("single-{stem}-{k}.png"))),
                "{stem} {k}"
            );
        }
        assert_eq!(
            std::fs::read(out.join(format!("{stem}.npy"))).unwrap(),
            std::fs::read(&logits).unwrap()
        );
    }
    assert!(!out.join("notes.png").exists() && !out.join("broken-0.png").exists());
    // Resumed: every good image is there already.
    let (ok, err) = batch(&["--skip-existing"]);
    assert!(!ok);
    assert!(
        err.contains("0 image(s) segmented") && err.contains("3 already there"),
        "{err}"
    );

    // Several images without --out-dir, and two that would write the same files: refused.
    let mask = dir.join("m.png");
    let (ok, err) = predict_plain(&[
        "--image",
        arg(&images),
        "--prompt",
        "a",
        "--mask",
        arg(&mask),
    ]);
    assert_one_line_error(ok, &err, "--out-dir");
    let twin = dir.join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    std::fs::copy(
        fixtures().join("images/landscape.png"),
        twin.join("landscape.png"),
    )
    .unwrap();
    let mut args = vec!["--image", arg(&images), "--image", arg(&twin)];
    args.extend(["--prompt", "a cat", "--out-dir", arg(&out)]);
    let (ok, err) = predict_plain(&args);
    assert_one_line_error(ok, &err, "would both write");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Composed masks against the plain per-prompt masks they come from: the union is their OR,
/// a subtraction A AND NOT B, a dilation by 3 px the brute-force disk dilation, a cut-out the
/// photo with the mask as alpha; soft masks can't be grown (one-line error).
#[test]
fn predict_composes_masks() {
    let dir = temp_dir("compose");
    let image = fixtures().join("images/landscape.png");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec![
            "--image",
            arg(&image),
            "--prompt",
            "a cat",
            "--mask",
            arg(&out),
        ];
        args.extend(extra);
        let (ok, err) = predict_plain(&args);
        assert!(ok, "{err}");
    };
    let grey = |name: &str| image::open(dir.join(name)).unwrap().into_luma8().into_raw();
    run("plain.png", &["--prompt", "the sky"]);
    let (a, b) = (grey("plain-0.png"), grey("plain-1.png"));
    assert!(
        a.iter().zip(&b).any(|(x, y)| x != y),
        "the two prompts' masks differ"
    );
    run("union.png", &["--prompt", "the sky", "--union"]);
    let or: Vec<u8> = a.iter().zip(&b).map(|(x, y)| *x.max(y)).collect();
    assert_eq!(grey("union.png"), or);
    run("minus.png", &["--subtract", "the sky"]);
    let minus: Vec<u8> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| if *y == 255 { 0 } else { *x })
        .collect();
    assert_eq!(grey("minus.png"), minus);
    run("grown.png", &["--dilate", "3", "--cutout"]);
    let (w, h) = (640i64, 427i64);
    let dilated: Vec<u8> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let near = (-3..=3i64).flat_map(|dy| (-3..=3i64).map(move |dx| (dx, dy)));
            let hit = near
                .filter(|(dx, dy)| dx * dx + dy * dy <= 9)
                .any(|(dx, dy)| {
                    let (u, v) = (x + dx, y + dy);
                    (0..w).contains(&u) && (0..h).contains(&v) && a[(v * w + u) as usize] == 255
                });
            if hit { 255 } else { 0 }
        })
        .collect();
    assert_ne!(dilated, a, "the dilation moved the border");
    assert_eq!(grey("grown.png"), dilated);
    let cutout = image::open(dir.join("grown-cutout.png"))
        .unwrap()
        .into_rgba8();
    let photo = image::open(&image).unwrap().into_rgb8();
    for ((c, p), m) in cutout.pixels().zip(photo.pixels()).zip(&dilated) {
        assert_eq!((c.0[..3].to_vec(), c.0[3]), (p.0.to_vec(), *m));
    }
    let (ok, err) = predict_plain(&[
        "--image",
        arg(&image),
        "--prompt",
        "a",
        "--soft",
        "--feather",
        "4",
    ]);
    assert_one_line_error(ok, &err, "soft mask");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let dir = temp_dir("bad");
    let out = dir.join("o.npy");
    let out = out.to_str().unwrap();
    let plain = fixtures().join("models/plain");
    let plain = plain.to_str().unwrap();
    let good_image = fixtures().join("images/tiny.png");
    let good_image = good_image.to_str().unwrap();

    let text_file = dir.join("notes.png");
    std::fs::write(&text_file, "this is not an image").unwrap();
    let (ok, err) = clipseg(&predict_args(plain, text_file.to_str().unwrap(), out));
    assert_one_line_error(ok, &err, "not a readable image");

    let missing = dir.join("missing.png");
    let (ok, err) = clipseg(&predict_args(plain, missing.to_str().unwrap(), out));
    assert_one_line_error(ok, &err, "can't open");

    // A valid PNG header announcing 30000x30000 px: refused before any pixel is allocated.
    let huge = dir.join("huge.png");
    std::fs::write(&huge, png_header(30000, 30000)).unwrap();
    let (ok, err) = clipseg(&predict_args(plain, huge.to_str().unwrap(), out));
    assert_one_line_error(ok, &err, "30000");

    let zero = dir.join("zero.png");
    std::fs::write(&zero, png_header(0, 5)).unwrap();
    let (ok, err) = clipseg(&predict_args(plain, zero.to_str().unwrap(), out));
    assert_one_line_error(ok, &err, "zero.png");

    let (ok, err) = clipseg(&predict_args("/nonexistent/model", good_image, out));
    assert_one_line_error(ok, &err, "no such model folder");

    let truncated = model_copy("truncated");
    let weights = truncated.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap();
    file.set_len(len / 2).unwrap();
    let (ok, err) = clipseg(&predict_args(truncated.to_str().unwrap(), good_image, out));
    assert_one_line_error(ok, &err, "truncated");

    let odd_config = model_copy("config");
    let config_path = odd_config.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["extract_layers"] = serde_json::json!([1, 7]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let (ok, err) = clipseg(&predict_args(odd_config.to_str().unwrap(), good_image, out));
    assert_one_line_error(ok, &err, "extract_layers");

    // A config claiming a vocabulary of 16 billion tokens: refused before the model is built.
    let huge_config = model_copy("huge");
    let config_path = huge_config.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["text_config"]["vocab_size"] = serde_json::json!(1u64 << 34);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let (ok, err) = clipseg(&predict_args(
        huge_config.to_str().unwrap(),
        good_image,
        out,
    ));
    assert_one_line_error(ok, &err, "implies at least");

    let wrong_shape = model_copy("shape");
    let config_path = wrong_shape.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["reduce_dim"] = serde_json::json!(8);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let (ok, err) = clipseg(&predict_args(
        wrong_shape.to_str().unwrap(),
        good_image,
        out,
    ));
    assert_one_line_error(
        ok,
        &err,
        "tensor decoder.film_add.bias has shape [16] in the checkpoint but config.json implies [8]",
    );

    let (ok, err) = clipseg(&[
        "predict",
        "--model",
        plain,
        "--image",
        good_image,
        "--prompt",
        "x",
        "--logits",
        out,
        "--threshold",
        "1.5",
    ]);
    assert_one_line_error(ok, &err, "--threshold");

    for d in [dir, truncated, odd_config, huge_config, wrong_shape] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// A PNG claiming `w` x `h` RGB pixels whose image data is empty: its header is all a
/// decoder can trust, as with a hostile or damaged file.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for chunk in [ihdr, b"IDAT".to_vec(), b"IEND".to_vec()] {
        out.extend((chunk.len() as u32 - 4).to_be_bytes());
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `synth` then `eval` on it: the report has the promised shape, and the saved logits
/// reproduce its numbers through the library's metrics (so anyone can recompute them).
#[test]
fn eval_on_synthetic_phrasecut_is_reproducible_from_saved_logits() {
    let dir = temp_dir("eval");
    let data = dir.join("data");
    let logits_dir = dir.join("logits");
    let out = dir.join("metrics.json");
    synth(&data, "8", "3");
    let model = fixtures().join("models/plain");
    let (ok, err) = clipseg(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--split",
        "train",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--save-logits",
        logits_dir.to_str().unwrap(),
        "--threshold",
        "0.4",
    ]);
    assert!(ok, "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for key in [
        "seed.accuracy",
        "seed.dice",
        "seed.iou",
        "clipseg.miou",
        "clipseg.iou_fg",
        "clipseg.ap",
        "phrasecut.mean_iou",
        "phrasecut.cum_iou",
        "phrasecut.pr@0.5",
        "phrasecut.pr@0.9",
    ] {
        let (group, name) = key.split_once('.').unwrap();
        assert!(
            report[group].get(name).is_some(),
            "{key} missing in {report}"
        );
    }
    assert!((report["threshold"].as_f64().unwrap() - 0.4).abs() < 1e-6);

    let dataset = clipseg::data::PhraseCut::open(&data, "train").unwrap();
    assert_eq!(report["count"].as_u64().unwrap() as usize, dataset.len());
    let mut scores = clipseg::metrics::Evaluation::new(0.4).unwrap();
    for task in dataset.iter() {
        let path = logits_dir.join(format!("{}.npy", task.task.task_id));
        let (map, shape) = clipseg::npy::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
        let (side_h, side_w) = (shape[0], shape[1]);
        let gt = task.gt_mask();
        let (w, h) = (gt.width as usize, gt.height as usize);
        let small: Vec<bool> = clipseg::data::resize_nearest(&gt.data, w, h, side_w, side_h)
            .iter()
            .map(|&v| v != 0)
            .collect();
        let full: Vec<bool> = gt.data.iter().map(|&v| v != 0).collect();
        let sig = |l: f32| 1.0 / (1.0 + (-l).exp());
        let probs: Vec<f32> = map.iter().map(|&l| sig(l)).collect();
        let probs_full: Vec<f32> =
            clipseg::postprocess::resize_bilinear_f32(&map, side_h, side_w, h, w)
                .into_iter()
                .map(sig)
                .collect();
        scores.add(&probs, &small, &probs_full, &full).unwrap();
    }
    // Same numbers up to summation order (eval walks tasks image by image).
    let again = serde_json::to_value(scores.report().unwrap()).unwrap();
    for (group, fields) in report.as_object().unwrap() {
        match fields.as_object() {
            Some(fields) => {
                for (name, value) in fields {
                    let (a, b) = (
                        value.as_f64().unwrap(),
                        again[group][name].as_f64().unwrap(),
                    );
                    assert!((a - b).abs() < 1e-12, "{group}.{name}: {a} vs {b}");
                }
            }
            None => assert_eq!(fields, &again[group], "{group}"),
        }
    }

    let (ok, err) = clipseg(&[
        "eval",
        "--data",
        dir.join("nope").to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(ok, &err, "nope");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `train` writes a run folder that `eval` and `predict` take as a model.
#[test]
fn train_then_eval_the_run() {
    let dir = temp_dir("train");
    let data = dir.join("data");
    let run = dir.join("run");
    synth(&data, "4", "9");
    let model = fixtures().join("models/refined");
    let (ok, err) = clipseg(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--loss",
        "dice",
        "--steps",
        "3",
        "--batch",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("log.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let metrics = dir.join("m.json");
    let (ok, err) = clipseg(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--split",
        "train",
        "--model",
        run.to_str().unwrap(),
        "--out",
        metrics.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, err) = clipseg(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "3",
        "--lr=-1",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_one_line_error(ok, &err, "--lr");

    // A U-Net run, then `--resume` alone on it: nothing left to do, the run stays as it was.
    let unet = dir.join("unet");
    let (ok, err) = clipseg(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--decoder",
        "unet",
        "--steps",
        "2",
        "--batch",
        "1",
        "--out",
        unet.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let log = std::fs::read_to_string(unet.join("log.csv")).unwrap();
    let (ok, err) = clipseg(&["train", "--resume", unet.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(unet.join("log.csv")).unwrap(), log);
    let train_json = std::fs::read_to_string(unet.join("train.json")).unwrap();
    assert!(train_json.contains("--decoder unet"), "{train_json}");
    let (ok, err) = clipseg(&["train", "--resume", dir.join("nothing").to_str().unwrap()]);
    assert_one_line_error(ok, &err, "train.json");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_prints_one_json_line() {
    let model = fixtures().join("models/plain");
    let image = fixtures().join("images/tiny.png");
    let out = Command::new(env!("CARGO_BIN_EXE_clipseg"))
        .args([
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--iters",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let line: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in ["load_s", "first_pass_s", "full_pass_s", "reprompt_s"] {
        assert!(
            line[key].as_f64().is_some_and(|t| t > 0.0),
            "{key} in {line}"
        );
    }
}

#[test]
fn convert_writes_a_pack_that_predict_reads() {
    let dir = temp_dir("convert");
    let pack = dir.join("plain-q8.bpk");
    let model = fixtures().join("models/plain");
    let (ok, err) = clipseg(&[
        "convert",
        "--model",
        model.to_str().unwrap(),
        "--out",
        pack.to_str().unwrap(),
        "--quant",
        "q8",
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&pack).unwrap();
    let sha = std::fs::read_to_string(dir.join("plain-q8.bpk.sha256")).unwrap();
    assert_eq!(
        sha,
        clipseg::weights::pack::sha256_line(&bytes, "plain-q8.bpk")
    );
    let image = fixtures().join("images/tiny.png");
    let out = dir.join("logits.npy");
    let (ok, err) = clipseg(&predict_args(
        pack.to_str().unwrap(),
        image.to_str().unwrap(),
        out.to_str().unwrap(),
    ));
    assert!(ok, "{err}");
    // The q8 pack's dequantized weights in f32, in int8, in int8 with bf16 attention (the
    // default for a q8 pack) and with 7-bit activations: all run, and agree to quantization
    // error.
    let mut logits = Vec::new();
    for precision in ["f32", "int8", "int8-bf16", "int8-a7"] {
        let out = dir.join(format!("logits-{precision}.npy"));
        let mut args = predict_args(
            pack.to_str().unwrap(),
            image.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        args.extend(["--precision", precision]);
        let (ok, err) = clipseg_with(&args, &[("CLIPSEG_BF16_ATTENTION", "on")]);
        assert!(ok, "{precision}: {err}");
        logits.push(
            clipseg::npy::from_bytes(&std::fs::read(&out).unwrap())
                .unwrap()
                .0,
        );
    }
    let diff = max_abs_diff(&logits[0], &logits[1]);
    let scale = logits[0].iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        diff < 0.2 * scale.max(1.0),
        "f32 vs int8: {diff} (max |logit| {scale})"
    );
    if clipseg::engine::cpu::qgemm::kernel_name(false).is_some() {
        assert!(diff > 0.0, "--precision int8 ran in f32");
    }
    let a7 = max_abs_diff(&logits[1], &logits[3]);
    assert!(a7 < 0.2 * scale.max(1.0), "int8 vs int8-a7: {a7}");
    if clipseg::engine::cpu::qgemm::kernel_name(true).is_some() {
        assert!(a7 > 0.0, "--precision int8-a7 ran as int8");
    }
    let bf16 = max_abs_diff(&logits[1], &logits[2]);
    assert!(bf16 < 0.05 * scale.max(1.0), "int8 vs int8-bf16: {bf16}");
    // bf16 attention (forced on for these runs) only where the CPU has it; elsewhere the very
    // same values.
    let bf16_here = clipseg::engine::cpu::bf16_available();
    assert_eq!(bf16 > 0.0, bf16_here, "int8 vs int8-bf16: {bf16}");
    let mut args = predict_args(
        pack.to_str().unwrap(),
        image.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    args.extend(["--precision", "int4"]);
    let (ok, err) = clipseg(&args);
    assert!(!ok && err.contains("invalid value 'int4'"), "{err}");
    let (ok, err) = clipseg(&[
        "convert",
        "--model",
        model.to_str().unwrap(),
        "--out",
        pack.to_str().unwrap(),
        "--quant",
        "q3",
    ]);
    assert_one_line_error(ok, &err, "unknown quantization");
    // A file that is not a pack, given as --model.
    let (ok, err) = clipseg(&predict_args(
        image.to_str().unwrap(),
        image.to_str().unwrap(),
        out.to_str().unwrap(),
    ));
    assert_one_line_error(ok, &err, "not a clipseg pack");
}

/// `--visual-prompt`: the logits are the text prompts' then the examples', each HF's
/// (`conditional_pixel_values`); the same through a pack; with several images the examples
/// serve all; a `--text-only` pack and a bad region are one-line errors.
#[test]
fn predict_with_image_prompts() {
    let dir = temp_dir("visual");
    let image = |name: &str| fixtures().join("images").join(name);
    let (portrait, tiny, landscape) = (
        image("portrait.png"),
        image("tiny.png"),
        image("landscape.png"),
    );
    let refined = fixtures().join("models/refined");
    let pack = dir.join("refined.bpk");
    let (ok, err) = clipseg(&[
        "convert",
        "--model",
        arg(&refined),
        "--out",
        arg(&pack),
        "--quant",
        "f32",
    ]);
    assert!(ok, "{err}");
    let text_ref = read_npy("reference/refined__portrait/logits.npy").0;
    let visual_ref = read_npy("visual/refined__portrait.npy").0;
    let plane = 352 * 352;
    for model in [&refined, &pack] {
        let out = dir.join("logits.npy");
        let (ok, err) = clipseg(&[
            "predict",
            "--model",
            arg(model),
            "--image",
            arg(&portrait),
            "--prompt",
            "a photo of a cat",
            "--visual-prompt",
            arg(&tiny),
            "--visual-prompt",
            arg(&landscape),
            "--logits",
            arg(&out),
        ]);
        assert!(ok, "{err}");
        let (logits, shape) = clipseg::npy::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(shape, [3, 352, 352]);
        let text_err = max_abs_diff(&logits[..plane], &text_ref[..plane]);
        let visual_err = max_abs_diff(&logits[plane..], &visual_ref);
        eprintln!(
            "{}: text {text_err:.2e}, visual {visual_err:.2e}",
            model.display()
        );
        assert!(
            text_err < 1e-4 * 5.0 && visual_err < 1e-4 * 5.0,
            "{text_err} {visual_err}"
        );
    }
    // Two images, one example (encoded once): each image's logits are HF's.
    let plain = fixtures().join("models/plain");
    let out_dir = dir.join("many");
    let (ok, err) = clipseg(&[
        "predict",
        "--model",
        arg(&plain),
        "--image",
        arg(&image("square352.png")),
        "--image",
        arg(&landscape),
        "--visual-prompt",
        arg(&portrait),
        "--out-dir",
        arg(&out_dir),
        "--save-logits",
    ]);
    assert!(ok, "{err}");
    for stem in ["square352", "landscape"] {
        let ours =
            clipseg::npy::from_bytes(&std::fs::read(out_dir.join(format!("{stem}.npy"))).unwrap())
                .unwrap()
                .0;
        let reference = read_npy(&format!("visual/plain__{stem}.npy")).0;
        let err = max_abs_diff(&ours, &reference);
        assert!(err < 1e-4 * 5.0, "{stem}: {err}");
        assert!(out_dir.join(format!("{stem}.png")).is_file());
    }
    // A region of the example: a different example, so different logits, of the same shape.
    let out = dir.join("region.npy");
    let with_example = |spec: &str| {
        let args = [
            "--image",
            arg(&landscape),
            "--visual-prompt",
            spec,
            "--logits",
            arg(&out),
        ];
        predict_plain(&args)
    };
    let (ok, err) = with_example(&format!("{}@40,60,200,300", arg(&portrait)));
    assert!(ok, "{err}");
    let ours = clipseg::npy::from_bytes(&std::fs::read(&out).unwrap())
        .unwrap()
        .0;
    assert!(max_abs_diff(&ours, &read_npy("visual/plain__landscape.npy").0) > 1e-2);
    // The same box as a mask image (white inside): the very same logits.
    let mask = dir.join("box.png");
    let mut marks = image::GrayImage::new(300, 517);
    for (x, y, p) in marks.enumerate_pixels_mut() {
        p.0 = [if (40..240).contains(&x) && (60..360).contains(&y) {
            255
        } else {
            0
        }];
    }
    marks.save(&mask).unwrap();
    let out_box = std::fs::read(&out).unwrap();
    let (ok, err) = with_example(&format!("{}@{}", arg(&portrait), arg(&mask)));
    assert!(ok, "{err}");
    assert!(
        std::fs::read(&out).unwrap() == out_box,
        "mask and box differ"
    );
    let (ok, err) = with_example(&format!("{}@{}", arg(&landscape), arg(&mask)));
    assert_one_line_error(ok, &err, "the mask is 300x517 px but its image is 640x427");
    let (ok, err) = with_example(&format!("{}@40,60,400,300", arg(&portrait)));
    assert_one_line_error(ok, &err, "outside the 300x517 image");
    let (ok, err) = with_example("nothere.png");
    assert_one_line_error(ok, &err, "nothere.png");
    // A pack without what image prompts need.
    let text_only = dir.join("text-only.bpk");
    let (ok, err) = clipseg(&[
        "convert",
        "--model",
        arg(&refined),
        "--out",
        arg(&text_only),
        "--quant",
        "f32",
        "--text-only",
    ]);
    assert!(ok, "{err}");
    let (full, small) = (
        std::fs::metadata(&pack).unwrap().len(),
        std::fs::metadata(&text_only).unwrap().len(),
    );
    assert!(small < full, "{small} >= {full}");
    let (ok, err) = clipseg(&[
        "predict",
        "--model",
        arg(&text_only),
        "--image",
        arg(&portrait),
        "--visual-prompt",
        arg(&tiny),
        "--logits",
        arg(&out),
    ]);
    assert_one_line_error(ok, &err, "--text-only");
    // Text prompts still work on it.
    let (ok, err) = clipseg(&predict_args(arg(&text_only), arg(&portrait), arg(&out)));
    assert!(ok, "{err}");
}

/// `make package` publishes pkg/ under the crate's version.
#[test]
fn the_npm_package_has_the_crate_version() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkg/package.json")).unwrap();
    let package: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(package["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(package["name"], "clipseg-web");
}

//! `clipseg report` on two fake run folders: the table's numbers come from the CSVs, the charts
//! have one line per run, the output is deterministic, and bad inputs are one-line errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use clipseg::report::write_report;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clipseg-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Per-step (loss, iou) of the fake runs: 20 steps, so the last 10% is the last two.
fn curve(scale: f64) -> Vec<(f64, f64)> {
    (0..20)
        .map(|i| (scale / (1.0 + i as f64), 0.04 * i as f64))
        .collect()
}

fn make_run(root: &Path, name: &str, scale: f64, metrics: bool) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("train.json"),
        format!(
            r#"{{"decoder": "transformer", "loss": "bce", "steps": 20, "batch": 4, "accum": 1,
               "images_per_s": 12.345, "data": "data/synth", "split": "train", "unknown": [1],
               "command": "clipseg train --data data/synth --out {name}"}}"#
        ),
    )
    .unwrap();
    let mut csv = String::from("step,lr,loss,iou\n");
    for (step, (loss, iou)) in curve(scale).into_iter().enumerate() {
        csv.push_str(&format!("{step},0.001,{loss},{iou}\n"));
    }
    std::fs::write(dir.join("log.csv"), csv).unwrap();
    if metrics {
        std::fs::write(
            dir.join("metrics.json"),
            r#"{"seed": {"accuracy": 0.91234, "dice": 0.5, "iou": 0.4},
                "clipseg": {"miou": 0.35, "iou_fg": 0.45, "ap": null},
                "phrasecut": {"mean_iou": 0.3, "cum_iou": 0.42, "pr@0.5": 0.25, "pr@0.6": 0.2,
                              "pr@0.7": 0.15, "pr@0.8": 0.1, "pr@0.9": 0.05},
                "count": 10, "skipped": 0, "threshold": 0.5, "split": "test"}"#,
        )
        .unwrap();
    }
    dir
}

fn tail_mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values[values.len() - 2..].iter().sum::<f64>() / 2.0
}

fn row<'a>(md: &'a str, name: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row for {name} in\n{md}"))
}

#[test]
fn report_tables_and_charts_two_runs() {
    let root = temp_dir("lib");
    let a = make_run(&root, "run-a", 1.0, true);
    let b = make_run(&root, "run-b", 2.0, false);
    std::fs::write(root.join("NOTES.md"), "Why these runs.\n").unwrap();
    let out = root.join("docs/experiments.md");
    let written = write_report(&[&a, &b], &out, Some(&root.join("NOTES.md"))).unwrap();
    assert_eq!(written.loss_svg, root.join("docs/experiments-loss.svg"));
    assert_eq!(written.iou_svg, root.join("docs/experiments-iou.svg"));

    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.starts_with("# Experiments\n\nWhy these runs.\n"), "{md}");
    let row_a = row(&md, "run-a");
    let loss_a = tail_mean(curve(1.0).into_iter().map(|c| c.0));
    let iou = tail_mean(curve(1.0).into_iter().map(|c| c.1));
    assert!(
        row_a.contains(&format!("| {loss_a:.4} | {iou:.4} |")),
        "{row_a}"
    );
    assert!(
        row_a.contains("| transformer | bce | 20 | 4 | 12.35 |"),
        "{row_a}"
    );
    assert!(
        row_a.contains(
            "| 0.9123 | 0.5000 | 0.4000 | 0.3500 | 0.4500 | — | 0.3000 | 0.4200 | 0.2500 | 0.0500 |"
        ),
        "{row_a}"
    );
    let row_b = row(&md, "run-b");
    let loss_b = tail_mean(curve(2.0).into_iter().map(|c| c.0));
    assert!(
        row_b.contains(&format!("| {loss_b:.4} | {iou:.4} |")),
        "{row_b}"
    );
    assert_eq!(row_b.matches('—').count(), 10, "{row_b}");
    assert!(md.contains("![Training loss](experiments-loss.svg)"));
    assert!(md.contains("![Training IoU](experiments-iou.svg)"));
    assert!(md.contains("clipseg train --data data/synth --out run-a\n"));
    assert!(md.contains(&format!(
        "clipseg eval --data data/synth --split test --model {} --out {}\n",
        a.display(),
        a.join("metrics.json").display()
    )));
    assert!(!md.contains(&format!("--model {}", b.display())));

    let loss_svg = std::fs::read_to_string(&written.loss_svg).unwrap();
    let iou_svg = std::fs::read_to_string(&written.iou_svg).unwrap();
    for (svg, lines) in [(&loss_svg, 4), (&iou_svg, 2)] {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), lines, "{svg}");
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
        assert!(svg.contains(">run-a</text>") && svg.contains(">run-b</text>"));
    }
    assert!(loss_svg.contains("log scale"));

    // Same input, same bytes.
    write_report(&[&a, &b], &out, Some(&root.join("NOTES.md"))).unwrap();
    assert_eq!(
        std::fs::read_to_string(&written.loss_svg).unwrap(),
        loss_svg
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), md);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn long_runs_are_downsampled() {
    let root = temp_dir("long");
    let dir = make_run(&root, "long", 1.0, false);
    let mut csv = String::from("step,lr,loss,iou\n");
    for step in 0..5000 {
        csv.push_str(&format!("{step},0.001,{},0.5\n", 1.0 / (1.0 + step as f64)));
    }
    std::fs::write(dir.join("log.csv"), csv).unwrap();
    let written = write_report(&[&dir], &root.join("r.md"), None).unwrap();
    let svg = std::fs::read_to_string(written.loss_svg).unwrap();
    for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
        assert_eq!(line.matches(',').count(), 500, "{line}");
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn bad_inputs_are_errors() {
    let root = temp_dir("bad");
    let good = make_run(&root, "good", 1.0, false);
    let out = root.join("r.md");

    let bad = make_run(&root, "bad", 1.0, false);
    let log = bad.join("log.csv");
    std::fs::write(
        &log,
        "step,lr,loss,iou\n0,0.001,0.5,0.1\n1,0.001,oops,0.2\n",
    )
    .unwrap();
    let e = write_report(&[&good, &bad], &out, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("{}:3", log.display())) && e.contains("oops"),
        "{e}"
    );
    std::fs::write(&log, "step,lr,loss,iou\n0,0.001,0.5\n").unwrap();
    let e = write_report(&[&bad], &out, None).unwrap_err().to_string();
    assert!(e.contains(&format!("{}:2", log.display())), "{e}");
    std::fs::write(&log, "step,lr,iou\n").unwrap();
    let e = write_report(&[&bad], &out, None).unwrap_err().to_string();
    assert!(e.contains(":1: header has no `loss` column"), "{e}");
    assert!(!out.exists(), "nothing is written when a run is bad");

    let missing = root.join("missing");
    std::fs::create_dir_all(&missing).unwrap();
    let e = write_report(&[&missing], &out, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.json: not found"), "{e}");
    std::fs::write(missing.join("train.json"), r#"{"decoder": "unet"}"#).unwrap();
    std::fs::write(missing.join("log.csv"), "step,lr,loss,iou\n0,0,1,0\n").unwrap();
    let e = write_report(&[&missing], &out, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.json") && e.contains("loss"), "{e}");

    let none: [&Path; 0] = [];
    assert!(write_report(&none, &out, None).is_err());
    let blocked = root.join("file");
    std::fs::write(&blocked, "").unwrap();
    let e = write_report(&[&good], &blocked.join("r.md"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&blocked.display().to_string()), "{e}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn cli_report() {
    let root = temp_dir("cli");
    let a = make_run(&root, "a", 1.0, true);
    let b = make_run(&root, "b", 3.0, false);
    let out = root.join("experiments.md");
    let run = |args: &[&Path]| {
        let out = Command::new(env!("CARGO_BIN_EXE_clipseg"))
            .arg("report")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&[&a, &b, Path::new("--out"), &out]);
    assert!(ok, "{stderr}");
    let md = std::fs::read_to_string(&out).unwrap();
    row(&md, "a");
    row(&md, "b");
    assert!(root.join("experiments-loss.svg").is_file());
    assert!(root.join("experiments-iou.svg").is_file());

    std::fs::write(b.join("log.csv"), "step,lr,loss,iou\n0,0.1,x,0\n").unwrap();
    let (ok, stderr) = run(&[&a, &b, Path::new("--out"), &out]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("log.csv:2"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(root).unwrap();
}

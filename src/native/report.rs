//! `clipseg report`: compares training runs in one markdown page with two SVG charts.
//!
//! A run folder is what `clipseg train` writes (`train.json`, `log.csv`) plus, optionally, the
//! `metrics.json` of `clipseg eval --out RUN/metrics.json`. The charts are hand-written SVG (no
//! plotting crate, so nothing extra to build for wasm or vet) and the output is deterministic:
//! the same runs give the same bytes, so a regenerated report only diffs where results changed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::metrics::Report as Metrics;

/// Smoothing of the plotted curves: `ema = ALPHA * x + (1 - ALPHA) * ema`.
const EMA_ALPHA: f64 = 0.1;
/// Most points per line: keeps the SVGs small for long runs.
const MAX_POINTS: usize = 500;
/// Table cell of a number that the run does not have.
const MISSING: &str = "—";

/// `train.json`: only the keys the report shows; unknown keys are ignored, optional ones may
/// be missing or `null`.
#[derive(Debug, Clone, Deserialize)]
pub struct TrainInfo {
    pub decoder: String,
    pub loss: String,
    pub steps: u64,
    pub batch: Option<u64>,
    pub accum: Option<u64>,
    pub images_per_s: Option<f64>,
    pub data: Option<String>,
    pub command: Option<String>,
}

/// One row of `log.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub step: f64,
    pub loss: f64,
    pub iou: f64,
}

/// Everything the report reads from one run folder.
#[derive(Debug, Clone)]
pub struct Run {
    /// The folder as given on the command line.
    pub dir: PathBuf,
    /// The folder's name: the run's name in the table and legends.
    pub name: String,
    pub train: TrainInfo,
    pub log: Vec<Step>,
    /// `metrics.json`, when the run was evaluated.
    pub metrics: Option<Metrics>,
    /// The split `metrics.json` records, if it does (eval does not write it yet).
    pub eval_split: Option<String>,
}

/// The files [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub markdown: PathBuf,
    pub loss_svg: PathBuf,
    pub iou_svg: PathBuf,
}

impl Run {
    /// Reads a run folder; a missing `train.json` or `log.csv`, or a malformed one, is an error
    /// naming the file (and the line, for the CSV).
    pub fn load(dir: &Path) -> Result<Run, Error> {
        let train_path = dir.join("train.json");
        let log_path = dir.join("log.csv");
        for path in [&train_path, &log_path] {
            if !path.is_file() {
                return Err(Error::Input(format!(
                    "{}: not found (is {} a `clipseg train` run folder?)",
                    path.display(),
                    dir.display()
                )));
            }
        }
        let train: TrainInfo = serde_json::from_str(&read(&train_path)?)
            .map_err(|e| Error::Input(format!("{}: {e}", train_path.display())))?;
        let log = parse_log(&read(&log_path)?, &log_path)?;

        let metrics_path = dir.join("metrics.json");
        let (metrics, eval_split) = if metrics_path.is_file() {
            let bad =
                |e: serde_json::Error| Error::Input(format!("{}: {e}", metrics_path.display()));
            let value: serde_json::Value =
                serde_json::from_str(&read(&metrics_path)?).map_err(bad)?;
            let split = value
                .get("split")
                .and_then(|s| s.as_str())
                .map(str::to_owned);
            (Some(serde_json::from_value(value).map_err(bad)?), split)
        } else {
            (None, None)
        };

        // `runs/a/` and `.` have no usable file_name(); the canonical path does.
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .or_else(|| {
                let canonical = std::fs::canonicalize(dir).ok()?;
                Some(canonical.file_name()?.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Run {
            dir: dir.to_path_buf(),
            name,
            train,
            log,
            metrics,
            eval_split,
        })
    }

    /// Mean training loss over the last 10% of steps (at least one): the end of training
    /// without the noise of a single batch.
    pub fn final_loss(&self) -> f64 {
        tail_mean(self.log.iter().map(|s| s.loss))
    }

    /// Mean training IoU over the last 10% of steps, like [`Run::final_loss`].
    pub fn final_iou(&self) -> f64 {
        tail_mean(self.log.iter().map(|s| s.iou))
    }
}

/// Reads every run in `runs` (in that order), then writes the markdown page `out` and, beside
/// it, `<stem>-loss.svg` and `<stem>-iou.svg`. `notes` is copied verbatim under the title.
/// Nothing is written unless every run reads cleanly.
pub fn write_report<P: AsRef<Path>>(
    runs: &[P],
    out: &Path,
    notes: Option<&Path>,
) -> Result<Written, Error> {
    if runs.is_empty() {
        return Err(Error::Input("report needs at least one run folder".into()));
    }
    let runs = runs
        .iter()
        .map(|dir| Run::load(dir.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let notes = notes.map(read).transpose()?;
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Input(format!("{}: --out needs a file name", out.display())))?;
    let written = Written {
        markdown: out.to_path_buf(),
        loss_svg: out.with_file_name(format!("{stem}-loss.svg")),
        iou_svg: out.with_file_name(format!("{stem}-iou.svg")),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.display().to_string(),
            source,
        })?;
    }
    write(&written.loss_svg, &loss_chart(&runs))?;
    write(&written.iou_svg, &iou_chart(&runs))?;
    write(&written.markdown, &markdown(&runs, &stem, notes.as_deref()))?;
    Ok(written)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Parses `log.csv` by header name (so added columns don't break old reports); every value
/// must be a finite number.
fn parse_log(text: &str, path: &Path) -> Result<Vec<Step>, Error> {
    let at = |line: usize, what: String| Error::Input(format!("{}:{line}: {what}", path.display()));
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) if !h.trim().is_empty() => h.split(',').map(str::trim).collect(),
        _ => return Err(at(1, "empty, expected the header step,lr,loss,iou".into())),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| at(1, format!("header has no `{name}` column")))
    };
    let (step, loss, iou) = (column("step")?, column("loss")?, column("iou")?);

    let mut log = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            return Err(at(
                number,
                format!("{} fields, expected {}", fields.len(), header.len()),
            ));
        }
        let value = |col: usize| match fields[col].parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(at(
                number,
                format!("{}: `{}` is not a finite number", header[col], fields[col]),
            )),
        };
        log.push(Step {
            step: value(step)?,
            loss: value(loss)?,
            iou: value(iou)?,
        });
    }
    if log.is_empty() {
        return Err(Error::Input(format!(
            "{}: no steps after the header",
            path.display()
        )));
    }
    Ok(log)
}

fn tail_mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len();
    let tail = n.div_ceil(10);
    values.skip(n - tail).sum::<f64>() / tail as f64
}

fn ema(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut state = None;
    values
        .map(|v| {
            let s = state.map_or(v, |s: f64| EMA_ALPHA * v + (1.0 - EMA_ALPHA) * s);
            state = Some(s);
            s
        })
        .collect()
}

/// Evenly spaced points, first and last kept: at most [`MAX_POINTS`].
fn downsample(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let last = points.len() - 1;
    (0..MAX_POINTS)
        .map(|i| points[i * last / (MAX_POINTS - 1)])
        .collect()
}

fn markdown(runs: &[Run], stem: &str, notes: Option<&str>) -> String {
    let mut md = String::from("# Experiments\n\n");
    if let Some(notes) = notes {
        md.push_str(notes);
        md.push_str(if notes.ends_with('\n') { "\n" } else { "\n\n" });
    }
    md.push_str("## Runs\n\n");
    let header = [
        "Run",
        "Decoder",
        "Loss",
        "Steps",
        "Batch",
        "Images/s",
        "Final loss",
        "Final IoU",
        "Accuracy",
        "Dice",
        "IoU",
        "mIoU",
        "IoU_FG",
        "AP",
        "PC mean IoU",
        "PC cum IoU",
        "Pr@0.5",
        "Pr@0.9",
    ];
    md.push_str(&table_row(header.iter().map(|h| h.to_string())));
    md.push_str(&table_row(header.iter().map(|_| "---".to_string())));
    for run in runs {
        let t = &run.train;
        let batch = match (t.batch, t.accum) {
            (Some(b), Some(a)) if a > 1 => format!("{b}×{a}"),
            (Some(b), _) => b.to_string(),
            (None, _) => MISSING.into(),
        };
        let m = run.metrics.as_ref();
        let metric = |f: fn(&Metrics) -> Option<f64>| fixed(m.and_then(f), 4);
        md.push_str(&table_row([
            run.name.clone(),
            t.decoder.clone(),
            t.loss.clone(),
            t.steps.to_string(),
            batch,
            fixed(t.images_per_s, 2),
            fixed(Some(run.final_loss()), 4),
            fixed(Some(run.final_iou()), 4),
            metric(|m| Some(m.seed.accuracy)),
            metric(|m| Some(m.seed.dice)),
            metric(|m| Some(m.seed.iou)),
            metric(|m| Some(m.clipseg.miou)),
            metric(|m| Some(m.clipseg.iou_fg)),
            metric(|m| m.clipseg.ap),
            metric(|m| Some(m.phrasecut.mean_iou)),
            metric(|m| Some(m.phrasecut.cum_iou)),
            metric(|m| Some(m.phrasecut.pr_50)),
            metric(|m| Some(m.phrasecut.pr_90)),
        ]));
    }
    md.push_str(
        "\nFinal loss and final IoU: means over the last 10% of steps of `log.csv` (IoU of the \
         training batch at p > 0.5). Accuracy, Dice, IoU: per-sample means; mIoU, IoU_FG, AP: \
         CLIPSeg's; PC mean IoU, PC cum IoU, Pr@t: the official PhraseCut numbers, all from \
         `metrics.json` (— where the run was not evaluated).\n\n",
    );

    md.push_str("## Plots\n\n");
    let _ = writeln!(md, "![Training loss]({stem}-loss.svg)\n");
    let _ = writeln!(md, "![Training IoU]({stem}-iou.svg)\n");

    md.push_str("## Commands\n");
    for run in runs {
        let _ = writeln!(md, "\n### {}\n\n```sh", run.name);
        md.push_str(
            run.train
                .command
                .as_deref()
                .unwrap_or("# train command not recorded"),
        );
        md.push('\n');
        if run.metrics.is_some() {
            let _ = writeln!(
                md,
                "clipseg eval --data {} --split {} --model {} --out {}",
                shell_quote(run.train.data.as_deref().unwrap_or("DATA")),
                shell_quote(run.eval_split.as_deref().unwrap_or("val")),
                shell_quote(&run.dir.display().to_string()),
                shell_quote(&run.dir.join("metrics.json").display().to_string()),
            );
        }
        md.push_str("```\n");
    }
    md
}

fn table_row(cells: impl IntoIterator<Item = String>) -> String {
    let mut row = String::from("|");
    for cell in cells {
        let _ = write!(row, " {} |", cell.replace('|', "\\|").replace('\n', " "));
    }
    row.push('\n');
    row
}

fn fixed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| MISSING.into(), |v| format!("{v:.decimals$}"))
}

/// Quotes a word for POSIX shells only when it needs it, so the usual paths stay readable.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Colour-blind-friendly categorical palette (Tableau 10), cycled.
const COLORS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// One polyline of a chart.
struct Line {
    color: &'static str,
    points: Vec<(f64, f64)>,
    faint: bool,
}

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn loss_chart(runs: &[Run]) -> String {
    let log_scale = runs.iter().flat_map(|r| &r.log).all(|s| s.loss > 0.0);
    let mut lines = Vec::new();
    // Raw lines first, so the smoothed ones are drawn over all of them.
    for (i, run) in runs.iter().enumerate() {
        lines.push(Line {
            color: color(i),
            points: downsample(run.log.iter().map(|s| (s.step, s.loss)).collect()),
            faint: true,
        });
    }
    for (i, run) in runs.iter().enumerate() {
        lines.push(smoothed(i, run, |s| s.loss));
    }
    let y_label = if log_scale {
        "loss (log scale)"
    } else {
        "loss"
    };
    chart(
        "Training loss (faint: per step, solid: EMA alpha 0.1)",
        y_label,
        runs,
        &lines,
        log_scale,
    )
}

fn iou_chart(runs: &[Run]) -> String {
    let lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| smoothed(i, run, |s| s.iou))
        .collect();
    chart(
        "Training IoU at p > 0.5 (EMA alpha 0.1)",
        "IoU",
        runs,
        &lines,
        false,
    )
}

fn smoothed(i: usize, run: &Run, value: fn(&Step) -> f64) -> Line {
    let steps = run.log.iter().map(|s| s.step);
    Line {
        color: color(i),
        points: downsample(steps.zip(ema(run.log.iter().map(value))).collect()),
        faint: false,
    }
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 400.0;
const PLOT_LEFT: f64 = 70.0;
const PLOT_RIGHT: f64 = 540.0;
const PLOT_TOP: f64 = 40.0;
const PLOT_BOTTOM: f64 = 345.0;
/// Longest run name in a legend, in characters, before it is cut with "…".
const LEGEND_CHARS: usize = 22;

/// An axis: its range in plotting space (log10 of the values on a log axis) and tick values.
struct Axis {
    log: bool,
    min: f64,
    max: f64,
    ticks: Vec<f64>,
}

impl Axis {
    /// "Nice" ticks (1, 2, 2.5 or 5 × 10^k), the range widened to whole ticks.
    fn linear(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            let pad = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
            (lo - pad, hi + pad)
        };
        let step = nice_step((hi - lo) / 5.0);
        let (first, last) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
        Axis {
            log: false,
            min: first as f64 * step,
            max: last as f64 * step,
            ticks: (first..=last).map(|k| k as f64 * step).collect(),
        }
    }

    /// Ticks at decades, else at 1-2-5, else at 1…9 × 10^k, else (a very narrow range) linear
    /// ones: always at least two labelled ticks.
    fn log(lo: f64, hi: f64) -> Axis {
        let (mut min, mut max) = (lo.log10(), hi.log10());
        let pad = if max > min { 0.03 * (max - min) } else { 0.1 };
        min -= pad;
        max += pad;
        let inside = |mantissas: &[f64]| -> Vec<f64> {
            (min.floor() as i32..=max.ceil() as i32)
                .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
                .filter(|v| (min..=max).contains(&v.log10()))
                .collect()
        };
        let ticks = [
            &[1.0][..],
            &[1.0, 2.0, 5.0],
            &[1., 2., 3., 4., 5., 6., 7., 8., 9.],
        ]
        .iter()
        .map(|m| inside(m))
        .find(|t| t.len() >= 3)
        .unwrap_or_else(|| {
            let (lo, hi) = (10f64.powf(min), 10f64.powf(max));
            let step = nice_step((hi - lo) / 4.0);
            ((lo / step).ceil() as i64..=(hi / step).floor() as i64)
                .map(|k| k as f64 * step)
                .collect()
        });
        Axis {
            log: true,
            min,
            max,
            ticks,
        }
    }

    /// Position of `v` along the axis, 0 at `min` and 1 at `max`.
    fn frac(&self, v: f64) -> f64 {
        let v = if self.log { v.log10() } else { v };
        (v - self.min) / (self.max - self.min)
    }
}

fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|m| m * magnitude >= raw)
        .unwrap_or(10.0);
    step * magnitude
}

/// Tick label: plain decimals without float noise (0.3, not 0.30000000000000004), exponents
/// for very small or large values.
fn tick_label(v: f64) -> String {
    if v != 0.0 && !(1e-4..1e6).contains(&v.abs()) {
        return format!("{v:e}");
    }
    let text = format!("{v:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart: white background (GitHub's dark theme shows SVGs on a dark page), grid,
/// ticks, axis labels, title, and a legend right of the plot.
fn chart(title: &str, y_label: &str, runs: &[Run], lines: &[Line], log_y: bool) -> String {
    let bounds = |f: fn(&(f64, f64)) -> f64| {
        let values = lines.iter().flat_map(|l| &l.points).map(f);
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
    };
    let (x_lo, x_hi) = bounds(|p| p.0);
    let (y_lo, y_hi) = bounds(|p| p.1);
    let x_axis = Axis::linear(x_lo.min(0.0), x_hi);
    let y_axis = if log_y {
        Axis::log(y_lo, y_hi)
    } else {
        Axis::linear(y_lo, y_hi)
    };
    let px = |v: f64| PLOT_LEFT + x_axis.frac(v) * (PLOT_RIGHT - PLOT_LEFT);
    let py = |v: f64| PLOT_BOTTOM - y_axis.frac(v) * (PLOT_BOTTOM - PLOT_TOP);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    svg.push_str("<g stroke=\"#e5e5e5\">\n");
    for &t in &x_axis.ticks {
        let x = px(t);
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{PLOT_TOP}" x2="{x:.1}" y2="{PLOT_BOTTOM}"/>"#
        );
    }
    for &t in &y_axis.ticks {
        let y = py(t);
        let _ = writeln!(
            svg,
            r#"<line x1="{PLOT_LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}"/>"#
        );
    }
    svg.push_str("</g>\n");
    let _ = writeln!(
        svg,
        r##"<rect x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        PLOT_RIGHT - PLOT_LEFT,
        PLOT_BOTTOM - PLOT_TOP
    );

    svg.push_str("<g fill=\"#333\">\n");
    for &t in &x_axis.ticks {
        let x = px(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{PLOT_BOTTOM}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            PLOT_BOTTOM + 5.0,
            PLOT_BOTTOM + 18.0,
            tick_label(t)
        );
    }
    for &t in &y_axis.ticks {
        let y = py(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{PLOT_LEFT}" y2="{y:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            PLOT_LEFT - 5.0,
            PLOT_LEFT - 8.0,
            y + 4.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">step</text>"#,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        HEIGHT - 14.0
    );
    let mid_y = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{mid_y:.1}" text-anchor="middle" transform="rotate(-90 16 {mid_y:.1})">{}</text>"#,
        escape(y_label)
    );
    svg.push_str("</g>\n");

    svg.push_str("<g fill=\"none\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n");
    for line in lines {
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let style = if line.faint {
            r#"stroke-width="1" stroke-opacity="0.3""#
        } else {
            r#"stroke-width="2""#
        };
        let _ = writeln!(
            svg,
            r#"<polyline stroke="{}" {style} points="{}"/>"#,
            line.color,
            points.join(" ")
        );
    }
    svg.push_str("</g>\n");

    let legend_x = PLOT_RIGHT + 16.0;
    for (i, run) in runs.iter().enumerate() {
        let y = PLOT_TOP + 8.0 + 18.0 * i as f64;
        let name: String = if run.name.chars().count() > LEGEND_CHARS {
            run.name
                .chars()
                .take(LEGEND_CHARS - 1)
                .chain(['…'])
                .collect()
        } else {
            run.name.clone()
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 20.0,
            color(i),
            legend_x + 26.0,
            y + 4.0,
            escape(&name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_mean_takes_the_last_tenth_rounded_up() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(tail_mean(values.iter().copied()), 19.5);
        assert_eq!(tail_mean([4.0, 8.0].into_iter()), 8.0);
        assert_eq!(tail_mean((1..12).map(f64::from)), 10.5);
    }

    #[test]
    fn ema_starts_at_the_first_value() {
        assert_eq!(ema([1.0, 2.0].into_iter()), vec![1.0, 1.1]);
    }

    #[test]
    fn downsample_keeps_the_ends_and_the_cap() {
        let points: Vec<(f64, f64)> = (0..2000).map(|i| (i as f64, 0.0)).collect();
        let kept = downsample(points);
        assert_eq!(kept.len(), MAX_POINTS);
        assert_eq!((kept[0].0, kept[MAX_POINTS - 1].0), (0.0, 1999.0));
    }

    #[test]
    fn axes_have_readable_ticks() {
        let linear = Axis::linear(0.0, 999.0);
        assert_eq!(linear.ticks, vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]);
        let decades = Axis::log(0.004, 2.0);
        let labels: Vec<String> = decades.ticks.iter().map(|&t| tick_label(t)).collect();
        assert_eq!(labels, ["0.01", "0.1", "1"]);
        let narrow = Axis::log(0.31, 0.33);
        assert!(narrow.ticks.len() >= 2);
        assert!(
            narrow
                .ticks
                .iter()
                .all(|&t| (0.0..=1.0).contains(&narrow.frac(t)))
        );
        assert_eq!(tick_label(0.1 + 0.2), "0.3");
        assert_eq!(tick_label(1e-5), "1e-5");
    }

    #[test]
    fn shell_quote_only_when_needed() {
        assert_eq!(shell_quote("runs/a-1"), "runs/a-1");
        assert_eq!(shell_quote("my run's"), r"'my run'\''s'");
    }
}

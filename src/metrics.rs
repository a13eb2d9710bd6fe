//! Evaluation metrics for text-prompted binary segmentation (CLIPSeg on PhraseCut).
//!
//! Everything works on plain row-major slices — probabilities as `&[f32]`, masks as
//! `&[bool]` — so the module has no tensor dependency and runs natively and in wasm.
//!
//! # Inputs
//! * Predictions are **probabilities** (`sigmoid(logits)`), not logits. Values must lie
//!   in `[0, 1]`; values at most [`PROBABILITY_TOLERANCE`] outside (resampling round-off)
//!   are clamped, anything else — and NaN — is rejected with a [`MetricsError`].
//! * A pixel is predicted foreground iff `p > threshold` (**strict**), with the
//!   comparison done in `f32`. This is what both references do: CLIPSeg compares a
//!   float32 torch tensor with a Python float (`p > thresh`, evaluated in float32) and
//!   the PhraseCut tools binarise with `pred_scores > threshold`
//!   (`utils/find_thresh.py::predict_with_thresh`, default 0.5).
//! * Thresholds must be in `[0, 1]`; the default is [`DEFAULT_THRESHOLD`] = 0.5.
//!
//! # Zero-denominator conventions
//! IoU and Dice are **0** when prediction and ground truth are both empty. This follows
//! the PhraseCut evaluator (`utils/iou.py::iou_polygons_masks`: `iou = 0 if i == 0`) and
//! CLIPSeg (`tp / (1 + tp + fp + fn)` is 0 when `tp == 0`). Pixel accuracy needs at
//! least one pixel; empty inputs are rejected.
//!
//! # What mirrors what
//! * [`pixel_accuracy`], [`dice`], [`iou`] — per-sample ("seed") metrics; [`iou`] is
//!   the PhraseCut per-task mask IoU (`utils/iou.py::iou_polygons_masks`).
//! * [`Confusion::iou_clipseg`] — CLIPSeg's smoothed IoU `tp / (1 + tp + fp + fn)`
//!   (`metrics.py::FixedIntervalMetrics.value`, `fgiou_scores` and `mean_ious`). On
//!   summed counts it is CLIPSeg's IoU_FG; averaged over samples it is CLIPSeg's mIoU
//!   on PhraseCut, where the "class" of every sample is its index
//!   (`datasets/phrasecut.py::PhraseCut.__getitem__` returns `(seg, zeros(0), i)`).
//! * [`ApAccumulator`] — CLIPSeg's AP (`metrics.py::FixedIntervalMetrics.add/value`).
//! * [`PhraseCutAccumulator`] — the official PhraseCut numbers
//!   (`utils/evaluator.py::Evaluator.eval_single_img/analyze_stats`).
//! * [`Evaluation`] — all of the above, one sample at a time, into a serde [`Report`].
//!
//! CLIPSeg's paper table for PhraseCut reports mIoU and IoU_FG at threshold 0.3
//! (`Tables.ipynb`: `pc_miou_0.3`, `pc_fgiou_0.3`, `pc_ap`); use `Evaluation::new(0.3)`
//! to compare with it. AP does not depend on the threshold.
//!
//! Reference values for the tests: `tests/fixtures/metrics/metrics_reference.json`,
//! written by `tools/make_metric_fixtures.py` (numpy / scikit-learn / torch / scipy).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default binarisation threshold on probabilities (strict `p > t`).
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// How far outside `[0, 1]` a probability may lie (and is then clamped) before it is
/// rejected. Covers the round-off of bilinear resampling; clamp bicubic output yourself.
pub const PROBABILITY_TOLERANCE: f32 = 1e-4;

/// Number of thresholds of CLIPSeg's AP: `np.linspace(0, 1, 51)[1:-1]`.
pub const AP_THRESHOLD_COUNT: usize = 49;

/// CLIPSeg's AP thresholds 0.02, 0.04, …, 0.98 (`metrics.py`,
/// `FixedIntervalMetrics.__init__`: `np.linspace(0, 1, n_values)[1:-1]`, `n_values=51`).
/// Computed like numpy (`i * (1/50)` in f64) and rounded to f32, the precision torch
/// compares in.
pub const AP_THRESHOLDS: [f32; AP_THRESHOLD_COUNT] = {
    let mut t = [0.0f32; AP_THRESHOLD_COUNT];
    let step = 1.0f64 / 50.0;
    let mut i = 0;
    while i < AP_THRESHOLD_COUNT {
        t[i] = ((i + 1) as f64 * step) as f32;
        i += 1;
    }
    t
};

/// IoU thresholds of the PhraseCut "mask accuracy" `Pr@t` (`utils/evaluator.py`,
/// `mask_threshs`; a sample counts iff its IoU is strictly greater).
pub const PHRASECUT_PR_THRESHOLDS: [f64; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];

/// Errors of this module. Nothing here panics on bad input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// Two slices that must describe the same pixels differ in length.
    #[error("length mismatch: {what} has {got} values, expected {expected}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A map with no pixels.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A NaN probability.
    #[error("{what}[{index}] is NaN")]
    NanProbability { what: &'static str, index: usize },
    /// A probability outside `[0, 1]` (beyond [`PROBABILITY_TOLERANCE`]), e.g. a logit.
    #[error("{what}[{index}] = {value} is not a probability in [0, 1] (pass sigmoid(logits))")]
    ProbabilityOutOfRange {
        what: &'static str,
        index: usize,
        value: f32,
    },
    /// A threshold outside `[0, 1]` or NaN.
    #[error("threshold {0} is not in [0, 1]")]
    InvalidThreshold(f32),
    /// A report was requested before any sample was accumulated.
    #[error("no samples have been evaluated")]
    NoSamples,
}

fn check_threshold(threshold: f32) -> Result<(), MetricsError> {
    if (0.0..=1.0).contains(&threshold) {
        Ok(())
    } else {
        Err(MetricsError::InvalidThreshold(threshold))
    }
}

fn check_lengths(
    what: &'static str,
    values: usize,
    gt_what: &'static str,
    gt: usize,
) -> Result<(), MetricsError> {
    if values == 0 {
        return Err(MetricsError::Empty(what));
    }
    if gt != values {
        return Err(MetricsError::LengthMismatch {
            what: gt_what,
            expected: values,
            got: gt,
        });
    }
    Ok(())
}

/// Validates one probability and clamps round-off overshoot into `[0, 1]`.
#[inline]
fn probability(what: &'static str, index: usize, value: f32) -> Result<f32, MetricsError> {
    if value.is_nan() {
        return Err(MetricsError::NanProbability { what, index });
    }
    if !(-PROBABILITY_TOLERANCE..=1.0 + PROBABILITY_TOLERANCE).contains(&value) {
        return Err(MetricsError::ProbabilityOutOfRange { what, index, value });
    }
    Ok(value.clamp(0.0, 1.0))
}

/// The f64 nearest to the shortest decimal that round-trips `v` (0.3f32 -> 0.3f64).
fn f32_as_decimal_f64(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// [`Confusion::from_probs`] with the slice names used in error messages.
fn confusion_named(
    probs: &[f32],
    gt: &[bool],
    threshold: f32,
    (probs_name, gt_name): (&'static str, &'static str),
) -> Result<Confusion, MetricsError> {
    check_threshold(threshold)?;
    check_lengths(probs_name, probs.len(), gt_name, gt.len())?;
    let mut c = Confusion::default();
    for (i, (&p, &g)) in probs.iter().zip(gt).enumerate() {
        let p = probability(probs_name, i, p)?;
        c.count(p > threshold, g);
    }
    Ok(c)
}

/// `a / b` with `0 / 0 = 0` (the references' convention for empty masks).
#[inline]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Pixel counts of a binarised prediction against a ground-truth mask. Summing over
/// samples ([`Confusion::add`]) gives the cumulative counts behind IoU_FG / cum IoU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    /// False negatives (`fn` is a keyword).
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
}

impl Confusion {
    /// Counts for `probs > threshold` (strict, in f32) against `gt`.
    pub fn from_probs(probs: &[f32], gt: &[bool], threshold: f32) -> Result<Self, MetricsError> {
        confusion_named(probs, gt, threshold, ("probabilities", "ground truth"))
    }

    /// Counts for an already binarised prediction.
    pub fn from_masks(pred: &[bool], gt: &[bool]) -> Result<Self, MetricsError> {
        check_lengths("prediction", pred.len(), "ground truth", gt.len())?;
        let mut c = Confusion::default();
        for (&p, &g) in pred.iter().zip(gt) {
            c.count(p, g);
        }
        Ok(c)
    }

    #[inline]
    fn count(&mut self, pred: bool, gt: bool) {
        match (pred, gt) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// Adds another sample's counts.
    pub fn add(&mut self, other: &Confusion) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.tn += other.tn;
    }

    /// Number of pixels counted.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.fn_ + self.tn
    }

    /// Intersection |pred ∧ gt| (= TP).
    pub fn intersection(&self) -> u64 {
        self.tp
    }

    /// Union |pred ∨ gt| (= TP + FP + FN).
    pub fn union(&self) -> u64 {
        self.tp + self.fp + self.fn_
    }

    /// `(TP + TN) / total`; 0 for an empty confusion.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }

    /// `2 TP / (2 TP + FP + FN)`; 0 when prediction and ground truth are both empty.
    pub fn dice(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// `TP / (TP + FP + FN)`; 0 when the intersection is empty (so 0 when both masks
    /// are empty). Mirrors PhraseCut `utils/iou.py::iou_polygons_masks`; on summed
    /// counts it is PhraseCut's `cum_mask_iou` (sum of intersections / sum of unions).
    pub fn iou(&self) -> f64 {
        ratio(self.tp, self.union())
    }

    /// CLIPSeg's smoothed IoU `TP / (1 + TP + FP + FN)` (`metrics.py`,
    /// `FixedIntervalMetrics.value`: `fgiou_scores`, `mean_ious`). On summed counts this
    /// is IoU_FG as CLIPSeg reports it; per sample it is the term of its mIoU.
    pub fn iou_clipseg(&self) -> f64 {
        self.tp as f64 / (1 + self.union()) as f64
    }
}

/// Fraction of pixels where `probs > threshold` agrees with `gt`.
pub fn pixel_accuracy(probs: &[f32], gt: &[bool], threshold: f32) -> Result<f64, MetricsError> {
    Ok(Confusion::from_probs(probs, gt, threshold)?.accuracy())
}

/// Dice / F1 of `probs > threshold` against `gt`; 0 when both are empty.
pub fn dice(probs: &[f32], gt: &[bool], threshold: f32) -> Result<f64, MetricsError> {
    Ok(Confusion::from_probs(probs, gt, threshold)?.dice())
}

/// IoU of `probs > threshold` against `gt`; 0 when both are empty (PhraseCut's
/// per-task mask IoU, `utils/iou.py::iou_polygons_masks`).
pub fn iou(probs: &[f32], gt: &[bool], threshold: f32) -> Result<f64, MetricsError> {
    Ok(Confusion::from_probs(probs, gt, threshold)?.iou())
}

/// Index of the first AP threshold that `p` does **not** exceed, i.e. the number of
/// thresholds `t` with `p > t` (0..=49).
#[inline]
fn ap_bin(p: f32) -> usize {
    AP_THRESHOLDS.partition_point(|&t| p > t)
}

/// CLIPSeg's average precision over the split, as `metrics.py::FixedIntervalMetrics`
/// computes it (the `ap` that `score.py` reports for PhraseCut):
///
/// 1. `add`: for each of the 49 [`AP_THRESHOLDS`], count TP/FP/FN of `p > t` per sample
///    (CLIPSeg sorts the pixels and locates the first `p > t`; counting bins is
///    equivalent). Counts are summed over all samples of the split.
/// 2. `value`: for every threshold with `TP + FP > 0`, `precision = TP / (1 + TP + FP)`
///    and `recall = TP / (1 + TP + FN)` (note the `+ 1`).
/// 3. Duplicate `(recall, precision)` pairs are removed and the pairs sorted by recall.
///    CLIPSeg sorts a Python `set` with `key=recall`, so the order of pairs with equal
///    recall is unspecified there; here they are ordered by precision (the order of the
///    `precision_recall_curve` CLIPSeg returns).
/// 4. `AP = scipy.integrate.simps(precisions, recalls)`: composite Simpson on the
///    irregular grid with scipy's pre-1.11 default `even='avg'` and the zero-spacing
///    guards of scipy ≥ 1.9 (see [`simpson_avg`]). No interpolation, no end points are
///    added; the integral spans only the observed recall range.
///
/// Quirks inherited from the reference: a single distinct point integrates to AP = 0
/// (so a perfect prediction, whose 49 points coincide, has AP 0); when no threshold
/// produces any positive pixel CLIPSeg raises (`assert ... 'no predictions is made'`)
/// and [`ApAccumulator::ap`] returns `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApAccumulator {
    /// `pos[k]` / `neg[k]`: foreground / background pixels exceeding exactly the first
    /// `k` thresholds.
    pos: Vec<u64>,
    neg: Vec<u64>,
}

impl Default for ApAccumulator {
    fn default() -> Self {
        Self {
            pos: vec![0; AP_THRESHOLD_COUNT + 1],
            neg: vec![0; AP_THRESHOLD_COUNT + 1],
        }
    }
}

impl ApAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample (probabilities and ground truth of the same length). On error
    /// nothing is added.
    pub fn add(&mut self, probs: &[f32], gt: &[bool]) -> Result<(), MetricsError> {
        let mut local = ApAccumulator::default();
        local.add_unchecked_lengths(probs, gt)?;
        self.merge(&local);
        Ok(())
    }

    fn add_unchecked_lengths(&mut self, probs: &[f32], gt: &[bool]) -> Result<(), MetricsError> {
        check_lengths("probabilities", probs.len(), "ground truth", gt.len())?;
        for (i, (&p, &g)) in probs.iter().zip(gt).enumerate() {
            let bin = ap_bin(probability("probabilities", i, p)?);
            if g {
                self.pos[bin] += 1
            } else {
                self.neg[bin] += 1
            }
        }
        Ok(())
    }

    /// Adds the counts of another accumulator (e.g. from another worker).
    pub fn merge(&mut self, other: &ApAccumulator) {
        for (a, b) in self.pos.iter_mut().zip(&other.pos) {
            *a += b;
        }
        for (a, b) in self.neg.iter_mut().zip(&other.neg) {
            *a += b;
        }
    }

    /// Summed confusion at each of the 49 [`AP_THRESHOLDS`] (CLIPSeg's `summed`).
    pub fn confusions(&self) -> [Confusion; AP_THRESHOLD_COUNT] {
        let total_pos: u64 = self.pos.iter().sum();
        let total_neg: u64 = self.neg.iter().sum();
        let mut out = [Confusion::default(); AP_THRESHOLD_COUNT];
        // Threshold j is exceeded by the pixels in bins j+1..=49.
        let (mut tp, mut fp) = (0u64, 0u64);
        for j in (0..AP_THRESHOLD_COUNT).rev() {
            tp += self.pos[j + 1];
            fp += self.neg[j + 1];
            out[j] = Confusion {
                tp,
                fp,
                fn_: total_pos - tp,
                tn: total_neg - fp,
            };
        }
        out
    }

    /// The de-duplicated `(recall, precision)` points, sorted by recall then precision.
    pub fn curve(&self) -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = self
            .confusions()
            .iter()
            .filter(|c| c.tp + c.fp > 0)
            .map(|c| {
                let recall = c.tp as f64 / (1 + c.tp + c.fn_) as f64;
                let precision = c.tp as f64 / (1 + c.tp + c.fp) as f64;
                (recall, precision)
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        pts.dedup();
        pts
    }

    /// CLIPSeg's AP; `None` if no threshold yields a positive pixel.
    pub fn ap(&self) -> Option<f64> {
        let pts = self.curve();
        if pts.is_empty() {
            return None;
        }
        let x: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let y: Vec<f64> = pts.iter().map(|p| p.1).collect();
        Some(simpson_avg(&y, &x))
    }
}

/// `scipy.integrate._quadrature._basic_simpson` for 1-D data: Simpson's rule on the
/// triples `(i, i+1, i+2)` for `i = start, start+2, … < stop`, irregular spacing, with
/// the zero-divisor guards added in scipy 1.9 (a zero divisor contributes 0).
fn basic_simpson(y: &[f64], x: &[f64], start: usize, stop: usize) -> f64 {
    let mut total = 0.0;
    let mut i = start;
    while i < stop && i + 2 < y.len() {
        let h0 = x[i + 1] - x[i];
        let h1 = x[i + 2] - x[i + 1];
        let hsum = h0 + h1;
        let hprod = h0 * h1;
        let h0divh1 = if h1 != 0.0 { h0 / h1 } else { 0.0 };
        let inv = if h0divh1 != 0.0 { 1.0 / h0divh1 } else { 0.0 };
        let q = if hprod != 0.0 { hsum / hprod } else { 0.0 };
        total +=
            hsum / 6.0 * (y[i] * (2.0 - inv) + y[i + 1] * (hsum * q) + y[i + 2] * (2.0 - h0divh1));
        i += 2;
    }
    total
}

/// `scipy.integrate.simps(y, x)` as CLIPSeg called it (scipy < 1.11, `even='avg'`):
/// an odd number of samples uses composite Simpson; an even number averages
/// "Simpson on the first N-2 intervals + trapezoid on the last" and "trapezoid on the
/// first + Simpson on the last N-2". One sample integrates to 0, two to a trapezoid.
/// `y` and `x` must have the same length.
pub fn simpson_avg(y: &[f64], x: &[f64]) -> f64 {
    let n = y.len().min(x.len());
    let (y, x) = (&y[..n], &x[..n]);
    if n < 2 {
        return 0.0;
    }
    if n % 2 == 1 {
        return basic_simpson(y, x, 0, n - 2);
    }
    let mut val = 0.5 * (x[n - 1] - x[n - 2]) * (y[n - 1] + y[n - 2]);
    let mut result = basic_simpson(y, x, 0, n.saturating_sub(3));
    val += 0.5 * (x[1] - x[0]) * (y[1] + y[0]);
    result += basic_simpson(y, x, 1, n - 2);
    result / 2.0 + val / 2.0
}

/// The official PhraseCut mask metrics (`utils/evaluator.py`, `Evaluator`), computed
/// at the original image size on binarised predictions:
///
/// * per task: `i = |gt ∧ pred|`, `u = |gt ∨ pred|`, `iou = 0 if i == 0 else i / u`
///   (`utils/iou.py::iou_polygons_masks`);
/// * `mean_iou` = mean of the per-task IoUs (`mean_mask_iou`);
/// * `cum_iou` = Σi / Σu (`cum_mask_iou`; the reference yields NaN when Σu = 0, here 0);
/// * `Pr@t` = fraction of tasks with `iou > t` (strict), t ∈ [`PHRASECUT_PR_THRESHOLDS`]
///   (`pred_mask_acc`). The README lists 0.3/0.5/0.7/0.9, the code uses 0.5…0.9.
///
/// Only the "all" subset is computed, and missing tasks are not imputed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhraseCutAccumulator {
    count: u64,
    iou_sum: f64,
    intersection: u64,
    union: u64,
    above: [u64; 5],
}

impl PhraseCutAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one task from a binary prediction. Returns its IoU.
    pub fn add_masks(&mut self, pred: &[bool], gt: &[bool]) -> Result<f64, MetricsError> {
        let c = Confusion::from_masks(pred, gt)?;
        Ok(self.add_confusion(&c))
    }

    /// Adds one task from probabilities binarised with `p > threshold`. Returns its IoU.
    pub fn add_probs(
        &mut self,
        probs: &[f32],
        gt: &[bool],
        threshold: f32,
    ) -> Result<f64, MetricsError> {
        let c = Confusion::from_probs(probs, gt, threshold)?;
        Ok(self.add_confusion(&c))
    }

    /// Adds one task from its (original-size) confusion counts. Returns its IoU.
    pub fn add_confusion(&mut self, c: &Confusion) -> f64 {
        let iou = c.iou();
        self.count += 1;
        self.iou_sum += iou;
        self.intersection += c.intersection();
        self.union += c.union();
        for (n, &t) in self.above.iter_mut().zip(&PHRASECUT_PR_THRESHOLDS) {
            if iou > t {
                *n += 1;
            }
        }
        iou
    }

    /// Number of tasks added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The metrics; [`MetricsError::NoSamples`] if nothing was added.
    pub fn report(&self) -> Result<PhraseCutReport, MetricsError> {
        if self.count == 0 {
            return Err(MetricsError::NoSamples);
        }
        let n = self.count as f64;
        let pr = |k: usize| self.above[k] as f64 / n;
        Ok(PhraseCutReport {
            mean_iou: self.iou_sum / n,
            cum_iou: ratio(self.intersection, self.union),
            pr_50: pr(0),
            pr_60: pr(1),
            pr_70: pr(2),
            pr_80: pr(3),
            pr_90: pr(4),
        })
    }
}

/// Means over samples of the per-sample metrics at the model resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedReport {
    pub accuracy: f64,
    pub dice: f64,
    pub iou: f64,
}

/// CLIPSeg's numbers at the model resolution (352×352).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipsegReport {
    /// Mean over samples of `TP / (1 + TP + FP + FN)` at the threshold.
    pub miou: f64,
    /// `ΣTP / (1 + ΣTP + ΣFP + ΣFN)` at the threshold.
    pub iou_fg: f64,
    /// AP over the 49 CLIPSeg thresholds (independent of the threshold); `null` when no
    /// threshold produced a positive pixel.
    pub ap: Option<f64>,
}

/// The official PhraseCut numbers at the original image size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhraseCutReport {
    pub mean_iou: f64,
    pub cum_iou: f64,
    #[serde(rename = "pr@0.5")]
    pub pr_50: f64,
    #[serde(rename = "pr@0.6")]
    pub pr_60: f64,
    #[serde(rename = "pr@0.7")]
    pub pr_70: f64,
    #[serde(rename = "pr@0.8")]
    pub pr_80: f64,
    #[serde(rename = "pr@0.9")]
    pub pr_90: f64,
}

/// Everything [`Evaluation`] produces; serialises as
/// `{"seed": {...}, "clipseg": {...}, "phrasecut": {...}, "count", "skipped", "threshold"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub seed: SeedReport,
    pub clipseg: ClipsegReport,
    pub phrasecut: PhraseCutReport,
    /// Samples accumulated.
    pub count: u64,
    /// Samples rejected by [`Evaluation::add`] or recorded with [`Evaluation::skip`].
    pub skipped: u64,
    /// The binarisation threshold (strict `p > threshold`, compared in f32), given as
    /// the f64 of the f32's shortest decimal (0.3, not 0.30000001192092896), so that it
    /// serialises readably through both `to_string` and `to_value`.
    pub threshold: f64,
}

/// Metrics of one sample, as returned by [`Evaluation::add`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleMetrics {
    /// Counts at the model resolution.
    pub confusion: Confusion,
    pub accuracy: f64,
    pub dice: f64,
    pub iou: f64,
    /// `TP / (1 + TP + FP + FN)` at the model resolution.
    pub clipseg_iou: f64,
    /// Counts at the original size.
    pub original: Confusion,
    /// PhraseCut IoU at the original size.
    pub phrasecut_iou: f64,
}

/// Accumulates every metric one sample at a time.
///
/// Each sample is given twice: at the model resolution (e.g. 352×352, for the seed and
/// CLIPSeg metrics, as CLIPSeg scores PhraseCut against the 352×352 nearest-resized
/// mask) and at the original image size (for the official PhraseCut numbers). Pass the
/// same pair twice if only one resolution is available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    threshold: f32,
    count: u64,
    skipped: u64,
    accuracy_sum: f64,
    dice_sum: f64,
    iou_sum: f64,
    clipseg_iou_sum: f64,
    confusion: Confusion,
    ap: ApAccumulator,
    phrasecut: PhraseCutAccumulator,
}

impl Default for Evaluation {
    /// An evaluation at [`DEFAULT_THRESHOLD`].
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            count: 0,
            skipped: 0,
            accuracy_sum: 0.0,
            dice_sum: 0.0,
            iou_sum: 0.0,
            clipseg_iou_sum: 0.0,
            confusion: Confusion::default(),
            ap: ApAccumulator::default(),
            phrasecut: PhraseCutAccumulator::default(),
        }
    }
}

impl Evaluation {
    /// An evaluation binarising with `p > threshold`; `threshold` must be in `[0, 1]`.
    pub fn new(threshold: f32) -> Result<Self, MetricsError> {
        check_threshold(threshold)?;
        Ok(Self {
            threshold,
            ..Self::default()
        })
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Samples accumulated so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Samples skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Adds one sample: `probs`/`gt` at the model resolution, `orig_probs`/`orig_gt` at
    /// the original image size (all row-major, probabilities in `[0, 1]`).
    ///
    /// All inputs are validated before anything is accumulated: on error the sample is
    /// not counted, [`Report::skipped`] is incremented, and the error is returned.
    pub fn add(
        &mut self,
        probs: &[f32],
        gt: &[bool],
        orig_probs: &[f32],
        orig_gt: &[bool],
    ) -> Result<SampleMetrics, MetricsError> {
        match self.try_add(probs, gt, orig_probs, orig_gt) {
            Ok(m) => Ok(m),
            Err(e) => {
                self.skipped += 1;
                Err(e)
            }
        }
    }

    fn try_add(
        &mut self,
        probs: &[f32],
        gt: &[bool],
        orig_probs: &[f32],
        orig_gt: &[bool],
    ) -> Result<SampleMetrics, MetricsError> {
        // One pass at model resolution: validation, confusion and AP bins.
        check_lengths("probabilities", probs.len(), "ground truth", gt.len())?;
        let mut confusion = Confusion::default();
        let mut ap = ApAccumulator::default();
        for (i, (&p, &g)) in probs.iter().zip(gt).enumerate() {
            let p = probability("probabilities", i, p)?;
            confusion.count(p > self.threshold, g);
            let bin = ap_bin(p);
            if g {
                ap.pos[bin] += 1
            } else {
                ap.neg[bin] += 1
            }
        }
        let original = confusion_named(
            orig_probs,
            orig_gt,
            self.threshold,
            ("original-size probabilities", "original-size ground truth"),
        )?;

        let m = SampleMetrics {
            confusion,
            accuracy: confusion.accuracy(),
            dice: confusion.dice(),
            iou: confusion.iou(),
            clipseg_iou: confusion.iou_clipseg(),
            original,
            phrasecut_iou: self.phrasecut.add_confusion(&original),
        };
        self.count += 1;
        self.accuracy_sum += m.accuracy;
        self.dice_sum += m.dice;
        self.iou_sum += m.iou;
        self.clipseg_iou_sum += m.clipseg_iou;
        self.confusion.add(&confusion);
        self.ap.merge(&ap);
        Ok(m)
    }

    /// Records a sample that could not be evaluated (e.g. an unreadable image).
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Summed model-resolution counts at the threshold.
    pub fn confusion(&self) -> Confusion {
        self.confusion
    }

    /// The AP accumulator (e.g. for [`ApAccumulator::curve`]).
    pub fn ap_accumulator(&self) -> &ApAccumulator {
        &self.ap
    }

    /// The report; [`MetricsError::NoSamples`] if no sample was accumulated.
    pub fn report(&self) -> Result<Report, MetricsError> {
        if self.count == 0 {
            return Err(MetricsError::NoSamples);
        }
        let n = self.count as f64;
        Ok(Report {
            seed: SeedReport {
                accuracy: self.accuracy_sum / n,
                dice: self.dice_sum / n,
                iou: self.iou_sum / n,
            },
            clipseg: ClipsegReport {
                miou: self.clipseg_iou_sum / n,
                iou_fg: self.confusion.iou_clipseg(),
                ap: self.ap.ap(),
            },
            phrasecut: self.phrasecut.report()?,
            count: self.count,
            skipped: self.skipped,
            threshold: f32_as_decimal_f64(self.threshold),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TOL: f64 = 1e-6;

    fn close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() <= TOL, "{what}: got {a}, expected {b}");
    }

    // ------------------------------------------------------------ hand-checkable
    #[test]
    fn two_by_two_by_hand() {
        // pred = [1, 1, 0, 0] at 0.5; gt = [1, 0, 1, 0] -> one of each outcome.
        let probs = [0.9, 0.6, 0.4, 0.1];
        let gt = [true, false, true, false];
        let c = Confusion::from_probs(&probs, &gt, 0.5).unwrap();
        assert_eq!(
            c,
            Confusion {
                tp: 1,
                fp: 1,
                fn_: 1,
                tn: 1
            }
        );
        assert_eq!(pixel_accuracy(&probs, &gt, 0.5).unwrap(), 0.5);
        assert_eq!(dice(&probs, &gt, 0.5).unwrap(), 0.5);
        assert_eq!(iou(&probs, &gt, 0.5).unwrap(), 1.0 / 3.0);
        assert_eq!(c.iou_clipseg(), 0.25);
    }

    #[test]
    fn threshold_is_strict_and_compared_in_f32() {
        let gt = [true, true];
        // p == threshold is background.
        assert_eq!(
            Confusion::from_probs(&[0.5, 0.5000001], &gt, 0.5)
                .unwrap()
                .tp,
            1
        );
        assert_eq!(Confusion::from_probs(&[0.3, 0.3], &gt, 0.3).unwrap().tp, 0);
        // Threshold 0: everything but exact zeros; threshold 1: nothing.
        assert_eq!(Confusion::from_probs(&[0.0, 1e-9], &gt, 0.0).unwrap().tp, 1);
        assert_eq!(Confusion::from_probs(&[1.0, 1.0], &gt, 1.0).unwrap().tp, 0);
    }

    #[test]
    fn empty_masks_conventions() {
        let none = [false; 4];
        let some = [true, false, false, false];
        let both_empty = Confusion::from_masks(&none, &none).unwrap();
        assert_eq!(
            (both_empty.iou(), both_empty.dice(), both_empty.accuracy()),
            (0.0, 0.0, 1.0)
        );
        assert_eq!(both_empty.iou_clipseg(), 0.0);
        let empty_pred = Confusion::from_masks(&none, &some).unwrap();
        assert_eq!(
            (empty_pred.iou(), empty_pred.dice(), empty_pred.accuracy()),
            (0.0, 0.0, 0.75)
        );
        let empty_gt = Confusion::from_masks(&some, &none).unwrap();
        assert_eq!(
            (empty_gt.iou(), empty_gt.dice(), empty_gt.accuracy()),
            (0.0, 0.0, 0.75)
        );
        let perfect = Confusion::from_masks(&some, &some).unwrap();
        assert_eq!(
            (perfect.iou(), perfect.dice(), perfect.accuracy()),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(perfect.iou_clipseg(), 0.5);
        assert_eq!(Confusion::default().accuracy(), 0.0);
    }

    #[test]
    fn errors_not_panics() {
        use MetricsError::*;
        assert!(matches!(
            iou(&[0.1, 0.2], &[true], 0.5),
            Err(LengthMismatch {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(iou(&[], &[], 0.5), Err(Empty(_))));
        assert_eq!(
            iou(&[0.1, f32::NAN], &[true, true], 0.5),
            Err(NanProbability {
                what: "probabilities",
                index: 1
            })
        );
        assert!(matches!(
            iou(&[3.0], &[true], 0.5),
            Err(ProbabilityOutOfRange { index: 0, .. })
        ));
        assert!(matches!(
            iou(&[-0.5], &[true], 0.5),
            Err(ProbabilityOutOfRange { .. })
        ));
        assert!(matches!(
            iou(&[f32::INFINITY], &[true], 0.5),
            Err(ProbabilityOutOfRange { .. })
        ));
        assert_eq!(iou(&[0.1], &[true], 1.5), Err(InvalidThreshold(1.5)));
        assert!(matches!(
            iou(&[0.1], &[true], f32::NAN),
            Err(InvalidThreshold(_))
        ));
        assert!(matches!(
            iou(&[0.1], &[true], -0.1),
            Err(InvalidThreshold(_))
        ));
        assert!(Evaluation::new(2.0).is_err());
        assert_eq!(Evaluation::default().report(), Err(NoSamples));
        assert_eq!(PhraseCutAccumulator::new().report(), Err(NoSamples));
        assert!(matches!(
            Confusion::from_masks(&[true], &[]),
            Err(LengthMismatch { .. })
        ));
        // Round-off overshoot is clamped, not rejected.
        assert_eq!(iou(&[1.00001, -0.00001], &[true, false], 1.0).unwrap(), 0.0);
        assert_eq!(iou(&[1.00001, -0.00001], &[true, false], 0.5).unwrap(), 1.0);
    }

    #[test]
    fn ap_thresholds_match_numpy_linspace() {
        assert_eq!(AP_THRESHOLDS.len(), 49);
        assert_eq!(AP_THRESHOLDS[0], 0.02);
        assert_eq!(AP_THRESHOLDS[4], 0.1);
        assert_eq!(AP_THRESHOLDS[14], 0.3);
        assert_eq!(AP_THRESHOLDS[24], 0.5);
        assert_eq!(AP_THRESHOLDS[48], 0.98);
        assert!(AP_THRESHOLDS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            (
                ap_bin(0.0),
                ap_bin(0.02),
                ap_bin(0.021),
                ap_bin(0.5),
                ap_bin(1.0)
            ),
            (0, 0, 1, 24, 49)
        );
    }

    #[test]
    fn simpson_by_hand() {
        // Exact for polynomials of degree <= 2 on odd counts; linear on any count.
        close(
            simpson_avg(&[0.0, 0.5, 1.0], &[0.0, 0.5, 1.0]),
            0.5,
            "y=x, 3 points",
        );
        close(
            simpson_avg(&[0.0, 0.2, 0.7, 1.0], &[0.0, 0.2, 0.7, 1.0]),
            0.5,
            "y=x, 4 points",
        );
        close(
            simpson_avg(&[0.0, 0.04, 0.36], &[0.0, 0.2, 0.6]),
            0.072,
            "y=x^2, irregular",
        );
        close(simpson_avg(&[1.0, 3.0], &[0.0, 2.0]), 4.0, "trapezoid");
        assert_eq!(simpson_avg(&[0.7], &[0.3]), 0.0);
        assert_eq!(simpson_avg(&[], &[]), 0.0);
        // Zero spacing (equal recalls) is guarded, not NaN: h0 = 0 -> h1 (y0 + y2) / 3.
        close(
            simpson_avg(&[0.2, 0.8, 0.5], &[0.5, 0.5, 1.0]),
            0.5 * (0.2 + 0.5) / 3.0,
            "zero spacing",
        );
    }

    #[test]
    fn ap_quirks() {
        // A perfect prediction: all 49 points coincide -> one point -> AP 0 (as CLIPSeg).
        let mut acc = ApAccumulator::new();
        acc.add(&[1.0, 1.0, 0.0, 0.0], &[true, true, false, false])
            .unwrap();
        assert_eq!(acc.curve(), vec![(2.0 / 3.0, 2.0 / 3.0)]);
        assert_eq!(acc.ap(), Some(0.0));
        // No pixel above 0.02 at all -> no curve -> None (CLIPSeg asserts).
        let mut acc = ApAccumulator::new();
        acc.add(&[0.02, 0.0], &[true, false]).unwrap();
        assert_eq!(acc.ap(), None);
        // Two points: trapezoid. Positives at 0.9, one negative at 0.4.
        // t < 0.4: tp=2 fp=1 -> (2/3, 1/2); 0.4 <= t < 0.9: tp=2 fp=0 -> (2/3, 2/3)
        // (equal recall, so the curve has zero width) -> AP 0.
        let mut acc = ApAccumulator::new();
        acc.add(&[0.9, 0.9, 0.4], &[true, true, false]).unwrap();
        assert_eq!(acc.curve(), vec![(2.0 / 3.0, 0.5), (2.0 / 3.0, 2.0 / 3.0)]);
        assert_eq!(acc.ap(), Some(0.0));
        // Errors leave the accumulator untouched.
        let before = acc.clone();
        assert!(acc.add(&[0.5, f32::NAN], &[true, true]).is_err());
        assert_eq!(acc, before);
    }

    #[test]
    fn phrasecut_pr_is_strict() {
        let mut pc = PhraseCutAccumulator::new();
        // IoU exactly 0.5 (i=1, u=2): not counted for Pr@0.5.
        assert_eq!(pc.add_masks(&[true, false], &[true, true]).unwrap(), 0.5);
        // IoU 1.
        assert_eq!(pc.add_masks(&[true, false], &[true, false]).unwrap(), 1.0);
        // Both empty: IoU 0, adds nothing to the cumulative sums.
        assert_eq!(pc.add_masks(&[false, false], &[false, false]).unwrap(), 0.0);
        let r = pc.report().unwrap();
        close(r.mean_iou, 0.5, "mean");
        close(r.cum_iou, 2.0 / 3.0, "cum");
        close(r.pr_50, 1.0 / 3.0, "pr@0.5");
        close(r.pr_90, 1.0 / 3.0, "pr@0.9");
        let mut pc = PhraseCutAccumulator::new();
        pc.add_masks(&[false], &[false]).unwrap();
        assert_eq!(pc.report().unwrap().cum_iou, 0.0);
    }

    #[test]
    fn evaluation_skips_bad_samples_atomically() {
        let mut ev = Evaluation::default();
        let ok = ev
            .add(
                &[0.9, 0.1],
                &[true, false],
                &[0.9, 0.1, 0.8],
                &[true, false, false],
            )
            .unwrap();
        assert_eq!(ok.iou, 1.0);
        assert_eq!(ok.phrasecut_iou, 0.5);
        let before = ev.clone();
        let e = ev
            .add(
                &[0.9, 0.1],
                &[true, false],
                &[0.9, f32::NAN],
                &[true, false],
            )
            .unwrap_err();
        assert_eq!(
            e,
            MetricsError::NanProbability {
                what: "original-size probabilities",
                index: 1
            }
        );
        let e = ev
            .add(&[0.9, 0.1], &[true, false], &[0.9], &[true, false])
            .unwrap_err();
        assert!(matches!(
            e,
            MetricsError::LengthMismatch {
                what: "original-size ground truth",
                ..
            }
        ));
        ev.skip();
        assert_eq!(ev.skipped(), 3);
        assert_eq!(ev.count(), 1);
        let (mut a, mut b) = (ev.clone(), before);
        a.skipped = 0;
        b.skipped = 0;
        assert_eq!(a, b);
    }

    #[test]
    fn report_json_shape() {
        let mut ev = Evaluation::new(0.3).unwrap();
        ev.add(
            &[0.9, 0.1, 0.5],
            &[true, false, true],
            &[0.9, 0.1],
            &[true, false],
        )
        .unwrap();
        let v: Value = serde_json::to_value(ev.report().unwrap()).unwrap();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            [
                "clipseg",
                "count",
                "phrasecut",
                "seed",
                "skipped",
                "threshold"
            ]
        );
        assert_eq!(keys(&v["seed"]), ["accuracy", "dice", "iou"]);
        assert_eq!(keys(&v["clipseg"]), ["ap", "iou_fg", "miou"]);
        assert_eq!(
            keys(&v["phrasecut"]),
            [
                "cum_iou", "mean_iou", "pr@0.5", "pr@0.6", "pr@0.7", "pr@0.8", "pr@0.9"
            ]
        );
        assert_eq!(v["threshold"], serde_json::json!(0.3));
        let text = serde_json::to_string(&ev.report().unwrap()).unwrap();
        assert!(
            text.contains(r#""threshold":0.3}"#) && text.contains(r#""pr@0.5":"#),
            "{text}"
        );
        assert_eq!(v["count"], 1);
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev.report().unwrap());
    }

    // ------------------------------------------------ independent reference values
    const FIXTURE: &str = include_str!("../tests/fixtures/metrics/metrics_reference.json");

    fn probs(v: &Value) -> Vec<f32> {
        // Same rounding as the generator: f64 division, then one rounding to f32.
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| (m.as_i64().unwrap() as f64 / 1000.0) as f32)
            .collect()
    }

    fn mask(v: &Value) -> Vec<bool> {
        v.as_str().unwrap().bytes().map(|b| b == b'1').collect()
    }

    fn f(v: &Value) -> f64 {
        v.as_f64().unwrap()
    }

    #[test]
    fn fixture_ap_thresholds() {
        let fx: Value = serde_json::from_str(FIXTURE).unwrap();
        let t: Vec<f32> = fx["ap_thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| f(v) as f32)
            .collect();
        assert_eq!(t, AP_THRESHOLDS.to_vec());
    }

    #[test]
    fn fixture_per_sample_and_reports() {
        let fx: Value = serde_json::from_str(FIXTURE).unwrap();
        let samples = fx["samples"].as_array().unwrap();
        assert!(samples.len() >= 12);
        for rep in fx["reports"].as_array().unwrap() {
            let t = f(&rep["threshold"]) as f32;
            assert_eq!(f32_as_decimal_f64(t), f(&rep["threshold"]));
            let key = match t {
                0.5 => "0.5",
                0.3 => "0.3",
                0.0 => "0.0",
                1.0 => "1.0",
                _ => panic!("unexpected threshold {t}"),
            };
            let mut ev = Evaluation::new(t).unwrap();
            for s in samples {
                let name = s["name"].as_str().unwrap();
                let (p, g) = (probs(&s["probs_milli"]), mask(&s["gt"]));
                let (op, og) = (probs(&s["orig_probs_milli"]), mask(&s["orig_gt"]));
                assert_eq!(
                    p.len() as u64,
                    s["h"].as_u64().unwrap() * s["w"].as_u64().unwrap()
                );
                assert_eq!(
                    op.len() as u64,
                    s["orig_h"].as_u64().unwrap() * s["orig_w"].as_u64().unwrap()
                );
                let m = ev.add(&p, &g, &op, &og).unwrap();
                let e = &s["expected"][key];
                let ctx = |k: &str| format!("{name} @ {t}: {k}");
                let c = m.confusion;
                assert_eq!(
                    (c.tp, c.fp, c.fn_, c.tn),
                    (
                        e["tp"].as_u64().unwrap(),
                        e["fp"].as_u64().unwrap(),
                        e["fn"].as_u64().unwrap(),
                        e["tn"].as_u64().unwrap()
                    ),
                    "{}",
                    ctx("confusion")
                );
                close(m.accuracy, f(&e["accuracy"]), &ctx("accuracy"));
                close(m.dice, f(&e["dice"]), &ctx("dice"));
                close(m.iou, f(&e["iou"]), &ctx("iou"));
                close(m.clipseg_iou, f(&e["clipseg_iou"]), &ctx("clipseg_iou"));
                assert_eq!(
                    m.original.intersection(),
                    e["orig_i"].as_u64().unwrap(),
                    "{}",
                    ctx("orig_i")
                );
                assert_eq!(
                    m.original.union(),
                    e["orig_u"].as_u64().unwrap(),
                    "{}",
                    ctx("orig_u")
                );
                close(
                    m.phrasecut_iou,
                    f(&e["phrasecut_iou"]),
                    &ctx("phrasecut_iou"),
                );
                // The free functions agree with the accumulator.
                close(
                    pixel_accuracy(&p, &g, t).unwrap(),
                    m.accuracy,
                    &ctx("pixel_accuracy()"),
                );
                close(dice(&p, &g, t).unwrap(), m.dice, &ctx("dice()"));
                close(iou(&p, &g, t).unwrap(), m.iou, &ctx("iou()"));
            }
            let got = serde_json::to_value(ev.report().unwrap()).unwrap();
            compare_json(&got, rep, &format!("report @ {t}"));
        }
    }

    fn compare_json(got: &Value, want: &Value, path: &str) {
        match (got, want) {
            (Value::Object(g), Value::Object(w)) => {
                let mut gk: Vec<_> = g.keys().collect();
                let mut wk: Vec<_> = w.keys().collect();
                gk.sort();
                wk.sort();
                assert_eq!(gk, wk, "{path}: keys");
                for (k, wv) in w {
                    compare_json(&g[k], wv, &format!("{path}.{k}"));
                }
            }
            (Value::Number(_), Value::Number(_)) => close(f(got), f(want), path),
            _ => assert_eq!(got, want, "{path}"),
        }
    }

    #[test]
    fn fixture_ap_cases() {
        let fx: Value = serde_json::from_str(FIXTURE).unwrap();
        let cases = fx["ap_cases"].as_array().unwrap();
        assert!(cases.len() >= 8);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let mut acc = ApAccumulator::new();
            for s in case["samples"].as_array().unwrap() {
                acc.add(&probs(&s["probs_milli"]), &mask(&s["gt"])).unwrap();
            }
            assert_eq!(
                acc.curve().len() as u64,
                case["points"].as_u64().unwrap(),
                "{name}: points"
            );
            match (acc.ap(), case["ap"].as_f64()) {
                (Some(a), Some(b)) => close(a, b, name),
                (None, None) => {}
                (a, b) => panic!("{name}: got {a:?}, expected {b:?}"),
            }
        }
    }
}

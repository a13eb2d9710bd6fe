#!/usr/bin/env python3
"""Reference values for `src/metrics.rs`, computed independently of the Rust code.

Writes tests/fixtures/metrics/metrics_reference.json (run from anywhere; paths are
relative to this script). Needs numpy, scipy, scikit-learn and torch, e.g.

    /opt/refenv/bin/python tools/make_metric_fixtures.py

Probability maps are stored as integers in per-mille (p = float32(m / 1000)), masks
as '0'/'1' strings, so that the Rust test and this script read bit-identical f32
inputs (both compute the division in f64 and round once to f32).

Definitions re-implemented here (read from the reference repositories, not copied):

* CLIPSeg (github.com/timojl/clipseg, metrics.py, class FixedIntervalMetrics):
  - `add`: sigmoid probabilities of one sample are sorted; for each of the 49
    thresholds np.linspace(0, 1, 51)[1:-1] (= 0.02 .. 0.98) a pixel is positive iff
    p > t (strict; torch compares a float32 tensor with a Python float in float32);
    tp/fp/fn/tn are counted per sample and per threshold.
  - `value`: counts are summed over all samples of the split; for the thresholds with
    tp + fp > 0: precision = tp / (1 + tp + fp), recall = tp / (1 + tp + fn) (note the
    "+1"); duplicate (recall, precision) pairs are removed, pairs are sorted by recall,
    and AP = scipy.integrate.simps(precisions, recalls).
  - fgiou at threshold j = tp / (1 + tp + fp + fn) of the summed counts.
  - mean IoU: the same "+1" IoU per class, averaged over classes; for PhraseCut the
    "class" is the sample index (datasets/phrasecut.py, PhraseCut.__getitem__ returns
    `(seg, torch.zeros(0), i)`), so mIoU is a mean over samples.
* PhraseCut (github.com/ChenyunWu/PhraseCutDataset):
  - utils/iou.py, iou_polygons_masks: i = |gt & pred|, u = |gt | pred|,
    iou = 0 if i == 0 else i / u.
  - utils/evaluator.py, Evaluator.analyze_stats: mean_mask_iou = mean(iou),
    cum_mask_iou = sum(i) / sum(u), pred_mask_acc[t] = mean(iou > t) for
    t in [0.5, 0.6, 0.7, 0.8, 0.9] (strict).
  - utils/find_thresh.py, predict_with_thresh: pred_mask = pred_scores > threshold.
"""

import json
import os
from pathlib import Path

import numpy as np
import scipy
import scipy.integrate
import sklearn.metrics as skm
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "fixtures" / "metrics" / "metrics_reference.json"

# metrics.py, FixedIntervalMetrics.__init__: n_values=51, "[1:-1] ignores 0 and 1"
AP_THRESHOLDS = np.linspace(0, 1, 51)[1:-1]
assert len(AP_THRESHOLDS) == 49
PR_THRESHOLDS = [0.5, 0.6, 0.7, 0.8, 0.9]  # utils/evaluator.py mask_threshs
REPORT_THRESHOLDS = [0.5, 0.3, 0.0, 1.0]


def to_probs(milli):
    return (np.asarray(milli, dtype=np.int64) / 1000.0).astype(np.float32)


def mask_str(m):
    return "".join("1" if v else "0" for v in np.asarray(m, dtype=bool).ravel())


# ---------------------------------------------------------------- per-sample metrics
def confusion(probs, gt, t):
    """Counts with numpy; pred = p > t compared in float32 (as torch / numpy do)."""
    pred = probs > np.float32(t)
    gt = gt.astype(bool)
    tp = int(np.sum(pred & gt))
    fp = int(np.sum(pred & ~gt))
    fn = int(np.sum(~pred & gt))
    tn = int(np.sum(~pred & ~gt))
    return pred, tp, fp, fn, tn


def seed_metrics(probs, gt, t):
    """accuracy / dice / IoU via scikit-learn, cross-checked against the counts."""
    pred, tp, fp, fn, tn = confusion(probs, gt, t)
    y, p = gt.ravel().astype(int), pred.ravel().astype(int)
    acc = skm.accuracy_score(y, p)
    dice = skm.f1_score(y, p, zero_division=0)
    iou = skm.jaccard_score(y, p, zero_division=0)
    # sklearn's confusion_matrix with both labels forced, even if one is absent
    (c_tn, c_fp), (c_fn, c_tp) = skm.confusion_matrix(y, p, labels=[0, 1])
    assert (c_tp, c_fp, c_fn, c_tn) == (tp, fp, fn, tn)
    assert abs(acc - (tp + tn) / (tp + fp + fn + tn)) < 1e-15
    assert abs(dice - (0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))) < 1e-15
    assert abs(iou - (0 if tp == 0 else tp / (tp + fp + fn))) < 1e-15
    return dict(tp=tp, fp=fp, fn=fn, tn=tn, accuracy=float(acc), dice=float(dice),
                iou=float(iou), clipseg_iou=tp / (1 + tp + fp + fn))


def phrasecut_iou(pred, gt):
    """utils/iou.py iou_polygons_masks (mask form)."""
    i = int(np.sum(np.logical_and(gt, pred) > 0))
    u = int(np.sum((gt.astype(np.int64) + pred.astype(np.int64)) > 0))
    iou = 0 if i == 0 else i * 1.0 / u
    return float(iou), i, u


# ------------------------------------------------------------------ CLIPSeg AP
def clipseg_counts(probs, gt):
    """FixedIntervalMetrics.add for one sample (sort-based, torch, as in metrics.py)."""
    p = torch.from_numpy(probs.ravel().astype(np.float32))
    g = torch.from_numpy(gt.ravel().astype(np.float32))
    s = p.sort()
    p, g = s.values, g[s.indices]
    tps, fps, fns, tns = [], [], [], []
    for thresh in AP_THRESHOLDS:
        valid = torch.where(p > thresh)[0]
        n = int(valid[0]) if len(valid) > 0 else len(g)
        fn = int(g[:n].sum())
        tp = int(g[n:].sum())
        fns.append(fn)
        tns.append(n - fn)
        tps.append(tp)
        fps.append(len(g) - n - tp)
    return np.array([tps, fps, fns, tns], dtype=np.int64)  # shape (4, 49)


def basic_simpson(y, x, start, stop):
    """scipy.integrate._quadrature._basic_simpson for 1-D x (scipy >= 1.9 guards
    against zero spacings: a zero divisor yields 0 instead of inf/nan)."""
    total = 0.0
    i = start
    while i < stop and i + 2 < len(y):
        h0 = x[i + 1] - x[i]
        h1 = x[i + 2] - x[i + 1]
        hsum, hprod = h0 + h1, h0 * h1
        h0divh1 = h0 / h1 if h1 != 0 else 0.0
        inv = 1.0 / h0divh1 if h0divh1 != 0 else 0.0
        q = hsum / hprod if hprod != 0 else 0.0
        total += hsum / 6.0 * (y[i] * (2.0 - inv) + y[i + 1] * (hsum * q) + y[i + 2] * (2.0 - h0divh1))
        i += 2
    return total


def simps_avg(y, x):
    """scipy.integrate.simps(y, x) with its pre-1.11 default even='avg'."""
    n = len(y)
    if n % 2 == 1:
        return basic_simpson(y, x, 0, n - 2)
    val = 0.5 * (x[-1] - x[-2]) * (y[-1] + y[-2])
    result = basic_simpson(y, x, 0, n - 3)
    val += 0.5 * (x[1] - x[0]) * (y[1] + y[0])
    result += basic_simpson(y, x, 1, n - 2)
    return result / 2.0 + val / 2.0


def simps_avg_via_scipy(y, x):
    """The same rule expressed with the installed scipy.integrate.simpson, which
    still implements the odd-sample-count case identically."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    n = len(y)
    if n == 1:
        return 0.0
    if n == 2:
        return 0.5 * (x[1] - x[0]) * (y[1] + y[0])
    if n % 2 == 1:
        return float(scipy.integrate.simpson(y, x=x))
    first = scipy.integrate.simpson(y[:-1], x=x[:-1]) + 0.5 * (x[-1] - x[-2]) * (y[-1] + y[-2])
    last = scipy.integrate.simpson(y[1:], x=x[1:]) + 0.5 * (x[1] - x[0]) * (y[1] + y[0])
    return float(0.5 * (first + last))


def clipseg_ap(summed):
    tp, fp, fn, _ = [summed[k].tolist() for k in range(4)]
    idx = [j for j in range(49) if tp[j] + fp[j] > 0]
    if not idx:
        return None, 0, False  # CLIPSeg: assert ... 'no predictions is made'
    precisions = [tp[j] / (1 + tp[j] + fp[j]) for j in idx]
    recalls = [tp[j] / (1 + tp[j] + fn[j]) for j in idx]
    # CLIPSeg sorts the de-duplicated pairs with key=recall only (tie order = set
    # iteration order, unspecified); we break ties by precision, which is also the
    # order of the 'precision_recall_curve' that CLIPSeg returns (plain tuple sort).
    pts = sorted(set(zip(recalls, precisions)))
    rs = [r for r, _ in pts]
    ps = [p for _, p in pts]
    ap = simps_avg(ps, rs)
    ap2 = simps_avg_via_scipy(ps, rs)
    assert abs(ap - ap2) < 1e-12, (ap, ap2)
    ties = len(set(rs)) < len(rs)
    return float(ap), len(pts), ties


# ------------------------------------------------------------------ samples
rng = np.random.default_rng(20240601)


def blob(h, w, frac):
    """A random ellipse-ish foreground region covering roughly `frac` of the map."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = np.sqrt(frac) * h * rng.uniform(0.4, 0.8), np.sqrt(frac) * w * rng.uniform(0.4, 0.8)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def noisy(gt, noise):
    """Per-mille probabilities correlated with gt."""
    base = np.where(gt, 0.75, 0.25) + rng.normal(0, noise, gt.shape)
    return np.clip(np.round(base * 1000), 0, 1000).astype(np.int64)


def uniform(shape, lo=0, hi=1000):
    return rng.integers(lo, hi + 1, size=shape)


def edge_iou_orig(i, u, h, w):
    """Original-size pair with exactly |pred & gt| = i, |pred | gt| = u."""
    gt = np.zeros(h * w, bool)
    pred = np.zeros(h * w, bool)
    cells = rng.permutation(h * w)[:u]
    gt[cells[:u]] = True  # gt = all u cells
    pred[cells[:i]] = True  # pred = i of them
    probs = np.where(pred, rng.integers(501, 1001, h * w), rng.integers(0, 501, h * w))
    return probs.reshape(h, w), gt.reshape(h, w)


samples = []


def add(name, probs, gt, oprobs, ogt):
    samples.append(dict(name=name, probs=np.asarray(probs), gt=np.asarray(gt, bool),
                        oprobs=np.asarray(oprobs), ogt=np.asarray(ogt, bool)))


g = blob(16, 16, 0.3); og = blob(20, 20, 0.3)
add("random_16x16", uniform((16, 16)), g, uniform((20, 20)), og)
g = blob(24, 20, 0.25); og = blob(30, 25, 0.25)
add("correlated_24x20", noisy(g, 0.2), g, noisy(og, 0.2), og)
g = blob(30, 40, 0.2); og = blob(36, 48, 0.2)
add("correlated_40x30", noisy(g, 0.3), g, noisy(og, 0.3), og)
g = blob(16, 16, 0.3); og = blob(18, 22, 0.3)
# all-empty prediction at 0.5 (includes values exactly 0.5: strict '>')
p = uniform((16, 16), 0, 500); p[0, :4] = 500
op = uniform((18, 22), 0, 500); op[3, 3] = 500
add("empty_prediction", p, g, op, og)
add("empty_gt", uniform((20, 20)), np.zeros((20, 20), bool), uniform((21, 19)), np.zeros((21, 19), bool))
add("both_empty", np.zeros((16, 16), np.int64), np.zeros((16, 16), bool),
    np.zeros((17, 17), np.int64), np.zeros((17, 17), bool))
g = blob(24, 24, 0.3); og = blob(26, 30, 0.3)
add("perfect", np.where(g, 1000, 0), g, np.where(og, 1000, 0), og)
g = blob(24, 24, 0.3); og = blob(26, 30, 0.3)
add("inverted", np.where(g, 0, 1000), g, np.where(og, 0, 1000), og)
# probabilities exactly on the CLIPSeg grid (multiples of 0.02) and on 0.3 / 0.5
g = blob(20, 30, 0.3)
add("on_thresholds_30x20", np.where(g, rng.integers(10, 51, g.shape), rng.integers(0, 41, g.shape)) * 20, g,
    *edge_iou_orig(3, 5, 12, 12))  # orig IoU exactly 0.6
g = blob(23, 17, 0.3)
add("odd_17x23", noisy(g, 0.35), g, *edge_iou_orig(1, 2, 10, 14))  # orig IoU exactly 0.5
g = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]], bool)
add("tiny_4x4", uniform((4, 4)), g, *edge_iou_orig(9, 10, 8, 8))  # orig IoU exactly 0.9
g = blob(8, 8, 0.4)
add("small_8x8", noisy(g, 0.25), g, *edge_iou_orig(7, 10, 9, 9))  # orig IoU exactly 0.7


def sample_expected(s, t):
    probs, oprobs = to_probs(s["probs"]), to_probs(s["oprobs"])
    e = seed_metrics(probs, s["gt"], t)
    opred = oprobs > np.float32(t)
    iou, i, u = phrasecut_iou(opred, s["ogt"])
    e.update(phrasecut_iou=iou, orig_i=i, orig_u=u)
    return e


def report(t):
    per = [sample_expected(s, t) for s in samples]
    n = len(per)
    TP, FP, FN = (sum(e[k] for e in per) for k in ("tp", "fp", "fn"))
    summed = sum(clipseg_counts(to_probs(s["probs"]), s["gt"]) for s in samples)
    ap, _, _ = clipseg_ap(summed)
    iou_fg = TP / (1 + TP + FP + FN)
    miou = float(np.mean([e["clipseg_iou"] for e in per]))
    # cross-check against CLIPSeg's own grid quantities when t is a grid value
    grid = [j for j, v in enumerate(AP_THRESHOLDS) if v == t]
    if grid:
        j = grid[0]
        tp, fp, fn = summed[0][j], summed[1][j], summed[2][j]
        assert abs(iou_fg - tp / (1 + tp + fp + fn)) < 1e-15
        per_cls = [clipseg_counts(to_probs(s["probs"]), s["gt"])[:, j] for s in samples]
        m = np.mean([c[0] / (1 + c[0] + c[1] + c[2]) for c in per_cls])
        assert abs(miou - m) < 1e-12
    ious = np.array([e["phrasecut_iou"] for e in per])
    si, su = float(sum(e["orig_i"] for e in per)), float(sum(e["orig_u"] for e in per))
    pc = {"mean_iou": float(np.mean(ious)), "cum_iou": (si / su) if su > 0 else 0.0}
    for pt in PR_THRESHOLDS:
        pc[f"pr@{pt}"] = float(np.sum(ious > pt) * 1.0 / n)
    return {
        "seed": {k: float(np.mean([e[k] for e in per])) for k in ("accuracy", "dice", "iou")},
        "clipseg": {"miou": miou, "iou_fg": iou_fg, "ap": ap},
        "phrasecut": pc,
        "count": n,
        "skipped": 0,
        "threshold": t,
    }


# ------------------------------------------------------------------ AP-only cases
def ap_case(name, parts):
    summed = sum(clipseg_counts(to_probs(p), np.asarray(g, bool)) for p, g in parts)
    ap, npts, ties = clipseg_ap(summed)
    return dict(name=name, ap=ap, points=npts, recall_ties=ties,
                samples=[dict(h=int(np.shape(p)[0]), w=int(np.shape(p)[1]),
                              probs_milli=np.asarray(p).ravel().tolist(), gt=mask_str(g))
                         for p, g in parts])


by_name = {s["name"]: s for s in samples}
ap_cases = [
    ap_case("perfect_single_point", [(by_name["perfect"]["probs"], by_name["perfect"]["gt"])]),
    ap_case("no_positive_prediction", [(np.full((4, 4), 20), np.eye(4, dtype=bool))]),
    ap_case("correlated_pair", [(by_name["correlated_24x20"]["probs"], by_name["correlated_24x20"]["gt"]),
                                (by_name["small_8x8"]["probs"], by_name["small_8x8"]["gt"])]),
]
# coarse probability levels: few distinct curve points, recall ties, even and odd counts
levels = np.array([0, 100, 290, 300, 350, 500, 600, 730, 900, 990, 1000])
seen = set()
for k in range(400):
    h, w = 6, 6
    gt = rng.random((h, w)) < 0.4
    lv = rng.choice(levels, size=rng.integers(2, 7), replace=False)
    p = rng.choice(lv, size=(h, w))
    if rng.random() < 0.5:  # positives only at high levels -> recall plateaus (ties)
        p = np.where(gt, max(lv), p)
    summed = clipseg_counts(to_probs(p), gt)
    ap, npts, ties = clipseg_ap(summed)
    key = (npts if npts <= 3 else ("odd" if npts % 2 else "even"), ties)
    if ap is not None and key not in seen:
        seen.add(key)
        ap_cases.append(ap_case(f"coarse_{k}_n{npts}{'_ties' if ties else ''}", [(p, gt)]))
print("AP cases:", [(c["name"], c["points"], c["recall_ties"]) for c in ap_cases])
assert any(c["points"] == 1 for c in ap_cases) and any(c["points"] == 2 for c in ap_cases)
assert any(c["points"] % 2 == 0 and c["points"] >= 4 for c in ap_cases)
assert any(c["points"] % 2 == 1 and c["points"] >= 3 for c in ap_cases)
assert any(c["recall_ties"] for c in ap_cases)

fixture = {
    "about": "Generated by tools/make_metric_fixtures.py; see its docstring. "
             "probs = float32(milli / 1000), masks are row-major '0'/'1' strings.",
    "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "torch": torch.__version__,
                 "sklearn": __import__("sklearn").__version__},
    "ap_thresholds": [float(np.float32(t)) for t in AP_THRESHOLDS],
    "samples": [
        dict(name=s["name"], h=int(s["probs"].shape[0]), w=int(s["probs"].shape[1]),
             probs_milli=s["probs"].ravel().tolist(), gt=mask_str(s["gt"]),
             orig_h=int(s["oprobs"].shape[0]), orig_w=int(s["oprobs"].shape[1]),
             orig_probs_milli=s["oprobs"].ravel().tolist(), orig_gt=mask_str(s["ogt"]),
             expected={str(t): sample_expected(s, t) for t in REPORT_THRESHOLDS})
        for s in samples
    ],
    "reports": [report(t) for t in REPORT_THRESHOLDS],
    "ap_cases": ap_cases,
}

OUT.parent.mkdir(parents=True, exist_ok=True)
text = json.dumps(fixture, separators=(",", ":"))
OUT.write_text(text + "\n")
print(f"wrote {OUT} ({len(text) / 1024:.1f} KiB)")
for r in fixture["reports"]:
    print(json.dumps(r))

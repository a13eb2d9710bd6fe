#!/usr/bin/env python3
"""Merge what bench/onnx.sh measured (RUN_DIR/*.json) into one table with ratios and one JSON file.

    python bench/onnx_report.py --run RUN_DIR --work WORK_DIR --model DIR --image IMG --prompt P \
        --iters N --command "bench/onnx.sh ..." [--out FILE]

Ratios are ours / theirs on the same model, input, precision and thread count: below 1 = ours faster.
Writes bench/results/onnx-<date>-<time>.json (or --out); bench/plot.py draws it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def load(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a > 0, b > 0
    u = np.logical_or(ma, mb).sum()
    return 1.0 if u == 0 else float(np.logical_and(ma, mb).sum() / u)


def machine() -> dict:
    m: dict = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        info = Path("/proc/cpuinfo").read_text()
        m["cpu_model"] = re.search(r"model name\s*:\s*(.*)", info).group(1)
        flags = re.search(r"flags\s*:\s*(.*)", info).group(1).split()
        m["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16") if f in flags]
    except (OSError, AttributeError):
        pass
    try:
        kb = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1))
        m["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, AttributeError):
        pass
    for key, cmd in (("chromium", ["/usr/bin/chromium", "--version"]), ("node", ["node", "--version"]), ("rustc", ["rustc", "--version"])):
        try:
            m[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--iters", type=int, required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    run = a.run

    stages = []
    for line in (run / "stages.tsv").read_text().splitlines() if (run / "stages.tsv").exists() else []:
        name, when, la, builds, busy = (line.split("\t") + [""] * 5)[:5]
        stages.append({"stage": name, "at": when, "loadavg_1_5_15": [float(x) for x in la.split()], "build_processes": builds or None,
                       "busy_processes": busy or None})

    ref = np.load(a.work / "inputs" / "ref_logits.npy")
    rt: dict = {}
    ort = load(run / "ort.json") or {}
    pt = load(run / "torch.json") or {}
    rt.update(pt.get("runtimes", {}))
    rt.update(ort.get("runtimes", {}))
    for variant in ("f32", "q8"):
        logits = run / f"native-{variant}-logits.npy"
        quality = {}
        if logits.exists():
            got = np.load(logits).reshape(ref.shape)
            quality = {"mask_iou_vs_torch": iou(got, ref), "max_abs_diff_vs_torch": float(np.abs(got - ref).max()), "mask_fraction": float((got > 0).mean())}
        for t in (1, 2):
            j = load(run / f"native-{variant}-t{t}.json")
            if not j:
                continue
            r = {"engine": "clipseg (native, burn flex)", "precision": variant, "threads": t, "env": f"RAYON_NUM_THREADS={t}",
                 "model": "HF folder" if variant == "f32" else "q8 pack", **{k: j.get(k) for k in ("load_s", "first_pass_s", "full_pass_s", "reprompt_s", "backend", "iters")}, **quality}
            tf = run / f"native-{variant}-t{t}.time"
            if tf.exists():
                wall, user, sys_, kib = (float(x) for x in tf.read_text().split()[-4:])
                r.update(process_cpu_s=round(user + sys_, 2), cores_used=round((user + sys_) / wall, 2), max_rss_bytes=int(kib * 1024))
            rt[f"native-{variant}-t{t}"] = r
    web = load(run / "ortweb.json") or {}
    rt.update(web.get("runtimes", {}))
    browser = load(run / "browser.json")
    if browser:
        for k in ("browser-cpu", "browser-webgpu"):
            b = browser.get("runtimes", {}).get(k)
            if b:
                rt[k] = {"engine": "clipseg (wasm, Chromium)", "precision": "q8 pack", "threads": 1 if k == "browser-cpu" else None,
                         **{f: b.get(f) for f in ("backend", "adapter", "load_s", "first_pass_s", "full_pass_s", "reprompt_s", "full_passes_done", "reprompts_done", "timed_out_in", "error", "worker")}}

    def ratio(name: str, ours: str, theirs: str, key_ours: str = "full_pass_s", key_theirs: str = "full_pass_s") -> dict | None:
        o, t = rt.get(ours, {}).get(key_ours), rt.get(theirs, {}).get(key_theirs)
        if not (o and t):
            return None
        return {"name": name, "ours": ours, "theirs": theirs, "ours_s": o, "theirs_s": t, "ratio": o / t, "metric": key_ours if key_ours == key_theirs else f"{key_ours} / {key_theirs}"}

    pairs = [
        ("native f32, 1 thread / onnxruntime fp32, 1 thread", "native-f32-t1", "ort-fp32-t1"),
        ("native f32, 2 threads / onnxruntime fp32, 2 threads", "native-f32-t2", "ort-fp32-t2"),
        ("native q8, 1 thread / onnxruntime q8, 1 thread", "native-q8-t1", "ort-q8-t1"),
        ("native q8, 2 threads / onnxruntime q8, 2 threads", "native-q8-t2", "ort-q8-t2"),
        ("native f32, 2 threads / PyTorch fp32, 2 threads", "native-f32-t2", "torch-fp32-t2"),
        ("browser cpu (wasm, 1 thread, q8 pack) / ort-web wasm q8", "browser-cpu", "ortweb-wasm-q8"),
        ("browser webgpu / ort-web webgpu fp32", "browser-webgpu", "ortweb-webgpu-fp32"),
        ("browser webgpu / ort-web webgpu q8", "browser-webgpu", "ortweb-webgpu-q8"),
    ]
    ratios = [r for r in (ratio(*p) for p in pairs) if r]
    for name, ours, theirs in (
        ("native f32 re-prompt, 2 threads / onnxruntime fp32 full pass, 2 threads", "native-f32-t2", "ort-fp32-t2"),
        ("native q8 re-prompt, 2 threads / onnxruntime q8 full pass, 2 threads", "native-q8-t2", "ort-q8-t2"),
        ("browser cpu re-prompt / ort-web wasm q8 full pass", "browser-cpu", "ortweb-wasm-q8"),
    ):
        r = ratio(name, ours, theirs, "reprompt_s", "full_pass_s")
        if r:
            ratios.append(r)
    for name, ours, theirs in (("browser cpu first pass / ort-web wasm q8 first pass", "browser-cpu", "ortweb-wasm-q8"),
                               ("browser webgpu first pass / ort-web webgpu fp32 first pass", "browser-webgpu", "ortweb-webgpu-fp32")):
        r = ratio(name, ours, theirs, "first_pass_s", "first_pass_s")
        if r:
            ratios.append(r)

    rounds = (load(run / "rounds.json") or {}).get("configs", {})
    started = stages[0]["at"] if stages else time.strftime("%Y-%m-%dT%H:%M:%S")
    result = {
        "date": started,
        "command": a.command,
        "model": a.model, "image": a.image, "prompt": a.prompt, "iters": a.iters,
        "input_ids": pt.get("input_ids"),
        "processor": pt.get("processor"),
        "machine": machine(),
        "versions": {**pt.get("versions", {}), **ort.get("versions", {}), "onnxruntime_web": web.get("onnxruntime_web"), "export": load(a.work / "export.json")},
        "stages": stages,
        "loadavg_max_1min": max((s["loadavg_1_5_15"][0] for s in stages), default=None),
        "preprocess_s": {"hf_processor": ort.get("preprocess_s")},
        "ref_mask_fraction": pt.get("ref_mask_fraction"),
        "runtimes": rt,
        "ratios": ratios,
        "rounds": rounds or None,
        "browser_bench": {k: browser.get(k) for k in ("date", "command", "pkg", "chromium", "other_load", "notes")} if browser else None,
        "notes": [
            "full pass: preprocessing of the decoded image + tokenization + model + logits on the host; image decoding excluded (as `clipseg bench`)",
            "onnxruntime / PyTorch: HF CLIPSegProcessor (ViTImageProcessorPil + CLIPTokenizer) + session.run / model(); median of --iters after one warm-up pass (first_pass_s)",
            "onnxruntime has one monolithic graph: its re-prompt is a full pass",
            "ort-web: session.run on the tensors the HF processor made in Python (no preprocessing in the page) + the page's own canvas resize/normalize time (preprocess_s) = full_pass_s; session_run_s is without it",
            "ort-web wasm: 1 thread (no COOP/COEP: no SharedArrayBuffer); WebGPU here is SwiftShader (CPU) in headless Chromium",
            "browser (ours): bench/browser.sh, wall-clock on the page around ClipSegClient calls (worker round trip, pixel extraction, readback), q8 pack",
            "mask IoU: logits > 0 on the 352x352 output vs PyTorch float32 on the same inputs",
        ],
    }

    # ---- table ----
    def sec(v):
        return "-" if v is None else f"{v:.3f}"

    rows = []
    order = ["torch-fp32-t2", "ort-fp32-t1", "ort-fp32-t2", "ort-q8-t1", "ort-q8-t2", "native-f32-t1", "native-f32-t2", "native-q8-t1", "native-q8-t2",
             "ortweb-wasm-q8", "ortweb-wasm-fp32", "ortweb-webgpu-fp32", "ortweb-webgpu-q8", "browser-cpu", "browser-webgpu"]
    for k in order + [k for k in rt if k not in order]:
        r = rt.get(k)
        if not r:
            continue
        status = "timed out in " + r["timed_out_in"] if r.get("timed_out_in") else ("error" if r.get("error") else "")
        rows.append([k, sec(r.get("load_s")), sec(r.get("first_pass_s")), sec(r.get("full_pass_s")), sec(r.get("reprompt_s")),
                     "-" if r.get("mask_iou_vs_torch") is None else f"{r['mask_iou_vs_torch']:.4f}", status])
    cols = ["runtime", "load s", "first pass s", "full pass s", "re-prompt s", "IoU vs torch", ""]
    lines = [f"== CLIPSeg: ours vs onnxruntime, {started}", f"model {a.model}, image {a.image}, prompt {a.prompt!r}, iters {a.iters}",
             f"machine: {result['machine'].get('cpus')} x {result['machine'].get('cpu_model')}, {result['machine'].get('memory_gib')} GiB; load average (1 min) before each stage: "
             + ", ".join(f"{s['stage']} {s['loadavg_1_5_15'][0]:.2f}" for s in stages), ""]
    w = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cols)))
    lines.append("  ".join("-" * n for n in w))
    for r in rows:
        lines.append("  ".join(str(v).ljust(w[i]) if i == 0 else str(v).rjust(w[i]) for i, v in enumerate(r)))
    lines.append("")
    if ratios:
        n = max(len(r["name"]) for r in ratios)
        lines.append(f"{'ratio (ours / theirs; < 1 = ours faster)'.ljust(n)}  {'ours s':>8}  {'theirs s':>8}  ratio")
        for r in ratios:
            lines.append(f"{r['name'].ljust(n)}  {r['ours_s']:8.3f}  {r['theirs_s']:8.3f}  {r['ratio']:.2f}x")
    if rounds:
        lines += ["", "native / onnxruntime, alternated rounds (both sides back to back in each): median ratio [range], rounds at or under 1"]
        for k, r in rounds.items():
            lines.append(f"  {r['precision']} {r['threads']} thread(s): {r['ratio_median']:.2f}x [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}], "
                         f"{r['rounds_at_or_under_1']}/{len(r['ratios'])}")
    busy = [f"{s['stage']}: {s['build_processes']}" for s in stages if s["build_processes"]]
    if busy:
        lines.append(f"WARNING: build processes running when stages started (timings skewed): {'; '.join(busy)}")
    busy = [f"{s['stage']}: {s['busy_processes']}" for s in stages if s.get("busy_processes")]
    if busy:
        lines.append(f"WARNING: other processes using >= 10% CPU when stages started: {'; '.join(busy)}")
    out = a.out or ROOT / "bench" / "results" / f"onnx-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    lines.append(f"results: {os.path.relpath(out, ROOT)}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Bar chart (SVG, written by hand: no matplotlib needed) of a bench/onnx.sh results file.

    python3 bench/plot.py bench/results/onnx-<date>-<time>.json docs/benchmarks.svg

One horizontal bar per runtime: the median full pass (dark), and for our engine the re-prompt
(light, on top); log-scale time axis. A runtime that timed out before a steady pass gets a dashed
outline at its first pass; one that failed is listed without a bar.
"""

from __future__ import annotations

import json
import math
import sys
from html import escape
from pathlib import Path

LABELS = {
    "torch-fp32-t2": "PyTorch fp32, 2 threads",
    "ort-fp32-t1": "onnxruntime fp32, 1 thread",
    "ort-fp32-t2": "onnxruntime fp32, 2 threads",
    "ort-q8-t1": "onnxruntime q8, 1 thread",
    "ort-q8-t2": "onnxruntime q8, 2 threads",
    "native-f32-t1": "clipseg native f32, 1 thread",
    "native-f32-t2": "clipseg native f32, 2 threads",
    "native-q8-t1": "clipseg native q8, 1 thread",
    "native-q8-t2": "clipseg native q8, 2 threads",
    "ortweb-wasm-q8": "ort-web wasm q8 (1 thread)",
    "ortweb-wasm-fp32": "ort-web wasm fp32 (1 thread)",
    "ortweb-webgpu-fp32": "ort-web WebGPU fp32 (SwiftShader)",
    "ortweb-webgpu-q8": "ort-web WebGPU q8 (SwiftShader)",
    "browser-cpu": "clipseg browser cpu (wasm, 1 thread, q8)",
    "browser-webgpu": "clipseg browser WebGPU (SwiftShader, q8)",
}
GROUPS = [  # rows, in order, with a gap between groups
    ["native-f32-t1", "ort-fp32-t1", "native-f32-t2", "ort-fp32-t2", "torch-fp32-t2"],
    ["native-q8-t1", "ort-q8-t1", "native-q8-t2", "ort-q8-t2"],
    ["browser-cpu", "ortweb-wasm-q8", "ortweb-wasm-fp32"],
    ["browser-webgpu", "ortweb-webgpu-fp32", "ortweb-webgpu-q8"],
]


def colour(key: str) -> tuple[str, str]:
    if key.startswith(("native", "browser")):
        return "#1f5fa8", "#8fb5e0"  # ours: full pass, re-prompt
    if key.startswith("torch"):
        return "#777777", "#bbbbbb"
    return "#d9720b", "#f2b77a"  # onnxruntime / onnxruntime-web


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    res = json.loads(Path(sys.argv[1]).read_text())
    rt = res["runtimes"]
    rows: list[str | None] = []
    for g in GROUPS:
        keys = [k for k in g if k in rt]
        if keys:
            if rows:
                rows.append(None)
            rows.extend(keys)
    values = [v for k in rows if k for v in (rt[k].get("full_pass_s"), rt[k].get("reprompt_s"), rt[k].get("first_pass_s")) if v]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    left, width, bar, gap, top = 300, 520, 18, 10, 70
    height = top + sum(bar + 6 if k else gap for k in rows) + 60

    def x(v: float) -> float:
        return left + width * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 310}" height="{height}" font-family="sans-serif" font-size="12">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="10" y="22" font-size="15" font-weight="bold">CLIPSeg {escape(Path(res["model"]).name)} (352x352 input): full pass, median seconds (log scale)</text>',
         f'<text x="10" y="42" fill="#444">{escape(res["date"])}, {escape(str(res["machine"].get("cpus")))} x {escape(str(res["machine"].get("cpu_model")))}; '
         f'load average (1 min) up to {res.get("loadavg_max_1min")}; lighter bar: re-prompt (our engine caches the image encoding)</text>']
    d = lo
    while d <= hi * 1.0001:
        s.append(f'<line x1="{x(d):.1f}" y1="{top - 8}" x2="{x(d):.1f}" y2="{height - 45}" stroke="#ddd"/>')
        s.append(f'<text x="{x(d):.1f}" y="{height - 30}" text-anchor="middle" fill="#444">{d:g} s</text>')
        d *= 10
    y = top
    for k in rows:
        if k is None:
            y += gap
            continue
        r = rt[k]
        full, rep = r.get("full_pass_s"), r.get("reprompt_s")
        dark, light = colour(k)
        s.append(f'<text x="{left - 8}" y="{y + bar - 5}" text-anchor="end">{escape(LABELS.get(k, k))}</text>')
        if full:
            s.append(f'<rect x="{left}" y="{y}" width="{max(1.0, x(full) - left):.1f}" height="{bar}" fill="{dark}"/>')
            if rep and k.startswith(("native", "browser")):
                s.append(f'<rect x="{left}" y="{y + 4}" width="{max(1.0, x(rep) - left):.1f}" height="{bar - 8}" fill="{light}"/>')
            note = f"{full:.3g} s" + (f" (re-prompt {rep:.3g} s)" if rep and k.startswith(("native", "browser")) else "")
            if r.get("timed_out_in"):
                note += f" ({r.get('full_passes_done', '?')} pass(es) done, then timed out)"
            s.append(f'<text x="{x(full) + 5:.1f}" y="{y + bar - 5}" fill="#222">{escape(note)}</text>')
        elif r.get("first_pass_s"):
            first = r["first_pass_s"]
            s.append(f'<rect x="{left}" y="{y}" width="{max(1.0, x(first) - left):.1f}" height="{bar}" fill="none" stroke="{dark}" stroke-dasharray="4 2"/>')
            s.append(f'<text x="{x(first) + 5:.1f}" y="{y + bar - 5}" fill="#a00">{escape(f"first pass {first:.3g} s; steady pass timed out")}</text>')
        else:
            why = f"timed out in {r['timed_out_in']}" if r.get("timed_out_in") else (r.get("error") or "no result")
            s.append(f'<text x="{left + 5}" y="{y + bar - 5}" fill="#a00">{escape(str(why)[:70])}</text>')
        y += bar + 6
    s.append(f'<text x="10" y="{height - 10}" fill="#444">blue: clipseg (ours), orange: onnxruntime / onnxruntime-web, grey: PyTorch. '
             f'Source: {escape(Path(sys.argv[1]).name)}</text>')
    s.append("</svg>")
    Path(sys.argv[2]).write_text("\n".join(s) + "\n")
    print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()

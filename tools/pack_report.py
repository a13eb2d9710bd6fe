#!/usr/bin/env python3
"""Sizes and fidelity of model packs: converts an HF folder to f32, f16, q8 and q4 packs with
`clipseg convert`, segments one image for a few prompts with each, and prints a markdown table of
pack size, max |logit error| against the f32 pack, error std relative to the logits' std, and the
IoU of each prompt's mask (logit > 0) against the f32 pack's. A report, not a test.

    python tools/pack_report.py --model /tmp/clipseg-full            # full-size random model from
                                                                      # tools/full_size_parity.py
    python tools/pack_report.py --model tests/fixtures/models/refined --image tests/fixtures/images/landscape.png

Needs numpy and a built CLI (`cargo build --features native`).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

QUANTS = ["f32", "f16", "q8", "q4"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model folder")
    ap.add_argument("--clipseg", default="target/debug/clipseg")
    ap.add_argument("--image", default="assets/chelsea.jpg")
    ap.add_argument("--prompt", action="append", help="repeatable; default: three prompts")
    ap.add_argument("--out", help="folder for the packs (default: a temporary one)")
    args = ap.parse_args()
    prompts = args.prompt or ["a photo of a cat", "a dog", "the sky"]

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        logits, sizes = {}, {}
        for quant in QUANTS:
            pack = out / f"pack-{quant}.bpk"
            run([args.clipseg, "convert", "--model", args.model, "--out", str(pack), "--quant", quant])
            sizes[quant] = pack.stat().st_size
            npy = out / f"logits-{quant}.npy"
            cmd = [args.clipseg, "predict", "--model", str(pack), "--image", args.image, "--logits", str(npy)]
            for p in prompts:
                cmd += ["--prompt", p]
            run(cmd)
            logits[quant] = np.load(npy)

    ref = logits["f32"]
    print(f"model {args.model}, image {args.image}, prompts {prompts}")
    print(f"f32 logits: std {ref.std():.3f}, median |logit| {np.median(np.abs(ref)):.3f}\n")
    print("| pack | size (MB = 1e6 B) | MiB | max abs logit error | error std / logit std | mask IoU vs f32, per prompt |")
    print("|---|---|---|---|---|---|")
    for quant in QUANTS:
        x = logits[quant]
        ious = []
        for p in range(len(prompts)):
            a, b = x[p] > 0, ref[p] > 0
            union = (a | b).sum()
            ious.append(1.0 if union == 0 else (a & b).sum() / union)
        d = x - ref
        print(
            f"| {quant} | {sizes[quant] / 1e6:.2f} | {sizes[quant] / 2**20:.2f} | {np.abs(d).max():.2e} "
            f"| {d.std() / ref.std():.4f} | {', '.join(f'{i:.4f}' for i in ious)} |"
        )


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


if __name__ == "__main__":
    main()

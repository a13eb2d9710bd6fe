#!/usr/bin/env python3
"""Reference outputs for image prompts (CLIPSeg's second mode), from the existing fixtures.

Reads the random-weight models and images tools/make_fixtures.py wrote (it is not re-run: those
fixtures stay byte for byte) and writes tests/fixtures/visual/: for each case, what transformers
computes for `model(pixel_values=P(target), conditional_pixel_values=P(example))`, P being the
model folder's image processor: the logits and the conditional embedding (`get_image_features`).

Usage (from the repo root):
    /work/venv/bin/python tools/make_visual_prompt_fixtures.py [--fixtures tests/fixtures]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import transformers
from transformers import CLIPSegForImageSegmentation, ViTImageProcessorPil

REPO_ROOT = Path(__file__).resolve().parent.parent

CASES = [  # (model, targets, examples): every example against every target
    # Two targets, one example: the example is encoded once and serves both.
    ("plain", ["square352.png", "landscape.png"], ["portrait.png"]),
    # Two examples for one target; the first a tiny image (upsampled by the processor).
    ("refined", ["portrait.png"], ["tiny.png", "landscape.png"]),
    # Patch 32 at image_size 64: the example's position embeddings are resampled (2x2 -> 11x11).
    # Its logits are 704x704; the conditional embedding alone is kept (the decoder on a given
    # embedding is the text cases' parity).
    ("odd", ["landscape.png"], ["portrait.png"]),
]


def load(model_dir: Path, attn: str) -> CLIPSegForImageSegmentation:
    model, info = CLIPSegForImageSegmentation.from_pretrained(
        model_dir, attn_implementation=attn, output_loading_info=True
    )
    assert not any(info.values()), info
    return model.eval()


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=str(REPO_ROOT / "tests" / "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    fixtures = Path(args.fixtures)
    out = fixtures / "visual"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, out={out}")

    rows = []
    for name, targets, examples in CASES:
        model_dir = fixtures / "models" / name
        model, sdpa = load(model_dir, "eager"), load(model_dir, "sdpa")
        processor = ViTImageProcessorPil.from_pretrained(model_dir)

        def pixels(image: str) -> torch.Tensor:
            img = Image.open(fixtures / "images" / image).convert("RGB")
            return processor(img, return_tensors="pt")["pixel_values"]

        cond = torch.cat([model.clip.get_image_features(pixels(e)).pooler_output for e in examples])
        np.save(out / f"{name}__cond.npy", cond.float().numpy())
        logits_files = []
        for target in targets if name != "odd" else []:
            logits = []
            for k, example in enumerate(examples):
                inputs = dict(pixel_values=pixels(target), conditional_pixel_values=pixels(example))
                result = model(**inputs)
                # The model's own conditional embedding is get_image_features'.
                assert torch.equal(result.conditional_embeddings[0], cond[k]), (name, example)
                other = sdpa(**inputs).logits
                assert (other - result.logits).abs().max() < 1e-4 * max(1.0, result.logits.abs().max()), name
                logits.append(result.logits.float())
            logits = torch.cat(logits)
            path = out / f"{name}__{Path(target).stem}.npy"
            np.save(path, logits.numpy())
            logits_files.append(path.relative_to(fixtures).as_posix())
            print(f"{name} {target} x {examples}: logits {tuple(logits.shape)} "
                  f"in [{logits.min():.3f}, {logits.max():.3f}]")
        print(f"{name}: cond {tuple(cond.shape)} |max| {cond.abs().max():.3f}")
        rows.append(
            {
                "model": name,
                "targets": [f"images/{t}" for t in targets] if name != "odd" else [],
                "examples": [f"images/{e}" for e in examples],
                "cond": (out / f"{name}__cond.npy").relative_to(fixtures).as_posix(),
                "logits": logits_files,
            }
        )
    body = ",\n".join(json.dumps(row) for row in rows)
    (out / "cases.json").write_text(f"[\n{body}\n]\n", encoding="utf-8")


if __name__ == "__main__":
    main()

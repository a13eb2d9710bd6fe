#!/usr/bin/env python3
"""PyTorch CUDA beside clipseg's wgpu runs on one model, image and prompt; called by bench/gpu.sh.

    python3 bench/gpu_torch.py MODEL_DIR IMAGE PROMPT --iters N --clipseg CLIPSEG.jsonl \
        --logits-dir DIR --out GPU.json

Full pass, as `clipseg bench` times it: the HF processor on the decoded image and the prompt, the
model (fp32, then fp16 weights and activations) under torch.inference_mode, the logits copied to
the host (which waits for the GPU). One warm-up pass (first_pass_s), then the median of N passes.
weight_bytes: what the model's parameters hold on the GPU. Masks: logits > 0 on the 352x352
output, IoU of every run (clipseg's runs from DIR/logits-RUN.npy, PyTorch fp16)
against PyTorch fp32. Ratios: clipseg's full pass over PyTorch's (below 1: clipseg is faster).
Runs on the CPU where CUDA is missing (to try the script; no GPU numbers then).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("image", type=Path)
    ap.add_argument("prompt")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--clipseg", type=Path, required=True, help="JSON lines {pack: RUN, bench} from bench/gpu.sh")
    ap.add_argument("--logits-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    import torch
    import transformers
    from PIL import Image
    from transformers import AutoProcessor, CLIPSegForImageSegmentation

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    processor = AutoProcessor.from_pretrained(a.model_dir)
    image = Image.open(a.image).convert("RGB")
    image.load()
    res: dict = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "device": torch.cuda.get_device_name() if cuda else "cpu (no CUDA: not a GPU measurement)",
        "prompt": a.prompt,
        "iters": a.iters,
        "torch": {},
    }
    logits = {}
    for precision, dtype in [("fp32", torch.float32), ("fp16", torch.float16)]:
        if dtype == torch.float16 and not cuda:
            continue
        t0 = time.perf_counter()
        model = CLIPSegForImageSegmentation.from_pretrained(a.model_dir, dtype=dtype).to(device).eval()
        if cuda:
            torch.cuda.synchronize()
        load_s = time.perf_counter() - t0
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

        def one_pass() -> np.ndarray:
            x = processor(text=[a.prompt], images=[image], padding=True, return_tensors="pt")
            x = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in x.items()}
            with torch.inference_mode():
                out = model(**x).logits
            return out.float().reshape(-1, 352, 352).cpu().numpy()

        t0 = time.perf_counter()
        logits[precision] = one_pass()
        first = time.perf_counter() - t0
        times = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - t0)
        times.sort()
        res["torch"][precision] = {
            "load_s": load_s, "first_pass_s": first, "full_pass_s": times[len(times) // 2],
            "passes_s": times, "weight_bytes": weight_bytes,
            "attn_implementation": model.config._attn_implementation,
        }
        print(f"  pytorch {precision}: full pass {times[len(times) // 2] * 1e3:.2f} ms (first {first:.3f} s), "
              f"weights {weight_bytes / 1e6:.0f} MB", flush=True)
        del model
        if cuda:
            torch.cuda.empty_cache()

    reference = logits["fp32"]
    res["clipseg"] = {}
    for line in a.clipseg.read_text().splitlines():
        row = json.loads(line)
        pack = row["pack"]
        entry = dict(row.get("bench", {}), **({"error": row["error"]} if "error" in row else {}))
        path = a.logits_dir / f"logits-{pack}.npy"
        if path.exists():
            entry["iou_vs_torch_fp32"] = iou(np.load(path).reshape(reference.shape), reference)
        for precision, t in res["torch"].items():
            if "full_pass_s" in entry:
                entry[f"full_pass_vs_torch_{precision}"] = entry["full_pass_s"] / t["full_pass_s"]
        res["clipseg"][pack] = entry
    if "fp16" in logits:
        res["torch"]["fp16"]["iou_vs_torch_fp32"] = iou(logits["fp16"], reference)

    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print("\n| run | full pass (ms) | vs PyTorch fp16 | weights on the GPU (MB) | mask IoU vs fp32 |")
    print("|---|---|---|---|---|")
    for precision, t in res["torch"].items():
        print(f"| PyTorch {precision} | {t['full_pass_s'] * 1e3:.2f} | | {t['weight_bytes'] / 1e6:.0f} | {t.get('iou_vs_torch_fp32', 1.0):.4f} |")
    for pack, e in res["clipseg"].items():
        if "full_pass_s" not in e:
            print(f"| clipseg {pack} | {e.get('error', 'failed')} | | | |")
            continue
        vs = e.get("full_pass_vs_torch_fp16")
        gpu = e.get("gpu_weight_bytes")
        # The products the pack's matrices ran on, where not f32.
        dot = ", dot4I8Packed" if pack.startswith("q8") and e.get("gpu_int8_dot") else ""
        dot += ", f16 products" if pack.startswith("f16") and e.get("gpu_f16_math") else ""
        print(f"| clipseg {pack} ({e.get('gpu_weights', '?')}, {e.get('gpu_matmul', '?')} matmul{dot}) | {e['full_pass_s'] * 1e3:.2f} | "
              f"{f'{vs:.2f}x' if vs else '-'} | {f'{gpu / 1e6:.0f}' if gpu else '-'} | {e.get('iou_vs_torch_fp32', float('nan')):.4f} |")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()

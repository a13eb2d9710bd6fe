#!/usr/bin/env python3
"""Time onnxruntime (CPU EP) and PyTorch on one CLIPSeg model, image and prompt; called by bench/onnx.sh.

    python bench/ort_bench.py --part torch MODEL_DIR ONNX_DIR IMAGE PROMPT --iters N --torch-threads 2 \
        --out TORCH.json --inputs DIR
    python bench/ort_bench.py --part ort MODEL_DIR ONNX_DIR IMAGE PROMPT --iters N --threads 1,2 \
        --out ORT.json --inputs DIR
    python bench/ort_bench.py --part rounds MODEL_DIR ONNX_DIR IMAGE PROMPT --iters N --threads 1,2 \
        --rounds R --clipseg BIN --pack PACK --out ROUNDS.json --inputs DIR

Two processes, so that neither runtime's thread pool is alive while the other is timed.
--part torch writes the reference (and the browser's inputs); --part ort reads it.

Full pass = the HF processor (CLIPSegProcessor from MODEL_DIR: ViTImageProcessorPil resize to
352x352 + rescale + normalize, CLIPTokenizer) on the already decoded RGB image and the prompt,
then the model (session.run / model(**inputs) under torch.inference_mode), logits as numpy.
Image decoding is outside the timed region, as in `clipseg bench`. One untimed-as-steady warm-up
pass (reported as first_pass_s), then the median of --iters passes (the upper median for an even
count, as `clipseg bench`). load_s = InferenceSession creation / from_pretrained.
The ONNX graph is monolithic: a "re-prompt" costs a full pass (no image-feature cache).

--part rounds: onnxruntime and `clipseg bench` (BIN, on MODEL_DIR for fp32 and PACK for q8)
alternated, R rounds of every precision and thread count, each round timing both sides back to
back (who goes first alternates, and the order of the configurations reverses every round), so
that both see the same moment of this shared machine. It reports each round's ratio (ours / ort,
medians of --iters passes each) and their median and range: the load of other tenants, which
moved single-stage ratios by up to 0.24 between whole runs, cancels out of each pair.

Masks: logits > 0 (probability > 0.5) on the 352x352 output; IoU against PyTorch float32 on the same
inputs. Writes the inputs and the reference logits as raw little-endian files into --inputs for
bench/ort_web.mjs (pixel_values.f32, input_ids.i64, attention_mask.i64, ref_logits.f32, meta.json)
and ref_logits.npy for native IoU in bench/onnx_report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def time_passes(run, iters: int) -> tuple[float, list[float]]:
    """One warm-up call of `run` (its time is the first pass), then `iters` timed calls."""
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return first, times


def median(v: list[float]) -> float:
    s = sorted(v)
    return s[len(s) // 2]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a > 0, b > 0
    union = np.logical_or(ma, mb).sum()
    return 1.0 if union == 0 else float(np.logical_and(ma, mb).sum() / union)


def compare(got: np.ndarray, ref: np.ndarray) -> dict:
    got = got.reshape(ref.shape)
    return {
        "mask_iou_vs_torch": iou(got, ref),
        "max_abs_diff_vs_torch": float(np.abs(got - ref).max()),
        "mask_fraction": float((got > 0).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["torch", "ort", "rounds"], required=True)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("onnx_dir", type=Path)
    ap.add_argument("image", type=Path)
    ap.add_argument("prompt")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", default="1,2", help="onnxruntime intra-op thread counts")
    ap.add_argument("--torch-threads", default="2", help="PyTorch thread counts ('' skips PyTorch timing)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--inputs", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5, help="--part rounds: rounds of every configuration")
    ap.add_argument("--clipseg", type=Path, help="--part rounds: the clipseg CLI")
    ap.add_argument("--pack", type=Path, help="--part rounds: our q8 pack of the model")
    a = ap.parse_args()
    if a.part == "rounds" and not (a.clipseg and a.pack):
        ap.error("--part rounds needs --clipseg and --pack")

    import transformers
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(a.model_dir)
    image = Image.open(a.image).convert("RGB")
    image.load()

    def preprocess() -> dict:
        return dict(processor(text=[a.prompt], images=[image], padding=True, return_tensors="np"))

    inputs = preprocess()
    res: dict = {
        "versions": {"transformers": transformers.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
        "processor": f"{type(processor).__name__}({type(processor.image_processor).__name__}, {type(processor.tokenizer).__name__})",
        "input_ids": inputs["input_ids"].tolist(),
        "pixel_values_shape": list(inputs["pixel_values"].shape),
        "iters": a.iters,
        "runtimes": {},
    }
    pre_times = []
    for _ in range(max(3, a.iters)):
        t0 = time.perf_counter()
        preprocess()
        pre_times.append(time.perf_counter() - t0)
    res["preprocess_s"] = median(pre_times)

    if a.part == "torch":
        torch_part(a, res, inputs, preprocess)
    elif a.part == "ort":
        ort_part(a, res, inputs, preprocess)
    else:
        rounds_part(a, res, preprocess)
    a.out.write_text(json.dumps(res, indent=1) + "\n")


def torch_part(a, res: dict, inputs: dict, preprocess) -> None:
    """PyTorch: the reference logits, and its own timing."""
    import torch
    from transformers import CLIPSegForImageSegmentation

    res["versions"]["torch"] = torch.__version__
    torch_threads = [int(t) for t in a.torch_threads.split(",") if t]
    torch.set_num_threads(torch_threads[0] if torch_threads else 2)
    t0 = time.perf_counter()
    model = CLIPSegForImageSegmentation.from_pretrained(a.model_dir).eval()
    torch_load = time.perf_counter() - t0

    def torch_pass(x: dict | None = None) -> np.ndarray:
        x = x or preprocess()
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in x.items()})
        return out.logits.reshape(1, 352, 352).numpy()

    ref = torch_pass(inputs)
    for n in torch_threads:
        torch.set_num_threads(n)
        first, times = time_passes(torch_pass, a.iters)
        res["runtimes"][f"torch-fp32-t{n}"] = {
            "engine": "pytorch", "precision": "fp32", "threads": n, "attn_implementation": model.config._attn_implementation,
            "load_s": torch_load, "first_pass_s": first, "full_pass_s": median(times), "passes_s": times,
        }
        print(f"  pytorch fp32 {n} thread(s): full pass {median(times):.3f} s (first {first:.3f} s)", flush=True)
    del model

    a.inputs.mkdir(parents=True, exist_ok=True)
    np.save(a.inputs / "ref_logits.npy", ref.astype(np.float32))
    inputs["pixel_values"].astype("<f4").tofile(a.inputs / "pixel_values.f32")
    inputs["input_ids"].astype("<i8").tofile(a.inputs / "input_ids.i64")
    inputs["attention_mask"].astype("<i8").tofile(a.inputs / "attention_mask.i64")
    ref.astype("<f4").tofile(a.inputs / "ref_logits.f32")
    (a.inputs / "meta.json").write_text(json.dumps({
        "prompt": a.prompt, "image": str(a.image),
        "input_ids_shape": list(inputs["input_ids"].shape), "pixel_values_shape": list(inputs["pixel_values"].shape),
        "ref_logits_shape": list(ref.shape), "ref_mask_fraction": float((ref > 0).mean()),
    }) + "\n")
    res["ref_mask_fraction"] = float((ref > 0).mean())


def ort_part(a, res: dict, inputs: dict, preprocess) -> None:
    """onnxruntime, CPU execution provider; IoU against the reference --part torch wrote."""
    import onnxruntime as ort

    res["versions"]["onnxruntime"] = ort.__version__
    res["torch_loaded_in_this_process"] = "torch" in sys.modules  # transformers may import it
    ref = np.load(a.inputs / "ref_logits.npy")
    meta = json.loads((a.inputs / "meta.json").read_text())
    if meta["input_ids_shape"] != list(inputs["input_ids"].shape) or meta["prompt"] != a.prompt:
        sys.exit(f"{a.inputs}: reference made for another input ({meta}); run --part torch first")
    for precision, file in ONNX_FILES:
        for n in [int(t) for t in a.threads.split(",") if t]:
            t0 = time.perf_counter()
            run = ort_session(a.onnx_dir / file, n, preprocess)
            load = time.perf_counter() - t0

            first, times = time_passes(run, a.iters)
            # session.run alone, on fixed inputs (the preprocessing share of a full pass)
            run_only = []
            for _ in range(max(1, a.iters // 2)):
                t0 = time.perf_counter()
                got = run(inputs)
                run_only.append(time.perf_counter() - t0)
            r = {
                "engine": "onnxruntime", "provider": "CPUExecutionProvider", "precision": precision, "threads": n,
                "model": file, "load_s": load, "first_pass_s": first, "full_pass_s": median(times),
                "session_run_s": median(run_only), "reprompt_s": median(times), "passes_s": times,
                **compare(got, ref),
            }
            res["runtimes"][f"ort-{precision}-t{n}"] = r
            print(f"  onnxruntime {precision} {n} thread(s): full pass {r['full_pass_s']:.3f} s (session.run {r['session_run_s']:.3f} s, first {first:.3f} s), mask IoU vs torch {r['mask_iou_vs_torch']:.4f}", flush=True)
            del run


ONNX_FILES = (("fp32", "model.onnx"), ("q8", "model-q8.onnx"))


def ort_session(path: Path, threads: int, preprocess):
    """A CPU session on `threads` intra-op threads, sequential; returns its full pass."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(x: dict | None = None) -> np.ndarray:
        x = x or preprocess()
        return sess.run(["logits"], {k: x[k] for k in ("input_ids", "attention_mask", "pixel_values")})[0]

    return run


def rounds_part(a, res: dict, preprocess) -> None:
    """onnxruntime and `clipseg bench` back to back, --rounds times per configuration."""
    import subprocess

    import onnxruntime as ort

    res["versions"]["onnxruntime"] = ort.__version__
    configs = [(precision, file, n) for precision, file in ONNX_FILES for n in [int(t) for t in a.threads.split(",") if t]]
    sessions = {(p, n): ort_session(a.onnx_dir / f, n, preprocess) for p, f, n in configs}

    def ours(precision: str, n: int) -> float:
        model = a.model_dir if precision == "fp32" else a.pack
        out = subprocess.run(
            [str(a.clipseg), "bench", "--model", str(model), "--image", str(a.image), "--prompt", a.prompt,
             "--iters", str(a.iters), "--backend", "cpu"],
            env={**os.environ, "RAYON_NUM_THREADS": str(n)}, capture_output=True, text=True, check=True)
        return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])["full_pass_s"]

    def theirs(precision: str, n: int) -> float:
        return median(time_passes(sessions[(precision, n)], a.iters)[1])

    results = {f"{p}-t{n}": {"precision": p, "threads": n, "ours_s": [], "ort_s": [], "ratios": []} for p, _, n in configs}
    for r in range(a.rounds):
        for i, (precision, _, n) in enumerate(configs if r % 2 == 0 else configs[::-1]):
            sides = [ours, theirs] if (r + i) % 2 == 0 else [theirs, ours]
            times = {side: side(precision, n) for side in sides}
            entry = results[f"{precision}-t{n}"]
            entry["ours_s"].append(times[ours])
            entry["ort_s"].append(times[theirs])
            entry["ratios"].append(times[ours] / times[theirs])
            print(f"  round {r + 1}/{a.rounds} {precision} {n} thread(s): ours {times[ours]:.3f} s, onnxruntime "
                  f"{times[theirs]:.3f} s, ratio {times[ours] / times[theirs]:.3f}", flush=True)
    for entry in results.values():
        entry.update(ratio_median=median(entry["ratios"]), ratio_min=min(entry["ratios"]), ratio_max=max(entry["ratios"]),
                     rounds_at_or_under_1=sum(x <= 1.0 for x in entry["ratios"]))
    res["rounds"] = a.rounds
    res["configs"] = results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

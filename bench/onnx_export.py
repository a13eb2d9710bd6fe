#!/usr/bin/env python3
"""Export an HF CLIPSeg folder to ONNX (fp32) and a dynamically quantized int8 copy.

    python bench/onnx_export.py MODEL_DIR OUT_DIR [--force]

Writes OUT_DIR/model.onnx (+ model.onnx.data when the weights go to an external file) and
OUT_DIR/model-q8.onnx, and OUT_DIR/export.json (what was exported, with which versions).
Skipped when both files exist and are newer than every file in MODEL_DIR (and than this script).

Graph: inputs input_ids [1, T] int64, attention_mask [1, T] int64, pixel_values [1, 3, 352, 352]
float32 (T dynamic); output logits [1, 352, 352] float32: CLIPSegForImageSegmentation in one
piece (image encoder, text encoder, decoder). Exported with torch.onnx.export's TorchScript
exporter (dynamo=False), opset 17, after loading with attn_implementation="eager".
q8: onnxruntime.quantization.quantize_dynamic with its defaults and weight_type=QInt8: weights
int8 per tensor, activations quantized at run time (DynamicQuantizeLinear + MatMulInteger /
ConvInteger; Gather of the token embedding on int8); ConvTranspose (the decoder's upsampling)
and everything else stay float32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path


def newest_mtime(folder: Path) -> float:
    return max(p.stat().st_mtime for p in folder.iterdir() if p.is_file())


def up_to_date(model_dir: Path, out: Path) -> bool:
    files = [out / "model.onnx", out / "model-q8.onnx", out / "export.json"]
    if not all(f.exists() for f in files):
        return False
    try:
        meta = json.loads((out / "export.json").read_text())
    except ValueError:
        return False
    if meta.get("model_dir") != str(model_dir.resolve()):
        return False
    newest_input = max(newest_mtime(model_dir), Path(__file__).stat().st_mtime)
    return min(f.stat().st_mtime for f in files) > newest_input


def export(model_dir: Path, out: Path) -> dict:
    import torch
    import numpy as np
    import onnx
    import onnxruntime
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import CLIPSegForImageSegmentation

    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    model = CLIPSegForImageSegmentation.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, pixel_values):
            logits = self.m(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask).logits
            return logits.reshape(1, logits.shape[-2], logits.shape[-1])

    wrapper = Logits(model).eval()
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407]], dtype=torch.int64)
    mask = torch.ones_like(ids)
    pixels = torch.randn(1, 3, 352, 352)
    fp32 = out / "model.onnx"
    for stale in out.glob("model*.onnx*"):
        stale.unlink()
    t0 = time.perf_counter()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, mask, pixels),
            str(fp32),
            input_names=["input_ids", "attention_mask", "pixel_values"],
            output_names=["logits"],
            dynamic_axes={"input_ids": {1: "tokens"}, "attention_mask": {1: "tokens"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    export_s = time.perf_counter() - t0
    onnx.checker.check_model(str(fp32))

    # Sanity check: the exported graph reproduces PyTorch on a random input, and on another prompt
    # length (the token axis is dynamic).
    sess = onnxruntime.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    for n in (7, 12):
        ids_n = torch.cat([ids[:, :1], torch.full((1, n - 2), 320), ids[:, -1:]], 1)
        with torch.inference_mode():
            want = wrapper(ids_n, torch.ones_like(ids_n), pixels).numpy()
        got = sess.run(["logits"], {"input_ids": ids_n.numpy(), "attention_mask": np.ones_like(ids_n.numpy()), "pixel_values": pixels.numpy()})[0]
        err = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))
        if err > 1e-3:
            sys.exit(f"onnx export: ONNX vs PyTorch relative max error {err:.2e} at T={n}")
    del sess

    q8 = out / "model-q8.onnx"
    t0 = time.perf_counter()
    quantize_dynamic(str(fp32), str(q8), weight_type=QuantType.QInt8)
    quant_s = time.perf_counter() - t0

    meta = {
        "model_dir": str(model_dir.resolve()),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": 17,
        "exporter": "torch.onnx.export(dynamo=False)",
        "quantization": "quantize_dynamic(weight_type=QInt8), default op types",
        "export_s": round(export_s, 2),
        "quantize_s": round(quant_s, 2),
        "bytes": {p.name: p.stat().st_size for p in sorted(out.glob("model*.onnx*"))},
    }
    (out / "export.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--force", action="store_true", help="export even when the files are up to date")
    a = ap.parse_args()
    if not (a.model_dir / "config.json").exists():
        sys.exit(f"{a.model_dir}: no config.json (want an HF CLIPSeg folder)")
    if not a.force and up_to_date(a.model_dir, a.out_dir):
        print(f"onnx export: {a.out_dir}/model.onnx and model-q8.onnx are up to date (--force re-exports)")
        return
    print(f"onnx export: {a.model_dir} -> {a.out_dir}/model.onnx, model-q8.onnx", flush=True)
    meta = export(a.model_dir, a.out_dir)
    sizes = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in meta["bytes"].items())
    print(f"onnx export: done in {meta['export_s']} s + quantization {meta['quantize_s']} s ({sizes})")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

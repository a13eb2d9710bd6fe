#!/usr/bin/env bash
# The README's demo: fetch CIDAS/clipseg-rd64-refined once (or use MODEL_DIR=an HF folder you
# have), then segment the bundled photo of a cat for a few prompts.
set -euo pipefail
cd "$(dirname "$0")/.."

model_dir="${MODEL_DIR:-models/clipseg-rd64-refined}"
# The dev profile builds dependencies with full optimisation (Cargo.toml): one build serves the
# tests and the demo.
cargo build --features native
bin=target/debug/clipseg

if [ ! -f "$model_dir/model.safetensors" ]; then
  if ! "$bin" fetch --repo CIDAS/clipseg-rd64-refined --out "$model_dir"; then
    echo "The Hugging Face hub could not be reached: run again with MODEL_DIR=/path/to/clipseg-rd64-refined (an HF folder with config.json, model.safetensors, tokenizer.json)." >&2
    exit 1
  fi
fi

mkdir -p out
"$bin" predict --model "$model_dir" --image assets/chelsea.jpg \
  --prompt "a cat" --prompt "the cat's eyes" --prompt "a sofa" \
  --mask out/chelsea.png --logits out/chelsea.npy
echo "Masks for 'a cat', 'the cat's eyes', 'a sofa': out/chelsea-0.png, out/chelsea-1.png, out/chelsea-2.png (logits: out/chelsea.npy)"

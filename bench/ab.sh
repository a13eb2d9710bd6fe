#!/usr/bin/env bash
# Two clipseg binaries side by side (a change against the commit before it), alternated:
#   bench/ab.sh BIN_A BIN_B [--rounds R] [--iters N] [--threads "1 2"] [--image IMG]
#               [--backend cpu|wgpu] MODEL...
#
# Each round runs `clipseg bench` with A then B (B then A in odd rounds) on every MODEL (pack
# or HF folder) at every thread count; prints per model and thread count the medians over the
# rounds of full_pass_s and reprompt_s for each binary and B/A, and writes the JSON lines to
# target/ab-<date>-<time>.jsonl. Default: 5 rounds, --iters 5, threads "1 2",
# assets/chelsea.jpg, --backend cpu.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-1}"; }
[ $# -ge 3 ] || usage
a="$1" b="$2"
shift 2
rounds=5 iters=5 threads="1 2" image=assets/chelsea.jpg backend=cpu models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --iters) iters="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --*) echo "unknown option $1" >&2; usage ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -ge 1 ] || usage
for bin in "$a" "$b"; do [ -x "$bin" ] || { echo "$bin: not an executable" >&2; exit 1; }; done

mkdir -p target
out="target/ab-$(date -u +%Y-%m-%d-%H%M%S).jsonl"
for ((round = 0; round < rounds; round++)); do
  order=("A:$a" "B:$b")
  [ $((round % 2)) = 1 ] && order=("B:$b" "A:$a")
  for model in "${models[@]}"; do
    for t in $threads; do
      for entry in "${order[@]}"; do
        side="${entry%%:*}" bin="${entry#*:}"
        line=$(RAYON_NUM_THREADS="$t" "$bin" bench --backend "$backend" --model "$model" --image "$image" --iters "$iters")
        echo "{\"round\":$round,\"side\":\"$side\",\"model\":\"$model\",\"threads\":$t,\"bench\":$line}" >> "$out"
        echo "round $round $side $(basename "$model") ${t}t: $(echo "$line" | grep -o '"full_pass_s":[0-9.e-]*\|"reprompt_s":[0-9.e-]*' | tr '\n' ' ')" >&2
      done
    done
  done
done

python3 - "$out" "$a" "$b" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\n{len(rows)} runs: {sys.argv[1]}\n")
print("| model | threads | A full pass | B full pass | B/A | A re-prompt | B re-prompt | B/A |")
print("|---|---|---|---|---|---|---|---|")
keys = sorted({(r["model"], r["threads"]) for r in rows})
for model, t in keys:
    med = {}
    for side in "AB":
        runs = [r["bench"] for r in rows if (r["model"], r["threads"], r["side"]) == (model, t, side)]
        med[side] = [statistics.median(x[k] for x in runs) for k in ("full_pass_s", "reprompt_s")]
    (af, ar), (bf, br) = med["A"], med["B"]
    print(f"| {model.rsplit('/', 1)[-1]} | {t} | {af:.4f} s | {bf:.4f} s | {bf / af:.3f} | {ar:.4f} s | {br:.4f} s | {br / ar:.3f} |")
PY

#!/usr/bin/env bash
# The README's demo, in the browser: builds the release wasm engine (unless pkg/ is newer than
# the sources), fetches CIDAS/clipseg-rd64-refined once (or uses MODEL_DIR=an HF folder you
# have), converts it to models/clipseg-q8.bpk and models/clipseg-q4.bpk, also makes the tiny
# untrained pack models/untrained-tiny-q8.bpk from the test fixtures (so the page works without
# the download), segments the bundled photo of a cat natively for a few prompts, then serves the
# repository root on 127.0.0.1 and prints the page's address. Without the hub and without
# MODEL_DIR the page is served with the untrained pack only.
#
# PORT=8000 (a free one when taken); CLIPSEG_BIN=path skips building the native CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

model_dir="${MODEL_DIR:-models/clipseg-rd64-refined}"
port="${PORT:-8000}"

if [ -n "${CLIPSEG_BIN:-}" ]; then
  bin="$CLIPSEG_BIN"
else
  # The dev profile builds dependencies with full optimisation (Cargo.toml): one build serves
  # the tests and the demo.
  cargo build --features native
  bin=target/debug/clipseg
fi

# The browser engine: a release build takes a while, so only when the sources changed since.
newer=missing
if [ -f pkg/clipseg.js ] && [ -f pkg/clipseg_bg.wasm ] && [ -f pkg/clipseg_relaxed.js ] && [ -f pkg/clipseg_relaxed_bg.wasm ]; then
  newer=$(find src Cargo.toml Cargo.lock tools/build_web.sh -newer pkg/clipseg_bg.wasm -print -quit)
fi
if [ -n "$newer" ]; then
  PROFILE=release tools/build_web.sh
else
  echo "pkg/ is newer than src/ and Cargo.lock: using it as it is (delete pkg/clipseg_bg.wasm to rebuild)"
fi

# pack SRC OUT QUANT: converts unless OUT is newer than every file of SRC.
pack() {
  if [ -f "$2" ] && [ -z "$(find "$1" -type f -newer "$2" -print -quit)" ]; then
    echo "$2 is newer than $1: kept"
  else
    "$bin" convert --model "$1" --out "$2" --quant "$3"
  fi
}

mkdir -p models
pack tests/fixtures/models/refined models/untrained-tiny-q8.bpk q8

real=yes
if [ ! -f "$model_dir/model.safetensors" ]; then
  if ! "$bin" fetch --repo CIDAS/clipseg-rd64-refined --out "$model_dir"; then
    echo "The Hugging Face hub could not be reached: serving the page with the untrained test model only (random masks); for real ones run again with MODEL_DIR=/path/to/clipseg-rd64-refined (an HF folder with config.json, model.safetensors, tokenizer.json)." >&2
    real=
  fi
fi

if [ -n "$real" ]; then
  pack "$model_dir" models/clipseg-q8.bpk q8
  pack "$model_dir" models/clipseg-q4.bpk q4
  mkdir -p out
  "$bin" predict --model "$model_dir" --image assets/chelsea.jpg \
    --prompt "a cat" --prompt "the cat's eyes" --prompt "a sofa" \
    --mask out/chelsea.png --logits out/chelsea.npy
  echo "Masks for 'a cat', 'the cat's eyes', 'a sofa': out/chelsea-0.png, out/chelsea-1.png, out/chelsea-2.png (logits: out/chelsea.npy)"
fi

# models/index.json: the packs the page offers (it reads this instead of probing for each).
python3 - <<'EOF'
import json, os
labels = {
    "clipseg-q8.bpk": ("CLIPSeg rd64-refined, q8", False),
    "clipseg-q4.bpk": ("CLIPSeg rd64-refined, q4, rougher masks", False),
    "untrained-tiny-q8.bpk": ("untrained test model (tiny, random weights)", True),
}
packs = [
    {"file": f, "label": label, "bytes": os.path.getsize(f"models/{f}"), "untrained": untrained}
    for f, (label, untrained) in labels.items()
    if os.path.exists(f"models/{f}")
]
with open("models/index.json", "w") as out:
    json.dump({"packs": packs}, out, indent=1)
print(f"models/index.json lists {len(packs)} packs")
EOF

# The page needs pkg/ next to www/, and .wasm as application/wasm (older Pythons lack it); no
# COOP/COEP headers. 127.0.0.1 is a secure context: Cache Storage and the service worker work.
exec python3 -c '
import http.server, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}

    def end_headers(self):
        self.send_header("Cache-Control", "no-cache")  # a rebuilt pkg/ or page shows at once
        super().end_headers()

    def log_request(self, code="-", size="-"):
        if isinstance(code, int) and code >= 400:  # misses only
            super().log_request(code, size)

try:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
except OSError:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"Open http://127.0.0.1:{server.server_address[1]}/www/ (widget example: /www/widget-example.html); Ctrl+C stops the server.", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
' "$port"

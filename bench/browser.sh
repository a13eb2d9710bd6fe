#!/usr/bin/env bash
# Browser benchmark: native CLI vs the wasm engine in headless Chromium (WebGPU, SwiftShader
# without a GPU, and the one-thread wasm CPU fallback) on one model pack. See bench/browser.mjs.
#   bench/browser.sh PACK [IMAGE] [PROMPT] [--iters N] [--timeout-min M] [--backends cpu,webgpu]
# Expects pkg/ (tools/build_web.sh) and the CLI (CLIPSEG_BIN, default target/debug/clipseg)
# built; installs Chromium and the npm dependency like tools/e2e.sh. Prints a table and writes
# bench/results/browser-<date>-<time>.json.
set -euo pipefail
export BENCH_CALLER_DIR="$PWD"
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
  echo "bench/browser.sh needs Node.js >= 20 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
[ -d tests/e2e/node_modules/playwright-core ] || (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
exec node bench/browser.mjs "$@"

#!/usr/bin/env bash
# Browser end-to-end tests in headless Chromium: tests/e2e/run.mjs, the wasm engine in a Web
# Worker on WebGPU (SwiftShader when there is no GPU) and on CPU, against the native CLI; then
# tests/e2e/page.mjs, the demo page (www/index.html) and the <clip-seg> widget; then
# tests/e2e/package.mjs, the npm package as a documentation site installs it; then
# tests/e2e/visit.mjs, long visits (100 runs on the page, 30 elements added and removed).
# Installs Chromium and the npm dependency if missing; expects pkg/ (the wasm-bindgen
# --target web build) and the CLI (CLIPSEG_BIN, default target/debug/clipseg) already built.
# Needs Node >= 20. Writes target/e2e/report.json and screenshots (target/e2e/*.png).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if [ ! -x /usr/bin/chromium ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
  echo "tools/e2e.sh needs Node.js >= 20 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
node tests/e2e/run.mjs
# The demo page (on WebGPU) and the <clip-seg> widget (on the CPU backend).
node tests/e2e/page.mjs
# The npm package (pkg/) installed into a folder of its own, a split pack from another origin.
node tests/e2e/package.mjs
# Long visits: memory plateaus, no worker restarts, the same masks at the end.
node tests/e2e/visit.mjs

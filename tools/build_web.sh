#!/usr/bin/env bash
# Builds the browser engine into pkg/: the library as a wasm32 cdylib, wasm-bindgen's `--target
# web` glue (pkg/clipseg.js + pkg/clipseg_bg.wasm), and for release wasm-opt -O3.
# PROFILE=release (default, what the demo serves) or PROFILE=dev (what CI tests: it reuses the
# dependencies the wasm32 check already built, and they are opt-level 3 there too).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
# Release is Cargo.toml's `web` profile (LTO, size-optimised outside the hot crates).
[ "$profile" = release ] && profile=web
dir="$profile"; [ "$profile" = dev ] && dir=debug

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
# wasm-bindgen's CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$want" ]; then
  cargo install wasm-bindgen-cli --version "$want"
fi

# Two builds of the same code: clipseg (simd128, every browser with WebGPU) and
# clipseg_relaxed (simd128 + relaxed SIMD: the int8 kernel's 8-bit x 7-bit dot product, where
# the browser has it; www/worker.js picks one at run time). The extra target feature goes to
# this crate only (`cargo rustc -- ...`), so the dependencies are built once for both.
build() {
  local name=$1 enable=$2
  shift 2
  cargo rustc --lib --target wasm32-unknown-unknown --profile "$profile" --crate-type cdylib -- "$@"
  wasm-bindgen --target web --no-typescript "${strip[@]}" --out-dir pkg --out-name "$name" \
    "target/wasm32-unknown-unknown/$dir/clipseg.wasm"
  if [ "$profile" = web ] && [ -x "$wasm_opt" ]; then
    "$wasm_opt" -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-simd $enable "pkg/${name}_bg.wasm" -o "pkg/${name}_bg.wasm"
  fi
  raw=$(stat -c %s "pkg/${name}_bg.wasm")
  gz=$(gzip -9 -c "pkg/${name}_bg.wasm" | wc -c)
  echo "pkg/${name}_bg.wasm ($profile): $raw bytes, $gz gzipped"
}
# Release: wasm-opt from npm's binaryen (tools/web/package.json pins it; Debian's is too old
# for rustc's wasm). Dev builds (CI's) skip it: minutes on a 33 MB module.
wasm_opt=tools/web/node_modules/.bin/wasm-opt
if [ "$profile" = web ] && [ ! -x "$wasm_opt" ]; then
  npm ci --prefix tools/web --no-audit --no-fund ||
    echo "npm could not install binaryen (tools/web): pkg/ is not wasm-opt'ed" >&2
fi
# Release drops the function-name section (6 MB); dev keeps it for readable traps.
strip=()
[ "$profile" = web ] && strip=(--remove-name-section --remove-producers-section)
build clipseg ""
build clipseg_relaxed --enable-relaxed-simd -C target-feature=+relaxed-simd

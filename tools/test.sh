#!/usr/bin/env bash
# Every check CI runs, from a fresh Debian machine: installs what is missing, then lints,
# builds the browser engine (wasm32 + wasm-bindgen into pkg/), runs all Rust tests (CPU through
# burn-flex, wgpu through Mesa's lavapipe Vulkan driver) and the browser end-to-end test (headless
# Chromium: WebGPU through SwiftShader, and the CPU fallback). Opt-in heavy parity:
# tools/full_size_parity.py (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if ! dpkg -s mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
rustup target add wasm32-unknown-unknown
rustup component add clippy
# A fresh clone builds everything once: incremental caches would only add gigabytes of disk.
export CARGO_INCREMENTAL=0

cargo clippy --features native --all-targets -- -D warnings
# The dev profile: its dependencies are opt-level 3 too, and CI builds them only once.
PROFILE=dev tools/build_web.sh
# The wasm-only code, as each of the two browser builds compiles it.
cargo clippy --target wasm32-unknown-unknown --lib -- -D warnings
cargo clippy --target wasm32-unknown-unknown --lib -- -D warnings -C target-feature=+relaxed-simd
cargo test --features native
tools/e2e.sh

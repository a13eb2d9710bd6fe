#!/usr/bin/env bash
# The npm package clipseg-web (pkg/): the wasm builds (tools/build_web.sh, release unless
# PROFILE=dev), then `npm pack` into target/package/. Its version must be Cargo.toml's.
set -euo pipefail
cd "$(dirname "$0")/.."
crate=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
npm_version=$(node -p 'require("./pkg/package.json").version')
if [ "$crate" != "$npm_version" ]; then
  echo "pkg/package.json says version $npm_version, Cargo.toml $crate: make them equal" >&2
  exit 1
fi
tools/build_web.sh
mkdir -p target/package
npm pack ./pkg --pack-destination target/package --loglevel=warn

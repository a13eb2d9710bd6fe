# The two entry points the README opens with.
.PHONY: demo test web package fuzz

# The page in the browser: builds the release wasm (unless pkg/ is up to date), downloads
# CIDAS/clipseg-rd64-refined once (MODEL_DIR=... uses a local HF folder instead), converts it to
# q8 and q4 packs in models/ (plus an untrained tiny pack that works offline), segments a bundled
# photo natively and serves the repository on http://127.0.0.1:8000/www/.
demo:
	bash tools/demo.sh

# Everything CI checks.
test:
	bash tools/test.sh

# The browser engine: wasm32 release build + wasm-bindgen into pkg/.
web:
	bash tools/build_web.sh

# The npm package clipseg-web: pkg/ with release wasm builds, packed into target/package/.
package:
	bash tools/package.sh

# The fuzz targets (tests/fuzz.rs) for FUZZ_MS milliseconds each (CI runs 1.5 s).
fuzz:
	CLIPSEG_FUZZ_MS=$${FUZZ_MS:-60000} cargo test --features native --test fuzz -- --nocapture --test-threads=1

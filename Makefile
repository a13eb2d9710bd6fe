# The two entry points the README opens with.
.PHONY: demo test web

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

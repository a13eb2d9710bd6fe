# The two entry points the README opens with.
.PHONY: demo test web

# Downloads CIDAS/clipseg-rd64-refined once (MODEL_DIR=... uses a local HF folder instead)
# and segments a bundled photo.
demo:
	bash tools/demo.sh

# Everything CI checks.
test:
	bash tools/test.sh

# The browser engine: wasm32 release build + wasm-bindgen into pkg/.
web:
	bash tools/build_web.sh

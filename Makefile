# The two entry points the README opens with.
.PHONY: demo test

# Downloads CIDAS/clipseg-rd64-refined once (MODEL_DIR=... uses a local HF folder instead)
# and segments a bundled photo.
demo:
	bash tools/demo.sh

# Everything CI checks.
test:
	bash tools/test.sh

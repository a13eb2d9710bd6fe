// Promise API over worker.js (the engine in a Web Worker). A fatal error (a trap poisons the wasm instance) rejects what
// is in flight with `error.fatal = true`; the next request starts a fresh worker, which first
// reloads the last successfully loaded pack. The encoded image and the segmentation are lost
// with the old worker, so encode and segment again before asking for labels, masks and the like.

// Decodes an image file without colour management or premultiplication, so that pixels equal
// the file's, turned as its EXIF orientation says (as the native CLI reads them).
export function decodeImage(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
}

// Why the engine would refuse an image of this size, in its words; '' if it would not. Without
// `limits` ({max_side, max_pixels}, see ClipSegClient.limits) only an empty image is refused.
export function checkImageSize(width, height, limits) {
  if (!(width >= 1 && height >= 1)) return `the image is ${width}x${height} px; both sides must be at least 1`;
  if (limits && (width > limits.max_side || height > limits.max_side || width * height > limits.max_pixels))
    return `the image is ${width}x${height} px; the limit is ${limits.max_side} px per side and ${limits.max_pixels / 1e6} megapixels`;
  return '';
}

// The masks the CLI writes for `prompts` with its --union, --subtract (`subtract`: prompts
// segmented after `prompts`), --dilate / --erode (`grow`), --feather and --soft: one per
// prompt, or one for all with `union`; each as compose()'s settings with the prompt it stands
// for ("a | b" for the union).
export function composeEach(prompts, subtract, { union = false, grow = 0, feather = 0, soft = false } = {}) {
  const base = { subtract: subtract.map((_, k) => prompts.length + k), grow, feather, soft };
  if (union) return [{ ...base, prompt: prompts.join(' | '), include: prompts.map((_, k) => k) }];
  return prompts.map((prompt, k) => ({ ...base, prompt, include: [k] }));
}

// The RGBA pixels of anything drawable on a canvas.
function pixelsOf(image) {
  const { width, height } = image;
  const ctx = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
  ctx.drawImage(image, 0, 0);
  return ctx.getImageData(0, 0, width, height).data;
}

export class ClipSegClient {
  #worker = null; // null after a fatal error until the next request
  #pending = new Map(); // id → {resolve, reject, onProgress}
  #nextId = 1;
  #lastLoad = null; // {url} or {bytes}, backend: what a restart reloads
  // The engine's {max_side, max_pixels, max_prompts}, from the first load that succeeded (they
  // are the wasm build's, the same for every pack); null before.
  limits = null;
  #wasm;

  #gpuInt8;
  #testHooks;
  // Called with the message when the engine stops (a Rust panic, a lost WebGPU device), also
  // between requests; the next request restarts it, reloading the last pack.
  onfatal = null;

  // wasm: which build of the engine the worker runs: 'auto' (relaxed SIMD where the browser
  // has it, else simd128), 'relaxed-simd' or 'simd128'; load() says which one ran. gpuInt8:
  // how q8 matrices run on WebGPU: 'auto', 'dot4' (integer dot product) or 'off' (decoded to
  // f32); load() says (`gpuInt8Dot`). testHooks: allow testFault() and count GPU buffers
  // for stats() (tests only).
  constructor({ wasm = 'auto', gpuInt8 = 'auto', testHooks = false } = {}) {
    this.#wasm = wasm;
    this.#gpuInt8 = gpuInt8;
    this.#testHooks = testHooks;
  }

  // Tests only (a client made with testHooks): injects 'panic' (a Rust panic) or 'lose-device'
  // (the WebGPU device destroyed) at once, beside any request running. Resolves {ms}.
  testFault(fault) {
    return this.#request({ type: 'test', fault });
  }

  // source: the URL of a pack (.bpk) or of a split pack's manifest (.json), relative to the
  // document, from any origin that allows it (CORS); the worker downloads, verifies and caches
  // it (pack-cache.js). Or the bytes of a pack, Uint8Array/ArrayBuffer (copied, not transferred,
  // so a restart can reload it). Resolves {backend, wasm, int8Kernel, gpuInt8Dot, gpuF16Math,
  // adapter, reason, size, gpuWeightBytes, packedWeights, limits, pack, ms}; `size` is the side
  // of the model's logit maps, `gpuWeightBytes` the bytes the weights hold in GPU memory
  // (undefined on the CPU), `packedWeights` whether the pack's f16, 8 or 4 bits stayed so there,
  // `pack` {from: 'cache'|'network', notes} for a URL.
  async load(source, { backend = 'auto', onProgress } = {}) {
    const what =
      typeof source === 'string' ? { url: new URL(source, globalThis.document?.baseURI ?? self.location.href).href }
      : ArrayBuffer.isView(source) ? { bytes: new Uint8Array(source.buffer, source.byteOffset, source.byteLength) }
      : { bytes: new Uint8Array(source) };
    const reply = await this.#request({ type: 'load', ...what, backend }, [], onProgress);
    this.#lastLoad = { ...what, backend };
    this.limits = reply.limits;
    return reply;
  }

  // image: ImageBitmap (see decodeImage), ImageData, or anything with width/height that can be
  // drawn on a canvas. Once `limits` is known the size is checked before any pixel buffer is
  // allocated (the engine refuses the same sizes anyway). Resolves {ms}.
  async encode(image) {
    const { width, height } = image;
    const refused = checkImageSize(width, height, this.limits);
    if (refused) throw new Error(refused);
    return this.encodeRgba(image instanceof ImageData ? image.data.slice() : pixelsOf(image), width, height);
  }

  // Raw RGBA8 (width*height*4 bytes), passed to the engine unchecked. The underlying buffer is
  // transferred: the caller's array is detached afterwards. Resolves {ms}.
  encodeRgba(rgba, width, height) {
    const buf = rgba.byteLength === rgba.buffer.byteLength ? rgba.buffer : rgba.slice().buffer;
    return this.#request({ type: 'encode', rgba: buf, width, height }, [buf]);
  }

  // An example image (an image prompt: "find things like this"), ImageBitmap / ImageData /
  // anything drawable as for encode(); with `region` {x, y, width, height} in pixels, or `marks`
  // (a Uint8Array of width*height bytes, nonzero where marked: a brush), only that part of it,
  // cropped, its surroundings blurred and darkened (the CLIPSeg paper's visual prompt
  // engineering, the CLI's --visual-prompt REF@X,Y,W,H and REF@MASK.png). The engine keeps it until
  // dropExample() or the next load. Resolves {id, side, view, ms}: `id` goes into segment()'s
  // prompts; `view` what the model sees of a region (RGBA, side x side; empty for a whole image).
  async encodeExample(image, { region, marks } = {}) {
    const { width, height } = image;
    const refused = checkImageSize(width, height, this.limits);
    if (refused) throw new Error(refused);
    const rgba = image instanceof ImageData ? image.data.slice() : pixelsOf(image);
    const r = region && [region.x, region.y, region.width, region.height];
    const m = marks && marks.slice().buffer;
    const { example, ...reply } = await this.#request({ type: 'example', rgba: rgba.buffer, width, height, region: r, marks: m }, [rgba.buffer, ...(m ? [m] : [])]);
    return { id: example, ...reply };
  }

  // Forgets an example encodeExample() made. Resolves {ms}.
  dropExample(id) {
    return this.#request({ type: 'drop-example', id });
  }

  // Segments the encoded image for `prompts`, each a text or an example's id (encodeExample),
  // in that order; the engine keeps the maps for the requests below. Resolves {count, width,
  // height, labels, ms}: labels as labels(threshold) gives them.
  segment(prompts, { threshold = 0.5 } = {}) {
    return this.#request({ type: 'segment', prompts, threshold });
  }

  // The requests below read the last segmentation, at the encoded image's width x height,
  // row-major. Resolves {labels: Uint8Array}: per pixel the index of the prompt whose mask holds it with
  // the highest logit, 255 where no prompt's does.
  labels(threshold) {
    return this.#request({ type: 'labels', threshold });
  }

  // Resolves {mask: Uint8Array}: 255 inside prompt `index`'s mask (probability > threshold), 0
  // outside; what the CLI's --mask PNG holds.
  mask(index, threshold) {
    return this.#request({ type: 'mask', index, threshold });
  }

  // Resolves {heat: Uint8Array}: prompt `index`'s probabilities, round(255 * p).
  heat(index) {
    return this.#request({ type: 'heat', index });
  }

  // Resolves {probabilities: Float32Array}: every prompt's probability at pixel (x, y); empty
  // outside the image.
  probe(x, y) {
    return this.#request({ type: 'probe', x, y });
  }

  // Resolves {logits: Float32Array [prompt][y][x], size}: the raw size x size logits, as the
  // CLI's --logits .npy holds them.
  logits() {
    return this.#request({ type: 'logits' });
  }

  // Resolves {mask: Uint8Array} (or {png: Uint8Array}, the mask as a PNG file, where `png`): a
  // mask made from the last segmentation's maps as the CLI makes it with --union, --subtract,
  // --dilate / --erode, --feather and --soft, byte for byte: the prompts at `include` (indices
  // into segment()'s prompts) joined, those at `subtract` removed, grown by `grow` px (shrunk
  // where negative), edges feathered over `feather` px (alpha 0..255), or probabilities as
  // grey (`soft`, exclusive with grow and feather).
  compose({ include, subtract = [], grow = 0, feather = 0, soft = false, threshold = 0.5, png = false }) {
    return this.#request({ type: 'compose', include, subtract, grow, feather, soft, threshold, png });
  }

  // Resolves {png: Uint8Array}: `pixels` (width*height bytes: a mask; 4 bytes a pixel: RGBA,
  // e.g. a cut-out) as a PNG file, by the encoder the CLI writes with. The pixels' buffer is
  // transferred (detached afterwards) where it is theirs alone.
  encodePng(pixels, width, height) {
    const buf = pixels.byteLength === pixels.buffer.byteLength ? pixels.buffer : pixels.slice().buffer;
    return this.#request({ type: 'png', pixels: buf, width, height }, [buf]);
  }

  // Resolves {wasmBytes, heapInUse, gpuBuffers, gpuBufferBytes}: the engine's wasm memory (it
  // grows, never shrinks) and the bytes of it allocated; with testHooks also the GPU buffers it
  // created and did not destroy. For tests and diagnostics; starts the worker if not running.
  stats() {
    return this.#request({ type: 'stats' });
  }

  terminate() {
    this.#stop('client terminated', false);
  }

  // Starting lazily means a worker that cannot start (pkg/ missing) fails each request once
  // instead of restarting in a loop.
  #start(firstRequest) {
    // The options travel in the worker's name (see worker.js); the URL stays the literal
    // pattern bundlers (vite, webpack) recognise and copy.
    const options = { wasm: this.#wasm, gpu_int8: this.#gpuInt8, ...(this.#testHooks && { test_hooks: '1' }) };
    const name = `clipseg?${new URLSearchParams(options)}`;
    const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name });
    // Messages a terminated worker had already posted must not reach the new one's requests.
    w.onmessage = ({ data }) => w === this.#worker && this.#receive(data);
    // Only errors the worker cannot catch itself arrive here, e.g. pkg/clipseg.js not loading.
    w.onerror = (e) => w === this.#worker && this.#stop(e.message || 'worker failed to start: worker.js or clipseg.js (beside clipseg-client.js) did not load', true);
    this.#worker = w;
    if (this.#lastLoad && firstRequest.type !== 'load') {
      const { backend, ...what } = this.#lastLoad;
      this.#request({ type: 'load', ...what, backend }).catch((e) => console.error('clipseg: reloading the pack failed:', e.message));
    }
  }

  #receive(msg) {
    if (msg.type === 'fatal') return this.#stop(msg.error, true);
    const p = this.#pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') return p.onProgress?.(msg.loaded, msg.total);
    this.#pending.delete(msg.id);
    if (msg.ok) {
      const { id, ok, ...reply } = msg;
      p.resolve(reply);
    } else {
      p.reject(Object.assign(new Error(msg.error), { fatal: !!msg.fatal }));
    }
  }

  #request(msg, transfer = [], onProgress) {
    if (!this.#worker) this.#start(msg);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, ...msg }, transfer);
    });
  }

  // Ends the worker and fails everything in flight.
  #stop(error, fatal) {
    const stopping = this.#worker;
    this.#worker?.terminate();
    this.#worker = null;
    for (const p of this.#pending.values()) p.reject(Object.assign(new Error(error), { fatal }));
    this.#pending.clear();
    if (fatal && stopping) this.onfatal?.(error);
  }
}

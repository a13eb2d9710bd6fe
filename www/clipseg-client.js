// Promise API over www/worker.js. A fatal error (a trap poisons the wasm instance) rejects what
// is in flight with `error.fatal = true`; the next request starts a fresh worker, which first
// reloads the last successfully loaded pack. The encoded image is lost with the old worker, so
// encode again before the next segment().

// The engine's limits (src/segmenter.rs), checked here before pixels are extracted.
export const MAX_SIDE = 16384; // pixels per side
export const MAX_PIXELS = 50_000_000;

// Decodes an image file without colour management or premultiplication, so that pixels equal
// the file's (as the native CLI reads them).
export function decodeImage(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
}

export class ClipSegClient {
  #worker = null; // null after a fatal error until the next request
  #pending = new Map(); // id → {resolve, reject, onProgress}
  #nextId = 1;
  #lastLoad = null; // {url} or {bytes}, backend: what a restart reloads

  // source: URL string or Uint8Array/ArrayBuffer of a .bpk pack (copied, not transferred, so a
  // restart can reload it). Resolves {backend, adapter, reason, size, max_prompts, ms}.
  async load(source, { backend = 'auto', onProgress } = {}) {
    const what =
      typeof source === 'string' ? { url: source }
      : ArrayBuffer.isView(source) ? { bytes: new Uint8Array(source.buffer, source.byteOffset, source.byteLength) }
      : { bytes: new Uint8Array(source) };
    const reply = await this.#request({ type: 'load', ...what, backend }, [], onProgress);
    this.#lastLoad = { ...what, backend };
    return reply;
  }

  // image: ImageBitmap (see decodeImage), ImageData, or anything with width/height that can be
  // drawn on a canvas. Size is checked before any pixel buffer is allocated. Resolves {ms}.
  async encode(image) {
    const { width, height } = image;
    if (!(width >= 1 && height >= 1)) throw new Error(`the image is ${width}x${height} px; both sides must be at least 1`);
    if (width > MAX_SIDE || height > MAX_SIDE || width * height > MAX_PIXELS)
      throw new Error(`the image is ${width}x${height} px; the limit is ${MAX_SIDE} px per side and ${MAX_PIXELS / 1e6} megapixels`);
    if (image instanceof ImageData) return this.encodeRgba(image.data.slice(), width, height);
    const ctx = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
    ctx.drawImage(image, 0, 0);
    return this.encodeRgba(ctx.getImageData(0, 0, width, height).data, width, height);
  }

  // Raw RGBA8 (width*height*4 bytes), passed to the engine unchecked. The underlying buffer is
  // transferred: the caller's array is detached afterwards. Resolves {ms}.
  encodeRgba(rgba, width, height) {
    const buf = rgba.byteLength === rgba.buffer.byteLength ? rgba.buffer : rgba.slice().buffer;
    return this.#request({ type: 'encode', rgba: buf, width, height }, [buf]);
  }

  // Resolves {probs: Float32Array [prompt][y][x] of probabilities, size, ms}.
  segment(prompts) {
    return this.#request({ type: 'segment', prompts });
  }

  terminate() {
    this.#stop('client terminated', false);
  }

  // Starting lazily means a worker that cannot start (pkg/ missing) fails each request once
  // instead of restarting in a loop.
  #start(firstRequest) {
    const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    // Messages a terminated worker had already posted must not reach the new one's requests.
    w.onmessage = ({ data }) => w === this.#worker && this.#receive(data);
    // Only errors the worker cannot catch itself arrive here, e.g. pkg/clipseg.js not loading.
    w.onerror = (e) => w === this.#worker && this.#stop(e.message || 'worker failed to start: www/worker.js or pkg/clipseg.js did not load', true);
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
    this.#worker?.terminate();
    this.#worker = null;
    for (const p of this.#pending.values()) p.reject(Object.assign(new Error(error), { fatal }));
    this.#pending.clear();
  }
}

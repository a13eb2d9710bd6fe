// Module worker owning one wasm Engine; clipseg-client.js is its only intended user.
// Protocol (every request carries an `id` that its answer repeats; arrays marked (t) are
// transferred; every answer also carries the request's `ms`):
//   {type:'load', url | bytes, backend:'auto'|'webgpu'|'cpu'}: url is absolute, a pack or a
//       split pack's manifest, fetched, verified and cached by pack-cache.js
//       → {type:'progress', loaded, total} while fetching (total 0 when unknown)
//       → {ok:true, backend, wasm ('relaxed-simd'|'simd128': the build running), int8Kernel (the
//          CPU's int8 kernel where a q8/q4 pack runs on it, else undefined), gpuInt8Dot (q8
//          matrices on WebGPU's integer dot product; undefined on the CPU), gpuF16Math (f16
//          matrices multiplied in half precision: shader-f16 on a real GPU), adapter, reason, size, gpuWeightBytes (undefined on the CPU),
//          packedWeights (the pack's f16, 8 or 4 bits kept on the GPU), limits: {max_side, max_pixels, max_prompts},
//          pack: {from: 'cache'|'network', notes} for a url}
//   {type:'encode', rgba: ArrayBuffer, width, height}  → {ok:true}
//   {type:'example', rgba: ArrayBuffer, width, height, region?: [x, y, w, h], marks?: ArrayBuffer}
//                                 → {ok:true, example, side, view: Uint8Array (t)}: an example image
//       (an image prompt) encoded and kept under the id `example`; with a region or marks (a byte
//       per pixel, nonzero where marked), what the model sees of it (RGBA side x side, the
//       paper's visual prompt engineering), else view empty
//   {type:'drop-example', id}     → {ok:true}
//   {type:'segment', prompts: (string | example id)[], threshold}
//                                 → {ok:true, count, width, height, labels: Uint8Array (t)}
//   The engine keeps the last segmentation's maps; these read them at the image's size:
//   {type:'labels', threshold}    → {ok:true, labels: Uint8Array (t)}: per pixel the prompt index, 255 for none
//   {type:'mask', index, threshold} → {ok:true, mask: Uint8Array (t)}: 255 inside, 0 outside
//   {type:'heat', index}          → {ok:true, heat: Uint8Array (t)}: round(255 * probability)
//   {type:'probe', x, y}          → {ok:true, probabilities: Float32Array (t)}: one per prompt, empty outside
//   {type:'logits'}               → {ok:true, logits: Float32Array (t) [prompt][y][x], size}
//   {type:'compose', include, subtract, grow, feather, soft, threshold, png}
//                                 → {ok:true, mask: Uint8Array (t)}, or {png: Uint8Array (t)}
//       where png: a mask as the CLI's --union/--subtract/--dilate/--erode/--feather/--soft make it
//   {type:'png', pixels: ArrayBuffer, width, height} (transfer pixels) → {ok:true, png: Uint8Array (t)}:
//       a mask (1 byte per pixel) or RGBA (4) as a PNG, by the CLI's encoder
//   {type:'stats'}                → {ok:true, wasmBytes, heapInUse, gpuBuffers, gpuBufferBytes}:
//       the wasm instance's memory, the bytes of it allocated; with test hooks also the GPU
//       buffers created and not destroyed
//   failure → {ok:false, error}; the worker stays usable and keeps its last good engine.
//   A trap (Rust panic, wasm OOM) poisons the instance: → {ok:false, fatal:true, error}, and
//   {type:'fatal', error} unsolicited; every later request is answered fatal too.

import { getPack } from './pack-cache.js';

// Two builds of the same engine (tools/build_web.sh): clipseg_relaxed, whose int8 kernel runs
// relaxed SIMD's 8-bit x 7-bit dot product, where this browser validates relaxed SIMD; else
// clipseg (simd128 only). The worker's name carries ClipSegClient's options as a query
// ("clipseg?wasm=…&gpu_int8=…", the name survives bundlers, a URL query may not): wasm=
// relaxed-simd|simd128 asks for a build, gpu_int8=auto|dot4|off says how q8 matrices run on
// WebGPU (see gpu_int8 in src/web.rs). The probe: a module of one function that runs
// i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113), as the wasm-feature-detect package's do.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, // magic, version
  1, 5, 1, 96, 0, 1, 123, // type: () -> v128
  3, 2, 1, 0, // function 0 has type 0
  10, 19, 1, 17, 0, // code: one body of 17 bytes, no locals
  65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 17, // i8x16.splat(0) twice, i32x4.splat(0)
  253, 147, 2, 11, // i32x4.relaxed_dot_i8x16_i7x16_add_s, end
]);
// Literal import()s, so that bundlers see both builds.
const BUILDS = { 'relaxed-simd': () => import('./clipseg_relaxed.js'), simd128: () => import('./clipseg.js') };
const query = new URLSearchParams(self.name.split('?')[1] ?? '');
const asked = query.get('wasm') || 'auto';
const build = asked === 'auto' ? (WebAssembly.validate(RELAXED_SIMD_PROBE) ? 'relaxed-simd' : 'simd128') : asked;

let wasm = null; // the build's module: {Engine, last_panic, device_lost, limits}
let memory = null; // its instance's WebAssembly.Memory
let ready = null; // its init() promise, started by the first request
let engine = null; // last successfully loaded Engine
let fatal = null; // error message once the instance is poisoned
let queue = Promise.resolve(); // requests run one at a time, in order (no load racing a segment)
const waiting = new Set(); // ids queued or running, answered all at once if the instance dies

self.onmessage = ({ data }) => {
  if (fatal) return post({ id: data.id, ok: false, fatal: true, error: fatal });
  if (data.type === 'test' && query.get('test_hooks') === '1') return testFault(data);
  waiting.add(data.id);
  queue = queue.then(() => handle(data));
};

// Test hooks: every GPU buffer created, less those destroyed (the memory a page holds until
// its garbage collector runs, whatever the engine meant), for the stats request. wgpu's
// WebGPU backend calls these methods on the objects, so wrapping the prototypes sees them all.
const gpuHeld = query.get('test_hooks') === '1' && self.GPUDevice ? countGpuBuffers() : null;
function countGpuBuffers() {
  const held = { buffers: 0, bytes: 0 }, destroyed = new WeakSet();
  const { createBuffer } = GPUDevice.prototype, { destroy } = GPUBuffer.prototype;
  GPUDevice.prototype.createBuffer = function (descriptor) {
    const buffer = createBuffer.call(this, descriptor);
    held.buffers++;
    held.bytes += buffer.size;
    return buffer;
  };
  GPUBuffer.prototype.destroy = function () {
    if (!destroyed.has(this)) {
      destroyed.add(this);
      held.buffers--;
      held.bytes -= this.size;
    }
    return destroy.call(this);
  };
  return held;
}

// The engine reports a WebGPU device loss as it happens (src/web.rs).
self.clipsegDeviceLost = (why) => die(new Error(`the WebGPU device was lost (${why})`));

// Test hook (ClipSegClient's testHooks): {type:'test', fault:'panic'|'lose-device'} runs at
// once, beside whatever request is running, as a real fault would strike.
function testFault({ id, fault }) {
  try {
    if (!wasm) throw new Error('the engine has not started: load a pack first');
    wasm.test_fault(fault);
    post({ id, ok: true, ms: 0 });
  } catch (e) {
    if (!(e instanceof WebAssembly.RuntimeError)) return post({ id, ok: false, error: message(e) });
    waiting.add(id);
    die(e);
  }
}

// A panic inside an async Engine method traps in a microtask that wasm-bindgen-futures runs,
// so it surfaces here, as an uncaught error or rejection, and the method's promise never settles.
self.addEventListener('error', (e) => {
  e.preventDefault();
  die(e.error ?? new Error(e.message));
});
self.addEventListener('unhandledrejection', (e) => {
  e.preventDefault();
  die(e.reason);
});

async function handle(msg) {
  if (!waiting.has(msg.id)) return; // already answered by die()
  try {
    if (!Object.hasOwn(ops, msg.type)) throw new Error(`unknown request type "${msg.type}"`);
    ready ??= start();
    // A pack's download starts beside the wasm's compilation, not after it.
    if (msg.type === 'load' && !msg.bytes) msg.fetched = fetchPack(msg);
    await ready;
    const t0 = performance.now();
    const [reply, transfer] = await ops[msg.type](msg);
    post({ id: msg.id, ok: true, ...reply, ms: performance.now() - t0 }, transfer);
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) return die(e);
    // burn's WebGPU runtime can't be re-created in this instance: only a new worker recovers.
    if (lostDevice()) return die(e);
    post({ id: msg.id, ok: false, error: message(e) });
  }
  waiting.delete(msg.id);
}

const ops = {
  async load({ bytes, backend, fetched }) {
    const got = fetched && (await fetched);
    const pack = bytes ?? got.bytes;
    const loaded = await loadEngine(pack, backend, !!got?.verified);
    engine?.free();
    engine = loaded.engine;
    // wgpu cannot name a browser's adapter: use what WebGPU says.
    const adapter = loaded.adapter;
    const { gpuWeightBytes, packedWeights, int8Kernel, gpuInt8Dot, gpuF16Math } = engine;
    return [{ backend: engine.backend, wasm: build, int8Kernel, gpuInt8Dot, gpuF16Math, adapter, reason: loaded.reason, size: engine.size, gpuWeightBytes, packedWeights, limits: wasm.limits(), pack: got && { from: got.from, notes: got.notes } }, []];
  },
  async encode({ rgba, width, height }) {
    await needEngine().encode_image(new Uint8Array(rgba), width, height);
    return [{}, []];
  },
  async example({ rgba, width, height, region, marks }) {
    const example = await needEngine().encode_example(new Uint8Array(rgba), width, height, region && Uint32Array.from(region), marks && new Uint8Array(marks));
    const { id, side } = example;
    const view = own(example.takeView());
    example.free();
    // Not `id`: every answer's id is its request's.
    return [{ example: id, side, view }, [view.buffer]];
  },
  async 'drop-example'({ id }) {
    needEngine().drop_example(id);
    return [{}, []];
  },
  async segment({ prompts, threshold }) {
    const e = needEngine();
    const labels = own(await e.segment(prompts, threshold));
    return [{ count: prompts.length, width: e.width, height: e.height, labels }, [labels.buffer]];
  },
  async labels({ threshold }) {
    const labels = own(needEngine().labels(threshold));
    return [{ labels }, [labels.buffer]];
  },
  async mask({ index, threshold }) {
    const mask = own(needEngine().mask(index, threshold));
    return [{ mask }, [mask.buffer]];
  },
  async heat({ index }) {
    const heat = own(needEngine().probabilities(index));
    return [{ heat }, [heat.buffer]];
  },
  async probe({ x, y }) {
    const probabilities = own(needEngine().probabilities_at(x, y));
    return [{ probabilities }, [probabilities.buffer]];
  },
  async logits() {
    const e = needEngine();
    const logits = own(e.logits());
    return [{ logits, size: e.size }, [logits.buffer]];
  },
  async compose({ include, subtract = [], grow = 0, feather = 0, soft = false, threshold, png }) {
    const e = needEngine();
    const out = own(e.compose(Uint32Array.from(include), Uint32Array.from(subtract), grow, feather, soft, threshold, !!png));
    return [png ? { png: out } : { mask: out }, [out.buffer]];
  },
  async png({ pixels, width, height }) {
    const png = own(wasm.encode_png(new Uint8Array(pixels), width, height));
    return [{ png }, [png.buffer]];
  },
  async stats() {
    return [{ wasmBytes: memory.buffer.byteLength, heapInUse: wasm.heap_in_use(), gpuBuffers: gpuHeld?.buffers, gpuBufferBytes: gpuHeld?.bytes }, []];
  },
};

// An array that owns its whole buffer, so transferring it moves nothing else (a view into wasm
// memory is copied out).
function own(a) {
  return a.byteLength === a.buffer.byteLength ? a : a.slice();
}

async function start() {
  if (!Object.hasOwn(BUILDS, build)) throw new Error(`unknown wasm build "${asked}": use auto, relaxed-simd or simd128`);
  const module = await BUILDS[build]();
  ({ memory } = await module.default());
  module.gpu_int8(query.get('gpu_int8') || 'auto');
  wasm = module;
}

function needEngine() {
  if (!engine) throw new Error('no model loaded');
  return engine;
}

// getPack for a load request, its progress posted; the promise is handled (a failure is
// reported when ops.load awaits it, not as an unhandled rejection meanwhile).
function fetchPack({ id, url }) {
  let last = 0;
  const onProgress = (loaded, total) => {
    if (performance.now() - last < 50 && loaded < total) return;
    post({ id, type: 'progress', loaded, total });
    last = performance.now();
  };
  const p = getPack(url, { onProgress });
  p.catch(() => {});
  return p;
}

// Resolves the requested backend to {engine, adapter, reason}: the WebGPU adapter's name ('' on
// CPU) and why WebGPU is not used ('' when it is). verified: the bytes matched a published
// sha256, so the engine skips its own pass over them.
async function loadEngine(pack, backend, verified) {
  if (backend === 'cpu') return { engine: await wasm.Engine.load(pack, 'cpu', verified), adapter: '', reason: 'forced by backend=cpu' };
  if (backend !== 'webgpu' && backend !== 'auto') throw new Error(`unknown backend "${backend}"`);
  let { adapter, reason, fallback } = await webgpuAdapter();
  // A software fallback adapter (SwiftShader) runs WebGPU on the CPU cores, ~12x slower than the
  // CPU engine on the same model: auto takes the CPU there, webgpu still honours the request.
  if (!reason && fallback && backend === 'auto') reason = `${adapter} is a software renderer: the CPU engine is faster`;
  if (!reason) {
    try {
      return { engine: await wasm.Engine.load(pack, 'webgpu', verified), adapter, reason: '' };
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError || backend === 'webgpu') throw e;
      reason = `WebGPU engine failed: ${message(e)}`;
    }
  }
  if (backend === 'webgpu') throw new Error(`WebGPU unavailable: ${reason}`);
  try {
    return { engine: await wasm.Engine.load(pack, 'cpu', verified), adapter: '', reason };
  } catch (e) {
    // A broken pack fails on both backends; say so once, with the CPU error.
    if (e instanceof WebAssembly.RuntimeError) throw e;
    throw new Error(`${message(e)} (after falling back to CPU: ${reason})`);
  }
}

// {adapter: its name, fallback: whether it is a software fallback} if WebGPU offers an adapter,
// else {reason}.
async function webgpuAdapter() {
  if (!self.navigator.gpu) return { reason: 'navigator.gpu is missing' };
  try {
    const a = await navigator.gpu.requestAdapter();
    if (!a) return { reason: 'no WebGPU adapter' };
    const { vendor, architecture, device, description, isFallbackAdapter } = a.info ?? {};
    const name = [vendor, architecture, device, description, isFallbackAdapter && '(fallback adapter)'];
    return { adapter: name.filter(Boolean).join(' ') || 'unnamed adapter', fallback: !!isFallbackAdapter };
  } catch (e) {
    return { reason: `requestAdapter failed: ${message(e)}` };
  }
}

// Marks the instance poisoned and reports it, once unsolicited and once per waiting request
// (the running one may never settle).
function die(e) {
  if (!fatal) {
    let panic = '';
    try {
      panic = wasm.last_panic();
    } catch {} // the poisoned instance may trap again
    fatal = panic || message(e);
    if (lostDevice() && !panic) fatal = `the WebGPU device was lost (${lostDevice()})`;
    console.error(`clipseg: the engine stopped: ${fatal}`);
    engine = null; // freeing would re-enter the poisoned instance
    post({ type: 'fatal', error: fatal });
  }
  for (const id of waiting) post({ id, ok: false, fatal: true, error: fatal });
  waiting.clear();
}

function lostDevice() {
  try {
    return wasm.device_lost();
  } catch {
    return '';
  }
}

function message(e) {
  return (e instanceof Error ? e.message : String(e)) || 'unknown error';
}

function post(msg, transfer = []) {
  self.postMessage(msg, transfer);
}

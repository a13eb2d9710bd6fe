// Test page for tests/e2e/run.mjs (see e2e.html). Loads a pack, encodes an image, segments all
// prompts in one call (keeping their logits and full-size masks at 0.5) and then each alone,
// then feeds the same worker bad inputs. The outcome is window.__e2e; `done` turns true at the
// end, `error` is set if the normal path failed.
import { ClipSegClient, decodeImage } from '../pkg/clipseg-client.js';

const q = new URLSearchParams(location.search);
const prompts = (q.get('prompts') ?? '').split('|');
const result = (window.__e2e = { done: false, csp: [] });
document.addEventListener('securitypolicyviolation', (e) => result.csp.push(`${e.violatedDirective}: ${e.blockedURI}`));

main()
  .catch((e) => {
    result.error = e.message || String(e);
    log(`error: ${result.error}`);
  })
  .finally(() => (result.done = true));

async function main() {
  const client = new ClipSegClient({ wasm: q.get('wasm') ?? 'auto', gpuInt8: q.get('gpu_int8') ?? 'auto' });
  const loaded = await client.load(q.get('pack'), {
    backend: q.get('backend') ?? 'auto',
    onProgress: (loaded, total) => (document.title = `loading ${loaded}/${total}`),
  });
  const { backend, wasm, int8Kernel, gpuInt8Dot, adapter, reason, size, limits } = loaded;
  log(`backend ${backend} (wasm ${wasm}, int8 kernel ${int8Kernel}) ${adapter} ${reason}`);
  const bitmap = await decodeImage(await (await fetchOk(q.get('image'))).blob());
  const encoded = await client.encode(bitmap);
  const all = await client.segment(prompts);
  const { logits } = await client.logits();
  const masks = [];
  for (const k of prompts.keys()) masks.push((await client.mask(k, 0.5)).mask);
  const alone = [];
  for (const p of prompts) {
    const r = await client.segment([p]);
    alone.push({ ...r, logits: (await client.logits()).logits });
  }

  const n = size * size;
  const first = alone[0].logits;
  Object.assign(result, {
    backend, wasm, int8_kernel: int8Kernel, gpu_int8_dot: gpuInt8Dot, adapter, reason, size, limits,
    timings: { load_ms: loaded.ms, encode_ms: encoded.ms, segment_ms: [all.ms, ...alone.map((a) => a.ms)] },
    logits: base64(logits),
    // The engine's masks at the image's size, for run.mjs to compare with the CLI's --mask.
    masks: { width: all.width, height: all.height, data: masks.map(base64) },
    // One prompt alone must give what it gave in the batch.
    reprompt_max_diff: Math.max(...alone.map((a, i) => maxProbDiff(a.logits, logits.subarray(i * n, (i + 1) * n)))),
  });
  log(`timings ${JSON.stringify(result.timings)}`);
  prompts.forEach((p, i) => show(bitmap, logits.subarray(i * n, (i + 1) * n), size, p));

  // Bad inputs on the same worker: each must leave the engine's maps as they were, and then the
  // first prompt must segment as before.
  const pack = new Uint8Array(await (await fetchOk(q.get('pack'))).arrayBuffer());
  const corrupted = pack.slice();
  for (let i = corrupted.length >> 1, end = Math.min(i + 64, corrupted.length); i < end; i++) corrupted[i] ^= 0xff;
  const otherVersion = pack.slice();
  otherVersion[8] = 99; // the format version follows the 8-byte signature
  const checks = {
    corrupted_pack: () => client.load(corrupted, { backend }),
    other_version_pack: () => client.load(otherVersion, { backend }),
    truncated_pack: () => client.load(pack.subarray(0, pack.length >> 1), { backend }),
    empty_image: () => client.encodeRgba(new Uint8Array(0), 0, 0),
    // The engine must refuse on size before comparing the (tiny) buffer's length.
    huge_image: () => client.encodeRgba(new Uint8Array(4), 20000, 20000),
    huge_image_client: () => client.encode({ width: 20000, height: 20000 }),
    too_many_prompts: () => client.segment(Array(Math.max(100, limits.max_prompts + 1)).fill(prompts[0])),
    empty_prompt: () => client.segment(['']),
    threshold_2: () => client.labels(2),
    // Another prompt than the maps': had it run, the maps would have changed.
    segment_threshold_2: () => client.segment([prompts[1] ?? prompts[0]], { threshold: 2 }),
    mask_index_out_of_range: () => client.mask(prompts.length, 0.5),
  };
  result.bad = {};
  for (const [name, check] of Object.entries(checks)) {
    const r = (result.bad[name] = { error: '' });
    const before = await client.logits().catch((e) => e);
    try {
      await check();
    } catch (e) {
      Object.assign(r, { error: e.message, fatal: !!e.fatal });
    }
    try {
      if (before instanceof Error) throw before;
      r.kept_max_diff = maxProbDiff((await client.logits()).logits, before.logits);
    } catch (e) {
      r.kept_error = e.message;
    }
    try {
      const after = await client.segment([prompts[0]]);
      Object.assign(r, { after_max_diff: maxProbDiff((await client.logits()).logits, first), after_ms: after.ms });
    } catch (e) {
      r.after_error = e.message;
    }
    log(`${name}: ${r.error || 'NOT REJECTED'}`);
  }
}

async function fetchOk(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res;
}

function log(line) {
  document.getElementById('log').textContent += `${line}\n`;
}

function sigmoid(l) {
  return 1 / (1 + Math.exp(-l));
}

// Largest difference of the probabilities of two logit maps.
function maxProbDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(sigmoid(a[i]) - sigmoid(b[i])));
  return a.length === b.length ? m : Infinity;
}

function base64(array) {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// The image squeezed to size x size, as the model saw it, tinted red by the probability.
function show(bitmap, logits, size, prompt) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, size, size);
  const img = ctx.getImageData(0, 0, size, size);
  for (let i = 0; i < logits.length; i++) {
    const a = sigmoid(logits[i]) * 0.6;
    img.data[4 * i] = img.data[4 * i] * (1 - a) + 255 * a;
    img.data[4 * i + 1] *= 1 - a;
    img.data[4 * i + 2] *= 1 - a;
  }
  ctx.putImageData(img, 0, 0);
  const figure = document.createElement('figure');
  const caption = document.createElement('figcaption');
  caption.textContent = prompt; // text, never HTML
  figure.append(canvas, caption);
  document.getElementById('masks').append(figure);
}

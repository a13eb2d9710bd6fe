// Benchmark page for bench/browser.mjs (see bench.html); also usable by hand. Through
// ClipSegClient: loads the pack, then one full pass (encode + segment one prompt; the first one
// pays for shader compilation / warm-up), `iters` more full passes and `iters` re-prompts
// (segment only, on the encoded image). Times are wall-clock on this page, around the client's
// promises (so they include the worker round trip, segment's label map at the image's size as
// the demo page gets it and, for encode, the pixel extraction from the decoded image); the
// worker's own `ms` for each request is kept next to them.
// The outcome is window.__bench: `stage` says what is running, `done` turns true at the end,
// `error` is set on failure. With `pause=1` the page waits after loading until the driver calls
// window.__benchContinue() (the driver reads the worker's wasm memory meanwhile).
import { ClipSegClient, decodeImage } from '../pkg/clipseg-client.js';

const q = new URLSearchParams(location.search);
const iters = Math.max(1, Number.parseInt(q.get('iters') ?? '3', 10) || 1);
const prompt = q.get('prompt') || 'a photo of a cat';
const backend = q.get('backend') ?? 'auto';
const result = (window.__bench = { done: false, stage: 'starting', stage_since: Date.now(), csp: [], iters, prompt, full: [], reprompt: [] });
document.addEventListener('securitypolicyviolation', (e) => result.csp.push(`${e.violatedDirective}: ${e.blockedURI}`));
let resume;
const resumed = new Promise((r) => (resume = r));
window.__benchContinue = () => resume();

main()
  .then(() => stage('done'))
  .catch((e) => {
    result.error = `${result.stage}: ${e.message || String(e)}`;
    log(`error: ${result.error}`);
  })
  .finally(() => (result.done = true));

async function main() {
  const client = new ClipSegClient({ wasm: q.get('wasm') ?? 'auto', gpuInt8: q.get('gpu_int8') ?? 'auto' });
  stage('load');
  let t = performance.now();
  const loaded = await client.load(q.get('pack'), {
    backend,
    onProgress: (loadedBytes, total) => (result.progress = { loaded: loadedBytes, total }),
  });
  result.load = { wall_ms: performance.now() - t, worker_ms: loaded.ms };
  const { adapter, reason, size, limits } = loaded;
  Object.assign(result, { backend: loaded.backend, wasm: loaded.wasm, int8_kernel: loaded.int8Kernel, gpu_int8_dot: loaded.gpuInt8Dot, adapter, reason, size, max_prompts: limits.max_prompts });
  log(`backend ${loaded.backend} ${adapter} ${reason}; load ${result.load.wall_ms.toFixed(0)} ms`);

  stage('decode image');
  t = performance.now();
  const res = await fetch(q.get('image'));
  if (!res.ok) throw new Error(`${q.get('image')}: HTTP ${res.status}`);
  const bitmap = await decodeImage(await res.blob());
  result.image = { width: bitmap.width, height: bitmap.height, decode_ms: performance.now() - t };

  if (q.get('pause')) {
    stage('loaded, waiting for the driver');
    await resumed;
  }

  const fullPass = async () => {
    const t0 = performance.now();
    const enc = await client.encode(bitmap);
    const seg = await client.segment([prompt]);
    const wall_ms = performance.now() - t0;
    return { wall_ms, encode_ms: enc.ms, segment_ms: seg.ms, ...(await summary(client)) };
  };
  const reprompt = async () => {
    const t0 = performance.now();
    const seg = await client.segment([prompt]);
    const wall_ms = performance.now() - t0;
    return { wall_ms, segment_ms: seg.ms, ...(await summary(client)) };
  };

  stage('first pass');
  result.first = await fullPass();
  log(`first pass ${JSON.stringify(result.first)}`);
  for (let i = 1; i <= iters; i++) {
    stage(`full pass ${i}/${iters}`);
    result.full.push(await fullPass());
    log(`full pass ${i}: ${JSON.stringify(result.full.at(-1))}`);
  }
  for (let i = 1; i <= iters; i++) {
    stage(`re-prompt ${i}/${iters}`);
    result.reprompt.push(await reprompt());
    log(`re-prompt ${i}: ${JSON.stringify(result.reprompt.at(-1))}`);
  }
}

function stage(name) {
  Object.assign(result, { stage: name, stage_since: Date.now() });
  document.title = `bench: ${name}`;
}

// A sanity figure for the last segmentation's output, asked for outside the timed span: mean
// probability of its logits, and whether every logit is finite.
async function summary(client) {
  const { logits } = await client.logits();
  let sum = 0;
  let ok = true;
  for (const l of logits) {
    sum += 1 / (1 + Math.exp(-l));
    ok &&= Number.isFinite(l);
  }
  return { mean_prob: sum / logits.length, valid: ok };
}

function log(line) {
  document.getElementById('log').textContent += `${line}\n`;
}

// Long visits in headless Chromium (run by tools/e2e.sh after page.mjs): memory must reach a
// plateau, the worker must never restart, the same input must give the same masks at the end.
//
// 1. The demo page (www/index.html, test hooks on), one visit: 150 runs over 20 generated
//    photos of mixed sizes (64x48 to 1600x1200) with 5 prompt sets each, as a user makes them
//    (file input, prompts typed, Segment), in three rounds of the same tour of packs and backends:
//    refined q8 on WebGPU, plain f16 on WebGPU, plain f16 on the CPU, refined q4 on the CPU,
//    refined q8 on WebGPU again (per round three model switches, two backend switches). Every
//    10 runs (10, 50, 100, 150 at the tour's first stage): the engine's wasm memory and the
//    bytes of it in use, the GPU buffers created and not destroyed (counted in the worker, test
//    hooks) and the page's JS heap after a garbage collection. The third round must hold what
//    the second held (the wasm heap in use, GPU buffers: the second still fills one-time caches,
//    some kB); a last run repeats run 1's photo and prompts and must give its label map byte
//    for byte.
// 2. <clip-seg> elements: 30 added to one page, a third of them removed again while their
//    requests wait, the rest rendered, then all removed; VISIT_ROUNDS times (default 5).
//    Every round the same elements must give the same masks, off one worker and one model
//    load, with the wasm heap in use and the JS heap of the last round those of the second.
// Writes target/e2e/visit.json (the numbers). Exits 1 on a failed check, 2 on the hard timeout.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromiumArgs, cli, cliBinary, encodePng, fail, launchChromium, serve } from './harness.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const bin = cliBinary(root);
const outDir = 'target/e2e';
const PACKS = [
  { file: `${outDir}/visit-refined-q8.bpk`, model: 'tests/fixtures/models/refined', quant: 'q8', label: 'refined q8' },
  { file: `${outDir}/visit-plain-f16.bpk`, model: 'tests/fixtures/models/plain', quant: 'f16', label: 'plain f16' },
  { file: `${outDir}/visit-refined-q4.bpk`, model: 'tests/fixtures/models/refined', quant: 'q4', label: 'refined q4' },
];
// One round of the page's tour: [first run, pack, backend], 50 runs.
const TOUR = [[1, 0, 'webgpu'], [11, 1, 'webgpu'], [21, 1, 'cpu'], [31, 2, 'cpu'], [41, 0, 'webgpu']];
// VISIT_RUNS: more rounds of the tour (a multiple of 50, at least 150).
const RUNS = Number(process.env.VISIT_RUNS ?? 150);
const SNAPSHOTS = Array.from({ length: RUNS / 10 }, (_, i) => 10 * (i + 1));
const PROMPT_SETS = [['a cat'], ['a dog', 'a sofa'], ['the red circle', 'the blue square', 'the sky'], ['something on the left'], ['a photo of a cat', 'a dog']];
const SIZES = [[640, 480], [352, 352], [1024, 768], [300, 900], [1600, 1200], [64, 48], [800, 600], [480, 640], [1280, 720], [200, 200]];
const WIDGETS = 30;
const ROUNDS = Number(process.env.VISIT_ROUNDS ?? 5);
// Growth allowed between the compared snapshots. The wasm heap in use and the GPU buffers must
// not grow at all (a leak); the JS heap after a collection moves by some 100 kB between like
// states (compiled code, caches). The wasm memory's size also holds the holes between blocks:
// a photo's 7.7 MB of pixels that fits none of them grows it once, at some run or other
// (seen: 47.6 MB at run 50, 55.3 MB from run 80 on, flat to run 250).
const HEAP_SLACK = 1.25;
const WASM_SLACK = 1.25;

setTimeout(() => {
  console.log('FAIL: hard timeout (visit.mjs), giving up');
  process.exit(2);
}, 25 * 60_000).unref();

process.chdir(root);
fs.mkdirSync(outDir, { recursive: true });
for (const f of ['pkg/clipseg.js', 'pkg/clipseg_bg.wasm'])
  if (!fs.existsSync(f)) fail(`${f} missing: build the wasm package into pkg/ first`);
if (!fs.existsSync(bin.path)) fail(`${bin.path} missing: cargo build --features native (or set CLIPSEG_BIN)`);
for (const p of PACKS) cli(bin, 'convert', '--model', p.model, '--out', p.file, '--quant', p.quant);
const IMAGES = SIZES.concat(SIZES).map(([w, h], i) => ({ name: `visit-${String(i + 1).padStart(2, '0')}.png`, png: photo(w, h, i) }));

const checks = [];
const check = (name, pass, detail = '') => {
  checks.push({ name, pass: !!pass });
  console.log(`  ${pass ? 'ok  ' : 'FAIL'} ${name}${detail === '' ? '' : `: ${detail}`}`);
};
const report = {};

const server = await serve(root);
const base = `http://127.0.0.1:${server.address().port}`;
// Precise numbers from performance.memory (else rounded to 100 kB steps).
const browser = await launchChromium([...chromiumArgs(), '--enable-precise-memory-info']);
console.log(`Chromium ${browser.version()}, serving ${root} on ${base}`);

try {
  await demoVisit();
} catch (e) {
  check('demo page visit ran to the end', false, e.message.split('\n')[0]);
}
try {
  await widgetVisit();
} catch (e) {
  check('<clip-seg> visit ran to the end', false, e.message.split('\n')[0]);
}
await browser.close();
server.close();
fs.writeFileSync(`${outDir}/visit.json`, JSON.stringify(report, null, 1));

const failed = checks.filter((c) => !c.pass);
console.log(`\n${failed.length ? 'FAIL' : 'PASS'}: visit.mjs, ${checks.length - failed.length} of ${checks.length} checks (numbers: ${outDir}/visit.json)`);
process.exit(failed.length ? 1 : 0);

// ------------------------------------------------------------------ the demo page

async function demoVisit() {
  console.log(`\n== www/index.html: ${RUNS} runs, ${IMAGES.length} photos x ${PROMPT_SETS.length} prompt sets`);
  const { context, page, workers, problems } = await newPage();
  const index = { packs: PACKS.map((p) => ({ file: p.file.split('/').pop(), label: p.label, bytes: fs.statSync(p.file).size, untrained: true })) };
  await context.route(/\/models\/index\.json$/, (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify(index) }));
  await context.route(/\/models\/visit-[\w-]+\.bpk(\.sha256)?$/, (route) => route.fulfill({ path: `${outDir}/${route.request().url().split('/').pop()}` }));
  const packUrl = (k) => `../models/${PACKS[k].file.split('/').pop()}`;
  const demo = (fn, arg) => page.evaluate(fn, arg);
  const counts = () => demo(() => ({ loads: window.clipsegDemo.loads, segments: window.clipsegDemo.segments }));
  // Settled: no request queued or running, the status says how the last one ended.
  const settled = (after) => page.waitForFunction(({ loads, segments }) => {
    const d = window.clipsegDemo, status = document.getElementById('status').textContent;
    return d.loads >= loads && d.segments >= segments && !d.state.modelLoading && /^(done:|Model:|Segmenting:|The engine stopped)/.test(status);
  }, after);
  const failedStatus = async () => {
    const s = await page.textContent('#status');
    return /^(done:)/.test(s) ? '' : s;
  };

  await page.goto(`${base}/www/index.html?${new URLSearchParams({ backend: 'webgpu', test_hooks: '' })}`);
  await page.waitForFunction(() => /model ready|Model:/.test(document.getElementById('status').textContent));
  const config = { pack: 0, backend: 'webgpu' };
  const runs = [];
  let first = null, switches = { model: 0, backend: 0 };
  for (let r = 1; r <= RUNS + 1; r++) {
    // Run 101 repeats run 1's photo and prompts, at the same stage of the tour.
    const k = r <= RUNS ? r : 1, image = IMAGES[Math.floor((k - 1) / PROMPT_SETS.length) % IMAGES.length], prompts = PROMPT_SETS[(k - 1) % PROMPT_SETS.length];
    const [, pack, backend] = TOUR.findLast(([from]) => from <= ((k - 1) % 50) + 1);
    // Switches as a user makes them, backend first; each reloads and redoes the shown masks.
    for (const [what, value, select] of [['backend', backend, () => page.selectOption('#backend', backend)], ['model', pack, () => page.selectOption('#model', packUrl(pack))]]) {
      if (config[what === 'model' ? 'pack' : 'backend'] === value) continue;
      const before = await counts();
      await select();
      await settled({ loads: before.loads + 1, segments: before.segments + 1 });
      const bad = await failedStatus();
      if (bad) throw new Error(`run ${r}: switching the ${what}: ${bad}`);
      config[what === 'model' ? 'pack' : 'backend'] = value;
      switches[what]++;
    }
    const before = await counts();
    await page.fill('#prompts', prompts.join('\n'));
    const newImage = (await demo(() => window.clipsegDemo.state.image?.name)) !== image.name;
    if (newImage) await page.setInputFiles('#file', { name: image.name, mimeType: 'image/png', buffer: image.png });
    else await page.click('#segment');
    await settled({ loads: before.loads, segments: before.segments + 1 });
    const shown = await demo(() => ({ name: window.clipsegDemo.state.result?.image.name, prompts: window.clipsegDemo.state.result?.prompts }));
    const bad = (await failedStatus()) || (shown.name !== image.name || shown.prompts.join('\n') !== prompts.join('\n') ? `shows ${shown.name} "${shown.prompts}"` : '');
    if (bad) throw new Error(`run ${r} (${image.name}, ${PACKS[pack].label} on ${backend}): ${bad}`);
    const labels = await demo(async () => {
      const { labels } = await window.clipsegDemo.client.labels(0.5);
      let hash = 0, inside = 0;
      for (const v of labels) (hash = (Math.imul(hash, 31) + v) | 0), (inside += v !== 255);
      return { hash, inside, pixels: labels.length };
    });
    runs.push({ run: r, image: image.name, prompts: prompts.length, pack: PACKS[pack].label, backend, ...labels });
    if (r === 1) first = labels;
    if (SNAPSHOTS.includes(r)) {
      const s = await memory(page, () => window.clipsegDemo.client.stats());
      report[`demo run ${r}`] = s;
      console.log(`  run ${r} (${PACKS[pack].label} on ${backend}): wasm ${mb(s.wasmBytes)} (${mb(s.heapInUse)} in use), GPU buffers ${s.gpuBuffers} (${mb(s.gpuBufferBytes)}), JS heap ${mb(s.heap)}`);
    }
  }
  report.demoRuns = runs;
  const at = (r) => report[`demo run ${r}`], [last, before] = [RUNS, RUNS - 50], shown = [10, 50, 100, RUNS].filter((r, i, a) => a.indexOf(r) === i);
  const rounds = RUNS / 50;
  check(`${RUNS} runs + 1 segmented, each showing its photo and prompts`, runs.length === RUNS + 1, `${runs.length} runs`);
  check(`3 model and 2 backend switches per round of the tour, ${rounds} rounds`, switches.model === 3 * rounds && switches.backend === 2 * rounds, JSON.stringify(switches));
  check('one worker for the whole visit, no restart', workers.length === 1 && !problems.some((p) => /engine stopped/.test(p)), `${workers.length} workers`);
  check(`run ${RUNS + 1} (run 1 again) gives run 1's label map byte for byte`, runs.at(-1).hash === first.hash && runs.at(-1).inside === first.inside, `${first.inside} → ${runs.at(-1).inside} px inside`);
  check(`wasm heap in use: run ${last} holds what run ${before} held (bytes)`, at(last).heapInUse <= at(before).heapInUse, shown.map((r) => at(r).heapInUse).join(', '));
  check(`wasm memory: run ${last} within ${WASM_SLACK}x run 50's`, at(last).wasmBytes <= at(50).wasmBytes * WASM_SLACK, shown.map((r) => mb(at(r).wasmBytes)).join(', '));
  check(`GPU buffers: run ${last} holds what run ${before} held`, at(last).gpuBuffers <= at(before).gpuBuffers && at(last).gpuBufferBytes <= at(before).gpuBufferBytes,
    shown.map((r) => `${at(r).gpuBuffers} (${mb(at(r).gpuBufferBytes)})`).join(', '));
  check(`JS heap: run ${last} within ${HEAP_SLACK}x run ${before}'s`, at(last).heap <= at(before).heap * HEAP_SLACK, shown.map((r) => mb(at(r).heap)).join(', '));
  check('no errors in the console', problems.length === 0, problems.slice(0, 3).join(' | '));
  await context.close();
}

// ------------------------------------------------------------------ <clip-seg> elements

async function widgetVisit() {
  console.log(`\n== <clip-seg>: ${WIDGETS} elements added and removed, ${ROUNDS} rounds`);
  const { context, page, workers, problems } = await newPage();
  const html = '<!doctype html><meta charset="utf-8"><title>clip-seg visit</title><script type="module" src="/pkg/clip-seg.js"></script><div id="host"></div>';
  await context.route(/\/visit\/elements\.html$/, (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: html }));
  await context.route(/\/visit\/visit-\d+\.png$/, (route) => route.fulfill({ contentType: 'image/png', body: IMAGES.find((im) => route.request().url().endsWith(`/${im.name}`)).png }));
  await page.goto(`${base}/visit/elements.html`);
  await page.evaluate(() => customElements.whenDefined('clip-seg'));
  const model = `/${PACKS[0].file}`;
  let firstRound = null;
  const rounds = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const got = await page.evaluate(async ({ n, images, sets, model }) => {
      const host = document.getElementById('host'), events = { result: 0, error: 0, late: 0 };
      const els = Array.from({ length: n }, (_, i) => {
        const el = document.createElement('clip-seg');
        Object.entries({ src: `/visit/${images[i % images.length]}`, prompt: sets[i % sets.length].join(' | '), model, backend: 'cpu' }).forEach(([k, v]) => el.setAttribute(k, v));
        el.addEventListener('clipseg-result', () => (el.isConnected ? events.result++ : events.late++));
        el.addEventListener('clipseg-error', (e) => (events.error++, (el.lastError = e.detail.message)));
        host.append(el);
        return el;
      });
      // A third of them leave again while their requests wait.
      const staying = els.filter((el, i) => i % 3 !== 2 || (el.remove(), false));
      const t0 = performance.now();
      await new Promise((resolve) => {
        const poll = () => (staying.every((el) => el.result || el.lastError) ? resolve() : setTimeout(poll, 50));
        poll();
      });
      const ms = performance.now() - t0;
      const masks = staying.map((el) => {
        if (!el.result) return `error: ${el.lastError}`;
        let hash = 0;
        for (const m of el.result.masks) for (const v of m.data) hash = (Math.imul(hash, 31) + v) | 0;
        return `${el.getAttribute('src')} ${el.getAttribute('prompt')}: ${hash}`;
      });
      for (const el of staying) el.remove();
      // Events fired by a removed element after its removal would show up here.
      await new Promise((resolve) => setTimeout(resolve, 200));
      return { masks, events, ms, stats: { ...customElements.get('clip-seg').stats } };
    }, { n: WIDGETS, images: IMAGES.map((im) => im.name), sets: PROMPT_SETS, model });
    const s = await memory(page, () => customElements.get('clip-seg').engineStats());
    rounds.push({ round, ...s, ms: got.ms, events: got.events, stats: got.stats, errors: got.masks.filter((m) => m.startsWith('error')) });
    console.log(`  round ${round}: ${got.events.result} results in ${(got.ms / 1000).toFixed(1)} s, wasm ${mb(s.wasmBytes)} (${mb(s.heapInUse)} in use), JS heap ${mb(s.heap)}, ${JSON.stringify(got.stats)}`);
    if (round === 1) firstRound = got.masks;
    else check(`round ${round}: the same masks as round 1`, JSON.stringify(got.masks) === JSON.stringify(firstRound), got.masks.filter((m, i) => m !== firstRound[i]).slice(0, 2).join(' | '));
    const staying = WIDGETS - Math.floor(WIDGETS / 3);
    check(`round ${round}: ${staying} elements rendered, no errors, nothing from the removed ones`, got.events.result === staying && !got.events.error && !got.events.late, JSON.stringify(got.events));
  }
  report.widgetRounds = rounds;
  const [second, last] = [rounds[1], rounds.at(-1)];
  check('one worker and one model load for every round', workers.length === 1 && last.stats.loads === 1, `${workers.length} workers, ${last.stats.loads} loads`);
  check(`wasm heap in use: round ${ROUNDS} holds what round 2 held`, last.heapInUse <= second.heapInUse, rounds.map((r) => r.heapInUse).join(', '));
  check(`wasm memory: round ${ROUNDS} within ${WASM_SLACK}x round 2's`, last.wasmBytes <= second.wasmBytes * WASM_SLACK, rounds.map((r) => mb(r.wasmBytes)).join(', '));
  check(`JS heap: round ${ROUNDS} within ${HEAP_SLACK}x round 2's`, last.heap <= second.heap * HEAP_SLACK, rounds.map((r) => mb(r.heap)).join(', '));
  check('no errors in the console', problems.length === 0, problems.slice(0, 3).join(' | '));
  await context.close();
}

// ------------------------------------------------------------------ helpers

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(3 * 60_000);
  const workers = [], problems = [];
  page.on('worker', (w) => workers.push(w.url()));
  page.on('console', (m) => {
    if (m.type() === 'error' || (m.type() === 'warning' && !/willReadFrequently/.test(m.text()))) problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('crash', () => problems.push('page crashed'));
  return { context, page, workers, problems };
}

// The engine's stats (`engineStats` runs in the page) and the page's JS heap after a
// garbage collection.
async function memory(page, engineStats) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.detach();
  const { ms, ...engine } = await page.evaluate(engineStats);
  return { ...engine, heap: await page.evaluate(() => performance.memory.usedJSHeapSize) };
}

// A photo-like test image: a gradient sky over ground, a red circle and a blue square placed
// by the seed.
function photo(width, height, seed) {
  const rgb = new Uint8Array(width * height * 3);
  let s = seed * 2654435761 + 1;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const [cx, cy, r] = [rand() * width, rand() * height, (0.1 + 0.2 * rand()) * Math.min(width, height)];
  const [sx, sy, side] = [rand() * width * 0.7, rand() * height * 0.7, (0.1 + 0.2 * rand()) * Math.min(width, height)];
  const horizon = (0.3 + 0.4 * rand()) * height;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      let c = y < horizon ? [90 + (80 * y) / height, 140 + (60 * y) / height, 230] : [70 + ((x * 13) % 40), 120, 50 + ((y * 7) % 30)];
      if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) c = [220, 40, 30];
      if (x >= sx && x < sx + side && y >= sy && y < sy + side) c = [30, 60, 210];
      rgb.set(c, (y * width + x) * 3);
    }
  return encodePng(width, height, rgb);
}

function mb(bytes) {
  return bytes === undefined ? '?' : `${(bytes / 1e6).toFixed(2)} MB`;
}

// onnxruntime-web in headless Chromium, for bench/onnx.sh:
//   node bench/ort_web.mjs ONNX_DIR IMAGE [--configs wasm:q8,wasm:fp32,webgpu:fp32] [--iters N]
//        [--webgpu-iters N] [--timeout-min M] [--out FILE]
// ONNX_DIR holds model.onnx, model-q8.onnx (bench/onnx_export.py) and inputs/ (bench/ort_bench.py:
// the HF processor's pixel_values / input_ids / attention_mask and PyTorch's reference logits).
// The page (bench/ort.html) feeds those precomputed tensors: its pass times are session.run plus
// reading the logits back, WITHOUT preprocessing; it also times a canvas resize + normalize of the
// same image (preprocess_ms) so a full pass can be estimated. One page per config, one after the
// other, in one Chromium (flags as tests/e2e/harness.mjs); no COOP/COEP, so wasm runs on 1 thread.
// Prints one line per config and writes the JSON to --out (default stdout only).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumArgs, launchChromium, serve } from '../tests/e2e/harness.mjs';

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const argv = process.argv.slice(2);
const opts = { configs: 'wasm:q8,wasm:fp32,webgpu:fp32', iters: 3, webgpuIters: 1, timeoutMin: 10, out: null };
const pos = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => argv[++i];
  if (a === '--configs') opts.configs = val();
  else if (a === '--iters') opts.iters = Number(val());
  else if (a === '--webgpu-iters') opts.webgpuIters = Number(val());
  else if (a === '--timeout-min') opts.timeoutMin = Number(val());
  else if (a === '--out') opts.out = path.resolve(val());
  else pos.push(a);
}
if (pos.length !== 2) {
  console.log('usage: node bench/ort_web.mjs ONNX_DIR IMAGE [--configs ep:precision,...] [--iters N] [--webgpu-iters N] [--timeout-min M] [--out FILE]');
  process.exit(1);
}
const onnxDir = path.resolve(pos[0]);
const image = path.resolve(pos[1]);
const ortDist = path.join(root, 'bench/node_modules/onnxruntime-web/dist');
if (!fs.existsSync(ortDist)) {
  console.log(`missing ${ortDist}: run (cd bench && npm ci)`);
  process.exit(1);
}
const ortPkg = JSON.parse(fs.readFileSync(path.join(root, 'bench/node_modules/onnxruntime-web/package.json'), 'utf8'));

// Site: ort.html, the onnxruntime-web dist, the models and the inputs (links).
const site = path.join(onnxDir, 'site');
fs.rmSync(site, { recursive: true, force: true });
fs.mkdirSync(path.join(site, 'data'), { recursive: true });
fs.copyFileSync(path.join(root, 'bench/ort.html'), path.join(site, 'ort.html'));
fs.symlinkSync(ortDist, path.join(site, 'ort'));
for (const f of ['model.onnx', 'model-q8.onnx', 'inputs']) fs.symlinkSync(path.join(onnxDir, f), path.join(site, 'data', f));
const imageName = `image${path.extname(image).toLowerCase()}`;
fs.symlinkSync(image, path.join(site, 'data', imageName));

const fetched = new Set();
const server = await serve(site, (m) => console.log(m));
server.on('request', (req) => fetched.add(req.url.split('?')[0]));
const base = `http://127.0.0.1:${server.address().port}`;
const args = chromiumArgs();
const browser = await launchChromium(args);
const results = { onnxruntime_web: ortPkg.version, chromium: browser.version(), chromium_args: args, iters: opts.iters, webgpu_iters: opts.webgpuIters, runtimes: {} };
console.log(`onnxruntime-web ${ortPkg.version} in Chromium ${results.chromium}`);

for (const config of opts.configs.split(',').filter(Boolean)) {
  const [ep, precision] = config.split(':');
  const iters = ep === 'webgpu' ? opts.webgpuIters : opts.iters;
  const model = precision === 'q8' ? 'model-q8.onnx' : 'model.onnx';
  const key = `ortweb-${ep}-${precision}`;
  const page = await browser.newPage();
  page.on('console', (m) => ['error', 'warning'].includes(m.type()) && console.log(`  [${key}] console.${m.type()}: ${m.text().slice(0, 300)}`));
  page.on('pageerror', (e) => console.log(`  [${key}] page error: ${e.message}`));
  const q = new URLSearchParams({ ep, model: `/data/${model}`, iters: String(iters), image: `/data/${imageName}` });
  const t0 = Date.now();
  const budget = opts.timeoutMin * 60_000;
  fetched.clear();
  let s = {};
  let lastStage = '';
  try {
    await page.goto(`${base}/ort.html?${q}`, { timeout: 60_000 });
    for (;;) {
      s = (await page.evaluate(() => window.__ort)) ?? {};
      if (s.stage !== lastStage) console.log(`  [${key}] ${(lastStage = s.stage)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      if (s.done) break;
      if (Date.now() - t0 > budget) {
        s.timed_out_in = s.stage;
        console.log(`  [${key}] TIMED OUT in "${s.stage}" after ${opts.timeoutMin} min`);
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  } catch (e) {
    s.error = `driver: ${e.message.split('\n')[0]}`;
  }
  await Promise.race([page.close(), new Promise((r) => setTimeout(r, 30_000))]);
  const sec = (ms) => (ms === undefined ? undefined : ms / 1000);
  const passes = s.passes_ms ?? [];
  const med = passes.length ? [...passes].sort((a, b) => a - b)[passes.length >> 1] : undefined;
  const r = {
    engine: 'onnxruntime-web', ep, precision, threads: 1, model, adapter: s.adapter, ort_version: s.ort_version,
    cross_origin_isolated: s.cross_origin_isolated, wasm_files: [...fetched].filter((u) => u.endsWith('.wasm')),
    load_s: sec(s.load_ms), fetch_s: sec(s.fetch_ms), create_s: sec(s.create_ms),
    first_pass_s: sec(s.first_ms), session_run_s: sec(med), passes_s: passes.map(sec), passes_done: passes.length,
    preprocess_s: sec(s.preprocess_ms),
    // full pass = session.run (+ readback) on precomputed inputs + the page's canvas preprocessing
    full_pass_s: med !== undefined && s.preprocess_ms !== undefined ? sec(med + s.preprocess_ms) : sec(med),
    mask_iou_vs_torch: s.mask_iou_vs_torch, max_abs_diff_vs_torch: s.max_abs_diff_vs_torch, mask_fraction: s.mask_fraction, finite: s.finite,
    error: s.error, timed_out_in: s.timed_out_in, wall_s: (Date.now() - t0) / 1000,
  };
  r.reprompt_s = r.full_pass_s; // one monolithic graph: a new prompt is a full pass
  results.runtimes[key] = r;
  const f = (v) => (v === undefined ? '-' : `${v.toFixed(3)} s`);
  console.log(`  ${key}: load ${f(r.load_s)}, first pass ${f(r.first_pass_s)}, session.run ${f(r.session_run_s)} (${passes.length}/${iters}) + preprocess ${f(r.preprocess_s)}, IoU vs torch ${r.mask_iou_vs_torch?.toFixed(4) ?? '-'}${r.error ? `, error: ${r.error}` : ''}${r.timed_out_in ? `, timed out in ${r.timed_out_in}` : ''}`);
}
await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 30_000))]);
server.close();
if (opts.out) fs.writeFileSync(opts.out, `${JSON.stringify(results, null, 1)}\n`);
process.exit(0);

// Browser end-to-end test (run by tools/e2e.sh): the native CLI converts the refined fixture
// model to a q8 pack and predicts reference logits and masks; headless Chromium then runs
// www/e2e.html on the same pack and image with backend=webgpu, auto (WebGPU, or the CPU on a
// software fallback adapter), webgpu with q8 on the integer dot product (?gpu_int8=dot4), cpu
// (the relaxed-SIMD build Chromium validates) and cpu with the simd128 build (?wasm=simd128),
// the last on a JPEG with an EXIF orientation (the browser and the CLI both turn it).
// The engine's logits are compared with the native ones as
// probabilities, and its full-size masks at 0.5 with the CLI's --mask PNGs: WebGPU's with the
// native f32 run of the dequantized weights (the same float model), CPU's with the native
// `--precision int8` run for the simd128 build and `--precision int8-a7` (7-bit activations)
// for the relaxed-SIMD one (the same integers as the wasm int8 kernels, attention in f32 as in
// wasm; a q8 pack's native default also runs attention in bf16 where the CPU can); WebGPU's
// dot4 run against `--backend wgpu` with CLIPSEG_GPU_INT8=dot4 (the same WGSL kernels natively,
// on lavapipe). Writes
// target/e2e/report.json and target/e2e/e2e-<backend>.png; exits 1 on failure.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromiumArgs, cli, cliBinary, decodePng, fail, launchChromium, readNpy as readNpyOrThrow, serve } from './harness.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const bin = cliBinary(root);
const outDir = 'target/e2e';
const pack = `${outDir}/refined-q8.bpk`;
const image = 'tests/fixtures/images/landscape.png';
// The last run's image: a phone photo turned by its EXIF orientation (6: a quarter turn), which
// the browser and the CLI must both apply.
const orientedImage = 'tests/fixtures/formats/orient-6.jpg';
const prompts = ['a photo of a cat', 'a dog'];
const PAGE_TIMEOUT_MS = 8 * 60_000; // SwiftShader is slow on big models
const MIN_IOU = 0.99;
// Each bad input www/e2e.js tries, and what its message must say.
const BAD_INPUTS = {
  corrupted_pack: 'checksum mismatch',
  truncated_pack: 'truncated',
  other_version_pack: 'format version 99',
  empty_image: 'at least 1',
  huge_image: 'the limit is',
  huge_image_client: 'the limit is',
  too_many_prompts: 'the limit is',
  empty_prompt: 'is empty',
  threshold_2: 'the threshold must be within 0..=1',
  segment_threshold_2: 'the threshold must be within 0..=1',
  mask_index_out_of_range: 'there is no prompt',
};
// Same backend, same inputs: batched vs alone and before vs after a bad input.
const MAX_SELF_DIFF = 1e-4;

// Whatever happens (a hung browser, a stuck CLI), never run longer than this.
setTimeout(() => {
  console.log('FAIL: hard timeout, giving up');
  process.exit(2);
}, 2 * PAGE_TIMEOUT_MS + 4 * 60_000).unref();

process.chdir(root);
fs.mkdirSync(outDir, { recursive: true });
for (const f of ['pkg/clipseg.js', 'pkg/clipseg_bg.wasm', 'pkg/clipseg_relaxed.js', 'pkg/clipseg_relaxed_bg.wasm'])
  if (!fs.existsSync(f)) fail(`${f} missing: build the wasm package into pkg/ first`);
if (!fs.existsSync(bin.path)) fail(`${bin.path} missing: cargo build --features native (or set CLIPSEG_BIN)`);

// Native reference.
cli(bin, 'convert', '--model', 'tests/fixtures/models/refined', '--out', pack, '--quant', 'q8');
const digest = createHash('sha256').update(fs.readFileSync(pack)).digest('hex');
const recorded = fs.readFileSync(`${pack}.sha256`, 'utf8').split(/\s+/)[0];
if (recorded !== digest) fail(`${pack}.sha256 says ${recorded}, the file hashes to ${digest}`);
// Per precision: {logits: .npy, masks: the PNGs at 0.5, one per prompt}.
const references = {};
for (const [key, precision, img] of [['f32', 'f32', image], ['int8', 'int8', image], ['int8-a7', 'int8-a7', image], ['int8-oriented', 'int8', orientedImage]]) {
  const out = `${outDir}/native-${key}`;
  cli(bin, 'predict', '--model', pack, '--image', img, ...prompts.flatMap((p) => ['--prompt', p]), '--precision', precision,
    '--logits', `${out}.npy`, '--mask', `${out}.png`);
  const logits = readNpy(`${out}.npy`);
  if (logits.shape.length !== 3 || logits.shape[0] !== prompts.length || logits.shape[1] !== logits.shape[2])
    fail(`native logits have shape [${logits.shape}], expected [${prompts.length}, S, S]`);
  const masks = prompts.map((_, k) => decodePng(fs.readFileSync(`${out}-${k}.png`)));
  references[key] = { logits, masks };
}
{
  const out = `${outDir}/native-wgpu-dot4`;
  process.env.CLIPSEG_GPU_INT8 = 'dot4';
  cli(bin, 'predict', '--model', pack, '--image', image, ...prompts.flatMap((p) => ['--prompt', p]), '--backend', 'wgpu',
    '--logits', `${out}.npy`, '--mask', `${out}.png`);
  delete process.env.CLIPSEG_GPU_INT8;
  references['wgpu-dot4'] = { logits: readNpy(`${out}.npy`), masks: prompts.map((_, k) => decodePng(fs.readFileSync(`${out}-${k}.png`))) };
}
const size = references.f32.logits.shape[1];

const server = await serve(root);
const base = `http://127.0.0.1:${server.address().port}`;
const args = chromiumArgs();
const browser = await launchChromium(args);
const report = { chromium: browser.version(), args, pack, digest, image, orientedImage, prompts, runs: {} };
console.log(`Chromium ${report.chromium}, serving ${root} on ${base}`);

// auto after webgpu: it must pick WebGPU unless the adapter the webgpu run got is a software
// fallback (SwiftShader on machines without a GPU), where it must take the CPU and say why.
let fallbackAdapter = false;
for (const run_ of ['webgpu', 'auto', 'webgpu:dot4', 'cpu', 'cpu:simd128']) {
  const [backend, variant] = run_.split(':');
  const wasm = backend === 'cpu' ? variant ?? 'auto' : 'auto';
  const gpuInt8 = backend === 'webgpu' ? variant ?? 'auto' : 'auto';
  const expected = backend === 'auto' ? (fallbackAdapter ? 'cpu' : 'webgpu') : backend;
  const run = (report.runs[run_] = { checks: [] });
  const check = (name, pass, detail = '') => run.checks.push({ name, pass: !!pass, detail: String(detail) });
  const page = await browser.newPage();
  const cspErrors = []; // also those before e2e.js could listen for securitypolicyviolation
  page.on('console', (m) => {
    if (/Content Security Policy/.test(m.text())) cspErrors.push(m.text());
    if (['error', 'warning'].includes(m.type())) console.log(`  [${run_}] console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`  [${run_}] page error: ${e.message}`));
  page.on('crash', () => console.log(`  [${run_}] page crashed`));
  const oriented = run_ === 'cpu:simd128';
  const query = new URLSearchParams({ pack: `/${pack}`, image: `/${oriented ? orientedImage : image}`, prompts: prompts.join('|'), backend, wasm, gpu_int8: gpuInt8 });
  let r;
  try {
    await page.goto(`${base}/www/e2e.html?${query}`);
    // e2e.js sets window.__e2e first thing: fail fast when the module does not even run.
    await page.waitForFunction(() => window.__e2e, null, { timeout: 30_000 });
    await page.waitForFunction(() => window.__e2e.done, null, { timeout: PAGE_TIMEOUT_MS, polling: 250 });
    r = await page.evaluate(() => window.__e2e);
  } catch (e) {
    r = { error: `page did not finish: ${e.message.split('\n')[0]}`, ...(await page.evaluate(() => window.__e2e).catch(() => ({}))) };
  }
  await page.screenshot({ path: `${outDir}/e2e-${run_.replace(":", "-")}.png`, fullPage: true }).catch(() => {});
  await page.close();

  const { logits, masks, ...rest } = r;
  Object.assign(run, rest);
  check('page finished without error', !r.error, r.error ?? '');
  check(`backend is ${expected}`, r.backend === expected, `${r.backend} (adapter "${r.adapter ?? ''}", reason "${r.reason ?? ''}")`);
  // Chromium has relaxed SIMD: the worker picks that build unless told otherwise.
  const build = wasm === 'auto' ? 'relaxed-simd' : wasm;
  check(`wasm build is ${build}`, r.wasm === build, r.wasm);
  // The relaxed-SIMD build's kernels take 7-bit activations, the simd128 build's 8-bit ones.
  const sevenBit = build === 'relaxed-simd';
  if (expected === 'cpu')
    check(`the int8 kernel takes ${sevenBit ? 7 : 8}-bit activations`, typeof r.int8_kernel === 'string' && r.int8_kernel.includes('7-bit') === sevenBit, r.int8_kernel);
  if (backend === 'webgpu') fallbackAdapter = /fallback adapter/.test(r.adapter ?? '');
  if (backend === 'auto' && fallbackAdapter) check('auto says why it left a fallback adapter', /software renderer/.test(r.reason ?? ''), r.reason ?? '');
  const csp = [...(r.csp ?? []), ...cspErrors];
  check('no CSP violations', csp.length === 0, csp.join('; '));
  // q8 on WebGPU's integer dot product where asked for, else (SwiftShader) decoded to f32.
  const dot4 = gpuInt8 === 'dot4' || (expected === 'webgpu' && !/swiftshader/i.test(r.adapter ?? ''));
  if (expected === 'webgpu') check(`q8 ${dot4 ? 'on the integer dot product' : 'decoded to f32'}`, r.gpu_int8_dot === dot4, r.gpu_int8_dot);
  const reference = references[expected === 'webgpu' ? (dot4 ? 'wgpu-dot4' : 'f32') : sevenBit ? 'int8-a7' : oriented ? 'int8-oriented' : 'int8'];
  if (logits) {
    const raw = decodeBase64(logits, Float32Array);
    const want = reference.logits.data.map(sigmoid), got = raw.map(sigmoid);
    check(`size ${size}, ${want.length} logits`, r.size === size && got.length === want.length, `size ${r.size}, ${got.length}`);
    check('logits finite', raw.every(Number.isFinite), '');
    run.compare = prompts.map((prompt, i) => compare(prompt, got.subarray(i * size * size, (i + 1) * size * size), want.subarray(i * size * size, (i + 1) * size * size)));
    for (const c of run.compare)
      check(`IoU >= ${MIN_IOU} "${c.prompt}"`, c.iou >= MIN_IOU, `IoU ${c.iou.toFixed(5)}, |p - native| mean ${c.mean_abs.toExponential(2)} max ${c.max_abs.toExponential(2)}`);
    check('prompt alone = prompt in batch', r.reprompt_max_diff <= MAX_SELF_DIFF, `max diff ${r.reprompt_max_diff}`);
  }
  if (masks) {
    const { width, height } = reference.masks[0];
    check(`full-size masks are ${width}x${height}`, masks.width === width && masks.height === height, `${masks.width}x${masks.height}`);
    run.mask_iou = masks.data.map((m, k) => maskIou(decodeBase64(m, Uint8Array), reference.masks[k]));
    for (const [k, iou] of run.mask_iou.entries())
      check(`mask(${k}, 0.5) = CLI's --mask "${prompts[k]}": IoU >= ${MIN_IOU}`, iou >= MIN_IOU, `IoU ${iou.toFixed(5)}`);
  }
  for (const [name, needle] of Object.entries(BAD_INPUTS)) {
    const b = r.bad?.[name];
    if (!b) {
      if (!r.error) check(`bad input ${name}: ran`, false, 'missing from the page result');
      continue;
    }
    check(`bad input ${name}: rejected, not fatal`, b.error?.includes(needle) && !b.fatal, b.error || 'NOT REJECTED');
    check(`bad input ${name}: the engine's maps kept`, !b.kept_error && b.kept_max_diff === 0, b.kept_error ?? `max diff ${b.kept_max_diff}`);
    check(`bad input ${name}: worker usable after`, !b.after_error && b.after_max_diff <= MAX_SELF_DIFF, b.after_error ?? `max diff ${b.after_max_diff}`);
  }
  run.pass = run.checks.every((c) => c.pass);
}

await browser.close();
server.close();

report.pass = Object.values(report.runs).every((r) => r.pass);
fs.writeFileSync(`${outDir}/report.json`, `${JSON.stringify(report, null, 2)}\n`);
for (const [backend, run] of Object.entries(report.runs)) {
  console.log(`\n== backend=${backend}: ${run.pass ? 'PASS' : 'FAIL'}`);
  if (run.timings) {
    const t = run.timings;
    console.log(`  timings: load ${ms(t.load_ms)}, encode ${ms(t.encode_ms)}, segment ${prompts.length} prompts ${ms(t.segment_ms[0])}, alone ${t.segment_ms.slice(1).map(ms).join(', ')}`);
  }
  for (const c of run.checks) console.log(`  ${c.pass ? 'ok  ' : 'FAIL'} ${c.name}${c.detail ? `: ${c.detail}` : ''}`);
}
console.log(`\n${report.pass ? 'PASS' : 'FAIL'} (report: ${outDir}/report.json, screenshots: ${outDir}/e2e-*.png)`);
process.exit(report.pass ? 0 : 1);


// float32 little-endian C-order .npy → {shape, data}
function readNpy(file) {
  try {
    return readNpyOrThrow(file);
  } catch (e) {
    fail(e.message);
  }
}

function sigmoid(l) {
  return 1 / (1 + Math.exp(-l));
}

function decodeBase64(text, Type) {
  const bytes = Buffer.from(text, 'base64');
  return new Type(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

// IoU of a mask (bytes, non-zero inside) and a decoded PNG (first channel > 127 inside); 1 when
// both are empty, 0 when their sizes differ.
function maskIou(got, png) {
  if (got.length !== png.width * png.height) return 0;
  let inter = 0, union = 0;
  for (let i = 0; i < got.length; i++) {
    const a = got[i] > 0, b = png.data[i * png.channels] > 127;
    inter += a && b;
    union += a || b;
  }
  return union ? inter / union : 1;
}

// IoU of the masks at 0.5 (1 when both are empty) and absolute probability differences.
function compare(prompt, got, want) {
  let inter = 0, union = 0, sum = 0, max = 0;
  for (let i = 0; i < want.length; i++) {
    const a = got[i] > 0.5, b = want[i] > 0.5;
    inter += a && b;
    union += a || b;
    const d = Math.abs(got[i] - want[i]);
    sum += d;
    max = Math.max(max, Number.isNaN(d) ? Infinity : d);
  }
  return { prompt, iou: union ? inter / union : 1, mean_abs: sum / want.length, max_abs: max };
}

function ms(v) {
  return v === undefined ? '?' : `${v.toFixed(0)} ms`;
}

// End-to-end test of the npm package (pkg/) as a documentation site would use it, run by
// tools/e2e.sh after page.mjs. `npm pack` of pkg/ is installed into a temporary folder outside
// the repository; a plain HTML page there imports it as an ES module (an import map names the
// package) and renders a <clip-seg> whose model is a split pack (`clipseg convert --split`) on a
// second origin that sends CORS headers. Checks: the element's events (progress, ready, result,
// bubbling to the document), its masks equal the CLI's (IoU >= 0.99) for the same pack, image
// and prompts; a model origin without CORS gives the CORS message (caption and clipseg-error);
// split loading in the page: a corrupt part, a missing part and a manifest naming a wrong size
// are refused by name, and a download broken off after some parts fetches only the rest on the
// next load. Exits 1 on a failed check, 2 on the hard timeout.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli, cliBinary, decodePng, fail, launchChromium, serve } from './harness.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const bin = cliBinary(root);
const outDir = 'target/e2e';
const models = `${outDir}/split-models`;
const image = 'tests/fixtures/images/landscape.png';
const prompts = ['a photo of a cat', 'a dog'];
const MIN_IOU = 0.99;
const STEP_MS = 3 * 60_000;

setTimeout(() => {
  console.log('FAIL: hard timeout (package.mjs), giving up');
  process.exit(2);
}, 10 * 60_000).unref();

process.chdir(root);
for (const f of ['pkg/clipseg.js', 'pkg/clipseg_bg.wasm', 'pkg/clipseg_relaxed.js', 'pkg/clipseg_relaxed_bg.wasm'])
  if (!fs.existsSync(f)) fail(`${f} missing: build the wasm package into pkg/ first`);

// The split pack (parts of 100 kB: a dozen) and the CLI's masks: the element runs on the CPU,
// in the relaxed-SIMD build Chromium validates, i.e. the CLI's 7-bit-activation int8 path.
fs.rmSync(models, { recursive: true, force: true });
fs.mkdirSync(models, { recursive: true });
cli(bin, 'convert', '--model', 'tests/fixtures/models/refined', '--out', `${models}/refined-q8.bpk`, '--quant', 'q8', '--split', '100kB');
const manifest = JSON.parse(fs.readFileSync(`${models}/refined-q8.bpk.json`, 'utf8'));
cli(bin, 'predict', '--model', `${models}/refined-q8.bpk.json`, '--image', image, ...prompts.flatMap((p) => ['--prompt', p]),
  '--precision', 'int8-a7', '--mask', `${outDir}/package-cli.png`);
const cliMasks = prompts.map((_, k) => decodePng(fs.readFileSync(`${outDir}/package-cli-${k}.png`)));

// The package, packed and installed where the repository is out of reach.
const site = fs.mkdtempSync(path.join(os.tmpdir(), 'clipseg-site-'));
const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, stdio: ['ignore', 'pipe', 'inherit'] }).toString();
const tarball = npm(['pack', '--pack-destination', site, path.join(root, 'pkg')], site).trim().split('\n').pop();
fs.writeFileSync(`${site}/package.json`, JSON.stringify({ private: true, dependencies: { 'clipseg-web': `file:./${tarball}` } }));
npm(['install', '--offline'], site);
const packed = fs.readdirSync(`${site}/node_modules/clipseg-web`).sort();
console.log(`installed ${tarball} into ${site}: ${packed.join(' ')}`);
fs.copyFileSync(image, `${site}/landscape.png`);

const checks = [];
const check = (name, pass, detail = '') => {
  checks.push({ name, pass: !!pass });
  console.log(`  ${pass ? 'ok  ' : 'FAIL'} ${name}${detail === '' ? '' : `: ${detail}`}`);
};
check('the package holds its files, no more', ['clip-seg.d.ts', 'clip-seg.js', 'clipseg-client.d.ts', 'clipseg-client.js', 'clipseg.js', 'clipseg_bg.wasm', 'worker.js', 'pack-cache.js'].every((f) => packed.includes(f)) && !packed.some((f) => f.endsWith('.tgz')), packed.join(' '));

const quiet = () => {};
const siteServer = await serve(fs.realpathSync(site), quiet);
const corsServer = await serve(path.resolve(models), quiet, { 'access-control-allow-origin': '*' });
const plainServer = await serve(path.resolve(models), quiet);
const origin = (s) => `http://127.0.0.1:${s.address().port}`;
const siteUrl = origin(siteServer);
const corsModel = `${origin(corsServer)}/refined-q8.bpk.json`;
const plainModel = `${origin(plainServer)}/refined-q8.bpk.json`;

// The embedding page: the package by name through an import map, every element event recorded
// at the document (they bubble out of the shadow root).
const RECORD = `import 'clipseg-web/element';
window.__events = [];
for (const type of ['clipseg-progress', 'clipseg-ready', 'clipseg-result', 'clipseg-error'])
  document.addEventListener(type, (e) => window.__events.push({ type, detail: type === 'clipseg-result'
    ? { ...e.detail, masks: e.detail.masks.map((m) => ({ ...m, data: Array.from(m.data), isBytes: m.data instanceof Uint8Array })) }
    : e.detail }));`;
const ELEMENT = (model) => `<clip-seg backend="cpu" src="landscape.png" prompt="${prompts.join(' | ')}" model="${model}"></clip-seg>`;
const PAGE = (model) => `<!doctype html><meta charset="utf-8"><title>docs page</title>
<script type="importmap">{"imports": {"clipseg-web": "./node_modules/clipseg-web/clipseg-client.js", "clipseg-web/element": "./node_modules/clipseg-web/clip-seg.js"}}</script>
<script type="module">${RECORD}</script>
${ELEMENT(model)}`;
fs.writeFileSync(`${site}/cors.html`, PAGE(corsModel));
fs.writeFileSync(`${site}/no-cors.html`, PAGE(plainModel));

// The same page bundled by vite (its own origin; vite copies the worker and the wasm it finds
// through `new URL(..., import.meta.url)`).
const app = `${site}/app`;
fs.mkdirSync(`${app}/public`, { recursive: true });
fs.copyFileSync(image, `${app}/public/landscape.png`);
fs.writeFileSync(`${app}/main.js`, RECORD);
fs.writeFileSync(`${app}/index.html`, `<!doctype html><meta charset="utf-8"><title>bundled docs page</title>
<script type="module" src="./main.js"></script>
${ELEMENT(corsModel)}`);
const { build } = await import('vite');
await build({ root: app, logLevel: 'warn', worker: { format: 'es' }, build: { outDir: `${app}/dist`, emptyOutDir: true } });
const bundled = fs.readdirSync(`${app}/dist/assets`);
console.log(`vite bundle: ${bundled.join(' ')}`);
const appServer = await serve(fs.realpathSync(`${app}/dist`), quiet);

// The declarations, type-checked as a TypeScript user's code would use them.
fs.writeFileSync(`${site}/tsconfig.json`, JSON.stringify({ compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom', 'dom.iterable'], skipLibCheck: false }, files: ['use.ts'] }));
fs.writeFileSync(`${site}/use.ts`, `import { ClipSegClient, decodeImage, checkImageSize, type LoadResult } from 'clipseg-web';
import type { ClipSeg, ClipSegMask } from 'clipseg-web/element';
import 'clipseg-web/element';
const element: ClipSeg = document.querySelector('clip-seg')!;
element.addEventListener('clipseg-result', (e) => {
  const masks: ClipSegMask[] = e.detail.masks;
  const inside: number = masks[0].data.filter((v) => v === 255).length;
  const ms: number | null = e.detail.segmentMs;
  console.log(inside, ms, masks[0].width * masks[0].height, e.detail.prompts.join());
});
document.addEventListener('clipseg-progress', (e) => console.log(e.detail.loaded / e.detail.total));
element.addEventListener('clipseg-error', (e) => console.log(e.detail.message.length));
const client = new ClipSegClient({ wasm: 'auto', gpuInt8: 'off' });
const loading: Promise<LoadResult> = client.load('models/clipseg-q8.bpk.json', { backend: 'cpu', onProgress: (a, b) => console.log(a / b) });
loading.then(async (r) => {
  const limits = r.limits.max_side + (r.gpuWeightBytes ?? 0);
  await client.encode(await decodeImage(new Blob()));
  const { labels } = await client.segment(['a cat'], { threshold: 0.5 });
  const { mask } = await client.mask(0, 0.5);
  console.log(limits, labels.length, mask.length, checkImageSize(1, 1, client.limits));
});
// @ts-expect-error: not a backend
client.load('x.bpk', { backend: 'gpu' });
// @ts-expect-error: masks are read-only results, not a method
element.result?.masks();
`);
fs.writeFileSync(`${site}/idle.html`, '<!doctype html><title>nothing loads here</title>');

const browser = await launchChromium();
console.log(`Chromium ${browser.version()}; site ${siteUrl}, models ${origin(corsServer)} (CORS) and ${origin(plainServer)} (no CORS)`);
try {
  execFileSync(process.execPath, [fileURLToPath(new URL('node_modules/typescript/bin/tsc', import.meta.url)), '-p', site], { stdio: 'pipe' });
  check('the TypeScript declarations type-check a user\'s code (tsc --strict)', true);
} catch (e) {
  check('the TypeScript declarations type-check a user\'s code (tsc --strict)', false, e.stdout?.toString().trim() || e.message);
}
const elementPages = [['element', () => elementPage(`${siteUrl}/cors.html`, 'the package in a plain page')], ['vite bundle', () => elementPage(`${origin(appServer)}/index.html`, 'the package bundled by vite')]];
for (const [name, fn] of [...elementPages, ['no CORS', noCorsPage], ['split loading', splitLoading]]) {
  try {
    await fn();
  } catch (e) {
    check(`${name} ran to the end`, false, e.message.split('\n')[0]);
  }
}
await browser.close();
for (const s of [siteServer, corsServer, plainServer, appServer]) s.close();
fs.rmSync(site, { recursive: true, force: true });

const failed = checks.filter((c) => !c.pass);
console.log(`\n${failed.length ? 'FAIL' : 'PASS'}: package.mjs, ${checks.length - failed.length} of ${checks.length} checks`);
process.exit(failed.length ? 1 : 0);

async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (e) => console.log(`  page error: ${e.message}`));
  const requests = [];
  context.on('request', (r) => requests.push(r.url()));
  return { context, page, requests };
}

async function elementPage(url, label) {
  console.log(`\n== ${label}, the split pack from another origin`);
  const { context, page, requests } = await newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.__events?.some((e) => e.type === 'clipseg-result' || e.type === 'clipseg-error'));
  const events = await page.evaluate(() => window.__events);
  const types = [...new Set(events.map((e) => e.type))];
  const error = events.find((e) => e.type === 'clipseg-error');
  check('no clipseg-error', !error, error?.detail.message ?? '');
  const progress = events.filter((e) => e.type === 'clipseg-progress');
  const last = progress.at(-1)?.detail;
  check('clipseg-progress up to the whole pack', last && last.total === manifest.size && last.loaded === manifest.size && last.model === corsModel, `${progress.length} events, last ${JSON.stringify(last)}`);
  const ready = events.find((e) => e.type === 'clipseg-ready')?.detail;
  check('clipseg-ready before clipseg-result, on the CPU', ready?.backend === 'cpu' && types.indexOf('clipseg-ready') < types.indexOf('clipseg-result'), JSON.stringify(ready));
  const result = events.find((e) => e.type === 'clipseg-result')?.detail;
  check('clipseg-result: one mask per prompt, in order', result && result.masks.map((m) => m.prompt).join('|') === prompts.join('|'), JSON.stringify(result?.prompts));
  for (const [k, cliMask] of cliMasks.entries()) {
    const m = result?.masks[k];
    const sized = m && m.width === cliMask.width && m.height === cliMask.height && m.data.length === m.width * m.height && m.isBytes;
    check(`mask "${prompts[k]}": a Uint8Array at the image's size`, sized, m && `${m.width}x${m.height}`);
    if (!sized) continue;
    check(`mask "${prompts[k]}": only 0 and 255`, m.data.every((v) => v === 0 || v === 255));
    const iou = maskIou(m.data, cliMask);
    check(`mask "${prompts[k]}" = the CLI's: IoU >= ${MIN_IOU}`, iou >= MIN_IOU, `IoU ${iou.toFixed(5)}`);
  }
  const parts = requests.filter((u) => /\.bpk\.\d+$/.test(u));
  check('every part fetched once, from the model origin', parts.length === manifest.parts.length && parts.every((u) => u.startsWith(origin(corsServer))), `${parts.length} of ${manifest.parts.length}`);
  await context.close();
}

async function noCorsPage() {
  console.log('\n== a model origin without CORS');
  const { context, page } = await newPage();
  await page.goto(`${siteUrl}/no-cors.html`);
  await page.waitForFunction(() => window.__events?.some((e) => e.type === 'clipseg-result' || e.type === 'clipseg-error'));
  const events = await page.evaluate(() => window.__events);
  const error = events.find((e) => e.type === 'clipseg-error')?.detail.message ?? '';
  check('clipseg-error names CORS', /CORS/.test(error) && /Access-Control-Allow-Origin/.test(error), error);
  const caption = await page.evaluate(() => document.querySelector('clip-seg').shadowRoot.querySelector('figcaption').textContent);
  check('the caption says it too', /CORS/.test(caption), caption);
  await context.close();
}

// getPack (the package's pack-cache.js) in the page against damaged and interrupted downloads.
async function splitLoading() {
  console.log('\n== split-pack loading: damaged parts, interruptions');
  const parts = manifest.parts.map((p) => p.file);
  const partOf = (url) => parts.indexOf(new URL(url).pathname.slice(1));
  const load = (page) => page.evaluate(async (url) => {
    const { getPack } = await import('./node_modules/clipseg-web/pack-cache.js');
    try {
      const got = await getPack(url);
      return { ok: true, from: got.from, bytes: got.bytes.length, notes: got.notes };
    } catch (e) {
      return { ok: false, error: e.message };
    }
  }, corsModel);

  // One context per case: each starts with an empty cache.
  const cases = [
    ['a corrupt part is refused by name', 3, (route) => route.fetch().then(async (res) => {
      const body = Buffer.from(await res.body());
      body[100] ^= 0xff;
      return route.fulfill({ response: res, body });
    }), /part 4 of \d+ \(refined-q8\.bpk\.003\): sha256 differs/],
    ['a missing part is refused by name', 5, (route) => route.fulfill({ status: 404, headers: { 'access-control-allow-origin': '*' }, body: '' }), /part 6 of \d+ \(refined-q8\.bpk\.005\): HTTP 404/],
  ];
  for (const [name, part, handler, want] of cases) {
    const { context, page } = await newPage();
    await page.goto(`${siteUrl}/idle.html`);
    await context.route((url) => partOf(url.href) === part, handler);
    const r = await load(page);
    check(name, !r.ok && want.test(r.error), r.error ?? 'loaded');
    await context.close();
  }
  {
    const { context, page } = await newPage();
    await page.goto(`${siteUrl}/idle.html`);
    const wrong = structuredClone(manifest);
    wrong.parts[2].size += 1;
    wrong.size += 1;
    await context.route((url) => url.href === corsModel, (route) => route.fulfill({ headers: { 'access-control-allow-origin': '*' }, contentType: 'application/json', body: JSON.stringify(wrong) }));
    const r = await load(page);
    check('a manifest naming a wrong part size is refused', !r.ok && /part 3 of \d+ \(refined-q8\.bpk\.002\): 100000 bytes, the manifest says 100001/.test(r.error), r.error ?? 'loaded');
    await context.close();
  }
  {
    const { context, page, requests } = await newPage();
    await page.goto(`${siteUrl}/idle.html`);
    // The connection drops during part 7: the parts finished before (and beside) it are cached.
    const served = new Set();
    let broken = true;
    await context.route((url) => partOf(url.href) >= 0, async (route) => {
      const k = partOf(route.request().url());
      if (k === 6 && broken) return route.abort('connectionreset');
      const res = await route.fetch();
      served.add(k);
      return route.fulfill({ response: res });
    });
    const first = await load(page);
    check('a broken-off download fails, naming the part', !first.ok && /part 7 of/.test(first.error), first.error ?? 'loaded');
    const before = new Set(served);
    const n0 = requests.length;
    broken = false;
    const second = await load(page);
    const asked = requests.slice(n0).map(partOf).filter((k) => k >= 0);
    const refetched = asked.filter((k) => before.has(k));
    check('the next load fetches only the parts still missing', second.ok && second.bytes === manifest.size && refetched.length === 0 && asked.length === parts.length - before.size,
      `${before.size} parts cached, then ${asked.length} fetched (${refetched.length} again); ${second.notes?.join('; ') ?? second.error}`);
    const n1 = requests.length;
    const third = await load(page);
    const again = requests.slice(n1).filter((u) => partOf(u) >= 0).length;
    check('a third load takes every part from the cache', third.ok && third.from === 'cache' && again === 0, `${third.from}, ${again} part requests`);
    await context.close();
  }
}

// IoU of a 0/255 mask array and a decoded PNG (first channel > 127 inside; 1 when both empty).
function maskIou(data, png) {
  let inter = 0, union = 0;
  for (let i = 0; i < data.length; i++) {
    const x = data[i] > 127, y = png.data[i * png.channels] > 127;
    inter += x && y;
    union += x || y;
  }
  return union ? inter / union : 1;
}

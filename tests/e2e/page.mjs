// End-to-end test of the demo page (www/index.html) and the widget (www/widget-example.html)
// in headless Chromium, run by tools/e2e.sh after run.mjs. The native CLI converts the refined
// fixture model to a tiny q8 pack and writes reference masks; the page then loads that pack
// (?model=), takes tests/fixtures/images/landscape.png through its file input, segments two
// prompts and must: show load progress, draw both prompts' colours, export masks equal to the
// CLI's (IoU >= 0.99) at the image's size, redraw on a threshold change with the engine's
// labels alone (no encode, no segment), show the heat map and the probabilities under the
// pointer, and on reload take the pack from Cache Storage. The widget page must render both
// widgets off one model download and one engine load. Backends: the page is asked for
// WebGPU (SwiftShader here; the test fails if it fell back), the widgets are pinned to the CPU (wasm),
// which keeps their seven requests quick on machines without a GPU.
// Screenshots: target/e2e/page-*.png. Exits 1 on a failed check, 2 on the hard timeout.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cli, cliBinary, decodePng, encodePng, fail, launchChromium, serve } from './harness.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const bin = cliBinary(root);
const outDir = 'target/e2e';
const pack = `${outDir}/refined-q8.bpk`;
const image = 'tests/fixtures/images/landscape.png';
const prompts = ['a photo of a cat', 'a dog'];
// app.js's first two prompt colours.
const COLORS = [[230, 159, 0], [86, 180, 233]];
const MIN_IOU = 0.99;
const STEP_MS = 3 * 60_000; // any one wait in the page

setTimeout(() => {
  console.log('FAIL: hard timeout (page.mjs), giving up');
  process.exit(2);
}, 12 * 60_000).unref();

process.chdir(root);
fs.mkdirSync(outDir, { recursive: true });
for (const f of ['pkg/clipseg.js', 'pkg/clipseg_bg.wasm'])
  if (!fs.existsSync(f)) fail(`${f} missing: build the wasm package into pkg/ first`);
if (!fs.existsSync(bin.path)) fail(`${bin.path} missing: cargo build --features native (or set CLIPSEG_BIN)`);

cli(bin, 'convert', '--model', 'tests/fixtures/models/refined', '--out', pack, '--quant', 'q8');
// f32: the page runs on WebGPU, which computes the dequantized weights in f32.
cli(bin, 'predict', '--model', pack, '--image', image, ...prompts.flatMap((p) => ['--prompt', p]), '--precision', 'f32', '--mask', `${outDir}/cli.png`);
const cliMasks = prompts.map((_, k) => decodePng(fs.readFileSync(`${outDir}/cli-${k}.png`)));
const { width: W, height: H } = cliMasks[0];

const checks = [];
const check = (name, pass, detail = '') => {
  checks.push({ name, pass: !!pass });
  console.log(`  ${pass ? 'ok  ' : 'FAIL'} ${name}${detail === '' ? '' : `: ${detail}`}`);
};

const server = await serve(root);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium();
console.log(`Chromium ${browser.version()}, serving ${root} on ${base}`);

// Every page: CSP violations, worker requests by type and load-progress texts are recorded.
const INIT = () => {
  window.__csp = [];
  window.__sent = {};
  window.__progress = [];
  document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective}: ${e.blockedURI}`));
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (msg, ...rest) {
    if (msg?.type) window.__sent[msg.type] = (window.__sent[msg.type] ?? 0) + 1;
    return post.call(this, msg, ...rest);
  };
  document.addEventListener('DOMContentLoaded', () => {
    const el = document.getElementById('progress-text');
    if (el) new MutationObserver(() => window.__progress.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  });
};

// models/index.json as `make demo` writes it, listing the fixture pack under the real pack's
// name (answered with the fixture pack where the widget page asks for it).
const INDEX = { packs: [{ file: 'clipseg-q8.bpk', label: 'CLIPSeg rd64-refined, q8', bytes: fs.statSync(pack).size, untrained: false }] };

async function newContext() {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  await context.route(/\/models\/index\.json$/, (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify(INDEX) }));
  const requests = [];
  const missing = [];
  context.on('request', (r) => requests.push(r.url()));
  context.on('response', (r) => r.status() === 404 && missing.push(r.url()));
  await context.addInitScript(INIT);
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (m) => {
    if (['error', 'warning'].includes(m.type()) && !/willReadFrequently/.test(m.text())) console.log(`  console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`  page error: ${e.message}`));
  page.on('crash', () => console.log('  page crashed'));
  return { context, page, requests, missing };
}

try {
  await demoPage();
} catch (e) {
  check('demo page ran to the end', false, e.message.split('\n')[0]);
}
try {
  await composedMasks();
} catch (e) {
  check('composed masks ran to the end', false, e.message.split('\n')[0]);
}
try {
  await imagePrompts();
} catch (e) {
  check('image prompts ran to the end', false, e.message.split('\n')[0]);
}
try {
  await widgetPage();
} catch (e) {
  check('widget page ran to the end', false, e.message.split('\n')[0]);
}
for (const [name, fault, during] of [['device lost between requests', 'lose-device', false], ['device lost during an encode', 'lose-device', true], ['panic between requests', 'panic', false]]) {
  try {
    await faultRecovery(name, fault, during);
  } catch (e) {
    check(`${name} ran to the end`, false, e.message.split('\n')[0]);
  }
}
await browser.close();
server.close();

const failed = checks.filter((c) => !c.pass);
console.log(`\n${failed.length ? 'FAIL' : 'PASS'}: page.mjs, ${checks.length - failed.length} of ${checks.length} checks (screenshots: ${outDir}/page-*.png)`);
process.exit(failed.length ? 1 : 0);

// ------------------------------------------------------------------ www/index.html

async function demoPage() {
  console.log('\n== www/index.html');
  const { context, page, requests, missing } = await newContext();
  const bpkRequests = () => requests.filter((u) => new URL(u).pathname === `/${pack}`).length;
  const waitStatus = (re) => page.waitForFunction((s) => new RegExp(s).test(document.getElementById('status').textContent), re.source);
  const sent = () => page.evaluate(() => ({ ...window.__sent }));
  const overlay = () => page.evaluate(() => {
    const c = document.getElementById('overlay');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const colours = {};
    let hash = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3]) colours[`${d[i]},${d[i + 1]},${d[i + 2]}`] = (colours[`${d[i]},${d[i + 1]},${d[i + 2]}`] ?? 0) + 1;
      hash = (Math.imul(hash, 31) + d[i] + d[i + 3]) | 0;
    }
    return { w: c.width, h: c.height, colours, hash };
  });

  // WebGPU asked for through the page's ?backend= (its auto mode takes the CPU on a software
  // fallback adapter such as SwiftShader; run.mjs tests that choice).
  await page.goto(`${base}/www/index.html?${new URLSearchParams({ model: `/${pack}`, backend: 'webgpu' })}`);
  await waitStatus(/model ready|Model:/);
  const status = await page.textContent('#status');
  check('model loads', /model ready/.test(status), status);
  // The model list comes from models/index.json: the packs it names, and the one asked for.
  const listed = await page.$$eval('#model option', (os) => os.map((o) => o.textContent));
  check('model list from models/index.json', listed.length === 2 && /^CLIPSeg rd64-refined, q8 \([\d.]+ MB\)$/.test(listed[0]) && /from the address/.test(listed[1]), listed.join(' | '));
  const progress = await page.evaluate(() => window.__progress);
  check('download progress shown while loading', progress.some((t) => /MB of .*%\)/.test(t)), progress.filter((t) => /%/.test(t)).slice(0, 2).join(' | '));
  check('first visit downloads the pack', /downloaded/.test(progress.at(-1)) && bpkRequests() === 1, progress.at(-1));
  const backendInfo = await page.textContent('#backend-info');
  check('backend is WebGPU', /WebGPU/.test(backendInfo), backendInfo);
  // A q8 pack's towers stay 8-bit in GPU memory (src/engine/gpu/matmul_q8.wgsl).
  check("backend line gives the weights' GPU memory, kept 8-bit", /weights: [\d.]+ MB of GPU memory, kept as the pack stores them/.test(backendInfo), backendInfo);

  await page.fill('#prompts', prompts.join('\n'));
  await page.setInputFiles('#file', image); // a chosen file segments the typed prompts at once
  await page.waitForFunction(() => window.clipsegDemo.segments >= 1 && window.clipsegDemo.state.result);
  await page.waitForFunction(() => window.clipsegDemo.renders >= 1);
  const o1 = await overlay();
  check(`overlay at the image's size ${W}x${H}`, o1.w === W && o1.h === H, `${o1.w}x${o1.h}`);
  for (const [k, c] of COLORS.entries()) check(`overlay has pixels of prompt ${k + 1}'s colour (${c})`, o1.colours[String(c)] > 0, `${o1.colours[String(c)] ?? 0} px`);
  await page.screenshot({ path: `${outDir}/page-segmented.png` });

  // Masks: the exported PNG of each prompt (selected in the legend) against the CLI's.
  for (const k of prompts.keys()) {
    await page.check(`#legend input[value="${k}"]`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-mask')]);
    const file = `${outDir}/page-mask-${k}.png`;
    await download.saveAs(file);
    const got = decodePng(fs.readFileSync(file));
    check(`exported mask ${k + 1} is a ${W}x${H} PNG`, got.width === W && got.height === H, `${got.width}x${got.height}, ${download.suggestedFilename()}`);
    if (got.width === W && got.height === H) {
      const iou = maskIou(got, cliMasks[k]);
      check(`mask "${prompts[k]}" = CLI's: IoU >= ${MIN_IOU}`, iou >= MIN_IOU, `IoU ${iou.toFixed(5)}`);
    }
    // The same encoder writes both: the same pixels make the same file.
    check(`mask "${prompts[k]}": the CLI's PNG byte for byte`, fs.readFileSync(file).equals(fs.readFileSync(`${outDir}/cli-${k}.png`)), `${fs.statSync(file).size} / ${fs.statSync(`${outDir}/cli-${k}.png`).size} bytes`);
  }

  // Threshold: the engine's labels at the new threshold; the model never re-runs.
  const before = await sent();
  await page.focus('#threshold');
  for (let i = 0; i < 10; i++) await page.keyboard.press('ArrowLeft'); // 0.50 → 0.40
  const shows = (t) => page.waitForFunction((t) => window.clipsegDemo.state.view?.threshold === t, t);
  await shows(0.4);
  const o2 = await overlay();
  const after = await sent();
  const on = (o) => Object.values(o.colours).reduce((a, n) => a + n, 0);
  check('threshold 0.40: overlay changed, more pixels', o2.hash !== o1.hash && on(o2) > on(o1), `${on(o1)} → ${on(o2)} px`);
  const asked = requestsBetween(before, after);
  check('threshold change sends only labels requests: no encode and no segment', Object.keys(asked).join() === 'labels' && asked.labels <= 10, JSON.stringify(asked));

  // Heat map of the selected prompt: opaque, many colours; then back to the masks.
  await page.check('#heatmap');
  await page.waitForFunction(() => window.clipsegDemo.state.view?.heat === window.clipsegDemo.state.selected);
  const o3 = await overlay();
  check('heat map: every pixel painted, a colour ramp', on(o3) === W * H && Object.keys(o3.colours).length > 8, `${on(o3)} px, ${Object.keys(o3.colours).length} colours`);
  await page.uncheck('#heatmap');
  await shows(0.4);
  check('masks again after the heat map', (await overlay()).hash === o2.hash);

  // Probabilities under the pointer, in the legend.
  const box = await page.locator('#overlay').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForFunction(() => [...document.querySelectorAll('#legend .prob')].every((el) => /%$/.test(el.textContent)));
  const shown = await page.$$eval('#legend .prob', (els) => els.map((el) => el.textContent));
  check('hover: every prompt\'s probability shown', shown.length === prompts.length && shown.every((t) => parseFloat(t) >= 0 && parseFloat(t) <= 100), shown.join(', '));
  await page.mouse.move(0, 0);
  const after2 = await sent();
  const viewing = requestsBetween(after, after2);
  check('heat map and hover: heat and probe requests, no encode and no segment', viewing.heat >= 1 && viewing.probe >= 1 && !viewing.encode && !viewing.segment, JSON.stringify(viewing));

  // Re-segmenting the same image re-uses the encoded image.
  const segments = await page.evaluate(() => window.clipsegDemo.segments);
  await page.click('#segment');
  await page.waitForFunction((n) => window.clipsegDemo.segments > n, segments);
  const again = await sent();
  check('re-segment: one more segment, no new encode', again.segment === before.segment + 1 && again.encode === before.encode, JSON.stringify(again));
  // The threshold stays 0.40: the segment's own labels are drawn.
  await shows(0.4);

  const csp = await page.evaluate(() => window.__csp);
  check('no CSP violations', csp.length === 0, csp.join('; '));

  // Second visit: the pack comes from Cache Storage.
  await page.reload();
  await waitStatus(/model ready|Model:/);
  const p2 = await page.evaluate(() => window.__progress);
  check('reload: pack from the cache, no second .bpk request', bpkRequests() === 1 && /from the cache/.test(p2.at(-1)), `${bpkRequests()} .bpk requests; "${p2.at(-1)}"`);
  await page.screenshot({ path: `${outDir}/page-reloaded.png` });
  check('no 404s (no probing for packs)', missing.length === 0, missing.join(', '));
  await context.close();
}

// ------------------------------------------------------------------ image prompts

// "Find things like this": a box dragged over the photo, another image and a brush stroke over
// the photo as examples, beside a typed prompt. Their masks are the CLI's for --visual-prompt
// PHOTO@X,Y,W,H (the region the page recorded), OTHER and PHOTO@MASK.png (the brushed pixels
// the page recorded) (IoU >= 0.99); removing an example re-segments without it.
async function imagePrompts() {
  console.log('\n== image prompts: a marked region and another image');
  const other = 'tests/fixtures/images/portrait.png';
  const { context, page } = await newContext();
  await page.goto(`${base}/www/index.html?${new URLSearchParams({ model: `/${pack}`, backend: 'webgpu' })}`);
  await page.waitForFunction(() => /model ready|Model:/.test(document.getElementById('status').textContent));
  await page.fill('#prompts', prompts[0]);
  await page.setInputFiles('#file', image);
  const done = (count) => page.waitForFunction((n) => window.clipsegDemo.state.result?.prompts.length === n && /^done:/.test(document.getElementById('status').textContent), count);
  await done(1);
  await page.click('#mark-region');
  // Photo pixels to page coordinates (the canvas is letterboxed in its box).
  const box = await page.locator('#marks').boundingBox();
  const scale = Math.min(box.width / W, box.height / H);
  const at = (x, y) => [box.x + (box.width - W * scale) / 2 + (x + 0.5) * scale, box.y + (box.height - H * scale) / 2 + (y + 0.5) * scale];
  await page.mouse.move(...at(120, 90));
  await page.mouse.down();
  await page.mouse.move(...at(250, 160), { steps: 5 });
  await page.mouse.move(...at(330, 270), { steps: 5 });
  await page.mouse.up();
  await done(2);
  await page.setInputFiles('#example-file', other);
  await done(3);
  await page.click('#mark-brush');
  await page.mouse.move(...at(420, 300));
  await page.mouse.down();
  for (const [x, y] of [[470, 320], [520, 330], [560, 380]]) await page.mouse.move(...at(x, y), { steps: 4 });
  await page.mouse.up();
  await done(4);
  const { region, brushed, thumbs, names } = await page.evaluate(() => ({
    region: window.clipsegDemo.examples.items[0].region,
    brushed: [...window.clipsegDemo.examples.items[2].marks],
    thumbs: document.querySelectorAll('#examples canvas').length,
    names: [...document.querySelectorAll('#legend .name')].map((n) => n.textContent),
  }));
  check('a dragged box becomes a region example', region && Math.abs(region.width - 210) <= 2 && Math.abs(region.height - 180) <= 2, JSON.stringify(region));
  const marked = brushed.reduce((a, b) => a + b, 0);
  check('a brush stroke becomes an example of the pixels it covers', marked > 2000 && marked < W * H / 4, `${marked} px`);
  check('the examples listed with what the model sees, and in the legend', thumbs === 3 && names.length === 4 && /like the region/.test(names[1]) && /portrait\.png/.test(names[2]) && /brushed/.test(names[3]), names.join(' | '));
  const spec = `${image}@${region.x},${region.y},${region.width},${region.height}`;
  fs.writeFileSync(`${outDir}/brushed.png`, encodePng(W, H, Uint8Array.from(brushed.flatMap((m) => [255 * m, 255 * m, 255 * m]))));
  cli(bin, 'predict', '--model', pack, '--image', image, '--prompt', prompts[0], '--visual-prompt', spec, '--visual-prompt', other, '--visual-prompt', `${image}@${outDir}/brushed.png`, '--precision', 'f32', '--mask', `${outDir}/cli-ex.png`);
  for (const k of [0, 1, 2, 3]) {
    await page.check(`#legend input[value="${k}"]`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-mask')]);
    const got = decodePng(fs.readFileSync(await download.path()));
    const want = decodePng(fs.readFileSync(`${outDir}/cli-ex-${k}.png`));
    let inter = 0, union = 0;
    for (let i = 0; i < got.data.length; i++) (inter += got.data[i] && want.data[i] ? 1 : 0), (union += got.data[i] || want.data[i] ? 1 : 0);
    const iou = union ? inter / union : 1;
    check(`mask of "${names[k]}" = CLI's: IoU >= ${MIN_IOU}`, got.data.length === want.data.length && iou >= MIN_IOU, `IoU ${iou.toFixed(5)}, ${union} px in either`);
  }
  await page.click('#examples li:first-child button');
  await done(3);
  const left = await page.evaluate(() => window.clipsegDemo.state.result.prompts);
  check('removing an example re-segments without it', left.length === 3 && /portrait\.png/.test(left[1]), left.join(' | '));
  await page.screenshot({ path: `${outDir}/page-examples.png` });
  // The element's examples attribute: the same masks; an example is encoded once per model.
  const xywh = `#xywh=${region.x},${region.y},${region.width},${region.height}`;
  const attrs = `src="/${image}" model="/${pack}" backend="webgpu" prompt="${prompts[0]}" examples="/${image}${xywh} /${other}"`;
  await context.route(/\/examples\.html$/, (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: `<!doctype html><script type="module" src="/pkg/clip-seg.js"></script><clip-seg ${attrs}></clip-seg>` }));
  const element = await context.newPage();
  await element.goto(`${base}/examples.html`);
  await element.waitForFunction(() => document.querySelector('clip-seg')?.result);
  const r = await element.evaluate(() => {
    const { prompts: names, masks } = document.querySelector('clip-seg').result;
    return { names, masks: masks.map((m) => [...m.data]), examples: customElements.get('clip-seg').stats.examples };
  });
  // As the page's: IoU >= 0.99 (the example's embedding runs the whole vision tower on WebGPU,
  // whose floats put a pixel at the threshold on the other side now and then).
  const scores = r.masks.map((m, k) => {
    const want = decodePng(fs.readFileSync(`${outDir}/cli-ex-${k}.png`)).data;
    let inter = 0, union = 0;
    for (let i = 0; i < want.length; i++) (inter += m[i] && want[i] ? 1 : 0), (union += m[i] || want[i] ? 1 : 0);
    return { iou: union ? inter / union : 1, differ: m.filter((v, i) => v !== want[i]).length + Math.abs(m.length - want.length) };
  });
  check(`<clip-seg examples="PHOTO#xywh=… OTHER">: the CLI's masks (IoU >= ${MIN_IOU}), each example encoded once`, r.masks.length === 3 && scores.every((s) => s.iou >= MIN_IOU) && r.examples === 2, `${r.names.join(' | ')}; pixels differing ${scores.map((s) => s.differ).join(', ')}; ${r.examples} example encodes`);
  await element.evaluate(() => document.querySelector('clip-seg').setAttribute('examples', 'x.png#xywh=1,2'));
  const said = await element.waitForFunction(() => /examples:/.test(document.querySelector('clip-seg').shadowRoot.querySelector('figcaption').textContent)).then((h) => h.evaluate(() => document.querySelector('clip-seg').shadowRoot.querySelector('figcaption').textContent));
  check('a malformed examples region is refused in one line', /#xywh=X,Y,WIDTH,HEIGHT/.test(said), said);
  await context.close();
}

// ------------------------------------------------------------------ composed masks

// The page's export settings against the CLI's flags on the same pack, photo and prompts: the
// union of both prompts less what "a sofa" finds, grown 3 px and feathered over 4 (mask and
// cut-out): the same PNG files, byte for byte; then each prompt's soft mask ("export all"),
// probabilities as grey, within one level where the two backends' floats round apart.
async function composedMasks() {
  console.log('\n== composed masks: page exports = CLI files');
  const subtract = 'a sofa';
  const flags = ['--model', pack, '--image', image, ...prompts.flatMap((p) => ['--prompt', p]), '--subtract', subtract, '--precision', 'f32'];
  cli(bin, 'predict', ...flags, '--union', '--dilate', '3', '--feather', '4', '--cutout', '--mask', `${outDir}/cli-union.png`);
  cli(bin, 'predict', ...flags, '--soft', '--mask', `${outDir}/cli-soft.png`);
  const { context, page } = await newContext();
  await page.goto(`${base}/www/index.html?${new URLSearchParams({ model: `/${pack}`, backend: 'webgpu' })}`);
  await page.waitForFunction(() => /model ready|Model:/.test(document.getElementById('status').textContent));
  await page.fill('#prompts', prompts.join('\n'));
  await page.fill('#subtract', subtract);
  await page.setInputFiles('#file', image);
  await page.waitForFunction(() => window.clipsegDemo.state.result && /^done:/.test(document.getElementById('status').textContent));
  const exported = async (button, count) => {
    const downloads = [];
    const got = new Promise((resolve) => page.on('download', function on(d) {
      downloads.push(d);
      if (downloads.length === count) (page.off('download', on), resolve());
    }));
    await page.click(button);
    await got;
    return Promise.all(downloads.map(async (d) => ({ name: d.suggestedFilename(), bytes: fs.readFileSync(await d.path()) })));
  };
  // Byte for byte; or, for soft masks (`levels`), within one grey level at a few pixels:
  // round(255 p) of probabilities that differ by ~1e-6 (WebGPU's f32 sums against the CPU's)
  // falls on either side of a rounding boundary now and then.
  const same = (name, got, file, levels = false) => {
    const want = fs.readFileSync(file);
    let detail = `${got.bytes.length} / ${want.length} bytes`, close = false;
    if (!got.bytes.equals(want)) {
      const [a, b] = [decodePng(got.bytes), decodePng(want)];
      let px = 0, most = 0;
      for (let i = 0; i < a.data.length; i++) (px += a.data[i] !== b.data[i]), (most = Math.max(most, Math.abs(a.data[i] - b.data[i])));
      detail += `; ${px} of ${a.data.length} samples differ, by at most ${most}`;
      close = levels && a.data.length === b.data.length && most <= 1 && px <= a.data.length * 1e-4;
    }
    const how = levels ? 'byte for byte, or within 1 level at <= 0.01% of pixels' : 'byte for byte';
    check(`${name} (${got.name}) = ${file.split('/').pop()} ${how}`, got.bytes.equals(want) || close, detail);
  };
  await page.check('#union');
  await page.fill('#grow', '3');
  await page.fill('#feather', '4');
  same('union less "a sofa", grown 3, feathered 4', (await exported('#export-mask', 1))[0], `${outDir}/cli-union.png`);
  same('its cut-out', (await exported('#export-cutout', 1))[0], `${outDir}/cli-union-cutout.png`);
  await page.uncheck('#union');
  await page.fill('#grow', '0');
  await page.fill('#feather', '0');
  await page.check('#soft');
  const soft = await exported('#export-all', prompts.length);
  for (const [k, got] of soft.entries()) same(`soft mask of "${prompts[k]}" less "a sofa"`, got, `${outDir}/cli-soft-${k}.png`, true);
  // A bad value is refused in one line; the page keeps working.
  await page.fill('#grow', '2.5');
  await page.click('#export-mask');
  const said = await page.textContent('#status');
  check('a grow of 2.5 px is refused with a message', /Grow must be a whole number/.test(said), said);

  // The element's attributes: the same masks as the CLI's PNGs hold; a changed grow only asks
  // the engine for the masks (no model run).
  cli(bin, 'predict', ...flags, '--union', '--erode', '2', '--mask', `${outDir}/cli-union-eroded.png`);
  const attrs = `src="/${image}" model="/${pack}" backend="webgpu" prompt="${prompts.join(' | ')}" subtract="${subtract}" union grow="3" feather="4"`;
  await context.route(/\/composed\.html$/, (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: `<!doctype html><script type="module" src="/pkg/clip-seg.js"></script><clip-seg ${attrs}></clip-seg>` }));
  const element = await context.newPage();
  const result = () => element.evaluate(() => new Promise((resolve) => document.querySelector('clip-seg').addEventListener('clipseg-result', (e) => resolve({ ...e.detail, masks: e.detail.masks.map((m) => ({ ...m, data: [...m.data] })) }), { once: true })));
  await element.goto(`${base}/composed.html`);
  await element.waitForFunction(() => document.querySelector('clip-seg')?.result);
  const r1 = await element.evaluate(() => ({ masks: document.querySelector('clip-seg').result.masks.map((m) => ({ ...m, data: [...m.data] })) }));
  const pixels = (file) => [...decodePng(fs.readFileSync(file)).data];
  check('<clip-seg union subtract grow feather>: one mask, the CLI\'s pixels', r1.masks.length === 1 && r1.masks[0].prompt === prompts.join(' | ') && JSON.stringify(r1.masks[0].data) === JSON.stringify(pixels(`${outDir}/cli-union.png`)), `${r1.masks.length} masks`);
  const next = result();
  await element.evaluate(() => (document.querySelector('clip-seg').setAttribute('grow', '-2'), document.querySelector('clip-seg').removeAttribute('feather')));
  const r2 = await next;
  check('grow="-2": the CLI\'s --erode 2 pixels, no model run', r2.segmentMs === null && JSON.stringify(r2.masks[0].data) === JSON.stringify(pixels(`${outDir}/cli-union-eroded.png`)), `segmentMs ${r2.segmentMs}`);
  const error = element.evaluate(() => new Promise((resolve) => document.querySelector('clip-seg').addEventListener('clipseg-error', (e) => resolve(e.detail.message), { once: true })));
  await element.evaluate(() => document.querySelector('clip-seg').setAttribute('grow', 'wide'));
  const message = await error;
  check('grow="wide" fires clipseg-error with a one-line message', /grow="wide": a whole number of pixels/.test(message), message);
  await context.close();
}

// ------------------------------------------------------------------ www/widget-example.html

async function widgetPage() {
  console.log('\n== www/widget-example.html');
  const { context, page, requests } = await newContext();
  // The example names models/clipseg-q8.bpk; here it is answered with the fixture pack.
  await context.route(/\/models\/clipseg-q8\.bpk(\.sha256)?$/, (route) =>
    route.fulfill({ path: route.request().url().endsWith('.sha256') ? `${pack}.sha256` : pack }));
  // ...and its widgets are pinned to the CPU, which their auto backend picks on SwiftShader
  // anyway, so that on a machine with a GPU the seven requests below test the same engine.
  await context.route(/\/www\/widget-example\.html$/, async (route) => {
    const html = fs.readFileSync('www/widget-example.html', 'utf8');
    route.fulfill({ contentType: 'text/html; charset=utf-8', body: html.replaceAll('<clip-seg ', '<clip-seg backend="cpu" ') });
  });
  const bpk = () => requests.filter((u) => /\.bpk$/.test(new URL(u).pathname)).length;
  const widgets = () => page.evaluate(() => [...document.querySelectorAll('clip-seg')].map((w) => {
    const c = w.shadowRoot.querySelector('canvas.overlay');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let on = 0;
    for (let i = 3; i < d.length; i += 4) on += d[i] > 0;
    return { w: c.width, h: c.height, on, caption: w.shadowRoot.querySelector('figcaption').textContent, done: !!w.result };
  }));

  await page.goto(`${base}/www/widget-example.html`);
  await page.evaluate(() => customElements.whenDefined('clip-seg'));
  await page.waitForFunction(() => [...document.querySelectorAll('clip-seg')].every((w) => w.result) || /error/.test([...document.querySelectorAll('clip-seg')].map((w) => w.shadowRoot.querySelector('figcaption').className).join(' ')));
  let ws = await widgets();
  for (const [i, w] of ws.entries()) console.log(`  widget ${i + 1}: ${w.w}x${w.h}, ${w.on} mask px, "${w.caption}"`);
  check('two widgets', ws.length === 2);
  check('both widgets drew an overlay', ws.every((w) => w.done && w.on > 0), ws.map((w) => w.on).join(', '));
  check('one .bpk request for both', bpk() === 1, `${bpk()}`);
  let sent = await page.evaluate(() => ({ ...window.__sent }));
  check('one engine load, one encode per widget', sent.load === 1 && sent.encode === 2 && sent.segment === 2, JSON.stringify(sent));
  await page.screenshot({ path: `${outDir}/page-widgets.png`, fullPage: true });

  // A new prompt on the first widget: its image is not the one encoded (the second's is), so it
  // is encoded again; a second new prompt then only segments. A new threshold only asks the
  // engine for labels (the first widget's maps are the ones it holds).
  const first = page.locator('clip-seg').first();
  const done = () => first.evaluate((w) => new Promise((resolve) => w.addEventListener('clipseg-result', (e) => resolve({ prompts: e.detail.prompts, masks: e.detail.masks.length, encodeMs: e.detail.encodeMs, segmentMs: e.detail.segmentMs }), { once: true })));
  let wait = done();
  await first.evaluate((w) => w.setAttribute('prompt', 'a sofa'));
  const d1 = await wait;
  wait = done();
  await first.evaluate((w) => w.setAttribute('prompt', 'a cat on a sofa'));
  const d2 = await wait;
  sent = await page.evaluate(() => ({ ...window.__sent }));
  check('prompt change on the other image re-encodes; the next does not', d1.encodeMs !== null && d2.encodeMs === null && sent.encode === 3 && sent.segment === 4, `${JSON.stringify(d1)} ${JSON.stringify(d2)} ${JSON.stringify(sent)}`);
  const on1 = (await widgets())[0].on;
  await first.evaluate((w) => w.setAttribute('threshold', '0.3'));
  await page.waitForFunction(() => document.querySelector('clip-seg').result?.threshold === 0.3);
  const on2 = (await widgets())[0].on;
  const sent2 = await page.evaluate(() => ({ ...window.__sent }));
  const asked = requestsBetween(sent, sent2);
  check('threshold attribute redraws with one labels request, no encode, no segment', on2 > on1 && JSON.stringify(asked) === '{"labels":1}', `${on1} → ${on2} px, ${JSON.stringify(asked)}`);
  const csp = await page.evaluate(() => window.__csp);
  check('no CSP violations', csp.length === 0, csp.join('; '));
  await context.close();
}

// ------------------------------------------------------------------ faults

// The demo page on WebGPU with its client's test hooks: a fault injected between requests (or
// while an image is being encoded) must be said on the page, and the next segmentation must
// work without reloading the page: a fresh worker, the pack from Cache Storage, the same masks.
async function faultRecovery(name, fault, during) {
  console.log(`\n== fault: ${name}`);
  const { context, page, requests } = await newContext();
  const bpk = () => requests.filter((u) => new URL(u).pathname === `/${pack}`).length;
  const status = () => page.textContent('#status');
  await page.goto(`${base}/www/index.html?${new URLSearchParams({ model: `/${pack}`, backend: 'webgpu', test_hooks: '' })}`);
  await page.waitForFunction(() => /model ready|Model:/.test(document.getElementById('status').textContent));
  await page.fill('#prompts', prompts.join('\n'));
  await page.setInputFiles('#file', image);
  await page.waitForFunction(() => window.clipsegDemo.state.result && window.clipsegDemo.segments >= 1);
  const labels = () => page.evaluate(async () => {
    const { labels } = await window.clipsegDemo.client.labels(0.5);
    let h = 0;
    for (const v of labels) h = (Math.imul(h, 31) + v) | 0;
    return h;
  });
  const first = await labels();
  const segments = await page.evaluate(() => window.clipsegDemo.segments);
  if (during) {
    // Another photo: its encode runs while the device goes.
    await page.setInputFiles('#file', 'tests/fixtures/formats/orient-6.jpg');
    await page.waitForFunction(() => window.__sent.encode >= 2);
  }
  const injected = await page.evaluate((f) => window.clipsegDemo.client.testFault(f).then(() => 'ok', (e) => `${e.fatal ? 'fatal: ' : ''}${e.message}`), fault);
  await page.waitForFunction(() => /engine stopped|lost|panic/i.test(document.getElementById('status').textContent), null, { timeout: 60_000 });
  const said = await status();
  check(`${name}: the page says so`, fault === 'panic' ? /panic injected/.test(said) : /WebGPU device was lost/.test(said), `${said} (hook: ${injected})`);
  // The next request: the photo (again, where the lost encode was another's), segmented by a
  // fresh worker from the cached pack.
  if (during) await page.setInputFiles('#file', image);
  else await page.click('#segment');
  await page.waitForFunction((n) => window.clipsegDemo.segments > n && /^done:/.test(document.getElementById('status').textContent), segments);
  const again = await labels();
  check(`${name}: the next segmentation works, same masks, pack from the cache`, again === first && bpk() === 1, `${await status()}; ${bpk()} .bpk requests; labels ${again === first ? 'equal' : 'differ'}`);
  await context.close();
}

// ------------------------------------------------------------------ helpers

// Worker requests by type sent between two readings of window.__sent.
function requestsBetween(before, after) {
  return Object.fromEntries(Object.entries(after).filter(([type, n]) => n !== (before[type] ?? 0)).map(([type, n]) => [type, n - (before[type] ?? 0)]));
}

// IoU of two decoded masks (first channel > 127 is inside; 1 when both are empty).
function maskIou(a, b) {
  let inter = 0, union = 0;
  for (let i = 0; i < a.width * a.height; i++) {
    const x = a.data[i * a.channels] > 127, y = b.data[i * b.channels] > 127;
    inter += x && y;
    union += x || y;
  }
  return union ? inter / union : 1;
}


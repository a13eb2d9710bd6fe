// The demo page (index.html): load a model pack (cached, see pkg/pack-cache.js), take a photo,
// segment it with one or more prompts and draw the masks at the photo's full resolution. The
// engine keeps the last segmentation and hands out label maps, heat maps, masks and
// probabilities at the photo's size; this page only draws them. Prompts and file names only
// ever reach the page as textContent.
import { ClipSegClient, decodeImage, checkImageSize, composeEach } from '../pkg/clipseg-client.js';
import { clearCache } from '../pkg/pack-cache.js';
import { paintLabels, paintHeat } from '../pkg/masks.js';
import { Examples } from './examples.js';

// The packs this server offers: models/index.json, written by `make demo` (tools/demo.sh),
// {packs: [{file, label, bytes, untrained}]} (no probing for packs that may be missing); a file
// is a pack (.bpk) or a split pack's manifest (.bpk.json). `?model=URL` adds (and picks) any
// other, from any origin that allows CORS (index.html's CSP allows https: for connect-src).
const INDEX = '../models/index.json';
let packs = [];
// Packs of the test fixtures (tools/demo.sh, tools/e2e.sh) have random weights.
const isUntrained = (url) => packs.find((m) => m.url === url)?.untrained || /untrained|\/target\/e2e\//.test(url);
// One colour per prompt line, in order (Okabe–Ito, distinguishable with colour blindness).
const COLORS = [[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178], [213, 94, 0], [204, 121, 167], [255, 255, 255]];

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), backend: $('backend'), progress: $('progress'), progressText: $('progress-text'),
  backendInfo: $('backend-info'), testNote: $('test-model-note'), clearCache: $('clear-cache'),
  file: $('file'), prompts: $('prompts'), segment: $('segment'), timings: $('timings'),
  threshold: $('threshold'), thresholdValue: $('threshold-value'), opacity: $('opacity'), opacityValue: $('opacity-value'),
  heatmap: $('heatmap'), legendBox: $('legend-box'), legend: $('legend'), subtract: $('subtract'),
  union: $('union'), grow: $('grow'), feather: $('feather'), soft: $('soft'),
  exportMask: $('export-mask'), exportCutout: $('export-cutout'), exportAll: $('export-all'),
  stage: $('stage'), image: $('image'), overlay: $('overlay'), status: $('status'),
  markRegion: $('mark-region'), markBrush: $('mark-brush'), exampleFile: $('example-file'), examples: $('examples'), marks: $('marks'),
};

// ?test_hooks: the end-to-end test injects faults through window.clipsegDemo.client.
const testHooks = new URLSearchParams(location.search).has('test_hooks');
const client = new ClipSegClient({ testHooks });
// The engine stopped (a lost WebGPU device, a bug): it restarts with the next request, from
// the cached pack, without the image and the masks.
client.onfatal = (why) => {
  state.encoded = state.held = null;
  state.engineGen++; // the restarted engine holds no examples
  status(`The engine stopped (${why}); it restarts with your next request.`, 'error');
};
const state = {
  model: null, // {url, backend, max_prompts} once loaded
  engineGen: 0, // changes with every model load and engine restart (examples are encoded again)
  modelLoading: null, // promise of the load in progress
  image: null, // {bitmap, name}: what is shown
  encoded: null, // the state.image the engine holds (null after a model change or fatal error)
  result: null, // {image, prompts, subtract, width, height}: the last segmentation shown
  held: null, // the state.result whose maps the engine holds (null after a new encode, model or fatal error)
  view: null, // what the overlay shows: {res, threshold, data: labels} or {res, heat: prompt index, data}
  selected: 0, // prompt index for heat map, hover emphasis and export
  overlay: null, // ImageData reused between renders while the image size stays
};
// Counters for tests (tests read window.clipsegDemo; nothing else uses it): engine requests
// by kind and overlay repaints.
const stats = (window.clipsegDemo = { loads: 0, encodes: 0, segments: 0, labels: 0, heats: 0, probes: 0, masks: 0, renders: 0, state, ...(testHooks && { client }) });

// "Find things like this": the example images, segmented after the typed prompts.
const examples = new Examples({
  client,
  ui: { ...ui, status: ui.status },
  photo: () => state.image,
  changed: () => state.image && segment(),
  engine: () => state.engineGen,
});
const hasPrompts = () => readPrompts().length > 0 || examples.items.length > 0;
stats.examples = examples;

// Engine requests run one after another (a model load must not race an encode).
let chain = Promise.resolve();
function exclusive(fn) {
  const p = chain.then(fn);
  chain = p.catch(() => {});
  return p;
}

function status(text, kind = '') {
  ui.status.textContent = text;
  ui.status.className = kind;
}

// ---------------------------------------------------------------- model

async function initModels() {
  const q = new URLSearchParams(location.search);
  packs = await packIndex();
  const options = packs.map((m) => ({ url: m.url, label: `${m.label} (${mb(m.bytes)})` }));
  const wanted = q.get('model');
  if (wanted && !options.some((o) => o.url === wanted)) options.push({ url: wanted, label: `from the address: ${wanted}` });
  for (const o of options) ui.model.append(new Option(o.label, o.url, false, false));
  if (['auto', 'webgpu', 'cpu'].includes(q.get('backend'))) ui.backend.value = q.get('backend');
  const first = wanted ?? options[0]?.url;
  if (!first) {
    ui.progressText.textContent = 'no model pack on this server';
    return status('No model pack on this server: `make demo` puts them in models/ (or open this page with ?model=URL of a pack, .bpk, or of a split pack’s .bpk.json).', 'error');
  }
  ui.model.value = first;
  loadModel();
}

// models/index.json's packs with their URLs; none where it is missing or unreadable.
async function packIndex() {
  try {
    const res = await fetch(INDEX, { cache: 'no-cache' });
    if (!res.ok) return [];
    const { packs: listed } = await res.json();
    const valid = (p) => typeof p.file === 'string' && /^[\w.-]+\.bpk(\.json)?$/.test(p.file) && typeof p.label === 'string' && Number.isFinite(p.bytes);
    return listed.filter(valid).map((p) => ({ url: `../models/${p.file}`, label: p.label, bytes: p.bytes, untrained: !!p.untrained }));
  } catch {
    return [];
  }
}

function loadModel() {
  const url = ui.model.value, backend = ui.backend.value;
  ui.testNote.hidden = !isUntrained(url);
  const p = exclusive(async () => {
    ui.progress.removeAttribute('value'); // indeterminate until sizes are known
    ui.backendInfo.textContent = '';
    status(`loading ${url}…`);
    const t0 = performance.now();
    let lastStep = -1, size = 0;
    // The worker downloads, verifies and caches the pack (pkg/pack-cache.js): the page never
    // holds a copy.
    const onProgress = (loaded, total) => {
      size = total || loaded;
      const pct = total ? Math.floor((100 * loaded) / total) : -1;
      if (total) (ui.progress.max = total), (ui.progress.value = loaded);
      ui.progressText.textContent = total ? `${mb(loaded)} of ${mb(total)} (${pct}%)` : `${mb(loaded)}`;
      if (total && loaded === total) ui.progressText.textContent += '; starting the engine…';
      // The live status line only in 10% steps, so screen readers are not flooded.
      if (pct >= 0 && Math.floor(pct / 10) !== lastStep) status(`downloading the model: ${pct}%`);
      lastStep = Math.floor(pct / 10);
    };
    // View requests made during the load would reach the new engine, which holds no masks.
    const held = state.held;
    state.held = null;
    let r;
    try {
      r = await client.load(url, { backend, onProgress });
    } catch (e) {
      // A failed load keeps the previous engine, its image and its masks.
      if (!e.fatal) state.held = held;
      render();
      throw e;
    }
    stats.loads++;
    state.model = { url, backend, max_prompts: r.limits.max_prompts };
    state.engineGen++;
    state.encoded = state.held = null; // a new engine holds no image and no masks
    ui.progress.max = 1;
    ui.progress.value = 1;
    const how = r.pack?.from === 'cache' ? 'from the cache' : 'downloaded';
    const notes = r.pack?.notes ?? [];
    ui.progressText.textContent = `${mb(size)} ${how}, ready in ${secs(performance.now() - t0)}${notes.length ? `; ${notes.join('; ')}` : ''}`;
    const weights = r.gpuWeightBytes === undefined ? ''
      : ` · weights: ${mb(r.gpuWeightBytes)} of GPU memory${r.packedWeights ? ', kept as the pack stores them' : ''}${r.gpuInt8Dot ? ', 8-bit products' : ''}`;
    ui.backendInfo.textContent = r.backend === 'webgpu'
      ? `Running on WebGPU: ${r.adapter || 'unnamed adapter'}${weights}`
      : `Running on the CPU (wasm, ${r.int8Kernel ?? `${r.wasm} build`})${r.reason ? `: ${r.reason}` : ''}`;
    status('model ready');
  });
  state.modelLoading = p;
  // The masks shown came from the previous model, which is gone with their maps: redo them.
  p.then(() => state.result && hasPrompts() && segment(), () => {});
  p.catch((e) => {
    ui.progress.max = 1;
    ui.progress.value = 0;
    ui.progressText.textContent = 'loading failed';
    // A failed load keeps the previous engine and its image (clipseg-client.js), unless the
    // worker died: then the client restarts it with the last pack, without the image.
    lost(e);
    status(`Model: ${e.message}`, 'error');
  }).finally(() => state.modelLoading === p && (state.modelLoading = null));
  return p;
}

ui.model.addEventListener('change', loadModel);
ui.backend.addEventListener('change', loadModel);
ui.clearCache.addEventListener('click', async () => {
  try {
    const n = await clearCache();
    status(n ? 'cached model removed; the next load downloads it again' : 'no model was cached');
  } catch (e) {
    status(`Clearing the cache: ${e.message}`, 'error');
  }
});

// ---------------------------------------------------------------- image in

async function setImage(blob, name) {
  status(`decoding ${name}…`);
  let bitmap;
  try {
    bitmap = await decodeImage(blob);
  } catch {
    return status(`${name}: not an image this browser can decode`, 'error');
  }
  const { width: w, height: h } = bitmap;
  // The engine refuses these too; checking here keeps the current image and its masks. The
  // limits are known once a model has loaded; before, the engine's refusal comes at encode.
  const refused = client.limits && checkImageSize(w, h, client.limits);
  if (refused) {
    bitmap.close();
    return status(`${name}: ${refused}`, 'error');
  }
  state.image?.bitmap.close();
  state.image = { bitmap, name };
  state.result = state.view = null;
  state.overlay = null;
  for (const c of [ui.image, ui.overlay]) (c.width = w), (c.height = h);
  examples.photoChanged(w, h);
  ui.image.getContext('2d').drawImage(bitmap, 0, 0);
  ui.stage.classList.remove('empty');
  ui.overlay.setAttribute('aria-label', `${name}, ${w}x${h} px, not segmented yet`);
  showLegend();
  status(`${name}: ${w}x${h} px`);
  if (hasPrompts()) segment();
}

async function fetchImage(url) {
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    await setImage(await res.blob(), url.split('/').pop());
  } catch (e) {
    status(`${url}: ${e.message}`, 'error');
  }
}

for (const b of document.querySelectorAll('[data-sample]')) b.addEventListener('click', () => fetchImage(b.dataset.sample));
ui.file.addEventListener('change', () => ui.file.files[0] && setImage(ui.file.files[0], ui.file.files[0].name));

// Drop anywhere on the page (a missed drop would otherwise navigate away from it).
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  ui.stage.classList.add('dragging');
});
document.addEventListener('dragleave', (e) => e.relatedTarget === null && ui.stage.classList.remove('dragging'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.stage.classList.remove('dragging');
  const f = [...e.dataTransfer.files].find((f) => f.type.startsWith('image/')) ?? e.dataTransfer.files[0];
  if (f) setImage(f, f.name);
});
// Only pastes that carry an image; pasting text into the prompts works as usual.
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file' && i.type.startsWith('image/'));
  if (!item) return;
  e.preventDefault();
  setImage(item.getAsFile(), 'pasted image');
});

// ---------------------------------------------------------------- segmenting

function readPrompts() {
  return ui.prompts.value.split('\n').map((s) => s.trim()).filter(Boolean);
}

// The prompts whose masks the exports remove ("the sofa | the rug"); the engine segments them
// after the prompts.
function readSubtract() {
  return ui.subtract.value.split('|').map((s) => s.trim()).filter(Boolean);
}

// Runs on the current image and prompts. Requests made while one runs collapse into one rerun.
let queued = null;
function segment() {
  queued ??= exclusive(async () => {
    queued = null;
    await runSegment();
  }).catch((e) => {
    lost(e);
    status(`Segmenting: ${e.message}`, 'error'); // the prompts stay as typed
  });
  return queued;
}

async function runSegment() {
  const prompts = readPrompts(), subtract = readSubtract();
  const image = state.image;
  if (!image) return status('pick a photo first', 'error');
  if (!hasPrompts()) return status('type at least one prompt, or add an example image', 'error');
  if (!state.model) throw new Error('no model loaded');
  const all = prompts.length + examples.items.length + subtract.length;
  if (all > state.model.max_prompts) throw new Error(`${all} prompts (with those to remove); this model takes at most ${state.model.max_prompts} at once`);
  ui.stage.setAttribute('aria-busy', 'true');
  try {
    let encodeMs = null;
    // The engine keeps the encoded image: only a new image (or a new engine) needs encode().
    if (state.encoded !== image) {
      status(`encoding ${image.name}…`);
      state.encoded = state.held = null; // encoding drops the engine's masks
      encodeMs = (await client.encode(image.bitmap)).ms;
      stats.encodes++;
      state.encoded = image;
    }
    const ids = await examples.ids(); // encodes the examples this engine lacks
    const names = prompts.concat(examples.labels());
    status(`segmenting ${names.length} prompt${names.length > 1 ? 's' : ''}…`);
    const threshold = Number(ui.threshold.value);
    const r = await client.segment([...prompts, ...ids, ...subtract], { threshold });
    stats.segments++;
    if (state.image !== image) return void (state.held = null); // replaced meanwhile; its own run is queued
    const res = (state.result = state.held = { image, prompts: names, subtract, width: r.width, height: r.height });
    state.selected = Math.min(state.selected, names.length - 1);
    ui.timings.textContent = encodeMs === null
      ? `segment ${ms(r.ms)} (image already encoded, not encoded again)`
      : `encode ${ms(encodeMs)} + segment ${ms(r.ms)}`;
    showLegend();
    // The segment answer carries the labels at the threshold it was sent with; the heat map
    // (or a threshold moved meanwhile) is asked for by render().
    state.view = null;
    if (!ui.heatmap.checked) paint({ res, threshold, data: r.labels });
    render();
    status(`done: ${names.length} mask${names.length > 1 ? 's' : ''}`);
  } finally {
    ui.stage.removeAttribute('aria-busy');
  }
}

ui.segment.addEventListener('click', segment);
ui.prompts.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    segment();
  }
});

// ---------------------------------------------------------------- drawing

// The overlay follows the controls: what it needs (the labels at the threshold, or the selected
// prompt's heat map) is asked of the engine, which never re-runs the model for it. At most one
// such request runs at a time; controls moved meanwhile are read when it ends, so a dragged
// slider asks for its latest value only.
let drawing = false;
async function render() {
  if (drawing) return;
  drawing = true;
  try {
    for (let want = wanted(); want && !sameView(want, state.view); want = wanted()) {
      // Masks the engine no longer holds are being redone (a new model) or lost (a restart,
      // whose error is on the status line); whatever redoes them renders again.
      if (state.held !== want.res) break;
      let data;
      if (want.heat === undefined) {
        data = (await client.labels(want.threshold)).labels;
        stats.labels++;
      } else {
        data = (await client.heat(want.heat)).heat;
        stats.heats++;
      }
      // A segmentation that arrived meanwhile drew itself: this answer may be of its maps.
      if (state.result === want.res) paint({ ...want, data });
    }
    if (!state.result) paint(null);
  } catch (e) {
    lost(e);
    status(`Drawing: ${e.message}`, 'error');
  } finally {
    drawing = false;
  }
}

// What the controls ask the overlay to show, without its data; null when there is nothing.
function wanted() {
  const res = state.result;
  if (!res) return null;
  return ui.heatmap.checked ? { res, heat: state.selected } : { res, threshold: Number(ui.threshold.value) };
}

const sameView = (a, b) => !!b && a.res === b.res && a.heat === b.heat && a.threshold === b.threshold;

// Draws `view` (see state.view), or clears the overlay for null.
function paint(view) {
  state.view = view;
  const ctx = ui.overlay.getContext('2d');
  if (!view) return ctx.clearRect(0, 0, ui.overlay.width, ui.overlay.height);
  const { res, data } = view;
  const { width, height } = ui.overlay;
  if (state.overlay?.width !== width || state.overlay?.height !== height) state.overlay = ctx.createImageData(width, height);
  if (data.length !== width * height) throw new Error(`the engine answered ${data.length} pixels for a ${width}x${height} image`);
  if (view.heat === undefined) paintLabels(state.overlay, data, res.prompts.map((_, k) => COLORS[k % COLORS.length]));
  else paintHeat(state.overlay, data);
  ctx.putImageData(state.overlay, 0, 0);
  stats.renders++;
  const what = view.heat === undefined ? `masks at threshold ${view.threshold.toFixed(2)}` : `heat map of “${res.prompts[view.heat]}”`;
  ui.overlay.setAttribute('aria-label', `${res.image.name} with ${what}`);
}

// After a fatal error the worker restarts without the image and the masks.
function lost(e) {
  if (e.fatal) state.encoded = state.held = null;
}

function applyOpacity() {
  ui.overlay.style.opacity = ui.opacity.value; // CSSOM, allowed by style-src 'self'
  ui.opacityValue.textContent = `${Math.round(ui.opacity.value * 100)}%`;
}

ui.threshold.addEventListener('input', () => {
  ui.thresholdValue.textContent = Number(ui.threshold.value).toFixed(2);
  render();
});
ui.opacity.addEventListener('input', applyOpacity);
ui.heatmap.addEventListener('change', render);

// The legend lists the last result's prompts with their colours; choosing one selects it for
// the heat map and the exports.
function showLegend() {
  const res = state.result;
  ui.legend.replaceChildren();
  ui.legendBox.hidden = !res;
  ui.exportMask.disabled = ui.exportCutout.disabled = ui.exportAll.disabled = !res;
  if (!res) return;
  res.prompts.forEach((p, k) => {
    const li = document.createElement('li');
    const label = document.createElement('label');
    const radio = Object.assign(document.createElement('input'), { type: 'radio', name: 'selected', value: k, checked: k === state.selected });
    radio.addEventListener('change', () => {
      state.selected = k;
      if (ui.heatmap.checked) render();
    });
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.backgroundColor = `rgb(${COLORS[k % COLORS.length]})`;
    const name = Object.assign(document.createElement('span'), { className: 'name', textContent: p });
    const prob = Object.assign(document.createElement('span'), { className: 'prob', textContent: '' });
    label.append(radio, swatch, name, prob);
    li.append(label);
    ui.legend.append(li);
  });
}

// Probability of every prompt under the pointer, in the legend: asked of the engine at most one
// request at a time, the latest pointer position winning.
let hover = null; // {res, x, y} under the pointer, null when it is elsewhere
let probed = null; // the hover whose probabilities the legend shows
let probing = false;
ui.overlay.addEventListener('pointermove', (e) => {
  const res = state.result;
  if (!res) return;
  const rect = ui.overlay.getBoundingClientRect();
  const { width, height } = ui.overlay;
  // The canvas is letterboxed inside its box (object-fit: contain).
  const scale = Math.min(rect.width / width, rect.height / height);
  const x = Math.floor((e.clientX - rect.left - (rect.width - width * scale) / 2) / scale);
  const y = Math.floor((e.clientY - rect.top - (rect.height - height * scale) / 2) / scale);
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  hover = { res, x, y };
  probe();
});
ui.overlay.addEventListener('pointerleave', () => {
  hover = probed = null;
  ui.legend.querySelectorAll('.prob').forEach((el) => (el.textContent = ''));
});

async function probe() {
  if (probing) return;
  probing = true;
  try {
    for (let at = hover; at && !samePoint(at, probed) && at.res === state.held; at = hover) {
      const { probabilities } = await client.probe(at.x, at.y);
      stats.probes++;
      // The pointer may have left, or a new segmentation replaced the legend, meanwhile.
      if (!hover || at.res !== state.result) continue;
      probed = at;
      ui.legend.querySelectorAll('.prob').forEach((el, k) => (el.textContent = `${(100 * probabilities[k]).toFixed(1)}%`));
    }
  } catch (e) {
    lost(e);
    status(`Probabilities under the cursor: ${e.message}`, 'error');
  } finally {
    probing = false;
  }
}

const samePoint = (a, b) => !!b && a.res === b.res && a.x === b.x && a.y === b.y;

// ---------------------------------------------------------------- export

// The export controls as compose() settings for the masks of `res` (composeEach), each with
// a file name; throws on a value out of range (soft with grow or feather: the engine refuses).
function composeSettings(res) {
  const int = (el, min, max, name) => {
    const v = Number(el.value);
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${name} must be a whole number of pixels within ${min}..${max}, got "${el.value}"`);
    return v;
  };
  const union = ui.union.checked;
  const refine = { union, grow: int(ui.grow, -4096, 4096, 'Grow'), feather: int(ui.feather, 0, 4096, 'Feather'), soft: ui.soft.checked };
  const fileName = (p) => p.replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-|-$/g, '').slice(0, 40) || 'prompt';
  const threshold = Number(ui.threshold.value);
  return composeEach(res.prompts, res.subtract, refine).map(({ prompt, ...c }) => ({ ...c, threshold, name: union ? 'union' : fileName(prompt) }));
}

// kind 'mask': the mask as a grey PNG; 'cutout': the photo with the mask as alpha. `all`: every
// prompt's (or the union); else the selected prompt's. The engine composes and encodes them as
// the CLI does (same settings, same bytes).
async function exportPng(kind, all = false) {
  const res = state.result;
  if (!res) return;
  if (state.held !== res) return status('Export: the engine no longer holds these masks; segment again', 'error');
  let files;
  try {
    const settings = composeSettings(res);
    const chosen = all || ui.union.checked ? settings : [settings[state.selected]];
    files = [];
    for (const { name, ...compose } of chosen) {
      let png;
      if (kind === 'mask') {
        png = (await client.compose({ ...compose, png: true })).png;
      } else {
        const { mask } = await client.compose(compose);
        png = (await client.encodePng(cutOut(res, mask), res.width, res.height)).png;
      }
      stats.masks++;
      files.push({ name: `${kind}-${name}.png`, png });
    }
  } catch (e) {
    lost(e);
    return status(`Export: ${e.message}`, 'error');
  }
  // A segmentation that arrived meanwhile may have answered instead.
  if (state.result !== res) return status('Export: the masks changed meanwhile; export again', 'error');
  for (const { name, png } of files) {
    const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(new Blob([png], { type: 'image/png' })), download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000); // after the download has started
  }
  status(`saved ${files.map((f) => f.name).join(', ')} (${res.width}x${res.height} px)`);
}

// The photo's pixels as the engine read them (decodeImage), the mask as their alpha: what the
// CLI's --cutout writes.
function cutOut(res, mask) {
  const ctx = new OffscreenCanvas(res.width, res.height).getContext('2d', { willReadFrequently: true });
  ctx.drawImage(res.image.bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, res.width, res.height).data;
  for (let i = 0; i < mask.length; i++) rgba[4 * i + 3] = mask[i];
  return rgba;
}

ui.exportMask.addEventListener('click', () => exportPng('mask'));
ui.exportCutout.addEventListener('click', () => exportPng('cutout'));
ui.exportAll.addEventListener('click', () => exportPng('mask', true));

// ---------------------------------------------------------------- helpers

const mb = (n) => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
const ms = (t) => `${Math.round(t)} ms`;
const secs = (t) => `${(t / 1000).toFixed(1)} s`;

applyOpacity();
// Offline visits (sw.js); service workers need a secure context (https, localhost).
navigator.serviceWorker?.register('sw.js').catch((e) => console.warn('no offline support:', e.message));
initModels().catch((e) => status(e.message, 'error'));

// The demo page (index.html): load a model pack (cached, see pack-cache.js), take a photo,
// segment it with one or more prompts and draw the masks at the photo's full resolution.
// Prompts and file names only ever reach the page as textContent.
import { ClipSegClient, decodeImage, MAX_SIDE, MAX_PIXELS } from './clipseg-client.js';
import { getPack, isCached, clearCache } from './pack-cache.js';
import { toLogits, logitAt, sigmoid, paintMasks, paintHeat, forMask } from './masks.js';

// The packs `make demo` (tools/demo.sh) puts in models/; those the server lacks are listed
// disabled. `?model=URL` adds (and picks) any other.
const MODELS = [
  { url: '../models/clipseg-q8.bpk', label: 'CLIPSeg rd64-refined, q8 (139 MB)' },
  { url: '../models/clipseg-q4.bpk', label: 'CLIPSeg rd64-refined, q4 (79 MB, rougher masks)' },
  { url: '../models/untrained-tiny-q8.bpk', label: 'untrained test model (tiny, random weights)', untrained: true },
];
// Packs of the test fixtures (tools/demo.sh, tools/e2e.sh) have random weights.
const isUntrained = (url) => MODELS.find((m) => m.url === url)?.untrained || /untrained|\/target\/e2e\//.test(url);
// One colour per prompt line, in order (Okabe–Ito, distinguishable with colour blindness).
const COLORS = [[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178], [213, 94, 0], [204, 121, 167], [255, 255, 255]];

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), backend: $('backend'), progress: $('progress'), progressText: $('progress-text'),
  backendInfo: $('backend-info'), testNote: $('test-model-note'), clearCache: $('clear-cache'),
  file: $('file'), prompts: $('prompts'), segment: $('segment'), timings: $('timings'),
  threshold: $('threshold'), thresholdValue: $('threshold-value'), opacity: $('opacity'), opacityValue: $('opacity-value'),
  heatmap: $('heatmap'), legendBox: $('legend-box'), legend: $('legend'),
  exportMask: $('export-mask'), exportCutout: $('export-cutout'),
  stage: $('stage'), image: $('image'), overlay: $('overlay'), status: $('status'),
};

const client = new ClipSegClient();
const state = {
  model: null, // {url, backend, max_prompts} once loaded
  modelLoading: null, // promise of the load in progress
  image: null, // {bitmap, name}: what is shown
  encoded: null, // the state.image the engine holds (null after a model change or fatal error)
  result: null, // {image, prompts, logits: Float32Array[] (size x size), size}
  selected: 0, // prompt index for heat map, hover emphasis and export
  overlay: null, // ImageData reused between renders while the image size stays
};
// Counters for tests (tests read window.clipsegDemo; nothing else uses it).
const stats = (window.clipsegDemo = { loads: 0, encodes: 0, segments: 0, renders: 0, state });

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
  const there = await Promise.all(MODELS.map(async (m) => (await isCached(m.url)) || (await exists(m.url))));
  const options = MODELS.map((m, i) => ({ ...m, label: there[i] ? m.label : `${m.label} (not on this server)`, disabled: !there[i] }));
  const wanted = q.get('model');
  if (wanted && !options.some((o) => o.url === wanted)) options.push({ url: wanted, label: `from the address: ${wanted}` });
  for (const o of options) ui.model.append(new Option(o.label, o.url, false, false));
  options.forEach((o, i) => (ui.model.options[i].disabled = !!o.disabled));
  if (['auto', 'webgpu', 'cpu'].includes(q.get('backend'))) ui.backend.value = q.get('backend');
  const first = wanted ?? options.find((o) => !o.disabled)?.url;
  if (!first) {
    ui.model.value = MODELS[0].url;
    ui.progressText.textContent = 'no model pack on this server';
    return status('No model pack on this server: `make demo` puts them in models/ (or open this page with ?model=URL of a .bpk).', 'error');
  }
  ui.model.value = first;
  loadModel();
}

async function exists(url) {
  try {
    return (await fetch(url, { method: 'HEAD', cache: 'no-cache' })).ok;
  } catch {
    return false;
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
    let lastStep = -1;
    const pack = await getPack(url, {
      onStage: (s) => (ui.progressText.textContent = s),
      onProgress: (loaded, total) => {
        const pct = total ? Math.floor((100 * loaded) / total) : -1;
        if (total) (ui.progress.max = total), (ui.progress.value = loaded);
        ui.progressText.textContent = total ? `${mb(loaded)} of ${mb(total)} (${pct}%)` : `${mb(loaded)}`;
        // The live status line only in 10% steps, so screen readers are not flooded.
        if (pct >= 0 && Math.floor(pct / 10) !== lastStep) status(`downloading the model: ${pct}%`);
        lastStep = Math.floor(pct / 10);
      },
    });
    const how = pack.from === 'cache' ? 'from the cache' : 'downloaded';
    ui.progressText.textContent = `${mb(pack.bytes.length)} ${how}; starting the engine…`;
    const r = await client.load(pack.bytes, { backend });
    stats.loads++;
    state.model = { url, backend, max_prompts: r.max_prompts };
    state.encoded = null; // a new engine holds no image
    ui.progress.max = 1;
    ui.progress.value = 1;
    ui.progressText.textContent = `${mb(pack.bytes.length)} ${how}, ready in ${secs(performance.now() - t0)}${pack.notes.length ? `; ${pack.notes.join('; ')}` : ''}`;
    ui.backendInfo.textContent = r.backend === 'webgpu'
      ? `Running on WebGPU: ${r.adapter || 'unnamed adapter'}`
      : `Running on the CPU (wasm)${r.reason ? `: ${r.reason}` : ''}`;
    status('model ready');
  });
  state.modelLoading = p;
  p.catch((e) => {
    ui.progress.max = 1;
    ui.progress.value = 0;
    ui.progressText.textContent = 'loading failed';
    // A failed load keeps the previous engine and its image (clipseg-client.js), unless the
    // worker died: then the client restarts it with the last pack, without the image.
    if (e.fatal) state.encoded = null;
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
  // The engine refuses these too; checking here keeps the current image and its masks.
  if (w > MAX_SIDE || h > MAX_SIDE || w * h > MAX_PIXELS) {
    bitmap.close();
    return status(`${name} is ${w}x${h} px; the limit is ${MAX_SIDE} px per side and ${MAX_PIXELS / 1e6} megapixels`, 'error');
  }
  state.image?.bitmap.close();
  state.image = { bitmap, name };
  state.result = null;
  state.overlay = null;
  for (const c of [ui.image, ui.overlay]) (c.width = w), (c.height = h);
  ui.image.getContext('2d').drawImage(bitmap, 0, 0);
  ui.stage.classList.remove('empty');
  ui.overlay.setAttribute('aria-label', `${name}, ${w}x${h} px, not segmented yet`);
  showLegend();
  status(`${name}: ${w}x${h} px`);
  if (readPrompts().length) segment();
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

// Runs on the current image and prompts. Requests made while one runs collapse into one rerun.
let queued = null;
function segment() {
  queued ??= exclusive(async () => {
    queued = null;
    await runSegment();
  }).catch((e) => {
    if (e.fatal) state.encoded = null; // the engine restarted: the encoded image is gone
    status(`Segmenting: ${e.message}`, 'error'); // the prompts stay as typed
  });
  return queued;
}

async function runSegment() {
  const prompts = readPrompts();
  const image = state.image;
  if (!image) return status('pick a photo first', 'error');
  if (!prompts.length) return status('type at least one prompt', 'error');
  if (!state.model) throw new Error('no model loaded');
  if (prompts.length > state.model.max_prompts) throw new Error(`${prompts.length} prompts; this model takes at most ${state.model.max_prompts} at once`);
  ui.stage.setAttribute('aria-busy', 'true');
  try {
    let encodeMs = null;
    // The engine keeps the encoded image: only a new image (or a new engine) needs encode().
    if (state.encoded !== image) {
      status(`encoding ${image.name}…`);
      state.encoded = null;
      encodeMs = (await client.encode(image.bitmap)).ms;
      stats.encodes++;
      state.encoded = image;
    }
    status(`segmenting ${prompts.length} prompt${prompts.length > 1 ? 's' : ''}…`);
    const r = await client.segment(prompts);
    stats.segments++;
    if (state.image !== image) return; // replaced meanwhile; its own run is queued
    const n = r.size * r.size;
    state.result = { image, prompts, size: r.size, logits: prompts.map((_, k) => toLogits(r.probs.subarray(k * n, (k + 1) * n))) };
    state.selected = Math.min(state.selected, prompts.length - 1);
    ui.timings.textContent = encodeMs === null
      ? `segment ${ms(r.ms)} (image already encoded, not encoded again)`
      : `encode ${ms(encodeMs)} + segment ${ms(r.ms)}`;
    showLegend();
    render();
    status(`done: ${prompts.length} mask${prompts.length > 1 ? 's' : ''}`);
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

// Repaints the overlay from the kept logits: threshold, heat map and selection changes never
// call the model. Coalesced to one repaint per frame while a slider is dragged.
let frame = 0;
function render() {
  if (!frame) frame = requestAnimationFrame(paint);
}

function paint() {
  frame = 0;
  const res = state.result;
  const ctx = ui.overlay.getContext('2d');
  if (!res) return ctx.clearRect(0, 0, ui.overlay.width, ui.overlay.height);
  const { width, height } = ui.overlay;
  if (state.overlay?.width !== width || state.overlay?.height !== height) state.overlay = ctx.createImageData(width, height);
  const threshold = Number(ui.threshold.value);
  if (ui.heatmap.checked) paintHeat(state.overlay, res.logits[state.selected], res.size);
  else paintMasks(state.overlay, res.logits, res.size, threshold, res.prompts.map((_, k) => COLORS[k % COLORS.length]));
  ctx.putImageData(state.overlay, 0, 0);
  stats.renders++;
  const what = ui.heatmap.checked ? `heat map of “${res.prompts[state.selected]}”` : `masks at threshold ${threshold.toFixed(2)}`;
  ui.overlay.setAttribute('aria-label', `${res.image.name} with ${what}`);
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
  ui.exportMask.disabled = ui.exportCutout.disabled = !res;
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

// Probability of every prompt under the pointer, in the legend.
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
  ui.legend.querySelectorAll('.prob').forEach((el, k) => {
    el.textContent = `${(100 * sigmoid(logitAt(res.logits[k], res.size, width, height, x, y))).toFixed(1)}%`;
  });
});
ui.overlay.addEventListener('pointerleave', () => ui.legend.querySelectorAll('.prob').forEach((el) => (el.textContent = '')));

// ---------------------------------------------------------------- export

// kind 'mask': white on black; 'cutout': the photo, transparent outside the mask.
async function exportPng(kind) {
  const res = state.result;
  if (!res) return;
  const { width, height } = ui.overlay;
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  let img;
  if (kind === 'cutout') {
    ctx.drawImage(res.image.bitmap, 0, 0);
    img = ctx.getImageData(0, 0, width, height);
  } else {
    img = ctx.createImageData(width, height);
  }
  const d = img.data;
  forMask(width, height, res.logits[state.selected], res.size, Number(ui.threshold.value), kind === 'cutout'
    ? (o, inside) => inside || (d[o + 3] = 0)
    : (o, inside) => (d[o] = d[o + 1] = d[o + 2] = inside ? 255 : 0, d[o + 3] = 255));
  ctx.putImageData(img, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  if (!blob) return status('the browser could not encode the PNG (image too large?)', 'error');
  const prompt = res.prompts[state.selected].replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-|-$/g, '').slice(0, 40) || 'prompt';
  const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: `${kind}-${prompt}.png` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000); // after the download has started
  status(`saved ${a.download} (${width}x${height} px)`);
}

ui.exportMask.addEventListener('click', () => exportPng('mask'));
ui.exportCutout.addEventListener('click', () => exportPng('cutout'));

// ---------------------------------------------------------------- helpers

const mb = (n) => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
const ms = (t) => `${Math.round(t)} ms`;
const secs = (t) => `${(t / 1000).toFixed(1)} s`;

applyOpacity();
// Offline visits (sw.js); service workers need a secure context (https, localhost).
navigator.serviceWorker?.register('sw.js').catch((e) => console.warn('no offline support:', e.message));
initModels().catch((e) => status(e.message, 'error'));

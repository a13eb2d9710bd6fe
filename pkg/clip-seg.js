// <clip-seg src="photo.jpg" prompt="the cat" model="https://…/clipseg-q8.bpk.json"></clip-seg>
//
// An embeddable widget: the photo with the masks of its prompts over it and a one-line caption
// (prompts, timings). One `import 'clipseg-web/element'` (or <script type="module"
// src=".../clip-seg.js">) per page; every widget on the page shares one ClipSegClient, i.e. one
// Web Worker and one engine, which downloads (sha256-checks and keeps in Cache Storage:
// pack-cache.js) each model once.
//
// The worker holds one model, one encoded image and one segmentation at a time, so widget
// requests run one after another, in the order they were made: a widget whose image (and model)
// is the one encoded re-segments with the text encoder and decoder only; any other re-encodes
// (and reloads the model first if it differs). A widget asks at most once at a time: attribute
// changes made while its request waits are read when it runs. The engine draws the masks at the
// image's size; the widget only paints them.
//
// Attributes (all reactive):
//   src        the image (same rules as <img src>; cross-origin images need CORS)
//   prompt     what to find; several prompts separated by "|" ("the cat | the sofa")
//   examples   image prompts, "find things like this": URLs of example images separated by spaces;
//              a Media Fragments box (`dog.jpg#xywh=40,30,200,150`, pixels) takes that region,
//              cropped, its surroundings blurred and darkened (the CLI's --visual-prompt
//              REF@X,Y,W,H); their masks follow the prompts'. Each is encoded once per model
//   model      the pack (.bpk) or split pack's manifest (.json), relative to the page, from any
//              origin that allows CORS
//   threshold  mask threshold in (0, 1), default 0.5: changing it asks the engine for the masks
//              at the new threshold; the model re-runs only if another widget's segmentation
//              has replaced this one's in the engine meanwhile
//   backend    auto (default) | webgpu | cpu; the engine is shared, so the last request wins
//   The masks, as the CLI's --subtract, --union, --dilate / --erode, --feather, --soft make them
//   (the same bytes as its PNGs; see ClipSegClient.compose):
//   subtract   prompts whose masks are removed from every mask, separated by "|"
//   union      present: one mask from all the prompts
//   grow       grow every mask by this many pixels, shrink where negative (default 0)
//   feather    soft edges over this many pixels: alpha 0..255 (default 0)
//   soft       present: probabilities as 0..255 instead of 0/255 (not with grow or feather)
//   Changing union, grow, feather or soft (like threshold) only asks the engine for the masks.
//
// Events (bubbling, composed; see clip-seg.d.ts):
//   clipseg-progress  {model, loaded, total}: the model downloading (total 0 when unknown)
//   clipseg-ready     {model, backend, wasm, adapter, reason}: the engine holds the widget's
//                     model (once per model and backend)
//   clipseg-result    {prompts, threshold, masks: [{prompt, width, height, data}], encodeMs,
//                     segmentMs}: data has width*height bytes, 255 inside the mask, 0 outside
//                     (grey levels between with feather or soft); one mask per prompt, or one
//                     for all with union (its prompt "a | b"); encodeMs is null when the image
//                     was already encoded, both are null when only the threshold (or union,
//                     grow, feather, soft) changed
//   clipseg-error     {message}
// No inline styles: the shadow root's styles are a constructed CSSStyleSheet
// (adoptedStyleSheets), which a CSP of style-src 'self' allows; size it from outside with
// `clip-seg { width: ... }`.
import { ClipSegClient, decodeImage, checkImageSize, composeEach } from './clipseg-client.js';
import { paintLabels, paintMasks } from './masks.js';

// One colour per prompt, in order (Okabe–Ito, distinguishable with colour blindness; the demo
// page's).
const COLORS = [[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178], [213, 94, 0], [204, 121, 167], [255, 255, 255]];

// ------------------------------------------------------------------ shared by every widget

const shared = {
  client: null, // one ClipSegClient, started by the first request
  loaded: null, // `${url} ${backend}` the engine holds
  ready: null, // clipseg-ready's detail for `loaded`
  encoded: null, // `${url} ${backend} ${image URL}` the engine holds encoded
  examples: new Map(), // example spec → its id in the engine that holds `loaded`
  segmented: null, // keyOf() of the segmentation whose maps the engine holds
  chain: Promise.resolve(), // requests, one at a time
  waiting: new Set(), // widgets with a request queued
  widgets: new Set(), // connected widgets, for load progress
};
// Counters for tests and curious pages: customElements.get('clip-seg').stats.
const stats = { loads: 0, encodes: 0, examples: 0, segments: 0, labels: 0, masks: 0 };

function request(widget) {
  if (shared.waiting.has(widget)) return; // its queued request will read the new attributes
  shared.waiting.add(widget);
  shared.chain = shared.chain.then(() => {
    shared.waiting.delete(widget);
    return widget._run();
  }).catch((e) => console.error('clip-seg:', e));
}

const keyOf = (url, backend, imageUrl, prompts) => JSON.stringify([url, backend, imageUrl, prompts.map((p) => p.example?.spec ?? p)]);

// Runs the prompts on the widget's image: loads the model and encodes the image only when the
// engine holds others. Resolves {labels, encodeMs (null when not encoded), segmentMs}.
async function segmentOn(url, backend, image, prompts, threshold) {
  shared.client ??= new ClipSegClient();
  const modelKey = `${url} ${backend}`, imageKey = `${modelKey} ${image.url}`;
  try {
    if (shared.loaded !== modelKey) {
      shared.loaded = shared.encoded = shared.segmented = shared.ready = null;
      shared.examples.clear();
      const onProgress = (loaded, total) => {
        const text = total ? `loading the model: ${Math.floor((100 * loaded) / total)}%` : `loading the model: ${(loaded / 1e6).toFixed(1)} MB`;
        for (const w of shared.widgets) if (w._model === url && w._busy) (w._caption(text), w._emit('clipseg-progress', { model: url, loaded, total }));
      };
      const r = await shared.client.load(url, { backend, onProgress });
      stats.loads++;
      shared.loaded = modelKey;
      shared.ready = { model: url, backend: r.backend, wasm: r.wasm, adapter: r.adapter, reason: r.reason };
    }
    let encodeMs = null;
    if (shared.encoded !== imageKey) {
      shared.encoded = shared.segmented = null;
      encodeMs = (await shared.client.encode(image.bitmap)).ms;
      stats.encodes++;
      shared.encoded = imageKey;
    }
    const r = await shared.client.segment(await withExampleIds(prompts), { threshold });
    stats.segments++;
    shared.segmented = keyOf(url, backend, image.url, prompts);
    return { labels: r.labels, encodeMs, segmentMs: r.ms };
  } catch (e) {
    // A fatal error restarts the worker with the last pack it loaded, without the image.
    if (e.fatal) lostEngine();
    throw e;
  }
}

function lostEngine() {
  shared.encoded = shared.segmented = null;
  shared.examples.clear();
}

// `prompts` with each example ({example: spec}) replaced by its id, encoded where the engine
// lacks it.
async function withExampleIds(prompts) {
  const out = [];
  for (const p of prompts) {
    if (typeof p === 'string') {
      out.push(p);
      continue;
    }
    let id = shared.examples.get(p.example.spec);
    if (id === undefined) {
      const { url, region } = p.example;
      const bitmap = await fetchBitmap(url, `example ${url.split('/').pop()}`);
      try {
        id = (await shared.client.encodeExample(bitmap, { region })).id;
      } finally {
        bitmap.close();
      }
      stats.examples++;
      shared.examples.set(p.example.spec, id);
    }
    out.push(id);
  }
  return out;
}

// The image at `url`, decoded as the engine reads it; errors name it as `name`.
async function fetchBitmap(url, name) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${name}: HTTP ${res.status}`);
  try {
    return await decodeImage(await res.blob());
  } catch {
    throw new Error(`${name}: not an image this browser can decode`);
  }
}

// The examples attribute: [{spec, url, region, name}]; throws on a malformed box.
function examplesOf(el) {
  return (el.getAttribute('examples') ?? '').split(/\s+/).filter(Boolean).map((spec) => {
    const url = new URL(spec, document.baseURI);
    const box = url.hash.match(/^#xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)$/);
    if (url.hash && !box) throw new Error(`examples: "${spec}": a region is #xywh=X,Y,WIDTH,HEIGHT in pixels`);
    const region = box && { x: +box[1], y: +box[2], width: +box[3], height: +box[4] };
    url.hash = '';
    const name = `like ${url.pathname.split('/').pop()}${region ? ` (${box[1]},${box[2]} ${box[3]}x${box[4]})` : ''}`;
    return { spec: `${url.href}${box ? box[0] : ''}`, url: url.href, region, name };
  });
}

// The labels at `threshold` from the maps the engine holds for the widget.
async function relabel(threshold) {
  try {
    const { labels } = await shared.client.labels(threshold);
    stats.labels++;
    return labels;
  } catch (e) {
    if (e.fatal) lostEngine();
    throw e;
  }
}

// clipseg-result's masks. Plain: one prompt's is its label map (0 inside) turned 255/0;
// several prompts' masks overlap, so each is asked of the engine (maps it holds: no model run).
// Refined (`refine` has subtract, union, grow, feather or soft): each composed by the engine.
async function masksOf(prompts, refine, labels, threshold, width, height) {
  const plain = !refine.subtract.length && !refine.union && !refine.grow && !refine.feather && !refine.soft;
  if (plain && prompts.length === 1) return [{ prompt: prompts[0], width, height, data: labels.map((l) => (l === 0 ? 255 : 0)) }];
  const masks = [];
  try {
    for (const { prompt, ...compose } of composeEach(prompts, refine.subtract, refine)) {
      const { mask } = plain ? await shared.client.mask(compose.include[0], threshold) : await shared.client.compose({ ...compose, threshold });
      stats.masks++;
      masks.push({ prompt, width, height, data: mask });
    }
  } catch (e) {
    if (e.fatal) lostEngine();
    throw e;
  }
  return masks;
}

// The refine attributes: {subtract, union, grow, feather, soft}; throws on a value that is not
// a whole number of pixels in range.
function refineOf(el) {
  const px = (name, min) => {
    const text = el.getAttribute(name) ?? '0', v = Number(text);
    if (!Number.isInteger(v) || v < min || v > 4096) throw new Error(`${name}="${text}": a whole number of pixels within ${min}..4096`);
    return v;
  };
  // The engine refuses soft with grow or feather (Compose::check), in one line.
  return { subtract: promptsOf(el.getAttribute('subtract')), union: el.hasAttribute('union'), grow: px('grow', -4096), feather: px('feather', 0), soft: el.hasAttribute('soft') };
}

// "the cat | the sofa" → ['the cat', 'the sofa'].
const promptsOf = (attribute) => (attribute ?? '').split('|').map((p) => p.trim()).filter(Boolean);

// ------------------------------------------------------------------ the element

const sheet = new CSSStyleSheet();
sheet.replaceSync(`
:host { display: inline-block; max-width: 100%; vertical-align: top; font: 0.85rem/1.35 system-ui, sans-serif; }
:host([hidden]) { display: none; }
figure { margin: 0; }
.stage { position: relative; background: #8882; min-height: 4rem; }
canvas { display: block; width: 100%; height: auto; }
canvas.overlay { position: absolute; inset: 0; height: 100%; opacity: 0.55; }
figcaption { margin-top: 0.3rem; color: inherit; opacity: 0.8; overflow-wrap: anywhere; }
figcaption.error { color: #b00020; opacity: 1; }
.prompt::before { content: ''; display: inline-block; width: 0.7em; height: 0.7em; margin-right: 0.3em; border-radius: 2px; vertical-align: baseline; }
${COLORS.map((c, i) => `.prompt.c${i}::before { background: rgb(${c}); }`).join('\n')}
`);

export class ClipSeg extends HTMLElement {
  static observedAttributes = ['src', 'prompt', 'examples', 'model', 'threshold', 'backend', 'subtract', 'union', 'grow', 'feather', 'soft'];
  static stats = stats;

  // The shared engine's memory (ClipSegClient.stats()); null before any widget asked for it.
  static engineStats() {
    return shared.client ? shared.client.stats() : Promise.resolve(null);
  }

  #image = null; // {url, bitmap, promise}: the decoded src
  #result = null; // see `result`
  #key = null; // keyOf() of #result: whether the engine still holds its maps (shared.segmented)
  #refined = null; // the refine attributes of #result's masks, as JSON
  #readyFor = null; // shared.loaded when this widget last fired clipseg-ready
  #ui;
  _busy = false;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [sheet];
    const figure = document.createElement('figure');
    const stage = Object.assign(document.createElement('div'), { className: 'stage' });
    const image = Object.assign(document.createElement('canvas'), { className: 'image', width: 0, height: 0 });
    const overlay = Object.assign(document.createElement('canvas'), { className: 'overlay', width: 0, height: 0 });
    image.setAttribute('aria-hidden', 'true');
    overlay.setAttribute('role', 'img');
    const caption = document.createElement('figcaption');
    stage.append(image, overlay);
    figure.append(stage, caption);
    root.append(figure);
    this.#ui = { image, overlay, caption };
  }

  get _model() {
    const m = this.getAttribute('model');
    return m ? new URL(m, document.baseURI).href : null;
  }

  // The last result, or null: {prompts, threshold, width, height, labels, masks}: labels has
  // one byte per pixel of the image, the index of the prompt whose mask holds it (highest
  // logit first), 255 where none does; masks as clipseg-result's.
  get result() {
    return this.#result;
  }

  connectedCallback() {
    shared.widgets.add(this);
    this.#refresh();
  }

  disconnectedCallback() {
    shared.widgets.delete(this);
  }

  attributeChangedCallback(name, old, value) {
    if (old === value || !this.isConnected) return; // connectedCallback covers the first time
    // A new threshold or refinement is a request of its own (at most one waits): _run reads
    // the attributes.
    if (REMASK.includes(name)) return this.#result && request(this);
    if (name === 'src') {
      this.#image = null;
      this.#result = null;
    }
    this.#refresh();
  }

  #refresh() {
    const prompts = promptsOf(this.getAttribute('prompt'));
    if (!this.getAttribute('src')) return this.#fail([], new Error('no src attribute'));
    this.#loadImage().catch(() => {}); // shows the photo while the model loads; errors in _run
    if (!prompts.length && !this.getAttribute('examples')?.trim()) return this.#fail([], new Error('no prompt attribute (nor examples)'));
    if (!this._model) return this.#fail(prompts, new Error('no model attribute: the URL of a model pack (.bpk) or of a split pack’s manifest (.json)'));
    this._busy = true;
    this._caption(`${quote(prompts)}: waiting…`);
    request(this);
  }

  #loadImage() {
    const url = new URL(this.getAttribute('src'), document.baseURI).href;
    if (this.#image?.url === url) return this.#image.promise;
    const image = { url, bitmap: null };
    image.promise = (async () => {
      const bitmap = await fetchBitmap(url, url.split('/').pop());
      const { width: w, height: h } = bitmap;
      // Known once a model has loaded; before, the engine refuses at encode.
      const refused = checkImageSize(w, h, shared.client?.limits);
      if (refused) throw new Error(refused);
      if (this.#image !== image) return bitmap; // src changed meanwhile
      image.bitmap = bitmap;
      const { image: c, overlay } = this.#ui;
      for (const canvas of [c, overlay]) (canvas.width = w), (canvas.height = h);
      c.getContext('2d').drawImage(bitmap, 0, 0);
      overlay.setAttribute('aria-label', `${url.split('/').pop()}, not segmented yet`);
      return bitmap;
    })();
    this.#image = image;
    image.promise.catch(() => this.#image === image && (this.#image = null)); // next time, again
    return image.promise;
  }

  // Called from the shared queue: reads the attributes as they are now.
  async _run() {
    const texts = promptsOf(this.getAttribute('prompt'));
    const url = this._model, backend = this.getAttribute('backend') || 'auto';
    const threshold = this.#threshold();
    let refine, examples;
    try {
      refine = refineOf(this);
      examples = examplesOf(this);
    } catch (e) {
      this._busy = false;
      return this.#fail(texts, e);
    }
    // The prompts as the masks name them: the texts, then the examples.
    const prompts = texts.concat(examples.map((x) => x.name));
    if (!this.isConnected || !prompts.length || !url || !this.getAttribute('src')) return (this._busy = false);
    // The engine segments the examples after the texts, and the prompts to subtract last.
    const all = [...texts, ...examples.map((example) => ({ example })), ...refine.subtract];
    const res = this.#result, refineKey = JSON.stringify(refine);
    // Only the threshold or the refinement changed and the engine still holds this widget's
    // maps: no model run.
    if (res && this.#key === shared.segmented && this.#key === keyOf(url, backend, this.#image?.url, all)) {
      if (res.threshold === threshold && this.#refined === refineKey) return;
      try {
        const labels = await relabel(threshold);
        const masks = await masksOf(prompts, refine, labels, threshold, res.width, res.height);
        if (this.#result !== res) return; // src changed meanwhile
        this.#result = { ...res, threshold, labels, masks };
        this.#refined = refineKey;
        this.#paint();
        this._emit('clipseg-result', { prompts, threshold, masks, encodeMs: null, segmentMs: null });
      } catch (e) {
        this.#fail(prompts, e);
      }
      return;
    }
    this._busy = true;
    try {
      // Until the decoded image is the current src's (src may change while one decodes).
      do await this.#loadImage();
      while (!this.#image?.bitmap);
      const image = this.#image;
      this._caption(`${quote(prompts)}: segmenting…`);
      const r = await segmentOn(url, backend, image, all, threshold);
      if (this.#readyFor !== shared.loaded) {
        this.#readyFor = shared.loaded;
        this._emit('clipseg-ready', shared.ready);
      }
      const { width, height } = image.bitmap;
      const masks = await masksOf(prompts, refine, r.labels, threshold, width, height);
      if (this.#image !== image) return; // src changed meanwhile: its own request is queued
      this.#result = { prompts, threshold, width, height, labels: r.labels, masks };
      this.#refined = refineKey;
      this.#key = keyOf(url, backend, image.url, all);
      this._busy = false;
      this.#paint();
      const timing = r.encodeMs === null ? `segment ${ms(r.segmentMs)} (image already encoded)` : `encode ${ms(r.encodeMs)} + segment ${ms(r.segmentMs)}`;
      this.#captionPrompts(prompts, timing);
      this._emit('clipseg-result', { prompts, threshold, masks, encodeMs: r.encodeMs, segmentMs: r.segmentMs });
      if (this.#threshold() !== threshold || this.#refineNow() !== refineKey) request(this); // changed while this ran
    } catch (e) {
      this._busy = false;
      this.#fail(prompts, e);
    }
  }

  #refineNow() {
    try {
      return JSON.stringify(refineOf(this));
    } catch {
      return null;
    }
  }

  #threshold() {
    const t = Number(this.getAttribute('threshold') ?? 0.5);
    return t > 0 && t < 1 ? t : 0.5;
  }

  #fail(prompts, e) {
    this._caption(prompts.length ? `${quote(prompts)}: ${e.message}` : e.message, true);
    this._emit('clipseg-error', { message: e.message });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  #paint() {
    const res = this.#result, { overlay } = this.#ui;
    const ctx = overlay.getContext('2d');
    if (!res || !overlay.width) return ctx.clearRect(0, 0, overlay.width, overlay.height);
    const img = ctx.createImageData(overlay.width, overlay.height);
    const colors = res.prompts.map((_, i) => COLORS[i % COLORS.length]);
    // Refined masks are painted as they are (grey levels as alpha); plain ones by label.
    if (this.#refined === PLAIN) paintLabels(img, res.labels, colors);
    else paintMasks(img, res.masks.map((m) => m.data), colors);
    ctx.putImageData(img, 0, 0);
    overlay.setAttribute('aria-label', `${this.#image.url.split('/').pop()} with the masks of ${quote(res.prompts)} at threshold ${res.threshold}`);
  }

  _caption(text, error = false) {
    this.#ui.caption.textContent = text;
    this.#ui.caption.className = error ? 'error' : '';
  }

  #captionPrompts(prompts, timing) {
    const spans = prompts.map((p, i) => Object.assign(document.createElement('span'), { className: `prompt c${i % COLORS.length}`, textContent: `“${p}” ` }));
    this.#ui.caption.className = '';
    this.#ui.caption.replaceChildren(...spans, `· ${timing}`);
  }
}

// Attributes whose change only asks the engine for the masks again.
const REMASK = ['threshold', 'union', 'grow', 'feather', 'soft'];
const PLAIN = JSON.stringify({ subtract: [], union: false, grow: 0, feather: 0, soft: false });
const ms = (t) => `${Math.round(t)} ms`;
const quote = (prompts) => prompts.map((p) => `“${p}”`).join(', ');

if (!customElements.get('clip-seg')) customElements.define('clip-seg', ClipSeg);

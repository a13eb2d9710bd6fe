// <clip-seg src="photo.jpg" prompt="the cat" model="../models/clipseg-q8.bpk"></clip-seg>
//
// An embeddable widget: the photo with the mask of the prompt over it and a one-line caption
// (prompt, timings). One <script type="module" src=".../www/clip-seg.js"> per page; every
// widget on the page shares one ClipSegClient, i.e. one Web Worker and one engine. Each model
// URL is downloaded (and sha256-checked, and kept in Cache Storage: pack-cache.js) once per
// page, however many widgets use it.
//
// The worker holds one model, one encoded image and one segmentation at a time, so widget
// requests run one after another, in the order they were made: a widget whose image (and model)
// is the one encoded re-segments with the text encoder and decoder only; any other re-encodes
// (and reloads the model first if it differs). A widget asks at most once at a time: attribute
// changes made while its request waits are read when it runs. The engine draws the mask at the
// image's size (labels); the widget only paints it.
//
// Attributes (all reactive):
//   src        the image (same rules as <img src>; cross-origin images need CORS)
//   prompt     what to find
//   model      the pack, relative to the page; default ../models/clipseg-q8.bpk next to www/
//   threshold  mask threshold in (0, 1), default 0.5: changing it asks the engine for the mask
//              at the new threshold; the model re-runs only if another widget's segmentation
//              has replaced this one's in the engine meanwhile
//   backend    auto (default) | webgpu | cpu; the engine is shared, so the last request wins
//
// Events: 'clipseg-done' (detail {prompt, encodeMs, segmentMs}), 'clipseg-error' (detail
// {message}). No inline styles: the shadow root's styles are a constructed CSSStyleSheet
// (adoptedStyleSheets), which a CSP of style-src 'self' allows; size it from outside with
// `clip-seg { width: ... }`.
import { ClipSegClient, decodeImage, checkImageSize } from './clipseg-client.js';
import { getPack } from './pack-cache.js';
import { paintLabels } from './masks.js';

const DEFAULT_MODEL = new URL('../models/clipseg-q8.bpk', import.meta.url).href;
const COLOR = [230, 159, 0]; // the page's first prompt colour (Okabe–Ito orange)

// ------------------------------------------------------------------ shared by every widget

const shared = {
  client: null, // one ClipSegClient, started by the first request
  packs: new Map(), // model URL → promise of {bytes, from}: one download per URL
  loaded: null, // `${url} ${backend}` the engine holds
  encoded: null, // `${url} ${backend} ${image URL}` the engine holds encoded
  segmented: null, // `${url} ${backend} ${image URL} ${prompt}` whose maps the engine holds
  chain: Promise.resolve(), // requests, one at a time
  waiting: new Set(), // widgets with a request queued
  widgets: new Set(), // connected widgets, for load progress
};
// Counters for tests and curious pages: customElements.get('clip-seg').stats.
const stats = { downloads: 0, loads: 0, encodes: 0, segments: 0, labels: 0 };

function request(widget) {
  if (shared.waiting.has(widget)) return; // its queued request will read the new attributes
  shared.waiting.add(widget);
  shared.chain = shared.chain.then(() => {
    shared.waiting.delete(widget);
    return widget._run();
  }).catch((e) => console.error('clip-seg:', e));
}

async function pack(url) {
  let p = shared.packs.get(url);
  if (!p) {
    stats.downloads++;
    p = getPack(url, {
      onProgress: (loaded, total) => {
        const text = total ? `loading the model: ${Math.floor((100 * loaded) / total)}%` : `loading the model: ${(loaded / 1e6).toFixed(1)} MB`;
        for (const w of shared.widgets) if (w._model === url && w._busy) w._caption(text);
      },
    });
    shared.packs.set(url, p);
    // Widgets asking meanwhile share the failure; one asking later tries again.
    p.catch(() => setTimeout(() => shared.packs.get(url) === p && shared.packs.delete(url), 10_000));
  }
  return p;
}

const keyOf = (url, backend, imageUrl, prompt) => `${url} ${backend} ${imageUrl} ${prompt}`;

// Runs prompt on the widget's image: loads the model and encodes the image only when the
// engine holds others. Resolves {labels, encodeMs (null when not encoded), segmentMs}.
async function segmentOn(url, backend, image, prompt, threshold) {
  shared.client ??= new ClipSegClient();
  const modelKey = `${url} ${backend}`, imageKey = `${modelKey} ${image.url}`;
  try {
    if (shared.loaded !== modelKey) {
      const { bytes } = await pack(url);
      shared.loaded = shared.encoded = shared.segmented = null;
      await shared.client.load(bytes, { backend });
      stats.loads++;
      shared.loaded = modelKey;
    }
    let encodeMs = null;
    if (shared.encoded !== imageKey) {
      shared.encoded = shared.segmented = null;
      encodeMs = (await shared.client.encode(image.bitmap)).ms;
      stats.encodes++;
      shared.encoded = imageKey;
    }
    const r = await shared.client.segment([prompt], { threshold });
    stats.segments++;
    shared.segmented = keyOf(url, backend, image.url, prompt);
    return { labels: r.labels, encodeMs, segmentMs: r.ms };
  } catch (e) {
    // A fatal error restarts the worker with the last pack it loaded, without the image.
    if (e.fatal) shared.encoded = shared.segmented = null;
    throw e;
  }
}

// The widget's mask at `threshold` from the maps the engine holds for it. Resolves the labels.
async function relabel(threshold) {
  try {
    const { labels } = await shared.client.labels(threshold);
    stats.labels++;
    return labels;
  } catch (e) {
    if (e.fatal) shared.encoded = shared.segmented = null;
    throw e;
  }
}

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
.prompt::before { content: ''; display: inline-block; width: 0.7em; height: 0.7em; margin-right: 0.3em; border-radius: 2px; background: rgb(${COLOR}); vertical-align: baseline; }
`);

export class ClipSeg extends HTMLElement {
  static observedAttributes = ['src', 'prompt', 'model', 'threshold', 'backend'];
  static stats = stats;

  #image = null; // {url, bitmap, promise}: the decoded src
  #result = null; // see `result`
  #key = null; // keyOf() of #result: whether the engine still holds its maps (shared.segmented)
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
    return m ? new URL(m, document.baseURI).href : DEFAULT_MODEL;
  }

  // The last result, or null: {prompt, threshold, width, height, labels}, labels being the
  // image's width x height pixels, 0 inside the prompt's mask and 255 outside.
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
    // A new threshold is a request of its own (at most one waits): _run reads the attribute.
    if (name === 'threshold') return this.#result && request(this);
    if (name === 'src') {
      this.#image = null;
      this.#result = null;
    }
    this.#refresh();
  }

  #refresh() {
    const prompt = (this.getAttribute('prompt') ?? '').trim();
    if (!this.getAttribute('src')) return this._caption('no src attribute', true);
    this.#loadImage().catch(() => {}); // shows the photo while the model loads; errors in _run
    if (!prompt) return this._caption('no prompt attribute', true);
    this._busy = true;
    this._caption(`“${prompt}”: waiting…`);
    request(this);
  }

  #loadImage() {
    const url = new URL(this.getAttribute('src'), document.baseURI).href;
    if (this.#image?.url === url) return this.#image.promise;
    const image = { url, bitmap: null };
    image.promise = (async () => {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`${url.split('/').pop()}: HTTP ${res.status}`);
      let bitmap;
      try {
        bitmap = await decodeImage(await res.blob());
      } catch {
        throw new Error(`${url.split('/').pop()}: not an image this browser can decode`);
      }
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
    const prompt = (this.getAttribute('prompt') ?? '').trim();
    if (!this.isConnected || !prompt || !this.getAttribute('src')) return (this._busy = false);
    const url = this._model, backend = this.getAttribute('backend') || 'auto';
    const threshold = this.#threshold();
    const res = this.#result;
    // Only the threshold changed and the engine still holds this widget's maps: no model run.
    if (res && this.#key === shared.segmented && this.#key === keyOf(url, backend, this.#image?.url, prompt)) {
      if (res.threshold === threshold) return;
      try {
        const labels = await relabel(threshold);
        if (this.#result !== res) return; // src changed meanwhile
        this.#result = { ...res, threshold, labels };
        this.#paint();
      } catch (e) {
        this.#fail(prompt, e);
      }
      return;
    }
    this._busy = true;
    try {
      // Until the decoded image is the current src's (src may change while one decodes).
      do await this.#loadImage();
      while (!this.#image?.bitmap);
      const image = this.#image;
      this._caption(`“${prompt}”: segmenting…`);
      const r = await segmentOn(url, backend, image, prompt, threshold);
      if (this.#image !== image) return; // src changed meanwhile: its own request is queued
      const { width, height } = image.bitmap;
      this.#result = { prompt, threshold, width, height, labels: r.labels };
      this.#key = keyOf(url, backend, image.url, prompt);
      this._busy = false;
      this.#paint();
      const timing = r.encodeMs === null ? `segment ${ms(r.segmentMs)} (image already encoded)` : `encode ${ms(r.encodeMs)} + segment ${ms(r.segmentMs)}`;
      this.#captionPrompt(prompt, timing);
      this.dispatchEvent(new CustomEvent('clipseg-done', { detail: { prompt, encodeMs: r.encodeMs, segmentMs: r.segmentMs } }));
      if (this.#threshold() !== threshold) request(this); // changed while this ran
    } catch (e) {
      this._busy = false;
      this.#fail(prompt, e);
    }
  }

  #threshold() {
    const t = Number(this.getAttribute('threshold') ?? 0.5);
    return t > 0 && t < 1 ? t : 0.5;
  }

  #fail(prompt, e) {
    this._caption(`“${prompt}”: ${e.message}`, true);
    this.dispatchEvent(new CustomEvent('clipseg-error', { detail: { message: e.message } }));
  }

  #paint() {
    const res = this.#result, { overlay } = this.#ui;
    const ctx = overlay.getContext('2d');
    if (!res || !overlay.width) return ctx.clearRect(0, 0, overlay.width, overlay.height);
    const img = ctx.createImageData(overlay.width, overlay.height);
    paintLabels(img, res.labels, [COLOR]);
    ctx.putImageData(img, 0, 0);
    overlay.setAttribute('aria-label', `${this.#image.url.split('/').pop()} with the mask of “${res.prompt}” at threshold ${res.threshold}`);
  }

  _caption(text, error = false) {
    this.#ui.caption.textContent = text;
    this.#ui.caption.className = error ? 'error' : '';
  }

  #captionPrompt(prompt, timing) {
    const p = Object.assign(document.createElement('span'), { className: 'prompt', textContent: `“${prompt}”` });
    this.#ui.caption.className = '';
    this.#ui.caption.replaceChildren(p, ` · ${timing}`);
  }
}

const ms = (t) => `${Math.round(t)} ms`;

if (!customElements.get('clip-seg')) customElements.define('clip-seg', ClipSeg);

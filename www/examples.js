// "Find things like this": image prompts for the demo page. An example is a box the user drags
// over the photo or a part of it brushed over (the engine crops it with context, blurs and
// darkens its surroundings: the CLIPSeg paper's visual prompt engineering, src/example.rs), or
// another image. The engine encodes each once and keeps it by id; after a model load or an
// engine restart the page encodes it again from what it kept: the marked part's view (exactly
// the pixels the model saw) or the other image.

import { decodeImage } from '../pkg/clipseg-client.js';

// Smallest region side accepted, in photo pixels (a click is not a region).
const MIN_SIDE = 4;

export class Examples {
  #client;
  #ui;
  #photo; // () => {bitmap, name} | null: the photo shown
  #changed; // called after an example is added or removed
  #engine; // () => the engine's generation: changes with every model load and engine restart
  #mode = null; // 'box' | 'brush' while marking
  #mark = null; // while dragging: {x0, y0, x1, y1} (box) or {x, y} the last point (brush), photo pixels
  items = []; // {label, region? | marks?, source: ImageData | ImageBitmap, id, engine}

  constructor({ client, ui, photo, changed, engine }) {
    this.#client = client;
    this.#engine = engine;
    this.#ui = ui;
    this.#photo = photo;
    this.#changed = changed;
    ui.markRegion.addEventListener('click', () => this.#setMarking(this.#mode === 'box' ? null : 'box'));
    ui.markBrush.addEventListener('click', () => this.#setMarking(this.#mode === 'brush' ? null : 'brush'));
    ui.exampleFile.addEventListener('change', () => {
      const file = ui.exampleFile.files[0];
      ui.exampleFile.value = '';
      if (file) this.#addFile(file).catch((e) => this.#fail(e));
    });
    const { marks } = ui;
    marks.addEventListener('pointerdown', (e) => {
      const p = this.#point(e);
      if (!this.#mode || !p) return;
      marks.setPointerCapture(e.pointerId);
      this.#mark = this.#mode === 'box' ? { x0: p.x, y0: p.y, x1: p.x, y1: p.y } : p;
      if (this.#mode === 'brush') this.#brush(p);
    });
    marks.addEventListener('pointermove', (e) => {
      const p = this.#point(e, true);
      if (!this.#mark || !p) return;
      if (this.#mode === 'brush') return this.#brush(p);
      Object.assign(this.#mark, { x1: p.x, y1: p.y });
      this.#drawBox();
    });
    marks.addEventListener('pointerup', () => this.#finishMark().catch((e) => this.#fail(e)));
    document.addEventListener('keydown', (e) => e.key === 'Escape' && this.#mode && this.#setMarking(null));
  }

  // The photo changed: its size is the marking canvas's; a drag in progress is dropped.
  photoChanged(width, height) {
    Object.assign(this.#ui.marks, { width, height });
    this.#mark = null;
  }

  // Encodes the examples the current engine does not hold yet; returns their ids in order.
  async ids() {
    const engine = this.#engine();
    for (const ex of this.items) {
      if (ex.engine === engine) continue;
      const r = await this.#client.encodeExample(ex.source);
      Object.assign(ex, { id: r.id, engine });
    }
    return this.items.map((ex) => ex.id);
  }

  labels() {
    return this.items.map((ex) => ex.label);
  }

  // Marking a 'box', 'brush' strokes, or nothing (null).
  #setMarking(mode) {
    this.#mode = mode && this.#photo() ? mode : null;
    this.#ui.markRegion.setAttribute('aria-pressed', String(this.#mode === 'box'));
    this.#ui.markBrush.setAttribute('aria-pressed', String(this.#mode === 'brush'));
    this.#ui.marks.classList.toggle('marking', !!this.#mode);
    if (mode && !this.#mode) this.#status('pick a photo first, then mark a part of it', 'error');
    this.#clearMark();
  }

  // Photo pixel under the pointer (clamped into the photo when `clamp`), letterboxing allowed.
  #point(e, clamp = false) {
    const c = this.#ui.marks;
    const rect = c.getBoundingClientRect();
    const scale = Math.min(rect.width / c.width, rect.height / c.height);
    let x = Math.floor((e.clientX - rect.left - (rect.width - c.width * scale) / 2) / scale);
    let y = Math.floor((e.clientY - rect.top - (rect.height - c.height * scale) / 2) / scale);
    if (clamp) (x = Math.min(Math.max(x, 0), c.width)), (y = Math.min(Math.max(y, 0), c.height));
    return x >= 0 && y >= 0 && x <= c.width && y <= c.height ? { x, y } : null;
  }

  #region() {
    const m = this.#mark;
    const x = Math.min(m.x0, m.x1), y = Math.min(m.y0, m.y1);
    return { x, y, width: Math.abs(m.x1 - m.x0), height: Math.abs(m.y1 - m.y0) };
  }

  // A brush stroke from the last point to `p`, its width 1/25 of the photo's longer side.
  #brush(p) {
    const c = this.#ui.marks, ctx = c.getContext('2d');
    Object.assign(ctx, { lineWidth: Math.max(4, Math.round(Math.max(c.width, c.height) / 25)), lineCap: 'round', lineJoin: 'round', strokeStyle: 'rgba(255, 255, 255, 0.6)' });
    ctx.setLineDash([]);
    ctx.beginPath();
    ctx.moveTo(this.#mark.x, this.#mark.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
    this.#mark = p;
  }

  // The brushed pixels: 1 where the stroke's alpha is at least half.
  #brushed() {
    const c = this.#ui.marks;
    const alpha = c.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, c.width, c.height).data;
    const marks = new Uint8Array(c.width * c.height);
    for (let i = 0; i < marks.length; i++) marks[i] = alpha[4 * i + 3] >= 128 ? 1 : 0;
    return marks;
  }

  #drawBox() {
    const c = this.#ui.marks, ctx = c.getContext('2d');
    ctx.clearRect(0, 0, c.width, c.height);
    const r = this.#region();
    ctx.lineWidth = Math.max(2, Math.round(c.width / 400));
    ctx.setLineDash([4 * ctx.lineWidth, 3 * ctx.lineWidth]);
    ctx.strokeStyle = '#fff';
    ctx.strokeRect(r.x, r.y, r.width, r.height);
  }

  #clearMark() {
    const c = this.#ui.marks;
    c.getContext('2d').clearRect(0, 0, c.width, c.height);
    this.#mark = null;
  }

  async #finishMark() {
    if (!this.#mark) return;
    const brush = this.#mode === 'brush';
    const region = brush ? null : this.#region();
    const marks = brush ? this.#brushed() : null;
    const photo = this.#photo();
    this.#setMarking(null);
    if (!photo) return;
    if (!brush && (region.width < MIN_SIDE || region.height < MIN_SIDE)) return this.#status(`drag a box of at least ${MIN_SIDE}x${MIN_SIDE} px over the photo`, 'error');
    // The photo's pixels now (it may be replaced while the engine works).
    const { width, height } = photo.bitmap;
    const ctx = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
    ctx.drawImage(photo.bitmap, 0, 0);
    const pixels = ctx.getImageData(0, 0, width, height);
    const label = brush ? `like the part brushed over of ${photo.name}` : `like the region ${region.x},${region.y} ${region.width}x${region.height} of ${photo.name}`;
    this.#status('encoding the marked part…');
    const engine = this.#engine();
    const r = await this.#client.encodeExample(pixels, brush ? { marks } : { region });
    // What the model saw is what is kept: encoding it whole gives the same embedding.
    const view = new ImageData(new Uint8ClampedArray(r.view.buffer), r.side, r.side);
    this.#add({ label, ...(brush ? { marks } : { region }), source: view, id: r.id, engine });
  }

  async #addFile(file) {
    let bitmap;
    try {
      bitmap = await decodeImage(file);
    } catch {
      throw new Error(`${file.name}: not an image this browser can decode`);
    }
    this.#status(`encoding ${file.name}…`);
    try {
      const engine = this.#engine();
      const r = await this.#client.encodeExample(bitmap);
      this.#add({ label: `like ${file.name}`, source: bitmap, id: r.id, engine });
    } catch (e) {
      bitmap.close();
      throw e;
    }
  }

  #add(ex) {
    this.items.push(ex);
    const li = document.createElement('li');
    const thumb = document.createElement('canvas');
    const { width, height } = ex.source;
    const scale = 64 / Math.max(width, height);
    Object.assign(thumb, { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) });
    thumb.setAttribute('role', 'img');
    thumb.setAttribute('aria-label', `what the model sees: ${ex.label}`);
    const draw = (src) => thumb.getContext('2d').drawImage(src, 0, 0, thumb.width, thumb.height);
    if (ex.source instanceof ImageData) createImageBitmap(ex.source).then((b) => (draw(b), b.close()));
    else draw(ex.source);
    const name = Object.assign(document.createElement('span'), { textContent: ex.label });
    const remove = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Remove' });
    remove.setAttribute('aria-label', `remove the example ${ex.label}`);
    remove.addEventListener('click', () => {
      this.items = this.items.filter((x) => x !== ex);
      li.remove();
      if (ex.engine === this.#engine()) this.#client.dropExample(ex.id).catch(() => {});
      ex.source.close?.();
      this.#changed();
    });
    li.append(thumb, name, remove);
    this.#ui.examples.append(li);
    this.#status(`example added: ${ex.label}`);
    this.#changed();
  }

  #status(text, kind = '') {
    this.#ui.status.textContent = text;
    this.#ui.status.className = kind;
  }

  #fail(e) {
    this.#status(`Example: ${e.message}`, 'error');
  }
}

// Types of clip-seg.js: importing it defines <clip-seg>.

export interface ClipSegMask {
  prompt: string;
  width: number;
  height: number;
  /** width * height bytes, row-major: 255 inside the mask, 0 outside (grey levels between with `feather` or `soft`). */
  data: Uint8Array;
}

export interface ClipSegProgressDetail {
  model: string;
  loaded: number;
  /** 0 while unknown. */
  total: number;
}

export interface ClipSegReadyDetail {
  model: string;
  backend: 'webgpu' | 'cpu';
  wasm: 'relaxed-simd' | 'simd128';
  adapter: string;
  reason: string;
}

export interface ClipSegResultDetail {
  prompts: string[];
  threshold: number;
  /** One per prompt, in order; one for all with `union` (its prompt "a | b"). */
  masks: ClipSegMask[];
  /** null when the image was already encoded, or when only the threshold (or union, grow, feather, soft) changed. */
  encodeMs: number | null;
  /** null when only the threshold (or union, grow, feather, soft) changed. */
  segmentMs: number | null;
}

export interface ClipSegErrorDetail {
  message: string;
}

export interface ClipSegEventMap extends HTMLElementEventMap {
  'clipseg-progress': CustomEvent<ClipSegProgressDetail>;
  'clipseg-ready': CustomEvent<ClipSegReadyDetail>;
  'clipseg-result': CustomEvent<ClipSegResultDetail>;
  'clipseg-error': CustomEvent<ClipSegErrorDetail>;
}

export interface ClipSegResult {
  prompts: string[];
  threshold: number;
  width: number;
  height: number;
  /** Per pixel the index of the prompt whose mask holds it, 255 for none. */
  labels: Uint8Array;
  masks: ClipSegMask[];
}

/**
 * `<clip-seg src model prompt threshold backend>`: attributes `src` (image URL), `prompt`
 * (prompts separated by "|"), `examples` (image prompts: example image URLs separated by
 * spaces, `#xywh=X,Y,W,H` for a region of one; their masks follow the prompts'), `model` (pack `.bpk` or split pack manifest `.json`),
 * `threshold` (0..1, default 0.5), `backend` ('auto' | 'webgpu' | 'cpu'); the masks as the
 * CLI's flags make them: `subtract` (prompts removed, "|"-separated), `union` (one mask for
 * all prompts), `grow` (px, negative shrinks), `feather` (px), `soft` (probabilities).
 */
export class ClipSeg extends HTMLElement {
  static readonly observedAttributes: string[];
  /** Engine requests made by all elements of the page. */
  static readonly stats: { loads: number; encodes: number; examples: number; segments: number; labels: number; masks: number };
  /** The shared engine's wasm memory (ClipSegClient.stats()); null before any element asked for it. */
  static engineStats(): Promise<{ wasmBytes: number; heapInUse: number; gpuBuffers?: number; gpuBufferBytes?: number; ms: number } | null>;
  /** The last result, or null. */
  readonly result: ClipSegResult | null;
  addEventListener<K extends keyof ClipSegEventMap>(type: K, listener: (this: ClipSeg, ev: ClipSegEventMap[K]) => any, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof ClipSegEventMap>(type: K, listener: (this: ClipSeg, ev: ClipSegEventMap[K]) => any, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'clip-seg': ClipSeg;
  }
  // The events bubble out of the element (composed): typed on elements and the document.
  interface HTMLElementEventMap {
    'clipseg-progress': CustomEvent<ClipSegProgressDetail>;
    'clipseg-ready': CustomEvent<ClipSegReadyDetail>;
    'clipseg-result': CustomEvent<ClipSegResultDetail>;
    'clipseg-error': CustomEvent<ClipSegErrorDetail>;
  }
  interface DocumentEventMap {
    'clipseg-progress': CustomEvent<ClipSegProgressDetail>;
    'clipseg-ready': CustomEvent<ClipSegReadyDetail>;
    'clipseg-result': CustomEvent<ClipSegResultDetail>;
    'clipseg-error': CustomEvent<ClipSegErrorDetail>;
  }
}

// Types of clipseg-client.js (the package's main export).

/** The engine's limits: the wasm build's, the same for every pack. */
export interface Limits {
  max_side: number;
  max_pixels: number;
  max_prompts: number;
}

export type Backend = 'auto' | 'webgpu' | 'cpu';

export interface ClientOptions {
  /** Which wasm build the worker runs; 'auto': relaxed SIMD where the browser has it. */
  wasm?: 'auto' | 'relaxed-simd' | 'simd128';
  /** How 8-bit matrices run on WebGPU: integer dot product ('dot4'), decoded ('off'), or 'auto'. */
  gpuInt8?: 'auto' | 'dot4' | 'off';
  /** Tests only: allow testFault() and count GPU buffers for stats(). */
  testHooks?: boolean;
}

export interface LoadOptions {
  backend?: Backend;
  /** Bytes of the pack received so far; total is 0 while unknown. */
  onProgress?: (loaded: number, total: number) => void;
}

export interface LoadResult {
  backend: 'webgpu' | 'cpu';
  wasm: 'relaxed-simd' | 'simd128';
  /** The CPU's int8 kernel where an 8- or 4-bit pack runs on it. */
  int8Kernel?: string;
  gpuInt8Dot?: boolean;
  gpuF16Math?: boolean;
  /** The WebGPU adapter's name ('' on the CPU). */
  adapter: string;
  /** Why WebGPU is not used ('' when it is). */
  reason: string;
  /** Side of the model's logit maps. */
  size: number;
  /** Bytes the weights hold in GPU memory (undefined on the CPU). */
  gpuWeightBytes?: number;
  packedWeights?: boolean;
  limits: Limits;
  /** For a URL: whether the pack came from Cache Storage, and notes (not cached, parts cached...). */
  pack?: { from: 'cache' | 'network'; notes: string[] };
  ms: number;
}

export interface ComposeOptions {
  /** Indices into segment()'s prompts joined into the mask (at least one). */
  include: number[];
  /** Indices of prompts whose masks are removed from it. */
  subtract?: number[];
  /** Grow by this many pixels; negative shrinks. */
  grow?: number;
  /** Soft edges over this many pixels (alpha 0..255). */
  feather?: number;
  /** Probabilities as grey instead of a 0/255 mask. */
  soft?: boolean;
  threshold?: number;
}

/** The masks the CLI writes for these prompts and flags (--union, --subtract, --dilate / --erode, --feather, --soft): one per prompt, or one for all with `union`, as compose() settings with the prompt each stands for ("a | b" for the union). `subtract`: prompts segmented after `prompts`. */
export function composeEach(prompts: string[], subtract: string[], options?: { union?: boolean; grow?: number; feather?: number; soft?: boolean }): (ComposeOptions & { prompt: string })[];

/** Rejections carry `fatal: true` when the wasm instance died; the next request restarts it. */
export interface ClipSegError extends Error {
  fatal: boolean;
}

/** Anything with a size that can be drawn on a canvas. */
export type ImageInput = ImageBitmap | ImageData | HTMLImageElement | HTMLCanvasElement | OffscreenCanvas | VideoFrame;

/** Decodes an image file as the CLI reads it: no colour management, EXIF orientation applied. */
export function decodeImage(blob: Blob): Promise<ImageBitmap>;

/** Why the engine would refuse an image of this size, in its words; '' if it would not. */
export function checkImageSize(width: number, height: number, limits?: Limits | null): string;

export class ClipSegClient {
  constructor(options?: ClientOptions);
  /** The engine's limits once a load succeeded, else null. */
  limits: Limits | null;
  /** Called when the engine stops (a Rust panic, a lost WebGPU device), also between requests; the next request restarts it with the last pack. */
  onfatal: ((message: string) => void) | null;
  /** Tests only (testHooks): a Rust panic or a WebGPU device loss, injected at once. */
  testFault(fault: 'panic' | 'lose-device'): Promise<{ ms: number }>;
  /**
   * A mask from the last segmentation's maps, as the CLI's --union, --subtract, --dilate /
   * --erode, --feather and --soft make it (byte for byte): `include` / `subtract` index
   * segment()'s prompts; `grow` < 0 shrinks; `soft` excludes grow and feather. With `png`, the
   * mask as a PNG file instead.
   */
  compose(options: ComposeOptions & { png?: false }): Promise<{ mask: Uint8Array; ms: number }>;
  compose(options: ComposeOptions & { png: true }): Promise<{ png: Uint8Array; ms: number }>;
  /** Pixels (a mask: width*height bytes; RGBA: 4x) as a PNG file, by the CLI's encoder; the buffer is transferred. */
  encodePng(pixels: Uint8Array | Uint8ClampedArray, width: number, height: number): Promise<{ png: Uint8Array; ms: number }>;
  /** The engine's wasm memory in bytes (it grows, never shrinks) and the bytes of it allocated; with testHooks also the GPU buffers created and not destroyed. */
  stats(): Promise<{ wasmBytes: number; heapInUse: number; gpuBuffers?: number; gpuBufferBytes?: number; ms: number }>;
  /**
   * Loads a pack: the URL of a `.bpk` or of a split pack's manifest (`.json`), relative to the
   * document, any origin with CORS; or the bytes of a `.bpk`.
   */
  load(source: string | Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<LoadResult>;
  encode(image: ImageInput): Promise<{ ms: number }>;
  /** Raw RGBA8, width * height * 4 bytes; the buffer is transferred (detached afterwards). */
  encodeRgba(rgba: Uint8Array | Uint8ClampedArray, width: number, height: number): Promise<{ ms: number }>;
  /**
   * An example image (an image prompt, "find things like this"), kept by the engine until
   * dropExample() or the next load; with `region` (pixels) or `marks` (width*height bytes,
   * nonzero where marked: a brush) only that part, cropped with its surroundings blurred and
   * darkened as the CLIPSeg paper engineers visual prompts (the CLI's `--visual-prompt
   * REF@X,Y,W,H` and `REF@MASK.png`). `id` goes into segment()'s prompts; `view` is what the model
   * sees of a region (RGBA, side x side), empty for a whole image.
   */
  encodeExample(image: ImageInput, options?: { region?: { x: number; y: number; width: number; height: number }; marks?: Uint8Array }): Promise<{ id: number; side: number; view: Uint8Array; ms: number }>;
  dropExample(id: number): Promise<{ ms: number }>;
  /**
   * Prompts in order, each a text or an example's id (encodeExample). labels: per pixel the
   * index of the prompt whose mask holds it (highest logit), 255 for none.
   */
  segment(prompts: (string | number)[], options?: { threshold?: number }): Promise<{ count: number; width: number; height: number; labels: Uint8Array; ms: number }>;
  labels(threshold: number): Promise<{ labels: Uint8Array; ms: number }>;
  /** 255 inside prompt `index`'s mask (probability > threshold), 0 outside, at the image's size. */
  mask(index: number, threshold: number): Promise<{ mask: Uint8Array; ms: number }>;
  /** round(255 * probability) of prompt `index`. */
  heat(index: number): Promise<{ heat: Uint8Array; ms: number }>;
  /** Every prompt's probability at pixel (x, y); empty outside the image. */
  probe(x: number, y: number): Promise<{ probabilities: Float32Array; ms: number }>;
  /** The raw size x size logits, [prompt][y][x]. */
  logits(): Promise<{ logits: Float32Array; size: number; ms: number }>;
  terminate(): void;
}

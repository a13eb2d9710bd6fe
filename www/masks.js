// From the engine's 352x352 probability maps to full-resolution pixels.
//
// The native CLI resizes the *logits* to the image size (bilinear, align_corners=False, as
// torch's F.interpolate) and then keeps `sigmoid(logit) > threshold`. The engine hands out
// probabilities, so they are turned back into logits once per segment() and everything here
// interpolates logits: masks match the CLI's, and the threshold is compared in logit space
// (sigmoid is monotonic). The probabilities shown (hover, heat map) are sigmoid of the
// interpolated logit, i.e. what the CLI's full-size probability map holds.

const LOGIT_CLAMP = 30; // p rounds to 0 or 1 in float32 well before |logit| = 30

export function toLogits(probs) {
  const out = new Float32Array(probs.length);
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    const l = Math.log(p) - Math.log1p(-p); // ±Infinity at 0 and 1, NaN for NaN
    out[i] = l > LOGIT_CLAMP ? LOGIT_CLAMP : l < -LOGIT_CLAMP ? -LOGIT_CLAMP : l;
  }
  return out;
}

export const logit = (p) => Math.log(p / (1 - p));
export const sigmoid = (x) => 1 / (1 + Math.exp(-x));

// Source taps for resizing `from` samples to `to` (torch bilinear, align_corners=False): output
// i reads (1-w)*in[i0] + w*in[i1] at src = (i + 0.5) * from / to - 0.5, clamped at 0.
export function axis(from, to) {
  const i0 = new Int32Array(to), i1 = new Int32Array(to), w = new Float32Array(to);
  const scale = from / to;
  for (let i = 0; i < to; i++) {
    const src = Math.max((i + 0.5) * scale - 0.5, 0);
    i0[i] = Math.min(Math.floor(src), from - 1);
    i1[i] = Math.min(i0[i] + 1, from - 1);
    w[i] = src - i0[i];
  }
  return { i0, i1, w };
}

// Interpolated logit of one map at image pixel (x, y).
export function logitAt(map, size, width, height, x, y) {
  const sx = Math.max((x + 0.5) * (size / width) - 0.5, 0), sy = Math.max((y + 0.5) * (size / height) - 0.5, 0);
  const x0 = Math.min(Math.floor(sx), size - 1), y0 = Math.min(Math.floor(sy), size - 1);
  const x1 = Math.min(x0 + 1, size - 1), y1 = Math.min(y0 + 1, size - 1);
  const wx = sx - x0, wy = sy - y0;
  const top = map[y0 * size + x0] * (1 - wx) + map[y0 * size + x1] * wx;
  const bottom = map[y1 * size + x0] * (1 - wx) + map[y1 * size + x1] * wx;
  return top * (1 - wy) + bottom * wy;
}

// Calls visit(y, rows) for every image row, rows[k] being map k resized along y for that row
// (size values); then each pixel needs only the x interpolation. `cols` is axis(size, width).
function forRows(maps, size, height, visit) {
  const ys = axis(size, height);
  const rows = maps.map(() => new Float32Array(size));
  for (let y = 0; y < height; y++) {
    const a = ys.i0[y] * size, b = ys.i1[y] * size, w = ys.w[y];
    for (let k = 0; k < maps.length; k++) {
      const m = maps[k], r = rows[k];
      for (let x = 0; x < size; x++) r[x] = m[a + x] * (1 - w) + m[b + x] * w;
    }
    visit(y, rows);
  }
}

// Mask overlay into `img` (ImageData of the image's size): each pixel takes the colour of the
// prompt with the highest logit among those above the threshold, else stays transparent.
// colors: [[r, g, b], ...] per map. The overlay's opacity is left to CSS.
export function paintMasks(img, maps, size, threshold, colors) {
  const { width, height, data } = img;
  const cols = axis(size, width);
  const t = logit(threshold);
  forRows(maps, size, height, (y, rows) => {
    let o = y * width * 4;
    for (let x = 0; x < width; x++, o += 4) {
      const a = cols.i0[x], b = cols.i1[x], w = cols.w[x];
      let best = -1, bestV = t;
      for (let k = 0; k < rows.length; k++) {
        const v = rows[k][a] * (1 - w) + rows[k][b] * w;
        if (v > bestV) (bestV = v), (best = k); // strict, as the CLI's p > t
      }
      if (best < 0) {
        data[o + 3] = 0;
      } else {
        const c = colors[best];
        data[o] = c[0], data[o + 1] = c[1], data[o + 2] = c[2], data[o + 3] = 255;
      }
    }
  });
}

// Heat map of one map's probabilities (opaque, colour ramp HEAT) into `img`.
export function paintHeat(img, map, size) {
  const { width, height, data } = img;
  const cols = axis(size, width);
  forRows([map], size, height, (y, [row]) => {
    let o = y * width * 4;
    for (let x = 0; x < width; x++, o += 4) {
      const v = row[cols.i0[x]] * (1 - cols.w[x]) + row[cols.i1[x]] * cols.w[x];
      const c = HEAT[Math.round(sigmoid(v) * 255) | 0] ?? HEAT[0]; // NaN → the 0 colour
      data[o] = c[0], data[o + 1] = c[1], data[o + 2] = c[2], data[o + 3] = 255;
    }
  });
}

// Binary mask of one map: calls set(offset, inside) for each pixel's RGBA offset.
export function forMask(width, height, map, size, threshold, set) {
  const cols = axis(size, width);
  const t = logit(threshold);
  forRows([map], size, height, (y, [row]) => {
    let o = y * width * 4;
    for (let x = 0; x < width; x++, o += 4) set(o, row[cols.i0[x]] * (1 - cols.w[x]) + row[cols.i1[x]] * cols.w[x] > t);
  });
}

// 256-entry ramp dark blue → purple → orange → pale yellow (roughly "inferno").
const HEAT = (() => {
  const stops = [[0, [0, 0, 4]], [0.25, [87, 16, 110]], [0.5, [188, 55, 84]], [0.75, [249, 142, 9]], [1, [252, 255, 164]]];
  const out = [];
  for (let i = 0; i < 256; i++) {
    const p = i / 255;
    let s = 1;
    while (stops[s][0] < p) s++;
    const [p0, c0] = stops[s - 1], [p1, c1] = stops[s];
    const f = (p - p0) / (p1 - p0);
    out.push(c0.map((v, j) => Math.round(v + (c1[j] - v) * f)));
  }
  return out;
})();

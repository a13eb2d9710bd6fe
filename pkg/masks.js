// Drawing of what the engine hands out (www/worker.js): label maps, heat maps and masks, each a
// Uint8Array with one byte per pixel at the image's size, painted into an ImageData of that
// size. The engine does the thresholding and resizing, so these match the native CLI's masks.

// Overlay of a label map: each pixel takes its prompt's colour; pixels no prompt's mask holds
// (label 255) and labels without a colour stay transparent. colors: [[r, g, b], ...] per prompt index. The overlay's
// opacity is left to CSS.
export function paintLabels(img, labels, colors) {
  const d = img.data;
  for (let i = 0, o = 0; i < labels.length; i++, o += 4) {
    const c = colors[labels[i]];
    if (c) (d[o] = c[0]), (d[o + 1] = c[1]), (d[o + 2] = c[2]), (d[o + 3] = 255);
    else d[o + 3] = 0;
  }
}

// Heat map (opaque, colour ramp HEAT) of probabilities scaled to 0..=255.
export function paintHeat(img, heat) {
  const d = img.data;
  for (let i = 0, o = 0; i < heat.length; i++, o += 4) {
    const c = HEAT[heat[i]];
    (d[o] = c[0]), (d[o + 1] = c[1]), (d[o + 2] = c[2]), (d[o + 3] = 255);
  }
}

// A mask (255 inside, 0 outside) as an opaque grey image: white inside, black outside.
export function paintMask(img, mask) {
  const d = img.data;
  for (let i = 0, o = 0; i < mask.length; i++, o += 4) (d[o] = d[o + 1] = d[o + 2] = mask[i]), (d[o + 3] = 255);
}

// Cut-out: `img` holds the photo; pixels outside the mask become transparent, those inside keep
// their own alpha.
export function cutOut(img, mask) {
  const d = img.data;
  for (let i = 0; i < mask.length; i++) if (!mask[i]) d[4 * i + 3] = 0;
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

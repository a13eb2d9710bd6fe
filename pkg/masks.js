// Drawing of what the engine hands out (pkg/worker.js): label maps and heat maps, each a
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

// Overlay of masks (width*height bytes each, 0..255): each pixel takes the colour of the last
// mask that holds it, that mask's value as its alpha; transparent where none does.
export function paintMasks(img, masks, colors) {
  const d = img.data;
  d.fill(0);
  masks.forEach((mask, k) => {
    const c = colors[k % colors.length];
    for (let i = 0, o = 0; i < mask.length; i++, o += 4) if (mask[i]) (d[o] = c[0]), (d[o + 1] = c[1]), (d[o + 2] = c[2]), (d[o + 3] = mask[i]);
  });
}

// Heat map (opaque, colour ramp HEAT) of probabilities scaled to 0..=255.
export function paintHeat(img, heat) {
  const d = img.data;
  for (let i = 0, o = 0; i < heat.length; i++, o += 4) {
    const c = HEAT[heat[i]];
    (d[o] = c[0]), (d[o + 1] = c[1]), (d[o + 2] = c[2]), (d[o + 3] = 255);
  }
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

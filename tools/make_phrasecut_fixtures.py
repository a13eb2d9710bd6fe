#!/usr/bin/env python3
"""Reference fixtures for the PhraseCut data layer (src/data/phrasecut.rs).

Writes two JSON files under tests/fixtures/phrasecut/:

* ``pil_polygons.json``: random polygon sets rasterised the way the PhraseCut
  evaluator builds its ground truth (``utils/data_transfer.py::polygons_to_mask``
  in github.com/ChenyunWu/PhraseCutDataset): every polygon with at least two
  points has its coordinates truncated with Python ``int()``, is drawn on a
  fresh ``L`` image with ``ImageDraw.Draw(img).polygon(p, outline=1, fill=1)``,
  and the per-polygon masks are OR-ed together.  Masks are stored row-major as
  run lengths that alternate 0-runs and 1-runs, starting with a 0-run.
* ``nearest_resize.json``: the source row/column chosen by
  ``torch.nn.functional.interpolate(seg, (H, W), mode="nearest")`` -- the call
  CLIPSeg's ``datasets/phrasecut.py`` uses to resize the uint8 ground truth --
  for many (input, output) size pairs.  Index maps are stored as FNV-1a-64
  hashes (plus the full maps for a few cases); the script itself checks that
  resizing a random uint8 mask with torch equals gathering with those maps.

This script is our own code; it only calls the reference libraries.

Usage:
    /opt/refenv/bin/python tools/make_phrasecut_fixtures.py [--out DIR]
    # a bigger local stress set (not committed):
    /opt/refenv/bin/python tools/make_phrasecut_fixtures.py --stress 20000 [--big] --out /tmp/pc-stress
    PHRASECUT_PIL_FIXTURE=/tmp/pc-stress/pil_polygons.json cargo test pil_fixture
"""

import argparse
import json
import os
import random

import numpy as np
import PIL
from PIL import Image, ImageDraw


def polygons_to_mask_reference(polygons, w, h):
    """Same semantics as PhraseCut's polygons_to_mask (see module doc)."""
    acc = np.zeros((h, w), dtype=np.int64)
    for polygon in polygons:
        if len(polygon) < 2:
            continue
        pts = [(int(x), int(y)) for x, y in polygon]
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).polygon(pts, outline=1, fill=1)
        acc += np.array(img)
    return acc > 0


def rle(mask):
    flat = mask.reshape(-1).astype(np.uint8)
    runs = []
    cur = 0
    n = 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            runs.append(n)
            cur = v
            n = 1
    runs.append(n)
    return runs


# ---------------------------------------------------------------- polygons
def rand_size(rng, small, big=False):
    if big:
        return rng.randint(100, 640), rng.randint(100, 640)
    if small:
        return rng.randint(1, 12), rng.randint(1, 12)
    return rng.randint(8, 96), rng.randint(8, 96)


def coord(rng, lo, hi, floats):
    if floats:
        # values whose binary expansion is exact, so JSON parsing is exact
        return rng.randint(lo, hi) + rng.choice([0.0, 0.25, 0.5, 0.75, 0.999, -0.25, -0.5])
    return rng.randint(lo, hi)


def gen_polygon(rng, kind, w, h):
    floats = rng.random() < 0.2
    mx, my = max(w, 1), max(h, 1)
    if kind == "convex":
        cx, cy = rng.uniform(-0.2, 1.2) * mx, rng.uniform(-0.2, 1.2) * my
        r = rng.uniform(0.5, 0.8) * max(mx, my)
        n = rng.randint(3, 24)
        angs = sorted(rng.uniform(0, 2 * np.pi) for _ in range(n))
        return [[int(cx + r * np.cos(a)) + (0.5 if floats else 0), int(cy + r * np.sin(a))] for a in angs]
    if kind == "star":
        cx, cy = rng.uniform(0.1, 0.9) * mx, rng.uniform(0.1, 0.9) * my
        n = rng.randint(3, 12)
        r1 = rng.uniform(0.3, 0.7) * max(mx, my)
        r2 = r1 * rng.uniform(0.1, 0.6)
        pts = []
        for i in range(2 * n):
            r = r1 if i % 2 == 0 else r2
            a = np.pi * i / n + rng.uniform(-0.1, 0.1)
            pts.append([int(round(cx + r * np.cos(a))), int(round(cy + r * np.sin(a)))])
        return pts
    if kind == "random":  # usually self-intersecting
        n = rng.randint(3, 16)
        return [[coord(rng, -3, mx + 3, floats), coord(rng, -3, my + 3, floats)] for _ in range(n)]
    if kind == "degenerate":
        sub = rng.randint(0, 6)
        x, y = coord(rng, -2, mx + 1, floats), coord(rng, -2, my + 1, floats)
        if sub == 0:
            return [[x, y]]
        if sub == 1:
            return [[x, y], [coord(rng, -2, mx + 1, floats), coord(rng, -2, my + 1, floats)]]
        if sub == 2:  # horizontal collinear
            return [[coord(rng, -2, mx + 1, floats), y] for _ in range(rng.randint(2, 6))]
        if sub == 3:  # vertical collinear
            return [[x, coord(rng, -2, my + 1, floats)] for _ in range(rng.randint(2, 6))]
        if sub == 4:  # diagonal collinear
            d = rng.choice([-2, -1, 1, 2, 3])
            return [[x + k * d, y + k] for k in range(rng.randint(2, 6))]
        if sub == 5:  # repeated point
            return [[x, y]] * rng.randint(2, 5)
        return [[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1]]
    if kind == "rectilinear":  # staircases: consecutive horizontal / vertical edges
        n = rng.randint(2, 8)
        x, y = rng.randint(-2, mx), rng.randint(-2, my)
        pts = [[x, y]]
        for i in range(n):
            if rng.random() < 0.5:
                x += rng.randint(-mx // 2 - 1, mx // 2 + 1)
                pts.append([x, y])
                if rng.random() < 0.4:  # another horizontal edge in a row
                    x += rng.randint(-mx // 2 - 1, mx // 2 + 1)
                    pts.append([x, y])
            else:
                y += rng.randint(-my // 2 - 1, my // 2 + 1)
                pts.append([x, y])
        return pts
    if kind == "outside":  # all or most points outside the image, negative coords
        n = rng.randint(3, 8)
        return [[coord(rng, -5 * mx, 5 * mx, floats), coord(rng, -5 * my, 5 * my, floats)] for _ in range(n)]
    if kind == "huge":
        n = rng.randint(3, 6)
        big = rng.choice([1000, 100000, 1000000])
        return [[rng.randint(-big, big), rng.randint(-big, big)] for _ in range(n)]
    if kind == "amt":  # annotation-like: many float points with 2 decimals around a blob
        cx, cy = rng.uniform(0, mx), rng.uniform(0, my)
        r0 = rng.uniform(0.05, 0.5) * max(mx, my)
        n = rng.randint(5, 60)
        pts = []
        for i in range(n):
            a = 2 * np.pi * i / n
            r = r0 * rng.uniform(0.5, 1.2)
            pts.append([round(cx + r * np.cos(a), 2), round(cy + r * np.sin(a), 2)])
        return pts
    if kind == "thin":  # slivers: nearly-degenerate triangles, steep / shallow edges
        x, y = rng.randint(-2, mx + 1), rng.randint(-2, my + 1)
        dx, dy = rng.randint(-mx - 2, mx + 2), rng.randint(-my - 2, my + 2)
        return [[x, y], [x + dx, y + dy], [x + dx + rng.randint(-1, 1), y + dy + rng.randint(-1, 1)]]
    raise ValueError(kind)


KINDS = ["convex", "star", "random", "degenerate", "rectilinear", "outside", "huge", "thin"]


def pil_cases(count, seed, big=False):
    rng = random.Random(seed)
    cases = []
    kinds = KINDS + ["amt"] * 6 if big else KINDS
    for i in range(count):
        small = rng.random() < 0.35
        w, h = rand_size(rng, small, big)
        if i < 6:  # a few fixed tiny images
            w, h = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (1, 7)][i]
        npoly = rng.choice([1, 1, 1, 2, 3])
        polys = [gen_polygon(rng, rng.choice(kinds), w, h) for _ in range(npoly)]
        m = polygons_to_mask_reference(polys, w, h)
        cases.append({"w": w, "h": h, "polygons": polys, "rle": rle(m)})
    return cases


# ---------------------------------------------------------------- nearest
def fnv1a64(values):
    hsh = 0xCBF29CE484222325
    for v in values:
        for b in int(v).to_bytes(4, "little"):
            hsh ^= b
            hsh = (hsh * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % hsh


def nearest_cases(seed):
    import torch
    from torch.nn import functional as nnf

    rng = random.Random(seed)
    sizes = set()
    for n in list(range(1, 80)) + [176, 351, 352, 353, 400, 500, 704, 705, 1024]:
        sizes.add((n, 352))
    for _ in range(120):
        sizes.add((rng.randint(1, 2000), rng.choice([352, 352, 224, 400, rng.randint(1, 1000)])))
    for n in [3, 7, 100, 351]:
        sizes.add((n, 2 * n))  # torch's output == 2 * input shortcut
    sizes = sorted(sizes)

    def index_map(n_in, n_out):
        # float32 ramp survives nearest interpolation exactly
        ramp = torch.arange(n_in, dtype=torch.float32).view(1, 1, 1, n_in)
        out = nnf.interpolate(ramp, (1, n_out), mode="nearest")[0, 0, 0]
        return [int(v) for v in out.tolist()]

    cases = []
    for n_in, n_out in sizes:
        idx = index_map(n_in, n_out)
        cases.append({"in": n_in, "out": n_out, "fnv1a64": fnv1a64(idx)})

    # full 2-D check on uint8 masks, exactly the dtype / call CLIPSeg uses
    checks = 0
    for _ in range(60):
        h, w = rng.randint(1, 700), rng.randint(1, 700)
        oh, ow = rng.choice([(352, 352), (rng.randint(1, 500), rng.randint(1, 500))])
        seg = (np.random.RandomState(rng.randint(0, 2**31)).rand(h, w) < 0.5).astype("uint8")
        t = torch.from_numpy(seg).view(1, 1, h, w)
        out = nnf.interpolate(t, (oh, ow), mode="nearest")[0, 0].numpy()
        iy, ix = index_map(h, oh), index_map(w, ow)
        assert (out == seg[np.ix_(iy, ix)]).all(), (h, w, oh, ow)
        checks += 1
    full = [{"in": n_in, "out": n_out, "map": index_map(n_in, n_out)} for n_in, n_out in [(500, 352), (333, 352), (37, 352), (1000, 7)]]
    return {"torch": torch.__version__, "uint8_2d_checks": checks, "cases": cases, "full": full}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "phrasecut"))
    ap.add_argument("--count", type=int, default=700)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--stress", type=int, default=0, help="only write a pil_polygons.json with this many cases")
    ap.add_argument("--big", action="store_true", help="with --stress: 100..640 px images, annotation-like polygons")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    count = args.stress or args.count
    doc = {
        "reference": "PhraseCutDataset utils/data_transfer.py polygons_to_mask; PIL ImageDraw.polygon(fill=1, outline=1)",
        "pillow": PIL.__version__,
        "rle": "row-major runs, alternating 0-run / 1-run, first run is zeros",
        "cases": pil_cases(count, args.seed + args.stress, args.big),
    }
    with open(os.path.join(args.out, "pil_polygons.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    if args.stress:
        return
    with open(os.path.join(args.out, "nearest_resize.json"), "w") as f:
        json.dump(nearest_cases(args.seed), f, separators=(",", ":"))


if __name__ == "__main__":
    main()

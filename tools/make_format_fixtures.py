#!/usr/bin/env python3
"""Writes tests/fixtures/formats/: image files as cameras and editors write them, each beside
what Pillow makes of it (`want/NAME.EXT.png`, 8-bit RGB), the reference the HF image processor
starts from:

* orient-1.jpg .. orient-8.jpg: one JPEG with each EXIF orientation; want: `ImageOps.exif_transpose`
  then `convert("RGB")` (what a browser shows);
* grey.png, grey-alpha.png, palette.png, palette-alpha.png, rgba.png, rgb16.png, grey16.png,
  cmyk.jpg, anim.gif, anim.webp: want: `convert("RGB")` of the first frame, except for 16-bit
  grey, which Pillow clips at 255: want keeps its high byte, as Pillow does for 16-bit RGB.

Usage (from the repo root): python3 tools/make_format_fixtures.py [--out tests/fixtures/formats]
Needs Pillow with WebP. Re-running reproduces the same bytes.
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

W, H = 40, 24  # not square, so that a rotation shows in the shape


def base() -> np.ndarray:
    """An RGB image whose every flip and rotation differs: gradients and one marked corner."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * 255 // (W - 1), y * 255 // (H - 1), (x + 2 * y) * 3 % 256], -1)
    rgb[:6, :6] = [255, 255, 255]
    return rgb.astype(np.uint8)


def png16(path: Path, values: np.ndarray, colour_type: int) -> None:
    """A 16-bit PNG (Pillow writes 16-bit grey only): colour type 2 (RGB) or 0 (grey)."""
    rows = values.astype(">u2").reshape(values.shape[0], -1)
    raw = b"".join(b"\0" + r.tobytes() for r in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", values.shape[1], values.shape[0], 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/formats"))
    out = ap.parse_args().out
    (out / "want").mkdir(parents=True, exist_ok=True)
    rgb = base()
    img = Image.fromarray(rgb)

    for n in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = n
        # 4:4:4, so that decoders differ only in their IDCT's rounding.
        img.save(out / f"orient-{n}.jpg", quality=95, subsampling=0, exif=exif.tobytes())

    img.convert("L").save(out / "grey.png")
    alpha = Image.fromarray((np.arange(W * H).reshape(H, W) % 256).astype(np.uint8))
    grey_alpha = img.convert("L")
    grey_alpha.putalpha(alpha)
    grey_alpha.save(out / "grey-alpha.png")
    rgba = img.copy()
    rgba.putalpha(alpha)
    rgba.save(out / "rgba.png")
    img.quantize(16).save(out / "palette.png")
    pal = img.quantize(16)
    pal.info["transparency"] = 3
    pal.save(out / "palette-alpha.png", transparency=3)
    # Low bytes that round the value up or down: Pillow keeps the high byte.
    low = (np.arange(W * H * 3).reshape(H, W, 3) * 37 % 256).astype(np.uint16)
    png16(out / "rgb16.png", rgb.astype(np.uint16) * 256 + low, 2)
    png16(out / "grey16.png", rgb[..., 0].astype(np.uint16) * 256 + low[..., 0], 0)
    img.convert("CMYK").save(out / "cmyk.jpg", quality=95)
    second = Image.fromarray(255 - rgb)
    img.save(out / "anim.gif", save_all=True, append_images=[second], duration=100, loop=0)
    img.save(out / "anim.webp", save_all=True, append_images=[second], duration=100, lossless=True)

    for path in sorted(out.glob("*.*")):
        with Image.open(path) as src:
            src.seek(0)
            shown = ImageOps.exif_transpose(src) if path.stem.startswith("orient-") else src
            if src.mode == "I;16":
                # Pillow clips 16-bit grey at 255 (a white image); browsers and the CLI keep
                # the high byte, as Pillow does for 16-bit RGB.
                shown = Image.fromarray((np.asarray(src).astype(np.uint16) >> 8).astype(np.uint8))
            shown.convert("RGB").save(out / "want" / f"{path.name}.png")
        print(f"wrote {path.name} ({Image.open(path).mode}) and want/{path.name}.png")


if __name__ == "__main__":
    main()

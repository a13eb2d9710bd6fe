//! Fuzzing on the stable toolchain (`arbtest`): every reader of user-supplied bytes gets inputs
//! made from the real fixtures by random edits, or structured ones (a pack's or a config's
//! fields set to edge values, re-encoded validly so that the checksum does not stop them).
//! Properties: no panic, every input handled within TIME_LIMIT, and the memory allocated
//! while handling it within a bound set by the input's size (images: the decoder's cap).
//!
//! Each target runs for CLIPSEG_FUZZ_MS milliseconds (default 1500: CI's short pass; `make
//! fuzz` runs longer); ARBTEST_SEED=0x... (as arbtest prints it) replays one input and writes
//! it to target/fuzz-TARGET.bin. Each target prints the inputs it tried.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arbtest::arbitrary::{Result, Unstructured};
use clipseg::burn::tensor::Device;
use clipseg::counting_alloc::{self, Counting};
use clipseg::weights::pack::Quant;
use clipseg::weights::pack::split::Manifest;
use clipseg::{Checkpoint, Segmenter};

use common::fixtures;

/// Counts the bytes live and their peak (`counting_alloc::reset_peak` starts one per input).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One target at a time, set-up included (each test takes it first), so that the counts are
/// its own: another target loading its seed model meanwhile once counted against `.npy`.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const TIME_LIMIT: Duration = Duration::from_secs(10);

/// Runs `handle` on inputs that `make` builds for `budget()` ms: each must return (an error is
/// fine) within TIME_LIMIT, allocating at most `bound(input length)` bytes beyond what was live.
fn fuzz(
    target: &str,
    bound: impl Fn(usize) -> usize,
    mut make: impl FnMut(&mut Unstructured) -> Result<Vec<u8>>,
    mut handle: impl FnMut(&[u8]),
) {
    let mut tried = 0;
    let replay = std::env::var("ARBTEST_SEED").is_ok();
    let mut property = |u: &mut Unstructured| -> Result<()> {
        let input = make(u)?;
        if replay {
            // The input replayed, for a closer look.
            std::fs::write(
                format!("target/fuzz-{}.bin", target.replace(' ', "-")),
                &input,
            )
            .unwrap();
        }
        let base = counting_alloc::reset_peak();
        let start = Instant::now();
        handle(&input);
        let (took, peak) = (start.elapsed(), counting_alloc::peak() - base);
        assert!(
            took <= TIME_LIMIT,
            "{target}: an input of {} bytes took {took:?}",
            input.len()
        );
        let most = bound(input.len());
        assert!(
            peak <= most,
            "{target}: an input of {} bytes allocated {peak} bytes (bound {most})",
            input.len()
        );
        tried += 1;
        Ok(())
    };
    // ARBTEST_SEED (arbtest's own) replays one input instead.
    arbtest::arbtest(&mut property).budget_ms(budget()).run();
    eprintln!("fuzz {target}: {tried} inputs");
}

fn budget() -> u64 {
    (std::env::var("CLIPSEG_FUZZ_MS").ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

/// A few random edits of `seed`: bit flips, edge values written over bytes or words, bytes
/// inserted or removed, a truncation, a range repeated. `focus`: the first bytes get most
/// edits (where headers are).
fn mutate(u: &mut Unstructured, seed: &[u8], focus: usize) -> Result<Vec<u8>> {
    let mut out = seed.to_vec();
    for _ in 0..u.int_in_range(1..=6)? {
        if out.is_empty() {
            out.push(u.arbitrary()?);
        }
        let span = if u.ratio(3, 4)? {
            focus.min(out.len())
        } else {
            out.len()
        };
        let at = u.choose_index(span.max(1))?.min(out.len() - 1);
        match u.int_in_range(0..=6)? {
            0 => out[at] ^= 1 << u.int_in_range(0..=7)?,
            1 => out[at] = *u.choose(&[0, 1, 0x7f, 0x80, 0xff, b'9', b'-', b'"', b'{', b']'])?,
            2 => {
                let value: u64 = *u.choose(&[0, 1, u32::MAX as u64, 1 << 31, 1 << 40, u64::MAX])?;
                let width = *u.choose(&[4, 8])?;
                for (i, b) in value.to_le_bytes()[..width].iter().enumerate() {
                    if let Some(x) = out.get_mut(at + i) {
                        *x = *b;
                    }
                }
            }
            3 => {
                let extra: Vec<u8> = (0..u.int_in_range(1..=16)?)
                    .map(|_| u.arbitrary())
                    .collect::<Result<_>>()?;
                out.splice(at..at, extra);
            }
            4 => {
                let end = (at + u.int_in_range(1..=64)?).min(out.len());
                out.drain(at..end);
            }
            5 => out.truncate(at),
            _ => {
                let end = (at + u.int_in_range(1..=256)?).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    Ok(out)
}

/// `value` with one leaf (a number, a string, an array's length, a key) set to an edge value.
fn mutate_json(u: &mut Unstructured, value: &mut serde_json::Value) -> Result<()> {
    use serde_json::{Value, json};
    let mut leaves = Vec::new();
    collect(value, &mut String::new(), &mut leaves);
    let path = u.choose(&leaves)?.clone();
    let target = value.pointer_mut(&path).expect("a path collect found");
    *target = match u.int_in_range(0..=7)? {
        0 => json!(0),
        1 => json!(u32::MAX),
        2 => json!(1u64 << 40),
        3 => json!(u64::MAX),
        4 => json!(-1),
        5 => json!(1.5),
        6 => match target {
            Value::Array(a) if !a.is_empty() => {
                let first = a[0].clone();
                Value::Array(vec![first; u.int_in_range(0..=4096)?])
            }
            _ => Value::Null,
        },
        _ => json!("x"),
    };
    Ok(())
}

fn collect(value: &serde_json::Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                collect(v, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(items) => {
            out.push(path.clone());
            // The first few items stand for the rest (a pack lists hundreds of tensors).
            for (i, v) in items.iter().enumerate().take(8) {
                path.push_str(&format!("/{i}"));
                collect(v, path, out);
                path.truncate(len);
            }
        }
        _ => out.push(path.clone()),
    }
}

fn plain() -> Checkpoint {
    Checkpoint::from_hf_dir(&fixtures().join("models/plain"), &Device::flex()).unwrap()
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap()
}

/// What loading a model from `bytes` may hold: its f32 weights (4x a q8 pack), the engine's
/// packed copies, the decoder's buffers; 64 MB for the rest.
fn model_bound(len: usize) -> usize {
    (64 << 20) + 24 * len
}

/// Pack bytes edited at random (mostly the signature, version and header; the checksum
/// stops most edits of the data), loaded as stored and as an engine.
#[test]
fn fuzz_pack_bytes() {
    let _held = one_at_a_time();
    let seed = plain().to_pack(Quant::Q8).unwrap();
    fuzz(
        "pack bytes",
        model_bound,
        |u| mutate(u, &seed, 4096),
        load_pack,
    );
}

/// Packs whose header (config, tokenizer, tensor table) has one field set to an edge value,
/// re-encoded validly: what a hand-edited or hostile pack can claim.
#[test]
fn fuzz_pack_header() {
    let _held = one_at_a_time();
    let seed = plain().to_pack(Quant::Q8).unwrap();
    let header_len = u64::from_le_bytes(seed[12..20].try_into().unwrap()) as usize;
    let inflated = miniz_oxide::inflate::decompress_to_vec(&seed[20..20 + header_len]).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&inflated).unwrap();
    let data = &seed[20 + header_len..];
    let make = |u: &mut Unstructured| {
        let mut header = header.clone();
        for _ in 0..u.int_in_range(1..=3)? {
            mutate_json(u, &mut header)?;
        }
        let deflated =
            miniz_oxide::deflate::compress_to_vec(&serde_json::to_vec(&header).unwrap(), 1);
        let mut out = seed[..12].to_vec();
        out.extend((deflated.len() as u64).to_le_bytes());
        out.extend(deflated);
        out.extend(data);
        Ok(out)
    };
    fuzz("pack header", model_bound, make, load_pack);
}

/// Split packs (`convert --split`) whose manifest has fields set to edge values (sizes, names,
/// checksums, counts), opened with the parts on disk.
#[test]
fn fuzz_split_manifest() {
    let _held = one_at_a_time();
    let pack = plain().to_pack(Quant::Q8).unwrap();
    let dir = std::env::temp_dir().join(format!("clipseg-fuzz-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (manifest, parts) = Manifest::split(&pack, 65536, "p.bpk").unwrap();
    for (part, data) in manifest.parts.iter().zip(&parts) {
        std::fs::write(dir.join(&part.file), data).unwrap();
    }
    let seed: serde_json::Value = serde_json::from_str(&manifest.to_json()).unwrap();
    let path = dir.join("p.bpk.json");
    let make = |u: &mut Unstructured| {
        let mut manifest = seed.clone();
        for _ in 0..u.int_in_range(1..=3)? {
            mutate_json(u, &mut manifest)?;
        }
        Ok(serde_json::to_vec(&manifest).unwrap())
    };
    let handle = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let _ = Checkpoint::open(&path, &Device::flex());
    };
    fuzz("split manifest", |_| model_bound(pack.len()), make, handle);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn load_pack(bytes: &[u8]) {
    let _ = Checkpoint::from_pack(bytes.to_vec(), &Device::flex());
    let _ = Segmenter::from_pack(
        bytes.to_vec(),
        &Device::flex(),
        clipseg::engine::Kernels::Packed(None),
    );
}

/// An HF folder's config.json with fields set to edge values, and its model.safetensors with
/// random edits (mostly in the header), loaded together.
#[test]
fn fuzz_hf_config_and_safetensors() {
    let _held = one_at_a_time();
    let dir = fixtures().join("models/plain");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let safetensors = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tokenizer = read("tokenizer.json");
    let header_end = 8 + u64::from_le_bytes(safetensors[..8].try_into().unwrap()) as usize;
    // Input: a flag byte, then the config (JSON) and the weights, split at a length prefix.
    let make = |u: &mut Unstructured| {
        let mut config = config.clone();
        let weights = if u.ratio(1, 2)? {
            for _ in 0..u.int_in_range(1..=3)? {
                mutate_json(u, &mut config)?;
            }
            safetensors.clone()
        } else {
            mutate(u, &safetensors, header_end)?
        };
        let config = serde_json::to_vec(&config).unwrap();
        let mut out = (config.len() as u64).to_le_bytes().to_vec();
        out.extend(config);
        out.extend(weights);
        Ok(out)
    };
    let handle = |input: &[u8]| {
        let len = u64::from_le_bytes(input[..8].try_into().unwrap()) as usize;
        let (config, weights) = input[8..].split_at(len);
        let config = String::from_utf8_lossy(config);
        let _ =
            Checkpoint::from_hf_bytes(&config, weights.to_vec(), &tokenizer, None, &Device::flex());
    };
    fuzz("config.json + model.safetensors", model_bound, make, handle);
}

/// Prompts of arbitrary bytes (invalid UTF-8 as JS would hand it over, replaced), long ones
/// included, through the tokenizer.
#[test]
fn fuzz_prompts() {
    let _held = one_at_a_time();
    let checkpoint = plain();
    let make = |u: &mut Unstructured| {
        let mut text: Vec<u8> = u.arbitrary()?;
        if u.ratio(1, 8)? {
            text = text.repeat(u.int_in_range(1..=2000)?);
        }
        Ok(text)
    };
    let handle = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let _ = checkpoint.tokenize(&[text.as_ref()]);
    };
    fuzz("prompts", |len| (16 << 20) + 64 * len, make, handle);
}

/// Image prompts' regions (`--visual-prompt REF@X,Y,W,H`, the element's `#xywh=`): text that is
/// parsed as one, on images of random sizes, engineered into the example image when it fits.
#[test]
fn fuzz_regions() {
    let _held = one_at_a_time();
    let preprocess = clipseg::preprocess::PreprocessConfig::clipseg_default();
    let make = |u: &mut Unstructured| {
        let (w, h): (u16, u16) = (u.int_in_range(1..=400)?, u.int_in_range(1..=400)?);
        let text = match u.ratio(1, 2)? {
            true => {
                let mut n = || -> Result<String> {
                    Ok(match u.int_in_range(0..=3)? {
                        0 => u.int_in_range(0..=450u32)?.to_string(),
                        1 => u64::MAX.to_string(),
                        2 => format!(" {}", u.int_in_range(0..=9u8)?),
                        _ => String::from_utf8_lossy(u.bytes(2)?).into_owned(),
                    })
                };
                [n()?, n()?, n()?, n()?].join(",")
            }
            false => u.arbitrary()?,
        };
        let mut input = [w.to_le_bytes(), h.to_le_bytes()].concat();
        input.extend(text.as_bytes());
        Ok(input)
    };
    let handle = |bytes: &[u8]| {
        let [w0, w1, h0, h1, ..] = bytes[..] else {
            return;
        };
        let (w, h) = (
            u16::from_le_bytes([w0, w1]) as usize,
            u16::from_le_bytes([h0, h1]) as usize,
        );
        let text = String::from_utf8_lossy(&bytes[4..]);
        let Ok(region) = clipseg::example::Region::parse(&text) else {
            return;
        };
        let Ok(marks) = region.mask(w, h) else {
            return;
        };
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| i as u8).collect();
        let (out, side) = clipseg::example::from_marks(&rgb, w, h, &marks, &preprocess).unwrap();
        assert_eq!(out.len(), side * side * 3);
    };
    fuzz("regions", |len| (16 << 20) + 64 * len, make, handle);
}

/// Image files edited at random (PNG, JPEG, GIF, WebP, BMP seeds), decoded as the CLI does.
#[test]
fn fuzz_images() {
    let _held = one_at_a_time();
    let seeds: Vec<Vec<u8>> = [
        "images/tiny.png",
        "images/photo.jpg",
        "formats/orient-6.jpg",
        "formats/anim.gif",
        "formats/anim.webp",
        "formats/rgb16.png",
        "formats/palette-alpha.png",
    ]
    .iter()
    .map(|f| read(f))
    .collect();
    let make = |u: &mut Unstructured| {
        let seed = u.choose(&seeds)?;
        mutate(u, seed, 512)
    };
    let handle = |bytes: &[u8]| {
        let _ = clipseg::native::image_file::decode_rgb(bytes, "fuzzed");
    };
    // The decoder's own cap (1 GiB), its output's RGB copy, and the input.
    fuzz("images", |len| (3 << 30) + 2 * len, make, handle);
}

/// `.npy` files edited at random.
#[test]
fn fuzz_npy() {
    let _held = one_at_a_time();
    let seed = read("reference/plain__square352/cond.npy");
    let make = |u: &mut Unstructured| mutate(u, &seed, 128);
    let handle = |bytes: &[u8]| {
        let _ = clipseg::npy::from_bytes(bytes);
    };
    fuzz("npy", |len| (1 << 20) + 8 * len, make, handle);
}

/// A PhraseCut-format dataset (`clipseg synth`, 4 images) whose `image_data_split.json` or
/// `refer_val.json` has fields set to edge values: opened, and every task's ground truth
/// (its polygons rasterised at the image's size) built.
#[test]
fn fuzz_phrasecut() {
    let _held = one_at_a_time();
    use clipseg::data::phrasecut::PhraseCut;
    use clipseg::data::synthetic::{SyntheticSpec, generate};
    let dir = std::env::temp_dir().join(format!("clipseg-fuzz-phrasecut-{}", std::process::id()));
    let spec = SyntheticSpec {
        images: 4,
        split_weights: [0, 1, 0, 0],
        ..SyntheticSpec::default()
    };
    generate(&dir, &spec).unwrap();
    let files = ["image_data_split.json", "refer_val.json"];
    let seeds: Vec<serde_json::Value> = (files.iter())
        .map(|f| serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap())
        .collect();
    // Input: which file, then its JSON.
    let make = |u: &mut Unstructured| {
        let which = u.choose_index(files.len())?;
        let mut value = seeds[which].clone();
        for _ in 0..u.int_in_range(1..=3)? {
            mutate_json(u, &mut value)?;
        }
        let mut out = vec![which as u8];
        out.extend(serde_json::to_vec(&value).unwrap());
        Ok(out)
    };
    let handle = |input: &[u8]| {
        let which = usize::from(input[0]);
        for (i, (file, seed)) in files.iter().zip(&seeds).enumerate() {
            let bytes = if i == which {
                input[1..].to_vec()
            } else {
                serde_json::to_vec(seed).unwrap()
            };
            std::fs::write(dir.join(file), bytes).unwrap();
        }
        if let Ok(data) = PhraseCut::open(&dir, "val") {
            for task in data.iter() {
                let _ = task.gt_mask();
            }
        }
    };
    fuzz("phrasecut", |len| (64 << 20) + 64 * len, make, handle);
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `clipseg predict`: one or many images, one or more prompts (texts and example images),
//! logits and masks out. The model and the examples are encoded once; with several images a
//! file that can't be read is reported and skipped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use clipseg::burn::tensor::Tensor;
use clipseg::compose::{Compose, cut_out, encode_png};
use clipseg::engine::block_on;
use clipseg::example::{Region, from_marks};
use clipseg::{Prompt, Segmenter, npy};

use crate::common::{Backend, PrecisionArg, load_rgb};

/// The image files a folder given to --image contributes (by extension, case-insensitive).
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// Segment images for one or more prompts.
#[derive(clap::Args)]
pub struct Args {
    /// Model pack (`clipseg convert`) or HF model folder (config.json, model.safetensors,
    /// tokenizer.json, preprocessor_config.json).
    #[arg(long)]
    model: PathBuf,
    /// An image file, or a folder of them (its .jpg, .jpeg, .png, .webp, .gif and .bmp files);
    /// repeat for several.
    #[arg(long = "image", required = true)]
    images: Vec<PathBuf>,
    /// Repeat for several prompts; each image is encoded once.
    #[arg(long = "prompt", required_unless_present = "visual_prompts")]
    prompts: Vec<String>,
    /// An example image to find things like (an image prompt); REF@X,Y,W,H for the box of
    /// REF in pixels, REF@MASK.png for the part of REF a mask of its size marks in white
    /// (cropped, its surroundings blurred and darkened, as the CLIPSeg paper engineers visual
    /// prompts); repeat for several. Their masks and logits follow the text prompts'.
    #[arg(long = "visual-prompt", value_name = "REF")]
    visual_prompts: Vec<String>,
    /// Write raw logits as float32 .npy, shape [prompts, S, S] (S = 352 for CLIPSeg): the
    /// text prompts', the visual prompts', then the subtracted prompts'. One image.
    #[arg(long)]
    logits: Option<PathBuf>,
    /// Write masks at the image's size: OUT itself for one prompt, OUT-0.png, OUT-1.png, ... for
    /// several. One image.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Write each image's masks into DIR, named after the image: DIR/NAME.png for one prompt,
    /// DIR/NAME-0.png, DIR/NAME-1.png, ... for several.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// With --out-dir: also write each image's logits, DIR/NAME.npy.
    #[arg(long, requires = "out_dir")]
    save_logits: bool,
    /// With --out-dir: skip the images whose outputs are all there (an interrupted run resumes).
    #[arg(long, requires = "out_dir")]
    skip_existing: bool,
    /// One mask from all the prompts: a pixel is in it where any prompt's mask holds it.
    #[arg(long)]
    union: bool,
    /// Remove what this prompt finds from every mask; repeat for several. Its map follows the
    /// text and visual prompts' in the logits.
    #[arg(long = "subtract", value_name = "TEXT")]
    subtract: Vec<String>,
    /// Grow each mask by PX pixels (every pixel within that distance of it joins).
    #[arg(long, value_name = "PX", default_value_t = 0, conflicts_with = "erode")]
    dilate: u32,
    /// Shrink each mask by PX pixels (every pixel within that distance of its outside leaves).
    #[arg(long, value_name = "PX", default_value_t = 0)]
    erode: u32,
    /// Soft edges: each mask's alpha ramps from 0 to 255 over PX pixels across its border.
    #[arg(long, value_name = "PX", default_value_t = 0)]
    feather: u32,
    /// Probabilities as 8-bit grey instead of 0/255 masks.
    #[arg(long)]
    soft: bool,
    /// Also write each mask's cut-out, the photo with the mask as alpha (RGBA), beside it as
    /// NAME-cutout.png.
    #[arg(long)]
    cutout: bool,
    /// Probability above which a pixel is in the mask.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    precision: PrecisionArg,
    /// Print load, image-encoding and prompt timings to stderr.
    #[arg(long)]
    verbose: bool,
}

/// Where one image's results go.
struct Outputs {
    logits: Option<PathBuf>,
    /// Masks: this path for one prompt, numbered beside it for several ([`mask_path`]).
    mask: Option<PathBuf>,
}

impl Outputs {
    /// The files written for `masks` masks (and their cut-outs where `cutout`).
    fn files(&self, masks: usize, cutout: bool) -> Vec<PathBuf> {
        let masks = (self.mask.iter()).flat_map(|m| (0..masks).map(|k| mask_path(m, k, masks)));
        let with_cutouts = masks.flat_map(|m| [Some(cutout_path(&m)).filter(|_| cutout), Some(m)]);
        self.logits
            .iter()
            .cloned()
            .chain(with_cutouts.flatten())
            .collect()
    }
}

impl Args {
    /// The masks written per image: one per prompt, or their union; each with the subtracted
    /// prompts removed and refined as asked.
    fn composes(&self) -> Vec<Compose> {
        let n = self.prompts.len() + self.visual_prompts.len();
        let base = Compose {
            include: Vec::new(),
            subtract: (n..n + self.subtract.len()).collect(),
            grow: self.dilate as i32 - self.erode as i32,
            feather: self.feather,
            soft: self.soft,
        };
        let with = |include| Compose {
            include,
            ..base.clone()
        };
        if self.union {
            vec![with((0..n).collect())]
        } else {
            (0..n).map(|k| with(vec![k])).collect()
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!("--threshold must be within 0..=1, got {}", args.threshold);
    }
    let composes = args.composes();
    let all = args.prompts.len() + args.visual_prompts.len() + args.subtract.len();
    for compose in &composes {
        compose.check(all)?;
    }
    let images = expand(&args.images)?;
    let single = args.out_dir.is_none();
    if single && args.logits.is_none() && args.mask.is_none() {
        bail!("nothing to write: give --logits OUT.npy and/or --mask OUT.png, or --out-dir DIR");
    }
    if single && images.len() > 1 {
        bail!(
            "{} images: --logits and --mask write one image's results; give --out-dir DIR for several",
            images.len()
        );
    }
    let jobs: Vec<(PathBuf, Outputs)> = match &args.out_dir {
        None => vec![(
            images[0].clone(),
            Outputs {
                logits: args.logits.clone(),
                mask: args.mask.clone(),
            },
        )],
        Some(dir) => named_outputs(&images, dir, args.save_logits)?,
    };
    let (device, kernels) = args.backend.engine(args.precision)?;
    let start = Instant::now();
    let segmenter = Segmenter::open(&args.model, &device, kernels)?;
    let examples = (args.visual_prompts.iter())
        .map(|reference| encode_example(&segmenter, reference))
        .collect::<Result<Vec<_>>>()?;
    let loaded = Instant::now();
    let run = |image: &Path, outputs: &Outputs| {
        segment_one(
            &segmenter, &device, image, outputs, &composes, &examples, &args,
        )
    };
    if single {
        // One image: its error is the command's.
        let (image, outputs) = &jobs[0];
        let encoded = run(image, outputs)?;
        if args.verbose {
            let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
            eprintln!(
                "load {:.3} s (with {} example image(s)), image encoding {:.3} s, {} prompt(s) {:.3} s",
                secs(start, loaded),
                examples.len(),
                secs(loaded, encoded),
                args.prompts.len() + examples.len(),
                secs(encoded, Instant::now())
            );
        }
        return Ok(());
    }
    let dir = args
        .out_dir
        .as_ref()
        .expect("several images need --out-dir");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bar = progress_bar(jobs.len());
    let (mut done, mut existing, mut failed) = (0usize, 0usize, Vec::new());
    let first = Instant::now();
    for (image, outputs) in &jobs {
        let files = outputs.files(composes.len(), args.cutout);
        if args.skip_existing && files.iter().all(|f| f.is_file()) {
            existing += 1;
        } else {
            match run(image, outputs) {
                Ok(_) => done += 1,
                // Writing failed (a full disk, a read-only folder): no later image would fare
                // better.
                Err(e) if e.is::<WriteError>() => return Err(e),
                Err(e) => {
                    bar.suspend(|| eprintln!("skipped {}: {e:#}", image.display()));
                    failed.push(image.display().to_string());
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = first.elapsed().as_secs_f64();
    eprintln!(
        "{done} image(s) segmented into {} in {secs:.1} s ({:.2} images/s), {existing} already there, {} unreadable",
        dir.display(),
        done as f64 / secs.max(1e-9),
        failed.len()
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} images could not be segmented: {}",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// A failure to write results, which stops a batch (unlike an unreadable image).
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
struct WriteError {
    path: String,
    source: std::io::Error,
}

/// A --visual-prompt's conditional embedding: the whole image; or (when the whole argument is
/// not itself a file) the part `REF@X,Y,W,H` boxes or `REF@MASK` marks (MASK: an image of
/// REF's size whose light pixels, grey >= 128, mark it: the page's brush).
fn encode_example(segmenter: &Segmenter, reference: &str) -> Result<Tensor<2>> {
    let split = (reference.rsplit_once('@')).filter(|_| !Path::new(reference).exists());
    let path = Path::new(split.map_or(reference, |(path, _)| path));
    let (rgb, width, height) = load_rgb(path)?;
    let (rgb, width, height) = match split {
        None => (rgb, width, height),
        Some((_, part)) => {
            let marks = match Region::parse(part) {
                Ok(region) => region.mask(width, height)?,
                Err(_) if Path::new(part).is_file() => marks_from(Path::new(part), width, height)?,
                Err(e) => bail!("{e}, or a mask image file"),
            };
            let (rgb, side) = from_marks(&rgb, width, height, &marks, &segmenter.preprocess)?;
            (rgb, side, side)
        }
    };
    block_on(segmenter.encode_example(&rgb, width, height))
        .with_context(|| format!("--visual-prompt {reference}"))
}

/// The marks a mask image holds: 1 where its grey level is >= 128.
fn marks_from(path: &Path, width: usize, height: usize) -> Result<Vec<u8>> {
    let (rgb, w, h) = load_rgb(path)?;
    if (w, h) != (width, height) {
        bail!(
            "{}: the mask is {w}x{h} px but its image is {width}x{height}",
            path.display()
        );
    }
    Ok(rgb
        .chunks(3)
        .map(|p| {
            let grey =
                (u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000;
            u8::from(grey >= 128)
        })
        .collect())
}

/// Segments `image` and writes its `outputs` (each file written whole, then renamed into
/// place, so that an interrupted run leaves no half-written file for --skip-existing to
/// trust). Returns when the image was encoded.
fn segment_one<'a>(
    segmenter: &Segmenter,
    device: &clipseg::burn::tensor::Device,
    image: &Path,
    outputs: &Outputs,
    composes: &[Compose],
    examples: &'a [Tensor<2>],
    args: &'a Args,
) -> Result<Instant> {
    let (rgb, width, height) = load_rgb(image)?;
    let encoded_image = block_on(segmenter.encode_image(&rgb, width, height))?;
    device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let encoded = Instant::now();
    let text = |t: &'a String| Prompt::Text(t);
    let prompts: Vec<Prompt> = (args.prompts.iter().map(text))
        .chain(examples.iter().map(Prompt::Example))
        .chain(args.subtract.iter().map(text))
        .collect();
    let maps = block_on(segmenter.segment_with(&encoded_image, &prompts))?;
    let (count, side) = (maps.count(), maps.side());
    if let Some(path) = &outputs.logits {
        write_whole(path, &npy::to_bytes(maps.logits(), &[count, side, side]))?;
    }
    if let Some(path) = &outputs.mask {
        for (k, compose) in composes.iter().enumerate() {
            let alpha = compose.mask(&maps, width, height, args.threshold)?;
            let out = mask_path(path, k, composes.len());
            if args.cutout {
                let rgba = cut_out(&rgb, &alpha);
                write_whole(&cutout_path(&out), &encode_png(width, height, &rgba)?)?;
            }
            write_mask(&out, width, height, alpha)?;
        }
    }
    Ok(encoded)
}

/// Encodes a mask in the format `path` names and writes it whole: PNG where it names none or
/// PNG (the page's encoder, [`encode_png`]: the same bytes), else through `image`.
fn write_mask(path: &Path, width: usize, height: usize, mask: Vec<u8>) -> Result<()> {
    let format = image::ImageFormat::from_path(path).unwrap_or(image::ImageFormat::Png);
    if format == image::ImageFormat::Png {
        return write_whole(path, &encode_png(width, height, &mask)?);
    }
    let (w, h) = (width as u32, height as u32);
    let mask = image::GrayImage::from_raw(w, h, mask).context("mask buffer size")?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    (image::DynamicImage::from(mask).write_to(&mut bytes, format))
        .with_context(|| format!("encoding {}", path.display()))?;
    write_whole(path, bytes.get_ref())
}

/// `OUT-cutout.png` beside the mask `OUT.EXT` (PNG: it has an alpha channel).
fn cutout_path(mask: &Path) -> PathBuf {
    let stem = mask
        .file_stem()
        .map_or_else(|| "mask".into(), |s| s.to_string_lossy().into_owned());
    mask.with_file_name(format!("{stem}-cutout.png"))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it to `path`.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_os_string());
    let mut partial = name;
    partial.push(".partial");
    let partial = path.with_file_name(partial);
    let failed = |source| WriteError {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&partial, bytes).map_err(failed)?;
    std::fs::rename(&partial, path).map_err(failed)?;
    Ok(())
}

/// The files `inputs` name: files as given, folders as their image files, sorted.
fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            out.push(input.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(input).with_context(|| format!("reading {}", input.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let ext = p.extension().map(|e| e.to_string_lossy().to_lowercase());
                p.is_file() && ext.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
            })
            .collect();
        if found.is_empty() {
            bail!(
                "{} has no image files ({})",
                input.display(),
                IMAGE_EXTENSIONS.join(", ")
            );
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Each image's outputs in `dir`, named after its file stem; refused where two images would
/// write the same files.
fn named_outputs(
    images: &[PathBuf],
    dir: &Path,
    save_logits: bool,
) -> Result<Vec<(PathBuf, Outputs)>> {
    let mut by_name = std::collections::HashMap::new();
    let mut jobs = Vec::new();
    for image in images {
        let stem = image
            .file_stem()
            .with_context(|| format!("{} has no file name", image.display()))?
            .to_string_lossy()
            .into_owned();
        if let Some(other) = by_name.insert(stem.clone(), image.clone()) {
            bail!(
                "{} and {} would both write {}/{stem}*: rename one, or segment them into different --out-dir folders",
                other.display(),
                image.display(),
                dir.display()
            );
        }
        let outputs = Outputs {
            logits: save_logits.then(|| dir.join(format!("{stem}.npy"))),
            mask: Some(dir.join(format!("{stem}.png"))),
        };
        jobs.push((image.clone(), outputs));
    }
    Ok(jobs)
}

/// Images done of `total`, with the rate and the time left, on stderr (hidden when it is not a
/// terminal).
fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let template = "[{bar:30}] {pos}/{len} images {per_sec} ETA {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `OUT.png` for one prompt; `OUT-0.png`, `OUT-1.png`, ... in prompt order for several.
fn mask_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or_else(|| "mask".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(|| "png".into(), |e| e.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-{index}.{ext}"))
}

//! Deterministic generator of small datasets in the exact VGPhraseCut_v0
//! on-disk schema (see [`super::phrasecut`]): coloured circles, squares and
//! triangles on smooth noisy backgrounds, with referring phrases such as
//! "the large red circle on the left" or "red circles".
//!
//! What is written under `dir`:
//!
//! * `images/{image_id}.jpg`: real baseline JPEGs (quality
//!   [`SyntheticSpec::jpeg_quality`], 95 by default).
//! * `image_data_split.json`: `{image_id, width, height, url, coco_id: null,
//!   flickr_id: null, split}` per image.
//! * `refer_{train,val,test,miniv}.json`: tasks with `task_id`, `image_id`,
//!   `ann_ids`, `phrase`, `phrase_structure` (`name`, `attributes`,
//!   `relation_ids`, `relation_descriptions`, `type`), `instance_boxes`
//!   (`[x, y, w, h]`, inclusive size) and `Polygons` (instances -> polygons ->
//!   integer `[x, y]` points; circles are [`SyntheticSpec::circle_points`]-gons).
//!   Every split file is written, `[]` when the split has no image.
//! * `name_att_rel_count.json`: `{cat, att, rel}` lists of `[word, count]`, the
//!   file `PhraseHandler` (and so `RefVGLoader`) of the reference code reads.
//!
//! Semantics. A phrase names a shape, optionally a colour, a size (`small` /
//! `large`) and a position (`on the left` / `on the right` / `at the top` /
//! `at the bottom`, meaning the shape's centre lies in the outer 40 % of the
//! image on that side), and refers to **all** objects matching every stated
//! property; when several match, the noun is plural and every match is one
//! instance of the task. Like the real data, each image has at most one task
//! per distinct set of referred objects. The phrase structure rebuilds the
//! phrase with the reference `construct_phrase` (apart from a leading "the"
//! and the plural "s"): `attributes = [colour, size]`, position as the relation
//! description `["on the", "left"]`, `type` = `name` / `attribute` /
//! `relation`.
//!
//! **Negatives**: phrases without a position word whose description matches
//! no object of the image (mostly "hard" ones that share the shape or colour
//! of an object present, e.g. "blue circle" next to a red circle) are written as ordinary tasks with empty `Polygons`, `instance_boxes` and
//! `ann_ids`, and `task_id` `"{image_id}__neg{k}"`. The real dataset never
//! contains such tasks (its build script drops tasks without polygons), but
//! the schema allows empty lists; their evaluator ground truth is all zeros.
//! CLIPSeg's own loader (`np.stack` of no masks) would fail on them, so
//! consumers that mimic it should sample negatives themselves.
//!
//! Object pixels are exactly the PIL-rasterised polygons
//! ([`super::fill_polygon_pil`]), so the ground truth matches the drawing up
//! to JPEG compression. Everything is a function of the spec: the same seed
//! gives byte-identical files on every platform.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::phrasecut::{ImageInfo, PhraseStructure, Split, fill_polygon_pil};
use super::{DataError, Mask, SplitMix64, one_line};

/// Parameters of [`generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// Total number of images over all splits.
    pub images: usize,
    pub seed: u64,
    /// Each image side is drawn uniformly from `min_side..=max_side`.
    pub min_side: u32,
    pub max_side: u32,
    /// Relative number of images of train, val, test, miniv. Every split
    /// with a non-zero weight gets at least one image when `images` allows.
    pub split_weights: [u32; 4],
    /// Objects per image are drawn from `1..=max_objects` (fewer when they do
    /// not fit without overlapping).
    pub max_objects: usize,
    /// At most this many positive tasks per image.
    pub max_positives_per_image: usize,
    /// Negative tasks per image (fewer if the image leaves no such phrase).
    pub negatives_per_image: usize,
    /// Vertices of a circle's polygon.
    pub circle_points: usize,
    pub jpeg_quality: u8,
    /// `image_id` of the first image; ids are consecutive.
    pub first_image_id: i64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            images: 40,
            seed: 0,
            min_side: 128,
            max_side: 320,
            split_weights: [7, 1, 1, 1],
            max_objects: 5,
            max_positives_per_image: 6,
            negatives_per_image: 1,
            circle_points: 32,
            jpeg_quality: 95,
            first_image_id: 1,
        }
    }
}

/// Counts per split, indexed like [`Split::ALL`] (train, val, test, miniv).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyntheticSummary {
    pub images: [usize; 4],
    /// All tasks, negatives included.
    pub tasks: [usize; 4],
    pub negatives: [usize; 4],
    /// Referred instances over all tasks.
    pub instances: usize,
}

// ------------------------------------------------------------------ vocabulary

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Circle,
    Square,
    Triangle,
}

const SHAPES: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];

impl Shape {
    fn noun(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Orange,
    Purple,
    White,
    Black,
}

const COLOURS: [Colour; 8] = [
    Colour::Red,
    Colour::Green,
    Colour::Blue,
    Colour::Yellow,
    Colour::Orange,
    Colour::Purple,
    Colour::White,
    Colour::Black,
];

impl Colour {
    fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Orange => "orange",
            Colour::Purple => "purple",
            Colour::White => "white",
            Colour::Black => "black",
        }
    }

    fn rgb(self) -> [f64; 3] {
        match self {
            Colour::Red => [215.0, 35.0, 35.0],
            Colour::Green => [35.0, 165.0, 55.0],
            Colour::Blue => [35.0, 75.0, 215.0],
            Colour::Yellow => [235.0, 215.0, 40.0],
            Colour::Orange => [240.0, 135.0, 25.0],
            Colour::Purple => [135.0, 50.0, 175.0],
            Colour::White => [245.0, 245.0, 245.0],
            Colour::Black => [20.0, 20.0, 20.0],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Size {
    Small,
    Large,
}

impl Size {
    fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pos {
    Left,
    Right,
    Top,
    Bottom,
}

const POSITIONS: [Pos; 4] = [Pos::Left, Pos::Right, Pos::Top, Pos::Bottom];

impl Pos {
    /// `(predicate, object)` of the relation description.
    fn relation(self) -> (&'static str, &'static str) {
        match self {
            Pos::Left => ("on the", "left"),
            Pos::Right => ("on the", "right"),
            Pos::Top => ("at the", "top"),
            Pos::Bottom => ("at the", "bottom"),
        }
    }
}

struct Object {
    shape: Shape,
    colour: Colour,
    size: Size,
    cx: f64,
    cy: f64,
    r: f64,
    polygon: Vec<(i32, i32)>,
    ann_id: i64,
    hpos: Option<Pos>,
    vpos: Option<Pos>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Desc {
    shape: Shape,
    colour: Option<Colour>,
    size: Option<Size>,
    pos: Option<Pos>,
}

impl Desc {
    fn matches(&self, o: &Object) -> bool {
        o.shape == self.shape
            && self.colour.is_none_or(|c| c == o.colour)
            && self.size.is_none_or(|s| s == o.size)
            && self
                .pos
                .is_none_or(|p| o.hpos == Some(p) || o.vpos == Some(p))
    }

    fn phrase(&self, count: usize, with_article: bool) -> String {
        let mut words: Vec<String> = Vec::new();
        if with_article && count <= 1 {
            words.push("the".into());
        }
        if let Some(s) = self.size {
            words.push(s.word().into());
        }
        if let Some(c) = self.colour {
            words.push(c.word().into());
        }
        let noun = self.shape.noun();
        words.push(if count >= 2 {
            format!("{noun}s")
        } else {
            noun.to_string()
        });
        if let Some(p) = self.pos {
            let (pred, obj) = p.relation();
            words.push(format!("{pred} {obj}"));
        }
        words.join(" ")
    }

    fn structure(&self) -> PhraseStructure {
        let mut attributes = Vec::new();
        if let Some(c) = self.colour {
            attributes.push(c.word().to_string());
        }
        if let Some(s) = self.size {
            attributes.push(s.word().to_string());
        }
        let relation_descriptions: Vec<Vec<String>> = self
            .pos
            .map(|p| {
                let (a, b) = p.relation();
                vec![vec![a.to_string(), b.to_string()]]
            })
            .unwrap_or_default();
        let kind = if !relation_descriptions.is_empty() {
            "relation"
        } else if !attributes.is_empty() {
            "attribute"
        } else {
            "name"
        };
        PhraseStructure {
            name: self.shape.noun().to_string(),
            attributes,
            relation_ids: Vec::new(),
            relation_descriptions,
            kind: kind.to_string(),
        }
    }
}

// ------------------------------------------------------------------ output schema

/// A task as written: the field names and nesting of `refer_{split}.json`,
/// with integer coordinates.
#[derive(Serialize)]
struct OutTask {
    task_id: String,
    image_id: i64,
    ann_ids: Vec<i64>,
    instance_boxes: Vec<[i32; 4]>,
    #[serde(rename = "Polygons")]
    polygons: Vec<Vec<Vec<[i32; 2]>>>,
    phrase: String,
    phrase_structure: PhraseStructure,
}

#[derive(Serialize)]
struct NameAttRelCount {
    cat: Vec<(String, usize)>,
    att: Vec<(String, usize)>,
    rel: Vec<(String, usize)>,
}

// ------------------------------------------------------------------ generation

fn validate(spec: &SyntheticSpec) -> Result<(), DataError> {
    let bad = |m: &str| Err(DataError::Spec(m.to_string()));
    if spec.min_side < 32 || spec.min_side > spec.max_side || spec.max_side > 4096 {
        return bad("need 32 <= min_side <= max_side <= 4096");
    }
    if spec.max_objects == 0 || spec.max_objects > 16 {
        return bad("max_objects must be in 1..=16");
    }
    if spec.circle_points < 8 {
        return bad("circle_points must be at least 8");
    }
    if spec.jpeg_quality == 0 || spec.jpeg_quality > 100 {
        return bad("jpeg_quality must be in 1..=100");
    }
    if spec.split_weights.iter().all(|&w| w == 0) {
        return bad("split_weights are all zero");
    }
    if spec.first_image_id < 0 {
        return bad("first_image_id must be non-negative");
    }
    Ok(())
}

/// Image counts per split: largest remainder of the weights, then at least
/// one image for every weighted split when there are enough images.
fn split_counts(n: usize, weights: [u32; 4]) -> [usize; 4] {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let mut counts = [0usize; 4];
    let mut rems = [(0u64, 0usize); 4];
    for i in 0..4 {
        let exact = n as u64 * u64::from(weights[i]);
        counts[i] = (exact / total) as usize;
        rems[i] = (exact % total, i);
    }
    let mut left = n - counts.iter().sum::<usize>();
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rems.iter().cycle() {
        if left == 0 {
            break;
        }
        if weights[i] > 0 {
            counts[i] += 1;
            left -= 1;
        }
    }
    for i in 0..4 {
        if weights[i] > 0 && counts[i] == 0 {
            let donor = (0..4)
                .max_by_key(|&j| (counts[j], std::cmp::Reverse(j)))
                .unwrap();
            if counts[donor] > 1 {
                counts[donor] -= 1;
                counts[i] += 1;
            }
        }
    }
    counts
}

/// Writes a synthetic dataset in the real PhraseCut layout under `dir`
/// (created if needed; existing files of the same names are overwritten).
/// Deterministic given `spec`.
pub fn generate(
    dir: impl AsRef<Path>,
    spec: &SyntheticSpec,
) -> Result<SyntheticSummary, DataError> {
    validate(spec)?;
    let dir = dir.as_ref();
    let img_dir = dir.join("images");
    fs::create_dir_all(&img_dir).map_err(|e| DataError::io(&img_dir, e))?;

    let mut master = SplitMix64::new(spec.seed ^ 0x5048_5241_5345_4355); // "PHRASECU"
    let counts = split_counts(spec.images, spec.split_weights);
    let mut split_of: Vec<Split> = Split::ALL
        .iter()
        .zip(counts)
        .flat_map(|(&s, c)| std::iter::repeat_n(s, c))
        .collect();
    master.shuffle(&mut split_of);

    let mut summary = SyntheticSummary::default();
    let mut infos: Vec<ImageInfo> = Vec::with_capacity(spec.images);
    let mut per_split: BTreeMap<Split, Vec<OutTask>> =
        Split::ALL.iter().map(|&s| (s, Vec::new())).collect();
    let mut cat: BTreeMap<String, usize> = BTreeMap::new();
    let mut att: BTreeMap<String, usize> = BTreeMap::new();
    let mut rel: BTreeMap<String, usize> = BTreeMap::new();

    for (index, &split) in split_of.iter().enumerate() {
        let image_id = spec.first_image_id + index as i64;
        let mut rng = SplitMix64::new(master.next_u64());
        let w = rng.range_u32(spec.min_side, spec.max_side);
        let h = rng.range_u32(spec.min_side, spec.max_side);
        let objects = place_objects(&mut rng, spec, image_id, w, h);
        let img = render(&mut rng, w, h, &objects);
        let path = super::phrasecut::image_path(dir, image_id);
        write_jpeg(&path, &img, spec.jpeg_quality)?;
        infos.push(ImageInfo {
            image_id,
            width: w,
            height: h,
            split: split.as_str().to_string(),
            url: Some(format!("synthetic://phrasecut/{image_id}.jpg")),
            coco_id: None,
            flickr_id: None,
        });

        let tasks = make_tasks(&mut rng, spec, image_id, &objects);
        let si = Split::ALL
            .iter()
            .position(|&s| s == split)
            .expect("a split");
        summary.images[si] += 1;
        for t in &tasks {
            summary.tasks[si] += 1;
            summary.instances += t.polygons.len();
            if t.polygons.is_empty() {
                summary.negatives[si] += 1;
            }
            *cat.entry(t.phrase_structure.name.clone()).or_default() += 1;
            for a in &t.phrase_structure.attributes {
                *att.entry(a.clone()).or_default() += 1;
            }
            for r in &t.phrase_structure.relation_descriptions {
                *rel.entry(r[0].clone()).or_default() += 1;
            }
        }
        per_split.get_mut(&split).expect("all splits").extend(tasks);
    }

    write_json(&dir.join("image_data_split.json"), &infos)?;
    for (split, tasks) in &per_split {
        write_json(&dir.join(split.refer_file_name()), tasks)?;
    }
    let by_count = |m: BTreeMap<String, usize>| {
        let mut v: Vec<(String, usize)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    write_json(
        &dir.join("name_att_rel_count.json"),
        &NameAttRelCount {
            cat: by_count(cat),
            att: by_count(att),
            rel: by_count(rel),
        },
    )?;
    Ok(summary)
}

fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), DataError> {
    let file = fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer(&mut w, value).map_err(|e| DataError::Json {
        path: path.to_path_buf(),
        msg: one_line(e),
    })?;
    w.flush().map_err(|e| DataError::io(path, e))
}

fn write_jpeg(path: &Path, img: &image::RgbImage, quality: u8) -> Result<(), DataError> {
    let file = fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, quality)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| DataError::Image {
            path: path.to_path_buf(),
            msg: format!("cannot encode JPEG: {}", one_line(e)),
        })?;
    w.flush().map_err(|e| DataError::io(path, e))
}

fn shape_polygon(
    rng: &mut SplitMix64,
    shape: Shape,
    cx: f64,
    cy: f64,
    r: f64,
    circle_points: usize,
) -> Vec<(i32, i32)> {
    let theta = rng.range_f64(0.0, std::f64::consts::TAU);
    let (n, radius, start) = match shape {
        Shape::Circle => (circle_points, r, theta),
        // square of side 1.6 r: corners at distance 0.8 r * sqrt(2)
        Shape::Square => (4, 0.8 * r * std::f64::consts::SQRT_2, theta),
        Shape::Triangle => (3, r, theta),
    };
    (0..n)
        .map(|k| {
            let a = start + std::f64::consts::TAU * k as f64 / n as f64;
            (
                (cx + radius * a.cos()).round() as i32,
                (cy + radius * a.sin()).round() as i32,
            )
        })
        .collect()
}

fn place_objects(
    rng: &mut SplitMix64,
    spec: &SyntheticSpec,
    image_id: i64,
    w: u32,
    h: u32,
) -> Vec<Object> {
    let (wf, hf) = (f64::from(w), f64::from(h));
    let side = wf.min(hf);
    let n = rng.range_u32(1, spec.max_objects as u32) as usize;
    // Sometimes repeat a shape + colour so that plural phrases occur.
    let group: Option<(Shape, Colour, usize)> = if n >= 2 && rng.chance(0.4) {
        Some((
            *rng.choose(&SHAPES).expect("shapes"),
            *rng.choose(&COLOURS).expect("colours"),
            rng.range_u32(2, n.min(3) as u32) as usize,
        ))
    } else {
        None
    };
    let mut objects: Vec<Object> = Vec::new();
    for k in 0..n {
        let (shape, colour) = match group {
            Some((s, c, m)) if k < m => (s, c),
            _ => (
                *rng.choose(&SHAPES).expect("shapes"),
                *rng.choose(&COLOURS).expect("colours"),
            ),
        };
        let size = if rng.chance(0.5) {
            Size::Small
        } else {
            Size::Large
        };
        let r = match size {
            Size::Small => rng.range_f64(0.06, 0.09),
            Size::Large => rng.range_f64(0.13, 0.19),
        } * side;
        let mut placed = None;
        for _ in 0..60 {
            let cx = rng.range_f64(r + 2.0, wf - r - 3.0);
            let cy = rng.range_f64(r + 2.0, hf - r - 3.0);
            if objects
                .iter()
                .all(|o| ((o.cx - cx).powi(2) + (o.cy - cy).powi(2)).sqrt() > o.r + r + 4.0)
            {
                placed = Some((cx, cy));
                break;
            }
        }
        let Some((cx, cy)) = placed else { continue };
        let hpos = if cx < 0.4 * wf {
            Some(Pos::Left)
        } else if cx > 0.6 * wf {
            Some(Pos::Right)
        } else {
            None
        };
        let vpos = if cy < 0.4 * hf {
            Some(Pos::Top)
        } else if cy > 0.6 * hf {
            Some(Pos::Bottom)
        } else {
            None
        };
        let polygon = shape_polygon(rng, shape, cx, cy, r, spec.circle_points);
        objects.push(Object {
            shape,
            colour,
            size,
            cx,
            cy,
            r,
            polygon,
            ann_id: image_id * 100 + objects.len() as i64 + 1,
            hpos,
            vpos,
        });
    }
    objects
}

/// Smooth background (gradient + bilinear value noise + fine grain), then the
/// objects, each painted exactly over its PIL-rasterised polygon with soft
/// directional shading.
fn render(rng: &mut SplitMix64, w: u32, h: u32, objects: &[Object]) -> image::RgbImage {
    let (wu, hu) = (w as usize, h as usize);
    let mut base = [[0.0f64; 3]; 2];
    for c in &mut base {
        let grey = rng.range_f64(70.0, 190.0);
        for ch in c.iter_mut() {
            *ch = grey + rng.range_f64(-25.0, 25.0);
        }
    }
    let angle = rng.range_f64(0.0, std::f64::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    let g = rng.range_u32(3, 6) as usize;
    let grid: Vec<[f64; 3]> = (0..(g + 1) * (g + 1))
        .map(|_| {
            [
                rng.range_f64(-30.0, 30.0),
                rng.range_f64(-30.0, 30.0),
                rng.range_f64(-30.0, 30.0),
            ]
        })
        .collect();
    let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
    let mut px = vec![0.0f64; wu * hu * 3];
    let diag = (f64::from(w) * dx.abs() + f64::from(h) * dy.abs()).max(1.0);
    let off = (if dx < 0.0 { -f64::from(w) * dx } else { 0.0 })
        + (if dy < 0.0 { -f64::from(h) * dy } else { 0.0 });
    for y in 0..hu {
        let gy = y as f64 / hu as f64 * g as f64;
        let (iy, fy) = (
            (gy as usize).min(g - 1),
            smooth(gy - (gy as usize).min(g - 1) as f64),
        );
        for x in 0..wu {
            let gx = x as f64 / wu as f64 * g as f64;
            let (ix, fx) = (
                (gx as usize).min(g - 1),
                smooth(gx - (gx as usize).min(g - 1) as f64),
            );
            let t = ((x as f64 * dx + y as f64 * dy + off) / diag).clamp(0.0, 1.0);
            let grain = rng.range_f64(-6.0, 6.0);
            for ch in 0..3 {
                let n00 = grid[iy * (g + 1) + ix][ch];
                let n01 = grid[iy * (g + 1) + ix + 1][ch];
                let n10 = grid[(iy + 1) * (g + 1) + ix][ch];
                let n11 = grid[(iy + 1) * (g + 1) + ix + 1][ch];
                let noise =
                    (n00 * (1.0 - fx) + n01 * fx) * (1.0 - fy) + (n10 * (1.0 - fx) + n11 * fx) * fy;
                px[(y * wu + x) * 3 + ch] =
                    base[0][ch] * (1.0 - t) + base[1][ch] * t + noise + grain;
            }
        }
    }
    for o in objects {
        let mut m = Mask::new(w, h);
        fill_polygon_pil(&mut m, &o.polygon);
        let la = rng.range_f64(0.0, std::f64::consts::TAU);
        let (lx, ly) = (la.cos(), la.sin());
        let rgb = o.colour.rgb();
        for y in 0..hu {
            for x in 0..wu {
                if m.data[y * wu + x] == 0 {
                    continue;
                }
                let shade = 1.0
                    + 0.12
                        * (((x as f64 - o.cx) * lx + (y as f64 - o.cy) * ly) / o.r)
                            .clamp(-1.0, 1.0);
                let grain = rng.range_f64(-5.0, 5.0);
                for ch in 0..3 {
                    px[(y * wu + x) * 3 + ch] = rgb[ch] * shade + grain;
                }
            }
        }
    }
    let bytes: Vec<u8> = px
        .iter()
        .map(|&v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    image::RgbImage::from_raw(w, h, bytes).expect("buffer size matches")
}

fn make_tasks(
    rng: &mut SplitMix64,
    spec: &SyntheticSpec,
    image_id: i64,
    objects: &[Object],
) -> Vec<OutTask> {
    // Every description, with the objects it refers to.
    let mut descs: Vec<(Desc, Vec<usize>)> = Vec::new();
    for &shape in &SHAPES {
        for colour in std::iter::once(None).chain(COLOURS.iter().map(|&c| Some(c))) {
            for size in [None, Some(Size::Small), Some(Size::Large)] {
                for pos in std::iter::once(None).chain(POSITIONS.iter().map(|&p| Some(p))) {
                    let d = Desc {
                        shape,
                        colour,
                        size,
                        pos,
                    };
                    let hits: Vec<usize> = (0..objects.len())
                        .filter(|&i| d.matches(&objects[i]))
                        .collect();
                    descs.push((d, hits));
                }
            }
        }
    }

    // Positives: one description per distinct referred set.
    let mut groups: BTreeMap<Vec<usize>, Vec<Desc>> = BTreeMap::new();
    for (d, hits) in &descs {
        if !hits.is_empty() {
            groups.entry(hits.clone()).or_default().push(*d);
        }
    }
    let mut chosen: Vec<(Vec<usize>, Desc)> = groups
        .into_iter()
        .map(|(hits, ds)| {
            let d = *rng.choose(&ds).expect("non-empty group");
            (hits, d)
        })
        .collect();
    rng.shuffle(&mut chosen);
    chosen.truncate(spec.max_positives_per_image);
    chosen.sort();

    let mut tasks = Vec::new();
    for (hits, d) in chosen {
        let article = rng.chance(0.5);
        let mut ann_ids: Vec<i64> = hits.iter().map(|&i| objects[i].ann_id).collect();
        ann_ids.sort_unstable();
        let polygons: Vec<Vec<Vec<[i32; 2]>>> = hits
            .iter()
            .map(|&i| vec![objects[i].polygon.iter().map(|&(x, y)| [x, y]).collect()])
            .collect();
        let instance_boxes = hits.iter().map(|&i| int_box(&objects[i].polygon)).collect();
        tasks.push(OutTask {
            task_id: format!(
                "{image_id}__{}",
                ann_ids
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join("_")
            ),
            image_id,
            ann_ids,
            instance_boxes,
            polygons,
            phrase: d.phrase(hits.len(), article),
            phrase_structure: d.structure(),
        });
    }

    // Negatives: descriptions without a position (position thresholds make
    // near misses ambiguous) that match nothing, preferring ones that share
    // the shape or the colour of an object in the image.
    let mut hard: Vec<Desc> = Vec::new();
    let mut easy: Vec<Desc> = Vec::new();
    for (d, hits) in &descs {
        if !hits.is_empty() || d.pos.is_some() {
            continue;
        }
        let related = objects
            .iter()
            .any(|o| o.shape == d.shape || d.colour == Some(o.colour));
        if related {
            hard.push(*d)
        } else {
            easy.push(*d)
        }
    }
    for k in 0..spec.negatives_per_image {
        let pool = if !hard.is_empty() && (easy.is_empty() || rng.chance(0.75)) {
            &mut hard
        } else {
            &mut easy
        };
        if pool.is_empty() {
            break;
        }
        let d = pool.swap_remove(rng.below(pool.len() as u64) as usize);
        tasks.push(OutTask {
            task_id: format!("{image_id}__neg{k}"),
            image_id,
            ann_ids: Vec::new(),
            instance_boxes: Vec::new(),
            polygons: Vec::new(),
            phrase: d.phrase(1, rng.chance(0.5)),
            phrase_structure: d.structure(),
        });
    }
    tasks
}

/// `polygon_to_box` of the reference: `[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`.
fn int_box(polygon: &[(i32, i32)]) -> [i32; 4] {
    let x1 = polygon.iter().map(|p| p.0).min().unwrap_or(0);
    let x2 = polygon.iter().map(|p| p.0).max().unwrap_or(0);
    let y1 = polygon.iter().map(|p| p.1).min().unwrap_or(0);
    let y2 = polygon.iter().map(|p| p.1).max().unwrap_or(0);
    [x1, y1, x2 - x1 + 1, y2 - y1 + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data::phrasecut::PhraseCut;
    use crate::data::{flip_phrase, hflip_sample};
    use std::path::PathBuf;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("synthetic-test-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn small_spec(seed: u64) -> SyntheticSpec {
        SyntheticSpec {
            images: 14,
            seed,
            min_side: 64,
            max_side: 112,
            negatives_per_image: 2,
            ..SyntheticSpec::default()
        }
    }

    fn centroid(m: &Mask) -> (f64, f64) {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for y in 0..m.height {
            for x in 0..m.width {
                if m.get(x, y) {
                    sx += f64::from(x);
                    sy += f64::from(y);
                    n += 1.0;
                }
            }
        }
        (sx / n, sy / n)
    }

    /// Found by tests/fuzz.rs: an image size of u32::MAX squared in image_data_split.json made
    /// the ground truth allocate 900 GB (an abort); now the reader refuses it by name.
    #[test]
    fn image_sizes_no_image_has_are_refused() {
        let tmp = TempDir::new("sizes");
        generate(&tmp.0, &small_spec(3)).unwrap();
        let path = tmp.0.join("image_data_split.json");
        let mut infos: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        infos[1]["width"] = serde_json::json!(u32::MAX);
        fs::write(&path, infos.to_string()).unwrap();
        let err = PhraseCut::open(&tmp.0, "train").err().unwrap().to_string();
        assert!(err.contains("sides must be within 1..=16384"), "{err}");
    }

    #[test]
    fn round_trip_through_the_reader() {
        let tmp = TempDir::new("roundtrip");
        let spec = small_spec(7);
        let summary = generate(&tmp.0, &spec).unwrap();
        assert_eq!(summary.images, [10, 2, 1, 1]);
        assert_eq!(summary.images.iter().sum::<usize>(), spec.images);
        assert!(
            summary.negatives.iter().sum::<usize>() >= spec.images,
            "{summary:?}"
        );

        let mut multi_instance = 0;
        let mut flipped = 0;
        let mut image_ids = Vec::new();
        for (si, split) in Split::ALL.iter().enumerate() {
            let pc = PhraseCut::open(&tmp.0, split.as_str()).unwrap();
            assert_eq!(pc.len(), summary.tasks[si], "{split}");
            assert_eq!(pc.image_ids().len(), summary.images[si], "{split}");
            image_ids.extend(pc.image_ids());
            let mut negatives = 0;
            for t in pc.iter() {
                let (w, h) = t.size();
                assert!((64..=112).contains(&w) && (64..=112).contains(&h));
                let gt = t.gt_mask();
                assert_eq!((gt.width, gt.height), (w, h));
                assert_eq!(t.task.polygons.len(), t.task.instance_boxes.len());
                assert_eq!(t.task.polygons.len(), t.task.ann_ids.len());
                if t.is_negative() {
                    negatives += 1;
                    assert!(gt.is_blank(), "{}", t.task.task_id);
                    assert!(t.task.task_id.contains("__neg"));
                    continue;
                }
                assert!(!gt.is_blank(), "{}", t.task.task_id);
                let n = t.task.polygons.len();
                multi_instance += usize::from(n > 1);
                let noun = &t.task.phrase_structure.as_ref().unwrap().name;
                assert!(t.phrase().contains(&if n > 1 {
                    format!("{noun}s")
                } else {
                    noun.clone()
                }));
                // the phrase structure rebuilds the phrase like construct_phrase
                let ps = t.task.phrase_structure.as_ref().unwrap();
                let mut rebuilt = ps.name.clone();
                for a in &ps.attributes {
                    rebuilt = format!("{a} {rebuilt}");
                }
                for r in &ps.relation_descriptions {
                    rebuilt = format!("{rebuilt} {} {}", r[0], r[1]);
                }
                let plain =
                    t.phrase()
                        .trim_start_matches("the ")
                        .replacen(&format!("{noun}s"), noun, 1);
                assert_eq!(plain, rebuilt);
                // instance boxes enclose the instances
                for (inst, b) in t.task.polygons.iter().zip(&t.task.instance_boxes) {
                    assert_eq!(Some(*b), crate::data::phrasecut::polygons_box(inst));
                }

                // the image shows the named colour where the mask is
                let img = t.load_image().unwrap();
                assert_eq!(img.dimensions(), (w, h));
                if let Some(c) = COLOURS
                    .iter()
                    .find(|c| ps.attributes.iter().any(|a| a == c.word()))
                {
                    let mut sum = [0.0f64; 3];
                    for y in 0..h {
                        for x in 0..w {
                            if gt.get(x, y) {
                                for (acc, &v) in sum.iter_mut().zip(&img.get_pixel(x, y).0) {
                                    *acc += f64::from(v);
                                }
                            }
                        }
                    }
                    let k = gt.count() as f64;
                    let want = c.rgb();
                    let dist: f64 = (0..3).map(|ch| (sum[ch] / k - want[ch]).abs()).sum();
                    assert!(dist < 90.0, "{}: mean colour off by {dist}", t.phrase());
                }
                // position words hold, and still hold after the flip augmentation
                let side = ["left", "right"]
                    .into_iter()
                    .find(|s| t.phrase().ends_with(s));
                if let Some(side) = side {
                    let (cx, _) = centroid(&gt);
                    let frac = (cx + 0.5) / f64::from(w);
                    assert!(
                        if side == "left" {
                            frac < 0.45
                        } else {
                            frac > 0.55
                        },
                        "{}: {frac}",
                        t.phrase()
                    );
                    let mut m = gt.clone();
                    let mut pixels = img.clone().into_raw();
                    let p = hflip_sample(&mut pixels, 3, &mut m, t.phrase()).unwrap();
                    assert_eq!(p, flip_phrase(t.phrase()).unwrap());
                    let (fx, _) = centroid(&m);
                    let ffrac = (fx + 0.5) / f64::from(w);
                    assert!(if side == "left" {
                        ffrac > 0.55
                    } else {
                        ffrac < 0.45
                    });
                    assert!(p.ends_with(if side == "left" { "right" } else { "left" }));
                    flipped += 1;
                }
            }
            assert_eq!(negatives, summary.negatives[si]);
        }
        image_ids.sort_unstable();
        assert_eq!(image_ids, (1..=14).collect::<Vec<i64>>());
        assert!(multi_instance > 0, "no plural phrase generated");
        assert!(flipped > 0, "no left/right phrase generated");
        let counts: serde_json::Value =
            serde_json::from_slice(&fs::read(tmp.0.join("name_att_rel_count.json")).unwrap())
                .unwrap();
        assert!(counts["cat"].as_array().unwrap().len() >= 2);
    }

    #[test]
    fn deterministic_given_the_seed() {
        let (a, b, c) = (
            TempDir::new("det-a"),
            TempDir::new("det-b"),
            TempDir::new("det-c"),
        );
        let spec = SyntheticSpec {
            images: 5,
            ..small_spec(99)
        };
        let sa = generate(&a.0, &spec).unwrap();
        let sb = generate(&b.0, &spec).unwrap();
        assert_eq!(sa, sb);
        let mut files: Vec<String> = vec![
            "image_data_split.json".into(),
            "name_att_rel_count.json".into(),
        ];
        files.extend(Split::ALL.iter().map(|s| s.refer_file_name()));
        files.extend((1..=5).map(|i| format!("images/{i}.jpg")));
        for f in &files {
            assert_eq!(
                fs::read(a.0.join(f)).unwrap(),
                fs::read(b.0.join(f)).unwrap(),
                "{f}"
            );
        }
        generate(&c.0, &SyntheticSpec { seed: 100, ..spec }).unwrap();
        assert_ne!(
            fs::read(a.0.join("images/1.jpg")).unwrap(),
            fs::read(c.0.join("images/1.jpg")).unwrap()
        );
        // real JPEG files, whatever the reader
        assert_eq!(
            &fs::read(a.0.join("images/1.jpg")).unwrap()[..3],
            &[0xFF, 0xD8, 0xFF]
        );
    }

    #[test]
    fn bad_specs_are_rejected() {
        let tmp = TempDir::new("bad");
        for spec in [
            SyntheticSpec {
                min_side: 10,
                ..SyntheticSpec::default()
            },
            SyntheticSpec {
                min_side: 300,
                max_side: 200,
                ..SyntheticSpec::default()
            },
            SyntheticSpec {
                max_objects: 0,
                ..SyntheticSpec::default()
            },
            SyntheticSpec {
                jpeg_quality: 0,
                ..SyntheticSpec::default()
            },
            SyntheticSpec {
                split_weights: [0; 4],
                ..SyntheticSpec::default()
            },
        ] {
            let e = generate(&tmp.0, &spec).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid synthetic spec") && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn split_counts_cover_all_splits() {
        assert_eq!(split_counts(10, [7, 1, 1, 1]), [7, 1, 1, 1]);
        assert_eq!(split_counts(4, [7, 1, 1, 1]), [1, 1, 1, 1]);
        assert_eq!(split_counts(40, [7, 1, 1, 1]), [28, 4, 4, 4]);
        assert_eq!(split_counts(3, [1, 0, 1, 0]), [2, 0, 1, 0]);
        assert_eq!(split_counts(0, [7, 1, 1, 1]), [0, 0, 0, 0]);
        for n in 0..50 {
            assert_eq!(split_counts(n, [5, 2, 2, 1]).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn phrases_read_naturally() {
        let d = Desc {
            shape: Shape::Circle,
            colour: Some(Colour::Red),
            size: Some(Size::Large),
            pos: Some(Pos::Left),
        };
        assert_eq!(d.phrase(1, true), "the large red circle on the left");
        assert_eq!(d.phrase(2, true), "large red circles on the left");
        let d = Desc {
            shape: Shape::Circle,
            colour: Some(Colour::Red),
            size: None,
            pos: None,
        };
        assert_eq!(d.phrase(3, false), "red circles");
        let s = d.structure();
        assert_eq!((s.name.as_str(), s.kind.as_str()), ("circle", "attribute"));
    }
}

//! Reader of the real VGPhraseCut_v0 layout, the evaluator's ground truth and
//! IoU, and CLIPSeg's mask resize.
//!
//! Layout (`utils/file_paths.py` of github.com/ChenyunWu/PhraseCutDataset):
//!
//! ```text
//! <dir>/image_data_split.json     list of {image_id, width, height, split, url, coco_id, flickr_id}
//! <dir>/refer_{train,val,test,miniv}.json
//!                                 list of tasks {task_id, image_id, ann_ids, phrase,
//!                                   phrase_structure, instance_boxes, Polygons}
//! <dir>/images/{image_id}.jpg
//! ```
//!
//! `Polygons` nests instances -> polygons -> `[x, y]` points; `instance_boxes`
//! has one `[x, y, w, h]` box per instance. The README of the dataset calls
//! the image list `image_data_split3000.json`; its loader reads
//! `image_data_split.json`; [`PhraseCut::open`] accepts either.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{DataError, Mask, one_line};

/// Image ids whose size in `image_data_split.json` does not match the actual
/// image file; CLIPSeg's `datasets/phrasecut.py` drops them
/// (`invalid_img_ids`). [`PhraseCut::open`] keeps them; filter with
/// [`TaskRef::clipseg_invalid`] to reproduce CLIPSeg's sample list.
pub const CLIPSEG_INVALID_IMAGE_IDS: [i64; 17] = [
    150417, 285665, 498246, 61564, 285743, 498269, 498010, 150516, 150344, 286093, 61530, 150333,
    286065, 285814, 498187, 285761, 498042,
];

// ------------------------------------------------------------------ schema

/// One of the four PhraseCut splits. `miniv` is a 100-image subset of the
/// validation images that is *not* contained in `refer_val.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Val,
    Test,
    Miniv,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Val, Split::Test, Split::Miniv];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::Miniv => "miniv",
        }
    }

    /// Parses `"val"` or, like `RefVGLoader(split=...)`, several splits joined
    /// by `_` (`"val_miniv"`). Duplicates are dropped, order is kept.
    pub fn parse_list(s: &str) -> Result<Vec<Split>, DataError> {
        let mut out = Vec::new();
        for part in s.split('_') {
            let split = part.parse::<Split>()?;
            if !out.contains(&split) {
                out.push(split);
            }
        }
        Ok(out)
    }

    /// File name of this split's annotations: `refer_{split}.json`.
    pub fn refer_file_name(self) -> String {
        format!("refer_{}.json", self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            "miniv" => Ok(Split::Miniv),
            other => Err(DataError::UnknownSplit(other.to_string())),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `image_data_split.json` (Visual Genome's image record plus the
/// PhraseCut split). Unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub image_id: i64,
    pub width: u32,
    pub height: u32,
    pub split: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub coco_id: Option<i64>,
    #[serde(default)]
    pub flickr_id: Option<i64>,
}

/// `phrase_structure` of a task. All fields default when missing or `null`.
/// `construct_phrase` in `utils/phrase_handler.py` rebuilds the phrase from it:
/// each attribute is prefixed to the name in list order (so `["red", "large"]`
/// gives "large red circle"), then every relation description
/// `[predicate, object]` is appended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhraseStructure {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub attributes: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub relation_ids: Vec<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub relation_descriptions: Vec<Vec<String>>,
    /// `name`, `attribute`, `relation` or `verbose`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
}

/// One phrase-region pair of `refer_{split}.json`. Unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// `"{image_id}__{ann_ids joined by _}"` in the real data.
    #[serde(deserialize_with = "string_or_number")]
    pub task_id: String,
    pub image_id: i64,
    pub phrase: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ann_ids: Vec<i64>,
    /// One `[x, y, w, h]` box per instance (inclusive size: `w = x2 - x1 + 1`).
    #[serde(default, deserialize_with = "null_default")]
    pub instance_boxes: Vec<[f64; 4]>,
    /// Instances -> polygons -> `[x, y]` points, in original image pixels.
    #[serde(rename = "Polygons")]
    pub polygons: Vec<Vec<Vec<[f64; 2]>>>,
    #[serde(default)]
    pub phrase_structure: Option<PhraseStructure>,
}

impl Task {
    /// True when the task has no region (no polygon with >= 2 points). The real
    /// dataset has none (tasks without polygons were dropped while building
    /// it); the synthetic generator writes such negatives with empty
    /// `Polygons`.
    pub fn is_negative(&self) -> bool {
        !self.polygons.iter().flatten().any(|p| p.len() >= 2)
    }

    /// All polygons of all instances, flattened the way the evaluator does
    /// (`gt_polygons += ps` for every instance).
    pub fn all_polygons(&self) -> impl Iterator<Item = &Vec<[f64; 2]>> {
        self.polygons.iter().flatten()
    }

    /// Ground truth at `width x height`: see [`polygons_to_mask`].
    pub fn gt_mask(&self, width: u32, height: u32) -> Mask {
        polygons_to_mask(self.all_polygons(), width, height)
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        I(i64),
        U(u64),
    }
    Ok(
        match Id::deserialize(d)
            .map_err(|_| serde::de::Error::custom("task_id must be a string or an integer"))?
        {
            Id::S(s) => s,
            Id::I(i) => i.to_string(),
            Id::U(u) => u.to_string(),
        },
    )
}

// ------------------------------------------------------------------ reader

/// A PhraseCut split (or several) loaded from disk.
#[derive(Clone, Debug)]
pub struct PhraseCut {
    dir: PathBuf,
    splits: Vec<Split>,
    tasks: Vec<Task>,
    images: HashMap<i64, ImageInfo>,
}

/// A task together with its image record.
#[derive(Clone, Copy, Debug)]
pub struct TaskRef<'a> {
    pub task: &'a Task,
    pub info: &'a ImageInfo,
    dir: &'a Path,
}

impl<'a> TaskRef<'a> {
    pub fn phrase(&self) -> &'a str {
        &self.task.phrase
    }

    /// Original image size `(width, height)` from `image_data_split.json`.
    pub fn size(&self) -> (u32, u32) {
        (self.info.width, self.info.height)
    }

    /// `<dir>/images/{image_id}.jpg`.
    pub fn image_path(&self) -> PathBuf {
        image_path(self.dir, self.task.image_id)
    }

    /// Ground truth exactly as the evaluator builds it, at the original size.
    pub fn gt_mask(&self) -> Mask {
        self.task.gt_mask(self.info.width, self.info.height)
    }

    /// Decodes the image (format detected from the content) to RGB.
    pub fn load_image(&self) -> Result<image::RgbImage, DataError> {
        load_rgb(&self.image_path())
    }

    pub fn is_negative(&self) -> bool {
        self.task.is_negative()
    }

    /// True for the images CLIPSeg's loader skips ([`CLIPSEG_INVALID_IMAGE_IDS`]).
    pub fn clipseg_invalid(&self) -> bool {
        CLIPSEG_INVALID_IMAGE_IDS.contains(&self.task.image_id)
    }
}

/// `<dir>/images/{image_id}.jpg`, as `plot_refvg` / `download_dataset.py` name them.
pub fn image_path(dir: &Path, image_id: i64) -> PathBuf {
    dir.join("images").join(format!("{image_id}.jpg"))
}

/// Decodes an image file by content (not by extension) to RGB.
pub fn load_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let img = reader.decode().map_err(|e| DataError::Image {
        path: path.to_path_buf(),
        msg: format!("cannot decode image: {}", one_line(e)),
    })?;
    Ok(img.into_rgb8())
}

impl PhraseCut {
    /// Opens `dir` and loads the tasks of `split` (`"train"`, `"val"`,
    /// `"test"`, `"miniv"`, or several joined by `_` like `"val_miniv"`),
    /// following `RefVGLoader`: image records are those of
    /// `image_data_split.json` whose `split` is one of the requested splits,
    /// and every task's `image_id` must have such a record. Tasks keep file
    /// order (split by split); images are not opened.
    pub fn open(dir: impl AsRef<Path>, split: &str) -> Result<Self, DataError> {
        let dir = dir.as_ref().to_path_buf();
        let splits = Split::parse_list(split)?;
        if !dir.is_dir() {
            return Err(DataError::io(
                &dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "dataset directory not found"),
            ));
        }

        let mut info_path = dir.join("image_data_split.json");
        if !info_path.exists() && dir.join("image_data_split3000.json").exists() {
            info_path = dir.join("image_data_split3000.json");
        }
        let infos: Vec<ImageInfo> =
            read_json_list(&info_path, |index, _id, msg| DataError::ImageInfo {
                path: info_path.clone(),
                index,
                msg,
            })?;
        // Ground truth is built at these sizes: refuse what no image is (and what would
        // allocate without bound) before any task is read.
        let max = crate::segmenter::MAX_SIDE as u32;
        if let Some((index, info)) = (infos.iter().enumerate())
            .find(|(_, i)| !(1..=max).contains(&i.width) || !(1..=max).contains(&i.height))
        {
            return Err(DataError::ImageInfo {
                path: info_path.clone(),
                index,
                msg: format!(
                    "image {} is {}x{} px; sides must be within 1..={max}",
                    info.image_id, info.width, info.height
                ),
            });
        }
        let mut all_splits: HashMap<i64, String> = HashMap::new();
        let mut images = HashMap::new();
        for info in infos {
            all_splits.insert(info.image_id, info.split.clone());
            if splits.iter().any(|s| s.as_str() == info.split) {
                images.insert(info.image_id, info);
            }
        }

        let mut tasks = Vec::new();
        for &s in &splits {
            let path = dir.join(s.refer_file_name());
            let split_tasks: Vec<Task> =
                read_json_list(&path, |index, task_id, msg| DataError::Task {
                    path: path.clone(),
                    index,
                    task_id: task_id.unwrap_or_else(|| "?".into()),
                    msg,
                })?;
            for (index, t) in split_tasks.iter().enumerate() {
                if !images.contains_key(&t.image_id) {
                    let msg = match all_splits.get(&t.image_id) {
                        Some(other) => format!(
                            "image_id {} is listed under split {other:?} in {}, not {:?}",
                            t.image_id,
                            file_name(&info_path),
                            s.as_str()
                        ),
                        None => format!(
                            "image_id {} has no entry in {}",
                            t.image_id,
                            file_name(&info_path)
                        ),
                    };
                    return Err(DataError::Task {
                        path: path.clone(),
                        index,
                        task_id: t.task_id.clone(),
                        msg,
                    });
                }
            }
            tasks.extend(split_tasks);
        }
        Ok(PhraseCut {
            dir,
            splits,
            tasks,
            images,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// Number of tasks (phrase-region pairs).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Task `i` with its image record.
    pub fn get(&self, i: usize) -> Option<TaskRef<'_>> {
        let task = self.tasks.get(i)?;
        Some(TaskRef {
            task,
            info: &self.images[&task.image_id],
            dir: &self.dir,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = TaskRef<'_>> {
        (0..self.tasks.len()).map(|i| self.get(i).expect("index in range"))
    }

    /// Image record of one of the loaded splits.
    pub fn image_info(&self, image_id: i64) -> Option<&ImageInfo> {
        self.images.get(&image_id)
    }

    /// Distinct image ids that have tasks, in order of first appearance.
    pub fn image_ids(&self) -> Vec<i64> {
        let mut seen = std::collections::HashSet::new();
        self.tasks
            .iter()
            .filter(|t| seen.insert(t.image_id))
            .map(|t| t.image_id)
            .collect()
    }

    /// Distinct phrases, sorted (CLIPSeg's `all_phrases`, the pool for
    /// negative sampling; see [`crate::data::sample_negative_phrase`]).
    pub fn phrases(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tasks.iter().map(|t| t.phrase.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Reads a JSON list of `T` straight into typed values (no intermediate
/// `serde_json::Value` tree, so `refer_train.json` stays affordable). On a
/// bad element the file is scanned again up to that element only, to name it
/// (`task_id` when it has one) and to give serde's precise message.
fn read_json_list<T: DeserializeOwned>(
    path: &Path,
    element_error: impl Fn(usize, Option<String>, String) -> DataError,
) -> Result<Vec<T>, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut state = ListState::default();
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let result = ListSeed::<T> {
        state: &mut state,
        marker: std::marker::PhantomData,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    let err = match result {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let at = format!("line {} column {}", err.line(), err.column());
    let malformed = |msg: String| DataError::Json {
        path: path.to_path_buf(),
        msg,
    };
    if !state.started {
        return Err(malformed(if err.is_data() {
            format!("expected a JSON list at the top level ({at})")
        } else {
            one_line(&err)
        }));
    }
    // Re-read just the failing element: if it is well-formed JSON of the
    // wrong shape, name it; otherwise the file itself is malformed there.
    let index = state.count;
    if let Some(value) = nth_element(&bytes, index) {
        let task_id = value.get("task_id").and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        if let Err(e) = serde_json::from_value::<T>(value) {
            return Err(element_error(
                index,
                task_id,
                format!("{} ({at})", one_line(e)),
            ));
        }
    }
    Err(malformed(format!(
        "{} (in or after element #{index})",
        one_line(&err)
    )))
}

#[derive(Default)]
struct ListState {
    started: bool,
    count: usize,
}

struct ListSeed<'s, T> {
    state: &'s mut ListState,
    marker: std::marker::PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ListSeed<'_, T> {
    type Value = Vec<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListSeed<'_, T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        self.state.started = true;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<T>()? {
            out.push(item);
            self.state.count += 1;
        }
        Ok(out)
    }
}

/// Element `n` of a top-level JSON list, skipping the ones before it.
fn nth_element(bytes: &[u8], n: usize) -> Option<serde_json::Value> {
    struct Nth(usize);
    impl<'de> Visitor<'de> for Nth {
        type Value = Option<serde_json::Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            for _ in 0..self.0 {
                seq.next_element::<IgnoredAny>()?;
            }
            seq.next_element::<serde_json::Value>()
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_seq(Nth(n)).ok().flatten()
}

// ------------------------------------------------------------------ PIL polygon fill

/// Edge of Pillow's scan-line polygon filler (`Edge` in `libImaging/Draw.c`).
#[derive(Clone, Copy, Debug)]
struct Edge {
    x0: i32,
    y0: i32,
    xmin: i32,
    ymin: i32,
    xmax: i32,
    ymax: i32,
    dx: f32,
}

/// Pillow's `add_edge`.
fn add_edge(x0: i32, y0: i32, x1: i32, y1: i32) -> Edge {
    let (xmin, xmax) = if x0 <= x1 { (x0, x1) } else { (x1, x0) };
    let (ymin, ymax) = if y0 <= y1 { (y0, y1) } else { (y1, y0) };
    let dx = if y0 == y1 {
        0.0
    } else {
        x1.wrapping_sub(x0) as f32 / y1.wrapping_sub(y0) as f32
    };
    Edge {
        x0,
        y0,
        xmin,
        ymin,
        xmax,
        ymax,
        dx,
    }
}

/// C's `(int)` of a double as x86-64 performs it (`cvttsd2si`): truncation,
/// and `INT_MIN` for NaN or out-of-range values.
fn c_int(v: f64) -> i32 {
    if v > -2_147_483_649.0 && v < 2_147_483_648.0 {
        v as i32
    } else {
        i32::MIN
    }
}

/// Pillow's `ROUND_UP`: `f + 0.5F` is a float sum, `fabs(f) + 0.5F` a double one.
fn round_up(f: f32) -> i32 {
    if f >= 0.0 {
        c_int(f64::from(f + 0.5f32).floor())
    } else {
        c_int(-(f64::from(f).abs() + 0.5).floor())
    }
}

/// Pillow's `ROUND_DOWN`.
fn round_down(f: f32) -> i32 {
    if f >= 0.0 {
        c_int(f64::from(f - 0.5f32).ceil())
    } else {
        c_int(-(f64::from(f).abs() - 0.5).ceil())
    }
}

/// Pillow's `hline8` with ink 1: clips and sets `x0..=x1` on row `y`.
fn hline(mask: &mut Mask, x0: i32, y: i32, x1: i32) {
    let (w, h) = (mask.width as i64, mask.height as i64);
    let (y, mut x0, mut x1) = (y as i64, x0 as i64, x1 as i64);
    if y < 0 || y >= h {
        return;
    }
    if x0 < 0 {
        x0 = 0;
    } else if x0 >= w {
        return;
    }
    if x1 < 0 {
        return;
    } else if x1 >= w {
        x1 = w - 1;
    }
    if x0 <= x1 {
        let row = (y * w) as usize;
        mask.data[row + x0 as usize..=row + x1 as usize].fill(1);
    }
}

/// Pillow's `polygon_generic` for an 8-bit image without alpha blending.
fn polygon_generic(mask: &mut Mask, edges: &[Edge]) {
    if edges.is_empty() {
        return;
    }
    let h = mask.height as i32;
    let mut ymin = h - 1;
    let mut ymax = 0;
    let mut table: Vec<Edge> = Vec::with_capacity(edges.len());
    for e in edges {
        ymin = ymin.min(e.ymin);
        ymax = ymax.max(e.ymax);
        if e.ymin == e.ymax {
            hline(mask, e.xmin, e.ymin, e.xmax);
            continue;
        }
        table.push(*e);
    }
    ymin = ymin.max(0);
    ymax = ymax.min(h);

    let at = |e: &Edge, y: i32| y.wrapping_sub(e.y0) as f32 * e.dx + e.x0 as f32;
    let mut xx: Vec<f32> = Vec::with_capacity(table.len() * 2);
    let mut y = ymin;
    while y <= ymax {
        xx.clear();
        for (i, cur) in table.iter().enumerate() {
            if y < cur.ymin || y > cur.ymax {
                continue;
            }
            xx.push(at(cur, y));
            if y == cur.ymax && y < ymax {
                // "Needed to draw consistent polygons"
                let last = *xx.last().expect("just pushed");
                xx.push(last);
            } else if (y == cur.ymin || y == cur.ymax) && cur.dx != 0.0 {
                // "Connect discontiguous corners"
                for other in &table[..i] {
                    if (y != other.ymin && y != other.ymax) || other.dx == 0.0 {
                        continue;
                    }
                    let x = *xx.last().expect("just pushed");
                    if x.round() != at(other, y).round() {
                        continue;
                    }
                    let offset = if y == cur.ymax { -1 } else { 1 };
                    let yo = y.wrapping_add(offset);
                    let adj = at(cur, yo);
                    if yo >= other.ymin && yo <= other.ymax {
                        let adj_other = at(other, yo);
                        let last = xx.last_mut().expect("just pushed");
                        if *last > adj + 1.0 && *last > adj_other + 1.0 {
                            *last = adj.max(adj_other).round() + 1.0;
                        } else if *last < adj - 1.0 && *last < adj_other - 1.0 {
                            *last = adj.min(adj_other).round() - 1.0;
                        }
                        break;
                    }
                }
            }
        }
        xx.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        for pair in xx.chunks_exact(2) {
            hline(mask, round_up(pair[0]), y, round_down(pair[1]));
        }
        y += 1;
    }
}

/// Fills a polygon into `mask` (sets its pixels to 1) exactly like Pillow's
/// `ImageDraw.Draw(img).polygon(points, fill=1, outline=1)` on an `L` image
/// (`ImagingDrawPolygon` with `fill=1`, then `polygon_generic`, in
/// `libImaging/Draw.c`; verified byte-exact against Pillow 13.0.0). With
/// `fill == outline` Pillow draws the fill only -- the filler itself covers
/// the boundary pixels. Consecutive collinear horizontal edges are merged
/// first, as Pillow does. Fewer than 2 points draw nothing (Pillow raises for
/// < 2 and the PhraseCut evaluator skips such polygons).
///
/// Pillow's float arithmetic is replicated in `f32`; this matches Pillow
/// builds that do not contract `a * b + c` into FMA (x86-64 wheels).
pub fn fill_polygon_pil(mask: &mut Mask, points: &[(i32, i32)]) {
    let count = points.len();
    if count < 2 {
        return;
    }
    let mut edges: Vec<Edge> = Vec::with_capacity(count);
    for i in 0..count - 1 {
        let (x0, y0) = points[i];
        let (x1, y1) = points[i + 1];
        if y0 == y1 && i != 0 && y0 == points[i - 1].1 {
            // a horizontal line that immediately follows another horizontal line
            let prev_x = points[i - 1].0;
            let last = edges
                .last_mut()
                .expect("an edge exists after the first point");
            if x1 > x0 && x0 > prev_x {
                last.xmax = x1;
                continue;
            } else if x1 < x0 && x0 < prev_x {
                last.xmin = x1;
                continue;
            }
        }
        edges.push(add_edge(x0, y0, x1, y1));
    }
    let (xl, yl) = points[count - 1];
    if (xl, yl) != points[0] {
        edges.push(add_edge(xl, yl, points[0].0, points[0].1));
    }
    polygon_generic(mask, &edges);
}

/// Ground truth the way the PhraseCut evaluator builds it
/// (`polygons_to_mask` in `utils/data_transfer.py`, called from
/// `iou_polygons_masks` with all instances' polygons of the task flattened):
/// every polygon with at least 2 points has its coordinates truncated toward
/// zero (Python `int()`), is filled with [`fill_polygon_pil`] on a
/// `width x height` canvas, and the polygons are OR-ed. The result is at the
/// original image size. No polygons gives an all-zero mask.
pub fn polygons_to_mask<P: AsRef<[[f64; 2]]>>(
    polygons: impl IntoIterator<Item = P>,
    width: u32,
    height: u32,
) -> Mask {
    let mut mask = Mask::new(width, height);
    let mut pts: Vec<(i32, i32)> = Vec::new();
    for polygon in polygons {
        let polygon = polygon.as_ref();
        if polygon.len() < 2 {
            continue;
        }
        pts.clear();
        pts.extend(
            polygon
                .iter()
                .map(|&[x, y]| (c_int(x.trunc()), c_int(y.trunc()))),
        );
        fill_polygon_pil(&mut mask, &pts);
    }
    mask
}

// ------------------------------------------------------------------ nearest resize

/// Source index PyTorch's `interpolate(mode="nearest")` reads for output
/// index `dst` (`nearest_idx` in `aten/src/ATen/native/UpSample.h`, with the
/// output size given and no scale factor): identity when the sizes are equal,
/// `dst >> 1` when `out == 2 * in`, otherwise
/// `min(floorf(dst * (float)in / out), in - 1)` in `f32`.
pub fn nearest_source_index(dst: usize, in_size: usize, out_size: usize) -> usize {
    if out_size == in_size {
        dst
    } else if out_size == 2 * in_size {
        dst >> 1
    } else {
        let scale = in_size as f32 / out_size as f32;
        let src = (dst as f32 * scale).floor() as usize;
        src.min(in_size.saturating_sub(1))
    }
}

/// Nearest-neighbour resize of a row-major `w x h` single-channel buffer to
/// `out_w x out_h`, reproducing CLIPSeg's
/// `nnf.interpolate(seg, (image_size, image_size), mode='nearest')` in
/// `datasets/phrasecut.py` (byte-exact against torch 2.15 on CPU, uint8).
pub fn resize_nearest<T: Copy>(
    src: &[T],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<T> {
    assert_eq!(src.len(), w * h, "buffer size mismatch");
    if out_w == 0 || out_h == 0 {
        return Vec::new();
    }
    assert!(
        w > 0 && h > 0,
        "cannot resize an empty buffer to a non-empty one"
    );
    let xs: Vec<usize> = (0..out_w)
        .map(|x| nearest_source_index(x, w, out_w))
        .collect();
    let mut out = Vec::with_capacity(out_w * out_h);
    for oy in 0..out_h {
        let row = &src[nearest_source_index(oy, h, out_h) * w..][..w];
        out.extend(xs.iter().map(|&x| row[x]));
    }
    out
}

/// Bounding box of polygons as `[x, y, w, h]` with inclusive size, like
/// `polygon_to_box` + `boxes_region` in `utils/data_transfer.py` (how
/// `instance_boxes` were derived from an instance's polygons).
pub fn polygons_box<P: AsRef<[[f64; 2]]>>(
    polygons: impl IntoIterator<Item = P>,
) -> Option<[f64; 4]> {
    let mut b: Option<[f64; 4]> = None;
    for p in polygons {
        for &[x, y] in p.as_ref() {
            b = Some(match b {
                None => [x, y, x, y],
                Some([x1, y1, x2, y2]) => [x1.min(x), y1.min(y), x2.max(x), y2.max(y)],
            });
        }
    }
    b.map(|[x1, y1, x2, y2]| [x1, y1, x2 - x1 + 1.0, y2 - y1 + 1.0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(w: u32, h: u32, pts: &[(i32, i32)]) -> Mask {
        let mut m = Mask::new(w, h);
        fill_polygon_pil(&mut m, pts);
        m
    }

    #[test]
    fn simple_shapes() {
        // a 3x3 square including its boundary
        let m = fill(5, 5, &[(1, 1), (3, 1), (3, 3), (1, 3)]);
        assert_eq!(m.count(), 9);
        assert!(m.get(1, 1) && m.get(3, 3) && !m.get(4, 4) && !m.get(0, 0));
        // degenerate inputs
        assert_eq!(fill(4, 4, &[]).count(), 0);
        assert_eq!(fill(4, 4, &[(1, 1)]).count(), 0);
        assert_eq!(fill(4, 4, &[(0, 1), (3, 1)]).count(), 4);
        // completely outside
        assert_eq!(fill(4, 4, &[(-10, -10), (-5, -10), (-5, -5)]).count(), 0);
    }

    #[test]
    fn nearest_rules() {
        assert_eq!(nearest_source_index(5, 10, 10), 5);
        assert_eq!(nearest_source_index(5, 10, 20), 2);
        let v = resize_nearest(&[1u8, 2, 3, 4], 2, 2, 4, 4);
        assert_eq!(v, vec![1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
        assert_eq!(resize_nearest(&[7u8], 1, 1, 3, 2), vec![7; 6]);
    }

    fn fixture_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/phrasecut")
            .join(name)
    }

    fn rle_decode(runs: &[usize], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        for (k, &n) in runs.iter().enumerate() {
            out.extend(std::iter::repeat_n((k % 2) as u8, n));
        }
        assert_eq!(out.len(), len, "RLE length");
        out
    }

    /// Masks drawn by PIL through PhraseCut's `polygons_to_mask`
    /// (tools/make_phrasecut_fixtures.py). `PHRASECUT_PIL_FIXTURE` may point
    /// at a bigger stress file written by the same script.
    #[test]
    fn pil_fixture_byte_exact() {
        #[derive(Deserialize)]
        struct Case {
            w: u32,
            h: u32,
            polygons: Vec<Vec<[f64; 2]>>,
            rle: Vec<usize>,
        }
        #[derive(Deserialize)]
        struct Doc {
            pillow: String,
            cases: Vec<Case>,
        }
        let path = std::env::var_os("PHRASECUT_PIL_FIXTURE")
            .map(PathBuf::from)
            .unwrap_or_else(|| fixture_path("pil_polygons.json"));
        let doc: Doc = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert!(doc.cases.len() >= 500, "{} cases", doc.cases.len());
        let mut bad = Vec::new();
        let mut set_pixels = 0usize;
        for (i, c) in doc.cases.iter().enumerate() {
            let want = rle_decode(&c.rle, (c.w * c.h) as usize);
            let got = polygons_to_mask(&c.polygons, c.w, c.h);
            set_pixels += got.count();
            if got.data != want {
                let diff = got.data.iter().zip(&want).filter(|(a, b)| a != b).count();
                bad.push(format!(
                    "case {i} ({}x{}, {diff} px differ): {:?}",
                    c.w, c.h, c.polygons
                ));
            }
        }
        assert!(set_pixels > 10_000, "fixture too trivial");
        assert!(
            bad.is_empty(),
            "{} of {} cases differ from Pillow {}:\n{}",
            bad.len(),
            doc.cases.len(),
            doc.pillow,
            bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
        );
    }

    fn fnv1a64(values: impl IntoIterator<Item = usize>) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for v in values {
            for b in (v as u32).to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }

    /// Index maps of `torch.nn.functional.interpolate(mode="nearest")`.
    #[test]
    fn nearest_fixture_matches_torch() {
        #[derive(Deserialize)]
        struct Case {
            #[serde(rename = "in")]
            n_in: usize,
            out: usize,
            fnv1a64: String,
        }
        #[derive(Deserialize)]
        struct Full {
            #[serde(rename = "in")]
            n_in: usize,
            out: usize,
            map: Vec<usize>,
        }
        #[derive(Deserialize)]
        struct Doc {
            cases: Vec<Case>,
            full: Vec<Full>,
        }
        let doc: Doc =
            serde_json::from_slice(&fs::read(fixture_path("nearest_resize.json")).unwrap())
                .unwrap();
        assert!(doc.cases.len() > 150);
        for c in &doc.cases {
            let map = (0..c.out).map(|i| nearest_source_index(i, c.n_in, c.out));
            assert_eq!(fnv1a64(map), c.fnv1a64, "in {} out {}", c.n_in, c.out);
        }
        for f in &doc.full {
            let map: Vec<usize> = (0..f.out)
                .map(|i| nearest_source_index(i, f.n_in, f.out))
                .collect();
            assert_eq!(map, f.map);
        }
        // the 2-D resize is the separable gather of those maps
        let (w, h) = (37usize, 500usize);
        let src: Vec<u8> = (0..w * h).map(|i| (i * 31 % 7 == 0) as u8).collect();
        let out = resize_nearest(&src, w, h, 352, 352);
        let full = |n_in, n_out| {
            doc.full
                .iter()
                .find(|f| f.n_in == n_in && f.out == n_out)
                .unwrap()
        };
        let (mx, my) = (&full(37, 352).map, &full(500, 352).map);
        for oy in 0..352 {
            for ox in 0..352 {
                assert_eq!(out[oy * 352 + ox], src[my[oy] * w + mx[ox]]);
            }
        }
    }

    // ---------------------------------------------------------------- reader

    pub(crate) struct TempDir(pub PathBuf);
    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("phrasecut-test-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    const IMAGES: &str = r#"[
      {"width": 8, "url": "https://example/1.jpg", "height": 6, "image_id": 1, "coco_id": null, "flickr_id": 42, "split": "val", "extra": [1, 2]},
      {"width": 5, "url": "u", "height": 5, "image_id": 2, "coco_id": 7, "flickr_id": null, "split": "miniv"},
      {"width": 4, "height": 4, "image_id": 3, "split": "train"}
    ]"#;

    fn hand_made(dir: &Path) {
        write(dir, "image_data_split.json", IMAGES);
        // task a: two instances (a 2x2 square and a 3x1 line split over two polygons)
        // task b: float coordinates, truncated toward zero; a one-point polygon is skipped
        write(
            dir,
            "refer_val.json",
            r#"[
          {"task_id": "1__10_11", "image_id": 1, "ann_ids": [10, 11], "phrase": "two things on the left",
           "instance_boxes": [[0, 0, 2, 2], [4, 4, 3, 1]],
           "Polygons": [[[[0, 0], [1, 0], [1, 1], [0, 1]]], [[[4, 4], [6, 4]], [[7, 5]]]],
           "phrase_structure": {"name": "thing", "attributes": [], "relation_ids": [5],
                                "relation_descriptions": [["on the", "left"]], "type": "verbose"},
           "iou": 0.9},
          {"task_id": "1__12", "image_id": 1, "phrase": "float box",
           "instance_boxes": [[2, 2, 2, 2]],
           "Polygons": [[[[2.9, 2.2], [3.99, 2.0], [3.5, 3.7], [2.1, 3.0]]]],
           "phrase_structure": {"name": null, "attributes": null, "relation_descriptions": [], "type": "name"}}
        ]"#,
        );
        write(
            dir,
            "refer_miniv.json",
            r#"[{"task_id": 99, "image_id": 2, "phrase": "everything", "Polygons": [[[[-3, -3], [10, -3], [10, 10], [-3, 10]]]]}]"#,
        );
        write(dir, "refer_train.json", "[]");
        write(dir, "refer_test.json", "[]");
    }

    #[test]
    fn reads_hand_made_dataset() {
        let tmp = TempDir::new("hand");
        hand_made(&tmp.0);
        let pc = PhraseCut::open(&tmp.0, "val_miniv").unwrap();
        assert_eq!(pc.splits(), &[Split::Val, Split::Miniv]);
        assert_eq!(pc.len(), 3);
        assert_eq!(pc.image_ids(), vec![1, 2]);
        assert!(pc.image_info(3).is_none(), "train image not loaded");

        let a = pc.get(0).unwrap();
        assert_eq!(a.phrase(), "two things on the left");
        assert_eq!(a.size(), (8, 6));
        assert_eq!(a.image_path(), tmp.0.join("images").join("1.jpg"));
        assert_eq!(a.task.ann_ids, vec![10, 11]);
        assert_eq!(a.task.instance_boxes.len(), 2);
        assert_eq!(a.info.flickr_id, Some(42));
        assert_eq!(a.info.coco_id, None);
        let ps = a.task.phrase_structure.as_ref().unwrap();
        assert_eq!(
            ps.relation_descriptions,
            vec![vec!["on the".to_string(), "left".to_string()]]
        );
        assert_eq!(ps.kind, "verbose");
        let m = a.gt_mask();
        let mut want = Mask::new(8, 6);
        for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1), (4, 4), (5, 4), (6, 4)] {
            want.set(x, y, true);
        }
        assert_eq!(m, want);
        assert!(!a.is_negative());

        let b = pc.get(1).unwrap();
        assert_eq!(b.task.ann_ids, Vec::<i64>::new());
        assert_eq!(b.task.phrase_structure.as_ref().unwrap().name, "");
        // truncated to (2,2) (3,2) (3,3) (2,3): a 2x2 square
        let m = b.gt_mask();
        assert_eq!(m.count(), 4);
        assert!(m.get(2, 2) && m.get(3, 3));

        let c = pc.get(2).unwrap();
        assert_eq!(c.task.task_id, "99");
        assert_eq!(c.gt_mask().count(), 25);
        assert!(pc.get(3).is_none());
        assert_eq!(
            pc.phrases(),
            vec!["everything", "float box", "two things on the left"]
        );

        // the README's file name is accepted too
        fs::rename(
            tmp.0.join("image_data_split.json"),
            tmp.0.join("image_data_split3000.json"),
        )
        .unwrap();
        assert_eq!(PhraseCut::open(&tmp.0, "val").unwrap().len(), 2);
    }

    fn open_err(dir: &Path, split: &str) -> String {
        let e = PhraseCut::open(dir, split).unwrap_err().to_string();
        assert!(!e.contains('\n'), "multi-line error: {e}");
        e
    }

    #[test]
    fn errors_are_one_line_and_name_file_and_task() {
        let tmp = TempDir::new("errors");
        let d = &tmp.0;
        let e = open_err(&d.join("nope"), "val");
        assert!(e.contains("nope") && e.contains("not found"), "{e}");
        hand_made(d);
        let e = open_err(d, "valid");
        assert!(e.contains("\"valid\""), "{e}");

        fs::remove_file(d.join("refer_test.json")).unwrap();
        let e = open_err(d, "test");
        assert!(e.contains("refer_test.json"), "{e}");

        write(
            d,
            "refer_test.json",
            "[{\"task_id\": \"3__1\", \"image_id\": 3,",
        );
        let e = open_err(d, "test");
        assert!(
            e.contains("refer_test.json") && e.contains("malformed JSON") && e.contains("line 1"),
            "{e}"
        );

        write(d, "refer_test.json", "{\"tasks\": []}");
        let e = open_err(d, "test");
        assert!(e.contains("expected a JSON list"), "{e}");

        write(
            d,
            "refer_test.json",
            r#"[{"task_id": "3__1", "image_id": 3, "phrase": "ok", "Polygons": []},
                {"task_id": "3__2", "image_id": 3, "phrase": "no polygons"}]"#,
        );
        fs::write(
            d.join("image_data_split.json"),
            IMAGES.replace("\"split\": \"train\"", "\"split\": \"test\""),
        )
        .unwrap();
        let e = open_err(d, "test");
        assert!(
            e.contains("refer_test.json")
                && e.contains("task #1")
                && e.contains("3__2")
                && e.contains("Polygons"),
            "{e}"
        );

        write(
            d,
            "refer_test.json",
            r#"[{"task_id": "3__1", "image_id": 3, "phrase": "bad point", "Polygons": [[[[1, 2, 3]]]]}]"#,
        );
        let e = open_err(d, "test");
        assert!(
            e.contains("task #0") && e.contains("3__1") && e.contains("line"),
            "{e}"
        );

        write(
            d,
            "refer_test.json",
            r#"[{"task_id": "9__1", "image_id": 9, "phrase": "x", "Polygons": []}]"#,
        );
        let e = open_err(d, "test");
        assert!(
            e.contains("image_id 9 has no entry in image_data_split.json") && e.contains("9__1"),
            "{e}"
        );

        write(
            d,
            "refer_test.json",
            r#"[{"task_id": "1__1", "image_id": 1, "phrase": "x", "Polygons": []}]"#,
        );
        let e = open_err(d, "test");
        assert!(e.contains("listed under split \"val\""), "{e}");

        write(
            d,
            "image_data_split.json",
            r#"[{"image_id": 1, "width": "eight", "height": 6, "split": "val"}]"#,
        );
        let e = open_err(d, "val");
        assert!(
            e.contains("image_data_split.json") && e.contains("image entry #0"),
            "{e}"
        );
        fs::remove_file(d.join("image_data_split.json")).unwrap();
        let e = open_err(d, "val");
        assert!(e.contains("image_data_split.json"), "{e}");
    }

    #[test]
    fn boxes() {
        let b = polygons_box([vec![[2.0, 3.0], [5.0, 4.0]], vec![[1.0, 7.0]]]).unwrap();
        assert_eq!(b, [1.0, 3.0, 5.0, 5.0]);
        assert_eq!(polygons_box(Vec::<Vec<[f64; 2]>>::new()), None);
    }
}

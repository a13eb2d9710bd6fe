//! Masks made from several prompts' maps and refined, as inpainting users need them: union,
//! subtraction of what other prompts find, growing and shrinking by a radius, feathered
//! (soft) edges, probabilities as grey, and cut-outs (the photo with the mask as alpha). The
//! same code serves the CLI and the browser, so both write the same bytes.

use crate::postprocess::{Maps, sigmoid};

/// How one output mask is made from an image's maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compose {
    /// The maps joined into the mask (a pixel is in it where any of them is).
    pub include: Vec<usize>,
    /// The maps whose masks are removed from it.
    pub subtract: Vec<usize>,
    /// Grow (positive) or shrink (negative) the mask by this many pixels: every pixel within
    /// that Euclidean distance of the mask joins it, or of its outside leaves it.
    pub grow: i32,
    /// Soft edges: alpha ramps from 0 to 255 over this many pixels across the mask's border
    /// (half outside, half inside). 0: hard edges.
    pub feather: u32,
    /// Probabilities as grey (0..=255) instead of a 0/255 mask: the highest of `include`'s,
    /// times one minus the highest of `subtract`'s. Exclusive with `grow` and `feather`.
    pub soft: bool,
}

impl Compose {
    /// Checks the settings against `maps` before any pixel is computed.
    pub fn check(&self, count: usize) -> Result<(), crate::Error> {
        let bad = |msg: String| Err(crate::Error::Input(msg));
        if self.include.is_empty() {
            return bad("a composed mask needs at least one prompt to include".into());
        }
        if let Some(&k) = self
            .include
            .iter()
            .chain(&self.subtract)
            .find(|&&k| k >= count)
        {
            return bad(format!("there is no prompt {k} (of {count})"));
        }
        if self.soft && (self.grow != 0 || self.feather != 0) {
            return bad(
                "a soft mask (probabilities) can't also be grown, shrunk or feathered".into(),
            );
        }
        const MAX_RADIUS: u32 = 4096;
        if self.grow.unsigned_abs() > MAX_RADIUS || self.feather > MAX_RADIUS {
            return bad(format!(
                "grow, shrink and feather radii are at most {MAX_RADIUS} px"
            ));
        }
        Ok(())
    }

    /// The composed mask at `width` x `height` (one byte per pixel).
    pub fn mask(
        &self,
        maps: &Maps,
        width: usize,
        height: usize,
        threshold: f32,
    ) -> Result<Vec<u8>, crate::Error> {
        self.check(maps.count())?;
        let plain = *self
            == Compose {
                include: self.include.clone(),
                ..Compose::default()
            };
        if plain && self.include.len() == 1 {
            return Ok(maps.mask(self.include[0], width, height, threshold));
        }
        let highest = |ks: &[usize]| -> Vec<f32> {
            let mut out = vec![f32::NEG_INFINITY; width * height];
            for &k in ks {
                for (o, l) in out.iter_mut().zip(maps.resized(k, width, height)) {
                    *o = o.max(l);
                }
            }
            out
        };
        let (inside, outside) = (highest(&self.include), highest(&self.subtract));
        if self.soft {
            let p = |l: f32| {
                if l == f32::NEG_INFINITY {
                    0.0
                } else {
                    sigmoid(l)
                }
            };
            let grey = inside
                .iter()
                .zip(&outside)
                .map(|(&i, &o)| (255.0 * p(i) * (1.0 - p(o))).round() as u8);
            return Ok(grey.collect());
        }
        // Strict, as the single-prompt masks (`Maps::mask`).
        let on = |l: f32| l != f32::NEG_INFINITY && sigmoid(l) > threshold;
        let mut mask: Vec<bool> = (inside.iter().zip(&outside))
            .map(|(&i, &o)| on(i) && !on(o))
            .collect();
        if self.grow != 0 {
            let r = f64::from(self.grow.unsigned_abs());
            // Growing: pixels near the mask join; shrinking: pixels near the outside leave.
            let grow = self.grow > 0;
            let near = squared_distances(&mask, width, height, grow);
            for (m, d) in mask.iter_mut().zip(near) {
                *m = if grow { d <= r * r } else { d > r * r };
            }
        }
        if self.feather == 0 {
            return Ok(mask.iter().map(|&m| if m { 255 } else { 0 }).collect());
        }
        // Signed distance to the border, positive inside: alpha 0.5 there, 0 and 1 at
        // feather / 2 outside and inside.
        let to_inside = squared_distances(&mask, width, height, true);
        let to_outside = squared_distances(&mask, width, height, false);
        let f = f64::from(self.feather);
        let alpha =
            (mask.iter().zip(to_inside.iter().zip(&to_outside))).map(|(&m, (&di, &dout))| {
                let signed = if m {
                    dout.sqrt() - 0.5
                } else {
                    0.5 - di.sqrt()
                };
                (255.0 * (0.5 + signed / f).clamp(0.0, 1.0)).round() as u8
            });
        Ok(alpha.collect())
    }
}

/// An 8-bit PNG of `pixels`: grey (one byte per pixel: masks) or RGBA (four: cut-outs), by
/// their count. The CLI and the page both write masks through it, so the same pixels give the
/// same file.
pub fn encode_png(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>, crate::Error> {
    let bad = |msg: String| crate::Error::Input(msg);
    let area = width.saturating_mul(height);
    let color = match pixels.len() {
        n if area > 0 && n == area => png::ColorType::Grayscale,
        n if area > 0 && Some(n) == area.checked_mul(4) => png::ColorType::Rgba,
        n => {
            return Err(bad(format!(
                "{n} bytes are not a {width}x{height} grey or RGBA image"
            )));
        }
    };
    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(bad(format!("a {width}x{height} PNG is too large")));
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let encode = |e: png::EncodingError| bad(format!("encoding a PNG: {e}"));
    let mut writer = encoder.write_header().map_err(encode)?;
    writer.write_image_data(pixels).map_err(encode)?;
    writer.finish().map_err(encode)?;
    Ok(out)
}

/// The photo `rgb` (width x height) with `alpha` as its fourth channel, RGBA.
pub fn cut_out(rgb: &[u8], alpha: &[u8]) -> Vec<u8> {
    (rgb.chunks_exact(3).zip(alpha))
        .flat_map(|(p, &a)| [p[0], p[1], p[2], a])
        .collect()
}

/// Per pixel, the squared Euclidean distance to the nearest pixel where `mask` is `target`
/// (0 on those; infinite where there is none): Felzenszwalb and Huttenlocher's exact
/// transform, one pass along each axis.
fn squared_distances(mask: &[bool], width: usize, height: usize, target: bool) -> Vec<f64> {
    let mut d: Vec<f64> = (mask.iter())
        .map(|&m| if m == target { 0.0 } else { f64::INFINITY })
        .collect();
    let mut line = vec![0.0; width.max(height)];
    let mut out = vec![0.0; width.max(height)];
    for x in 0..width {
        for y in 0..height {
            line[y] = d[y * width + x];
        }
        lower_envelope(&line[..height], &mut out[..height]);
        for y in 0..height {
            d[y * width + x] = out[y];
        }
    }
    for row in d.chunks_exact_mut(width.max(1)) {
        line[..width].copy_from_slice(row);
        lower_envelope(&line[..width], &mut out[..width]);
        row.copy_from_slice(&out[..width]);
    }
    d
}

/// out[q] = min over p of (q - p)^2 + f[p]: the lower envelope of parabolas rooted at each p.
fn lower_envelope(f: &[f64], out: &mut [f64]) {
    let n = f.len();
    let (mut v, mut z) = (vec![0usize; n], vec![0.0f64; n + 1]);
    let mut k = 0;
    let mut first = None;
    for q in 0..n {
        if f[q].is_infinite() {
            continue;
        }
        let Some(_) = first else {
            first = Some(q);
            v[0] = q;
            z[0] = f64::NEG_INFINITY;
            z[1] = f64::INFINITY;
            continue;
        };
        let qf = q as f64;
        loop {
            let p = v[k] as f64;
            let s = ((f[q] + qf * qf) - (f[v[k]] + p * p)) / (2.0 * (qf - p));
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0 and the new parabola is lower everywhere to the right of -inf.
                v[0] = q;
                z[1] = f64::INFINITY;
                break;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    if first.is_none() {
        out.fill(f64::INFINITY);
        return;
    }
    let mut j = 0;
    for (q, o) in out.iter_mut().enumerate() {
        let qf = q as f64;
        while z[j + 1] < qf {
            j += 1;
        }
        let p = v[j] as f64;
        *o = (qf - p) * (qf - p) + f[v[j]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_grey_and_rgba_and_refuses_other_sizes() {
        let decode = |bytes: &[u8]| {
            let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
                .read_info()
                .unwrap();
            let mut out = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut out).unwrap();
            (info.width, info.height, info.color_type, out)
        };
        let grey: Vec<u8> = (0..15).map(|i| i * 17).collect();
        let got = decode(&encode_png(5, 3, &grey).unwrap());
        assert_eq!(got, (5, 3, png::ColorType::Grayscale, grey.clone()));
        let rgba: Vec<u8> = (0..60).map(|i| i * 4).collect();
        let got = decode(&encode_png(5, 3, &rgba).unwrap());
        assert_eq!(got, (5, 3, png::ColorType::Rgba, rgba));
        // 14 and 45 bytes for 5x3 (neither grey nor RGBA), an empty image, sides past u32.
        for (w, h, n) in [(5, 3, 14), (5, 3, 45), (0, 3, 0), (1 << 32, 1 << 32, 0)] {
            let e = encode_png(w, h, &vec![0; n]).unwrap_err().to_string();
            assert!(e.contains("not a") || e.contains("too large"), "{e}");
        }
    }

    /// Squared distances by brute force: the reference.
    fn brute(mask: &[bool], width: usize, target: bool) -> Vec<f64> {
        let height = mask.len() / width;
        (0..mask.len())
            .map(|i| {
                let (x, y) = ((i % width) as f64, (i / width) as f64);
                (0..mask.len())
                    .filter(|&j| mask[j] == target)
                    .map(|j| {
                        let (u, v) = ((j % width) as f64, (j / width) as f64);
                        (x - u).powi(2) + (y - v).powi(2)
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .take(width * height)
            .collect()
    }

    fn random_mask(width: usize, height: usize, seed: u64, density: u64) -> Vec<bool> {
        let mut s = seed;
        (0..width * height)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 33) % 100 < density
            })
            .collect()
    }

    #[test]
    fn distances_match_brute_force() {
        for (w, h, seed, density) in [
            (1, 1, 1, 50),
            (7, 5, 2, 10),
            (13, 9, 3, 3),
            (20, 3, 4, 60),
            (9, 9, 5, 0),
        ] {
            let mask = random_mask(w, h, seed, density);
            for target in [true, false] {
                assert_eq!(
                    squared_distances(&mask, w, h, target),
                    brute(&mask, w, target),
                    "{w}x{h} {seed}"
                );
            }
        }
    }

    /// Growing one pixel by r gives the lattice points of a disk of radius r (r = 2: 13).
    #[test]
    fn growing_a_point_gives_a_disk() {
        let maps = point_maps(11, 11, 5, 5);
        for (r, points) in [(1, 5), (2, 13), (3, 29)] {
            let compose = Compose {
                include: vec![0],
                grow: r,
                ..Default::default()
            };
            let mask = compose.mask(&maps, 11, 11, 0.5).unwrap();
            assert_eq!(
                mask.iter().filter(|&&m| m == 255).count(),
                points,
                "r = {r}"
            );
        }
        let shrink = Compose {
            include: vec![0],
            grow: -1,
            ..Default::default()
        };
        assert!(
            shrink
                .mask(&maps, 11, 11, 0.5)
                .unwrap()
                .iter()
                .all(|&m| m == 0)
        );
    }

    /// Maps (at their own size, side x side) with one pixel on for map 0, all on for map 1.
    fn point_maps(side: usize, _h: usize, x: usize, y: usize) -> Maps {
        let mut logits = vec![-10.0; 2 * side * side];
        logits[y * side + x] = 10.0;
        logits[side * side..].fill(10.0);
        Maps::new(logits, 2, side).unwrap()
    }

    #[test]
    fn union_subtract_soft_and_feather() {
        let side = 4;
        // Map 0: left half on; map 1: top half on; map 2: nothing.
        let mut logits = vec![-10.0f32; 3 * side * side];
        for y in 0..side {
            for x in 0..side {
                if x < 2 {
                    logits[y * side + x] = 10.0;
                }
                if y < 2 {
                    logits[side * side + y * side + x] = 10.0;
                }
            }
        }
        let maps = Maps::new(logits, 3, side).unwrap();
        let on = |m: Vec<u8>| m.iter().filter(|&&v| v == 255).count();
        let union = Compose {
            include: vec![0, 1],
            ..Default::default()
        };
        assert_eq!(on(union.mask(&maps, 4, 4, 0.5).unwrap()), 12);
        let minus = Compose {
            include: vec![0],
            subtract: vec![1],
            ..Default::default()
        };
        assert_eq!(on(minus.mask(&maps, 4, 4, 0.5).unwrap()), 4);
        let soft = Compose {
            include: vec![0],
            subtract: vec![2],
            soft: true,
            ..Default::default()
        };
        let grey = soft.mask(&maps, 4, 4, 0.5).unwrap();
        assert_eq!(
            (grey[0], grey[3]),
            (
                (255.0 * sigmoid(10.0) * (1.0 - sigmoid(-10.0))).round() as u8,
                (255.0 * sigmoid(-10.0)).round() as u8
            )
        );
        // Feathered over 2 px: the border columns at 0.5 +- 0.5 / 2, the far ones at 0 and 1.
        let feather = Compose {
            include: vec![0],
            feather: 2,
            ..Default::default()
        };
        let alpha = feather.mask(&maps, 4, 4, 0.5).unwrap();
        assert_eq!(&alpha[..4], &[255, 191, 64, 0]);
        assert!(
            Compose {
                include: vec![3],
                ..Default::default()
            }
            .check(3)
            .is_err()
        );
        assert!(
            Compose {
                include: vec![0],
                soft: true,
                grow: 1,
                ..Default::default()
            }
            .check(3)
            .is_err()
        );
    }
}

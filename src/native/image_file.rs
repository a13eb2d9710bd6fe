//! Image files to RGB8 as a browser shows them: the EXIF orientation applied (phone photos),
//! the first frame of an animation, grey / palette / alpha / CMYK converted as Pillow's
//! `convert("RGB")` does (alpha dropped, not composited), 16-bit samples cut to their high
//! byte (Pillow's way for 16-bit RGB; it clips 16-bit grey at 255 instead, which whitens the
//! image). Oversized files are refused from their header alone.

use std::path::Path;

use image::{DynamicImage, ImageDecoder};

use crate::Error;
use crate::segmenter::MAX_SIDE;

/// The decoder's memory cap: a bigger image is refused before its pixels are allocated.
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// An image's RGB bytes (row-major), width and height, as displayed.
pub struct Rgb {
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

/// Decodes the image file at `path` (any supported format, found by content).
pub fn load_rgb(path: &Path) -> Result<Rgb, Error> {
    let shown = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| Error::Image(format!("can't open {shown}: {e}")))?;
    decode_rgb(&bytes, &shown.to_string())
}

/// Decodes an image file's `bytes`; `shown` names it in errors.
pub fn decode_rgb(bytes: &[u8], shown: &str) -> Result<Rgb, Error> {
    let unreadable =
        |e: image::ImageError| Error::Image(format!("{shown} is not a readable image: {e}"));
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(format!("can't read {shown}: {e}")))?;
    // Only the decoder's own allocations are capped here: the sides are checked below, with
    // a message that names them.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(unreadable)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::Image(format!("{shown} is empty ({w}x{h} px)")));
    }
    if w as usize > MAX_SIDE || h as usize > MAX_SIDE {
        return Err(Error::Image(format!(
            "{shown} is {w}x{h} px; the limit is {MAX_SIDE} px per side"
        )));
    }
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(Error::Image(format!(
            "{shown} ({w}x{h} px, {:?}) needs {} MB to decode; the limit is {} MB",
            decoder.color_type(),
            decoder.total_bytes() >> 20,
            MAX_DECODE_BYTES >> 20
        )));
    }
    // A missing or unreadable orientation tag means none, as in browsers.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    image.apply_orientation(orientation);
    let (width, height) = (image.width() as usize, image.height() as usize);
    let pixels = match image {
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => {
            let wide = image.into_rgb16().into_raw();
            wide.into_iter().map(|v| (v >> 8) as u8).collect()
        }
        image => image.into_rgb8().into_raw(),
    };
    Ok(Rgb {
        pixels,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/formats")
            .join(name)
    }

    /// Pillow's pixels for `name` (tools/make_format_fixtures.py).
    fn want(name: &str) -> Rgb {
        let want = image::open(fixture(&format!("want/{name}.png"))).unwrap();
        let (width, height) = (want.width() as usize, want.height() as usize);
        let pixels = want.into_rgb8().into_raw();
        Rgb {
            pixels,
            width,
            height,
        }
    }

    /// The largest and the mean |difference| of two images' bytes.
    fn diff(got: &Rgb, want: &Rgb) -> (u8, f64) {
        let d: Vec<u8> = (got.pixels.iter().zip(&want.pixels))
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64;
        (d.into_iter().max().unwrap_or(0), mean)
    }

    /// All eight EXIF orientations come out as Pillow's `exif_transpose` shows them: the same
    /// shape, and the same pixels up to the two JPEG decoders' rounding (a wrong flip or turn
    /// moves the gradients by up to 255 and the white corner by its whole size).
    #[test]
    fn exif_orientations_are_applied() {
        for n in 1..=8 {
            let name = format!("orient-{n}.jpg");
            let (got, want) = (load_rgb(&fixture(&name)).unwrap(), want(&name));
            assert_eq!((got.width, got.height), (want.width, want.height), "{name}");
            let (max, mean) = diff(&got, &want);
            assert!(max <= 2 && mean < 0.1, "{name}: max {max}, mean {mean}");
        }
    }

    /// Grey, grey + alpha, palettes, RGBA, 16-bit RGB and grey, the first frame of animated GIF
    /// and WebP: Pillow's `convert("RGB")` exactly (16-bit grey: its high byte, see above);
    /// CMYK JPEG within JPEG rounding.
    #[test]
    fn formats_convert_as_pillow_does() {
        let exact = [
            "grey.png",
            "grey-alpha.png",
            "palette.png",
            "palette-alpha.png",
            "rgba.png",
            "rgb16.png",
            "grey16.png",
            "anim.gif",
            "anim.webp",
        ];
        for name in exact.into_iter().chain(["cmyk.jpg"]) {
            let (got, want) = (load_rgb(&fixture(name)).unwrap(), want(name));
            assert_eq!((got.width, got.height), (want.width, want.height), "{name}");
            let (max, mean) = diff(&got, &want);
            let bound = if name.ends_with(".jpg") { 2 } else { 0 };
            assert!(max <= bound && mean < 0.1, "{name}: max {max}, mean {mean}");
        }
    }

    #[test]
    fn bad_files_get_one_line() {
        let dir = std::env::temp_dir().join(format!("clipseg-image-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.png");
        std::fs::write(&junk, b"\x89PNG\r\n\x1a\n not really").unwrap();
        for path in [junk, dir.join("missing.jpg")] {
            let message = load_rgb(&path).err().unwrap().to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

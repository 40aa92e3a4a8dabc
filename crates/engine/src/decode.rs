//! Image decoding like Detectron2's `read_image`: any of JPEG, PNG, WebP, BMP,
//! TIFF; EXIF orientation applied; converted to RGB. The size is read from the
//! header and checked against a pixel limit before any pixel is decoded, so a
//! small file that claims a huge image (a decompression bomb) costs nothing.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("not a supported image (JPEG, PNG, WebP, BMP or TIFF expected)")]
    UnknownFormat,
    /// A supported format using a feature the decoder lacks (e.g. float TIFF samples).
    #[error("this {format} image uses a feature that cannot be decoded ({detail}); re-save it as 8-bit RGB")]
    UnsupportedFeature { format: String, detail: String },
    #[error("the image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("the image has no pixels ({width}x{height})")]
    ZeroSized { width: u32, height: u32 },
    #[error("the image cannot be decoded: {0}")]
    Corrupt(String),
    /// Pillow (and so Detectron2) refuses such a file: "image file is truncated".
    #[error("the {0} file is truncated: it ends before its end-of-image marker (an interrupted upload or download?)")]
    Truncated(&'static str),
}

/// An RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// The inclusive rectangle [left..=right] × [top..=bottom] as a new image.
    pub fn crop(&self, left: usize, top: usize, right: usize, bottom: usize) -> RgbImage {
        let (w, h) = (right + 1 - left, bottom + 1 - top);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in top..=bottom {
            let start = (y * self.width + left) * 3;
            data.extend_from_slice(&self.data[start..start + w * 3]);
        }
        RgbImage { height: h, width: w, data }
    }
}

/// Decode `bytes` into RGB with EXIF orientation applied, refusing images of
/// more than `max_pixels` pixels before decoding them.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Bmp | ImageFormat::Tiff)) => f,
        _ => return Err(DecodeError::UnknownFormat),
    };
    // The size the header states, read without a decoder: the pixel limit holds
    // even for a header with nothing after it (the decoders need more to start).
    if let Some((width, height)) = header_dimensions(format, bytes) {
        check_size(width, height, max_pixels)?;
    }
    // The image crate fills a JPEG cut short with gray and answers; Detectron2 never sees such an image.
    if format == ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        return Err(DecodeError::Truncated("JPEG"));
    }
    let unsupported = |e: image::ImageError| match e {
        image::ImageError::Unsupported(u) => {
            DecodeError::UnsupportedFeature { format: format!("{format:?}").to_uppercase(), detail: u.to_string() }
        }
        other => DecodeError::Corrupt(other.to_string()),
    };
    let mut decoder = reader.into_decoder().map_err(unsupported)?;
    let (width, height) = decoder.dimensions();
    let pixels = check_size(width, height, max_pixels)?;
    // Bound the decoder's own allocations too (a lying header must not get further).
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(pixels.saturating_mul(16).max(1 << 20));
    decoder
        .set_limits(limits)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(unsupported)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let rgb = img.into_rgb8();
    Ok(RgbImage {
        height: rgb.height() as usize,
        width: rgb.width() as usize,
        data: rgb.into_raw(),
    })
}

/// Refuse an empty or over-limit size; the pixel count otherwise.
fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<u64, DecodeError> {
    let pixels = width as u64 * height as u64;
    if width == 0 || height == 0 {
        return Err(DecodeError::ZeroSized { width, height });
    }
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge { width, height, pixels, limit: max_pixels });
    }
    Ok(pixels)
}

/// (width, height) from a PNG's IHDR or a JPEG's start-of-frame marker.
fn header_dimensions(format: ImageFormat, b: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| b.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]]) as u32);
    let be32 = |i: usize| b.get(i..i + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
    match format {
        ImageFormat::Png if b.get(12..16) == Some(b"IHDR") => Some((be32(16)?, be32(20)?)),
        ImageFormat::Jpeg => {
            let mut i = 2;
            while i + 4 <= b.len() {
                if b[i] != 0xFF {
                    return None;
                }
                let marker = b[i + 1];
                match marker {
                    0xFF => i += 1,
                    0x01 | 0xD0..=0xD8 => i += 2,
                    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC): height then width.
                    0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => return Some((be16(i + 7)?, be16(i + 5)?)),
                    0xDA | 0xD9 => return None,
                    _ => i += 2 + be16(i + 2)? as usize,
                }
            }
            None
        }
        _ => None,
    }
}

/// Whether a JPEG ends before the end-of-image marker that must follow its
/// last scan. Entropy-coded data escapes 0xFF as FF 00, so an FF D9 after the
/// last start-of-scan can only be that marker.
/// (A JPEG with no scan at all is not truncated but broken: the decoder says so.)
fn jpeg_is_truncated(b: &[u8]) -> bool {
    match b.windows(2).rposition(|w| w == [0xFF, 0xDA]) {
        Some(sos) => !b[sos..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header that claims a huge image is refused from the header alone,
    /// whatever follows it (here: nothing).
    #[test]
    fn oversized_headers_are_too_large_without_a_body() {
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend_from_slice(&60000u32.to_be_bytes());
        png.extend_from_slice(&60000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        match decode(&png, 50_000_000) {
            Err(DecodeError::TooLarge { width: 60000, height: 60000, .. }) => {}
            other => panic!("{other:?}"),
        }
        // A JPEG: SOI, then SOF0 claiming 40000 x 50000, then nothing.
        let jpeg = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x9C, 0x40, 0xC3, 0x50, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
        match decode(&jpeg, 50_000_000) {
            Err(DecodeError::TooLarge { width: 50000, height: 40000, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// A JPEG cut short is refused as truncated (as Pillow refuses it); the
    /// whole file decodes.
    #[test]
    fn truncated_jpegs_are_refused() {
        let mut jpeg = Vec::new();
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
        image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        assert!(decode(&jpeg, 1_000_000).is_ok());
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        for cut in [jpeg.len() - 2, (sos + jpeg.len()) / 2, sos + 20] {
            match decode(&jpeg[..cut], 1_000_000) {
                Err(e @ DecodeError::Truncated(_)) => assert!(e.to_string().contains("truncated")),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_garbage_and_bombs_before_decoding() {
        assert_eq!(decode(b"", 100), Err(DecodeError::Empty));
        assert_eq!(decode(b"hello, this is not an image", 100), Err(DecodeError::UnknownFormat));
        let png = crate::testing::png_bomb(60000, 60000);
        match decode(&png, 50_000_000) {
            Err(DecodeError::TooLarge { pixels, .. }) => assert_eq!(pixels, 3_600_000_000),
            other => panic!("{other:?}"),
        }
    }

    /// A known format whose variant cannot be decoded is named as such (not
    /// "not an image"); a format outside the list is refused as unknown.
    #[test]
    fn names_unsupported_variants_of_supported_formats() {
        // 2x2 single-channel float32 TIFF (what Pillow writes for mode "F").
        const FLOAT_TIFF: [u8; 150] = [
            73, 73, 42, 0, 8, 0, 0, 0, 10, 0, 0, 1, 4, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 1, 4, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1,
            3, 0, 1, 0, 0, 0, 32, 0, 0, 0, 3, 1, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 6, 1, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 17, 1, 4,
            0, 1, 0, 0, 0, 134, 0, 0, 0, 22, 1, 4, 0, 1, 0, 0, 0, 2, 0, 0, 0, 23, 1, 4, 0, 1, 0, 0, 0, 16, 0, 0, 0, 28, 1,
            3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 83, 1, 3, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0,
            0, 64, 0, 0, 64, 64,
        ];
        match decode(&FLOAT_TIFF, 100) {
            Err(e @ DecodeError::UnsupportedFeature { .. }) => {
                let msg = e.to_string();
                assert!(msg.starts_with("this TIFF image") && msg.contains("8-bit RGB"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        assert_eq!(decode(gif, 100), Err(DecodeError::UnknownFormat));
    }

    #[test]
    fn crops_inclusive_rectangles() {
        let img = RgbImage { height: 2, width: 3, data: (0..18).collect() };
        let c = img.crop(1, 0, 2, 1);
        assert_eq!((c.height, c.width), (2, 2));
        assert_eq!(c.data, vec![3, 4, 5, 6, 7, 8, 12, 13, 14, 15, 16, 17]);
    }
}

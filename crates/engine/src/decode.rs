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
    let unsupported = |e: image::ImageError| match e {
        image::ImageError::Unsupported(u) => {
            DecodeError::UnsupportedFeature { format: format!("{format:?}").to_uppercase(), detail: u.to_string() }
        }
        other => DecodeError::Corrupt(other.to_string()),
    };
    let mut decoder = reader.into_decoder().map_err(unsupported)?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if width == 0 || height == 0 {
        return Err(DecodeError::ZeroSized { width, height });
    }
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

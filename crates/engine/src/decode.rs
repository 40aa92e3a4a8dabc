//! Image decoding like Detectron2's `read_image`: any of JPEG, PNG, WebP, BMP,
//! TIFF; EXIF orientation applied; converted to RGB. The size is read from the
//! header and checked against a pixel limit before any pixel is decoded, so a
//! small file that claims a huge image (a decompression bomb) costs nothing.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("not a supported image (JPEG, PNG, WebP, BMP or TIFF expected)")]
    UnknownFormat,
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
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Unsupported(_) => DecodeError::UnknownFormat,
        other => DecodeError::Corrupt(other.to_string()),
    })?;
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
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
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

    #[test]
    fn crops_inclusive_rectangles() {
        let img = RgbImage { height: 2, width: 3, data: (0..18).collect() };
        let c = img.crop(1, 0, 2, 1);
        assert_eq!((c.height, c.width), (2, 2));
        assert_eq!(c.data, vec![3, 4, 5, 6, 7, 8, 12, 13, 14, 15, 16, 17]);
    }
}

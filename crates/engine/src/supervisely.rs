//! Supervisely output: bitmap geometry encoded exactly as the Supervisely SDK
//! does (`Bitmap.data_2_base64`), annotations, and the project meta.

use std::io::Write;

use base64::Engine as _;
use d2serve_registry::ClassInfo;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use serde_json::{Value, json};

use crate::paste::RegionMask;

/// The tag every object carries with its score.
pub const CONFIDENCE_TAG: &str = "confidence";
const CONFIDENCE_TAG_COLOR: &str = "#E2C39F";

fn zlib(data: &[u8]) -> Vec<u8> {
    // Level 6 with zlib's defaults: the bytes the SDK (Python's zlib) produces.
    let mut z = ZlibEncoder::new(Vec::new(), Compression::new(6));
    z.write_all(data).expect("writing to a Vec cannot fail");
    z.finish().expect("writing to a Vec cannot fail")
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(&png[start..]);
    png.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A 1-bit palette PNG (black transparent, white opaque) of a mask, as Pillow
/// writes the SDK's `Image.fromarray(mask).convert("P")`-style bitmaps.
pub fn mask_png(mask: &RegionMask) -> Vec<u8> {
    let (w, h) = (mask.width, mask.height);
    let row_bytes = w.div_ceil(8);
    let mut raw = Vec::with_capacity(h * (row_bytes + 1));
    for y in 0..h {
        raw.push(0); // filter: none
        let row = &mask.bits[y * w..(y + 1) * w];
        for byte in row.chunks(8) {
            let mut b = 0u8;
            for (i, &on) in byte.iter().enumerate() {
                if on {
                    b |= 0x80 >> i;
                }
            }
            raw.push(b);
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[1, 3, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"PLTE", &[0, 0, 0, 255, 255, 255]);
    chunk(&mut png, b"tRNS", &[0]);
    chunk(&mut png, b"IDAT", &zlib(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Supervisely bitmap geometry of a tight mask: origin `[col, row]` and the
/// base64 of the zlib-compressed PNG.
pub fn bitmap(mask: &RegionMask) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(zlib(&mask_png(mask)));
    json!({"origin": [mask.x0, mask.y0], "data": data})
}

/// One detected object as Supervisely JSON.
pub fn object(class_title: &str, score: f32, mask: &RegionMask) -> Value {
    json!({
        "classTitle": class_title,
        "description": "",
        "tags": [{"name": CONFIDENCE_TAG, "value": f64::from(score)}],
        "bitmap": bitmap(mask),
        "shape": "bitmap",
        "geometryType": "bitmap",
        "nnCreated": true,
        "nnUpdated": true,
    })
}

/// An annotation of an image of `height × width` (the original size).
pub fn annotation(height: usize, width: usize, objects: Vec<Value>) -> Value {
    json!({
        "description": "",
        "size": {"height": height, "width": width},
        "tags": [],
        "objects": objects,
        "customBigData": {},
    })
}

/// The project meta: classes in the model's class order, plus the confidence tag.
pub fn model_meta(classes: &[ClassInfo]) -> Value {
    let classes: Vec<Value> = classes
        .iter()
        .map(|c| {
            json!({
                "title": c.name,
                "description": "",
                "shape": "bitmap",
                "color": c.hex_color(),
                "geometry_config": {},
                "hotkey": "",
            })
        })
        .collect();
    json!({
        "classes": classes,
        "tags": [{
            "name": CONFIDENCE_TAG,
            "value_type": "any_number",
            "color": CONFIDENCE_TAG_COLOR,
            "hotkey": "",
            "applicable_type": "all",
            "classes": [],
            "target_type": "all",
        }],
        "projectSettings": {"multiView": {"enabled": false, "tagName": null, "tagId": null, "isSynced": false}},
    })
}

/// Decode a Supervisely bitmap object back into a mask (any PNG the SDK
/// accepts: alpha > 0 when the PNG has transparency, else nonzero pixels).
pub fn decode_bitmap(obj: &Value) -> Option<RegionMask> {
    use std::io::Read;
    let data = obj.pointer("/bitmap/data")?.as_str()?;
    let origin = obj.pointer("/bitmap/origin")?.as_array()?;
    let z = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    let mut png = Vec::new();
    flate2::read::ZlibDecoder::new(&z[..]).read_to_end(&mut png).ok()?;
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).ok()?.to_rgba8();
    let bits = img.pixels().map(|p| p.0[3] > 0 && (p.0[0] > 0 || p.0[1] > 0 || p.0[2] > 0 || p.0[3] < 255)).collect();
    Some(RegionMask {
        x0: origin.first()?.as_u64()? as usize,
        y0: origin.get(1)?.as_u64()? as usize,
        width: img.width() as usize,
        height: img.height() as usize,
        bits,
    })
}

/// Draw a Supervisely annotation over an RGB image (`zoo draw`, the README demo).
pub fn draw_annotation(rgb: &mut [u8], height: usize, width: usize, ann: &Value, classes: &[ClassInfo]) -> usize {
    let objects = ann.get("objects").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut decoded = Vec::new();
    // A title the class list does not name (a model of one's own drawn without
    // its classes) still gets a colour of its own, by order of appearance.
    let mut unnamed: Vec<String> = Vec::new();
    for o in &objects {
        let Some(mask) = decode_bitmap(o) else { continue };
        let title = o.get("classTitle").and_then(Value::as_str).unwrap_or("?").to_string();
        let score = o
            .get("tags")
            .and_then(Value::as_array)
            .and_then(|t| t.iter().find(|t| t["name"] == CONFIDENCE_TAG))
            .and_then(|t| t["value"].as_f64())
            .unwrap_or(0.0) as f32;
        let color = match classes.iter().find(|c| c.name == title) {
            Some(c) => c.color,
            None => {
                let i = unnamed.iter().position(|t| *t == title).unwrap_or_else(|| {
                    unnamed.push(title.clone());
                    unnamed.len() - 1
                });
                d2serve_registry::classes::palette_color(i)
            }
        };
        decoded.push((title, score, color, mask));
    }
    let drawn: Vec<crate::overlay::Drawn<'_>> = decoded
        .iter()
        .map(|(title, score, color, m)| crate::overlay::Drawn {
            label: title,
            score: *score,
            color: *color,
            bbox: [m.x0 as f32, m.y0 as f32, (m.x0 + m.width) as f32, (m.y0 + m.height) as f32],
            mask_x0: m.x0,
            mask_y0: m.y0,
            mask_w: m.width,
            mask_h: m.height,
            mask_bits: &m.bits,
        })
        .collect();
    crate::overlay::draw(rgb, height, width, &drawn);
    drawn.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_to_tight(h: usize, w: usize, on: impl Fn(usize, usize) -> bool) -> RegionMask {
        let bits = (0..h * w).map(|i| on(i / w, i % w)).collect();
        RegionMask { x0: 0, y0: 0, width: w, height: h, bits }.tight().unwrap()
    }

    /// The golden vectors of the Supervisely SDK (supervisely-api.md §5.6).
    #[test]
    fn bitmaps_match_the_sdk_golden_vectors() {
        let ring = full_to_tight(5, 5, |r, c| (1..4).contains(&r) && (1..4).contains(&c) && !(r == 2 && c == 2));
        assert_eq!(
            bitmap(&ring),
            json!({"origin": [1, 1], "data": "eJzrDPBz5+WS4mJgYOD19HAJAtLMIMwIInOeqf8BUmwBPiGuQPr///9Lb86/C2QxlgT5BTM4PLuRBuTwebo4hlTMSa44sKHhISMDuxpTYrr03F6gDIOnq5/LOqeEJgDM5ht6"})
        );
        let single = full_to_tight(10, 10, |r, c| r == 7 && c == 4);
        assert_eq!(
            bitmap(&single),
            json!({"origin": [4, 7], "data": "eJzrDPBz5+WS4mJgYOD19HAJAtKMIMzIDCRVb4edAlJsAT4hrkD6////S2/OvwuSLgnyC2ZweHYjDcjh8nRxDKmYk5wBZDcxNJafLdoGZDF4uvq5rHNKaAIAM6gZbg=="})
        );
        let rect = full_to_tight(6, 20, |r, c| (2..4).contains(&r) && (3..12).contains(&c));
        assert_eq!(
            bitmap(&rect),
            json!({"origin": [3, 2], "data": "eJzrDPBz5+WS4mJgYOD19HAJAtKcQMzEyAwkN8xImQCk2AJ8QlyB9P///5fenH8XyGIsCfILZnB4diMNyOHzdHEMqZiT/OP+gQ/7GRk465n+1zrnTQfKMHi6+rmsc0poAgDr8R1V"})
        );
    }

    #[test]
    fn bitmaps_decode_back_to_the_mask() {
        let rect = full_to_tight(6, 20, |r, c| (2..4).contains(&r) && (3..12).contains(&c));
        let obj = object("person", 0.9, &rect);
        assert_eq!(decode_bitmap(&obj).unwrap(), rect);
    }

    #[test]
    fn meta_lists_classes_in_model_order_with_upper_hex_colours() {
        let classes = d2serve_registry::ClassList::builtin("cityscapes").unwrap().classes;
        let m = model_meta(&classes);
        assert_eq!(m["classes"][0]["title"], "person");
        assert_eq!(m["classes"][0]["color"], "#DC143C");
        assert_eq!(m["classes"].as_array().unwrap().len(), 8);
        assert_eq!(m["tags"][0]["value_type"], "any_number");
    }

    /// Classes the list does not name (a model of one's own drawn without its
    /// classes) get a palette colour each, not one red for all.
    #[test]
    fn unnamed_classes_are_drawn_in_distinct_colours() {
        let (h, w) = (80, 160);
        let left = full_to_tight(h, w, |_, c| c < 60);
        let right = full_to_tight(h, w, |_, c| c >= 100);
        let ann = annotation(h, w, vec![object("kiwi", 0.9, &left), object("lemon", 0.8, &right)]);
        let mut rgb = vec![0u8; h * w * 3];
        assert_eq!(draw_annotation(&mut rgb, h, w, &ann, &[]), 2);
        let pixel = |r: usize, c: usize| [rgb[(r * w + c) * 3], rgb[(r * w + c) * 3 + 1], rgb[(r * w + c) * 3 + 2]];
        // The mask interiors, away from outlines and labels.
        let (a, b) = (pixel(60, 30), pixel(60, 130));
        assert_ne!(a, [0, 0, 0]);
        assert_ne!(a, b, "two classes, two colours");
    }
}

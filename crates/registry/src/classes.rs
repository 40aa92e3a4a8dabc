//! Class lists (names and one fixed colour per class) of the datasets the zoo
//! models were trained on. They ship inside the binary, so every deployment
//! draws the same class in the same colour.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClassInfo {
    /// Contiguous id: the network's class output.
    pub id: u32,
    pub name: String,
    /// RGB.
    pub color: [u8; 3],
}

impl ClassInfo {
    /// `#RRGGBB`, as Supervisely writes colours.
    pub fn hex_color(&self) -> String {
        let [r, g, b] = self.color;
        format!("#{r:02X}{g:02X}{b:02X}")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassList {
    pub dataset: String,
    pub source: String,
    pub colour_rule: String,
    pub classes: Vec<ClassInfo>,
}

const BUILTIN: &[(&str, &str)] = &[
    ("coco", include_str!("../data/classes/coco.json")),
    ("lvis_v0.5", include_str!("../data/classes/lvis_v0.5.json")),
    ("cityscapes", include_str!("../data/classes/cityscapes.json")),
];

impl ClassList {
    /// Names of the built-in class lists.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }

    /// A built-in class list by name (`coco`, `lvis_v0.5`, `cityscapes`).
    pub fn builtin(name: &str) -> Option<ClassList> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Some(serde_json::from_str(text).expect("built-in class lists are checked by tests"))
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.classes.iter().map(|c| c.name.as_str())
    }
}

/// A class-names file a user brings with a fine-tuned model, in one of three
/// forms: Supervisely's `model_classes.json` (an array of ObjClass objects
/// with `title` and `color`), a JSON list of names, or one name per line.
/// Colours the file gives are kept (Supervisely's own serve app replaced them
/// with random ones); a class without one gets [`palette_color`].
pub fn read_class_file(path: &std::path::Path) -> Result<Vec<ClassInfo>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > 16 << 20 {
        return Err(format!("{}: {} bytes is too large for a class list", path.display(), meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_class_list(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// See [`read_class_file`].
pub fn parse_class_list(text: &str) -> Result<Vec<ClassInfo>, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    let mut named: Vec<(String, Option<[u8; 3]>)> = Vec::new();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| format!("not valid JSON: {e}"))?;
        let items = match &v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(o) => match o.get("classes").and_then(|c| c.as_array()) {
                Some(a) => a,
                None => return Err("a JSON class list is an array (of names, or of {\"title\", \"color\"} objects)".into()),
            },
            _ => unreachable!("starts with [ or {{"),
        };
        for (i, item) in items.iter().enumerate() {
            match item {
                serde_json::Value::String(s) => named.push((s.clone(), None)),
                serde_json::Value::Object(o) => {
                    let name = o
                        .get("title")
                        .or_else(|| o.get("name"))
                        .and_then(|t| t.as_str())
                        .ok_or_else(|| format!("class {i} has no \"title\" (or \"name\")"))?;
                    let color = match o.get("color") {
                        None | Some(serde_json::Value::Null) => None,
                        Some(serde_json::Value::String(c)) => Some(parse_hex_color(c).ok_or_else(|| format!("class `{name}`: colour `{c}` is not #RRGGBB"))?),
                        Some(serde_json::Value::Array(rgb)) => {
                            let c: Option<Vec<u8>> = rgb.iter().map(|x| x.as_u64().and_then(|x| u8::try_from(x).ok())).collect();
                            Some(c.filter(|c| c.len() == 3).map(|c| [c[0], c[1], c[2]]).ok_or_else(|| format!("class `{name}`: colour is not [r, g, b]"))?)
                        }
                        Some(other) => return Err(format!("class `{name}`: colour {other} is not #RRGGBB")),
                    };
                    named.push((name.to_string(), color));
                }
                other => return Err(format!("class {i} is {other}, not a name or an object with a title")),
            }
        }
    } else {
        named = trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| (l.to_string(), None)).collect();
    }
    if named.is_empty() {
        return Err("the class list is empty".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &named {
        if name.trim().is_empty() {
            return Err("a class name is empty".into());
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("class `{name}` appears twice: answers name classes, so each name must be unique"));
        }
    }
    Ok(named
        .into_iter()
        .enumerate()
        .map(|(i, (name, color))| ClassInfo { id: i as u32, name, color: color.unwrap_or_else(|| palette_color(i)) })
        .collect())
}

/// `class_0`, `class_1`, …: the names of a model whose classes nobody named.
pub fn placeholder_classes(n: usize) -> Vec<ClassInfo> {
    (0..n).map(|i| ClassInfo { id: i as u32, name: format!("class_{i}"), color: palette_color(i) }).collect()
}

fn parse_hex_color(s: &str) -> Option<[u8; 3]> {
    let h = s.strip_prefix('#')?;
    if h.len() != 6 || !h.is_ascii() {
        return None;
    }
    let c = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some([c(0)?, c(2)?, c(4)?])
}

/// A fixed, well-separated colour for class `i` (golden-angle hues), so a
/// class without a colour looks the same on every run and every server.
pub fn palette_color(i: usize) -> [u8; 3] {
    let hue = (i as f64 * 137.507_764) % 360.0;
    let (s, v) = (0.75, if i % 2 == 0 { 0.95 } else { 0.75 });
    let c = v * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let to = |f: f64| ((f + m) * 255.0).round() as u8;
    [to(r), to(g), to(b)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_forms_of_class_file() {
        let sly = r##"[{"title": "kiwi", "shape": "bitmap", "color": "#E6194B", "geometry_config": {}, "id": 7, "hotkey": ""},
                       {"title": "lemon", "shape": "bitmap", "color": "#3cb44b"}]"##;
        let c = parse_class_list(sly).unwrap();
        assert_eq!((c[0].name.as_str(), c[0].color, c[1].color), ("kiwi", [0xE6, 0x19, 0x4B], [0x3C, 0xB4, 0x4B]));
        let c = parse_class_list(r#"["a", "b", "c"]"#).unwrap();
        assert_eq!(c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(c[2].id, 2);
        let c = parse_class_list("cat\r\n\ndog\n").unwrap();
        assert_eq!(c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["cat", "dog"]);
        assert_ne!(c[0].color, c[1].color);
    }

    #[test]
    fn bad_class_files_say_why() {
        for (text, word) in [
            ("[]", "empty"),
            (r#"["a", "a"]"#, "twice"),
            (r##"[{"color": "#000000"}]"##, "title"),
            (r##"[{"title": "x", "color": "#12345"}]"##, "RRGGBB"),
            ("[1, 2", "JSON"),
            ("", "empty"),
        ] {
            let e = parse_class_list(text).unwrap_err();
            assert!(e.contains(word), "{text}: {e}");
        }
    }
}

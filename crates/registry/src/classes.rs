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

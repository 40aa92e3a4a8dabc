//! Reader for Detectron2 / yacs config files: YAML in, a generic config tree
//! ([`CfgValue`]) out. Mapping the tree to model parameters is someone else's
//! job; this module only reproduces what Python would have loaded.
//!
//! The three YAML forms a trained model carries (docs/custom-models.md §2.1):
//!
//! - `cfg.dump()` output (`config.yaml` in OUTPUT_DIR): plain YAML, possibly
//!   with anchors/aliases (`&id001` / `*id001`) where two keys shared a list;
//! - a zoo YAML with `_BASE_` chains ([`load_yaml_file`] resolves them the way
//!   fvcore's `load_yaml_with_base` does);
//! - Supervisely's `model_config.yaml`, written by `yaml.dump(CfgNode)`: every
//!   node is tagged `!!python/object/new:...CfgNode` with `dictitems` and
//!   `state`, tuples are `!!python/tuple`, sets `!!set`. Python loads that
//!   with `yaml.unsafe_load`, which would also run `!!python/object/apply:`
//!   payloads; here the CfgNode/tuple/set tags are reduced to data and every
//!   other Python tag is refused, so a config file can never be more than data.
//!
//! Values are typed the way Python ends up with them: plain scalars by
//! PyYAML's YAML 1.1 resolver (`yes`/`on` are booleans, `1e-3` is a string),
//! then every string that is a mapping value through a `literal_eval`
//! equivalent, as yacs does when merging (`"(640, 672)"` becomes a list,
//! `"BGR"` stays a string). Tuples become lists: the consumer cannot tell
//! them apart, and yacs converts between the two anyway.
//!
//! The event-level parser of `yaml-rust2` is driven by pulling events (not
//! `Parser::load`, which recurses once per nesting level and cannot be
//! stopped by the receiver), so that the first error, the depth cap and the
//! size cap stop the parse at once. Anchors are expanded by cloning; the node,
//! byte and depth caps below make alias bombs ("billion laughs") an error
//! instead of an out-of-memory.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Most nodes (scalars and containers, aliases counted expanded) one file may
/// build. A full `cfg.dump()` has about 1,500; this leaves room for any real
/// config and stops exponential alias expansion long before memory runs out.
pub const MAX_NODES: usize = 1_000_000;
/// Most bytes of strings and keys one file may build (aliases counted
/// expanded): an alias of a long string would otherwise multiply memory
/// without multiplying nodes. Also the largest file accepted.
pub const MAX_TEXT_BYTES: usize = 16 << 20;
/// Deepest nesting of mappings and sequences. A Supervisely config nests about
/// a dozen levels (each CfgNode is two mappings); the cap keeps every
/// recursive walk of the tree (clone, drop, merge) far from the stack limit.
pub const MAX_DEPTH: usize = 128;
/// Longest `_BASE_` chain followed. Cycles are detected by path, but a base
/// supplied by the caller can name a base in a deeper virtual directory, which
/// no path comparison would ever see repeat.
pub const MAX_BASE_DEPTH: usize = 16;
/// Most files one [`load_yaml_file`] reads, bases included: a list of bases
/// that each list the same bases again grows exponentially without a cycle.
pub const MAX_BASE_FILES: usize = 256;
/// Deepest bracket nesting inside one string that [`literal_eval`] accepts
/// (Python's own parser stops at 200). Deeper strings stay strings.
const MAX_LITERAL_DEPTH: usize = 100;

const BASE_KEY: &str = "_BASE_";
const CORE_TAG: &str = "tag:yaml.org,2002:";

// ---------------------------------------------------------------------------
// The tree
// ---------------------------------------------------------------------------

/// One value of a config tree. Python tuples and lists both become [`List`];
/// Python dicts and CfgNodes both become [`Map`].
///
/// [`List`]: CfgValue::List
/// [`Map`]: CfgValue::Map
#[derive(Debug, Clone, PartialEq)]
pub enum CfgValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<CfgValue>),
    Map(CfgMap),
}

/// A mapping with string keys that keeps insertion order (as Python dicts
/// do), so a tree prints in the order of its file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CfgMap {
    entries: Vec<(String, CfgValue)>,
}

impl CfgMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&CfgValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut CfgValue> {
        self.entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`. An existing key keeps its position and returns its old
    /// value (Python dict semantics); a new key goes last.
    pub fn insert(&mut self, key: impl Into<String>, value: CfgValue) -> Option<CfgValue> {
        let key = key.into();
        match self.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<CfgValue> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &CfgValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// fvcore's `merge_a_into_b(other, self)`: mappings present on both sides
    /// are merged recursively, anything else from `other` replaces (child
    /// wins). Keys new to `self` go last, in `other`'s order.
    pub fn merge_from(&mut self, other: CfgMap) {
        // An index, so that merging two big maps is linear rather than
        // quadratic (a hostile base file could hold a million keys).
        let mut index: HashMap<String, usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        for (key, value) in other.entries {
            match index.get(&key) {
                Some(&i) => self.entries[i].1.merge_from(value),
                None => {
                    index.insert(key.clone(), self.entries.len());
                    self.entries.push((key, value));
                }
            }
        }
    }
}

impl FromIterator<(String, CfgValue)> for CfgMap {
    fn from_iter<I: IntoIterator<Item = (String, CfgValue)>>(iter: I) -> Self {
        let mut map = CfgMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl IntoIterator for CfgMap {
    type Item = (String, CfgValue);
    type IntoIter = std::vec::IntoIter<(String, CfgValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl From<CfgMap> for CfgValue {
    fn from(map: CfgMap) -> Self {
        CfgValue::Map(map)
    }
}

impl CfgValue {
    /// The value at a dotted path such as `"MODEL.ROI_HEADS.NUM_CLASSES"`;
    /// the empty path is the value itself.
    pub fn get(&self, dotted: &str) -> Option<&CfgValue> {
        if dotted.is_empty() {
            return Some(self);
        }
        let mut cur = self;
        for part in dotted.split('.') {
            cur = cur.as_map()?.get(part)?;
        }
        Some(cur)
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            CfgValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A float, or an int read as one: YAML writes `1.0` and `1` alike for a
    /// float default that a user overrode by hand.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            CfgValue::Float(f) => Some(*f),
            CfgValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            CfgValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            CfgValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[CfgValue]> {
        match self {
            CfgValue::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&CfgMap> {
        match self {
            CfgValue::Map(map) => Some(map),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, CfgValue::Null)
    }

    /// The Python type name, for error messages of the consumer.
    pub fn type_name(&self) -> &'static str {
        match self {
            CfgValue::Null => "None",
            CfgValue::Bool(_) => "bool",
            CfgValue::Int(_) => "int",
            CfgValue::Float(_) => "float",
            CfgValue::Str(_) => "str",
            CfgValue::List(_) => "list",
            CfgValue::Map(_) => "dict",
        }
    }

    /// Recursive merge, `other` over `self`: two maps merge key by key (see
    /// [`CfgMap::merge_from`]); anything else is replaced by `other`.
    pub fn merge_from(&mut self, other: CfgValue) {
        match (self, other) {
            (CfgValue::Map(mine), CfgValue::Map(theirs)) => mine.merge_from(theirs),
            (slot, other) => *slot = other,
        }
    }

    /// A JSON document as a tree (Supervisely's `model_config.json`). Strings
    /// are taken as they are: that file is overlaid by dict update in Python,
    /// with no `literal_eval`. Integers beyond `i64` become floats.
    pub fn from_json(v: &serde_json::Value) -> CfgValue {
        use serde_json::Value as J;
        match v {
            J::Null => CfgValue::Null,
            J::Bool(b) => CfgValue::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => CfgValue::Int(i),
                None => CfgValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => CfgValue::Str(s.clone()),
            J::Array(items) => CfgValue::List(items.iter().map(CfgValue::from_json).collect()),
            J::Object(obj) => CfgValue::Map(
                obj.iter()
                    .map(|(k, v)| (k.clone(), CfgValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// Python `repr`-like text, so a consumer's message shows a value the way the
/// user wrote it in Python.
impl fmt::Display for CfgValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CfgValue::Null => f.write_str("None"),
            CfgValue::Bool(true) => f.write_str("True"),
            CfgValue::Bool(false) => f.write_str("False"),
            CfgValue::Int(i) => write!(f, "{i}"),
            CfgValue::Float(x) if x.is_nan() => f.write_str("nan"),
            CfgValue::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "inf" } else { "-inf" })
            }
            CfgValue::Float(x) => write!(f, "{x:?}"),
            CfgValue::Str(s) => write_py_str(f, s),
            CfgValue::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            CfgValue::Map(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_py_str(f, k)?;
                    write!(f, ": {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_py_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Where in a config an error is: the file (when loading one), line and
/// column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    pub line: usize,
    pub column: usize,
}

impl Location {
    fn at(mark: Marker) -> Self {
        Location {
            file: None,
            line: mark.line(),
            // yaml-rust2 counts columns from 0 (its own messages add 1).
            column: mark.col() + 1,
        }
    }

    fn file_prefix(&self) -> String {
        match &self.file {
            Some(f) => format!("{f}: "),
            None => String::new(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{}:{}", self.line, self.column),
            None => write!(f, "line {}, column {}", self.line, self.column),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum YacsError {
    #[error("{path}: cannot read the config file: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is {size} bytes, more than the {limit} a config may have: is it a config file?")]
    FileTooLarge { path: String, size: u64, limit: usize },
    #[error("{at}: not valid YAML: {message}; fix the file, or write the config again with cfg.dump()")]
    Syntax { at: Location, message: String },
    #[error(
        "{}refusing the Python tag `{tag}` at line {}, column {}: a config file may only hold data; write it with cfg.dump() (plain YAML) rather than yaml.dump(cfg)",
        .at.file_prefix(), .at.line, .at.column
    )]
    PythonTag { at: Location, tag: String },
    #[error("{at}: unsupported YAML tag `{tag}`: a Detectron2 config holds only mappings, lists, strings, numbers, booleans and null; remove the tag")]
    UnsupportedTag { at: Location, tag: String },
    #[error("{at}: the tag `{tag}` cannot mark a {node}; remove the tag")]
    MisplacedTag {
        at: Location,
        tag: String,
        node: &'static str,
    },
    #[error("{at}: `{value}` is not a valid {tag} value; fix the value or remove the tag")]
    BadScalar {
        at: Location,
        tag: &'static str,
        value: String,
    },
    #[error("{at}: malformed CfgNode object: {message}; write the config with cfg.dump() instead")]
    BadCfgNode { at: Location, message: String },
    #[error("{at}: a mapping key must be a string, not a {found}; fix the key")]
    BadKey { at: Location, found: &'static str },
    #[error("{at}: the merge key `<<` needs a mapping or a list of mappings; fix its value")]
    BadMerge { at: Location },
    #[error("{at}: the alias refers to the node that contains it; a config cannot be recursive")]
    RecursiveAlias { at: Location },
    #[error("{at}: the file holds more than one YAML document; a config is one document, keep only one")]
    MultipleDocuments { at: Location },
    #[error("{at}: the config expands to more than {limit} {what} (an alias bomb?); a real Detectron2 config is far smaller")]
    TooLarge {
        at: Location,
        what: &'static str,
        limit: usize,
    },
    #[error("{at}: the config nests deeper than {limit} levels; a real Detectron2 config is far flatter")]
    TooDeep { at: Location, limit: usize },
    #[error("{file}: the config must be a mapping of keys, but it is {found}")]
    NotAMapping { file: String, found: String },
    #[error("{file}: `_BASE_` must be a file name or a list of file names, not {found}")]
    BadBase { file: String, found: String },
    #[error(
        "{file}: its base config `{base}` was not found at {tried}; put the base file there (beside the config, keeping the relative path) or pass the fully expanded config that cfg.dump() writes (config.yaml in OUTPUT_DIR)"
    )]
    MissingBase {
        file: String,
        base: String,
        tried: String,
    },
    #[error("`_BASE_` chain is a cycle: {}; remove one of the `_BASE_` entries", .chain.join(" -> "))]
    BaseCycle { chain: Vec<String> },
    #[error("{file}: `_BASE_` chains nest deeper than {limit} files, or read more than {files} files in all; pass the fully expanded config that cfg.dump() writes", limit = MAX_BASE_DEPTH, files = MAX_BASE_FILES)]
    TooManyBases { file: String },
}

/// `$then` with `$at` bound to the error's place, for the variants that are
/// at one place in a file's text; `$else` for the others.
macro_rules! located {
    ($err:expr, $at:ident => $then:expr, $else:expr) => {
        match $err {
            YacsError::Syntax { $at, .. }
            | YacsError::PythonTag { $at, .. }
            | YacsError::UnsupportedTag { $at, .. }
            | YacsError::MisplacedTag { $at, .. }
            | YacsError::BadScalar { $at, .. }
            | YacsError::BadCfgNode { $at, .. }
            | YacsError::BadKey { $at, .. }
            | YacsError::BadMerge { $at }
            | YacsError::RecursiveAlias { $at }
            | YacsError::MultipleDocuments { $at }
            | YacsError::TooLarge { $at, .. }
            | YacsError::TooDeep { $at, .. } => $then,
            _ => $else,
        }
    };
}

impl YacsError {
    /// Names the file in an error raised while parsing its text.
    fn in_file(mut self, file: &str) -> Self {
        located!(&mut self, at => at.file = Some(file.to_owned()), ());
        self
    }

    /// Where the error is, when it is at one place in a file's text.
    pub fn location(&self) -> Option<&Location> {
        located!(self, at => Some(at), None)
    }
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Parses one YAML document into a tree, decoding values as yacs does. No
/// `_BASE_` handling (a root `_BASE_` is kept, undecoded); an empty document
/// is [`CfgValue::Null`].
pub fn parse_yaml(text: &str) -> Result<CfgValue, YacsError> {
    let mut value = parse_raw(text)?;
    decode_config(&mut value, Location { file: None, line: 1, column: 1 })?;
    Ok(value)
}

/// Loads a config file as Detectron2's `merge_from_file` sees it: `_BASE_`
/// chains resolved and merged (fvcore `load_yaml_with_base`), then values
/// decoded (yacs `_decode_cfg_value`).
///
/// A base is looked up relative to the including file (unless absolute or
/// starting with `~`); if no file is there, `builtin_base` is asked with the
/// `_BASE_` entry as written (e.g. `"../Base-RCNN-FPN.yaml"`), so a caller can
/// supply the zoo's base configs by file name. A base supplied that way may
/// itself name bases, looked up relative to where it would have been.
pub fn load_yaml_file(
    path: &Path,
    builtin_base: &dyn Fn(&str) -> Option<String>,
) -> Result<CfgValue, YacsError> {
    let label = path.display().to_string();
    let text = read_config(path)?;
    let mut loader = BaseLoader {
        builtin_base,
        stack: Vec::new(),
        files: 0,
    };
    let map = loader.load(path, &label, &text)?;
    let mut value = CfgValue::Map(map);
    decode_config(&mut value, Location { file: Some(label), line: 1, column: 1 })?;
    Ok(value)
}

fn read_config(path: &Path) -> Result<String, YacsError> {
    let label = || path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| YacsError::Io { path: label(), source })?;
    if meta.len() > MAX_TEXT_BYTES as u64 {
        return Err(YacsError::FileTooLarge {
            path: label(),
            size: meta.len(),
            limit: MAX_TEXT_BYTES,
        });
    }
    std::fs::read_to_string(path).map_err(|source| YacsError::Io { path: label(), source })
}

// ---------------------------------------------------------------------------
// _BASE_ chains
// ---------------------------------------------------------------------------

struct BaseLoader<'a> {
    builtin_base: &'a dyn Fn(&str) -> Option<String>,
    /// Identity (canonical or normalized path) and label of each file being
    /// loaded, outermost first: a repeat is a cycle.
    stack: Vec<(PathBuf, String)>,
    files: usize,
}

impl BaseLoader<'_> {
    /// The raw (undecoded) tree of one file with its bases merged under it.
    fn load(&mut self, path: &Path, label: &str, text: &str) -> Result<CfgMap, YacsError> {
        self.files += 1;
        if self.stack.len() >= MAX_BASE_DEPTH || self.files > MAX_BASE_FILES {
            return Err(YacsError::TooManyBases { file: label.to_owned() });
        }
        let identity = std::fs::canonicalize(path).unwrap_or_else(|_| normalize(path));
        if let Some(start) = self.stack.iter().position(|(id, _)| *id == identity) {
            let mut chain: Vec<String> = self.stack[start..].iter().map(|(_, l)| l.clone()).collect();
            chain.push(label.to_owned());
            return Err(YacsError::BaseCycle { chain });
        }

        if text.len() > MAX_TEXT_BYTES {
            return Err(YacsError::FileTooLarge {
                path: label.to_owned(),
                size: text.len() as u64,
                limit: MAX_TEXT_BYTES,
            });
        }
        let mut root = match parse_raw(text).map_err(|e| e.in_file(label))? {
            CfgValue::Map(map) => map,
            CfgValue::Null => {
                return Err(YacsError::NotAMapping {
                    file: label.to_owned(),
                    found: "empty".to_owned(),
                });
            }
            other => {
                return Err(YacsError::NotAMapping {
                    file: label.to_owned(),
                    found: format!("a {} ({})", other.type_name(), other),
                });
            }
        };
        let Some(base) = root.remove(BASE_KEY) else {
            return Ok(root);
        };
        let names = match base {
            CfgValue::Str(s) => vec![s],
            CfgValue::List(items) => items
                .into_iter()
                .map(|item| match item {
                    CfgValue::Str(s) => Ok(s),
                    other => Err(YacsError::BadBase {
                        file: label.to_owned(),
                        found: format!("a list holding {other}"),
                    }),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(YacsError::BadBase {
                    file: label.to_owned(),
                    found: format!("{other}"),
                });
            }
        };

        self.stack.push((identity, label.to_owned()));
        let dir = path.parent().unwrap_or(Path::new(""));
        let mut merged = CfgMap::new();
        for name in &names {
            let base = self.load_base(name, dir, label)?;
            merged.merge_from(base);
        }
        self.stack.pop();
        merged.merge_from(root);
        Ok(merged)
    }

    fn load_base(&mut self, name: &str, dir: &Path, including: &str) -> Result<CfgMap, YacsError> {
        let remote = name.starts_with("http://") || name.starts_with("https://");
        let candidate = if remote {
            PathBuf::from(name)
        } else {
            let expanded = expand_home(name);
            if expanded.is_absolute() {
                expanded
            } else {
                dir.join(expanded)
            }
        };
        // No downloads: a remote base can only come from the caller.
        if !remote && candidate.is_file() {
            let label = candidate.display().to_string();
            let text = read_config(&candidate)?;
            return self.load(&candidate, &label, &text);
        }
        if let Some(text) = (self.builtin_base)(name) {
            let label = format!("{} (built-in)", candidate.display());
            return self.load(&candidate, &label, &text);
        }
        Err(YacsError::MissingBase {
            file: including.to_owned(),
            base: name.to_owned(),
            tried: candidate.display().to_string(),
        })
    }
}

/// `~` and `~/...` as `os.path.expanduser` has them; `~user` is left alone.
fn expand_home(name: &str) -> PathBuf {
    let rest = if name == "~" {
        Some("")
    } else {
        name.strip_prefix("~/")
    };
    match (rest, std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(name),
    }
}

/// Lexical normalization (`a/b/../c` → `a/c`) for paths that do not exist on
/// disk (bases supplied by the caller), so a cycle through them is still seen.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Building the tree from parser events
// ---------------------------------------------------------------------------

/// Parses one document to a tree with YAML typing only (no `literal_eval`).
fn parse_raw(text: &str) -> Result<CfgValue, YacsError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(YacsError::TooLarge {
            at: Location { file: None, line: 1, column: 1 },
            what: "bytes of text",
            limit: MAX_TEXT_BYTES,
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YacsError::Syntax {
            at: Location::at(*e.marker()),
            message: e.info().to_owned(),
        })?;
        let end = event == Event::StreamEnd;
        builder.on_event(event, mark)?;
        if end {
            break;
        }
    }
    Ok(match builder.root {
        Some(Node::Value(v)) => v,
        Some(Node::Set) => CfgValue::List(Vec::new()),
        None => CfgValue::Null,
    })
}

/// A finished node: a value, or a Python set (`!!set`), which a config has
/// only in CfgNode bookkeeping and which is dropped where it lands.
#[derive(Clone)]
enum Node {
    Value(CfgValue),
    Set,
}

/// What a tag asks for, once checked against the allowed few.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// No tag: resolve as PyYAML's SafeLoader would.
    Default,
    /// `!` alone: a scalar is a string, a collection is untouched.
    NonSpecific,
    Str,
    Int,
    Float,
    Bool,
    Null,
    Seq,
    Map,
    Tuple,
    Set,
    /// `python/object/new:...CfgNode`: a mapping of `dictitems` and `state`.
    CfgNode,
    /// `python/object:...CfgNode`: how PyYAML writes a CfgNode without items
    /// (the mapping is its state).
    EmptyCfgNode,
}

struct PendingKey {
    text: String,
    /// A plain `<<`: YAML 1.1's merge key, which PyYAML's SafeLoader honours.
    merge: bool,
}

enum Frame {
    Seq {
        items: Vec<CfgValue>,
        anchor: usize,
        mark: Marker,
    },
    Map {
        entries: Vec<(String, CfgValue)>,
        /// Key → position in `entries`: duplicate keys replace in place
        /// (Python dict semantics) without a quadratic search.
        index: HashMap<String, usize>,
        /// Maps named by `<<`, in the order they apply (later wins).
        merges: Vec<CfgMap>,
        key: Option<PendingKey>,
        role: Role,
        tag: String,
        anchor: usize,
        mark: Marker,
    },
}

struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
    depth: usize,
}

#[derive(Default)]
struct Builder {
    frames: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    bytes: usize,
}

impl Builder {
    fn on_event(&mut self, event: Event, mark: Marker) -> Result<(), YacsError> {
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YacsError::MultipleDocuments { at: Location::at(mark) });
                }
                Ok(())
            }
            Event::Alias(id) => self.on_alias(id, mark),
            Event::Scalar(text, style, anchor, tag) => self.on_scalar(text, style, anchor, tag.as_ref(), mark),
            Event::SequenceStart(anchor, tag) => {
                let (role, name) = classify(tag.as_ref(), mark)?;
                if !matches!(role, Role::Default | Role::NonSpecific | Role::Seq | Role::Tuple) {
                    return Err(misplaced(name, "sequence", mark));
                }
                self.open(mark)?;
                self.frames.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    mark,
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                let (role, name) = classify(tag.as_ref(), mark)?;
                if !matches!(
                    role,
                    Role::Default | Role::NonSpecific | Role::Map | Role::Set | Role::CfgNode | Role::EmptyCfgNode
                ) {
                    return Err(misplaced(name, "mapping", mark));
                }
                self.open(mark)?;
                self.frames.push(Frame::Map {
                    entries: Vec::new(),
                    index: HashMap::new(),
                    merges: Vec::new(),
                    key: None,
                    role,
                    tag: name,
                    anchor,
                    mark,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.frames.pop() {
                Some(Frame::Seq { items, anchor, mark }) => {
                    self.finish(Node::Value(CfgValue::List(items)), anchor, mark)
                }
                _ => Err(internal(mark, "sequence end without a sequence")),
            },
            Event::MappingEnd => match self.frames.pop() {
                Some(Frame::Map {
                    entries,
                    merges,
                    role,
                    tag,
                    anchor,
                    mark,
                    ..
                }) => {
                    let map = apply_merges(merges, entries);
                    let node = match role {
                        Role::Set => Node::Set,
                        Role::CfgNode => Node::Value(CfgValue::Map(cfgnode_items(map, &tag, mark)?)),
                        Role::EmptyCfgNode => Node::Value(CfgValue::Map(CfgMap::new())),
                        _ => Node::Value(CfgValue::Map(map)),
                    };
                    self.finish(node, anchor, mark)
                }
                _ => Err(internal(mark, "mapping end without a mapping")),
            },
        }
    }

    /// True when the next node is a mapping key.
    fn expecting_key(&self) -> bool {
        matches!(self.frames.last(), Some(Frame::Map { key: None, .. }))
    }

    fn charge(&mut self, nodes: usize, bytes: usize, mark: Marker) -> Result<(), YacsError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > MAX_NODES {
            return Err(YacsError::TooLarge {
                at: Location::at(mark),
                what: "nodes",
                limit: MAX_NODES,
            });
        }
        if self.bytes > MAX_TEXT_BYTES {
            return Err(YacsError::TooLarge {
                at: Location::at(mark),
                what: "bytes of text",
                limit: MAX_TEXT_BYTES,
            });
        }
        Ok(())
    }

    /// Checks before a mapping or sequence opens.
    fn open(&mut self, mark: Marker) -> Result<(), YacsError> {
        if self.expecting_key() {
            return Err(YacsError::BadKey {
                at: Location::at(mark),
                found: "mapping or sequence",
            });
        }
        if self.frames.len() + 1 > MAX_DEPTH {
            return Err(YacsError::TooDeep {
                at: Location::at(mark),
                limit: MAX_DEPTH,
            });
        }
        self.charge(1, 0, mark)
    }

    fn on_scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        mark: Marker,
    ) -> Result<(), YacsError> {
        let (role, name) = classify(tag, mark)?;
        let value = match role {
            Role::Default | Role::NonSpecific | Role::Str | Role::Int | Role::Float | Role::Bool | Role::Null => {
                resolve_scalar(&text, style, role, mark)?
            }
            _ => return Err(misplaced(name, "scalar", mark)),
        };
        self.charge(1, text.len(), mark)?;
        if self.expecting_key() {
            let merge = style == TScalarStyle::Plain && role == Role::Default && text == "<<";
            if anchor != 0 {
                // An anchored key is a string wherever it is aliased again.
                self.store_anchor(anchor, Node::Value(CfgValue::Str(text.clone())));
            }
            self.set_key(PendingKey { text, merge });
            return Ok(());
        }
        self.finish(Node::Value(value), anchor, mark)
    }

    fn on_alias(&mut self, id: usize, mark: Marker) -> Result<(), YacsError> {
        let Some(anchored) = self.anchors.get(&id) else {
            // The parser knows the anchor, but its node is still open: the
            // alias sits inside the node it names.
            return Err(YacsError::RecursiveAlias { at: Location::at(mark) });
        };
        if self.frames.len() + anchored.depth > MAX_DEPTH {
            return Err(YacsError::TooDeep {
                at: Location::at(mark),
                limit: MAX_DEPTH,
            });
        }
        let (nodes, bytes) = (anchored.nodes, anchored.bytes);
        self.charge(nodes, bytes, mark)?;
        let node = self.anchors[&id].node.clone();
        if self.expecting_key() {
            return match node {
                Node::Value(CfgValue::Str(text)) => {
                    self.set_key(PendingKey { text, merge: false });
                    Ok(())
                }
                Node::Value(v) => Err(YacsError::BadKey {
                    at: Location::at(mark),
                    found: v.type_name(),
                }),
                Node::Set => Err(YacsError::BadKey {
                    at: Location::at(mark),
                    found: "set",
                }),
            };
        }
        self.attach(node, mark)
    }

    fn set_key(&mut self, pending: PendingKey) {
        if let Some(Frame::Map { key, .. }) = self.frames.last_mut() {
            *key = Some(pending);
        }
    }

    fn store_anchor(&mut self, anchor: usize, node: Node) {
        let (nodes, bytes, depth) = match &node {
            Node::Value(v) => stats(v),
            Node::Set => (1, 0, 1),
        };
        self.anchors.insert(
            anchor,
            Anchored {
                node,
                nodes,
                bytes,
                depth,
            },
        );
    }

    /// A node is complete: remember it under its anchor and hand it to its
    /// parent.
    fn finish(&mut self, node: Node, anchor: usize, mark: Marker) -> Result<(), YacsError> {
        if anchor != 0 {
            self.store_anchor(anchor, node.clone());
        }
        self.attach(node, mark)
    }

    fn attach(&mut self, node: Node, mark: Marker) -> Result<(), YacsError> {
        match self.frames.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                // A set inside a list cannot be dropped without shifting the
                // items after it; it becomes an empty list.
                items.push(match node {
                    Node::Value(v) => v,
                    Node::Set => CfgValue::List(Vec::new()),
                });
                Ok(())
            }
            Some(Frame::Map {
                entries,
                index,
                merges,
                key,
                ..
            }) => {
                let Some(pending) = key.take() else {
                    return Err(internal(mark, "mapping value without a key"));
                };
                if pending.merge {
                    match node {
                        Node::Value(CfgValue::Map(m)) => merges.push(m),
                        Node::Value(CfgValue::List(items)) => {
                            // PyYAML: in `<<: [A, B]`, A wins over B, so B
                            // applies first.
                            let mut maps = Vec::with_capacity(items.len());
                            for item in items {
                                match item {
                                    CfgValue::Map(m) => maps.push(m),
                                    _ => return Err(YacsError::BadMerge { at: Location::at(mark) }),
                                }
                            }
                            merges.extend(maps.into_iter().rev());
                        }
                        _ => return Err(YacsError::BadMerge { at: Location::at(mark) }),
                    }
                    return Ok(());
                }
                match node {
                    // The bookkeeping sets of a CfgNode (`__deprecated_keys__`)
                    // mean nothing to a model: the key is dropped.
                    Node::Set => {}
                    Node::Value(v) => match index.get(&pending.text) {
                        Some(&i) => entries[i].1 = v,
                        None => {
                            index.insert(pending.text.clone(), entries.len());
                            entries.push((pending.text, v));
                        }
                    },
                }
                Ok(())
            }
        }
    }
}

/// A mapping's entries with its `<<` merges applied: merged keys first, then
/// the mapping's own keys, later values winning (PyYAML `flatten_mapping`).
fn apply_merges(merges: Vec<CfgMap>, entries: Vec<(String, CfgValue)>) -> CfgMap {
    if merges.is_empty() {
        return CfgMap { entries };
    }
    let mut out: Vec<(String, CfgValue)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in merges.into_iter().flatten().chain(entries) {
        match index.get(&k) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    CfgMap { entries: out }
}

/// The items of a `python/object/new:...CfgNode` mapping. `state` is yacs
/// bookkeeping (`__immutable__`, `__new_allowed__`, ...) and is dropped.
fn cfgnode_items(map: CfgMap, tag: &str, mark: Marker) -> Result<CfgMap, YacsError> {
    let mut items = CfgMap::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("dictitems", CfgValue::Map(m)) => items = m,
            ("dictitems", other) => {
                return Err(YacsError::BadCfgNode {
                    at: Location::at(mark),
                    message: format!("`{tag}` has `dictitems` that is a {}, not a mapping", other.type_name()),
                });
            }
            ("state", _) => {}
            (other, _) => {
                // `args`, `listitems`, ... would be constructor input in
                // Python; a CfgNode written by yaml.dump never has them.
                return Err(YacsError::BadCfgNode {
                    at: Location::at(mark),
                    message: format!("`{tag}` has `{other}`, but only `dictitems` and `state` are expected"),
                });
            }
        }
    }
    Ok(items)
}

/// (nodes, bytes of strings and keys, depth) of a value; depth 0 for scalars.
fn stats(v: &CfgValue) -> (usize, usize, usize) {
    match v {
        CfgValue::Str(s) => (1, s.len(), 0),
        CfgValue::List(items) => {
            let (mut n, mut b, mut d) = (1, 0, 0);
            for item in items {
                let (n2, b2, d2) = stats(item);
                n += n2;
                b += b2;
                d = d.max(d2);
            }
            (n, b, d + 1)
        }
        CfgValue::Map(map) => {
            let (mut n, mut b, mut d) = (1, 0, 0);
            for (k, item) in map.iter() {
                let (n2, b2, d2) = stats(item);
                n += n2;
                b += b2 + k.len();
                d = d.max(d2);
            }
            (n, b, d + 1)
        }
        _ => (1, 0, 0),
    }
}

fn internal(mark: Marker, what: &str) -> YacsError {
    YacsError::Syntax {
        at: Location::at(mark),
        message: format!("unexpected parser event ({what})"),
    }
}

fn misplaced(tag: String, node: &'static str, mark: Marker) -> YacsError {
    YacsError::MisplacedTag {
        at: Location::at(mark),
        tag,
        node,
    }
}

/// Checks a tag against the few a config may carry. Returns the role and the
/// tag as written out in full (for messages).
fn classify(tag: Option<&Tag>, mark: Marker) -> Result<(Role, String), YacsError> {
    let Some(tag) = tag else {
        return Ok((Role::Default, String::new()));
    };
    let full = format!("{}{}", tag.handle, tag.suffix);
    if full == "!" {
        return Ok((Role::NonSpecific, full));
    }
    let role = full.strip_prefix(CORE_TAG).and_then(|rest| match rest {
        "str" => Some(Role::Str),
        "int" => Some(Role::Int),
        "float" => Some(Role::Float),
        "bool" => Some(Role::Bool),
        "null" => Some(Role::Null),
        "seq" => Some(Role::Seq),
        "map" => Some(Role::Map),
        "set" => Some(Role::Set),
        "python/tuple" => Some(Role::Tuple),
        _ => {
            if let Some(class) = rest.strip_prefix("python/object/new:") {
                is_cfgnode_class(class).then_some(Role::CfgNode)
            } else if let Some(class) = rest.strip_prefix("python/object:") {
                is_cfgnode_class(class).then_some(Role::EmptyCfgNode)
            } else {
                None
            }
        }
    });
    match role {
        Some(role) => Ok((role, full)),
        // Anything naming Python (also under a `%TAG` alias or a local `!`
        // handle) is code or an object to rebuild: refuse, never ignore.
        None if full.contains("python/") || full.contains("python:") => Err(YacsError::PythonTag {
            at: Location::at(mark),
            tag: full,
        }),
        None => Err(YacsError::UnsupportedTag {
            at: Location::at(mark),
            tag: full,
        }),
    }
}

/// `detectron2.config.config.CfgNode`, `yacs.config.CfgNode`,
/// `fvcore.common.config.CfgNode`, or any dotted class whose name ends in
/// `CfgNode` (projects subclass it).
fn is_cfgnode_class(class: &str) -> bool {
    let name = class.rsplit('.').next().unwrap_or("");
    name.ends_with("CfgNode")
        && class
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

// ---------------------------------------------------------------------------
// Scalars: PyYAML's YAML 1.1 resolver and constructors
// ---------------------------------------------------------------------------

fn resolve_scalar(text: &str, style: TScalarStyle, role: Role, mark: Marker) -> Result<CfgValue, YacsError> {
    let bad = |tag: &'static str| YacsError::BadScalar {
        at: Location::at(mark),
        tag,
        value: text.to_owned(),
    };
    Ok(match role {
        Role::Default if style == TScalarStyle::Plain => resolve_plain(text),
        Role::Int => match construct_int(text) {
            Some(Some(i)) => CfgValue::Int(i),
            _ => return Err(bad("!!int")),
        },
        Role::Float => CfgValue::Float(construct_float(text).ok_or_else(|| bad("!!float"))?),
        Role::Bool => CfgValue::Bool(construct_bool(text).ok_or_else(|| bad("!!bool"))?),
        Role::Null => CfgValue::Null,
        _ => CfgValue::Str(text.to_owned()),
    })
}

/// Types a plain scalar as PyYAML's `SafeLoader` does (YAML 1.1 resolver):
/// bool, then float, int, null; anything else is a string. Timestamps
/// (`2001-12-14`) stay strings: a Detectron2 config has none, and yacs would
/// refuse a date anyway.
pub fn resolve_plain(text: &str) -> CfgValue {
    if is_yaml11_bool(text) {
        return CfgValue::Bool(construct_bool(text).unwrap_or(false));
    }
    if is_yaml11_float(text)
        && let Some(f) = construct_float(text)
    {
        return CfgValue::Float(f);
    }
    if is_yaml11_int(text) {
        // An int beyond i64 (a Python int has no limit) stays its text.
        return match construct_int(text) {
            Some(Some(i)) => CfgValue::Int(i),
            _ => CfgValue::Str(text.to_owned()),
        };
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return CfgValue::Null;
    }
    CfgValue::Str(text.to_owned())
}

fn is_yaml11_bool(s: &str) -> bool {
    matches!(
        s,
        "yes" | "Yes" | "YES" | "no" | "No" | "NO" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE" | "on"
            | "On" | "ON" | "off" | "Off" | "OFF"
    )
}

/// PyYAML `construct_yaml_bool`: the lower-cased text looked up.
fn construct_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Splits an optional leading sign.
fn strip_sign(s: &str) -> (bool, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

/// Length of the run of bytes at the start of `s` that satisfy `f`.
fn run(s: &[u8], f: impl Fn(u8) -> bool) -> usize {
    s.iter().take_while(|&&c| f(c)).count()
}

fn digit_or_us(c: u8) -> bool {
    c.is_ascii_digit() || c == b'_'
}

/// `(?:[eE][-+][0-9]+)?` at the start of `s`: returns the length matched
/// (0 when absent) or None when the tail is not an exponent.
fn yaml_exponent(s: &[u8]) -> usize {
    if s.len() >= 3 && matches!(s[0], b'e' | b'E') && matches!(s[1], b'-' | b'+') {
        let n = run(&s[2..], |c| c.is_ascii_digit());
        if n > 0 {
            return 2 + n;
        }
    }
    0
}

/// PyYAML's float regex:
/// ```text
/// [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
/// | \.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
/// | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
/// | [-+]?\.(?:inf|Inf|INF)
/// | \.(?:nan|NaN|NAN)
/// ```
/// Note the exponent needs a sign and the mantissa a dot: `1e-3` and
/// `1.0e3` are strings to PyYAML (yacs then `literal_eval`s them).
fn is_yaml11_float(s: &str) -> bool {
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (_, body) = strip_sign(s);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    let b = s.as_bytes();
    // Branch 2: no sign allowed.
    if b.first() == Some(&b'.') {
        let rest = &b[1..];
        if rest.first().is_some_and(|c| c.is_ascii_digit()) {
            let n = run(rest, digit_or_us);
            let e = yaml_exponent(&rest[n..]);
            return n + e == rest.len();
        }
        return false;
    }
    let body = body.as_bytes();
    if !body.first().is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    let n = run(body, digit_or_us);
    let rest = &body[n..];
    match rest.first() {
        // Branch 1.
        Some(b'.') => {
            let m = run(&rest[1..], digit_or_us);
            let e = yaml_exponent(&rest[1 + m..]);
            1 + m + e == rest.len()
        }
        // Branch 3: sexagesimal, `(?::[0-5]?[0-9])+\.[0-9_]*`.
        Some(b':') => {
            let mut i = 0;
            let mut groups = 0;
            while i < rest.len() && rest[i] == b':' {
                let Some(len) = sexagesimal_group(&rest[i + 1..]) else {
                    return false;
                };
                i += 1 + len;
                groups += 1;
            }
            groups > 0 && i < rest.len() && rest[i] == b'.' && run(&rest[i + 1..], digit_or_us) == rest.len() - i - 1
        }
        _ => false,
    }
}

/// `[0-5]?[0-9]` at the start of `s` (greedy, as the regex engine would
/// settle for a whole match): the length matched.
fn sexagesimal_group(s: &[u8]) -> Option<usize> {
    match s {
        [a, b, ..] if (b'0'..=b'5').contains(a) && b.is_ascii_digit() => Some(2),
        [a, ..] if a.is_ascii_digit() => Some(1),
        _ => None,
    }
}

/// PyYAML's int regex:
/// ```text
/// [-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(?:0|[1-9][0-9_]*)
/// | [-+]?0x[0-9a-fA-F_]+ | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
/// ```
/// (no `0o`: that is YAML 1.2; `0o17` is a string that yacs later evaluates).
fn is_yaml11_int(s: &str) -> bool {
    let (_, body) = strip_sign(s);
    let b = body.as_bytes();
    if let Some(rest) = body.strip_prefix("0b") {
        return !rest.is_empty() && rest.bytes().all(|c| matches!(c, b'0' | b'1' | b'_'));
    }
    if let Some(rest) = body.strip_prefix("0x") {
        return !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_hexdigit() || c == b'_');
    }
    if body == "0" {
        return true;
    }
    if let Some(rest) = body.strip_prefix('0') {
        return !rest.is_empty() && rest.bytes().all(|c| matches!(c, b'0'..=b'7' | b'_'));
    }
    if !b.first().is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return false;
    }
    let n = run(b, digit_or_us);
    if n == b.len() {
        return true;
    }
    // Sexagesimal: `[1-9][0-9_]*(?::[0-5]?[0-9])+`.
    let mut i = n;
    while i < b.len() && b[i] == b':' {
        let Some(len) = sexagesimal_group(&b[i + 1..]) else {
            return false;
        };
        i += 1 + len;
    }
    i > n && i == b.len()
}

/// PyYAML `construct_yaml_int` on text the int regex accepted (or any text,
/// for an explicit `!!int`). Outer None: not an int; inner None: beyond i64.
fn construct_int(text: &str) -> Option<Option<i64>> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, body) = strip_sign(&cleaned);
    let magnitude: Option<i128> = if body == "0" {
        Some(0)
    } else if let Some(bin) = body.strip_prefix("0b") {
        parse_radix(bin, 2)?
    } else if let Some(hex) = body.strip_prefix("0x") {
        parse_radix(hex, 16)?
    } else if body.starts_with('0') {
        parse_radix(body, 8)?
    } else if body.contains(':') {
        let mut value: i128 = 0;
        for part in body.split(':') {
            let digit = parse_radix(part, 10)??;
            value = value.checked_mul(60)?.checked_add(digit)?;
        }
        Some(value)
    } else {
        parse_radix(body, 10)?
    };
    Some(magnitude.and_then(|m| i64::try_from(if negative { -m } else { m }).ok()))
}

/// Digits in a radix: outer None when not digits, inner None on overflow.
fn parse_radix(digits: &str, radix: u32) -> Option<Option<i128>> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(i128::from_str_radix(digits, radix).ok())
}

/// PyYAML `construct_yaml_float`: underscores dropped, `.inf`/`.nan`,
/// sexagesimal, otherwise Python's `float()`.
fn construct_float(text: &str) -> Option<f64> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect::<String>().to_ascii_lowercase();
    let (negative, body) = strip_sign(&cleaned);
    let sign = if negative { -1.0 } else { 1.0 };
    let value = if body == ".inf" {
        f64::INFINITY
    } else if body == ".nan" {
        f64::NAN
    } else if body.contains(':') {
        let mut value = 0.0;
        for part in body.split(':') {
            value = value * 60.0 + python_float(part)?;
        }
        value
    } else {
        python_float(body)?
    };
    Some(sign * value)
}

/// Python `float()` of a decimal text: `1.`, `.5`, `1e5`, `inf`, `nan`.
fn python_float(s: &str) -> Option<f64> {
    let s = s.trim();
    match s.to_ascii_lowercase().trim_start_matches(['+', '-']) {
        "inf" | "infinity" | "nan" => return s.parse::<f64>().ok(),
        _ => {}
    }
    let (negative, body) = strip_sign(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let mut normal = format!(
        "{}{}.{}",
        if negative { "-" } else { "" },
        if int.is_empty() { "0" } else { int },
        if frac.is_empty() { "0" } else { frac }
    );
    if let Some(exp) = exponent {
        let (_, exp_digits) = strip_sign(exp);
        if exp_digits.is_empty() || !digits(exp_digits) {
            return None;
        }
        normal.push('e');
        normal.push_str(exp);
    }
    normal.parse::<f64>().ok()
}

// ---------------------------------------------------------------------------
// yacs value decoding
// ---------------------------------------------------------------------------

/// yacs `_decode_cfg_value`, applied where yacs applies it: to each string
/// that is a mapping value (yacs decodes as it merges key by key; strings
/// inside lists are left alone). A root `_BASE_` is fvcore's, read before
/// any decoding, and stays as written.
fn decode_config(root: &mut CfgValue, at: Location) -> Result<(), YacsError> {
    let mut nodes = stats(root).0;
    match root {
        CfgValue::Map(map) => {
            for (key, value) in map.entries.iter_mut() {
                if key == BASE_KEY {
                    continue;
                }
                decode_value(value, true, &mut nodes, &at)?;
            }
            Ok(())
        }
        other => decode_value(other, false, &mut nodes, &at),
    }
}

fn decode_value(v: &mut CfgValue, map_value: bool, nodes: &mut usize, at: &Location) -> Result<(), YacsError> {
    match v {
        CfgValue::Str(s) if map_value => {
            if let Some(decoded) = literal_eval(s) {
                // The decoded value replaces one node; strings that expand to
                // big lists (an alias of one, many times) still count.
                *nodes += stats(&decoded).0 - 1;
                if *nodes > MAX_NODES {
                    return Err(YacsError::TooLarge {
                        at: at.clone(),
                        what: "nodes",
                        limit: MAX_NODES,
                    });
                }
                *v = decoded;
            }
        }
        CfgValue::List(items) => {
            for item in items {
                decode_value(item, false, nodes, at)?;
            }
        }
        CfgValue::Map(map) => {
            for (_, item) in map.entries.iter_mut() {
                decode_value(item, true, nodes, at)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Python's `ast.literal_eval` of a string, for what a config can hold:
/// numbers, strings, `True`/`False`/`None`, tuples and lists (both become
/// lists), dicts with string keys. None when the text is not a literal (a
/// name such as `BGR`, a call, a syntax error): yacs then keeps the string.
/// Also None for literals a tree cannot hold (complex numbers, bytes, sets,
/// ints beyond i64, `\N{...}` escapes): the string is kept, as the nearest
/// faithful value.
pub fn literal_eval(text: &str) -> Option<CfgValue> {
    let mut p = Lit {
        s: text.as_bytes(),
        i: 0,
        nest: 0,
    };
    // Python strips leading spaces and tabs; blank lines before the
    // expression are skipped by its tokenizer.
    p.skip_ws(true);
    let value = p.expr_list()?;
    p.skip_ws(true);
    (p.i == p.s.len()).then_some(value)
}

struct Lit<'a> {
    s: &'a [u8],
    i: usize,
    /// Open brackets: inside them newlines are whitespace.
    nest: usize,
}

enum Num {
    Int(i128),
    Float(f64),
}

impl Lit<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    /// Spaces, tabs, form feeds, comments, backslash line joins, and
    /// newlines when `newlines` (inside brackets, or around the expression).
    fn skip_ws(&mut self, newlines: bool) {
        let newlines = newlines || self.nest > 0;
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\x0c' => self.i += 1,
                b'\n' | b'\r' if newlines => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n' && c != b'\r') {
                        self.i += 1;
                    }
                }
                b'\\' if self.peek_at(1) == Some(b'\n') => self.i += 2,
                b'\\' if self.peek_at(1) == Some(b'\r') => {
                    self.i += if self.peek_at(2) == Some(b'\n') { 3 } else { 2 };
                }
                _ => break,
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// The top level, where `1, 2` is a tuple.
    fn expr_list(&mut self) -> Option<CfgValue> {
        let first = self.item()?;
        self.skip_ws(false);
        if self.peek() != Some(b',') {
            return Some(first);
        }
        let mut items = vec![first];
        while self.eat(b',') {
            self.skip_ws(false);
            if self.i == self.s.len() || matches!(self.peek(), Some(b'\n' | b'\r')) {
                break;
            }
            items.push(self.item()?);
            self.skip_ws(false);
        }
        Some(CfgValue::List(items))
    }

    fn open(&mut self) -> Option<()> {
        self.i += 1;
        self.nest += 1;
        (self.nest <= MAX_LITERAL_DEPTH).then_some(())
    }

    fn close(&mut self, c: u8) -> Option<()> {
        if !self.eat(c) {
            return None;
        }
        self.nest -= 1;
        Some(())
    }

    /// Items up to `close`, with an optional trailing comma. Also says
    /// whether there was a comma, which makes `(x,)` a tuple and `(x)` not.
    fn items(&mut self, close: u8) -> Option<(Vec<CfgValue>, bool)> {
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            self.skip_ws(true);
            if self.peek() == Some(close) {
                break;
            }
            items.push(self.item()?);
            self.skip_ws(true);
            if self.eat(b',') {
                comma = true;
                continue;
            }
            break;
        }
        self.close(close)?;
        Some((items, comma))
    }

    fn item(&mut self) -> Option<CfgValue> {
        self.skip_ws(false);
        let c = self.peek()?;
        match c {
            b'(' => {
                self.open()?;
                let (mut items, comma) = self.items(b')')?;
                if items.len() == 1 && !comma {
                    items.pop()
                } else {
                    Some(CfgValue::List(items))
                }
            }
            b'[' => {
                self.open()?;
                Some(CfgValue::List(self.items(b']')?.0))
            }
            b'{' => {
                self.open()?;
                self.dict()
            }
            b'-' | b'+' => {
                self.i += 1;
                self.skip_ws(false);
                // literal_eval allows a sign on a number only (not on
                // `True`, a string or a bracket).
                match self.number()? {
                    Num::Int(i) => {
                        let i = if c == b'-' { -i } else { i };
                        i64::try_from(i).ok().map(CfgValue::Int)
                    }
                    Num::Float(f) => Some(CfgValue::Float(if c == b'-' { -f } else { f })),
                }
            }
            b'0'..=b'9' => self.number().and_then(num_value),
            b'.' if self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) => self.number().and_then(num_value),
            b'\'' | b'"' => self.strings(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                if self.string_prefix_len().is_some() {
                    return self.strings();
                }
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.i += 1;
                }
                if self.peek().is_some_and(|c| c >= 0x80) {
                    return None; // a non-ASCII identifier: a name all the same
                }
                match &self.s[start..self.i] {
                    b"True" => Some(CfgValue::Bool(true)),
                    b"False" => Some(CfgValue::Bool(false)),
                    b"None" => Some(CfgValue::Null),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn dict(&mut self) -> Option<CfgValue> {
        let mut map = CfgMap::new();
        loop {
            self.skip_ws(true);
            if self.peek() == Some(b'}') {
                break;
            }
            let key = self.item()?;
            self.skip_ws(true);
            if !self.eat(b':') {
                return None; // a set, or not a literal
            }
            let value = self.item()?;
            match key {
                CfgValue::Str(k) => {
                    map.insert(k, value);
                }
                _ => return None, // a tree's keys are strings
            }
            self.skip_ws(true);
            if !self.eat(b',') {
                break;
            }
        }
        self.close(b'}')?;
        Some(CfgValue::Map(map))
    }

    /// A Python number token: int (decimal, 0x, 0o, 0b, with `_`), float
    /// (`1.`, `.5`, `1e-3`). None for syntax errors and imaginary numbers.
    fn number(&mut self) -> Option<Num> {
        let s = self.s;
        let start = self.i;
        let ident = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80);
        if s.get(start) == Some(&b'0')
            && let Some(radix) = match s.get(start + 1) {
                Some(b'x' | b'X') => Some(16),
                Some(b'o' | b'O') => Some(8),
                Some(b'b' | b'B') => Some(2),
                _ => None,
            }
        {
            self.i += 2;
            let digits = self.digit_part(radix, true)?;
            if ident(self.peek()) {
                return None;
            }
            return i128::from_str_radix(&digits, radix).ok().map(Num::Int);
        }
        let int = if self.peek() == Some(b'.') {
            String::new()
        } else {
            self.digit_part(10, false)?
        };
        let mut is_float = false;
        let mut frac = String::new();
        if self.peek() == Some(b'.') {
            self.i += 1;
            is_float = true;
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                frac = self.digit_part(10, false)?;
            }
        }
        let mut exp = String::new();
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            let mut sign = "";
            if let Some(c @ (b'+' | b'-')) = self.peek() {
                sign = if c == b'-' { "-" } else { "+" };
                self.i += 1;
            }
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                exp = format!("{sign}{}", self.digit_part(10, false)?);
                is_float = true;
            } else {
                self.i = save;
                return None; // `1e` or `1e+`: a syntax error
            }
        }
        if matches!(self.peek(), Some(b'j' | b'J')) {
            return None; // complex: no place in a tree
        }
        if ident(self.peek()) {
            return None;
        }
        if !is_float {
            // Python 3 forbids leading zeros in a non-zero decimal int.
            if int.len() > 1 && int.starts_with('0') && int.bytes().any(|c| c != b'0') {
                return None;
            }
            return int.parse::<i128>().ok().map(Num::Int);
        }
        let text = format!(
            "{}.{}{}{}",
            if int.is_empty() { "0" } else { &int },
            if frac.is_empty() { "0" } else { &frac },
            if exp.is_empty() { "" } else { "e" },
            exp
        );
        text.parse::<f64>().ok().map(Num::Float)
    }

    /// Digits in `radix` with single underscores between them; with
    /// `after_prefix`, one underscore may also lead (`0x_ff`). Returns the
    /// digits without underscores.
    fn digit_part(&mut self, radix: u32, after_prefix: bool) -> Option<String> {
        let mut out = String::new();
        let mut want_digit = true;
        if after_prefix && self.peek() == Some(b'_') {
            self.i += 1;
        }
        while let Some(c) = self.peek() {
            if (c as char).is_digit(radix) {
                out.push(c as char);
                want_digit = false;
                self.i += 1;
            } else if c == b'_' && !want_digit {
                want_digit = true;
                self.i += 1;
            } else if c.is_ascii_digit() {
                return None; // `0b2`, `0o8`: an invalid digit
            } else {
                break;
            }
        }
        (!out.is_empty() && !want_digit).then_some(out)
    }

    /// Length of a string prefix (`r`, `u`, `b`, `f`, `br`, `rb`, `fr`, `rf`,
    /// any case) directly before a quote, if there is one here.
    fn string_prefix_len(&self) -> Option<usize> {
        let lower = |k: usize| self.peek_at(k).map(|c| c.to_ascii_lowercase());
        let quote = |k: usize| matches!(self.peek_at(k), Some(b'\'' | b'"'));
        match (lower(0), lower(1)) {
            (Some(b'r' | b'u' | b'b' | b'f'), _) if quote(1) => Some(1),
            (Some(b'b'), Some(b'r')) | (Some(b'r'), Some(b'b')) | (Some(b'f'), Some(b'r')) | (Some(b'r'), Some(b'f'))
                if quote(2) =>
            {
                Some(2)
            }
            _ => None,
        }
    }

    /// One or more adjacent string literals, concatenated as Python does.
    fn strings(&mut self) -> Option<CfgValue> {
        let mut out = Vec::new();
        loop {
            self.string(&mut out)?;
            self.skip_ws(false);
            let next_is_string =
                matches!(self.peek(), Some(b'\'' | b'"')) || self.string_prefix_len().is_some();
            if !next_is_string {
                break;
            }
        }
        String::from_utf8(out).ok().map(CfgValue::Str)
    }

    fn string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let prefix_len = self.string_prefix_len().unwrap_or(0);
        let prefix: Vec<u8> = self.s[self.i..self.i + prefix_len]
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        // Bytes have no place in a tree; an f-string is not a literal.
        if prefix.contains(&b'b') || prefix.contains(&b'f') {
            return None;
        }
        let raw = prefix.contains(&b'r');
        self.i += prefix_len;
        let quote = self.peek()?;
        let triple = self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote);
        self.i += if triple { 3 } else { 1 };
        loop {
            let c = self.peek()?; // unterminated: a syntax error
            if c == quote && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote))) {
                self.i += if triple { 3 } else { 1 };
                return Some(());
            }
            if !triple && (c == b'\n' || c == b'\r') {
                return None;
            }
            if c != b'\\' {
                out.push(c);
                self.i += 1;
                continue;
            }
            let next = self.peek_at(1)?;
            if raw {
                // In a raw string a backslash keeps itself and the next
                // character (so `r'\''` is a backslash and a quote).
                out.push(b'\\');
                out.push(next);
                self.i += 2;
                continue;
            }
            self.i += 2;
            let simple = match next {
                b'\n' => Some(None),
                b'\r' => {
                    self.eat(b'\n');
                    Some(None)
                }
                b'\\' => Some(Some(b'\\')),
                b'\'' => Some(Some(b'\'')),
                b'"' => Some(Some(b'"')),
                b'a' => Some(Some(0x07)),
                b'b' => Some(Some(0x08)),
                b'f' => Some(Some(0x0c)),
                b'n' => Some(Some(b'\n')),
                b'r' => Some(Some(b'\r')),
                b't' => Some(Some(b'\t')),
                b'v' => Some(Some(0x0b)),
                _ => None,
            };
            if let Some(byte) = simple {
                out.extend(byte);
                continue;
            }
            let code = match next {
                b'0'..=b'7' => {
                    let mut v = u32::from(next - b'0');
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.i += 1;
                            }
                            _ => break,
                        }
                    }
                    v
                }
                b'x' => self.hex_escape(2)?,
                b'u' => self.hex_escape(4)?,
                b'U' => self.hex_escape(8)?,
                b'N' => return None, // named escapes need the Unicode name table
                _ => {
                    // An unknown escape keeps its backslash (Python warns);
                    // the character after it is read as usual.
                    out.push(b'\\');
                    self.i -= 1;
                    continue;
                }
            };
            let ch = char::from_u32(code)?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }

    fn hex_escape(&mut self, n: usize) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + n)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += n;
        u32::from_str_radix(text, 16).ok()
    }
}

fn num_value(n: Num) -> Option<CfgValue> {
    match n {
        Num::Int(i) => i64::try_from(i).ok().map(CfgValue::Int),
        Num::Float(f) => Some(CfgValue::Float(f)),
    }
}

// ---------------------------------------------------------------------------
// Unit tests: the scalar rules and literal_eval, case by case. Whole files
// (fixtures, Supervisely dumps, _BASE_ chains) are in tests/yacs.rs.
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> CfgValue {
        CfgValue::Str(v.to_owned())
    }

    fn list(items: Vec<CfgValue>) -> CfgValue {
        CfgValue::List(items)
    }

    #[test]
    fn plain_scalars_follow_pyyaml() {
        use CfgValue::*;
        let cases: &[(&str, CfgValue)] = &[
            ("yes", Bool(true)),
            ("No", Bool(false)),
            ("ON", Bool(true)),
            ("off", Bool(false)),
            ("True", Bool(true)),
            ("FALSE", Bool(false)),
            ("y", s("y")),
            ("tRUE", s("tRUE")),
            ("42", Int(42)),
            ("-7", Int(-7)),
            ("+7", Int(7)),
            ("1_000", Int(1000)),
            ("0", Int(0)),
            ("012", Int(10)),
            ("0x1F", Int(31)),
            ("-0x10", Int(-16)),
            ("0b101", Int(5)),
            ("1:30", Int(90)),
            ("0o17", s("0o17")),
            ("08", s("08")),
            ("99999999999999999999", s("99999999999999999999")),
            ("1.5", Float(1.5)),
            ("-2.", Float(-2.0)),
            (".5", Float(0.5)),
            ("1.0e-3", Float(0.001)),
            ("1.0e3", s("1.0e3")),
            ("1.0e+3", Float(1000.0)),
            ("1e-3", s("1e-3")),
            ("-.5", s("-.5")),
            ("1_000.5", Float(1000.5)),
            ("1:30.5", Float(90.5)),
            (".inf", Float(f64::INFINITY)),
            ("-.Inf", Float(f64::NEG_INFINITY)),
            ("inf", s("inf")),
            ("~", Null),
            ("null", Null),
            ("NULL", Null),
            ("", Null),
            ("nULL", s("nULL")),
            ("BGR", s("BGR")),
            ("2001-12-14", s("2001-12-14")),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve_plain(text), want, "plain scalar {text:?}");
        }
        assert!(matches!(resolve_plain(".NaN"), Float(f) if f.is_nan()));
    }

    #[test]
    fn literal_eval_cases() {
        use CfgValue::*;
        let cases: &[(&str, Option<CfgValue>)] = &[
            ("(640, 672)", Some(list(vec![Int(640), Int(672)]))),
            ("(1,)", Some(list(vec![Int(1)]))),
            ("(1)", Some(Int(1))),
            ("()", Some(list(vec![]))),
            ("[[32], [64]]", Some(list(vec![list(vec![Int(32)]), list(vec![Int(64)])]))),
            ("[0.5, 1.0, 2.0,]", Some(list(vec![Float(0.5), Float(1.0), Float(2.0)]))),
            ("1, 2", Some(list(vec![Int(1), Int(2)]))),
            ("3,", Some(list(vec![Int(3)]))),
            ("42", Some(Int(42))),
            ("-1", Some(Int(-1))),
            ("- 1", Some(Int(-1))),
            ("0x10", Some(Int(16))),
            ("0o17", Some(Int(15))),
            ("0b11", Some(Int(3))),
            ("1_000", Some(Int(1000))),
            ("1e-3", Some(Float(0.001))),
            ("1E3", Some(Float(1000.0))),
            (".5", Some(Float(0.5))),
            ("5.", Some(Float(5.0))),
            ("-2.5e+2", Some(Float(-250.0))),
            ("True", Some(Bool(true))),
            ("False", Some(Bool(false))),
            ("None", Some(Null)),
            ("'abc'", Some(s("abc"))),
            ("\"abc\"", Some(s("abc"))),
            ("'a' \"b\"", Some(s("ab"))),
            ("'it\\'s'", Some(s("it's"))),
            ("'tab\\there'", Some(s("tab\there"))),
            ("'\\x41\\u00e9\\101'", Some(s("Aé\u{41}"))),
            ("r'\\d+'", Some(s("\\d+"))),
            ("'\\d'", Some(s("\\d"))),
            ("'''tri'ple'''", Some(s("tri'ple"))),
            ("u'x'", Some(s("x"))),
            ("{'a': 1, 'b': [2]}", Some(CfgValue::Map(
                [("a".to_owned(), Int(1)), ("b".to_owned(), list(vec![Int(2)]))].into_iter().collect(),
            ))),
            ("{}", Some(CfgValue::Map(CfgMap::new()))),
            ("[1,\n 2]", Some(list(vec![Int(1), Int(2)]))),
            ("  7", Some(Int(7))),
            ("7  # comment", Some(Int(7))),
            // Not literals: yacs keeps the string.
            ("BGR", None),
            ("build_resnet_fpn_backbone", None),
            ("ROIAlignV2", None),
            ("true", None),
            ("none", None),
            ("", None),
            ("   ", None),
            ("1.0.0", None),
            ("012", None),
            ("1e", None),
            ("1_", None),
            ("1__0", None),
            ("0b2", None),
            ("-True", None),
            ("--1", None),
            ("-'a'", None),
            ("1 2", None),
            ("1\n2", None),
            ("(1, 2", None),
            ("'abc", None),
            ("'a\nb'", None),
            ("./output", None),
            ("os.system('x')", None),
            ("__import__('os')", None),
            ("1 + 2", None),
            ("#x", None),
            ("Truex", None),
            ("True.x", None),
            ("é", None),
            // Literals a tree cannot hold stay strings too.
            ("1j", None),
            ("b'abc'", None),
            ("f'abc'", None),
            ("{1, 2}", None),
            ("{1: 2}", None),
            ("99999999999999999999", None),
            ("'\\N{BULLET}'", None),
        ];
        for (text, want) in cases {
            assert_eq!(&literal_eval(text), want, "literal_eval({text:?})");
        }
    }

    #[test]
    fn literal_eval_nesting_is_capped() {
        let deep = format!("{}1{}", "[".repeat(MAX_LITERAL_DEPTH + 1), "]".repeat(MAX_LITERAL_DEPTH + 1));
        assert_eq!(literal_eval(&deep), None);
        let ok = format!("{}1{}", "[".repeat(MAX_LITERAL_DEPTH), "]".repeat(MAX_LITERAL_DEPTH));
        assert!(literal_eval(&ok).is_some());
        let huge = "[".repeat(1 << 20);
        assert_eq!(literal_eval(&huge), None);
    }

    #[test]
    fn explicit_core_tags() {
        let v = parse_yaml("a: !!str 1\nb: !!int '12'\nc: !!float 5\nd: !!bool yes\ne: !!null x\nf: ! 3\ng: !!float 1e3\n").unwrap();
        // !!str and `!` give strings, which yacs then evaluates all the same.
        assert_eq!(v.get("a"), Some(&CfgValue::Int(1)));
        assert_eq!(v.get("b"), Some(&CfgValue::Int(12)));
        assert_eq!(v.get("c"), Some(&CfgValue::Float(5.0)));
        assert_eq!(v.get("d"), Some(&CfgValue::Bool(true)));
        assert_eq!(v.get("e"), Some(&CfgValue::Null));
        assert_eq!(v.get("f"), Some(&CfgValue::Int(3)));
        assert_eq!(v.get("g"), Some(&CfgValue::Float(1000.0)));
        let err = parse_yaml("a: !!int abc\n").unwrap_err();
        assert!(matches!(err, YacsError::BadScalar { .. }), "{err}");
    }

    #[test]
    fn columns_are_one_based() {
        let err = parse_yaml("a: 1\nb: !!python/name:os.system ''\n").unwrap_err();
        let at = err.location().unwrap();
        // yaml-rust2 marks the tagged node somewhere between its tag (column
        // 4) and its end (28), depending on the event; the line must be exact.
        assert_eq!(at.line, 2, "{err}");
        assert!((4..=28).contains(&at.column), "{err}");
    }

    #[test]
    fn cfgnode_class_names() {
        assert!(is_cfgnode_class("detectron2.config.config.CfgNode"));
        assert!(is_cfgnode_class("yacs.config.CfgNode"));
        assert!(is_cfgnode_class("fvcore.common.config.CfgNode"));
        assert!(is_cfgnode_class("CfgNode"));
        assert!(!is_cfgnode_class("os.system"));
        assert!(!is_cfgnode_class("CfgNode.x"));
        assert!(!is_cfgnode_class("a..CfgNode"));
        assert!(!is_cfgnode_class("a b.CfgNode"));
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(Path::new("a/b/../c/./d.yaml")), PathBuf::from("a/c/d.yaml"));
        assert_eq!(normalize(Path::new("../x.yaml")), PathBuf::from("../x.yaml"));
    }

    #[test]
    fn display_is_python_like() {
        let v = parse_yaml("a: [1, 2.0, x, null, true]\nb: \"it's\"\n").unwrap();
        assert_eq!(v.to_string(), "{'a': [1, 2.0, 'x', None, True], 'b': 'it\\'s'}");
    }
}

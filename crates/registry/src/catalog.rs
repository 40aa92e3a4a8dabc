//! The model catalog (`models.toml`): every checkpoint we serve, with the
//! architecture and test-time settings the converter and the engine need.
//!
//! Entries inherit from named bases, key by key, the way Detectron2 configs
//! inherit from `Base-RCNN-*.yaml`. After the merge every field must be present
//! and known: a typo or a forgotten setting is an error here, not a silently
//! wrong model later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classes::ClassList;
pub use crate::spec::{
    Backbone, BoxHeadSpec, InputSpec, MaskHeadSpec, ModelSpec, Neck, Norm, RoiHeadsKind, RoiHeadsSpec, RpnSpec,
};

/// The catalog compiled into every binary (the repository's `models.toml`).
pub const EMBEDDED_CATALOG: &str = include_str!("../../../models.toml");

/// Where every zoo URL starts; a mirror replaces exactly this prefix.
pub const ZOO_BASE_URL: &str = "https://dl.fbaipublicfiles.com/detectron2";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog {origin} is not valid TOML: {source}")]
    Syntax {
        origin: String,
        source: toml::de::Error,
    },
    #[error("catalog {origin}: {message}")]
    Structure { origin: String, message: String },
    #[error("catalog {origin}, model {key}: {message}")]
    Model {
        origin: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub title: String,
    /// Name of the class list (see [`ClassList::builtin`]).
    pub classes: String,
}

/// One checkpoint of the catalog, fully resolved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The zoo config path without extension, e.g. `COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x`.
    pub key: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Display name of the zoo table.
    pub name: String,
    pub model_id: u64,
    pub config: String,
    pub url: String,
    pub file: String,
    pub md5_prefix: String,
    pub dataset: String,
    pub num_classes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_ap: Option<f64>,
    pub mask_ap: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_s_per_iter: Option<f64>,
    /// The LSJ table of MODEL_ZOO.md reports training time per image instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_s_per_im: Option<f64>,
    pub inference_s_per_im: f64,
    pub input: InputSpec,
    pub backbone: Backbone,
    pub neck: Neck,
    pub rpn: RpnSpec,
    pub roi_heads: RoiHeadsSpec,
    pub box_head: BoxHeadSpec,
    pub mask_head: MaskHeadSpec,
}

impl ModelEntry {
    /// The architecture and test-time settings, for the converter.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            num_classes: self.num_classes,
            input: self.input.clone(),
            backbone: self.backbone.clone(),
            neck: self.neck.clone(),
            rpn: self.rpn.clone(),
            roi_heads: self.roi_heads.clone(),
            box_head: self.box_head.clone(),
            mask_head: self.mask_head.clone(),
        }
    }

    /// The download URL with the zoo prefix replaced by `mirror`, if given.
    pub fn url_via(&self, mirror: Option<&str>) -> String {
        match (mirror, self.url.strip_prefix(ZOO_BASE_URL)) {
            (Some(m), Some(rest)) => format!("{}{}", m.trim_end_matches('/'), rest),
            _ => self.url.clone(),
        }
    }

    /// Path of the checkpoint inside a download cache: `<key>/<file>`.
    pub fn cache_relpath(&self) -> String {
        format!("{}/{}", self.key, self.file)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub schema: u32,
    pub zoo_base_url: String,
    pub datasets: BTreeMap<String, Dataset>,
    pub models: Vec<ModelEntry>,
    /// Where it was read from ("embedded" or a path), for messages.
    #[serde(skip)]
    pub origin: String,
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn embedded() -> Result<Self, CatalogError> {
        Self::parse(EMBEDDED_CATALOG, "models.toml (embedded)")
    }

    pub fn from_path(path: &Path) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse, resolve bases and validate a catalog.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogError> {
        let structure = |message: String| CatalogError::Structure {
            origin: origin.to_string(),
            message,
        };
        let mut root: toml::Table = text.parse().map_err(|source| CatalogError::Syntax {
            origin: origin.to_string(),
            source,
        })?;
        let schema = root
            .remove("schema")
            .and_then(|v| v.as_integer())
            .ok_or_else(|| structure("missing integer `schema`".into()))?;
        if schema != 1 {
            return Err(structure(format!(
                "schema {schema} is not supported (this build reads schema 1)"
            )));
        }
        let zoo_base_url = match root.remove("zoo_base_url") {
            Some(toml::Value::String(s)) => s,
            _ => return Err(structure("missing string `zoo_base_url`".into())),
        };
        let datasets: BTreeMap<String, Dataset> = match root.remove("datasets") {
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| structure(format!("[datasets]: {e}")))?,
            None => return Err(structure("missing [datasets]".into())),
        };
        let bases = match root.remove("bases") {
            Some(toml::Value::Table(t)) => t,
            None => toml::Table::new(),
            Some(_) => return Err(structure("`bases` must be a table".into())),
        };
        let raw_models = match root.remove("models") {
            Some(toml::Value::Array(a)) => a,
            _ => return Err(structure("missing [[models]] entries".into())),
        };
        if let Some(extra) = root.keys().next() {
            return Err(structure(format!("unknown top-level key `{extra}`")));
        }

        let mut models = Vec::with_capacity(raw_models.len());
        for (i, raw) in raw_models.into_iter().enumerate() {
            let toml::Value::Table(entry) = raw else {
                return Err(structure(format!("models[{i}] is not a table")));
            };
            let key = entry
                .get("key")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("models[{i}]"));
            let model_err = |message: String| CatalogError::Model {
                origin: origin.to_string(),
                key: key.clone(),
                message,
            };
            let resolved = resolve_bases(entry, &bases).map_err(&model_err)?;
            let model: ModelEntry = toml::Value::Table(resolved)
                .try_into()
                .map_err(|e: toml::de::Error| model_err(e.to_string()))?;
            models.push(model);
        }

        let catalog = Catalog {
            schema: schema as u32,
            zoo_base_url,
            datasets,
            models,
            origin: origin.to_string(),
        };
        catalog.validate()?;
        Ok(catalog)
    }

    /// The registry key `name` stands for: a catalog key or alias gives its
    /// key; any other name is taken as the key of a model of one's own
    /// (`zoo import`), which only the registry knows.
    pub fn registry_key(&self, name: &str) -> String {
        self.get(name).map_or_else(|| name.to_string(), |e| e.key.clone())
    }

    /// Find a model by key or alias.
    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models
            .iter()
            .find(|m| m.key == name)
            .or_else(|| self.models.iter().find(|m| m.aliases.iter().any(|a| a == name)))
    }

    /// Like [`Catalog::get`], with an error that lists close matches.
    pub fn require(&self, name: &str) -> Result<&ModelEntry, UnknownModel> {
        self.get(name).ok_or_else(|| {
            let needle = name.to_lowercase();
            let suggestions = self
                .models
                .iter()
                .filter(|m| {
                    m.key.to_lowercase().contains(&needle)
                        || m.aliases.iter().any(|a| a.contains(&needle))
                })
                .map(|m| m.key.clone())
                .take(5)
                .collect();
            UnknownModel {
                name: name.to_string(),
                origin: self.origin.clone(),
                suggestions,
            }
        })
    }

    /// The class list of a model's dataset.
    pub fn classes(&self, model: &ModelEntry) -> ClassList {
        let ds = &self.datasets[&model.dataset];
        ClassList::builtin(&ds.classes).expect("validated at parse time")
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let mut names = BTreeSet::new();
        for m in &self.models {
            let fail = |message: String| CatalogError::Model {
                origin: self.origin.clone(),
                key: m.key.clone(),
                message,
            };
            for n in std::iter::once(&m.key).chain(&m.aliases) {
                if !names.insert(n.clone()) {
                    return Err(fail(format!("name or alias `{n}` is used twice")));
                }
            }
            validate_entry(self, m).map_err(fail)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no model `{name}` in catalog {origin}{}", hint(.suggestions))]
pub struct UnknownModel {
    pub name: String,
    pub origin: String,
    pub suggestions: Vec<String>,
}

fn hint(s: &[String]) -> String {
    if s.is_empty() {
        "; `zoo list` shows every key".to_string()
    } else {
        format!("; did you mean {}?", s.join(", "))
    }
}

/// Merge `entry` over its chain of bases.
fn resolve_bases(mut entry: toml::Table, bases: &toml::Table) -> Result<toml::Table, String> {
    let mut chain = Vec::new();
    let mut next = entry.remove("base");
    while let Some(name) = next {
        let name = name
            .as_str()
            .ok_or("`base` must be a string")?
            .to_string();
        if chain.contains(&name) {
            return Err(format!("bases form a cycle through `{name}`"));
        }
        let base = bases
            .get(&name)
            .and_then(|b| b.as_table())
            .ok_or_else(|| format!("unknown base `{name}`"))?
            .clone();
        next = base.get("base").cloned();
        chain.push(name);
        let mut base = base;
        base.remove("base");
        entry = merge(base, entry);
    }
    Ok(entry)
}

/// Tables merge key by key, `over` winning; a table whose `kind` differs from
/// the base's replaces it whole.
fn merge(mut base: toml::Table, over: toml::Table) -> toml::Table {
    for (k, v) in over {
        let merged = match (base.remove(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if o.get("kind").is_none() || o.get("kind") == b.get("kind") =>
            {
                toml::Value::Table(merge(b, o))
            }
            (_, v) => v,
        };
        base.insert(k, merged);
    }
    base
}

fn validate_entry(cat: &Catalog, m: &ModelEntry) -> Result<(), String> {
    let ds = cat
        .datasets
        .get(&m.dataset)
        .ok_or_else(|| format!("unknown dataset `{}`", m.dataset))?;
    let classes = ClassList::builtin(&ds.classes)
        .ok_or_else(|| format!("dataset `{}` names unknown class list `{}`", m.dataset, ds.classes))?;
    if classes.len() != m.num_classes as usize {
        return Err(format!(
            "num_classes is {} but class list `{}` has {}",
            m.num_classes,
            ds.classes,
            classes.len()
        ));
    }
    let stem = m
        .config
        .strip_suffix(".yaml")
        .or_else(|| m.config.strip_suffix(".py"))
        .ok_or("config must end in .yaml or .py")?;
    if stem != m.key {
        return Err(format!("key must equal the config path without extension (`{stem}`)"));
    }
    let expected_url = format!("{}/{}/{}/{}", cat.zoo_base_url, m.key, m.model_id, m.file);
    if m.url != expected_url {
        return Err(format!("url should be {expected_url}"));
    }
    let suffix = m
        .file
        .strip_suffix(".pkl")
        .and_then(|s| s.rsplit('_').next())
        .ok_or("file must be a .pkl ending in _<md5 prefix>")?;
    if suffix != m.md5_prefix
        || m.md5_prefix.len() != 6
        || !m.md5_prefix.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!(
            "md5_prefix `{}` must be the 6 lowercase hex digits that end the file name",
            m.md5_prefix
        ));
    }
    m.spec().validate()
}

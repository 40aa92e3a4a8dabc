//! `manifest.json`: what a converted artifact is, written beside `model.onnx`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classes::ClassInfo;
use crate::spec::ModelSpec;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MODEL_FILE: &str = "model.onnx";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileInfo {
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// Where a converted checkpoint came from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A Detectron2 model-zoo checkpoint of the catalog.
    #[default]
    Zoo,
    /// A user's own checkpoint, imported with its config (`zoo import`).
    Custom,
    /// A catalog architecture with random weights (`zoo convert --synth`, the
    /// demo's bundled sample): the pipeline runs, the detections mean nothing.
    Sample,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zoo => "zoo",
            Self::Custom => "custom",
            Self::Sample => "sample",
        }
    }
}

/// The checkpoint an artifact was converted from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    /// Manifests of format 1 predate custom models: they are all zoo.
    #[serde(default)]
    pub kind: SourceKind,
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    /// Dimensions; symbolic ones are names ("H", "N").
    pub shape: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResizeRule {
    /// "ResizeShortestEdge" (min_size, max_size), or "Resize" (a fixed `size`).
    pub rule: String,
    pub min_size: u32,
    pub max_size: u32,
    /// "pil-bilinear".
    pub interpolation: String,
    /// `[height, width]` of rule "Resize".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[u32; 2]>,
}

/// The resize rules this build applies; a manifest naming another one is
/// refused when read, never served with the wrong input size.
pub const RESIZE_RULES: [&str; 2] = ["ResizeShortestEdge", "Resize"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    pub score: f32,
    pub nms: f32,
    pub detections_per_image: u32,
    pub mask: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// Registry key: the catalog key of a zoo model, the user's `--name` of a custom one.
    pub key: String,
    pub name: String,
    /// Detectron2 model-zoo id (zoo models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoo_id: Option<u64>,
    /// Catalog dataset key of a zoo model (`coco`, …); `custom` for a user's model.
    #[serde(default)]
    pub dataset: String,
    /// The checkpoint it was converted from.
    pub source: SourceInfo,
    /// The ONNX graph.
    pub artifact: FileInfo,
    pub opset: u32,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub resize: ResizeRule,
    pub classes: Vec<ClassInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_ap: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_ap: Option<f64>,
    pub thresholds: Thresholds,
    /// The full model description the graph was built from (format 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ModelSpec>,
    pub converter_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid manifest: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: not supported: {why}")]
    Unsupported { path: String, why: String },
}

/// The manifest format this build writes (1: zoo only; 2: + source kind, dataset, spec).
pub const MANIFEST_FORMAT: u32 = 2;

impl Manifest {
    /// A user's own model (`zoo import`), not a zoo checkpoint.
    pub fn is_custom(&self) -> bool {
        self.source.kind == SourceKind::Custom
    }
    /// Random weights: say so wherever the model is shown.
    pub fn is_sample(&self) -> bool {
        self.source.kind == SourceKind::Sample
    }
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_slice(&text, &path.display().to_string())
    }

    pub fn from_slice(bytes: &[u8], origin: &str) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            path: origin.to_string(),
            source,
        })?;
        let r = &m.resize;
        if !RESIZE_RULES.contains(&r.rule.as_str()) || (r.rule == "Resize") != r.size.is_some() {
            return Err(ManifestError::Unsupported {
                path: origin.to_string(),
                why: format!("resize rule `{}` (this build applies {RESIZE_RULES:?}; a newer d2serve wrote it?)", r.rule),
            });
        }
        Ok(m)
    }

    /// The version id of an artifact described by these manifest bytes: their
    /// sha256. The manifest names the graph's sha256, so the id covers both the
    /// graph and everything the manifest says (classes, colours, kind,
    /// thresholds, resize): any change that can change an answer is a new
    /// version, never "already stored".
    pub fn version_id(manifest_bytes: &[u8]) -> String {
        crate::hashing::sha256_bytes(manifest_bytes)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifests serialize") + "\n"
    }
}

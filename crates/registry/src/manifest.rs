//! `manifest.json`: what a converted artifact is, written beside `model.onnx`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classes::ClassInfo;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MODEL_FILE: &str = "model.onnx";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileInfo {
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
    /// "ResizeShortestEdge".
    pub rule: String,
    pub min_size: u32,
    pub max_size: u32,
    /// "pil-bilinear".
    pub interpolation: String,
}

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
    /// Catalog key.
    pub key: String,
    pub name: String,
    pub zoo_id: u64,
    /// The checkpoint it was converted from.
    pub source: FileInfo,
    /// The ONNX graph.
    pub artifact: FileInfo,
    pub opset: u32,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub resize: ResizeRule,
    pub classes: Vec<ClassInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_ap: Option<f64>,
    pub mask_ap: f64,
    pub thresholds: Thresholds,
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
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_slice(&text, &path.display().to_string())
    }

    pub fn from_slice(bytes: &[u8], origin: &str) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            path: origin.to_string(),
            source,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifests serialize") + "\n"
    }
}

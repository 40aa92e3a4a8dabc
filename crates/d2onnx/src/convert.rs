//! Checkpoint file in, artifact folder (`model.onnx` + `manifest.json`) out.

use std::io::Write;
use std::path::{Path, PathBuf};

use d2serve_registry::atomic::temp_file_in;
use d2serve_registry::manifest::{
    FileInfo, MANIFEST_FILE, MANIFEST_FORMAT, MODEL_FILE, Manifest, ResizeRule, SourceInfo, SourceKind, TensorSpec,
    Thresholds,
};
use d2serve_registry::{ClassInfo, ClassList, ModelEntry, ModelSpec};
use sha2::{Digest, Sha256};

use crate::ConvertError;
use crate::model::{GraphOptions, OPSET, build};
use crate::onnx::Dim;
use crate::pickle::read_checkpoint;

/// Everything the converter needs to know about one model, whether it comes
/// from the catalog or from a user's own config.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescription {
    /// Registry key.
    pub key: String,
    /// Display name.
    pub name: String,
    pub spec: ModelSpec,
    /// One per foreground class, in the network's class order.
    pub classes: Vec<ClassInfo>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Zoo {
        model_id: u64,
        /// Catalog dataset key.
        dataset: String,
        box_ap: Option<f64>,
        mask_ap: f64,
    },
    Custom,
}

impl ModelDescription {
    /// A catalog entry with its dataset's classes.
    pub fn zoo(entry: &ModelEntry, classes: &ClassList) -> Self {
        ModelDescription {
            key: entry.key.clone(),
            name: entry.name.clone(),
            spec: entry.spec(),
            classes: classes.classes.clone(),
            origin: Origin::Zoo {
                model_id: entry.model_id,
                dataset: entry.dataset.clone(),
                box_ap: entry.box_ap,
                mask_ap: entry.mask_ap,
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Override the test-time resize recorded in the manifest.
    pub min_size: Option<u32>,
    pub max_size: Option<u32>,
    pub debug_outputs: bool,
    /// The checkpoint has random weights (synthesized, or the bundled sample):
    /// the manifest says so (source kind `sample`, the name says it, no AP).
    pub random_weights: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Hashes what passes through to the inner writer.
struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Convert the zoo checkpoint at `pkl` (the catalog entry `entry`) into `out_dir`.
pub fn convert_checkpoint(
    entry: &ModelEntry,
    classes: &ClassList,
    pkl: &Path,
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<Manifest, ConvertError> {
    let bytes = std::fs::read(pkl).map_err(io(pkl))?;
    let ckpt = read_checkpoint(&bytes)?;
    write_artifact(&ModelDescription::zoo(entry, classes), ckpt, &source_info(pkl, &bytes), out_dir, opts)
}

/// The checkpoint file as a manifest records it.
pub fn source_info(path: &Path, bytes: &[u8]) -> FileInfo {
    FileInfo {
        file: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
    }
}

/// Build the graph of `model` from `ckpt` and write the artifact into `out_dir`.
/// The manifest is written last: a folder with a manifest holds a complete artifact.
pub fn write_artifact(
    model_desc: &ModelDescription,
    ckpt: crate::pickle::Checkpoint<'_>,
    source: &FileInfo,
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<Manifest, ConvertError> {
    if model_desc.classes.len() != model_desc.spec.num_classes as usize {
        return Err(ConvertError::Mismatch(format!(
            "{} class names for a model with {} classes",
            model_desc.classes.len(),
            model_desc.spec.num_classes
        )));
    }
    let spec = &model_desc.spec;
    let model = build(model_desc, ckpt, &GraphOptions { debug_outputs: opts.debug_outputs })?;

    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let manifest_path = out_dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&manifest_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&manifest_path)(e)),
        _ => {}
    }
    let model_path = out_dir.join(MODEL_FILE);
    let tmp = temp_file_in(out_dir, ".model.onnx.", "").map_err(io(out_dir))?;
    let mut hw = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, tmp),
        sha: Sha256::new(),
        len: 0,
    };
    model.write(&mut hw).map_err(io(&model_path))?;
    let (sha, len) = (hex::encode(hw.sha.finalize()), hw.len);
    let tmp = hw.inner.into_inner().map_err(|e| io(&model_path)(e.into_error()))?;
    tmp.as_file().sync_all().map_err(io(&model_path))?;
    tmp.persist(&model_path).map_err(|e| io(&model_path)(e.error))?;

    let shape = |dims: &[Dim]| {
        dims.iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_string(),
                Dim::Named(s) => s.clone(),
            })
            .collect()
    };
    let dtype = |e: crate::onnx::ElemType| match e {
        crate::onnx::ElemType::Float => "float32",
        crate::onnx::ElemType::Uint8 => "uint8",
        crate::onnx::ElemType::Int64 => "int64",
        crate::onnx::ElemType::Bool => "bool",
    };
    let tensor_spec = |v: &crate::onnx::ValueInfo| TensorSpec {
        name: v.name.clone(),
        dtype: dtype(v.elem).into(),
        shape: shape(&v.dims),
    };
    let (kind, zoo_id, dataset, box_ap, mask_ap) = match &model_desc.origin {
        Origin::Zoo {
            model_id,
            dataset,
            box_ap,
            mask_ap,
        } => (SourceKind::Zoo, Some(*model_id), dataset.clone(), *box_ap, Some(*mask_ap)),
        Origin::Custom => (SourceKind::Custom, None, "custom".to_string(), None, None),
    };
    // Random weights keep the architecture's identity but none of the real checkpoint's claims.
    let (kind, box_ap, mask_ap, name) = if opts.random_weights {
        (SourceKind::Sample, None, None, format!("{} (sample: random weights)", model_desc.name))
    } else {
        (kind, box_ap, mask_ap, model_desc.name.clone())
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        key: model_desc.key.clone(),
        name,
        zoo_id,
        dataset,
        source: SourceInfo {
            kind,
            file: source.file.clone(),
            sha256: source.sha256.clone(),
            size: source.size,
        },
        artifact: FileInfo {
            file: MODEL_FILE.into(),
            sha256: sha,
            size: len,
        },
        opset: OPSET as u32,
        inputs: model.inputs.iter().map(tensor_spec).collect(),
        outputs: model.outputs.iter().map(tensor_spec).collect(),
        resize: match spec.input.fixed_size {
            // --min-size/--max-size choose a shortest-edge resize instead.
            Some(size) if opts.min_size.is_none() && opts.max_size.is_none() => ResizeRule {
                rule: "Resize".into(),
                min_size: size[0].min(size[1]),
                max_size: size[0].max(size[1]),
                interpolation: "pil-bilinear".into(),
                size: Some(size),
            },
            _ => ResizeRule {
                rule: "ResizeShortestEdge".into(),
                min_size: opts.min_size.unwrap_or(spec.input.min_size_test),
                max_size: opts.max_size.unwrap_or(spec.input.max_size_test),
                interpolation: "pil-bilinear".into(),
                size: None,
            },
        },
        classes: model_desc.classes.clone(),
        box_ap,
        mask_ap,
        thresholds: Thresholds {
            score: spec.roi_heads.score_thresh_test,
            nms: spec.roi_heads.nms_thresh_test,
            detections_per_image: spec.roi_heads.detections_per_image,
            mask: spec.mask_head.threshold,
        },
        spec: Some(model_desc.spec.clone()),
        converter_version: env!("CARGO_PKG_VERSION").into(),
    };
    d2serve_registry::atomic::write(&manifest_path, manifest.to_json().as_bytes()).map_err(io(&manifest_path))?;
    Ok(manifest)
}

/// Default artifact folder of a key under `root`.
pub fn artifact_dir(root: &Path, entry: &ModelEntry) -> PathBuf {
    root.join(&entry.key)
}

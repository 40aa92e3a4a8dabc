//! Checkpoint file in, artifact folder (`model.onnx` + `manifest.json`) out.

use std::io::Write;
use std::path::{Path, PathBuf};

use d2serve_registry::atomic::temp_file_in;
use d2serve_registry::manifest::{FileInfo, MANIFEST_FILE, MODEL_FILE, Manifest, ResizeRule, TensorSpec, Thresholds};
use d2serve_registry::{ClassList, ModelEntry};
use sha2::{Digest, Sha256};

use crate::ConvertError;
use crate::model::{GraphOptions, OPSET, build};
use crate::onnx::Dim;
use crate::pickle::read_checkpoint;

#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Override the test-time resize recorded in the manifest.
    pub min_size: Option<u32>,
    pub max_size: Option<u32>,
    pub debug_outputs: bool,
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

/// Convert the checkpoint at `pkl` (the catalog entry `entry`) into `out_dir`.
/// The manifest is written last: a folder with a manifest holds a complete artifact.
pub fn convert_checkpoint(
    entry: &ModelEntry,
    classes: &ClassList,
    pkl: &Path,
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<Manifest, ConvertError> {
    let bytes = std::fs::read(pkl).map_err(io(pkl))?;
    let source = FileInfo {
        file: pkl.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
    };
    let ckpt = read_checkpoint(&bytes)?;
    let model = build(entry, ckpt, &GraphOptions { debug_outputs: opts.debug_outputs })?;

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
    let spec = |v: &crate::onnx::ValueInfo| TensorSpec {
        name: v.name.clone(),
        dtype: dtype(v.elem).into(),
        shape: shape(&v.dims),
    };
    let manifest = Manifest {
        format: 1,
        key: entry.key.clone(),
        name: entry.name.clone(),
        zoo_id: entry.model_id,
        source,
        artifact: FileInfo {
            file: MODEL_FILE.into(),
            sha256: sha,
            size: len,
        },
        opset: OPSET as u32,
        inputs: model.inputs.iter().map(spec).collect(),
        outputs: model.outputs.iter().map(spec).collect(),
        resize: ResizeRule {
            rule: "ResizeShortestEdge".into(),
            min_size: opts.min_size.unwrap_or(entry.input.min_size_test),
            max_size: opts.max_size.unwrap_or(entry.input.max_size_test),
            interpolation: "pil-bilinear".into(),
        },
        classes: classes.classes.clone(),
        box_ap: entry.box_ap,
        mask_ap: entry.mask_ap,
        thresholds: Thresholds {
            score: entry.roi_heads.score_thresh_test,
            nms: entry.roi_heads.nms_thresh_test,
            detections_per_image: entry.roi_heads.detections_per_image,
            mask: entry.mask_head.threshold,
        },
        converter_version: env!("CARGO_PKG_VERSION").into(),
    };
    d2serve_registry::atomic::write(&manifest_path, manifest.to_json().as_bytes()).map_err(io(&manifest_path))?;
    Ok(manifest)
}

/// Default artifact folder of a key under `root`.
pub fn artifact_dir(root: &Path, entry: &ModelEntry) -> PathBuf {
    root.join(&entry.key)
}

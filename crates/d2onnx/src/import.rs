//! A user's own fine-tuned checkpoint in, the same artifact as `zoo convert`
//! out: checkpoint (`.pth` or `.pkl`) + config + class names, each checked
//! against the others before a graph is built.
//!
//! Where things are looked for when not given (docs/custom-models.md §3):
//! - the config beside the checkpoint: `config.yaml` (Detectron2's
//!   `cfg.dump()` in OUTPUT_DIR), `model_config.yaml` / `model_config.json`
//!   (Supervisely's training app);
//! - the class names beside the checkpoint (`model_classes.json`,
//!   `classes.json`, `classes.txt`), else in Supervisely's run layout,
//!   `<run>/info/model_classes.json` for weights in `<run>/checkpoints/`.

use std::path::{Path, PathBuf};

use d2serve_registry::manifest::Manifest;
use d2serve_registry::spec::{Backbone, RoiHeadsKind};
use d2serve_registry::{Catalog, ClassInfo, ModelSpec};

use crate::config::{ConfigError, find_config, read_config};
use crate::convert::{ConvertOptions, ModelDescription, Origin, source_info, write_artifact};
use crate::pickle::Checkpoint;
use crate::{ConvertError, read_any_checkpoint};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Usage(String),
    /// The message names the file once (most config errors already do).
    #[error("{}", with_path(path, error))]
    Config { path: String, error: ConfigError },
    #[error("reading the class names: {0}")]
    Classes(String),
    #[error("the weights do not fit the config: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

fn with_path(path: &str, error: &ConfigError) -> String {
    let msg = error.to_string();
    if msg.contains(path) { msg } else { format!("{path}: {msg}") }
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub checkpoint: PathBuf,
    /// [default: found beside the checkpoint]
    pub config: Option<PathBuf>,
    /// [default: found beside the checkpoint or in Supervisely's layout]
    pub classes: Option<PathBuf>,
    /// Registry key and display name of the imported model.
    pub name: String,
}

#[derive(Debug)]
pub struct Imported {
    pub manifest: Manifest,
    pub config: PathBuf,
    /// None: no class file was found, names are `class_0…`.
    pub classes: Option<PathBuf>,
    /// Things the user should know (defaults taken, keys ignored, …).
    pub notes: Vec<String>,
}

/// Names a registry key may have: what S3 keys, folder names and URLs all
/// carry without escaping.
pub fn check_model_name(name: &str, catalog: &Catalog) -> Result<(), ImportError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !name.starts_with(['/', '.', '-'])
        && !name.ends_with('/')
        && !name.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    if !ok {
        return Err(ImportError::Usage(format!(
            "--name `{name}`: use letters, digits, `-`, `_`, `.` and `/` between parts (at most 128), e.g. `lemons-v2` or `acme/lemons`"
        )));
    }
    if let Some(m) = catalog.get(name) {
        return Err(ImportError::Usage(format!(
            "--name `{name}` is the catalog's {} ({}); give your model a name of its own",
            m.name, m.key
        )));
    }
    Ok(())
}

/// Class files looked for beside the checkpoint, then in Supervisely's layout.
pub fn find_classes(checkpoint: &Path) -> Option<PathBuf> {
    let dir = crate::config::checkpoint_dir(checkpoint);
    let beside = ["model_classes.json", "classes.json", "classes.txt"].into_iter().map(|n| dir.join(n));
    let supervisely = dir.parent().map(|run| run.join("info").join("model_classes.json"));
    beside.chain(supervisely).find(|p| p.is_file())
}

/// Import one checkpoint into `out_dir` (`model.onnx` + `manifest.json`).
pub fn import_checkpoint(req: &ImportRequest, catalog: &Catalog, out_dir: &Path, opts: &ConvertOptions) -> Result<Imported, ImportError> {
    check_model_name(&req.name, catalog)?;
    // The weights first: a config or an image given in their place is said as such,
    // before any search for a config beside it.
    let bytes = std::fs::read(&req.checkpoint).map_err(|source| ConvertError::Io { path: req.checkpoint.display().to_string(), source })?;
    // Asked only when no reader takes the file: a protocol-0 pickle is text too.
    let mut ckpt = read_any_checkpoint(&bytes).map_err(|e| match not_a_checkpoint(&bytes) {
        Some(what) => ImportError::Usage(format!(
            "{} is {what}, not a checkpoint: the first argument is the weights (model_final.pth, a .pkl){}",
            req.checkpoint.display(),
            if what == "an image" { "" } else { "; a config goes to --config, class names to --classes" }
        )),
        None => ConvertError::from(e).into(),
    })?;
    let config_path = match &req.config {
        Some(p) => p.clone(),
        None => find_config(&req.checkpoint).ok_or_else(|| {
            ImportError::Usage(format!(
                "no config beside {}: pass --config FILE (Detectron2's OUTPUT_DIR/config.yaml, written by cfg.dump(), or Supervisely's model_config.yaml/json); \
                 a fine-tuned model's architecture, classes count and test settings are in its config, not its weights",
                req.checkpoint.display()
            ))
        })?,
    };
    let read = read_config(&config_path, catalog).map_err(|error| ImportError::Config { path: config_path.display().to_string(), error })?;
    let spec = read.spec;
    let mut notes = read.notes;

    let classes_path = req.classes.clone().or_else(|| find_classes(&req.checkpoint));
    let classes: Vec<ClassInfo> = match &classes_path {
        Some(p) => d2serve_registry::classes::read_class_file(p).map_err(ImportError::Classes)?,
        None => {
            notes.push(format!(
                "no class names found (pass --classes FILE): the {} classes are called class_0…class_{}",
                spec.num_classes,
                spec.num_classes.saturating_sub(1)
            ));
            d2serve_registry::classes::placeholder_classes(spec.num_classes as usize)
        }
    };
    if classes.len() != spec.num_classes as usize {
        return Err(ImportError::Mismatch(format!(
            "{} lists {} classes, but the config has MODEL.ROI_HEADS.NUM_CLASSES = {}",
            classes_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            classes.len(),
            spec.num_classes
        )));
    }

    drop_non_weights(&mut ckpt, &spec, &mut notes);
    check_weights(&spec, &ckpt)?;

    let desc = ModelDescription { key: req.name.clone(), name: req.name.clone(), spec, classes, origin: Origin::Custom };
    let manifest = write_artifact(&desc, ckpt, &source_info(&req.checkpoint, &bytes), out_dir, opts)?;
    Ok(Imported { manifest, config: config_path, classes: classes_path, notes })
}

/// What a file that no checkpoint reader takes plainly is instead (a config,
/// a class list, an image): said by name instead of as a pickle error.
fn not_a_checkpoint(bytes: &[u8]) -> Option<&'static str> {
    if bytes.is_empty() {
        return Some("empty");
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
        return None;
    }
    if bytes.starts_with(b"\x89PNG") || bytes.starts_with(b"\xff\xd8\xff") || bytes.starts_with(b"GIF8") || bytes.starts_with(b"BM") {
        return Some("an image");
    }
    let text = std::str::from_utf8(&bytes[..bytes.len().min(4096)]).ok().or_else(|| {
        // A multi-byte character cut at the 4096th byte is still text.
        std::str::from_utf8(&bytes[..bytes.len().min(4093)]).ok()
    })?;
    let start = text.trim_start();
    Some(if start.starts_with('{') || start.starts_with('[') {
        "a JSON file"
    } else if start.contains(':') {
        "a YAML file"
    } else {
        "a text file"
    })
}

/// Buffers that old Detectron2 versions saved with the weights but that are
/// not weights: pixel mean/std (persistent up to v0.3; the config's values
/// win since v0.4, as here) and the anchor generator's cell anchors
/// (recomputed from the config's sizes and ratios).
fn drop_non_weights(ckpt: &mut Checkpoint<'_>, spec: &ModelSpec, notes: &mut Vec<String>) {
    let mut dropped = Vec::new();
    ckpt.tensors.retain(|(name, a)| {
        let keep = !(name == "pixel_mean" || name == "pixel_std" || name.starts_with("proposal_generator.anchor_generator.cell_anchors."));
        if !keep {
            if name.starts_with("pixel_") {
                let v = a.to_f32();
                let want = if name == "pixel_mean" { spec.input.pixel_mean } else { spec.input.pixel_std };
                if v.len() == 3 && v.iter().zip(want).any(|(a, b)| (a - b).abs() > 1e-3) {
                    notes.push(format!("the checkpoint's {name} {v:?} differs from the config's {want:?}; the config's is used, as Detectron2 ≥ 0.4 does"));
                }
            }
            dropped.push(name.clone());
        }
        keep
    });
    if !dropped.is_empty() {
        notes.push(format!("ignored {} non-weight buffers saved by an old Detectron2 ({})", dropped.len(), dropped.join(", ")));
    }
}

/// Everything the config says that the weights also reveal, checked before
/// the graph is built: Detectron2 would skip a mismatched tensor with a
/// warning and serve a model that detects nothing; this refuses instead.
pub fn check_weights(spec: &ModelSpec, ckpt: &Checkpoint<'_>) -> Result<(), ImportError> {
    let k = spec.num_classes as usize;
    let rows = |name: &str| ckpt.get(name).and_then(|a| a.shape.first().copied());
    let predictors: Vec<String> = if spec.roi_heads.kind == RoiHeadsKind::Cascade {
        (0..spec.roi_heads.bbox_reg_weights.len()).map(|i| format!("roi_heads.box_predictor.{i}")).collect()
    } else {
        vec!["roi_heads.box_predictor".to_string()]
    };
    for p in &predictors {
        let cls = format!("{p}.cls_score.weight");
        let Some(n) = rows(&cls) else {
            let arch = match spec.roi_heads.kind {
                RoiHeadsKind::Cascade => "a cascade model (MODEL.ROI_HEADS.NAME = CascadeROIHeads)",
                _ => "a single-stage box head",
            };
            return Err(ImportError::Mismatch(format!(
                "the checkpoint has no `{cls}`, which {arch} needs: is this the config the model was trained with?"
            )));
        };
        if n != k + 1 {
            return Err(ImportError::Mismatch(format!(
                "`{cls}` scores {} classes (+ background), but MODEL.ROI_HEADS.NUM_CLASSES is {k}: set NUM_CLASSES to {} (and give that many class names)",
                n.saturating_sub(1),
                n.saturating_sub(1)
            )));
        }
        let bbox = format!("{p}.bbox_pred.weight");
        if let Some(d) = rows(&bbox) {
            let want = if spec.roi_heads.cls_agnostic_bbox_reg { 4 } else { 4 * k };
            if d != want {
                let fix = if d == 4 { "true" } else { "false" };
                return Err(ImportError::Mismatch(format!(
                    "`{bbox}` has {d} box deltas, but the config implies {want} (MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = {}): set it to {fix}",
                    spec.roi_heads.cls_agnostic_bbox_reg
                )));
            }
        }
    }
    if let Some(m) = rows("roi_heads.mask_head.predictor.weight") {
        let want = if spec.mask_head.cls_agnostic { 1 } else { k };
        if m != want {
            return Err(ImportError::Mismatch(format!(
                "`roi_heads.mask_head.predictor.weight` predicts {m} masks per box, but the config implies {want} (MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = {}, NUM_CLASSES = {k})",
                spec.mask_head.cls_agnostic
            )));
        }
    } else {
        return Err(ImportError::Mismatch("the checkpoint has no mask predictor (`roi_heads.mask_head.predictor.weight`): d2serve serves Mask R-CNN models".into()));
    }
    if let Some(a) = rows("proposal_generator.rpn_head.objectness_logits.weight") {
        let per_level = spec.rpn.anchor_sizes.first().map_or(0, Vec::len);
        let want = per_level * spec.rpn.aspect_ratios.len();
        if a != want {
            return Err(ImportError::Mismatch(format!(
                "the RPN scores {a} anchors per position, but the config's MODEL.ANCHOR_GENERATOR gives {want} ({per_level} sizes per level x {} aspect ratios)",
                spec.rpn.aspect_ratios.len()
            )));
        }
    }
    if let Backbone::Resnet { deform_on_per_stage, .. } = &spec.backbone {
        for (i, &on) in deform_on_per_stage.iter().enumerate() {
            let stage = format!("backbone.bottom_up.res{}.", i + 2);
            // C4 models keep res2..res4 under `backbone.` and res5 in the ROI heads.
            let c4 = format!("backbone.res{}.", i + 2);
            let c4_head = format!("roi_heads.res{}.", i + 2);
            let has_offsets = ckpt.tensors.iter().any(|(n, _)| {
                (n.starts_with(&stage) || n.starts_with(&c4) || n.starts_with(&c4_head)) && n.contains("conv2_offset")
            });
            if has_offsets != on {
                return Err(ImportError::Mismatch(format!(
                    "res{} {} deformable-conv offsets in the checkpoint, but MODEL.RESNETS.DEFORM_ON_PER_STAGE[{i}] is {on}",
                    i + 2,
                    if has_offsets { "has" } else { "has no" }
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::not_a_checkpoint;

    #[test]
    fn files_given_as_the_checkpoint_are_named_by_what_they_are() {
        assert_eq!(not_a_checkpoint(b"MODEL:\n  WEIGHTS: x\n"), Some("a YAML file"));
        assert_eq!(not_a_checkpoint(b"  {\"classes\": []}"), Some("a JSON file"));
        assert_eq!(not_a_checkpoint(b"[\"lemon\"]"), Some("a JSON file"));
        assert_eq!(not_a_checkpoint(b"lemon\nlime\n"), Some("a text file"));
        assert_eq!(not_a_checkpoint(b"\x89PNG\r\n\x1a\n...."), Some("an image"));
        assert_eq!(not_a_checkpoint(b"\xff\xd8\xff\xe0"), Some("an image"));
        assert_eq!(not_a_checkpoint(b""), Some("empty"));
        // Zip and binary pickle openings are the readers' to judge.
        assert_eq!(not_a_checkpoint(b"PK\x03\x04rest"), None);
        assert_eq!(not_a_checkpoint(b"\x80\x02}q\x00"), None);
    }
}

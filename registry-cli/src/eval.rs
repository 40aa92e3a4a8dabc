//! `zoo eval`: COCO box and mask AP of a converted or imported model on a
//! COCO-format dataset, computed as pycocotools computes it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use d2serve_engine::LoadedModel;
use d2serve_engine::cli::RuntimeArgs;
use d2serve_engine::coco::predict::{category_map, predict_dataset};
use d2serve_engine::coco::{Dataset, IouType, STAT_NAMES, Summary, evaluate, eval::summary_lines};
use d2serve_registry::manifest::MODEL_FILE;
use serde_json::{Value, json};

use crate::Global;

pub const AFTER_HELP: &str = "\
Examples:
  zoo eval shapes --images samples/shapes/val --annotations samples/shapes/val/instances.json
  zoo eval lemons --images data/val --annotations data/val.json --detections out/dets.json --json

Every detection the model keeps is scored (its own SCORE_THRESH_TEST, no --conf),
against every image of the annotations file, as Detectron2's COCOEvaluator does.
Model classes map to the dataset's categories by name, else by order when the
counts match. --json prints box_ap and mask_ap on Detectron2's 0-100 scale.";

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A converted or imported model (catalog key, alias or imported name).
    pub model: String,
    /// Converted folder [default: ARTIFACTS/KEY].
    #[arg(long, value_name = "DIR")]
    pub artifact: Option<PathBuf>,
    /// Folder holding the images the annotations name (file_name is relative to it).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// COCO instances JSON (images, annotations with masks, categories).
    #[arg(long, value_name = "FILE")]
    pub annotations: PathBuf,
    /// Also write the COCO results that were scored (RLE masks) to this file.
    #[arg(long, value_name = "FILE")]
    pub detections: Option<PathBuf>,
    /// Score this COCO results file instead of running the model (pycocotools' loadRes input).
    #[arg(long, value_name = "FILE", conflicts_with = "detections")]
    pub results: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

fn scaled(s: &Summary) -> Value {
    let mut m = serde_json::Map::new();
    for (name, v) in STAT_NAMES.iter().zip(s.stats).take(6) {
        m.insert((*name).into(), if v < 0.0 { Value::Null } else { json!(v * 100.0) });
    }
    Value::Object(m)
}

pub fn run(g: &Global, args: &EvalArgs) -> Result<()> {
    let bytes = std::fs::read(&args.annotations).with_context(|| format!("reading {}", args.annotations.display()))?;
    let gt = Dataset::from_slice(&bytes).with_context(|| format!("{} (pass a COCO instances JSON)", args.annotations.display()))?;
    if gt.images.is_empty() {
        bail!("{} lists no images", args.annotations.display());
    }
    let started = std::time::Instant::now();
    let (dets, model_name) = match &args.results {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let dets = d2serve_engine::coco::read_results(&bytes, &gt).with_context(|| format!("{} (pass a COCO results JSON list)", path.display()))?;
            (dets, None)
        }
        None => {
            let catalog = g.catalog()?;
            let key = g.model_key(&catalog, &args.model, args.artifact.as_deref())?;
            let dir = args.artifact.clone().unwrap_or_else(|| g.artifacts.join(&key));
            if !dir.join(MODEL_FILE).is_file() {
                bail!("{} has no converted model: `zoo import CHECKPOINT --name {key}` or `zoo convert {key}` makes one, or pass --artifact DIR", dir.display());
            }
            let model = LoadedModel::open(&dir, &args.runtime.session_options())?;
            let map = category_map(model.class_names(), &gt)?;
            let unmapped: Vec<&str> = model.class_names().zip(&map.ids).filter(|(_, id)| id.is_none()).map(|(n, _)| n).collect();
            if !unmapped.is_empty() {
                eprintln!("note: classes not in the dataset, their detections not scored: {}", unmapped.join(", "));
            }
            if map.by == "order" {
                eprintln!("note: no class name matches a category name; class k is scored as the k-th category by id");
            }
            let bar = indicatif::ProgressBar::with_draw_target(Some(gt.images.len() as u64), indicatif::ProgressDrawTarget::stderr());
            bar.set_style(indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images, eta {eta}").expect("valid template").progress_chars("=> "));
            bar.set_prefix("eval");
            let (dets, results) = predict_dataset(&model, &gt, &args.images, &map, |done, _| bar.set_position(done as u64))?;
            bar.finish_and_clear();
            if let Some(path) = &args.detections {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                d2serve_registry::atomic::write(path, &serde_json::to_vec(&results)?).with_context(|| format!("writing {}", path.display()))?;
            }
            (dets, Some(model.manifest.key.clone()))
        }
    };
    let predict_secs = started.elapsed().as_secs_f64();
    let has_masks = dets.iter().all(|d| d.mask.is_some()) && gt.annotations.iter().all(|a| a.mask.is_some());
    let boxes = evaluate(&gt, &dets, IouType::Bbox)?;
    let masks = if has_masks { Some(evaluate(&gt, &dets, IouType::Segm)?) } else { None };
    let per_class = |s: &Summary| -> Value {
        let mut m = serde_json::Map::new();
        for (id, ap) in &s.per_category {
            let name = gt.categories.iter().find(|c| c.id == *id).map_or_else(|| id.to_string(), |c| c.name.clone());
            m.insert(name, if *ap < 0.0 { Value::Null } else { json!(ap * 100.0) });
        }
        Value::Object(m)
    };
    if args.json {
        let out = json!({
            "model": model_name,
            "annotations": args.annotations.display().to_string(),
            "images": gt.images.len(),
            "ground_truth": gt.annotations.len(),
            "detections": dets.len(),
            "detections_file": args.detections.as_ref().map(|p| p.display().to_string()),
            "box_ap": scaled(&boxes),
            "mask_ap": masks.as_ref().map(scaled),
            "box_stats": boxes.stats,
            "mask_stats": masks.as_ref().map(|m| m.stats),
            "box_ap_per_class": per_class(&boxes),
            "mask_ap_per_class": masks.as_ref().map(per_class),
            "seconds": predict_secs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{}: {} images, {} ground-truth objects, {} detections ({:.1} s)",
        args.annotations.display(),
        gt.images.len(),
        gt.annotations.len(),
        dets.len(),
        predict_secs
    );
    for (label, s) in [("bbox", Some(&boxes)), ("segm", masks.as_ref())] {
        let Some(s) = s else {
            println!("\nsegm: not scored (the annotations or the results lack masks)");
            continue;
        };
        println!("\nEvaluate annotation type *{label}*");
        for line in summary_lines(s) {
            println!("{line}");
        }
        let row: Vec<String> = s.stats.iter().take(6).map(|v| if *v < 0.0 { "nan".into() } else { format!("{:.3}", v * 100.0) }).collect();
        println!("{label} AP (0-100):  {}", STAT_NAMES.iter().take(6).zip(&row).map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join("  "));
    }
    if let Some(p) = &args.detections {
        println!("\ndetections: {}", p.display());
    }
    Ok(())
}

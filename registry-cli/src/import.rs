//! `zoo import`: a user's own fine-tuned checkpoint into an artifact (and,
//! with --to, into a registry), through d2onnx's import path.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use d2serve_d2onnx::ConvertOptions;
use d2serve_d2onnx::import::{ImportRequest, import_checkpoint};
use d2serve_registry::manifest::{MANIFEST_FILE, MODEL_FILE};
use serde_json::json;

use crate::Global;

pub const AFTER_HELP: &str = "\
Examples:
  zoo import output/model_final.pth --name lemons            config.yaml and classes found beside it
  zoo import run/checkpoints/model_final.pth --name lemons --to file://./registry
                                                             a Supervisely training folder: model_config.yaml
                                                             beside the weights, run/info/model_classes.json
  zoo import model.pth --config config.yaml --classes classes.txt --name acme/parts --out out/parts

The config is Detectron2's cfg.dump() YAML (OUTPUT_DIR/config.yaml), a zoo-style YAML
with _BASE_, or Supervisely's model_config.yaml / model_config.json. Class names come
from a Supervisely model_classes.json (colours kept), a JSON list or one name per line.";

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The checkpoint: a torch.save .pth (training checkpoint or state dict) or a .pkl.
    pub checkpoint: PathBuf,
    /// The model's config [default: config.yaml, model_config.yaml or model_config.json beside the checkpoint].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Class names [default: model_classes.json, classes.json or classes.txt beside the checkpoint, else ../info/model_classes.json].
    #[arg(long, value_name = "FILE")]
    pub classes: Option<PathBuf>,
    /// Registry key and display name, e.g. `lemons` or `acme/lemons-v2`.
    #[arg(long)]
    pub name: String,
    /// Output folder [default: ARTIFACTS/NAME].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also publish to this registry (file://PATH, a path, or s3://BUCKET[/PREFIX]).
    #[arg(long, value_name = "REGISTRY")]
    pub to: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, args: &ImportArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let out = args.out.clone().unwrap_or_else(|| g.artifacts.join(&args.name));
    let req = ImportRequest {
        checkpoint: args.checkpoint.clone(),
        config: args.config.clone(),
        classes: args.classes.clone(),
        name: args.name.clone(),
    };
    let started = std::time::Instant::now();
    let imported = import_checkpoint(&req, &catalog, &out, &ConvertOptions::default())
        .with_context(|| format!("importing {}", args.checkpoint.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let published = match &args.to {
        Some(to) => Some(g.registry(to).await?.publish(&args.name, &out).await?),
        None => None,
    };
    let m = &imported.manifest;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "key": m.key, "out": out, "config": imported.config, "classes_file": imported.classes,
                "num_classes": m.classes.len(), "notes": imported.notes, "manifest": m,
                "published": published, "seconds": secs,
            }))?
        );
        return Ok(());
    }
    for note in &imported.notes {
        eprintln!("zoo: note: {note}");
    }
    let names: Vec<&str> = m.classes.iter().map(|c| c.name.as_str()).collect();
    println!(
        "{}: imported {} with {} (config) and {} classes ({}{}) in {secs:.2} s",
        m.key,
        args.checkpoint.display(),
        imported.config.display(),
        names.len(),
        names.iter().take(8).copied().collect::<Vec<_>>().join(", "),
        if names.len() > 8 { ", …" } else { "" }
    );
    println!(
        "  wrote {} ({} bytes, sha256 {}) and {}",
        out.join(MODEL_FILE).display(),
        m.artifact.size,
        m.artifact.sha256,
        out.join(MANIFEST_FILE).display()
    );
    if let Some(p) = published {
        let stored = if p.uploaded { "" } else { " (this exact version was already stored)" };
        println!("  published: version {} is now current for `{}`{stored}", p.artifact, p.key);
    }
    Ok(())
}

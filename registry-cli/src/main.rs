//! `zoo`: the d2serve model-registry CLI. Argument parsing, progress and
//! output only; the work happens in the `d2serve-registry` library.

mod import;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use d2serve_d2onnx::{ConvertOptions, convert_checkpoint};
use d2serve_engine::pipeline::Settings;
use d2serve_engine::cli::RuntimeArgs;
use d2serve_engine::runtime::SessionOptions;
use d2serve_engine::{LoadedModel, RgbImage, supervisely};
use d2serve_registry::atomic::temp_file_in;
use d2serve_registry::download::{self, PullOptions, PullStatus, SharedLock, VerifyStatus};
use d2serve_registry::manifest::MODEL_FILE;
use d2serve_registry::{Catalog, ModelEntry, Registry, S3Config, open_store};
use futures_util::StreamExt;
use serde_json::json;

const AFTER_HELP: &str = "\
Examples:
  zoo list                                   the 21 models with their APs and local state
  zoo show r50-fpn-3x --json                 everything the catalog knows about one model
  zoo pull COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x
  zoo pull --all --mirror https://mirror.example.com/detectron2
  zoo pull r50-fpn-3x --convert               download, verify, then convert
  zoo verify                                 re-hash the cache against models.lock
  zoo convert r50-fpn-3x                     the cached checkpoint -> artifacts/<key>/model.onnx
  zoo import output/model_final.pth --name lemons   your own fine-tuned model -> artifacts/lemons
  zoo publish r50-fpn-3x --to s3://my-bucket/registry
  zoo registry ls --registry file://./registry

Exit codes: 0 success, 1 bad input or network failure, 2 a bug in zoo.";

#[derive(Parser, Debug)]
#[command(name = "zoo", version, about = "Detectron2 Mask R-CNN model zoo: catalog, downloads and the d2serve registry", after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Read this catalog instead of the built-in models.toml (same format).
    #[arg(long, env = "ZOO_CATALOG", global = true, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Checkpoint download cache [default: the XDG cache dir, e.g. ~/.cache/d2serve/checkpoints].
    #[arg(long, env = "ZOO_CACHE", global = true, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Lock file pinning each checkpoint's size and sha256 [default: CACHE/models.lock].
    #[arg(long, env = "ZOO_LOCK", global = true, value_name = "FILE")]
    lock: Option<PathBuf>,
    /// Where `zoo convert` writes artifacts, one folder per model key.
    #[arg(long, env = "ZOO_ARTIFACTS", global = true, value_name = "DIR", default_value = "artifacts")]
    artifacts: PathBuf,
    #[command(flatten)]
    s3: S3Args,
}

#[derive(Args, Debug)]
struct S3Args {
    /// S3 endpoint URL, for S3-compatible servers (AWS_ENDPOINT_URL works too).
    #[arg(long, env = "ZOO_S3_ENDPOINT", global = true, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 region [default: from the AWS environment, else us-east-1].
    #[arg(long, env = "ZOO_S3_REGION", global = true, value_name = "REGION")]
    s3_region: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key), for MinIO-like servers.
    #[arg(long, env = "ZOO_S3_PATH_STYLE", global = true)]
    s3_path_style: bool,
}

impl S3Args {
    fn config(&self) -> S3Config {
        S3Config {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            force_path_style: self.s3_path_style,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the catalog's models with their APs and local state.
    #[command(after_help = "Examples:\n  zoo list\n  zoo list --json | jq '.[] | select(.mask_ap > 40) | .key'\n\n--json prints an array of objects with: key, name, aliases, model_id, dataset,\nnum_classes, box_ap (null when the zoo gives none), mask_ap, inference_s_per_im,\ncached, converted, published.")]
    List {
        #[arg(long)]
        json: bool,
        /// Registry whose index decides the `published` column.
        #[arg(long, env = "ZOO_REGISTRY", default_value = "registry")]
        registry: String,
    },
    /// Show everything the catalog records about one model.
    #[command(after_help = "Examples:\n  zoo show r50-fpn-3x\n  zoo show new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ --json")]
    Show {
        /// Catalog key or alias.
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Download checkpoints into the cache: resumable, retried, verified.
    #[command(after_help = "Examples:\n  zoo pull r50-fpn-3x\n  zoo pull --all --jobs 4\n  ZOO_MIRROR=http://127.0.0.1:8000 zoo pull cascade-r50-fpn-3x")]
    Pull(PullArgs),
    /// Re-hash cached checkpoints against their zoo names and models.lock.
    #[command(after_help = "Examples:\n  zoo verify\n  zoo verify r50-fpn-3x --json")]
    Verify {
        /// Models to check [default: every cached one].
        models: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Convert a checkpoint into one ONNX graph plus manifest (ARTIFACTS/KEY by default).
    #[command(after_help = "Examples:\n  zoo convert r50-fpn-3x                       the cached checkpoint of a catalog model\n  zoo convert model.pkl --as r50-fpn-3x --out out/r50 --min-size 320 --max-size 512\n  zoo convert r50-fpn-3x --debug-outputs        also output RPN proposals and features, for parity work\n  zoo convert --all --synth --out /tmp/all       every catalog entry from full-size random weights, with a time/memory table")]
    Convert(ConvertArgs),
    /// Import your own fine-tuned checkpoint (.pth + config + class names) as a model of its own.
    #[command(after_help = import::AFTER_HELP)]
    Import(import::ImportArgs),
    /// Write a zoo-format checkpoint with the real names and shapes and random weights.
    #[command(after_help = "Examples:\n  zoo synth r50-fpn-3x --out /tmp/r50.pkl\n  zoo synth r50-fpn-3x --out r50.pkl --seed 7 && zoo convert r50.pkl --as r50-fpn-3x")]
    Synth {
        /// Catalog key or alias.
        model: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run a converted model on images locally: Supervisely JSON and an overlay picture.
    #[command(after_help = "Examples:\n  zoo predict photo.jpg --model r50-fpn-3x --overlay out.png --json out.json\n  zoo predict a.jpg b.png --model r50-fpn-3x --overlay overlays/   (a folder for several images)")]
    Predict(PredictArgs),
    /// Draw a Supervisely annotation (e.g. a serve reply) over its image.
    #[command(after_help = "Examples:\n  zoo draw photo.jpg reply.json --out overlay.png --model r50-fpn-3x")]
    Draw {
        image: PathBuf,
        /// Annotation JSON, or a serve reply holding one under "annotation".
        annotation: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Catalog model whose class colours to use.
        #[arg(long, default_value = "r50-fpn-3x")]
        model: String,
    },
    /// Measure cold start and warm latency of a converted model (see docs/BENCHMARKS.md).
    #[command(after_help = "Examples:\n  zoo bench --model r50-fpn-3x --image photo.png --runs 10\n  zoo bench --model r50-fpn-3x --artifact out/r50 --threads 2 --json")]
    Bench(BenchArgs),
    /// Publish a converted artifact to a registry (folder or S3) and make it current.
    #[command(after_help = "Examples:\n  zoo publish r50-fpn-3x --to file://./registry\n  zoo publish r50-fpn-3x --artifact out/r50 --to s3://models/registry --s3-endpoint http://127.0.0.1:9000 --s3-path-style")]
    Publish {
        /// Catalog key or alias of the model.
        model: String,
        /// Registry: file://PATH, a path, or s3://BUCKET[/PREFIX].
        #[arg(long, env = "ZOO_REGISTRY")]
        to: String,
        /// A converted folder (model.onnx + manifest.json) [default: ARTIFACTS/KEY].
        #[arg(long, value_name = "DIR")]
        artifact: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Inspect and maintain a registry.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
}

#[derive(Args, Debug)]
struct PullArgs {
    /// Catalog keys or aliases.
    models: Vec<String>,
    /// Pull every model of the catalog.
    #[arg(long, conflicts_with = "models")]
    all: bool,
    /// Replaces https://dl.fbaipublicfiles.com/detectron2 at the start of every URL.
    #[arg(long, env = "ZOO_MIRROR", value_name = "BASE")]
    mirror: Option<String>,
    /// Convert each pulled checkpoint into ARTIFACTS/KEY afterwards (like `zoo convert KEY`).
    #[arg(long)]
    convert: bool,
    /// Downloads running at once with --all.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    jobs: u32,
    /// Retries per file on timeouts, resets and 5xx.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Seconds without a byte before a connection counts as dropped.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// First retry delay in milliseconds (doubles each retry).
    #[arg(long, default_value_t = 1000, value_name = "MS", hide = true, env = "ZOO_BACKOFF_MS")]
    backoff_ms: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// A catalog key or alias (its cached checkpoint), or a .pkl file with --as.
    #[arg(conflicts_with = "all")]
    source: Option<String>,
    /// Convert every catalog entry into ARTIFACTS/KEY (or --out DIR/KEY), with a
    /// table of time, peak memory and artifact size per model.
    #[arg(long, conflicts_with = "as_key")]
    all: bool,
    /// Convert a full-size synthesized checkpoint (real names and shapes, random
    /// weights; see `zoo synth`) instead of the downloaded one: for benchmarks
    /// and offline checks.
    #[arg(long, conflicts_with = "as_key")]
    synth: bool,
    /// The catalog entry a .pkl file is a checkpoint of.
    #[arg(long = "as", value_name = "KEY")]
    as_key: Option<String>,
    /// Output folder [default: ARTIFACTS/KEY].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Test-time shortest-edge size recorded in the manifest [default: the catalog's].
    #[arg(long, value_name = "N")]
    min_size: Option<u32>,
    /// Test-time longest-edge cap recorded in the manifest [default: the catalog's].
    #[arg(long, value_name = "N")]
    max_size: Option<u32>,
    /// Also output the RPN proposals and their objectness logits.
    #[arg(long)]
    debug_outputs: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PredictArgs {
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Catalog key or alias.
    #[arg(long, default_value = "r50-fpn-3x")]
    model: String,
    /// Converted folder [default: ARTIFACTS/KEY].
    #[arg(long, value_name = "DIR")]
    artifact: Option<PathBuf>,
    /// Overlay PNG (a folder when several images are given).
    #[arg(long, value_name = "PATH")]
    overlay: Option<PathBuf>,
    /// Supervisely annotation JSON (a folder when several images are given).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Keep detections with score >= this.
    #[arg(long, default_value_t = 0.5)]
    conf: f64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[arg(long, default_value = "r50-fpn-3x")]
    model: String,
    /// Converted folder [default: ARTIFACTS/KEY; a full-size synthesized checkpoint is converted when missing].
    #[arg(long, value_name = "DIR")]
    artifact: Option<PathBuf>,
    /// Image to run on [default: a built-in 800x1067 test pattern].
    #[arg(long)]
    image: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    runs: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Disable ONNX Runtime graph optimizations (to measure their effect).
    #[arg(long)]
    no_optimize: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum RegistryCommand {
    /// List the registry's models and artifacts.
    #[command(after_help = "Examples:\n  zoo registry ls\n  zoo registry ls --registry s3://models/registry --json")]
    Ls {
        #[arg(long, env = "ZOO_REGISTRY", default_value = "registry")]
        registry: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove artifacts that no index entry names (current or previous).
    #[command(after_help = "Examples:\n  zoo registry gc --dry-run\n  zoo registry gc --registry s3://models/registry --min-age 0")]
    Gc {
        #[arg(long, env = "ZOO_REGISTRY", default_value = "registry")]
        registry: String,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Spare artifacts younger than this many seconds (uploads in flight).
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        min_age: u64,
        #[arg(long)]
        json: bool,
    },
    /// Make a stored artifact the current one of a model (roll forward or back).
    #[command(after_help = "Examples:\n  zoo registry set r50-fpn-3x 3f2a…e9 --registry s3://models/registry")]
    Set {
        model: String,
        /// sha256 of the artifact (see `zoo registry ls`).
        artifact: String,
        #[arg(long, env = "ZOO_REGISTRY", default_value = "registry")]
        registry: String,
    },
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`zoo list | head`), like other Unix tools.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::panic::set_hook(Box::new(|info| {
        eprintln!("zoo: internal error (a bug, please report it): {info}");
        std::process::exit(2);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zoo: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

impl Global {
    fn catalog(&self) -> Result<Catalog> {
        Ok(match &self.catalog {
            Some(p) => Catalog::from_path(p)?,
            None => Catalog::embedded()?,
        })
    }

    fn cache_dir(&self) -> Result<PathBuf> {
        match &self.cache {
            Some(p) => Ok(p.clone()),
            None => Ok(dirs::cache_dir()
                .context("no cache directory is known for this user: pass --cache DIR or set ZOO_CACHE")?
                .join("d2serve")
                .join("checkpoints")),
        }
    }

    fn lock_path(&self) -> Result<PathBuf> {
        Ok(match &self.lock {
            Some(p) => p.clone(),
            None => self.cache_dir()?.join("models.lock"),
        })
    }

    fn artifact_dir(&self, entry: &ModelEntry) -> PathBuf {
        self.artifacts.join(&entry.key)
    }

    /// The registry key of `name`: a catalog key or alias, else a model of
    /// one's own (`zoo import`), known by its converted folder (`artifact`,
    /// or ARTIFACTS/NAME) holding a manifest of that key.
    fn model_key(&self, catalog: &Catalog, name: &str, artifact: Option<&Path>) -> Result<String> {
        if let Some(entry) = catalog.get(name) {
            return Ok(entry.key.clone());
        }
        let dir = artifact.map_or_else(|| self.artifacts.join(name), Path::to_path_buf);
        match d2serve_registry::Manifest::read(&dir.join("manifest.json")) {
            Ok(m) if m.key == name => Ok(m.key),
            Ok(m) => bail!("{} holds model `{}`, not `{name}`", dir.display(), m.key),
            Err(_) => Err(anyhow::Error::new(catalog.require(name).unwrap_err()).context(format!(
                "`{name}` is neither a catalog model nor an imported one ({} has no manifest.json; `zoo import CHECKPOINT --name {name}` makes one)",
                dir.display()
            ))),
        }
    }

    async fn registry(&self, location: &str) -> Result<Registry> {
        Ok(Registry::new(open_store(location, &self.s3.config()).await?))
    }
}

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::List { json, registry } => list(g, *json, registry).await,
        Command::Show { model, json } => show(g, model, *json),
        Command::Pull(args) => pull(g, args).await,
        Command::Verify { models, json } => verify(g, models, *json),
        Command::Convert(args) => convert(g, args),
        Command::Import(args) => import::run(g, args).await,
        Command::Predict(args) => predict(g, args),
        Command::Draw { image, annotation, out, model } => draw(g, image, annotation, out, model),
        Command::Bench(args) => bench(g, args).await,
        Command::Synth { model, out, seed } => synth(g, model, out, *seed),
        Command::Publish {
            model,
            to,
            artifact,
            json,
        } => publish(g, model, to, artifact.as_deref(), *json).await,
        Command::Registry { command } => registry_command(g, command).await,
    }
}

async fn list(g: &Global, as_json: bool, registry: &str) -> Result<()> {
    let catalog = g.catalog()?;
    let cache = g.cache_dir()?;
    // The registry column is informative: an unreachable registry must not hide the catalog.
    let index = match g.registry(registry).await {
        Ok(r) => r.index().await.ok(),
        Err(_) => None,
    };
    let rows: Vec<_> = catalog
        .models
        .iter()
        .map(|m| {
            json!({
                "key": m.key,
                "name": m.name,
                "aliases": m.aliases,
                "model_id": m.model_id,
                "dataset": m.dataset,
                "num_classes": m.num_classes,
                "box_ap": m.box_ap,
                "mask_ap": m.mask_ap,
                "inference_s_per_im": m.inference_s_per_im,
                "cached": download::cached_path(&cache, m).is_file(),
                "converted": g.artifact_dir(m).join(MODEL_FILE).is_file(),
                "published": index.as_ref().is_some_and(|i| i.models.contains_key(&m.key)),
            })
        })
        .collect();
    let mut rows = rows;
    rows.extend(imported_rows(g, &catalog, index.as_ref()));
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let fmt_ap = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let width = rows.iter().filter_map(|r| r["key"].as_str()).map(str::len).max().unwrap_or(3);
    println!(
        "{:<width$}  {:<26}  {:<10}  {:>7}  {:>6}  {:>7}  STATE",
        "KEY", "NAME", "DATASET", "CLASSES", "BOX AP", "MASK AP"
    );
    for r in &rows {
        let state: Vec<&str> = [("cached", "local"), ("converted", "converted"), ("published", "published")]
            .iter()
            .filter(|(k, _)| r[*k].as_bool() == Some(true))
            .map(|(_, label)| *label)
            .collect();
        println!(
            "{:<width$}  {:<26}  {:<10}  {:>7}  {:>6}  {:>7}  {}",
            r["key"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
            r["dataset"].as_str().unwrap_or_default(),
            r["num_classes"].as_u64().map_or("-".to_string(), |n| n.to_string()),
            fmt_ap(&r["box_ap"]),
            fmt_ap(&r["mask_ap"]),
            if state.is_empty() { "-".to_string() } else { state.join(",") }
        );
    }
    Ok(())
}

/// Models of one's own (`zoo import`): converted folders under ARTIFACTS
/// whose manifest says `source.kind = custom`, and registry entries that are
/// not catalog models.
fn imported_rows(g: &Global, catalog: &Catalog, index: Option<&d2serve_registry::Index>) -> Vec<serde_json::Value> {
    let mut found: std::collections::BTreeMap<String, Option<d2serve_registry::Manifest>> = Default::default();
    // Keys may hold `/`: look two levels deep.
    let mut dirs = vec![g.artifacts.clone()];
    for depth in 0..2 {
        let mut next = Vec::new();
        for d in &dirs {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if !p.is_dir() {
                    continue;
                }
                match d2serve_registry::Manifest::read(&p.join("manifest.json")) {
                    Ok(m) if catalog.get(&m.key).is_none() => {
                        found.insert(m.key.clone(), Some(m));
                    }
                    Ok(_) => {}
                    Err(_) if depth == 0 => next.push(p),
                    Err(_) => {}
                }
            }
        }
        dirs = next;
    }
    if let Some(index) = index {
        for key in index.models.keys().filter(|k| catalog.get(k).is_none()) {
            found.entry(key.clone()).or_insert(None);
        }
    }
    found
        .into_iter()
        .map(|(key, m)| {
            json!({
                "key": key,
                "name": m.as_ref().map(|m| m.name.clone()).unwrap_or_else(|| key.clone()),
                "aliases": [],
                "model_id": null,
                "dataset": m.as_ref().map(|m| m.dataset.clone()).unwrap_or_else(|| "custom".into()),
                "num_classes": m.as_ref().map(|m| m.classes.len()),
                "box_ap": null,
                "mask_ap": null,
                "inference_s_per_im": null,
                "cached": false,
                "converted": m.is_some(),
                "published": index.is_some_and(|i| i.models.contains_key(&key)),
                "source": "custom",
            })
        })
        .collect()
}

fn show(g: &Global, name: &str, as_json: bool) -> Result<()> {
    let catalog = g.catalog()?;
    let m = catalog.require(name)?;
    let classes = catalog.classes(m);
    // Through text, so f32 settings print as written (0.7, not 0.699999988).
    let mut value: serde_json::Value = serde_json::from_str(&serde_json::to_string(m)?)?;
    value["classes"] = serde_json::to_value(&classes.classes)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    value.as_object_mut().expect("an entry is an object").remove("classes");
    println!("{} ({})", m.name, m.key);
    print_tree(&value, 1);
    let names: Vec<&str> = classes.names().collect();
    let shown = names.iter().take(12).copied().collect::<Vec<_>>().join(", ");
    println!(
        "  classes: {} ({}{})",
        names.len(),
        shown,
        if names.len() > 12 { ", …; --json lists all" } else { "" }
    );
    Ok(())
}

fn print_tree(v: &serde_json::Value, depth: usize) {
    let pad = "  ".repeat(depth);
    if let Some(obj) = v.as_object() {
        for (k, v) in obj {
            if v.is_object() {
                println!("{pad}{k}:");
                print_tree(v, depth + 1);
            } else {
                println!("{pad}{k}: {}", compact(v));
            }
        }
    }
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn select<'c>(catalog: &'c Catalog, names: &[String], all: bool) -> Result<Vec<&'c ModelEntry>> {
    if all {
        return Ok(catalog.models.iter().collect());
    }
    if names.is_empty() {
        bail!("name at least one model (a key or alias from `zoo list`), or pass --all");
    }
    names
        .iter()
        .map(|n| catalog.require(n).map_err(Into::into))
        .collect()
}

async fn pull(g: &Global, args: &PullArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let entries = select(&catalog, &args.models, args.all)?;
    let opts = PullOptions {
        cache_dir: g.cache_dir()?,
        mirror: args.mirror.clone(),
        retries: args.retries,
        backoff: Duration::from_millis(args.backoff_ms),
    };
    let lock = SharedLock::open(&g.lock_path()?)?;
    let client = download::http_client(Duration::from_secs(args.timeout.max(1)));
    let bars = progress::Bars::new(entries.len(), !args.json);
    let results: Vec<_> = futures_util::stream::iter(entries.iter().map(|e| {
        let (client, opts, lock, bars) = (&client, &opts, &lock, &bars);
        async move { (e.key.clone(), download::pull(client, e, opts, lock, bars).await) }
    }))
    .buffer_unordered(args.jobs as usize)
    .collect()
    .await;
    bars.clear();
    let mut failures = 0;
    let mut report = Vec::new();
    for (key, r) in results {
        match r {
            Ok(p) => {
                if !args.json {
                    let what = match p.status {
                        PullStatus::Cached => "already cached, verified",
                        PullStatus::Downloaded => "downloaded, verified",
                    };
                    let pin = if p.pinned_now { "; sha256 pinned in models.lock" } else { "" };
                    println!("{key}: {what} ({} bytes){pin}\n  {}", p.size, p.path.display());
                }
                report.push(json!({"key": key, "ok": true, "status": p.status, "path": p.path, "size": p.size, "sha256": p.sha256}));
            }
            Err(e) => {
                failures += 1;
                eprintln!("zoo: {key}: {e}");
                report.push(json!({"key": key, "ok": false, "error": e.to_string()}));
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if failures > 0 {
        bail!("{failures} of {} downloads failed", report.len());
    }
    if args.convert {
        for e in &entries {
            convert(
                g,
                &ConvertArgs {
                    source: Some(e.key.clone()),
                    all: false,
                    synth: false,
                    as_key: None,
                    out: None,
                    min_size: None,
                    max_size: None,
                    debug_outputs: false,
                    json: args.json,
                },
            )?;
        }
    }
    Ok(())
}

fn verify(g: &Global, names: &[String], as_json: bool) -> Result<()> {
    let catalog = g.catalog()?;
    let entries = if names.is_empty() {
        catalog.models.iter().collect()
    } else {
        select(&catalog, names, false)?
    };
    let cache = g.cache_dir()?;
    let lock = download::LockFile::load(&g.lock_path()?)?;
    let results = download::verify_cache(&entries, &cache, &lock)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else if results.is_empty() {
        println!("nothing cached in {} yet: `zoo pull KEY` downloads a model", cache.display());
    } else {
        for r in &results {
            let what = match r.status {
                VerifyStatus::Ok => "ok",
                VerifyStatus::Unpinned => "ok by its md5 prefix; not pinned in models.lock yet (the next pull pins it)",
                VerifyStatus::Md5Mismatch => "CORRUPT: md5 does not start with the zoo name's prefix; delete it and pull again",
                VerifyStatus::ShaMismatch => "CHANGED: sha256 differs from models.lock; delete it and pull again",
            };
            println!("{}: {what}\n  {} ({} bytes, sha256 {})", r.key, r.path.display(), r.size, r.sha256);
        }
    }
    let bad = results
        .iter()
        .filter(|r| matches!(r.status, VerifyStatus::Md5Mismatch | VerifyStatus::ShaMismatch))
        .count();
    if bad > 0 {
        bail!("{bad} cached checkpoint(s) failed verification");
    }
    Ok(())
}

fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    d2serve_engine::decode(&bytes, 200_000_000).with_context(|| format!("decoding {}", path.display()))
}

/// A PNG written whole or not at all (a reader never sees half a picture).
fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut png = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(&mut png, &img.data, img.width as u32, img.height as u32, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)?;
    d2serve_registry::atomic::write(path, png.get_ref()).with_context(|| format!("writing {}", path.display()))
}

fn output_path(base: &Path, image: &Path, many: bool, ext: &str) -> PathBuf {
    if many {
        let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        base.join(format!("{stem}.{ext}"))
    } else {
        base.to_path_buf()
    }
}

fn predict(g: &Global, args: &PredictArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let key = g.model_key(&catalog, &args.model, args.artifact.as_deref())?;
    let dir = args.artifact.clone().unwrap_or_else(|| g.artifacts.join(&key));
    if !dir.join(MODEL_FILE).is_file() {
        bail!("{} has no converted model: run `zoo convert {key}` (or pass --artifact DIR)", dir.display());
    }
    let model = LoadedModel::open(&dir, &args.runtime.session_options())?;
    let many = args.images.len() > 1;
    let settings = Settings { conf_thres: args.conf, ..Default::default() };
    for path in &args.images {
        let mut img = read_image(path)?;
        let t = std::time::Instant::now();
        let p = model.predict(&img, &settings)?;
        let secs = t.elapsed().as_secs_f64();
        let objects: Vec<_> = p
            .instances
            .iter()
            .map(|i| supervisely::object(&model.manifest.classes[i.class_id].name, i.score, &i.mask))
            .collect();
        let ann = supervisely::annotation(p.height, p.width, objects);
        println!("{}: {} instances in {:.2} s", path.display(), p.instances.len(), secs);
        for i in &p.instances {
            println!("  {:<20} {:.3}  box [{:.1}, {:.1}, {:.1}, {:.1}]", model.manifest.classes[i.class_id].name, i.score, i.bbox[0], i.bbox[1], i.bbox[2], i.bbox[3]);
        }
        if let Some(base) = &args.json {
            let out = output_path(base, path, many, "json");
            d2serve_registry::atomic::write(&out, &serde_json::to_vec_pretty(&ann)?).with_context(|| format!("writing {}", out.display()))?;
            println!("  annotation: {}", out.display());
        }
        if let Some(base) = &args.overlay {
            let out = output_path(base, path, many, "png");
            supervisely::draw_annotation(&mut img.data, img.height, img.width, &ann, &model.manifest.classes);
            save_png(&out, &img)?;
            println!("  overlay: {}", out.display());
        }
    }
    Ok(())
}

fn draw(g: &Global, image: &Path, annotation: &Path, out: &Path, model: &str) -> Result<()> {
    let catalog = g.catalog()?;
    let classes = match catalog.get(model) {
        Some(entry) => catalog.classes(entry).classes,
        None => {
            let key = g.model_key(&catalog, model, None)?;
            d2serve_registry::Manifest::read(&g.artifacts.join(&key).join("manifest.json"))?.classes
        }
    };
    let mut img = read_image(image)?;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(annotation).with_context(|| format!("reading {}", annotation.display()))?)
        .with_context(|| format!("{} is not JSON", annotation.display()))?;
    let ann = v.get("annotation").cloned().unwrap_or(v);
    let n = supervisely::draw_annotation(&mut img.data, img.height, img.width, &ann, &classes);
    save_png(out, &img)?;
    println!("drew {n} objects on {} -> {}", image.display(), out.display());
    Ok(())
}

/// A deterministic 800x1067 RGB pattern (the 800/1333 test size of a 3:4 photo).
fn test_pattern() -> RgbImage {
    let (h, w) = (800usize, 1067usize);
    let mut data = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(&[((x * 7 + y * 3) % 256) as u8, ((x * x + y) % 251) as u8, ((y * 5) % 256) as u8]);
        }
    }
    RgbImage { height: h, width: w, data }
}

async fn bench(g: &Global, args: &BenchArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let key = g.model_key(&catalog, &args.model, args.artifact.as_deref())?;
    let work = tempfile::tempdir()?;
    let dir = match &args.artifact {
        Some(d) => d.clone(),
        None if g.artifacts.join(&key).join(MODEL_FILE).is_file() => g.artifacts.join(&key),
        None => {
            let entry = catalog.require(&key)?;
            let pkl = work.path().join("synth.pkl");
            let mut w = std::io::BufWriter::new(std::fs::File::create(&pkl)?);
            d2serve_d2onnx::synth::write_checkpoint(entry, 1, &mut w)?;
            drop(w);
            let out = work.path().join("artifact");
            convert_checkpoint(entry, &catalog.classes(entry), &pkl, &out, &ConvertOptions::default())?;
            std::fs::remove_file(&pkl)?;
            eprintln!("bench: converted a full-size synthesized {} (random weights)", entry.key);
            out
        }
    };
    let registry = work.path().join("registry");
    Registry::new(std::sync::Arc::new(d2serve_registry::store::LocalStore::new(&registry)))
        .publish(&key, &dir)
        .await?;
    let image = match &args.image {
        Some(p) => read_image(p)?,
        None => test_pattern(),
    };
    let session = SessionOptions { optimize: !args.no_optimize, ..args.runtime.session_options() };
    let r = d2serve_engine::bench::bench(&registry, &key, work.path(), &image, args.runs, session).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let optimize = if r.optimize { "on" } else { "off" };
        println!(
            "{} on {}x{} (resized {}x{}), device {}, {} threads, graph optimizations {optimize}",
            r.key, r.image_hw[0], r.image_hw[1], r.resized_hw[0], r.resized_hw[1], r.device, r.threads
        );
        println!("  cold start: fetch {:.3} s, verify {:.3} s, session {:.3} s, first inference {:.3} s (total {:.3} s)", r.cold_fetch_s, r.cold_verify_s, r.cold_session_s, r.cold_first_inference_s, r.cold_total_s);
        println!("  warm ({} runs): p50 {:.3} s, p95 {:.3} s, min {:.3} s; {} detections", r.warm_runs, r.warm_p50_s, r.warm_p95_s, r.warm_min_s, r.detections);
        println!("  peak RSS {:.0} MB", r.peak_rss_mb);
    }
    Ok(())
}

fn synth(g: &Global, name: &str, out: &Path, seed: u64) -> Result<()> {
    let catalog = g.catalog()?;
    let entry = catalog.require(name)?;
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = temp_file_in(dir, ".synth.", "")?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let n = d2serve_d2onnx::synth::write_checkpoint(entry, seed, &mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(out).map_err(|e| e.error).with_context(|| format!("writing {}", out.display()))?;
    let size = std::fs::metadata(out)?.len();
    println!("{}: wrote {} ({n} tensors, {size} bytes, random weights, seed {seed})", entry.key, out.display());
    Ok(())
}

/// Write a full-size synthesized checkpoint of `entry` into `dir` (removed on drop).
fn synth_temp(entry: &ModelEntry, dir: &Path) -> Result<tempfile::TempPath> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new().prefix(".synth.").suffix(".pkl").tempfile_in(dir)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    d2serve_d2onnx::synth::write_checkpoint(entry, 1, &mut w)?;
    Ok(w.into_inner().map_err(|e| e.into_error())?.into_temp_path())
}

/// Start a fresh peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn convert_all(g: &Global, args: &ConvertArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let root = args.out.clone().unwrap_or_else(|| g.artifacts.clone());
    let cache = g.cache_dir()?;
    let per_model_peak = reset_peak_rss();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for entry in &catalog.models {
        let out = root.join(&entry.key);
        let synth;
        let pkl = if args.synth {
            synth = synth_temp(entry, &root)?;
            synth.to_path_buf()
        } else {
            let path = download::cached_path(&cache, entry);
            if !path.is_file() {
                eprintln!("zoo: {}: not downloaded ({} is missing): `zoo pull {}`, or use --synth", entry.key, path.display(), entry.key);
                failures.push(entry.key.clone());
                continue;
            }
            path
        };
        let checkpoint_bytes = std::fs::metadata(&pkl)?.len();
        reset_peak_rss();
        let t = std::time::Instant::now();
        let opts = ConvertOptions { min_size: args.min_size, max_size: args.max_size, debug_outputs: args.debug_outputs };
        match convert_checkpoint(entry, &catalog.classes(entry), &pkl, &out, &opts) {
            Ok(m) => {
                let secs = t.elapsed().as_secs_f64();
                let peak = d2serve_engine::bench::peak_rss_mb();
                if !args.json {
                    println!(
                        "{:<62} {:>7.2} s {:>7.0} MB peak {:>10} B artifact ({:.2}x checkpoint)",
                        entry.key,
                        secs,
                        peak,
                        m.artifact.size,
                        m.artifact.size as f64 / checkpoint_bytes as f64
                    );
                }
                rows.push(json!({"key": entry.key, "seconds": secs, "peak_rss_mb": peak, "artifact_bytes": m.artifact.size, "checkpoint_bytes": checkpoint_bytes, "out": out}));
            }
            Err(e) => {
                eprintln!("zoo: {}: {e}", entry.key);
                failures.push(entry.key.clone());
            }
        }
    }
    let convert_total: f64 = rows.iter().filter_map(|r| r["seconds"].as_f64()).sum();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"models": rows, "convert_seconds_total": convert_total, "wall_seconds": started.elapsed().as_secs_f64(), "per_model_peak_rss": per_model_peak, "failed": failures}))?);
    } else {
        println!(
            "{} converted in {convert_total:.1} s of conversion ({:.1} s wall{}){}",
            rows.len(),
            started.elapsed().as_secs_f64(),
            if args.synth { ", including writing the synthesized checkpoints" } else { "" },
            if per_model_peak { "" } else { "; peak memory is the process's running maximum (VmHWM could not be reset)" }
        );
    }
    if !failures.is_empty() {
        bail!("{} of {} models failed: {}", failures.len(), catalog.models.len(), failures.join(", "));
    }
    Ok(())
}

fn convert(g: &Global, args: &ConvertArgs) -> Result<()> {
    if args.all {
        return convert_all(g, args);
    }
    let catalog = g.catalog()?;
    let Some(source) = args.source.as_deref() else {
        bail!("which model? name a catalog key or alias (`zoo list`), a .pkl file with --as KEY, or pass --all");
    };
    let is_file = source.ends_with(".pkl") || Path::new(source).is_file();
    let synth;
    let (entry, pkl) = match (&args.as_key, is_file) {
        (Some(key), true) => (catalog.require(key)?, PathBuf::from(source)),
        (None, true) => bail!(
            "which model is {source}? add --as KEY (a key or alias from `zoo list`)"
        ),
        (Some(_), false) => bail!("{source} is not a file; --as names the model of a .pkl file"),
        (None, false) if args.synth => {
            let entry = catalog.require(source)?;
            let dir = args.out.clone().unwrap_or_else(|| g.artifact_dir(entry));
            synth = synth_temp(entry, dir.parent().unwrap_or(Path::new(".")))?;
            (entry, synth.to_path_buf())
        }
        (None, false) => {
            let entry = catalog.require(source)?;
            let path = download::cached_path(&g.cache_dir()?, entry);
            if !path.is_file() {
                bail!(
                    "{} is not downloaded yet ({} is missing): run `zoo pull {}` first, pass a .pkl with --as, or --synth for random weights",
                    entry.key,
                    path.display(),
                    entry.key
                );
            }
            (entry, path)
        }
    };
    let out = args.out.clone().unwrap_or_else(|| g.artifact_dir(entry));
    let opts = ConvertOptions {
        min_size: args.min_size,
        max_size: args.max_size,
        debug_outputs: args.debug_outputs,
    };
    let started = std::time::Instant::now();
    let manifest = convert_checkpoint(entry, &catalog.classes(entry), &pkl, &out, &opts)
        .with_context(|| format!("converting {} ({})", pkl.display(), entry.key))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"key": entry.key, "out": out, "manifest": manifest, "seconds": started.elapsed().as_secs_f64()}))?);
    } else {
        println!(
            "{}: wrote {} ({} bytes, sha256 {}) and {} in {:.2} s",
            entry.key,
            out.join(MODEL_FILE).display(),
            manifest.artifact.size,
            manifest.artifact.sha256,
            out.join("manifest.json").display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn publish(g: &Global, name: &str, to: &str, artifact: Option<&Path>, as_json: bool) -> Result<()> {
    let catalog = g.catalog()?;
    let key = g.model_key(&catalog, name, artifact)?;
    let dir = artifact.map_or_else(|| g.artifacts.join(&key), Path::to_path_buf);
    let registry = g.registry(to).await?;
    let p = registry.publish(&key, &dir).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!(
            "{}: artifact {} {} and is now current in {}{}",
            p.key,
            p.artifact,
            if p.uploaded { "uploaded" } else { "was already stored" },
            registry.location(),
            p.previous.map(|x| format!(" (previous: {x})")).unwrap_or_default()
        );
    }
    Ok(())
}

async fn registry_command(g: &Global, cmd: &RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Ls { registry, json } => {
            let r = g.registry(registry).await?;
            let index = r.index().await?;
            let artifacts = r.artifacts().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&json!({"location": r.location(), "index": index, "artifacts": artifacts}))?);
                return Ok(());
            }
            println!("registry {}", r.location());
            if index.models.is_empty() {
                println!("  (no model published yet)");
            }
            for (key, e) in &index.models {
                // The manifest says what the model is: a zoo model or one's own, and its classes.
                let what = match r.artifact_manifest(key, &e.artifact).await {
                    Ok(m) => format!("{}, {} classes, {}", m.name, m.classes.len(), if m.dataset == "custom" { "imported" } else { "zoo" }),
                    Err(err) => format!("manifest unreadable: {err}"),
                };
                println!("  {key} ({what})\n    current {} ({} bytes, published {})", e.artifact, e.size, e.published_at);
                if let Some(p) = &e.previous {
                    println!("    previous {p}");
                }
            }
            let stale: Vec<_> = artifacts.iter().filter(|a| !a.current).collect();
            if !stale.is_empty() {
                println!("  not current ({}; `zoo registry gc` removes those no entry names):", stale.len());
                for a in stale {
                    println!("    {} {} ({} bytes)", a.key, a.artifact, a.bytes);
                }
            }
            Ok(())
        }
        RegistryCommand::Gc {
            registry,
            dry_run,
            min_age,
            json,
        } => {
            let r = g.registry(registry).await?;
            let removed = r.gc(Duration::from_secs(*min_age), *dry_run).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&json!({"dry_run": dry_run, "removed": removed}))?);
            } else if removed.is_empty() {
                println!("nothing to remove in {}", r.location());
            } else {
                for a in &removed {
                    println!("{} {} {} ({} bytes)", if *dry_run { "would remove" } else { "removed" }, a.key, a.artifact, a.bytes);
                }
            }
            Ok(())
        }
        RegistryCommand::Set {
            model,
            artifact,
            registry,
        } => {
            let catalog = g.catalog()?;
            // A catalog name, or the key of an imported model as the registry knows it.
            let key = catalog.get(model).map_or_else(|| model.clone(), |e| e.key.clone());
            let r = g.registry(registry).await?;
            r.set_current(&key, artifact).await?;
            println!("{key}: current artifact is now {artifact} in {}", r.location());
            Ok(())
        }
    }
}

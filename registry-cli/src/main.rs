//! `zoo`: the d2serve model-registry CLI. Argument parsing, progress and
//! output only; the work happens in the `d2serve-registry` library.

mod bench;
mod convert;
mod eval;
mod import;
mod list;
mod load;
mod predict;
mod progress;
mod publish;
mod pull;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use d2serve_engine::cli::RuntimeArgs;
use d2serve_registry::{Catalog, ModelEntry, Registry, S3Config, open_store};

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
  zoo eval lemons --images val/ --annotations val/instances.json   its COCO box and mask AP
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
        /// Model whose class colours to use (a catalog model, or one converted into the artifacts folder) [default: the model the reply names, else R50-FPN 3x's when its classes are the reply's, else one palette colour per class].
        #[arg(long)]
        model: Option<String>,
    },
    /// COCO box and mask AP of a converted or imported model on a COCO-format dataset.
    #[command(after_help = eval::AFTER_HELP)]
    Eval(eval::EvalArgs),
    /// Measure cold start and warm latency of a converted model (see docs/BENCHMARKS.md).
    #[command(after_help = "Examples:\n  zoo bench --model r50-fpn-3x --image photo.png --runs 10\n  zoo bench --model r50-fpn-3x --artifact out/r50 --threads 2 --json")]
    Bench(BenchArgs),
    /// Load a running serve with N concurrent clients for T seconds: throughput, latency percentiles, statuses, peak RSS.
    #[command(after_help = "Examples:\n  zoo load http://127.0.0.1:8000 --image photo.jpg -c 16 --duration 60 --pid $(pgrep -x serve)\n  zoo load http://127.0.0.1:8000 --image photo.jpg -c 64 --retry-after ignore --json")]
    Load(load::LoadArgs),
    /// Write the Supervisely app's config.json (its model table generated from the catalog).
    #[command(name = "supervisely-app", after_help = "Examples:\n  zoo supervisely-app --out supervisely\n  zoo supervisely-app --out supervisely --check     exit 1 if supervisely/config.json is not what the catalog gives")]
    SuperviselyApp {
        #[arg(long, value_name = "DIR", default_value = "supervisely")]
        out: PathBuf,
        /// The app's Docker image (built by supervisely/Dockerfile).
        #[arg(long, default_value = DEFAULT_APP_IMAGE)]
        image: String,
        /// Compare instead of writing.
        #[arg(long)]
        check: bool,
    },
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
    /// The .pkl has random weights (a sample, like the bundled fixtures): the
    /// manifest, `zoo list` and `serve` say so and claim no AP (--synth implies it).
    #[arg(long)]
    random_weights: bool,
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
    #[arg(long, default_value_t = d2serve_engine::pipeline::DEFAULT_CONF_THRES)]
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
    /// Measure only the --runtime and --precision given [default: also every
    /// other CPU runtime installed here, rounds interleaved].
    #[arg(long)]
    only: bool,
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
            eprintln!("zoo: error: {}", d2serve_registry::report::join_causes(e.chain()));
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
        match d2serve_registry::Manifest::read(&dir.join(d2serve_registry::manifest::MANIFEST_FILE)) {
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

const DEFAULT_APP_IMAGE: &str = "ghcr.io/d2serve/serve-supervisely:0.1.0";

/// `zoo supervisely-app`: config.json from the catalog, written whole or compared.
fn supervisely_app(g: &Global, out: &Path, image: &str, check: bool) -> Result<()> {
    let catalog = g.catalog()?;
    let text = serde_json::to_string_pretty(&d2serve_registry::supervisely_app::app_config(&catalog, image))? + "\n";
    let path = out.join("config.json");
    if check {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            bail!("{} is not what the catalog gives: run `zoo supervisely-app --out {}` and commit it", path.display(), out.display());
        }
        println!("{}: up to date with the catalog ({} models)", path.display(), catalog.models.len());
        return Ok(());
    }
    std::fs::create_dir_all(out)?;
    d2serve_registry::atomic::write(&path, text.as_bytes())?;
    println!("wrote {} ({} models in the modal)", path.display(), catalog.models.len());
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::List { json, registry } => list::list(g, *json, registry).await,
        Command::Show { model, json } => list::show(g, model, *json),
        Command::Pull(args) => pull::pull(g, args).await,
        Command::Verify { models, json } => pull::verify(g, models, *json),
        Command::Convert(args) => convert::convert(g, args),
        Command::Import(args) => import::run(g, args).await,
        Command::Predict(args) => predict::predict(g, args),
        Command::Draw { image, annotation, out, model } => predict::draw(g, image, annotation, out, model.as_deref()),
        Command::Eval(args) => eval::run(g, args),
        Command::Bench(args) => bench::bench(g, args).await,
        Command::Load(args) => load::run(args).await,
        Command::SuperviselyApp { out, image, check } => supervisely_app(g, out, image, *check),
        Command::Synth { model, out, seed } => convert::synth(g, model, out, *seed),
        Command::Publish {
            model,
            to,
            artifact,
            json,
        } => publish::publish(g, model, to, artifact.as_deref(), *json).await,
        Command::Registry { command } => publish::registry_command(g, command).await,
    }
}

//! `batch`: flags, logging, and the choice between AWS Lambda
//! (`AWS_LAMBDA_RUNTIME_API` set) and a command-line run. The job itself is the
//! `d2serve_batch` library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use d2serve_batch::event::{JobRequest, Source, parse_event, parse_settings};
use d2serve_batch::job::{Outcome, Progress};
use d2serve_batch::storage::s3_client;
use d2serve_batch::{Deadline, Location, Runner};
use d2serve_engine::cache::CacheLimits;
use d2serve_engine::cli::ModelSourceArgs;
use d2serve_registry::Catalog;

#[derive(Parser, Debug)]
#[command(
    name = "batch",
    version,
    about = "Annotate every image under a folder or an S3 prefix with a Detectron2 model (one Supervisely annotation JSON per image); under AWS Lambda, run scheduled or Step Functions jobs",
    after_help = "Examples:\n  batch --input photos/ --output annotations/ --model r50-fpn-3x --registry file://./registry\n  batch --input s3://bucket/photos/ --output s3://bucket/annotations/ --time-budget 10m\n  batch --event job.json        # a Lambda event (Scheduler input or Distributed Map batch), run locally\n\nOutput: <output>/<image key>.json per image and <output>/_runs/<run id>.json; the run summary is printed on stdout.\nImages already annotated are skipped, so re-running a job redoes nothing done. A run stopped by --time-budget\nor --max-images prints a `continuation`: pass it with --continuation to go on.\nExit status: 0 done, 1 the job could not run (the message says why), 2 some images failed (listed in the summary)."
)]
struct Args {
    /// Images to annotate: a folder or s3://BUCKET/PREFIX/.
    #[arg(long)]
    input: Option<String>,
    /// Where annotations go: a folder or s3://BUCKET/PREFIX/.
    #[arg(long)]
    output: Option<String>,
    /// Model (catalog key or alias) [default: the event's, else D2_DEFAULT_MODEL].
    #[arg(long = "model", env = "D2_DEFAULT_MODEL", default_value = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x")]
    model: String,
    /// Inference settings as JSON, e.g. '{"conf_thres": 0.5, "classes": ["person"]}'.
    #[arg(long)]
    settings: Option<String>,
    /// Annotate at most this many images in this run.
    #[arg(long)]
    max_images: Option<usize>,
    /// Continue after this token (from a previous run's summary).
    #[arg(long)]
    continuation: Option<String>,
    /// Run a Lambda event from a JSON file (EventBridge Scheduler input or a Distributed Map batch).
    #[arg(long, conflicts_with_all = ["input", "output", "settings", "max_images"])]
    event: Option<PathBuf>,
    /// Stop starting images after this long, e.g. 90s, 10m (a deadline, as under Lambda).
    #[arg(long, alias = "deadline", value_parser = parse_duration)]
    time_budget: Option<Duration>,
    /// Time kept in reserve before the deadline, besides twice the slowest image.
    #[arg(long, env = "D2_SAFETY_MARGIN", value_parser = parse_duration, default_value = "10s")]
    safety_margin: Duration,
    /// Images in flight at once (downloads and uploads overlap inference).
    #[arg(long, env = "D2_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    source: ModelSourceArgs,
    /// Largest image, in pixels (checked from the header, before decoding).
    #[arg(long, env = "D2_MAX_PIXELS", default_value_t = 50_000_000)]
    max_pixels: u64,
    /// Largest image file, in bytes.
    #[arg(long, env = "D2_MAX_IMAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_image_bytes: u64,
    /// Print where ONNX Runtime (and OpenVINO, where installed) is found and load it, then exit (checks a container image).
    #[arg(long, hide = true)]
    check_runtime: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration: write e.g. 90s, 500ms, 10m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn planned(&self, images: usize) {
        self.0.set_length(images as u64);
    }
    fn image(&self, key: &str, outcome: Outcome) {
        if outcome == Outcome::Failed {
            self.0.println(format!("failed: {key}"));
        }
        self.0.set_message(key.to_string());
        self.0.inc(1);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    // aws_config warns about every credential/region source it tries (IMDS off AWS): noise on a CLI.
    let default_level = if in_lambda { "info" } else { "warn,aws_config=error" };
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("D2_LOG").unwrap_or_else(|_| default_level.into()))
        .with_current_span(false)
        .init();
    match run(in_lambda).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("batch: {}", d2serve_registry::report::join_causes(e.chain()));
            ExitCode::from(1)
        }
    }
}

async fn run(in_lambda: bool) -> Result<ExitCode> {
    let args = Args::parse();
    if args.check_runtime {
        let path = d2serve_engine::runtime::find_library()?;
        d2serve_engine::runtime::environment()?;
        // OpenVINO is optional (--runtime openvino|auto): where it is not found, say so.
        let openvino = match d2serve_engine::openvino::load_library() {
            Ok(p) => serde_json::json!(p),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        println!("{}", serde_json::json!({"onnxruntime": path, "openvino": openvino}));
        return Ok(ExitCode::SUCCESS);
    }
    // CLI: parse the job first, so mistakes are reported before anything slow, and
    // build an S3 client only when a location needs one.
    let req = if in_lambda { None } else { Some(cli_request(&args)?) };
    let needs_s3 = req.as_ref().is_none_or(|r| r.input.is_s3() || r.output.is_s3());
    let catalog = Catalog::embedded()?;
    let default_model = catalog.registry_key(&args.model);
    // One job, one model: keep a single session.
    let limits = CacheLimits { max_models: 1, max_bytes: u64::MAX };
    let cache = Arc::new(args.source.model_cache(limits).await.context("opening the registry")?);
    let runner = Runner {
        catalog,
        cache,
        s3: if needs_s3 { Some(s3_client(&args.source.s3_config()).await) } else { None },
        default_model,
        concurrency: args.concurrency,
        max_pixels: args.max_pixels,
        max_image_bytes: args.max_image_bytes,
        safety_margin: args.safety_margin,
    };

    if in_lambda {
        tracing::info!(registry = %args.source.registry, default_model = %runner.default_model, "batch starting under Lambda");
        let runner = &runner;
        lambda_runtime::run(lambda_runtime::service_fn(move |ev| async move { runner.handle(ev).await }))
            .await
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    }

    let req = req.expect("parsed above outside Lambda");
    let deadline = match args.time_budget {
        Some(b) => Deadline::after(b, args.safety_margin.min(b / 4)),
        None => Deadline::none(),
    };
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} images  {elapsed_precise} (eta {eta})  {wide_msg}")
                .expect("a valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let summary = runner.run(&req, deadline, &Bar(bar.clone())).await.map_err(|e| {
        bar.finish_and_clear();
        anyhow::Error::new(e)
    })?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(c) = &summary.continuation {
        eprintln!(
            "batch: stopped ({}) with {} images left; continue with --continuation '{c}'",
            summary.stopped.unwrap_or("early"),
            summary.remaining
        );
    }
    let failures = summary.failed.len() + summary.failed_unlisted;
    if failures > 0 {
        eprintln!("batch: {failures} images failed (listed in the summary); the others are annotated");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn cli_request(args: &Args) -> Result<JobRequest> {
    if let Some(path) = &args.event {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let mut req = parse_event(&v)?;
        if args.continuation.is_some() {
            req.continuation = args.continuation.clone();
        }
        if req.model.is_none() {
            req.model = Some(args.model.clone());
        }
        return Ok(req);
    }
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        bail!("give --input DIR|s3://BUCKET/PREFIX/ and --output DIR|s3://BUCKET/PREFIX/ (or --event FILE); see batch --help");
    };
    let settings = match &args.settings {
        Some(s) => {
            let v: serde_json::Value = serde_json::from_str(s).context("--settings is not JSON (e.g. '{\"conf_thres\": 0.5}')")?;
            parse_settings(&v)?
        }
        None => Default::default(),
    };
    let (input, output) = (Location::parse(input)?, Location::parse(output)?);
    if input == output {
        bail!("--input and --output are the same location: write annotations elsewhere");
    }
    Ok(JobRequest {
        model: Some(args.model.clone()),
        input,
        output,
        settings,
        max_images: args.max_images,
        continuation: args.continuation.clone(),
        source: Source::Prefix,
    })
}

//! `serve`: configuration, logging, and the choice between AWS Lambda
//! (`AWS_LAMBDA_RUNTIME_API` set) and a plain HTTP server. The API itself is
//! the `d2serve_serve` library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use d2serve_engine::cache::CacheLimits;
use d2serve_engine::cli::ModelSourceArgs;
use d2serve_registry::Catalog;
use d2serve_serve::fetch::{Fetcher, SystemLookup};
use d2serve_serve::ssrf::AllowList;
use d2serve_engine::runtime::available_cpus;
use d2serve_engine::windows::MergeMode;
use d2serve_serve::access::parse_prefix;
use d2serve_serve::admission::{Admission, Limits, default_slots};
use d2serve_serve::listener::{self, ConnLimits};
use d2serve_serve::{AppState, Config, router, sly_app};

#[derive(Parser, Debug)]
#[command(
    name = "serve",
    version,
    about = "Serve Detectron2 Mask R-CNN models (Supervisely serving API + native API), under AWS Lambda or as an HTTP server",
    after_help = "Examples:\n  serve --registry file://./registry --model r50-fpn-3x --listen 127.0.0.1:8000\n  D2_REGISTRY=s3://models/registry D2_DEFAULT_MODEL=r50-fpn-3x serve --listen 0.0.0.0:8080\n\nUnder AWS Lambda (AWS_LAMBDA_RUNTIME_API set) the same binary answers Function URL / API Gateway events."
)]
struct Args {
    /// Model used when a request names none (catalog key or alias).
    #[arg(long = "model", env = "D2_DEFAULT_MODEL", default_value = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x")]
    default_model: String,
    #[command(flatten)]
    source: ModelSourceArgs,
    /// Address to listen on outside Lambda.
    #[arg(long, env = "D2_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Models kept loaded at once.
    #[arg(long, env = "D2_MAX_MODELS", default_value_t = 2)]
    max_models: usize,
    /// Bytes of loaded models kept at once.
    #[arg(long, env = "D2_MAX_MODEL_BYTES", default_value_t = 2_000_000_000)]
    max_model_bytes: u64,
    /// Largest image accepted, in pixels (checked from the header, before decoding).
    #[arg(long, env = "D2_MAX_PIXELS", default_value_t = 50_000_000)]
    max_pixels: u64,
    /// Largest request body and fetched image, in bytes.
    #[arg(long, env = "D2_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Hosts or CIDRs image URLs may point to although private or loopback (comma-separated).
    #[arg(long, env = "D2_ALLOW_HOSTS", default_value = "")]
    allow_hosts: String,
    /// Seconds allowed to fetch an image URL.
    #[arg(long, env = "D2_FETCH_TIMEOUT", default_value_t = 30)]
    fetch_timeout: u64,
    /// Supervisely instance for inference by image id (e.g. https://app.supervisely.com).
    #[arg(long, env = "SERVER_ADDRESS")]
    supervisely_server: Option<String>,
    /// Supervisely API token used when a request carries none.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    supervisely_token: Option<String>,
    /// Load the default model before answering (containers; Lambda loads on first use).
    #[arg(long, env = "D2_PRELOAD")]
    preload: bool,
    /// Requests that may wait for an inference slot beyond the ones running; more get 503 with Retry-After at once.
    #[arg(long, env = "D2_MAX_QUEUE", default_value_t = 16)]
    max_queue: usize,
    /// Longest a request may wait for an inference slot, in seconds; then 503 with Retry-After.
    #[arg(long, env = "D2_QUEUE_TIMEOUT", default_value = "30", value_parser = seconds)]
    queue_timeout: Duration,
    /// Inferences run at once [default: CPUs / --threads, so intra-op threads never oversubscribe the CPUs].
    #[arg(long, env = "D2_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Each request's deadline in seconds (waiting: 503 with Retry-After; running: 504) [default: none].
    #[arg(long, env = "D2_REQUEST_TIMEOUT", value_parser = seconds)]
    request_timeout: Option<Duration>,
    /// Seconds a registry index stays in use: a roll-forward (`zoo registry set`) reaches this server within this time.
    #[arg(long, env = "D2_INDEX_TTL", default_value = "30", value_parser = seconds_or_zero)]
    index_ttl: Duration,
    /// On SIGTERM, seconds to finish accepted requests (new ones get 503) before exiting.
    #[arg(long, env = "D2_DRAIN_TIMEOUT", default_value = "25", value_parser = seconds_or_zero)]
    drain_timeout: Duration,
    /// Bearer token every route but the health probes needs (Authorization: Bearer TOKEN).
    #[arg(long, env = "D2_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Start as the Supervisely app (supervisely/config.json): the model comes from the modal's choice in the
    /// environment (modal.state.*), custom weights from Team Files; TASK_ID becomes the session id.
    #[arg(long)]
    supervisely_app: bool,
    /// Seconds a client has to send a complete request header after connecting (or after its last answer); then the connection is closed.
    #[arg(long, env = "D2_HEADER_TIMEOUT", default_value = "10", value_parser = seconds)]
    header_timeout: Duration,
    /// Seconds a client has to send its request body after the header; then 408 and the connection is closed.
    #[arg(long, env = "D2_BODY_TIMEOUT", default_value = "60", value_parser = seconds)]
    body_timeout: Duration,
    /// Seconds a kept-alive connection may wait for its next request (above the usual load balancers' 60 s).
    #[arg(long, env = "D2_IDLE_TIMEOUT", default_value = "75", value_parser = seconds)]
    idle_timeout: Duration,
    /// Client connections open at once; at the cap a new one displaces the longest-waiting connection without a request in flight [default: the descriptor limit (raised to its hard limit at start) less 128].
    #[arg(long, env = "D2_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Sliding-window inference (Supervisely's `inference_mode: sliding_window`): `basic` merges the windows by
    /// concatenation (what Detectron2's Supervisely app serves), `advanced` by class-agnostic NMS at IoU 0.5,
    /// `none` answers such requests with the whole image.
    #[arg(long, env = "D2_SLIDING_WINDOW", default_value = "basic", value_parser = ["basic", "advanced", "none"])]
    sliding_window: String,
    /// Asynchronous requests (video, images by id) running at once; more get 503 with Retry-After.
    #[arg(long, env = "D2_MAX_ASYNC_REQUESTS", default_value_t = 4)]
    max_async_requests: usize,
    /// Seconds an asynchronous request is kept after its last poll (results nobody pops are then dropped).
    #[arg(long, env = "D2_ASYNC_TTL", default_value = "3600", value_parser = seconds)]
    async_ttl: Duration,
    /// Secret path prefix (e.g. /s-8f2c41d9e7) under which the API answers without a token: give Supervisely http://HOST/PREFIX as the session URL.
    #[arg(long, env = "D2_PATH_PREFIX", hide_env_values = true)]
    path_prefix: Option<String>,
}

/// A positive number of seconds, like `30` or `0.5`.
fn seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

fn seconds_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim().parse::<f64>() == Ok(0.0) { Ok(Duration::ZERO) } else { seconds(s) }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once (anyhow's own Debug output repeats embedded causes).
            eprintln!("serve: error: {}", d2serve_registry::report::join_causes(e.chain()));
            std::process::ExitCode::from(1)
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("D2_LOG").unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .init();
    let mut args = Args::parse();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();

    let catalog = Catalog::embedded()?;
    let mut session_id: Option<i64> = std::env::var("TASK_ID").ok().and_then(|v| v.trim().parse().ok());
    if args.supervisely_app {
        let start = sly_app::read_start(&|k| std::env::var(k).ok())?;
        tracing::info!(task_id = start.task_id, team_id = start.team_id, choice = ?start.choice, device = %start.device, "starting as a Supervisely app");
        let registry_dir = args.source.registry.strip_prefix("file://").unwrap_or(&args.source.registry).to_string();
        if !registry_dir.starts_with("s3://") {
            std::fs::create_dir_all(&registry_dir).with_context(|| format!("creating the app's registry folder {registry_dir}"))?;
        }
        let registry = d2serve_registry::Registry::new(d2serve_registry::open_store(&args.source.registry, &args.source.s3_config()).await?);
        let work = args.source.cache_dir().join("supervisely-app");
        let t = std::time::Instant::now();
        args.default_model = sly_app::prepare_model(&start, &catalog, &registry, &work).await?;
        tracing::info!(model = %args.default_model, seconds = t.elapsed().as_secs_f64(), "the app's model is ready");
        args.source.runtime.device = start.device.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        args.supervisely_server.get_or_insert(start.server.clone());
        args.supervisely_token.get_or_insert(start.token.clone());
        args.preload = true;
        session_id = start.task_id;
    }
    let default_key = catalog.registry_key(&args.default_model);
    let allow = if args.allow_hosts.trim().is_empty() {
        AllowList::default()
    } else {
        AllowList::parse(&args.allow_hosts).map_err(anyhow::Error::msg)?
    };
    let limits = CacheLimits { max_models: args.max_models, max_bytes: args.max_model_bytes };
    let cache = Arc::new(args.source.model_cache(limits).await.context("opening the registry")?.with_index_ttl(args.index_ttl));
    let session = args.source.session_options();
    // Lambda runs one request per instance: no queue to bound there.
    let admission = Admission::new(if in_lambda {
        Limits { slots: 1, max_queue: None, queue_timeout: None }
    } else {
        Limits {
            slots: args.concurrency.unwrap_or_else(|| default_slots(available_cpus(), session.intra_threads)).max(1),
            max_queue: Some(args.max_queue),
            queue_timeout: Some(args.queue_timeout),
        }
    });
    let path_prefix = args.path_prefix.as_deref().map(parse_prefix).transpose().map_err(anyhow::Error::msg)?;
    if args.auth_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        anyhow::bail!("--auth-token / D2_AUTH_TOKEN is empty: give a secret, or leave it unset for no token");
    }
    let fetcher = Fetcher::new(allow, Arc::new(SystemLookup), args.max_body_bytes, Duration::from_secs(args.fetch_timeout));
    let cfg = Config {
        catalog: catalog.clone(),
        default_model: default_key.clone(),
        max_pixels: args.max_pixels,
        max_body_bytes: args.max_body_bytes,
        supervisely_server: args.supervisely_server.clone(),
        supervisely_token: args.supervisely_token.clone(),
        s3: args.source.s3_config(),
        device: args.source.runtime.device.to_string(),
        request_timeout: args.request_timeout,
        auth_token: args.auth_token.clone(),
        path_prefix,
        session_id,
        sliding_window: match args.sliding_window.as_str() {
            "basic" => Some(MergeMode::Basic),
            "advanced" => Some(MergeMode::Advanced),
            _ => None,
        },
        async_requests: !in_lambda,
        max_async_requests: args.max_async_requests,
        async_ttl: args.async_ttl,
        fault_infer_delay: std::env::var("D2_FAULT_INFER_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis),
    };
    if let Some(d) = cfg.fault_infer_delay {
        tracing::warn!(ms = d.as_millis() as u64, "D2_FAULT_INFER_DELAY_MS is set: every inference is slowed down (fault drills only)");
    }
    let state = AppState::new(cfg, cache.clone(), fetcher, admission.clone());
    let connections = state.connections.clone();
    let jobs = state.jobs.clone();
    let app = router(state);
    let l = admission.limits();
    tracing::info!(registry = %args.source.registry, default_model = %default_key, lambda = in_lambda, threads = session.intra_threads, inference_slots = l.slots, max_queue = l.max_queue.map(|n| n as u64), queue_timeout_s = l.queue_timeout.map(|d| d.as_secs_f64()), index_ttl_s = args.index_ttl.as_secs_f64(), auth_token = args.auth_token.is_some(), path_prefix = args.path_prefix.is_some(), cache_dir = %args.source.cache_dir().display(), "serve starting");

    report_registry(&cache, &default_key).await;

    if in_lambda {
        // Lambda's 6 MB response limit: fitted or refused here, never Lambda's own 502.
        let app = app.layer(axum::middleware::from_fn(d2serve_serve::lambda_limits::fit_response));
        return lambda_http::run(app).await.map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }
    // The default model's manifest: the preloaded one, else the registry's (for the log only).
    let default_manifest = if args.preload {
        let t = std::time::Instant::now();
        let model = cache.get(&default_key).await.with_context(|| format!("preloading {}", default_key))?;
        tracing::info!(model = %default_key, seconds = t.elapsed().as_secs_f64(), "model preloaded");
        Some(model.manifest.clone())
    } else {
        cache.registry().current(&default_key).await.ok().map(|(_, m)| m)
    };
    if let Some(m) = default_manifest.filter(|m| m.is_sample()) {
        tracing::warn!(model = %default_key, name = %m.name, "the default model has RANDOM WEIGHTS (a sample): its detections show the pipeline works and mean nothing");
    }
    // Many clients (or a slowloris) must not run the process out of descriptors:
    // the soft limit goes up to the hard one, and connections stay below it.
    let descriptors = listener::raise_descriptor_limit().unwrap_or(1024);
    let ceiling = listener::default_max_connections(descriptors);
    let max_connections = match args.max_connections {
        Some(n) if n > ceiling => {
            tracing::warn!(asked = n as u64, allowed = ceiling as u64, descriptor_limit = descriptors, "--max-connections is above the descriptor limit less 128; capped");
            ceiling
        }
        Some(n) => n.max(1),
        None => ceiling,
    };
    let conn_limits = ConnLimits { header_timeout: args.header_timeout, body_timeout: args.body_timeout, idle_timeout: args.idle_timeout, max_connections };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, max_connections = max_connections as u64, descriptor_limit = descriptors, header_timeout_s = args.header_timeout.as_secs_f64(), body_timeout_s = args.body_timeout.as_secs_f64(), idle_timeout_s = args.idle_timeout.as_secs_f64(), "listening");
    // SIGTERM (ECS, Kubernetes, docker stop) or Ctrl-C: stop admitting, close
    // the listener, let accepted requests finish within --drain-timeout, exit 0.
    let signalled = Arc::new(tokio::sync::Notify::new());
    let drain_timeout = args.drain_timeout;
    let on_signal = {
        let (admission, signalled, jobs) = (admission.clone(), signalled.clone(), jobs.clone());
        async move {
            let signal = shutdown_signal().await;
            tracing::info!(signal, running = admission.running(), waiting = admission.waiting(), drain_timeout_s = drain_timeout.as_secs_f64(), "draining: new requests get 503, accepted ones finish");
            admission.start_draining();
            // Asynchronous requests stop at their next batch and report "Cancelled".
            jobs.stop_all();
            signalled.notify_one();
        }
    };
    let server = listener::serve(listener, app, conn_limits, connections, on_signal);
    let drain_deadline = async {
        signalled.notified().await;
        tokio::time::sleep(drain_timeout).await;
    };
    tokio::select! {
        () = server => {
            tracing::info!("drained; exiting");
        }
        () = drain_deadline => {
            tracing::warn!(running = admission.running(), waiting = admission.waiting(), "--drain-timeout passed with requests unfinished; exiting");
        }
    }
    Ok(())
}

/// One line at start: which registry this process reads (as typed and as
/// resolved) and whether it answered; a warning when the default model is
/// unknown to a registry that answers (`--model typo`), or when it never answered.
async fn report_registry(cache: &d2serve_engine::cache::ModelCache, default_key: &str) {
    let registry = cache.registry();
    let (location, identity) = (registry.location(), registry.identity());
    let index = cache.index().await;
    let status = cache.index_status();
    match (index, status.unreachable.clone()) {
        (Ok(index), None) => {
            let published: Vec<&str> = index.models.keys().map(String::as_str).collect();
            tracing::info!(registry = %location, resolved = %identity, answered = true, models = published.len() as u64, "registry");
            if !index.models.contains_key(default_key) {
                tracing::warn!(model = %default_key, registry = %location, published = %published.join(", "), "the default model is not published in this registry: requests that name no model get 404 until `zoo publish` puts it there (or start with --model naming a published one)");
            }
        }
        (Ok(_), Some(reason)) => {
            tracing::warn!(registry = %location, resolved = %identity, answered = false, error = %reason, index_age_s = status.age_s(), "registry: cannot be read now; serving the index this cache folder last read from it and the artifacts cached");
        }
        (Err(e), _) => {
            tracing::warn!(registry = %location, resolved = %identity, answered = false, error = %e, "registry: cannot be read and this cache folder never read it; not ready until it answers");
        }
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}

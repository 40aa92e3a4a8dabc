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
use d2serve_serve::{AppState, Config, router};

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
    let args = Args::parse();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();

    let catalog = Catalog::embedded()?;
    let default_key = catalog.registry_key(&args.default_model);
    let allow = if args.allow_hosts.trim().is_empty() {
        AllowList::default()
    } else {
        AllowList::parse(&args.allow_hosts).map_err(anyhow::Error::msg)?
    };
    let limits = CacheLimits { max_models: args.max_models, max_bytes: args.max_model_bytes };
    let cache = Arc::new(args.source.model_cache(limits).await.context("opening the registry")?);
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
    };
    let state = AppState::new(cfg, cache.clone(), fetcher);
    let app = router(state);
    tracing::info!(registry = %args.source.registry, default_model = %default_key, lambda = in_lambda, threads = args.source.session_options().intra_threads, cache_dir = %args.source.cache_dir().display(), "serve starting");

    if in_lambda {
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
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

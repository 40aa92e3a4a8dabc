//! Command-line flags that the `serve`, `batch` and `zoo` binaries share: where models
//! come from and how their sessions run, with one meaning and one env variable each.
//! Behind the `cli` feature, so library users do not pull in clap.

use std::path::PathBuf;

use d2serve_registry::{Registry, S3Config, StoreError, open_store};

use crate::cache::{CacheLimits, ModelCache, default_cache_dir};
use crate::runtime::{Device, Precision, Runtime, SessionOptions, available_cpus};

#[derive(clap::Args, Debug, Clone)]
pub struct ModelSourceArgs {
    /// Registry to load models from: file://PATH, a path, or s3://BUCKET[/PREFIX].
    #[arg(long, env = "D2_REGISTRY", default_value = "registry")]
    pub registry: String,
    /// Local folder for fetched artifacts [default: /tmp/d2serve-models on Lambda, else ~/.cache/d2serve/models].
    #[arg(long, env = "D2_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of artifacts kept in the cache folder; least recently used ones not loaded
    /// are removed to fetch another [default: the free space of its disk, e.g. Lambda's /tmp].
    #[arg(long, env = "D2_CACHE_MAX_BYTES")]
    pub cache_max_bytes: Option<u64>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// S3 endpoint for S3-compatible servers (AWS_ENDPOINT_URL works too).
    #[arg(long, env = "D2_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: the AWS environment's].
    #[arg(long, env = "D2_S3_REGION")]
    pub s3_region: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET (S3-compatible servers that lack bucket subdomains).
    #[arg(long, env = "D2_S3_PATH_STYLE")]
    pub s3_path_style: bool,
}

/// How sessions run: execution provider and threads.
#[derive(clap::Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Execution provider: cpu, cuda, or auto (CUDA if usable, else CPU).
    #[arg(long, env = "D2_DEVICE", default_value = "cpu")]
    pub device: Device,
    /// Threads per inference [default: the CPUs this process may use].
    #[arg(long, env = "D2_THREADS")]
    pub threads: Option<usize>,
    /// Runtime of the graphs: onnxruntime, openvino (CPU), or auto (OpenVINO for the
    /// architectures it was measured faster on and passes parity for, else ONNX Runtime).
    #[arg(long, env = "D2_RUNTIME", default_value = "onnxruntime")]
    pub runtime: Runtime,
    /// Arithmetic precision: f32, or bf16 (OpenVINO on CPUs with AVX512_BF16 or AMX only;
    /// costs accuracy, see docs/BENCHMARKS.md).
    #[arg(long, env = "D2_PRECISION", default_value = "f32")]
    pub precision: Precision,
}

impl RuntimeArgs {
    /// The session settings these flags ask for. `auto` is resolved per session: CUDA
    /// when its provider loads, else CPU (logged).
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            device: self.device,
            intra_threads: self.threads.unwrap_or_else(available_cpus),
            runtime: self.runtime,
            precision: self.precision,
            ..Default::default()
        }
    }
}

impl ModelSourceArgs {
    pub fn s3_config(&self) -> S3Config {
        S3Config { endpoint: self.s3_endpoint.clone(), region: self.s3_region.clone(), force_path_style: self.s3_path_style }
    }

    pub fn session_options(&self) -> SessionOptions {
        self.runtime.session_options()
    }

    /// The local artifact cache: --cache-dir, else the default (logged at start, so
    /// nobody is surprised by a folder in their home).
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    /// Opens the registry and returns a model cache over it, bounded by `limits`.
    pub async fn model_cache(&self, limits: CacheLimits) -> Result<ModelCache, StoreError> {
        let store = open_store(&self.registry, &self.s3_config()).await?;
        Ok(ModelCache::new(
            Registry::new(store),
            self.cache_dir(),
            self.session_options(),
            limits,
        )
        .with_disk_budget(self.cache_max_bytes))
    }
}

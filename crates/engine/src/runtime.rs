//! The runtimes a converted graph runs in, behind one [`Model`]: ONNX Runtime
//! (CPU, CUDA; loaded at run time, `ort` with `load-dynamic`) and OpenVINO
//! (CPU; [`crate::openvino`]), and which one `--runtime auto` picks.
//!
//! The library is looked for in `ORT_DYLIB_PATH`, then beside the running
//! binary, then where `scripts/install-ort.sh` puts it (`third_party/ort/`),
//! then in `/opt/onnxruntime/lib` (the container images).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::Tensor;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked in {looked}); run scripts/install-ort.sh, or set ORT_DYLIB_PATH to a libonnxruntime.so from the PyPI onnxruntime==1.31.1 wheel (onnxruntime/capi/)"
    )]
    LibraryNotFound { looked: String },
    #[error("cannot load ONNX Runtime from {path}: {detail}")]
    LibraryLoad { path: String, detail: String },
    #[error("CUDA was requested but is not usable: {0}")]
    Cuda(String),
    #[error("cannot load model {path}: {detail}")]
    Model { path: String, detail: String },
    #[error("inference failed: {0}")]
    Run(String),
    #[error("the model's output `{name}` is malformed: {detail}")]
    Output { name: String, detail: String },
    #[error(
        "OpenVINO library not found (looked in {looked}); run scripts/install-openvino.sh, or set OPENVINO_LIB_DIR to the libs/ folder of the PyPI openvino==2026.4.1 wheel; or use --runtime onnxruntime"
    )]
    OpenVinoNotFound { looked: String },
    #[error("precision {precision} is not available: {detail}")]
    PrecisionUnsupported { precision: Precision, detail: String },
}

/// Which runtime runs a model's graph (`--runtime`, `D2_RUNTIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// ONNX Runtime (CPU or CUDA, as `--device` says).
    OnnxRuntime,
    /// OpenVINO's CPU plugin.
    OpenVino,
    /// Per model: OpenVINO where it was measured faster and passes the parity
    /// contract for the model's architecture, else ONNX Runtime (logged).
    Auto,
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OnnxRuntime => "onnxruntime",
            Self::OpenVino => "openvino",
            Self::Auto => "auto",
        })
    }
}

impl std::str::FromStr for Runtime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "onnxruntime" | "ort" => Ok(Self::OnnxRuntime),
            "openvino" => Ok(Self::OpenVino),
            "auto" => Ok(Self::Auto),
            _ => Err(format!("unknown runtime `{s}`: use onnxruntime, openvino or auto")),
        }
    }
}

/// The arithmetic precision of inference (`--precision`, `D2_PRECISION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout: what the parity contract is stated for. The default.
    F32,
    /// bfloat16 where OpenVINO's CPU plugin chooses (AVX512_BF16 or AMX CPUs only;
    /// refused by name elsewhere). Opt-in: its accuracy cost is in docs/BENCHMARKS.md.
    Bf16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "fp32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(format!("unknown precision `{s}`: use f32 or bf16")),
        }
    }
}

/// Execution provider choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
    /// CUDA when it works, else CPU (with a log line).
    Auto,
}

impl std::fmt::Display for Device {
    /// The name `--device` takes (and `FromStr` reads back).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Auto => "auto",
        })
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "auto" => Ok(Self::Auto),
            _ => Err(format!("unknown device `{s}`: use cpu, cuda or auto")),
        }
    }
}

fn is_ort_lib(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "onnxruntime.dll" || n == "libonnxruntime.dylib")
}

fn find_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_ort_lib(p) && p.is_file())
        .collect();
    // Prefer the most specific name (libonnxruntime.so.1.31.1 over libonnxruntime.so).
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

/// Where the ONNX Runtime library is, by the documented search order.
pub fn find_library() -> Result<PathBuf, RuntimeError> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        looked.push(format!("ORT_DYLIB_PATH={}", p.display()));
    }
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(dir.clone());
        // cargo test binaries live in target/<profile>/deps.
        if let Some(parent) = dir.parent() {
            dirs.push(parent.to_path_buf());
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../third_party/ort"));
    dirs.push(PathBuf::from("/opt/onnxruntime/lib"));
    for d in dirs {
        if let Some(p) = find_in(&d) {
            return Ok(p);
        }
        looked.push(d.display().to_string());
    }
    Err(RuntimeError::LibraryNotFound { looked: looked.join(", ") })
}

static ENVIRONMENT: OnceLock<Result<(ort::environment::Environment, PathBuf), RuntimeError>> = OnceLock::new();

/// The process-wide ONNX Runtime environment (loaded once; a failure is
/// kept and returned as it was, not re-wrapped on every call).
pub fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let path = find_library()?;
        let load = |detail: String| RuntimeError::LibraryLoad { path: path.display().to_string(), detail };
        let builder = ort::init_from(&path).map_err(|e| load(e.to_string()))?;
        let env = builder.with_name("d2serve").build().map_err(|e| load(format!("cannot start it: {e}")))?;
        Ok((env, path))
    });
    match result {
        Ok((env, _)) => Ok(env),
        Err(e) => Err(e.clone()),
    }
}

/// CPUs this process may use: honours cgroup quotas (containers, Lambda).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub device: Device,
    pub intra_threads: usize,
    /// Write the optimized graph here (ONNX Runtime's offline optimization).
    pub optimized_model_path: Option<PathBuf>,
    /// ONNX Runtime graph optimizations (on by default; off only to measure numerics).
    pub optimize: bool,
    pub runtime: Runtime,
    pub precision: Precision,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            intra_threads: available_cpus(),
            optimized_model_path: None,
            optimize: true,
            runtime: Runtime::OnnxRuntime,
            precision: Precision::F32,
        }
    }
}

/// Raw outputs of a converted graph, in the input image's frame.
#[derive(Debug, Clone, Default)]
pub struct RawDetections {
    pub boxes: Vec<[f32; 4]>,
    pub scores: Vec<f32>,
    pub classes: Vec<i64>,
    /// `N × M × M`, row-major.
    pub mask_probs: Vec<f32>,
    pub mask_size: usize,
    /// With `--debug-outputs` graphs: RPN proposals and their logits.
    pub proposals: Option<(Vec<[f32; 4]>, Vec<f32>)>,
    /// With `--debug-outputs` graphs: the backbone features (`p2`.. or `res4`), shape and values.
    pub features: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// A loaded converted graph, in the runtime it was given to.
pub struct Model {
    backend: Backend,
    device: Device,
    runtime: Runtime,
    precision: Precision,
}

enum Backend {
    Ort(OrtModel),
    OpenVino(crate::openvino::OpenVinoModel),
}

impl Model {
    /// Load `path` in the runtime `opts.runtime` names; `auto` decides with
    /// [`auto_choice`] from `spec`, the architecture the graph was built from
    /// (None: ONNX Runtime).
    pub fn load(path: &Path, opts: &SessionOptions, spec: Option<&d2serve_registry::spec::ModelSpec>) -> Result<Self, RuntimeError> {
        let runtime = match opts.runtime {
            Runtime::Auto => {
                let choice = auto_choice(spec, opts);
                tracing::info!(path = %path.display(), runtime = %choice.runtime, reason = %choice.reason, "runtime auto");
                choice.runtime
            }
            r => r,
        };
        if opts.precision == Precision::Bf16 && runtime != Runtime::OpenVino {
            return Err(RuntimeError::PrecisionUnsupported {
                precision: opts.precision,
                detail: "only the OpenVINO runtime runs bf16; add --runtime openvino".into(),
            });
        }
        match runtime {
            Runtime::OpenVino => {
                if opts.device == Device::Cuda {
                    return Err(RuntimeError::Cuda("the OpenVINO runtime runs on the CPU only; use --runtime onnxruntime for --device cuda".into()));
                }
                match crate::openvino::OpenVinoModel::load(path, opts) {
                    Ok(m) => {
                        let precision = m.precision();
                        Ok(Self { backend: Backend::OpenVino(m), device: Device::Cpu, runtime, precision })
                    }
                    // A graph OpenVINO cannot read or compile (DeformConv) runs in
                    // ONNX Runtime instead: the model is served, the log says why.
                    Err(RuntimeError::Model { detail, .. }) if opts.precision == Precision::F32 => {
                        tracing::warn!(path = %path.display(), reason = %detail, "OpenVINO cannot run this model; running it in ONNX Runtime");
                        let (m, device) = OrtModel::load(path, opts)?;
                        Ok(Self { backend: Backend::Ort(m), device, runtime: Runtime::OnnxRuntime, precision: Precision::F32 })
                    }
                    Err(e) => Err(e),
                }
            }
            _ => {
                let (m, device) = OrtModel::load(path, opts)?;
                Ok(Self { backend: Backend::Ort(m), device, runtime: Runtime::OnnxRuntime, precision: Precision::F32 })
            }
        }
    }

    /// Where the session runs (`auto` resolved to what worked).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The runtime it runs in (`auto` resolved).
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// The precision it runs in, as the runtime reports it.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Run on a resized RGB image (`height × width × 3`, row-major).
    pub fn run(&mut self, rgb: &[u8], height: usize, width: usize) -> Result<RawDetections, RuntimeError> {
        match &mut self.backend {
            Backend::Ort(m) => m.run(rgb, height, width),
            Backend::OpenVino(m) => m.run(rgb, height, width),
        }
    }
}

/// What `--runtime auto` picks for a model, and why (logged at load).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AutoChoice {
    pub runtime: Runtime,
    pub reason: String,
}

/// `--runtime auto`: OpenVINO only for an architecture it was measured faster on
/// AND passed the parity contract for (docs/BENCHMARKS.md, "Runtimes"), only in
/// f32 unless bf16 was asked for, and only where its library is installed;
/// else ONNX Runtime. CUDA is ONNX Runtime's.
pub fn auto_choice(spec: Option<&d2serve_registry::spec::ModelSpec>, opts: &SessionOptions) -> AutoChoice {
    let ort = |reason: String| AutoChoice { runtime: Runtime::OnnxRuntime, reason };
    if opts.device != Device::Cpu {
        return ort(format!("--device {}: CUDA runs in ONNX Runtime", opts.device));
    }
    let Some(spec) = spec else {
        return ort("the manifest does not describe the architecture".into());
    };
    let evidence = match crate::runtimes::openvino_verified(spec) {
        Ok(evidence) => evidence,
        Err(why) => return ort(why),
    };
    if let Err(e) = crate::openvino::load_library() {
        return ort(format!("OpenVINO is not installed ({e})"));
    }
    AutoChoice { runtime: Runtime::OpenVino, reason: evidence }
}

/// The runtime a model of architecture `spec` will run in under `opts`, and why:
/// `auto` resolved, and OpenVINO's fallback for graphs it cannot read foreseen.
pub fn planned_runtime(spec: Option<&d2serve_registry::spec::ModelSpec>, opts: &SessionOptions) -> AutoChoice {
    match opts.runtime {
        Runtime::Auto => auto_choice(spec, opts),
        Runtime::OnnxRuntime => AutoChoice { runtime: Runtime::OnnxRuntime, reason: "--runtime onnxruntime".into() },
        Runtime::OpenVino => match spec.map(crate::runtimes::family) {
            Some(family) if family.contains("-deformable") => AutoChoice {
                runtime: Runtime::OnnxRuntime,
                reason: format!("{family}: OpenVINO cannot read DeformConv; falls back to ONNX Runtime"),
            },
            _ => AutoChoice { runtime: Runtime::OpenVino, reason: "--runtime openvino".into() },
        },
    }
}

/// Outputs of a converted graph, read by name from whichever runtime ran it.
pub(crate) fn assemble(
    get_f32: &dyn Fn(&str) -> Result<(Vec<i64>, Vec<f32>), RuntimeError>,
    get_i64: &dyn Fn(&str) -> Result<Vec<i64>, RuntimeError>,
    output_names: &[String],
) -> Result<RawDetections, RuntimeError> {
    let (_, boxes) = get_f32("boxes")?;
    let (_, scores) = get_f32("scores")?;
    let (mshape, mask_probs) = get_f32("mask_probs")?;
    let classes = get_i64("classes")?;
    let n = scores.len();
    if boxes.len() != 4 * n || classes.len() != n || mshape.len() != 3 || mshape[0] as usize != n {
        return Err(RuntimeError::Output {
            name: "boxes/scores/classes/mask_probs".into(),
            detail: format!("inconsistent sizes for {n} detections"),
        });
    }
    let (proposals, features) = if output_names.iter().any(|o| o == "proposals") {
        let (_, p) = get_f32("proposals")?;
        let (_, l) = get_f32("proposal_logits")?;
        let mut features = Vec::new();
        for name in output_names.iter().filter(|n| n.starts_with("feature.")) {
            let (shape, v) = get_f32(name)?;
            let short = name.trim_start_matches("feature.").to_string();
            features.push((short, shape.iter().map(|&d| d as usize).collect(), v));
        }
        (Some((p.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(), l)), features)
    } else {
        (None, Vec::new())
    };
    Ok(RawDetections {
        boxes: boxes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
        scores,
        classes,
        mask_probs,
        mask_size: mshape[2] as usize,
        proposals,
        features,
    })
}

/// A session of ONNX Runtime.
struct OrtModel {
    session: Session,
    outputs: Vec<String>,
}

impl OrtModel {
    fn load(path: &Path, opts: &SessionOptions) -> Result<(Self, Device), RuntimeError> {
        let env = environment()?;
        let err = |e: &dyn std::fmt::Display| RuntimeError::Model {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        let mut b = Session::builder(env)
            .map_err(|e| err(&e))?
            .with_optimization_level(if opts.optimize { GraphOptimizationLevel::All } else { GraphOptimizationLevel::Disable })
            .map_err(|e| err(&e))?
            .with_intra_threads(opts.intra_threads.max(1))
            .map_err(|e| err(&e))?;
        if let Some(p) = &opts.optimized_model_path {
            b = b.with_optimized_model_path(p).map_err(|e| err(&e))?;
        }
        let (mut b, device) = with_device(b, opts.device)?;
        let session = b.commit_from_file(path).map_err(|e| err(&e))?;
        let outputs = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok((Self { session, outputs }, device))
    }

    fn run(&mut self, rgb: &[u8], height: usize, width: usize) -> Result<RawDetections, RuntimeError> {
        let input = Tensor::from_array(([height, width, 3usize], rgb.to_vec().into_boxed_slice()))
            .map_err(|e| RuntimeError::Run(e.to_string()))?;
        let out = self
            .session
            .run(ort::inputs!["image" => input])
            .map_err(|e| RuntimeError::Run(e.to_string()))?;
        let missing = |name: &str| RuntimeError::Output { name: name.into(), detail: "missing".into() };
        let get_f32 = |name: &str| -> Result<(Vec<i64>, Vec<f32>), RuntimeError> {
            let v = out.get(name).ok_or_else(|| missing(name))?;
            let (shape, data) = v.try_extract_tensor::<f32>().map_err(|e| RuntimeError::Output { name: name.into(), detail: e.to_string() })?;
            Ok((shape.iter().copied().collect(), data.to_vec()))
        };
        let get_i64 = |name: &str| -> Result<Vec<i64>, RuntimeError> {
            let v = out.get(name).ok_or_else(|| missing(name))?;
            Ok(v.try_extract_tensor::<i64>().map_err(|e| RuntimeError::Output { name: name.into(), detail: e.to_string() })?.1.to_vec())
        };
        assemble(&get_f32, &get_i64, &self.outputs)
    }
}

/// Register the CUDA execution provider for `cuda` and `auto`. Its library
/// (`libonnxruntime_providers_cuda.so`, from the `onnxruntime-gpu` wheel:
/// `scripts/install-ort.sh --gpu`) and CUDA 13 + cuDNN 9 must be loadable;
/// `cuda` fails with ONNX Runtime's reason, `auto` logs it and stays on CPU.
/// TF32 stays off: outputs must match Detectron2's float32 reference.
fn with_device(b: SessionBuilder, device: Device) -> Result<(SessionBuilder, Device), RuntimeError> {
    if device == Device::Cpu {
        return Ok((b, Device::Cpu));
    }
    let cuda = ort::ep::CUDA::default().with_tf32(false).build().error_on_failure();
    match b.with_execution_providers([cuda]) {
        Ok(b) => Ok((b, Device::Cuda)),
        Err(e) if device == Device::Auto => {
            tracing::info!(reason = %e, "device auto: CUDA is not usable, running on CPU");
            Ok((e.recover(), Device::Cpu))
        }
        Err(e) => Err(RuntimeError::Cuda(format!(
            "{}. The CUDA provider needs the onnxruntime-gpu library (scripts/install-ort.sh --gpu, then ORT_DYLIB_PATH=third_party/ort-gpu/libonnxruntime.so.1.31.1) and CUDA 13 + cuDNN 9 on the library path; or use --device cpu|auto",
            e.to_string().trim_end_matches('.')
        ))),
    }
}

#[cfg(test)]
mod device_name_tests {
    use super::Device;

    #[test]
    fn device_names_round_trip() {
        for d in [Device::Cpu, Device::Cuda, Device::Auto] {
            assert_eq!(d.to_string().parse::<Device>(), Ok(d));
        }
        assert_eq!(Device::Cuda.to_string(), "cuda");
    }
}

#[cfg(test)]
mod runtime_name_tests {
    use super::{Precision, Runtime};

    #[test]
    fn runtime_and_precision_names_round_trip() {
        for r in [Runtime::OnnxRuntime, Runtime::OpenVino, Runtime::Auto] {
            assert_eq!(r.to_string().parse::<Runtime>(), Ok(r));
        }
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("tensorrt".parse::<Runtime>().unwrap_err().contains("onnxruntime, openvino or auto"));
    }
}

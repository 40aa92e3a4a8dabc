//! OpenVINO (CPU), the second runtime: the same converted graph read by
//! OpenVINO's ONNX frontend and compiled for its CPU plugin. Its C library
//! is loaded at run time (`openvino-sys` with `runtime-linking`) from the
//! PyPI `openvino` wheel's libraries.
//!
//! The library is looked for in `OPENVINO_LIB_DIR` (a folder, or the file),
//! then beside the running binary, then where `scripts/install-openvino.sh`
//! puts it (`third_party/openvino/`), then in `/opt/openvino/lib` (the
//! container images). The wheel ships only the versioned name
//! (`libopenvino_c.so.2641`), so the file is found by prefix and loaded by
//! path; the CPU plugin and the ONNX frontend are found beside it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use openvino::{Core, DeviceType, ElementType, InferRequest, PropertyKey, RwPropertyKey, Shape, Tensor};

use crate::runtime::{Precision, RawDetections, RuntimeError, SessionOptions};

fn is_c_api_lib(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libopenvino_c.so"))
}

fn find_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).filter(|p| is_c_api_lib(p) && p.is_file()).collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

/// Where OpenVINO's C library is, by the documented search order.
pub fn find_library() -> Result<PathBuf, RuntimeError> {
    let mut looked = Vec::new();
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("OPENVINO_LIB_DIR") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        dirs.push(p);
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(dir.join("openvino"));
        if let Some(parent) = dir.parent() {
            dirs.push(parent.join("openvino"));
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../third_party/openvino"));
    dirs.push(PathBuf::from("/opt/openvino/lib"));
    for d in dirs {
        if let Some(p) = find_in(&d) {
            return Ok(p);
        }
        looked.push(d.display().to_string());
    }
    Err(RuntimeError::OpenVinoNotFound { looked: looked.join(", ") })
}

static LIBRARY: OnceLock<Result<PathBuf, RuntimeError>> = OnceLock::new();

/// Load OpenVINO's library once per process; a failure is kept and returned as it was.
pub fn load_library() -> Result<&'static Path, RuntimeError> {
    let result = LIBRARY.get_or_init(|| {
        let path = find_library()?;
        openvino_sys::library::load_from(path.clone()).map_err(|detail| RuntimeError::LibraryLoad { path: path.display().to_string(), detail })?;
        Ok(path)
    });
    match result {
        Ok(p) => Ok(p.as_path()),
        Err(e) => Err(e.clone()),
    }
}

/// Does this CPU run bf16 natively in OpenVINO (AVX512_BF16 or AMX)? OpenVINO's CPU
/// plugin names it in its optimization capabilities; without it a bf16 hint is
/// silently run in f32, so d2serve refuses it by name instead.
pub fn cpu_has_bf16() -> Result<bool, RuntimeError> {
    load_library()?;
    let core = Core::new().map_err(|e| RuntimeError::Run(format!("OpenVINO: {e}")))?;
    let caps = core.get_property(&DeviceType::CPU, &PropertyKey::DeviceCapabilities).map_err(|e| RuntimeError::Run(format!("OpenVINO: {e}")))?;
    Ok(caps.split_whitespace().any(|c| c == "BF16"))
}

/// A converted graph compiled by OpenVINO for the CPU.
pub struct OpenVinoModel {
    // Field order is drop order: the request before the compiled model before the core.
    request: InferRequest,
    _compiled: openvino::CompiledModel,
    _core: Core,
    outputs: Vec<String>,
    precision: Precision,
}

impl OpenVinoModel {
    pub fn load(path: &Path, opts: &SessionOptions) -> Result<Self, RuntimeError> {
        load_library()?;
        let err = |e: &dyn std::fmt::Display| RuntimeError::Model { path: path.display().to_string(), detail: format!("OpenVINO: {e}") };
        if opts.precision == Precision::Bf16 && !cpu_has_bf16()? {
            return Err(RuntimeError::PrecisionUnsupported {
                precision: opts.precision,
                detail: "this CPU has neither AVX512_BF16 nor AMX (OpenVINO would run it in f32); use --precision f32".into(),
            });
        }
        let mut core = Core::new().map_err(|e| err(&e))?;
        let threads = opts.intra_threads.max(1).to_string();
        let precision = match opts.precision {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        };
        // One inference at a time per model (the engine's slots run models, not
        // streams): latency mode, one stream, the slot's threads; the precision is
        // always named, since OpenVINO's default on a bf16-capable CPU is bf16.
        core.set_properties(
            &DeviceType::CPU,
            [
                (RwPropertyKey::HintPerformanceMode, "LATENCY"),
                (RwPropertyKey::NumStreams, "1"),
                (RwPropertyKey::InferenceNumThreads, threads.as_str()),
                (RwPropertyKey::HintInferencePrecision, precision),
            ],
        )
        .map_err(|e| err(&e))?;
        let file = path.to_str().ok_or_else(|| err(&"the path is not UTF-8"))?;
        let model = core.read_model_from_file(file, "").map_err(|e| err(&e))?;
        let mut compiled = core.compile_model(&model, DeviceType::CPU).map_err(|e| err(&e))?;
        // What the plugin will actually run in, read back (a hint can be overridden).
        let effective = compiled.get_property(&PropertyKey::Rw(RwPropertyKey::HintInferencePrecision)).map_err(|e| err(&e))?.to_string();
        let precision = match effective.as_str() {
            "bf16" => Precision::Bf16,
            _ => Precision::F32,
        };
        let n = compiled.get_output_size().map_err(|e| err(&e))?;
        let mut outputs = Vec::with_capacity(n);
        for i in 0..n {
            outputs.push(compiled.get_output_by_index(i).and_then(|o| o.get_name()).map_err(|e| err(&e))?);
        }
        let request = compiled.create_infer_request().map_err(|e| err(&e))?;
        Ok(Self { request, _compiled: compiled, _core: core, outputs, precision })
    }

    /// The precision the compiled model runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Run on a resized RGB image (`height × width × 3`, row-major).
    pub fn run(&mut self, rgb: &[u8], height: usize, width: usize) -> Result<RawDetections, RuntimeError> {
        let run = |e: openvino::InferenceError| RuntimeError::Run(format!("OpenVINO: {e}"));
        let shape = Shape::new(&[height as i64, width as i64, 3]).map_err(run)?;
        let mut input = Tensor::new(ElementType::U8, &shape).map_err(run)?;
        input.get_raw_data_mut().map_err(run)?.copy_from_slice(rgb);
        self.request.set_tensor("image", &input).map_err(run)?;
        self.request.infer().map_err(run)?;
        let request = &self.request;
        let tensor = |name: &str| -> Result<(Vec<i64>, Tensor), RuntimeError> {
            let t = request.get_tensor(name).map_err(|e| RuntimeError::Output { name: name.into(), detail: e.to_string() })?;
            let shape = t.get_shape().map_err(|e| RuntimeError::Output { name: name.into(), detail: e.to_string() })?.get_dimensions().to_vec();
            Ok((shape, t))
        };
        let get_f32 = |name: &str| -> Result<(Vec<i64>, Vec<f32>), RuntimeError> {
            let (shape, t) = tensor(name)?;
            let data = t.get_data::<f32>().map_err(|e| RuntimeError::Output { name: name.into(), detail: e.to_string() })?.to_vec();
            Ok((shape, data))
        };
        let outputs = self.outputs.clone();
        crate::runtime::assemble(
            &get_f32,
            &|name: &str| {
                let (_, t) = tensor(name)?;
                Ok(t.get_data::<i64>().map_err(|e| RuntimeError::Output { name: name.into(), detail: e.to_string() })?.to_vec())
            },
            &outputs,
        )
    }
}

//! `zoo bench`: cold start split into its stages and warm latency of a model
//! served from a local registry, the way `serve` loads it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use d2serve_registry::Registry;
use d2serve_registry::store::LocalStore;
use serde::Serialize;

use crate::cache::{CacheLimits, LoadError, ModelCache};
use crate::decode::RgbImage;
use crate::pipeline::{PredictError, Settings};
use crate::runtime::{AutoChoice, Device, Precision, Runtime, SessionOptions, auto_choice};

/// One runtime's figures in a bench run.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeFigures {
    /// The runtime the graph ran in (`auto` resolved).
    pub runtime: Runtime,
    pub precision: Precision,
    /// The execution provider (`auto` resolved).
    pub device: Device,
    /// Reading the graph and compiling it for this machine.
    pub cold_session_s: f64,
    pub cold_first_inference_s: f64,
    /// The first inference at a second input shape (the image cropped to 3/4 of
    /// its height): what a request of a size not seen before costs.
    pub new_shape_first_s: f64,
    /// The next inference at that shape.
    pub new_shape_second_s: f64,
    pub warm_p50_s: f64,
    pub warm_p95_s: f64,
    pub warm_min_s: f64,
    /// warm_p50_s over the first runtime's.
    pub warm_p50_ratio: f64,
    pub detections: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub key: String,
    pub image_hw: [usize; 2],
    pub resized_hw: [usize; 2],
    /// The first runtime measured (the one asked for): its figures are also
    /// `runtimes[0]`.
    pub runtime: Runtime,
    pub precision: Precision,
    pub device: Device,
    pub threads: usize,
    pub optimize: bool,
    pub cold_fetch_s: f64,
    pub cold_verify_s: f64,
    pub cold_session_s: f64,
    pub cold_first_inference_s: f64,
    pub cold_total_s: f64,
    pub warm_runs: usize,
    pub warm_p50_s: f64,
    pub warm_p95_s: f64,
    pub warm_min_s: f64,
    pub detections: usize,
    /// Every runtime measured, warm rounds interleaved (one run of each per round).
    pub runtimes: Vec<RuntimeFigures>,
    /// What `--runtime auto` picks for this model, and why.
    pub auto: AutoChoice,
    pub peak_rss_mb: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Predict(#[from] PredictError),
}

/// Peak resident set size of this process (Linux `VmHWM`), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The runtimes worth comparing with `first` on this machine: ONNX Runtime
/// f32, OpenVINO f32 where it is installed, and OpenVINO bf16 where the CPU has
/// native bf16; `first` leads, each configuration once.
pub fn comparison(first: &SessionOptions) -> Vec<SessionOptions> {
    let mut all = vec![first.clone()];
    if first.device != Device::Cpu {
        return all;
    }
    let mut candidates = vec![SessionOptions { runtime: Runtime::OnnxRuntime, precision: Precision::F32, ..first.clone() }];
    if crate::openvino::load_library().is_ok() {
        candidates.push(SessionOptions { runtime: Runtime::OpenVino, precision: Precision::F32, ..first.clone() });
        if crate::openvino::cpu_has_bf16().unwrap_or(false) {
            candidates.push(SessionOptions { runtime: Runtime::OpenVino, precision: Precision::Bf16, ..first.clone() });
        }
    }
    for c in candidates {
        if !all.iter().any(|a| a.runtime == c.runtime && a.precision == c.precision) {
            all.push(c);
        }
    }
    all
}

/// The top 3/4 of `image`: another input shape.
fn cropped(image: &RgbImage) -> RgbImage {
    let height = (image.height * 3 / 4).max(1);
    RgbImage { height, width: image.width, data: image.data[..height * image.width * 3].to_vec() }
}

/// Load `key` from the registry folder `registry` once per entry of `sessions`
/// (each into a fresh cache under `work`), time each cold-start stage, then
/// `runs` warm rounds on `image`, one inference of each runtime per round.
pub async fn bench(
    registry: &Path,
    key: &str,
    work: &Path,
    image: &RgbImage,
    runs: usize,
    sessions: &[SessionOptions],
) -> Result<BenchReport, BenchError> {
    let first = sessions.first().cloned().unwrap_or_default();
    let reg = Registry::new(Arc::new(LocalStore::new(registry)));
    let settings = Settings::default();
    let other_shape = cropped(image);
    let t = Instant::now();
    let mut models = Vec::new();
    let mut figures = Vec::new();
    let mut fetch = None;
    let mut cold_total = 0.0;
    for (i, session) in sessions.iter().enumerate() {
        let limits = CacheLimits { max_models: 1, max_bytes: u64::MAX };
        let cache = ModelCache::new(reg.clone(), work.join(format!("cache{i}")), session.clone(), limits);
        let model = cache.get(key).await?;
        let load = cache.stats.lock().unwrap_or_else(|p| p.into_inner()).last_load.clone().unwrap_or_default();
        let t1 = Instant::now();
        let detections = model.predict(image, &settings)?.instances.len();
        let first_s = t1.elapsed().as_secs_f64();
        if i == 0 {
            cold_total = t.elapsed().as_secs_f64();
            fetch = Some((load.fetch_s, load.verify_s));
        }
        let t2 = Instant::now();
        model.predict(&other_shape, &settings)?;
        let new_shape_first_s = t2.elapsed().as_secs_f64();
        let t3 = Instant::now();
        model.predict(&other_shape, &settings)?;
        let new_shape_second_s = t3.elapsed().as_secs_f64();
        figures.push(RuntimeFigures {
            runtime: model.runtime(),
            precision: model.precision(),
            device: model.device(),
            cold_session_s: load.session_s,
            cold_first_inference_s: first_s,
            new_shape_first_s,
            new_shape_second_s,
            warm_p50_s: 0.0,
            warm_p95_s: 0.0,
            warm_min_s: 0.0,
            warm_p50_ratio: 1.0,
            detections,
        });
        models.push((cache, model));
    }
    let mut times = vec![Vec::with_capacity(runs); models.len()];
    for _ in 0..runs {
        for ((_, model), times) in models.iter().zip(times.iter_mut()) {
            let t = Instant::now();
            model.predict(image, &settings)?;
            times.push(t.elapsed().as_secs_f64());
        }
    }
    for (f, times) in figures.iter_mut().zip(times.iter_mut()) {
        times.sort_by(f64::total_cmp);
        f.warm_p50_s = percentile(times, 0.5);
        f.warm_p95_s = percentile(times, 0.95);
        f.warm_min_s = times.first().copied().unwrap_or(0.0);
    }
    let base = figures.first().map_or(1.0, |f| f.warm_p50_s);
    for f in &mut figures {
        f.warm_p50_ratio = if base > 0.0 { f.warm_p50_s / base } else { 1.0 };
    }
    let (_, model) = &models[0];
    let auto = auto_choice(model.manifest.spec.as_ref(), &SessionOptions { runtime: Runtime::Auto, ..first.clone() });
    let (rh, rw) = crate::resize::output_size(&model.manifest.resize, image.height, image.width);
    let (fetch_s, verify_s) = fetch.unwrap_or_default();
    let f0 = figures[0].clone();
    Ok(BenchReport {
        key: key.to_string(),
        image_hw: [image.height, image.width],
        resized_hw: [rh, rw],
        runtime: f0.runtime,
        precision: f0.precision,
        device: f0.device,
        threads: first.intra_threads,
        optimize: first.optimize,
        cold_fetch_s: fetch_s,
        cold_verify_s: verify_s,
        cold_session_s: f0.cold_session_s,
        cold_first_inference_s: f0.cold_first_inference_s,
        cold_total_s: cold_total,
        warm_runs: runs,
        warm_p50_s: f0.warm_p50_s,
        warm_p95_s: f0.warm_p95_s,
        warm_min_s: f0.warm_min_s,
        detections: f0.detections,
        runtimes: figures,
        auto,
        peak_rss_mb: peak_rss_mb(),
    })
}

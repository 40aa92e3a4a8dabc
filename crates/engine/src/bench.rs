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
use crate::runtime::{Device, SessionOptions};

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub key: String,
    pub image_hw: [usize; 2],
    pub resized_hw: [usize; 2],
    /// The execution provider the session ran on (`auto` resolved).
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

/// Load `key` from the registry folder `registry` into a fresh cache under
/// `work`, time each cold-start stage, then `runs` warm inferences on `image`.
pub async fn bench(
    registry: &Path,
    key: &str,
    work: &Path,
    image: &RgbImage,
    runs: usize,
    session: SessionOptions,
) -> Result<BenchReport, BenchError> {
    let threads = session.intra_threads;
    let optimize = session.optimize;
    let reg = Registry::new(Arc::new(LocalStore::new(registry)));
    let cache = ModelCache::new(reg, work.join("cache"), session, CacheLimits { max_models: 1, max_bytes: u64::MAX });
    let t = Instant::now();
    let model = cache.get(key).await?;
    let load = cache.stats.lock().unwrap_or_else(|p| p.into_inner()).last_load.clone().unwrap_or_default();
    let settings = Settings::default();
    let t1 = Instant::now();
    let first = model.predict(image, &settings)?;
    let first_s = t1.elapsed().as_secs_f64();
    let cold_total = t.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        model.predict(image, &settings)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let (rh, rw) = crate::resize::output_size(&model.manifest.resize, image.height, image.width);
    Ok(BenchReport {
        key: key.to_string(),
        image_hw: [image.height, image.width],
        resized_hw: [rh, rw],
        device: model.device(),
        threads,
        optimize,
        cold_fetch_s: load.fetch_s,
        cold_verify_s: load.verify_s,
        cold_session_s: load.session_s,
        cold_first_inference_s: first_s,
        cold_total_s: cold_total,
        warm_runs: runs,
        warm_p50_s: percentile(&times, 0.5),
        warm_p95_s: percentile(&times, 0.95),
        warm_min_s: times.first().copied().unwrap_or(0.0),
        detections: first.instances.len(),
        peak_rss_mb: peak_rss_mb(),
    })
}

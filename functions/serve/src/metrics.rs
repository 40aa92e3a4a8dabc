//! Prometheus text metrics: requests by route and status, latency histograms
//! by model and stage, model cache hits and loads.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry((route.to_string(), status)).or_default() += 1;
    }

    /// Record `seconds` spent in `stage` (fetch, decode, infer, encode, total) for `model`.
    pub fn observe(&self, model: &str, stage: &str, seconds: f64) {
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = l.entry((model.to_string(), stage.to_string())).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn render(&self, cache: &d2serve_engine::cache::CacheStats, loaded: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP d2serve_requests_total HTTP requests by route and status.\n# TYPE d2serve_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "d2serve_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP d2serve_stage_seconds Time per request stage and model.\n# TYPE d2serve_stage_seconds histogram\n");
        for ((model, stage), h) in self.latency.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "d2serve_stage_seconds_bucket{{model=\"{model}\",stage=\"{stage}\",le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "d2serve_stage_seconds_bucket{{model=\"{model}\",stage=\"{stage}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "d2serve_stage_seconds_sum{{model=\"{model}\",stage=\"{stage}\"}} {}", h.sum);
            let _ = writeln!(out, "d2serve_stage_seconds_count{{model=\"{model}\",stage=\"{stage}\"}} {}", h.count);
        }
        let _ = writeln!(out, "# HELP d2serve_model_cache_hits_total Requests served by an already loaded model.\n# TYPE d2serve_model_cache_hits_total counter\nd2serve_model_cache_hits_total {}", cache.hits);
        let _ = writeln!(out, "# HELP d2serve_model_loads_total Models loaded from the registry.\n# TYPE d2serve_model_loads_total counter\nd2serve_model_loads_total {}", cache.loads);
        let _ = writeln!(out, "# HELP d2serve_model_evictions_total Models evicted from the session cache.\n# TYPE d2serve_model_evictions_total counter\nd2serve_model_evictions_total {}", cache.evictions);
        let _ = writeln!(out, "# HELP d2serve_models_loaded Models currently loaded.\n# TYPE d2serve_models_loaded gauge\nd2serve_models_loaded {loaded}");
        out
    }
}

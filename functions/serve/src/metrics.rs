//! Prometheus text metrics: requests by route and status, latency histograms
//! by model and stage, model cache hits and loads.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use d2serve_engine::cache::IndexStatus;

use crate::admission::Admission;
use crate::listener::ConnStats;

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
    cancelled: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry((route.to_string(), status)).or_default() += 1;
    }

    /// A request whose client disconnected at `stage` (preparing, queued, running).
    pub fn cancelled(&self, stage: &str) {
        *self.cancelled.lock().unwrap_or_else(|p| p.into_inner()).entry(stage.to_string()).or_default() += 1;
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

    pub fn render(&self, cache: &d2serve_engine::cache::CacheStats, loaded: usize, admission: &Admission, index: &IndexStatus, conns: &ConnStats) -> String {
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
        let _ = writeln!(out, "# HELP d2serve_corrupt_cache_refetches_total Cached artifacts that failed their sha256, deleted and fetched again.\n# TYPE d2serve_corrupt_cache_refetches_total counter\nd2serve_corrupt_cache_refetches_total {}", cache.corrupt_refetches);
        out.push_str("# HELP d2serve_cancelled_total Requests whose client disconnected before the answer, by where they were.\n# TYPE d2serve_cancelled_total counter\n");
        let cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
        for stage in ["preparing", "queued", "running"] {
            let _ = writeln!(out, "d2serve_cancelled_total{{stage=\"{stage}\"}} {}", cancelled.get(stage).copied().unwrap_or(0));
        }
        let c = &admission.counters;
        out.push_str("# HELP d2serve_rejected_total Inferences refused with 503 and Retry-After, by reason.\n# TYPE d2serve_rejected_total counter\n");
        for (reason, n) in [("queue_full", &c.rejected_full), ("queue_timeout", &c.rejected_timeout), ("draining", &c.rejected_draining)] {
            let _ = writeln!(out, "d2serve_rejected_total{{reason=\"{reason}\"}} {}", n.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP d2serve_queue_waiting Requests waiting for an inference slot.\n# TYPE d2serve_queue_waiting gauge\nd2serve_queue_waiting {}", admission.waiting());
        let _ = writeln!(out, "# HELP d2serve_inferences_running Inferences holding a slot.\n# TYPE d2serve_inferences_running gauge\nd2serve_inferences_running {}", admission.running());
        let _ = writeln!(out, "# HELP d2serve_inference_slots Inferences allowed at once.\n# TYPE d2serve_inference_slots gauge\nd2serve_inference_slots {}", admission.limits().slots);
        let _ = writeln!(out, "# HELP d2serve_registry_index_stale 1 while the registry cannot be read and the last index read is in use.\n# TYPE d2serve_registry_index_stale gauge\nd2serve_registry_index_stale {}", u8::from(index.is_stale()));
        let _ = writeln!(out, "# HELP d2serve_connections_open Client connections open now.\n# TYPE d2serve_connections_open gauge\nd2serve_connections_open {}", conns.open.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP d2serve_connections_accepted_total Client connections accepted.\n# TYPE d2serve_connections_accepted_total counter\nd2serve_connections_accepted_total {}", conns.accepted.load(Ordering::Relaxed));
        out.push_str("# HELP d2serve_connections_closed_total Connections the server closed, by reason (header, body and idle deadlines; the connection cap).\n# TYPE d2serve_connections_closed_total counter\n");
        for reason in ["header_timeout", "body_timeout", "idle_timeout", "at_cap", "refused_at_cap"] {
            let _ = writeln!(out, "d2serve_connections_closed_total{{reason=\"{reason}\"}} {}", conns.closed(reason));
        }
        if let Some(age) = index.age_s() {
            let _ = writeln!(out, "# HELP d2serve_registry_index_age_seconds Age of the registry index in use.\n# TYPE d2serve_registry_index_age_seconds gauge\nd2serve_registry_index_age_seconds {age:.1}");
        }
        out
    }
}

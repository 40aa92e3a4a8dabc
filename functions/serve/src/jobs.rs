//! Asynchronous inference requests (Supervisely's `*_async` routes): a
//! registry of requests by uuid, each with its stage, progress, results
//! waiting to be popped, final result and error, with the reply semantics
//! the protocol recommends for a new server: `is_inferring` stays true until
//! the final result is stored; an error sets `exception`, stage "Error" and
//! `progress.total` 0 so that older clients stop waiting instead of hanging;
//! the preparing status is never null. Requests nobody polls expire.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::ApiError;

pub const PREPARING: &str = "Preparing model for inference...";
pub const INFERENCE: &str = "Running inference...";
pub const FINISHED: &str = "Finished";
pub const CANCELLED: &str = "Cancelled";
pub const ERROR: &str = "Error";

/// How long a cleared request still answers (the reference keeps it 60 s).
const CLEARED_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct State {
    stage: &'static str,
    current: u64,
    total: u64,
    pending: VecDeque<Value>,
    final_result: Option<Value>,
    /// `result` of `get_inference_progress` (the prediction, for one image by id).
    result: Option<Value>,
    exception: Option<Value>,
    finished: bool,
    updated: Instant,
    ttl: Duration,
}

/// One asynchronous request.
#[derive(Debug)]
pub struct Job {
    pub uuid: String,
    state: Mutex<State>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Job {
    /// A request outside the registry (the synchronous video route runs the same worker).
    pub fn detached(ttl: Duration) -> Arc<Job> {
        Arc::new(Job {
            uuid: format!("{:032x}", rand::random::<u128>()),
            state: Mutex::new(State {
                stage: PREPARING,
                current: 0,
                total: 1,
                pending: VecDeque::new(),
                final_result: None,
                result: None,
                exception: None,
                finished: false,
                updated: Instant::now(),
                ttl,
            }),
            stop: AtomicBool::new(false),
        })
    }

    /// Every result so far, removed, and the error that ended the request, if one did.
    pub fn take_all(&self) -> (Vec<Value>, Option<Value>) {
        let mut s = lock(&self.state);
        (s.pending.drain(..).collect(), s.exception.clone())
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.state).updated = Instant::now();
    }

    pub fn start_inference(&self, total: u64) {
        let mut s = lock(&self.state);
        s.stage = INFERENCE;
        s.current = 0;
        s.total = total;
        s.updated = Instant::now();
    }

    /// One more result, in order.
    pub fn push(&self, prediction: Value) {
        let mut s = lock(&self.state);
        s.pending.push_back(prediction);
        s.current += 1;
        s.updated = Instant::now();
    }

    /// The worker is done: its final result (video: `{"video_ann": …}`), and
    /// for one image by id the prediction that `result` carries.
    pub fn finish(&self, final_result: Option<Value>, result: Option<Value>) {
        let mut s = lock(&self.state);
        s.final_result = final_result;
        s.result = result;
        s.stage = if self.stopped() { CANCELLED } else { FINISHED };
        s.finished = true;
        s.updated = Instant::now();
    }

    pub fn fail(&self, e: &ApiError) {
        let mut s = lock(&self.state);
        s.exception = Some(json!({"type": e.error, "message": e.detail, "traceback": null}));
        s.stage = ERROR;
        s.finished = true;
        s.updated = Instant::now();
    }

    pub fn is_finished(&self) -> bool {
        lock(&self.state).finished
    }

    /// `get_inference_progress` (and the head of `pop_inference_results`).
    fn status(&self, s: &State, force_preparing: bool) -> serde_json::Map<String, Value> {
        let error = s.stage == ERROR;
        let (current, total) = if error {
            (0, 0)
        } else if force_preparing && s.stage == PREPARING {
            (0, 1)
        } else {
            (s.current, s.total)
        };
        let progress = json!({"status": s.stage, "current": current, "total": total, "is_size": false});
        let result = match (&s.result, &s.final_result) {
            (Some(r), _) => r.clone(),
            (None, Some(_)) => Value::Bool(true),
            (None, None) => Value::Bool(false),
        };
        let v = json!({
            "uuid": self.uuid,
            "stage": s.stage,
            "progress": progress,
            "pending_results": s.pending.len(),
            "final_result": s.final_result.is_some(),
            "exception": s.exception,
            "is_inferring": !s.finished,
            "stopped": self.stopped(),
            "paused": false,
            "finished": s.finished,
            "cancel_inference": self.stopped(),
            "has_result": s.final_result.is_some(),
            "preparing_progress": progress,
            "result": result,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object"),
        }
    }

    pub fn progress_json(&self) -> Value {
        let s = lock(&self.state);
        Value::Object(self.status(&s, true))
    }

    /// Every waiting result, oldest first, removed.
    pub fn pop_json(&self) -> Value {
        let mut s = lock(&self.state);
        let mut head = self.status(&s, false);
        let popped: Vec<Value> = s.pending.drain(..).collect();
        s.updated = Instant::now();
        head.insert("pending_results".into(), Value::Array(popped));
        Value::Object(head)
    }

    pub fn final_result_json(&self) -> Value {
        lock(&self.state).final_result.clone().unwrap_or(Value::Null)
    }

    pub fn preparing_json(&self) -> Value {
        let s = lock(&self.state);
        let (current, total) = if s.stage == ERROR { (0, 0) } else { (s.current, s.total.max(1)) };
        json!({"status": s.stage, "current": current, "total": total, "is_size": false})
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct JobCounters {
    pub started: AtomicU64,
    pub refused: AtomicU64,
    pub items: AtomicU64,
}

/// The requests of this process.
#[derive(Debug)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// Requests allowed to run at once.
    pub max_running: usize,
    /// How long a request nobody touches is kept.
    pub ttl: Duration,
    pub counters: JobCounters,
}

impl Jobs {
    pub fn new(max_running: usize, ttl: Duration) -> Self {
        Self { jobs: Mutex::new(HashMap::new()), max_running, ttl, counters: JobCounters::default() }
    }

    fn sweep(jobs: &mut HashMap<String, Arc<Job>>) {
        let now = Instant::now();
        jobs.retain(|_, j| {
            let s = lock(&j.state);
            now.duration_since(s.updated) < s.ttl
        });
    }

    /// A new request in the preparing stage, unless `max_running` run already (503).
    pub fn create(&self) -> Result<Arc<Job>, ApiError> {
        let mut jobs = lock(&self.jobs);
        Self::sweep(&mut jobs);
        let running = jobs.values().filter(|j| !j.is_finished()).count();
        if running >= self.max_running {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_async_requests",
                format!("{running} asynchronous requests are running (--max-async-requests {}); try again when one ends", self.max_running),
            )
            .retry_after(10));
        }
        let job = Job::detached(self.ttl);
        let uuid = job.uuid.clone();
        jobs.insert(uuid, job.clone());
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        Ok(job)
    }

    /// The request named by `state.inference_request_uuid`: 400 without one, 404 for an unknown one.
    pub fn get(&self, state: &Value) -> Result<Arc<Job>, ApiError> {
        let uuid = state
            .get("inference_request_uuid")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("missing_field", "Error: 'inference_request_uuid' is required."))?;
        let mut jobs = lock(&self.jobs);
        Self::sweep(&mut jobs);
        jobs.get(uuid).cloned().ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_request", format!("no inference request {uuid} (finished ones are kept while polled, and {} s after the last poll)", self.ttl.as_secs()))
        })
    }

    /// `clear_inference_request`: stop it, and forget it a minute later.
    pub fn clear(&self, state: &Value) -> Result<(), ApiError> {
        match self.get(state) {
            Ok(job) => {
                job.stop();
                lock(&job.state).ttl = CLEARED_TTL;
                Ok(())
            }
            Err(e) if e.status == StatusCode::NOT_FOUND => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// SIGTERM: every running request stops at its next batch.
    pub fn stop_all(&self) {
        for j in lock(&self.jobs).values() {
            j.stop();
        }
    }

    /// (preparing or running, finished, failed or cancelled) requests kept now.
    pub fn census(&self) -> [(&'static str, usize); 4] {
        let jobs = lock(&self.jobs);
        let mut c = [("running", 0), ("finished", 0), ("cancelled", 0), ("error", 0)];
        for j in jobs.values() {
            let s = lock(&j.state);
            let i = match s.stage {
                FINISHED => 1,
                CANCELLED => 2,
                ERROR => 3,
                _ => 0,
            };
            c[i].1 += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid_state(job: &Job) -> Value {
        json!({"inference_request_uuid": job.uuid})
    }

    #[test]
    fn progress_follows_the_recommended_semantics() {
        let jobs = Jobs::new(2, Duration::from_secs(60));
        let job = jobs.create().unwrap();
        let p = job.progress_json();
        assert_eq!((p["stage"].as_str(), p["progress"]["total"].as_u64(), p["is_inferring"].as_bool()), (Some(PREPARING), Some(1), Some(true)));
        assert!(job.preparing_json()["status"].is_string(), "never a null status");
        job.start_inference(3);
        job.push(json!({"frame_index": 0}));
        job.push(json!({"frame_index": 1}));
        let popped = job.pop_json();
        assert_eq!(popped["pending_results"], json!([{"frame_index": 0}, {"frame_index": 1}]));
        assert!(popped.get("exception").is_some_and(Value::is_null), "exception present in pop replies");
        assert_eq!(job.pop_json()["pending_results"], json!([]), "nothing re-delivered");
        // Still inferring until the final result is stored.
        assert_eq!(job.progress_json()["is_inferring"], true);
        job.finish(Some(json!({"video_ann": null})), None);
        let p = job.progress_json();
        assert_eq!((p["stage"].as_str(), p["is_inferring"].as_bool(), p["result"].as_bool()), (Some(FINISHED), Some(false), Some(true)));
        assert_eq!(job.final_result_json(), json!({"video_ann": null}));
    }

    #[test]
    fn an_error_ends_the_request_so_that_no_client_waits_for_ever() {
        let jobs = Jobs::new(2, Duration::from_secs(60));
        let job = jobs.create().unwrap();
        job.start_inference(1);
        job.fail(&ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_error", "Supervisely videos.info answered 500"));
        let p = job.progress_json();
        assert_eq!((p["stage"].as_str(), p["progress"]["total"].as_u64(), p["finished"].as_bool(), p["is_inferring"].as_bool()), (Some(ERROR), Some(0), Some(true), Some(false)));
        assert_eq!(p["exception"]["message"], "Supervisely videos.info answered 500");
    }

    #[test]
    fn limits_stop_clear_and_expiry() {
        let jobs = Jobs::new(1, Duration::from_millis(200));
        let a = jobs.create().unwrap();
        let refused = jobs.create().unwrap_err();
        assert_eq!((refused.status, refused.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(10)));
        // SIGTERM: every running request stops, and reports it when its worker ends.
        jobs.stop_all();
        assert!(a.stopped());
        a.finish(None, None);
        assert_eq!(a.progress_json()["stage"], CANCELLED);
        assert_eq!(jobs.census()[2], ("cancelled", 1));
        let b = jobs.create().unwrap();
        jobs.clear(&uuid_state(&b)).unwrap();
        assert!(b.stopped(), "clear stops");
        assert!(jobs.get(&uuid_state(&b)).is_ok(), "a cleared request still answers for a while");
        jobs.clear(&json!({"inference_request_uuid": "f".repeat(32)})).unwrap();
        assert_eq!(jobs.get(&json!({})).unwrap_err().status, StatusCode::BAD_REQUEST);
        // Nobody polls a finished request: it is dropped after the TTL.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(jobs.get(&uuid_state(&a)).unwrap_err().status, StatusCode::NOT_FOUND);
    }
}

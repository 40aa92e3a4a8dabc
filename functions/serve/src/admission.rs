//! Admission control: inferences run through a bounded queue.
//!
//! At most `slots` inferences run at once (chosen so ONNX Runtime's intra-op
//! threads never oversubscribe the CPUs, whichever models they use); at most
//! `max_queue` more wait, each at most `queue_timeout` (and never past its
//! request's deadline). A request that cannot be admitted is answered at once
//! with 503 and a `Retry-After` estimated from the queue: Supervisely clients
//! retry 5xx, native clients read the header. Nothing waits without bound.
//!
//! Each request carries a [`RequestCtx`] (a task-local set by the router's
//! outermost middleware) that records how far it got, so a request whose
//! client left can be logged and counted as cancelled while queued or
//! discarded while running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Where a request is, for the log line and metrics of one that ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Reading, fetching, loading: not in the queue.
    Preparing = 0,
    /// Waiting for an inference slot.
    Queued = 1,
    /// Holding a slot: decoding and inference.
    Running = 2,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Preparing => "preparing",
            Stage::Queued => "queued",
            Stage::Running => "running",
        }
    }
}

/// Per-request facts shared between the router's middleware and admission.
#[derive(Debug)]
pub struct RequestCtx {
    pub deadline: Option<Instant>,
    stage: AtomicU8,
    /// Set once an inference of this request started (the deadline then means 504, not 503).
    admitted: AtomicBool,
}

impl RequestCtx {
    pub fn new(deadline: Option<Instant>) -> Self {
        Self { deadline, stage: AtomicU8::new(Stage::Preparing as u8), admitted: AtomicBool::new(false) }
    }

    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            1 => Stage::Queued,
            2 => Stage::Running,
            _ => Stage::Preparing,
        }
    }

    fn set_stage(&self, s: Stage) {
        self.stage.store(s as u8, Ordering::Relaxed);
    }

    pub fn was_admitted(&self) -> bool {
        self.admitted.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    pub static REQUEST: Arc<RequestCtx>;
}

fn with_ctx(f: impl FnOnce(&RequestCtx)) {
    let _ = REQUEST.try_with(|c| f(c));
}

/// Queue limits; `None` = unbounded (Lambda: one request per instance).
#[derive(Debug, Clone)]
pub struct Limits {
    pub slots: usize,
    pub max_queue: Option<usize>,
    pub queue_timeout: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub rejected_full: AtomicU64,
    pub rejected_timeout: AtomicU64,
    pub rejected_draining: AtomicU64,
    pub cancelled_queued: AtomicU64,
}

pub struct Admission {
    slots: Arc<Semaphore>,
    limits: Limits,
    waiting: AtomicUsize,
    running: AtomicUsize,
    draining: AtomicBool,
    /// Mean seconds an admitted inference holds its slot (EWMA, in µs), for Retry-After.
    mean_hold_us: AtomicU64,
    pub counters: Counters,
}

/// An inference slot; released when dropped (move it into the blocking task,
/// so a request whose client left still holds the slot until its computation ends).
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    started: Instant,
    admission: Arc<Admission>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.running.fetch_sub(1, Ordering::Relaxed);
        let us = self.started.elapsed().as_micros() as u64;
        let old = self.admission.mean_hold_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.admission.mean_hold_us.store(new, Ordering::Relaxed);
    }
}

/// Counts a waiter while it waits; a waiter dropped before admission was cancelled.
struct Waiting<'a> {
    admission: &'a Admission,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.admission.waiting.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.admission.counters.cancelled_queued.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(limits.slots.max(1))),
            limits,
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            mean_hold_us: AtomicU64::new(0),
            counters: Counters::default(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Stop admitting (SIGTERM): new inferences get 503, queued and running ones finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Seconds a client should wait before trying again: the queue ahead of it
    /// divided among the slots, at least 1, at most 60.
    pub fn retry_after_s(&self) -> u64 {
        let hold = self.mean_hold_us.load(Ordering::Relaxed) as f64 / 1e6;
        let ahead = (self.waiting() + self.running() + 1) as f64;
        ((ahead * hold.max(0.5) / self.limits.slots.max(1) as f64).ceil() as u64).clamp(1, 60)
    }

    fn refuse(&self, error: &'static str, detail: String) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error, detail).retry_after(self.retry_after_s())
    }

    /// A slot for one inference, waiting in the queue if allowed; 503 with
    /// `Retry-After` when the queue is full, the wait too long, or the server draining.
    pub async fn admit(self: &Arc<Self>) -> Result<Permit, ApiError> {
        if self.is_draining() {
            self.counters.rejected_draining.fetch_add(1, Ordering::Relaxed);
            return Err(self.refuse("shutting_down", "the server is shutting down; retry on another instance".into()));
        }
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => self.wait().await?,
        };
        self.running.fetch_add(1, Ordering::Relaxed);
        with_ctx(|c| {
            c.set_stage(Stage::Running);
            c.admitted.store(true, Ordering::Relaxed);
        });
        Ok(Permit { _permit: permit, started: Instant::now(), admission: self.clone() })
    }

    async fn wait(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let ahead = self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut waiting = Waiting { admission: self, done: false };
        if let Some(max) = self.limits.max_queue.filter(|m| ahead >= *m) {
            waiting.done = true;
            self.counters.rejected_full.fetch_add(1, Ordering::Relaxed);
            return Err(self.refuse("overloaded", format!("the server is busy: {} inferences running and {max} waiting (--max-queue {max}); retry later", self.running())));
        }
        with_ctx(|c| c.set_stage(Stage::Queued));
        // The wait ends at the queue timeout or the request's deadline, whichever comes first.
        let deadline = REQUEST.try_with(|c| c.deadline).ok().flatten();
        let mut limit = self.limits.queue_timeout.map(|t| (Instant::now() + t, "queue_timeout"));
        if let Some(d) = deadline {
            if limit.is_none_or(|(l, _)| d < l) {
                limit = Some((d, "request_timeout"));
            }
        }
        let acquired = match limit {
            None => Ok(self.slots.clone().acquire_owned().await),
            Some((until, why)) => tokio::time::timeout_at(until.into(), self.slots.clone().acquire_owned()).await.map_err(|_| why),
        };
        waiting.done = true;
        match acquired {
            Ok(p) => Ok(p.expect("the slot semaphore is never closed")),
            Err(why) => {
                self.counters.rejected_timeout.fetch_add(1, Ordering::Relaxed);
                let detail = match (why, self.limits.queue_timeout) {
                    ("queue_timeout", Some(t)) => format!("the server is busy: no inference slot within {} s (--queue-timeout); retry later", t.as_secs_f64()),
                    _ => "the request's deadline (--request-timeout) passed while it waited for an inference slot; retry later".to_string(),
                };
                Err(self.refuse(if why == "queue_timeout" { "overloaded" } else { "request_timeout" }, detail))
            }
        }
    }
}

/// Inferences to run at once: enough to use every CPU, never more threads than CPUs.
pub fn default_slots(cpus: usize, intra_threads: usize) -> usize {
    (cpus / intra_threads.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_queue: usize, timeout_ms: u64) -> Limits {
        Limits { slots: 1, max_queue: Some(max_queue), queue_timeout: Some(Duration::from_millis(timeout_ms)) }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_with_retry_after() {
        let a = Admission::new(limits(1, 10_000));
        let running = a.admit().await.unwrap();
        let a2 = a.clone();
        let queued = tokio::spawn(async move { a2.admit().await.map(|_| ()) });
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let t = Instant::now();
        let err = a.admit().await.err().expect("a second waiter is over --max-queue 1");
        assert!(t.elapsed() < Duration::from_millis(100), "refused at once");
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.error, "overloaded");
        assert!(err.retry_after.is_some_and(|s| s >= 1));
        drop(running);
        queued.await.unwrap().expect("the queued request runs once the slot frees");
        assert_eq!(a.counters.rejected_full.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_wait_past_the_queue_timeout_is_refused() {
        let a = Admission::new(limits(4, 50));
        let _running = a.admit().await.unwrap();
        let t = Instant::now();
        let err = a.admit().await.err().expect("times out");
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert_eq!(err.error, "overloaded");
        assert_eq!(a.waiting(), 0);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue_and_is_counted() {
        let a = Admission::new(limits(4, 10_000));
        let running = a.admit().await.unwrap();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.admit().await.map(|_| ()) });
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(a.waiting(), 0);
        assert_eq!(a.counters.cancelled_queued.load(Ordering::Relaxed), 1);
        drop(running);
        assert_eq!(a.running(), 0);
        // The slot is free for the next request at once.
        let _p = tokio::time::timeout(Duration::from_millis(100), a.admit()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn draining_refuses_new_work() {
        let a = Admission::new(limits(4, 10_000));
        a.start_draining();
        let err = a.admit().await.err().unwrap();
        assert_eq!(err.error, "shutting_down");
    }

    #[test]
    fn slots_never_oversubscribe_the_cpus() {
        assert_eq!(default_slots(2, 2), 1);
        assert_eq!(default_slots(16, 4), 4);
        assert_eq!(default_slots(2, 8), 1);
        assert_eq!(default_slots(8, 3), 2);
    }
}

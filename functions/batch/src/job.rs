//! A batch run: plan (list the input after the continuation, find what is
//! annotated already), annotate the rest in key order with bounded concurrency,
//! stop before the deadline, write the run summary.
//!
//! Resuming is exact: images are taken in byte order of their keys and every
//! image started is finished before the run returns, so "everything up to the
//! continuation key" is handled and the next run lists only what comes after it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::annotate::Annotator;
use crate::deadline::Deadline;
use crate::error::BatchError;
use crate::event::Source;
use crate::storage::Storage;

/// Run summaries go here, under the output location.
pub const RUNS_DIR: &str = "_runs";
/// The failures listed in a summary; the rest are only counted (a Lambda answer is capped at 6 MB).
pub const MAX_FAILED_LISTED: usize = 1000;
const EXISTS_CHECKS_IN_FLIGHT: usize = 16;

/// File types the engine decodes.
pub fn is_image(key: &str) -> bool {
    let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "webp" | "bmp" | "tif" | "tiff")
}

/// Where the annotation of image `key` goes.
pub fn annotation_key(key: &str) -> String {
    format!("{key}.json")
}

#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Catalog key of the model, for the summary.
    pub model: String,
    /// Images in flight at once (fetch, decode and upload overlap; inference of one model runs one at a time).
    pub concurrency: usize,
    pub max_image_bytes: u64,
    pub max_images: Option<usize>,
    pub deadline: Deadline,
    pub run_id: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    pub key: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub processed: usize,
    pub skipped: usize,
    pub failed: Vec<Failure>,
    /// Images after the continuation not looked at in this run (some may be annotated already).
    pub remaining: usize,
    /// Pass back as `continuation` to go on; null when the run reached the end.
    pub continuation: Option<String>,
    /// Failures beyond the ones listed in `failed`.
    #[serde(skip_serializing_if = "is_zero")]
    pub failed_unlisted: usize,
    /// Why the run stopped before the end: `deadline` or `max_images`.
    pub stopped: Option<&'static str>,
    /// Keys that are not images (by extension), left alone.
    pub ignored: usize,
    pub run_id: String,
    pub model: String,
    pub input: String,
    pub output: String,
    pub started_at: String,
    pub seconds: f64,
    pub slowest_image_seconds: f64,
    /// Where this summary was written under the output (null if that failed).
    pub summary_key: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What happened to one image (for progress reporting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    Skipped,
    Failed,
}

/// Progress callbacks (the CLI's progress bar); the default does nothing.
pub trait Progress: Send + Sync {
    fn planned(&self, _images: usize) {}
    fn image(&self, _key: &str, _outcome: Outcome) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// `20261125T200000Z-1a2b3c`: sorts by start time, unique enough per run.
pub fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:06x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        rand::random::<u32>() & 0xff_ffff
    )
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn process(key: &str, input: &dyn Storage, output: &dyn Storage, annotator: &dyn Annotator, max_bytes: u64) -> Result<(), String> {
    let bytes = input.get(key, max_bytes).await.map_err(|e| e.to_string())?;
    let ann = annotator.annotate(bytes).await?;
    let body = serde_json::to_vec(&ann).map_err(|e| e.to_string())?;
    output
        .put(&annotation_key(key), Bytes::from(body), "application/json")
        .await
        .map_err(|e| e.to_string())
}

/// Run one batch. Errors are for the run as a whole (listing the input fails);
/// a bad image is a [`Failure`] and the run goes on.
pub async fn run(
    source: &Source,
    continuation: Option<&str>,
    input: &dyn Storage,
    output: &dyn Storage,
    annotator: &dyn Annotator,
    opts: &JobOptions,
    progress: &dyn Progress,
) -> Result<Summary, BatchError> {
    let t0 = Instant::now();
    let started_at = rfc3339_now();
    let after = |k: &String| continuation.is_none_or(|c| k.as_bytes() > c.as_bytes());

    // ---- plan ----
    let keys: Vec<String> = match source {
        Source::Prefix => input.list(continuation).await?,
        Source::Keys(keys) => keys.iter().filter(|k| after(k)).cloned().collect(),
    };
    let total_keys = keys.len();
    let images: Vec<String> = keys.into_iter().filter(|k| is_image(k)).collect();
    let ignored = total_keys - images.len();
    let done: HashSet<String> = match source {
        // One listing of the output beats a HEAD per image. `k > c` implies `k.json > c`.
        Source::Prefix => output.list(continuation).await?.into_iter().filter(|k| k.ends_with(".json")).collect(),
        // A map batch is small and the output may be huge: ask per image.
        Source::Keys(_) => {
            let checks = futures_util::stream::iter(images.iter().map(|k| async move {
                let a = annotation_key(k);
                output.exists(&a).await.map(|e| e.then_some(a))
            }))
            .buffer_unordered(EXISTS_CHECKS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
            let mut done = HashSet::new();
            for c in checks {
                if let Some(a) = c? {
                    done.insert(a);
                }
            }
            done
        }
    };
    progress.planned(images.len());

    // ---- annotate ----
    let (mut processed, mut skipped, mut started) = (0usize, 0usize, 0usize);
    let mut failed: Vec<Failure> = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut last_handled: Option<&str> = None;
    let mut consumed = 0usize;
    let mut stopped = None;
    let mut in_flight = FuturesUnordered::new();
    let concurrency = opts.concurrency.max(1);

    let mut record = |(key, result, took): (&str, Result<(), String>, Duration), slowest: &mut Duration| {
        *slowest = (*slowest).max(took);
        match result {
            Ok(()) => {
                processed += 1;
                progress.image(key, Outcome::Processed);
            }
            Err(error) => {
                tracing::warn!(key, %error, "image failed");
                failed.push(Failure { key: key.to_string(), error });
                progress.image(key, Outcome::Failed);
            }
        }
    };

    for key in &images {
        if done.contains(&annotation_key(key)) {
            skipped += 1;
            progress.image(key, Outcome::Skipped);
            last_handled = Some(key);
            consumed += 1;
            continue;
        }
        if opts.max_images.is_some_and(|m| started >= m) {
            stopped = Some("max_images");
            break;
        }
        while in_flight.len() >= concurrency {
            if let Some(r) = in_flight.next().await {
                record(r, &mut slowest);
            }
        }
        if !opts.deadline.may_start(Instant::now(), slowest, started) {
            stopped = Some("deadline");
            break;
        }
        let k = key.as_str();
        in_flight.push(async move {
            let t = Instant::now();
            let r = process(k, input, output, annotator, opts.max_image_bytes).await;
            (k, r, t.elapsed())
        });
        started += 1;
        last_handled = Some(key);
        consumed += 1;
    }
    while let Some(r) = in_flight.next().await {
        record(r, &mut slowest);
    }

    let remaining = images.len() - consumed;
    let continuation = if remaining > 0 { last_handled.map(str::to_string).or(continuation.map(str::to_string)) } else { None };
    let failed_unlisted = failed.len().saturating_sub(MAX_FAILED_LISTED);
    failed.truncate(MAX_FAILED_LISTED);
    let mut summary = Summary {
        processed,
        skipped,
        failed,
        remaining,
        continuation,
        failed_unlisted,
        stopped,
        ignored,
        run_id: opts.run_id.clone(),
        model: opts.model.clone(),
        input: input.location(),
        output: output.location(),
        started_at,
        seconds: 0.0,
        slowest_image_seconds: slowest.as_secs_f64(),
        summary_key: None,
    };
    summary.seconds = t0.elapsed().as_secs_f64();
    let key = format!("{RUNS_DIR}/{}.json", opts.run_id);
    summary.summary_key = Some(key.clone());
    let body = serde_json::to_vec_pretty(&summary).expect("a summary serializes");
    if let Err(e) = output.put(&key, Bytes::from(body), "application/json").await {
        // The annotations are written; a missing record must not hide the counts.
        tracing::error!(error = %e, "cannot write the run summary");
        summary.summary_key = None;
    }
    Ok(summary)
}

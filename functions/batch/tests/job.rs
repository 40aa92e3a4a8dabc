//! The job logic with a stand-in annotator and local folders: no ONNX Runtime,
//! no AWS. Idempotence, failures, deadlines, continuations, map batches.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use d2serve_batch::job::{JobOptions, NoProgress, run};
use d2serve_batch::{Annotator, Deadline, LocalDir, Source, Storage};
use serde_json::{Value, json};

/// Annotates any PNG/JPEG by its byte length; fails on anything else. Sleeps `delay` per image.
struct Fake {
    delay: Duration,
    seen: Mutex<Vec<usize>>,
}

#[async_trait]
impl Annotator for Fake {
    async fn annotate(&self, image: Bytes) -> Result<Value, String> {
        tokio::time::sleep(self.delay).await;
        self.seen.lock().unwrap().push(image.len());
        if image.starts_with(b"\x89PNG") || (image.starts_with(b"\xff\xd8") && image.len() > 1000) {
            Ok(json!({"bytes": image.len()}))
        } else {
            Err("the image cannot be decoded".into())
        }
    }
}

fn fake(delay_ms: u64) -> Fake {
    Fake { delay: Duration::from_millis(delay_ms), seen: Mutex::default() }
}

fn opts(deadline: Deadline) -> JobOptions {
    JobOptions {
        model: "m".into(),
        concurrency: 2,
        max_image_bytes: 1 << 24,
        max_images: None,
        deadline,
        run_id: d2serve_batch::job::new_run_id(),
    }
}

fn input(dir: &std::path::Path) -> LocalDir {
    for (k, b) in common::input_objects() {
        let p = dir.join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
    LocalDir::new(dir)
}

#[tokio::test]
async fn annotates_once_reports_the_corrupt_image_and_reruns_do_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (input(&tmp.path().join("in")), LocalDir::new(tmp.path().join("out")));
    let a = fake(0);
    let s = run(&Source::Prefix, None, &inp, &out, &a, &opts(Deadline::none()), &NoProgress).await.unwrap();
    assert_eq!((s.processed, s.skipped, s.remaining, s.ignored), (3, 0, 0, 1), "{s:?}");
    assert_eq!(s.failed.len(), 1);
    assert_eq!(s.failed[0].key, "broken.jpg");
    assert!(s.failed[0].error.contains("cannot be decoded"));
    assert_eq!(s.continuation, None);
    for k in ["astronaut.png", "chelsea.png", "sub/coffee.jpg"] {
        let v: Value = serde_json::from_slice(&out.get(&format!("{k}.json"), 1 << 20).await.unwrap()).unwrap();
        assert!(v["bytes"].as_u64().unwrap() > 1000);
    }
    assert!(!out.exists("broken.jpg.json").await.unwrap());
    let summary: Value = serde_json::from_slice(&out.get(s.summary_key.as_deref().unwrap(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(summary["processed"], 3);
    assert_eq!(summary["failed"][0]["key"], "broken.jpg");

    // Second run: nothing done twice; only the corrupt image is tried again (it has no annotation).
    let a2 = fake(0);
    let s2 = run(&Source::Prefix, None, &inp, &out, &a2, &opts(Deadline::none()), &NoProgress).await.unwrap();
    assert_eq!((s2.processed, s2.skipped, s2.failed.len()), (0, 3, 1), "{s2:?}");
    assert_eq!(a2.seen.lock().unwrap().len(), 1);
    assert_eq!(out.list(Some("_runs/")).await.unwrap().iter().filter(|k| k.starts_with("_runs/")).count(), 2);
}

#[tokio::test]
async fn a_tight_deadline_stops_early_and_the_continuation_finishes_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (input(&tmp.path().join("in")), LocalDir::new(tmp.path().join("out")));
    // 200 ms per image, 450 ms budget, no margin: image 1 starts (t=0), image 2 at t=200 needs
    // 2*200 < 250 left: no. Concurrency 1 so timings are sequential.
    let mut o = opts(Deadline::after(Duration::from_millis(450), Duration::ZERO));
    o.concurrency = 1;
    let t = Instant::now();
    let s = run(&Source::Prefix, None, &inp, &out, &fake(200), &o, &NoProgress).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(450), "ran past its deadline: {:?}", t.elapsed());
    assert_eq!(s.stopped, Some("deadline"));
    assert_eq!((s.processed, s.failed.len(), s.remaining), (1, 0, 3), "{s:?}");
    assert_eq!(s.continuation.as_deref(), Some("astronaut.png"));

    let s2 = run(&Source::Prefix, s.continuation.as_deref(), &inp, &out, &fake(0), &opts(Deadline::none()), &NoProgress).await.unwrap();
    assert_eq!((s2.processed, s2.skipped, s2.failed.len(), s2.remaining), (2, 0, 1, 0), "{s2:?}");
    assert_eq!(s2.continuation, None);
    for k in ["astronaut.png", "chelsea.png", "sub/coffee.jpg"] {
        assert!(out.exists(&format!("{k}.json")).await.unwrap(), "{k}");
    }
}

#[tokio::test]
async fn max_images_bounds_a_run_and_map_batches_process_their_keys_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (input(&tmp.path().join("in")), LocalDir::new(tmp.path().join("out")));
    let mut o = opts(Deadline::none());
    o.max_images = Some(1);
    let s = run(&Source::Prefix, None, &inp, &out, &fake(0), &o, &NoProgress).await.unwrap();
    assert_eq!((s.processed, s.remaining, s.stopped), (1, 3, Some("max_images")));

    // A map batch: astronaut (done), chelsea, notes.txt (ignored); continuation skips astronaut anyway.
    let keys = Source::Keys(vec!["astronaut.png".into(), "chelsea.png".into(), "notes.txt".into()]);
    let s = run(&keys, None, &inp, &out, &fake(0), &opts(Deadline::none()), &NoProgress).await.unwrap();
    assert_eq!((s.processed, s.skipped, s.ignored, s.remaining), (1, 1, 1, 0), "{s:?}");
    assert!(!out.exists("sub/coffee.jpg.json").await.unwrap(), "a map batch touched a key outside it");
    let s = run(&keys, Some("astronaut.png"), &inp, &out, &fake(0), &opts(Deadline::none()), &NoProgress).await.unwrap();
    assert_eq!((s.processed, s.skipped), (0, 1), "{s:?}");
}

#[tokio::test]
async fn a_missing_image_of_a_map_batch_is_a_failure_not_an_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (input(&tmp.path().join("in")), LocalDir::new(tmp.path().join("out")));
    let keys = Source::Keys(vec!["gone.png".into(), "chelsea.png".into()]);
    let s = run(&keys, None, &inp, &out, &fake(0), &opts(Deadline::none()), &NoProgress).await.unwrap();
    assert_eq!(s.processed, 1);
    assert_eq!(s.failed[0].key, "gone.png");
    assert!(s.failed[0].error.contains("does not exist"), "{}", s.failed[0].error);
}

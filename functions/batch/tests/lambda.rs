//! The Lambda path: the real `batch` binary with `AWS_LAMBDA_RUNTIME_API`
//! pointing at a mock Lambda Runtime API on 127.0.0.1 that hands out an
//! EventBridge Scheduler input, a Step Functions Distributed Map batch
//! (ItemReader over S3 + ItemBatcher), and mistaken events; images and
//! annotations on a local S3 server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use d2serve_registry::testing::{MockLambdaRuntime, MotoServer};
use serde_json::{Value, json};

fn job() -> Value {
    json!({"model": "r50-fpn-3x", "input": "s3://photos/in/", "output": "s3://photos/out/", "settings": {"conf_thres": 0.3}})
}

/// What the Distributed Map's ItemReader (s3:listObjectsV2) + ItemBatcher hand to one child execution.
fn map_batch(keys: &[&str]) -> Value {
    let items: Vec<Value> = keys
        .iter()
        .map(|k| json!({"Etag": "\"0f343b0931126a20f133d67c2b018a3b\"", "Key": format!("in/{k}"), "LastModified": 1764100800.0, "Size": 1024, "StorageClass": "STANDARD"}))
        .collect();
    json!({"Items": items, "BatchInput": job()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_and_distributed_map_events_drive_the_handler() {
    if !ort_available() {
        return;
    }
    let Some(moto) = MotoServer::start() else { return };
    moto.create_bucket("photos").await;
    for (k, b) in input_objects() {
        moto.client().put_object().bucket("photos").key(format!("in/{k}")).body(b.into()).send().await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;

    let mut scheduled = job();
    scheduled["max_images"] = json!(2);
    let events = vec![
        // EventBridge Scheduler passes the schedule's JSON input as the event.
        scheduled,
        map_batch(&["sub/coffee.jpg", "astronaut.png"]),
        json!({"input": "s3://photos/in/"}),
        json!({"input": "/tmp/photos", "output": "s3://photos/out/"}),
        json!({"model": "r50-c4-1x", "input": "s3://photos/in/", "output": "s3://photos/out/"}),
    ];
    let n = events.len();
    let MockLambdaRuntime { port, responses } = MockLambdaRuntime::start("batch", events);
    let log = tmp.path().join("lambda.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_batch"))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "batch")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .env("D2_REGISTRY", &reg)
        .env("D2_CACHE_DIR", tmp.path().join("cache"))
        .envs(moto.function_env())
        .stdout(std::process::Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(std::process::Stdio::from(std::fs::File::create(tmp.path().join("lambda.err")).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while responses.lock().unwrap().len() < n {
        let diag = || format!("{:?}\n{}", responses.lock().unwrap(), std::fs::read_to_string(tmp.path().join("lambda.err")).unwrap_or_default());
        assert!(Instant::now() < deadline, "lambda answered {}", diag());
        assert!(child.try_wait().unwrap().is_none(), "batch exited under Lambda: {}", diag());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut rs = responses.lock().unwrap().clone();
    rs.sort_by(|a, b| a.0.cmp(&b.0));
    let (p, r) = (&rs[0].0, &rs[0].1);

    // Scheduler input, max_images 2: astronaut.png, then broken.jpg (fails, counts as started).
    assert!(p.ends_with("req-0/response"), "{p}: {r}");
    assert_eq!((r["processed"].as_u64(), r["remaining"].as_u64(), r["stopped"].as_str()), (Some(1), Some(2), Some("max_images")), "{r}");
    assert_eq!(r["failed"][0]["key"], "broken.jpg");
    assert_eq!(r["continuation"], "broken.jpg");
    assert_eq!(r["model"], KEY);

    // Map batch: astronaut.png is already done, sub/coffee.jpg is annotated; nothing else is touched.
    let (p, r) = (&rs[1].0, &rs[1].1);
    assert!(p.ends_with("req-1/response"), "{p}: {r}");
    assert_eq!((r["processed"].as_u64(), r["skipped"].as_u64(), r["remaining"].as_u64()), (Some(1), Some(1), Some(0)), "{r}");
    let c = moto.client();
    let ann = c.get_object().bucket("photos").key("out/sub/coffee.jpg.json").send().await.unwrap();
    let ann: Value = serde_json::from_slice(&ann.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(ann["size"], json!({"height": 400, "width": 600}));
    assert!(c.head_object().bucket("photos").key("out/chelsea.png.json").send().await.is_err(), "outside the batch");

    // Mistakes come back as Lambda errors with a stable errorType and a message saying what to do.
    for (i, (ty, want)) in [(2, ("BadEvent", "`output` is missing")), (3, ("BadLocation", "must be s3://")), (4, ("UnknownModel", "not published"))] {
        let (p, r) = (&rs[i].0, &rs[i].1);
        assert!(p.ends_with(&format!("req-{i}/error")), "{p}: {r}");
        assert_eq!(r["errorType"], ty, "{r}");
        assert!(r["errorMessage"].as_str().unwrap().contains(want), "{r}");
    }
}

/// AWS's own Runtime Interface Emulator runs the image's bootstrap (`_HANDLER=batch`)
/// over a task folder laid out as the image's, with the environment
/// infra/template.yaml gives BatchFunction; registry, images and annotations on a
/// local S3 server. An EventBridge Scheduler input, a Distributed Map batch and an
/// unknown model, as Lambda would answer them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_under_the_lambda_runtime_interface_emulator() {
    if !ort_available() {
        return;
    }
    let Some(moto) = MotoServer::start() else { return };
    for b in ["photos", "models"] {
        moto.create_bucket(b).await;
    }
    let c = moto.client();
    for (k, b) in input_objects() {
        c.put_object().bucket("photos").key(format!("in/{k}")).body(b.into()).send().await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let art = convert_fixture(tmp.path());
    let registry = moto.publish("models", "registry", KEY, &art).await;
    let cache = tmp.path().join("cache").display().to_string();
    let Some(rie) = d2serve_engine::testing::function_under_rie(
        "BatchFunction",
        std::path::Path::new(env!("CARGO_BIN_EXE_batch")),
        tmp.path(),
        &[("D2_REGISTRY", &registry), ("D2_DEFAULT_MODEL", "r50-fpn-3x"), ("D2_CACHE_DIR", &cache), ("D2_MODEL_ROLLOUT", "1")],
        moto.function_env(),
    ) else {
        return;
    };

    // EventBridge Scheduler: the schedule's JSON input is the event. max_images 2:
    // astronaut.png, then broken.jpg (fails, counts as started).
    let mut scheduled = job();
    scheduled["max_images"] = json!(2);
    let inv = rie.invoke(&scheduled).await;
    assert_eq!(inv.status, 200, "{}", rie.log_text());
    let r = inv.json();
    assert_eq!((r["processed"].as_u64(), r["remaining"].as_u64(), r["stopped"].as_str()), (Some(1), Some(2), Some("max_images")), "{r}\n{}", rie.log_text());
    assert_eq!(r["failed"][0]["key"], "broken.jpg");
    assert_eq!(r["model"], KEY);

    // A Distributed Map child's batch: astronaut.png already done, sub/coffee.jpg annotated.
    let r = rie.invoke(&map_batch(&["sub/coffee.jpg", "astronaut.png"])).await.json();
    assert_eq!((r["processed"].as_u64(), r["skipped"].as_u64(), r["remaining"].as_u64()), (Some(1), Some(1), Some(0)), "{r}");
    let ann = c.get_object().bucket("photos").key("out/sub/coffee.jpg.json").send().await.unwrap();
    let ann: Value = serde_json::from_slice(&ann.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(ann["size"], json!({"height": 400, "width": 600}));

    // A mistake is a function error with the stable errorType the state machine's Retry/Catch read.
    let r = rie.invoke(&json!({"model": "r50-c4-1x", "input": "s3://photos/in/", "output": "s3://photos/out/"})).await.json();
    assert_eq!(r["errorType"], "UnknownModel", "{r}");
    assert!(r["errorMessage"].as_str().unwrap().contains("not published"), "{r}");

    let log = rie.log_text();
    assert_eq!(log.matches("INIT START").count(), 1, "one init for all three invocations: {log}");
}

//! The Lambda path: the real `batch` binary with `AWS_LAMBDA_RUNTIME_API`
//! pointing at a mock Lambda Runtime API on 127.0.0.1 that hands out an
//! EventBridge Scheduler input, a Step Functions Distributed Map batch
//! (ItemReader over S3 + ItemBatcher), and mistaken events; images and
//! annotations on a local S3 server.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use d2serve_registry::testing::MotoServer;
use serde_json::{Value, json};

type Responses = Arc<Mutex<Vec<(String, Value)>>>;

/// Serves `events` one per `invocation/next` (deadline 60 s ahead), records every response or error post.
fn runtime_api(events: Vec<Value>) -> (u16, Responses) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let queue = Arc::new(Mutex::new(events.into_iter().enumerate().collect::<VecDeque<_>>()));
    let responses: Responses = Arc::default();
    let r = responses.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (queue, r) = (queue.clone(), r.clone());
            std::thread::spawn(move || {
                // Keep-alive: the runtime client reuses its connection.
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut s = s;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    let _ = reader.read_exact(&mut body);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    if path.ends_with("/invocation/next") {
                        let next = queue.lock().unwrap().pop_front();
                        let Some((i, ev)) = next else {
                            std::thread::sleep(Duration::from_secs(600));
                            return;
                        };
                        let payload = ev.to_string();
                        let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 60_000;
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{i}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:batch\r\nContent-Length: {}\r\n\r\n{payload}",
                            payload.len()
                        );
                    } else {
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        r.lock().unwrap().push((path, v));
                        let _ = write!(s, "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{{}}");
                    }
                }
            });
        }
    });
    (port, responses)
}

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
    let (port, responses) = runtime_api(events);
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
        .env("D2_S3_ENDPOINT", &moto.endpoint)
        .env("D2_S3_PATH_STYLE", "true")
        .envs(moto.env())
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

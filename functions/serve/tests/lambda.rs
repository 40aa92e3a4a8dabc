//! The Lambda path: the real `serve` binary with `AWS_LAMBDA_RUNTIME_API`
//! pointing at a mock Lambda Runtime API on 127.0.0.1 that hands out real
//! Function URL and API Gateway (HTTP API v2, REST v1) event JSON; and the
//! registry read from a local S3 server.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use d2serve_registry::testing::MockLambdaRuntime;
use serde_json::{Value, json};

fn function_url_event(method: &str, path: &str, body: &[u8], content_type: &str, binary: bool) -> Value {
    let body = if binary { base64::engine::general_purpose::STANDARD.encode(body) } else { String::from_utf8(body.to_vec()).unwrap() };
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": content_type, "host": "abc123.lambda-url.us-east-1.on.aws", "x-amzn-trace-id": "Root=1-0"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.lambda-url.us-east-1.on.aws", "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
            "requestId": "11111111-2222-3333-4444-555555555555", "routeKey": "$default", "stage": "$default",
            "time": "25/Nov/2026:20:00:00 +0000", "timeEpoch": 1764100800000i64
        },
        "body": body, "isBase64Encoded": binary
    })
}

fn api_gateway_v1_event(path: &str, body: &str) -> Value {
    json!({
        "resource": "/{proxy+}", "path": path, "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "Host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": null, "multiValueQueryStringParameters": null, "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {"resourceId": "x", "resourcePath": "/{proxy+}", "httpMethod": "POST", "path": format!("/prod{path}"), "accountId": "123456789012",
            "protocol": "HTTP/1.1", "stage": "prod", "requestId": "r-1", "apiId": "abc", "identity": {"sourceIp": "203.0.113.7"}},
        "body": body, "isBase64Encoded": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_events_drive_the_same_router() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let png = std::fs::read(fixtures().join("images/coffee.png")).unwrap();
    let events = vec![
        function_url_event("POST", "/get_session_info", b"{}", "application/json", false),
        function_url_event("POST", "/v1/models/r50-fpn-3x/predict", &png, "image/png", true),
        function_url_event("POST", "/inference_image_url", b"{not json", "application/json", false),
        api_gateway_v1_event("/get_custom_inference_settings", "{}"),
        // The page and the contract behind the Function URL too.
        function_url_event("GET", "/", b"", "text/plain", false),
        function_url_event("GET", "/openapi.json", b"", "text/plain", false),
        // Nothing outlives an invocation: the asynchronous family is refused by name.
        function_url_event("POST", "/inference_video_id_async", br#"{"state": {"videoId": 1}}"#, "application/json", false),
    ];
    let api = MockLambdaRuntime::start("serve", events);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(["--registry", &reg, "--model", "r50-fpn-3x"])
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", "serve")
        // REST API events carry the stage in the path; the deployment sets this (infra/template.yaml).
        .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .stdout(std::process::Stdio::from(std::fs::File::create(tmp.path().join("lambda.log")).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while api.responses.lock().unwrap().len() < 7 {
        assert!(Instant::now() < deadline, "lambda answered {:?}", api.responses.lock().unwrap());
        assert!(child.try_wait().unwrap().is_none(), "serve exited under Lambda: {}", std::fs::read_to_string(tmp.path().join("lambda.log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut responses = api.responses.lock().unwrap().clone();
    responses.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, _) in &responses {
        assert!(path.ends_with("/response"), "an invocation errored: {path}");
    }
    let body = |v: &Value| -> Value {
        let b = v["body"].as_str().unwrap();
        let raw = if v["isBase64Encoded"].as_bool() == Some(true) { base64::engine::general_purpose::STANDARD.decode(b).unwrap() } else { b.as_bytes().to_vec() };
        serde_json::from_slice(&raw).unwrap()
    };
    let (r0, r1, r2, r3) = (&responses[0].1, &responses[1].1, &responses[2].1, &responses[3].1);
    assert_eq!(r0["statusCode"], 200);
    assert_eq!(body(r0)["task type"], "instance segmentation");
    // Truthful under Lambda: video by id works within the function's timeout, the async family does not.
    assert_eq!((body(r0)["videos_support"].as_bool(), body(r0)["async_video_inference_support"].as_bool(), body(r0)["async_image_inference_support"].as_bool()), (Some(true), Some(false), Some(false)));
    assert_eq!(r1["statusCode"], 200, "{r1}");
    assert!(body(r1)["annotation"]["objects"].as_array().unwrap().len() > 0);
    assert_eq!(body(r1)["annotation"]["size"], json!({"height": 400, "width": 600}));
    assert_eq!(r2["statusCode"], 400);
    assert_eq!(body(r2)["error"], "bad_json");
    assert_eq!(r3["statusCode"], 200);
    assert!(body(r3)["settings"].as_str().unwrap().contains("conf_thres"));
    let (r4, r5) = (&responses[4].1, &responses[5].1);
    assert_eq!(r4["statusCode"], 200, "{r4}");
    let page = r4["body"].as_str().unwrap();
    let page = if r4["isBase64Encoded"].as_bool() == Some(true) { String::from_utf8(base64::engine::general_purpose::STANDARD.decode(page).unwrap()).unwrap() } else { page.to_string() };
    assert!(page.contains("<title>d2serve: try a model</title>") && page.contains("v1/models"), "the page under Lambda");
    assert_eq!(r5["statusCode"], 200);
    assert_eq!(body(r5)["openapi"], "3.1.0");
    let r6 = &responses[6].1;
    assert_eq!((r6["statusCode"].as_u64(), body(r6)["error"].as_str()), (Some(400), Some("async_unavailable")), "{r6}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_load_from_an_s3_registry() {
    if !ort_available() {
        return;
    }
    let Some(moto) = d2serve_registry::testing::MotoServer::start() else { return };
    moto.create_bucket("models").await;
    let tmp = tempfile::tempdir().unwrap();
    let art = convert_fixture(tmp.path());
    let store = d2serve_registry::store::S3Store::from_client(moto.client(), "models", "registry");
    d2serve_registry::Registry::new(Arc::new(store)).publish(KEY, &art).await.unwrap();
    let env = moto.env();
    let s = start_serve(
        tmp.path(),
        "s3://models/registry",
        &["--s3-endpoint", &moto.endpoint, "--s3-path-style"],
        &env,
    )
    .await;
    let c = reqwest::Client::new();
    let models: Value = c.get(format!("{}/v1/models", s.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["models"][0]["key"], KEY);
    let png = std::fs::read(fixtures().join("images/astronaut.png")).unwrap();
    let r = c.post(format!("{}/v1/models/r50-fpn-3x/predict", s.base)).body(png).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(!v["annotation"]["objects"].as_array().unwrap().is_empty());
    // An unpublished model is a 404, not a crash.
    let r = c.post(format!("{}/v1/models/r50-c4-1x/predict", s.base)).body(vec![1, 2, 3]).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

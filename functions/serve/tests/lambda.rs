//! The Lambda path: the real `serve` binary with `AWS_LAMBDA_RUNTIME_API`
//! pointing at a mock Lambda Runtime API on 127.0.0.1 that hands out real
//! Function URL and API Gateway (HTTP API v2, REST v1) event JSON; and the
//! registry read from a local S3 server.

mod common;

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
    let registry = moto.publish("models", "registry", KEY, &art).await;
    let env = moto.env();
    let s = start_serve(
        tmp.path(),
        &registry,
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

/// A multipart body as the Supervisely SDK posts to `/inference_image`.
fn multipart(boundary: &str, settings: &str, file: &[u8]) -> Vec<u8> {
    let mut b = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"settings\"\r\n\r\n{settings}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"coffee.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes();
    b.extend_from_slice(file);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

/// The response of a Lambda HTTP integration, body decoded.
fn http_body(v: &Value) -> Vec<u8> {
    let b = v["body"].as_str().unwrap_or("");
    if v["isBase64Encoded"].as_bool() == Some(true) { base64::engine::general_purpose::STANDARD.decode(b).unwrap() } else { b.as_bytes().to_vec() }
}

/// AWS's own Runtime Interface Emulator runs the image's bootstrap over a task
/// folder laid out as the image's, with the environment infra/template.yaml
/// gives ServeFunction and the registry on a local S3 server: Function URL and
/// API Gateway events for the Supervisely routes, the native routes, the page
/// and errors come back as Lambda would return them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_under_the_lambda_runtime_interface_emulator() {
    if !ort_available() {
        return;
    }
    let Some(moto) = d2serve_registry::testing::MotoServer::start() else { return };
    moto.create_bucket("models").await;
    let tmp = tempfile::tempdir().unwrap();
    let art = convert_fixture(tmp.path());
    let registry = moto.publish("models", "registry", KEY, &art).await;
    let cache = tmp.path().join("cache").display().to_string();
    let Some(rie) = d2serve_engine::testing::function_under_rie(
        "ServeFunction",
        std::path::Path::new(env!("CARGO_BIN_EXE_serve")),
        tmp.path(),
        &[("D2_REGISTRY", &registry), ("D2_DEFAULT_MODEL", "r50-fpn-3x"), ("D2_CACHE_DIR", &cache), ("D2_MODEL_ROLLOUT", "1")],
        moto.function_env(),
    ) else {
        return;
    };

    let png = std::fs::read(fixtures().join("images/coffee.png")).unwrap();
    let call = |event: Value| {
        let rie = &rie;
        async move {
            let inv = rie.invoke(&event).await;
            assert_eq!(inv.status, 200, "the emulator refused the invocation: {}\n{}", String::from_utf8_lossy(&inv.body), rie.log_text());
            let v = inv.json();
            assert!(v.get("errorType").is_none(), "the function failed: {v}\n{}", rie.log_text());
            v
        }
    };
    let json_of = |v: &Value| -> Value { serde_json::from_slice(&http_body(v)).unwrap_or_else(|e| panic!("{e}: {v}")) };

    // The first invocation starts the function (Lambda's init) and loads nothing yet.
    let page = call(function_url_event("GET", "/", b"", "text/plain", false)).await;
    assert_eq!(page["statusCode"], 200, "{page}");
    assert!(String::from_utf8(http_body(&page)).unwrap().contains("<title>d2serve: try a model</title>"));

    let info = call(function_url_event("POST", "/get_session_info", b"{}", "application/json", false)).await;
    assert_eq!(info["statusCode"], 200);
    assert_eq!(json_of(&info)["task type"], "instance segmentation");

    // Native route: image bytes in, annotation out; the model comes from the S3 registry.
    let native = call(function_url_event("POST", "/v1/models/r50-fpn-3x/predict", &png, "image/png", true)).await;
    assert_eq!(native["statusCode"], 200, "{}", String::from_utf8_lossy(&http_body(&native)));
    let ann = json_of(&native);
    assert_eq!(ann["annotation"]["size"], json!({"height": 400, "width": 600}));
    let objects = ann["annotation"]["objects"].as_array().unwrap().len();
    assert!(objects > 0);

    // Supervisely's /inference_image (multipart, as the SDK posts it), at the native default conf 0: the same objects.
    let body = multipart("d2serveboundary", r#"{"settings": {"conf_thres": 0.0}}"#, &png);
    let sly = call(function_url_event("POST", "/inference_image", &body, "multipart/form-data; boundary=d2serveboundary", true)).await;
    assert_eq!(sly["statusCode"], 200, "{}", String::from_utf8_lossy(&http_body(&sly)));
    assert_eq!(json_of(&sly)["annotation"]["objects"].as_array().unwrap().len(), objects);

    // API Gateway REST (v1) events: the stage is dropped from the path, as the template asks.
    let settings = call(api_gateway_v1_event("/get_custom_inference_settings", "{}")).await;
    assert_eq!(settings["statusCode"], 200, "{settings}");
    assert!(json_of(&settings)["settings"].as_str().unwrap().contains("conf_thres"));

    // Errors are the API's 4xx, never a function error.
    let bad = call(function_url_event("POST", "/inference_image_url", b"{not json", "application/json", false)).await;
    assert_eq!((bad["statusCode"].as_u64(), json_of(&bad)["error"].as_str()), (Some(400), Some("bad_json")));
    let unknown = call(function_url_event("POST", "/v1/models/no-such-model/predict", &png, "image/png", true)).await;
    assert_eq!(unknown["statusCode"].as_u64(), Some(404), "{unknown}");
    assert!(json_of(&unknown)["detail"].as_str().is_some_and(|d| !d.is_empty()));

    // Lambda's 6 MB response limit. A flat 8000x6000 photo at conf 0: 100 masks
    // the size of the image. As COCO RLE (about 7.5 MB, over the limit) to a
    // client that accepts gzip: sent gzipped (about 5 MB as Lambda sends it).
    let big = {
        let img = image::RgbImage::from_pixel(8000, 6000, image::Rgb([120, 130, 140]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        png
    };
    let with_gzip = |mut ev: Value| {
        ev["headers"]["accept-encoding"] = json!("gzip, deflate");
        ev
    };
    let mut coco = function_url_event("POST", "/v1/models/r50-fpn-3x/predict", &big, "image/png", true);
    coco["rawQueryString"] = json!("conf=0&format=coco");
    let r = call(with_gzip(coco)).await;
    assert_eq!(r["statusCode"], 200, "{}", String::from_utf8_lossy(&http_body(&r)[..http_body(&r).len().min(2000)]));
    assert_eq!(r["headers"]["content-encoding"], "gzip", "{}", r["headers"]);
    let gz = http_body(&r);
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["results"].as_array().map(Vec::len), Some(100));
    println!("Lambda response limit: COCO answer {:.2} MB, sent gzipped as {:.2} MB (base64)", raw.len() as f64 / 1048576.0, r["body"].as_str().unwrap().len() as f64 / 1048576.0);
    assert!(raw.len() > 6 * 1024 * 1024, "the case must be over the limit to test it: {} bytes", raw.len());
    // The Supervisely bitmaps of the same (PNG, incompressible, over the limit even
    // gzipped): a 422 that says what makes the answer smaller, never Lambda's 502.
    let mut sly = function_url_event("POST", "/v1/models/r50-fpn-3x/predict", &big, "image/png", true);
    sly["rawQueryString"] = json!("conf=0");
    let r = call(with_gzip(sly)).await;
    assert_eq!(r["statusCode"], 422, "{}", String::from_utf8_lossy(&http_body(&r)[..http_body(&r).len().min(2000)]));
    let e = json_of(&r);
    assert_eq!(e["error"], "response_too_large");
    let detail = e["detail"].as_str().unwrap();
    assert!(detail.contains("conf") && detail.contains("gzipped") && detail.contains("container"), "{detail}");
    println!("Lambda response limit, refused: {detail}");

    // The emulator's own account of the function's life: one init, each invoke reported.
    let log = rie.log_text();
    assert_eq!(log.matches("INIT START").count(), 1, "{log}");
    assert!(log.contains("INIT REPORT"), "{log}");
    let reports: Vec<&str> = log.lines().filter(|l| l.starts_with("REPORT RequestId")).collect();
    assert!(reports.len() >= 9, "{log}");

    // The cold start, split: Lambda's init, then the first predict's invoke (the
    // model fetched from S3, verified, its session made, the image inferred).
    let number_after = |line: &str, label: &str| -> f64 {
        let rest = &line[line.find(label).unwrap_or_else(|| panic!("no {label} in {line}")) + label.len()..];
        rest.trim_start().split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap().parse().unwrap()
    };
    let init_ms = number_after(log.lines().find(|l| l.contains("INIT REPORT")).unwrap(), "durationMs:");
    let loaded: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "model loaded")
        .unwrap_or_else(|| panic!("no 'model loaded' line: {log}"));
    let f = &loaded["fields"];
    let timing = native["headers"]["server-timing"].as_str().unwrap_or("");
    println!(
        "Lambda emulator cold start ({} bytes fixture model from S3): init {init_ms:.0} ms; first predict invoke {:.0} ms = fetch {:.0} ms + verify {:.0} ms + session {:.0} ms + request ({timing})",
        f["bytes"],
        number_after(reports[2], "Duration:"),
        f["fetch_s"].as_f64().unwrap() * 1e3,
        f["verify_s"].as_f64().unwrap() * 1e3,
        f["session_s"].as_f64().unwrap() * 1e3,
    );
}

//! `serve` end to end over real TCP: parity of final masks from image files,
//! the native API and metrics, and the bad-input battery.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use common::*;
use d2serve_engine::testing::openvino_available;
use serde_json::{Value, json};

fn png(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("images").join(name)).unwrap()
}

async fn infer_file(base: &str, name: &str, settings: &str) -> (u16, Value) {
    infer_file_with(base, name, settings, KEY).await
}

/// `inference_image` with the model chosen by the `x-model` header.
async fn infer_file_with(base: &str, name: &str, settings: &str, model: &str) -> (u16, Value) {
    inference_image(base, name, settings, Some(model)).await
}

/// Decoded from the image files, served, encoded as Supervisely JSON and
/// decoded again, the masks match Detectron2's final masks: ≥ 98% of instances
/// with mask IoU ≥ 0.98 (same class). Three architectures from one server, the
/// model chosen per request: FPN (28×28 masks), C4 (14×14 masks, res5 head) and
/// Cascade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_masks_match_detectron2_over_tcp() {
    if !ort_available() {
        return;
    }
    final_masks_match_detectron2_in("onnxruntime").await;
}

/// The same through OpenVINO (`--runtime openvino`): every family it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_masks_match_detectron2_in_openvino() {
    if !ort_available() || !openvino_available() {
        return;
    }
    final_masks_match_detectron2_in("openvino").await;
}

async fn final_masks_match_detectron2_in(runtime: &str) {
    let families = [
        ("r50_fpn", KEY),
        ("r50_c4", "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x"),
        ("cascade", "Misc/cascade_mask_rcnn_R_50_FPN_3x"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_with(tmp.path(), &families).await;
    let s = start_serve(tmp.path(), &reg, &["--runtime", runtime], &[]).await;
    let meta: Value = reqwest::Client::new().post(format!("{}/get_output_classes_and_tags", s.base)).body("{}").send().await.unwrap().json().await.unwrap();
    let titles: Vec<String> = meta["classes"].as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap().to_string()).collect();
    for (family, key) in families {
        let (mut total, mut matched, mut worst) = (0, 0, 1.0f64);
        for image in ["astronaut", "chelsea", "coffee", "motorcycle_wide"] {
            let (status, reply) = infer_file_with(&s.base, &format!("{image}.png"), r#"{"settings": {"conf_thres": 0.0}}"#, key).await;
            assert_eq!(status, 200, "{family}: {reply}");
            let ann = &reply["annotation"];
            let (h, w, gold) = golden_masks(family, image);
            assert_eq!((ann["size"]["height"].as_u64().unwrap() as usize, ann["size"]["width"].as_u64().unwrap() as usize), (h, w));
            let objects = ann["objects"].as_array().unwrap();
            let preds: Vec<(String, Vec<usize>)> = objects.iter().map(|o| (o["classTitle"].as_str().unwrap().to_string(), object_pixels(o, w))).collect();
            for o in objects {
                let (x0, y0, bw, bh, _) = decode_bitmap(o);
                assert!(x0 + bw <= w && y0 + bh <= h, "mask outside the image");
                assert_eq!(o["geometryType"], "bitmap");
                let conf = o["tags"][0]["value"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&conf));
            }
            let mut used = vec![false; preds.len()];
            for (class, px) in &gold {
                total += 1;
                let best = preds
                    .iter()
                    .enumerate()
                    .filter(|(j, (t, _))| !used[*j] && *t == titles[*class as usize])
                    .map(|(j, (_, p))| (j, iou_sorted(px, p)))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((j, iou)) = best.filter(|b| b.1 >= 0.98) {
                    used[j] = true;
                    matched += 1;
                    worst = worst.min(iou);
                }
            }
        }
        // The runtime that answered, as the session info reports it once the model is loaded.
        let info: Value = reqwest::Client::new()
            .post(format!("{}/get_session_info", s.base))
            .header("x-model", key)
            .body("{}")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["runtime"], runtime, "{family}: {info}");
        assert_eq!(info["precision"], "f32", "{family}: {info}");
        assert_eq!(info["runtime_reason"], "loaded", "{family}: {info}");
        println!("SERVE PARITY {family} ({runtime}): {matched}/{total} instances with mask IoU >= 0.98 (worst matched IoU {worst:.4})");
        assert!(matched as f64 >= 0.98 * total as f64, "{family}: {matched}/{total}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_api_coco_output_and_metrics() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let s = start_serve(tmp.path(), &reg, &[], &[]).await;
    let c = reqwest::Client::new();
    let models: Value = c.get(format!("{}/v1/models", s.base)).send().await.unwrap().json().await.unwrap();
    let m = &models["models"][0];
    assert_eq!(m["key"], KEY);
    assert_eq!(m["num_classes"], 80);
    assert_eq!(m["box_ap"], 41.0);
    // Not loaded yet: the runtime it will run in (the default, ONNX Runtime f32).
    assert_eq!((m["loaded"].as_bool(), m["runtime"].as_str(), m["precision"].as_str()), (Some(false), Some("onnxruntime"), Some("f32")), "{m}");

    let r = c.post(format!("{}/v1/models/r50-fpn-3x/predict", s.base)).body(png("chelsea.png")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let timing = r.headers()["server-timing"].to_str().unwrap().to_string();
    for stage in ["fetch;dur=", "decode;dur=", "infer;dur=", "encode;dur="] {
        assert!(timing.contains(stage), "{timing}");
    }
    let sly: Value = r.json().await.unwrap();
    let n = sly["annotation"]["objects"].as_array().unwrap().len();
    assert!(n > 0);

    let coco: Value = c.post(format!("{}/v1/models/{KEY}/predict?format=coco", s.base)).body(png("chelsea.png")).send().await.unwrap().json().await.unwrap();
    let results = coco["results"].as_array().unwrap();
    assert_eq!(results.len(), n, "same instances in both formats");
    assert_eq!(results[0]["segmentation"]["size"], json!([300, 451]));
    assert!(results[0]["segmentation"]["counts"].as_str().unwrap().len() > 2);
    let b = results[0]["bbox"].as_array().unwrap();
    assert!(b[2].as_f64().unwrap() > 0.0 && b[3].as_f64().unwrap() > 0.0);

    let metrics = c.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("d2serve_requests_total{route=\"/v1/models/{key}/predict\",status=\"200\"} 2"), "{metrics}");
    assert!(metrics.contains(&format!("d2serve_stage_seconds_count{{model=\"{KEY}\",stage=\"infer\"}} 2")), "{metrics}");
    assert!(metrics.contains("d2serve_model_loads_total 1") && metrics.contains("d2serve_model_cache_hits_total 1"), "{metrics}");
}

/// Readiness tells: 503 with the reason while the default model is not
/// published, ready once it is; liveness only says the process serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_whether_the_default_model_can_be_answered() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry");
    std::fs::create_dir_all(&root).unwrap();
    let s = start_serve(tmp.path(), &format!("file://{}", root.display()), &[], &[]).await;
    let c = reqwest::Client::new();
    for (method, path) in [("GET", "/readyz"), ("POST", "/is_ready"), ("GET", "/is_ready")] {
        let r = c.request(method.parse().unwrap(), format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 503, "{method} {path}");
        assert_eq!(r.headers()["retry-after"], "5");
        let body: Value = r.json().await.unwrap();
        assert!(body["status"] != "ready" && body["detail"].as_str().unwrap().contains("not published"), "{body}");
    }
    assert_eq!(c.get(format!("{}/livez", s.base)).send().await.unwrap().status(), 200);

    let art = convert_fixture(tmp.path());
    d2serve_registry::Registry::new(std::sync::Arc::new(d2serve_registry::store::LocalStore::new(&root))).publish(KEY, &art).await.unwrap();
    // A model the index in use does not name sends the server back to the registry (at most once a second).
    let t = std::time::Instant::now();
    let r = loop {
        let r = c.post(format!("{}/is_ready", s.base)).send().await.unwrap();
        if r.status() == 200 || t.elapsed() > std::time::Duration::from_secs(3) {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(r.status(), 200, "ready within a second or so of the publish");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready"}));
}

/// A catalog model published with random weights (the demo's sample) says
/// so everywhere a client looks, and claims none of the real checkpoint's APs or URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_model_says_it_is_one() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let catalog = d2serve_registry::Catalog::embedded().unwrap();
    let entry = catalog.require(KEY).unwrap();
    let art = tmp.path().join("sample");
    let opts = d2serve_d2onnx::ConvertOptions { min_size: Some(320), max_size: Some(512), random_weights: true, ..Default::default() };
    let m = d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &fixtures().join("r50_fpn/model.pkl"), &art, &opts).unwrap();
    assert!(m.is_sample() && m.name.contains("random weights") && m.box_ap.is_none() && m.mask_ap.is_none(), "{m:?}");
    let root = tmp.path().join("registry");
    d2serve_registry::Registry::new(std::sync::Arc::new(d2serve_registry::store::LocalStore::new(&root))).publish(KEY, &art).await.unwrap();
    let s = start_serve(tmp.path(), &format!("file://{}", root.display()), &[], &[]).await;
    let c = reqwest::Client::new();

    let models: Value = c.get(format!("{}/v1/models", s.base)).send().await.unwrap().json().await.unwrap();
    let m = &models["models"][0];
    assert_eq!((m["source"].as_str(), m["box_ap"].is_null(), m["mask_ap"].is_null()), (Some("sample"), true, true), "{m}");
    assert!(m["name"].as_str().unwrap().contains("random weights"), "{m}");
    let info: Value = c.post(format!("{}/get_session_info", s.base)).send().await.unwrap().json().await.unwrap();
    assert!(info["model_display_name"].as_str().unwrap().contains("random weights"), "{info}");
    assert!(info["checkpoint_url"].is_null(), "{info}");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("RANDOM WEIGHTS"), "the start-up log does not say it: {log}");
    assert!(log.contains("cache_dir"), "the start-up log does not name the cache folder: {log}");
}

/// A local server (allowed by --allow-hosts) that serves a PNG at /ok.png and
/// redirects /redirect to the cloud metadata address.
fn image_and_redirect_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let body = png("astronaut.png");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let mut s = s;
            if line.contains("/redirect") {
                let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n");
            } else {
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = s.write_all(&body);
            }
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_the_server_keeps_serving() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let img_port = image_and_redirect_server();
    // 127.0.0.1 opened explicitly (as tests must); other loopback spellings of other ports stay closed by name/port? No:
    // the guard opens the address, so the SSRF spellings below target a second server without the allow-list.
    let open = start_serve(tmp.path(), &reg, &["--allow-hosts", "127.0.0.1"], &[]).await;
    let closed = start_serve(tmp.path(), &reg, &[], &[]).await;
    let c = reqwest::Client::new();
    let post_json = |base: &str, path: &str, body: String| {
        let c = c.clone();
        let url = format!("{base}{path}");
        async move {
            let r = c.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let url_body = |u: &str| json!({"state": {"image_url": u, "settings": {}}}).to_string();

    // Positive control: an allowed host serves a real image.
    let (st, _) = post_json(&open.base, "/inference_image_url", url_body(&format!("http://127.0.0.1:{img_port}/ok.png"))).await;
    assert_eq!(st, 200);
    // An allowed host redirecting to the metadata address is stopped at the hop.
    let (st, body) = post_json(&open.base, "/inference_image_url", url_body(&format!("http://127.0.0.1:{img_port}/redirect"))).await;
    assert_eq!(st, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("169.254.169.254"), "{body}");

    let port = closed.base.rsplit(':').next().unwrap().to_string();
    let mut cases: Vec<(String, String, String)> = Vec::new();
    for u in [
        format!("http://127.0.0.1:{port}/is_alive"),
        format!("http://127.1:{port}/is_alive"),
        format!("http://0x7f000001:{port}/is_alive"),
        format!("http://2130706433:{port}/is_alive"),
        format!("http://[::ffff:127.0.0.1]:{port}/is_alive"),
        format!("http://[::1]:{port}/is_alive"),
        format!("http://localhost:{port}/is_alive"),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://10.0.0.1/x.png".into(),
        "file:///etc/passwd".into(),
        "gopher://example.com/".into(),
        "not a url".into(),
    ] {
        cases.push((format!("url {u}"), "/inference_image_url".into(), url_body(&u)));
    }
    cases.push(("bad json".into(), "/inference_image_url".into(), "{not json".into()));
    cases.push(("missing field".into(), "/inference_image_url".into(), r#"{"state": {}}"#.into()));
    cases.push(("json array".into(), "/inference_image_url".into(), "[1,2]".into()));
    cases.push(("unknown model".into(), "/inference_image_url".into(), json!({"state": {"image_url": "http://example.invalid/a.png", "model": "no/such_model"}}).to_string()));
    cases.push(("bad conf".into(), "/inference_image_url".into(), json!({"state": {"image_url": "http://example.invalid/a.png", "settings": {"conf_thres": 7}}}).to_string()));
    cases.push(("image id without server".into(), "/inference_image_id".into(), json!({"state": {"image_id": 5}}).to_string()));
    for (name, path, body) in cases {
        let (st, reply) = post_json(&closed.base, &path, body).await;
        assert!((400..500).contains(&st), "{name}: {st} {reply}");
        assert!(reply["error"].is_string() && reply["detail"].is_string(), "{name}: {reply}");
    }

    // Images: truncated, not an image, empty, decompression bomb, and an ROI outside the image.
    let full = png("astronaut.png");
    let bomb = d2serve_engine::testing::png_bomb(60000, 60000);
    let roi = r#"{"settings": {"rectangle": {"points": {"exterior": [[10, 10], [900, 900]], "interior": []}}}}"#;
    for (name, bytes, settings, expect) in [
        ("truncated", full[..full.len() / 3].to_vec(), "{}", 400),
        ("not an image", b"hello, this is not an image".repeat(10), "{}", 415),
        ("empty", Vec::new(), "{}", 400),
        ("bomb", bomb, "{}", 413),
        ("roi outside", full.clone(), roi, 400),
        ("settings not json", full.clone(), "{oops", 400),
    ] {
        let form = reqwest::multipart::Form::new()
            .part("files", reqwest::multipart::Part::bytes(bytes).file_name("x.png"))
            .text("settings", settings.to_string());
        let r = c.post(format!("{}/inference_image", closed.base)).multipart(form).send().await.unwrap();
        assert_eq!(r.status().as_u16(), expect, "{name}: {:?}", r.text().await);
    }
    // A header claiming 60000 x 60000 with nothing after it: 413 from the header alone.
    let mut header_only = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    header_only.extend_from_slice(&60000u32.to_be_bytes());
    header_only.extend_from_slice(&60000u32.to_be_bytes());
    header_only.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    // A JPEG cut after 5,000 bytes: refused as truncated, as Pillow (and Detectron2) refuse it.
    let jpeg = std::fs::read(fixtures().join("images/coffee.jpg")).unwrap();
    for (name, bytes, expect, word) in [("header only", header_only, 413, "over the limit"), ("truncated jpeg", jpeg[..5000].to_vec(), 400, "truncated")] {
        let form = reqwest::multipart::Form::new().part("files", reqwest::multipart::Part::bytes(bytes).file_name("x"));
        let r = c.post(format!("{}/inference_image", closed.base)).multipart(form).send().await.unwrap();
        assert_eq!(r.status().as_u16(), expect, "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string() && body["detail"].as_str().unwrap().contains(word), "{name}: {body}");
    }
    // Not multipart, a wrong method, a bad query: the documented JSON error shape, not axum's plain text.
    let r = c.post(format!("{}/inference_image", closed.base)).body("x").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "non-multipart body");
    let body: Value = r.json().await.expect("a JSON error body");
    assert!(body["error"].is_string() && body["detail"].as_str().unwrap().contains("multipart"), "{body}");
    let r = c.get(format!("{}/inference_image", closed.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.headers().contains_key("allow"));
    let body: Value = r.json().await.expect("a JSON error body");
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    assert_eq!(body["detail"], "GET is not allowed on /inference_image; use POST", "{body}");
    let r = c.post(format!("{}/v1/models/r50-fpn-3x/predict?conf=high", closed.base)).body("x").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("a JSON error body");
    assert!(body["detail"].is_string(), "{body}");
    let r = c.get(format!("{}/no/such/route", closed.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Still alive and still answering.
    assert_eq!(c.post(format!("{}/is_alive", closed.base)).body("{}").send().await.unwrap().status(), 200);
    let (st, _) = infer_file(&closed.base, "coffee.png", "{}").await;
    assert_eq!(st, 200);
}

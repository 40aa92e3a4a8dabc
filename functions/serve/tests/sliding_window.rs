//! Sliding-window inference over HTTP with the real `serve` (Supervisely's
//! `inference_mode: "sliding_window"`): the windows of Supervisely's rule, each
//! window's answer equal to the same window asked as an ROI, "basic" merge =
//! concatenation, "advanced" = class-agnostic NMS, `data.slides` as the SDK
//! writes it, and bad parameters a 400.

mod common;

use common::*;
use serde_json::{Value, json};

/// coffee.png is 600x400: with 256x256 windows and 32 px overlap, tops 0 and 144, lefts 0, 224 and 344.
const IMAGE: &str = "coffee.png";
const WINDOWS: [(u64, u64); 6] = [(0, 0), (0, 224), (0, 344), (144, 0), (144, 224), (144, 344)];

fn window_settings(extra: Value) -> Value {
    let mut s = json!({"conf_thres": 0.05, "inference_mode": "sliding_window", "sliding_window_params": {
        "windowHeight": 256, "windowWidth": 256, "overlapY": 32, "overlapX": 32, "borderStrategy": "shift_window"}});
    if let (Some(o), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    s
}

/// POST /inference_image with `state` as the settings part; (status, body).
async fn infer(base: &str, state: &Value) -> (u16, Value) {
    inference_image(base, IMAGE, &state.to_string(), None).await
}

fn objects(reply: &Value) -> &Vec<Value> {
    reply["annotation"]["objects"].as_array().unwrap_or_else(|| panic!("{reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_windows_are_the_rois_answers_concatenated() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let s = start_serve(tmp.path(), &reg, &[], &[]).await;
    let info: Value = reqwest::Client::new().post(format!("{}/get_session_info", s.base)).body("{}").send().await.unwrap().json().await.unwrap();
    assert_eq!(info["sliding_window_support"], "basic");

    let (status, reply) = infer(&s.base, &json!({"settings": window_settings(json!({}))})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["annotation"]["size"], json!({"height": 400, "width": 600}));
    let slides = reply["data"]["slides"].as_array().unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(slides.len(), 8, "6 windows + the whole image twice");
    assert_eq!(reply["slides_data"], reply["data"]);

    // Each window's labels are what the same window answers as an ROI, in window order.
    let mut concatenated = Vec::new();
    for (slide, (top, left)) in slides.iter().zip(WINDOWS) {
        let exterior = json!([[left, top], [left + 255, top + 255]]);
        assert_eq!(slide["rectangle"]["points"]["exterior"], exterior);
        let rect = json!({"points": {"exterior": exterior, "interior": []}});
        let (st, roi) = infer(&s.base, &json!({"settings": {"conf_thres": 0.05}, "rectangle": rect})).await;
        assert_eq!(st, 200, "{roi}");
        assert_eq!(&slide["labels"], &roi["annotation"]["objects"], "window at top {top}, left {left}");
        concatenated.extend(objects(&roi).iter().cloned());
    }
    assert!(!concatenated.is_empty(), "the fixture model finds something at conf 0.05");
    let whole = json!([[0, 0], [600, 400]]);
    for summary in &slides[6..] {
        assert_eq!(summary["rectangle"]["points"]["exterior"], whole, "the whole image, one pixel past it, as the SDK writes it");
        assert_eq!(summary["labels"].as_array().unwrap(), &concatenated);
    }
    assert_eq!(objects(&reply), &concatenated, "basic: the concatenation");
    println!("SLIDING WINDOW basic: 6 windows, {} labels", concatenated.len());

    // The native API takes the same option as query parameters.
    let png = std::fs::read(fixtures().join("images").join(IMAGE)).unwrap();
    let native: Value = reqwest::Client::new()
        .post(format!("{}/v1/models/r50-fpn-3x/predict?conf=0.05&window=256x256&overlap=32x32", s.base))
        .body(png)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(native["slides"].as_array().map(Vec::len), Some(8), "{native}");
    assert_eq!(objects(&native), &concatenated);

    // Bad parameters are the client's: 400 with the reason.
    for (settings, expect) in [
        (window_settings(json!({"sliding_window_params": {"windowHeight": 256, "windowWidth": 256, "overlapY": 0, "overlapX": 300}})), "overlap is too high"),
        (window_settings(json!({"sliding_window_params": {"windowHeight": 512, "windowWidth": 256}})), "larger than"),
        (window_settings(json!({"sliding_window_params": {"windowHeight": 25.5}})), "non-negative integer"),
        (window_settings(json!({"sliding_window_params": {"borderStrategy": "add_padding"}})), "shift_window"),
        (json!({"inference_mode": "sliding_window"}), "sliding_window_params"),
        (json!({"inference_mode": "tiles"}), "full_image"),
    ] {
        let (st, body) = infer(&s.base, &json!({"settings": settings})).await;
        assert_eq!(st, 400, "{settings}: {body}");
        assert_eq!(body["error"], "bad_sliding_window", "{body}");
        assert!(body["detail"].as_str().unwrap().contains(expect), "{expect}: {body}");
    }
    let rect = json!({"points": {"exterior": [[0, 0], [100, 100]]}});
    let (st, body) = infer(&s.base, &json!({"settings": window_settings(json!({})), "rectangle": rect})).await;
    assert_eq!((st, body["error"].as_str()), (400, Some("bad_sliding_window")), "{body}");
    let (st, _) = infer(&s.base, &json!({"settings": {"conf_thres": 0.05}})).await;
    assert_eq!(st, 200, "still serving");
}

/// `--sliding-window advanced`: class-agnostic NMS at IoU 0.5 over the windows'
/// instances; `none`: such settings get the whole-image answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advanced_merges_by_nms_and_none_answers_the_whole_image() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let s = start_serve(tmp.path(), &reg, &["--sliding-window", "advanced"], &[]).await;
    let png = std::fs::read(fixtures().join("images").join(IMAGE)).unwrap();
    let c = reqwest::Client::new();
    let coco: Value = c
        .post(format!("{}/v1/models/r50-fpn-3x/predict?conf=0.05&window=256x256&overlap=32x32&format=coco", s.base))
        .body(png.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slides = coco["slides"].as_array().unwrap_or_else(|| panic!("{coco}"));
    let all = slides[6]["labels"].as_array().unwrap().len();
    let results = coco["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= all, "{} merged of {all}", results.len());
    assert_eq!(slides[7]["labels"].as_array().unwrap().len(), results.len());
    let boxes: Vec<[f64; 4]> = results.iter().map(|r| {
        let b: Vec<f64> = r["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    }).collect();
    let scores: Vec<f64> = results.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "highest score first: {scores:?}");
    for i in 0..boxes.len() {
        for j in i + 1..boxes.len() {
            let (a, b) = (boxes[i], boxes[j]);
            let inter = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
            // COCO boxes are rounded to 2 decimals: a little slack over 0.5.
            assert!(inter / union <= 0.51, "kept boxes {i} and {j} overlap by IoU {}", inter / union);
        }
    }
    println!("SLIDING WINDOW advanced: {} of {all} window instances kept", results.len());
    drop(s);

    let s = start_serve(tmp.path(), &reg, &["--sliding-window", "none"], &[]).await;
    let info: Value = c.post(format!("{}/get_session_info", s.base)).body("{}").send().await.unwrap().json().await.unwrap();
    assert_eq!(info["sliding_window_support"], "none");
    let (status, reply) = infer(&s.base, &json!({"settings": window_settings(json!({}))})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"], json!({}));
    let (_, whole) = infer(&s.base, &json!({"settings": {"conf_thres": 0.05}})).await;
    assert_eq!(objects(&reply), objects(&whole), "mode none: the whole-image answer");
}

//! AP parity through `serve` over HTTP: the trained sample (samples/shapes),
//! imported and published as a user would, answers every validation image on
//! the native route (`format=coco`, every detection); scored with engine::coco,
//! its box and mask AP are within 0.2 AP of what Detectron2's COCOEvaluator
//! reported for the same checkpoint. The Supervisely route answers with the
//! sample's labels and real objects.

mod common;

use std::path::PathBuf;

use common::{fixtures, ort_available, start_serve_model};
use d2serve_engine::coco::{Dataset, Detection, IouType, STAT_NAMES, evaluate, read_results};
use d2serve_registry::store::LocalStore;
use d2serve_registry::{Catalog, Registry};
use serde_json::{Value, json};

fn sample() -> PathBuf {
    fixtures().join("../../samples/shapes")
}

#[tokio::test]
async fn served_over_http_it_scores_what_detectron2_reported() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let req = d2serve_d2onnx::import::ImportRequest {
        checkpoint: sample().join("model/model_final.pth"),
        config: None,
        classes: None,
        name: "shapes".into(),
    };
    let art = tmp.path().join("shapes");
    d2serve_d2onnx::import::import_checkpoint(&req, &Catalog::embedded().unwrap(), &art, &Default::default()).unwrap();
    let root = tmp.path().join("registry");
    Registry::new(std::sync::Arc::new(LocalStore::new(&root))).publish("shapes", &art).await.unwrap();
    let server = start_serve_model(tmp.path(), &format!("file://{}", root.display()), "shapes", &[], &[]).await;

    let val = sample().join("val");
    let gt = Dataset::from_slice(&std::fs::read(val.join("instances.json")).unwrap()).unwrap();
    let client = reqwest::Client::new();
    let mut results: Vec<Value> = Vec::new();
    for img in &gt.images {
        let bytes = std::fs::read(val.join(&img.file_name)).unwrap();
        let r = client
            .post(format!("{}/v1/models/shapes/predict?format=coco", server.base))
            .header("content-type", "image/png")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", img.file_name);
        let body: Value = r.json().await.unwrap();
        for mut det in body["results"].as_array().unwrap().iter().cloned() {
            let name = det["category_name"].as_str().unwrap().to_string();
            let cat = gt.categories.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("class {name} not in the dataset"));
            det["category_id"] = json!(cat.id);
            det["image_id"] = json!(img.id);
            results.push(det);
        }
    }
    let dets: Vec<Detection> = read_results(&serde_json::to_vec(&results).unwrap(), &gt).unwrap();
    let d2: Value = serde_json::from_slice(&std::fs::read(sample().join("d2_eval.json")).unwrap()).unwrap();
    let mut worst = 0.0f64;
    for (t, key) in [(IouType::Bbox, "bbox"), (IouType::Segm, "segm")] {
        let s = evaluate(&gt, &dets, t).unwrap();
        for (i, name) in STAT_NAMES.iter().take(6).enumerate() {
            let Some(want) = d2[key][name].as_f64() else { continue };
            let got = s.stats[i] * 100.0;
            let d = (got - want).abs();
            worst = worst.max(d);
            assert!(d <= 0.2, "{key} {name} over HTTP: {got:.4} vs Detectron2 {want:.4} (bound 0.2)");
        }
        println!("trained sample over HTTP: {key} AP {:.3} (Detectron2 {:.3})", s.stats[0] * 100.0, d2[key]["AP"].as_f64().unwrap());
    }
    println!("trained sample over HTTP: worst |AP difference| {worst:.4} (bound 0.2), {} detections on {} images", dets.len(), gt.images.len());

    // The Supervisely route (the server's default confidence): real objects with the sample's labels.
    let first = &gt.images[0];
    let form = reqwest::multipart::Form::new()
        .part("files", reqwest::multipart::Part::bytes(std::fs::read(val.join(&first.file_name)).unwrap()).file_name(first.file_name.clone()));
    let r = client.post(format!("{}/inference_image", server.base)).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ann: Value = r.json().await.unwrap();
    let objects = ann["annotation"]["objects"].as_array().unwrap();
    let classes: Vec<&str> = gt.categories.iter().map(|c| c.name.as_str()).collect();
    assert!(!objects.is_empty() && objects.iter().all(|o| classes.contains(&o["classTitle"].as_str().unwrap())), "{ann}");
}

//! The real `batch` binary, converted fixture model, images on a local S3
//! server (moto): annotations written, the corrupt image reported, a second
//! run processes nothing, a tight deadline stops early and the continuation
//! finishes the rest.

mod common;

use common::*;
use d2serve_registry::testing::MotoServer;
use serde_json::Value;

async fn put_inputs(moto: &MotoServer) {
    moto.create_bucket("photos").await;
    let c = moto.client();
    for (k, b) in input_objects() {
        c.put_object().bucket("photos").key(format!("in/{k}")).body(b.into()).send().await.unwrap();
    }
}

async fn get_json(moto: &MotoServer, key: &str) -> Option<Value> {
    let o = moto.client().get_object().bucket("photos").key(key).send().await.ok()?;
    Some(serde_json::from_slice(&o.body.collect().await.unwrap().into_bytes()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_annotates_an_s3_prefix_resumably() {
    if !ort_available() {
        return;
    }
    let Some(moto) = MotoServer::start() else { return };
    put_inputs(&moto).await;
    let tmp = tempfile::tempdir().unwrap();
    let reg = local_registry(tmp.path()).await;
    let cache = tmp.path().join("cache");
    let env = moto.env();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["--input", "s3://photos/in/", "--output", "s3://photos/out/", "--model", "r50-fpn-3x", "--registry", &reg]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--cache-dir".into(), cache.display().to_string(), "--s3-endpoint".into(), moto.endpoint.clone(), "--s3-path-style".into()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let call = |extra: &[&str]| {
        let a = base(extra);
        batch(&a.iter().map(String::as_str).collect::<Vec<_>>(), &env)
    };

    // 1. A deadline that leaves room for one image only.
    let out = call(&["--time-budget", "1ms", "--settings", r#"{"conf_thres": 0.3}"#]);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((s["processed"].as_u64(), s["remaining"].as_u64(), s["stopped"].as_str()), (Some(1), Some(3), Some("deadline")), "{s}");
    let token = s["continuation"].as_str().unwrap().to_string();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--continuation"), "the CLI should say how to continue");
    assert!(get_json(&moto, "out/astronaut.png.json").await.is_some());
    assert!(get_json(&moto, "out/chelsea.png.json").await.is_none());

    // 2. The continuation finishes the rest; the corrupt image is reported, the run goes on.
    let out = call(&["--continuation", &token, "--settings", r#"{"conf_thres": 0.3}"#]);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(2), "failed images give exit status 2");
    assert_eq!((s["processed"].as_u64(), s["remaining"].as_u64(), s["ignored"].as_u64()), (Some(2), Some(0), Some(1)), "{s}");
    assert_eq!(s["continuation"], Value::Null);
    let failed = s["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["key"], "broken.jpg");
    assert!(failed[0]["error"].as_str().unwrap().contains("decoded"), "{}", failed[0]["error"]);
    for (k, h, w) in image_sizes() {
        let ann = get_json(&moto, &format!("out/{k}.json")).await.unwrap_or_else(|| panic!("no annotation of {k}"));
        assert_eq!(ann["size"]["height"].as_u64(), Some(h), "{k}");
        assert_eq!(ann["size"]["width"].as_u64(), Some(w), "{k}");
        let objs = ann["objects"].as_array().unwrap();
        assert!(objs.iter().all(|o| o["geometryType"] == "bitmap" && o["tags"][0]["value"].as_f64().unwrap() >= 0.3), "{k}");
    }
    assert!(
        !get_json(&moto, "out/astronaut.png.json").await.unwrap()["objects"].as_array().unwrap().is_empty(),
        "the fixture model finds objects in astronaut.png at 0.3"
    );
    let summary_key = s["summary_key"].as_str().unwrap();
    assert_eq!(get_json(&moto, &format!("out/{summary_key}")).await.unwrap()["processed"], 2);

    // 3. A fresh run redoes nothing done (only the corrupt image, which has no annotation, is tried again).
    let before = moto.client().head_object().bucket("photos").key("out/chelsea.png.json").send().await.unwrap().e_tag;
    let s = summary(&call(&[]));
    assert_eq!((s["processed"].as_u64(), s["skipped"].as_u64(), s["failed"].as_array().map(Vec::len)), (Some(0), Some(3), Some(1)), "{s}");
    let after = moto.client().head_object().bucket("photos").key("out/chelsea.png.json").send().await.unwrap().e_tag;
    assert_eq!(before, after, "an annotation was rewritten");
    let runs = moto.client().list_objects_v2().bucket("photos").prefix("out/_runs/").send().await.unwrap();
    assert_eq!(runs.contents().len(), 3, "one summary per run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_mistakes_exit_1_with_a_message_that_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let none: &[(String, String)] = &[];
    let reg = format!("file://{}", tmp.path().join("empty-registry").display());
    std::fs::create_dir(tmp.path().join("empty-registry")).unwrap();
    let missing = format!("file://{}", tmp.path().join("no-such-registry").display());
    let inp = tmp.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    let i = inp.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--input", i], "give --input"),
        (&["--input", "s3:/photos", "--output", "o/", "--registry", &reg], "neither s3://"),
        (&["--input", i, "--output", "o/", "--model", "r51-fpn", "--registry", &reg], "r51-fpn"),
        (&["--input", i, "--output", "o/", "--settings", "{conf", "--registry", &reg], "--settings is not JSON"),
        (&["--input", "/nonexistent/photos", "--output", "o/", "--registry", &reg], "input folder /nonexistent/photos does not exist"),
        (&["--input", i, "--output", "o/", "--registry", &reg], "not published"),
        (&["--input", i, "--output", "o/", "--registry", &missing], "does not exist"),
    ];
    for (args, want) in cases {
        let mut a: Vec<&str> = args.to_vec();
        let cache = tmp.path().join("cache").display().to_string();
        a.extend(["--cache-dir", &cache]);
        let out = batch(&a, none);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

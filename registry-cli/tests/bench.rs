//! `zoo bench` end to end with the real binary on the small r50_fpn fixture:
//! every CPU runtime installed here is measured in the same run, each gives the
//! same detections, and the report says what `--runtime auto` picks and why.

mod common;

use common::{convert_r50_fixture, repo_root, text, zoo};
use d2serve_engine::testing::{openvino_available, ort_available};

#[test]
fn bench_reports_every_runtime_and_what_auto_picks() {
    if !ort_available() {
        return;
    }
    let openvino = openvino_available();
    let tmp = tempfile::tempdir().unwrap();
    let artifact = convert_r50_fixture(tmp.path());
    let photo = repo_root().join("tests/fixtures/images/coffee.png");
    let args = ["bench", "--artifact", artifact.to_str().unwrap(), "--image", photo.to_str().unwrap(), "--runs", "2", "--threads", "1", "--json"];
    let out = zoo(&args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let rows = r["runtimes"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|f| f["runtime"].as_str().unwrap()).collect();
    assert_eq!(names, if openvino { vec!["onnxruntime", "openvino"] } else { vec!["onnxruntime"] }, "{r}");
    for f in rows {
        assert_eq!(f["detections"], rows[0]["detections"], "same detections in every runtime: {r}");
        assert_eq!(f["precision"], "f32");
        for k in ["cold_session_s", "cold_first_inference_s", "new_shape_first_s", "warm_p50_s"] {
            assert!(f[k].as_f64().unwrap() > 0.0, "{k}: {f}");
        }
    }
    assert_eq!((r["runtime"].as_str(), r["warm_p50_s"].as_f64()), (Some("onnxruntime"), rows[0]["warm_p50_s"].as_f64()));
    // R50-FPN is a family auto runs in OpenVINO where it is installed.
    let auto = &r["auto"];
    assert_eq!(auto["runtime"], if openvino { "openvino" } else { "onnxruntime" }, "{auto}");
    assert!(auto["reason"].as_str().unwrap().starts_with(if openvino { "resnet-fpn: OpenVINO measured faster" } else { "OpenVINO is not installed" }), "{auto}");

    // --only: the one asked for.
    let out = zoo(&[&args[..], &["--only"]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["runtimes"].as_array().unwrap().len(), 1, "{r}");
}

/// bf16 is opt-in and refused by name where it cannot run: in ONNX Runtime, and
/// in OpenVINO on a CPU without native bf16 (AVX512_BF16 or AMX).
#[test]
fn bf16_is_refused_by_name_where_it_cannot_run() {
    if !ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let artifact = convert_r50_fixture(tmp.path());
    let photo = repo_root().join("tests/fixtures/images/coffee.png");
    let json = tmp.path().join("coffee.json");
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", photo.to_str().unwrap(), "--artifact", artifact.to_str().unwrap(), "--json", json.to_str().unwrap()];
        args.extend_from_slice(extra);
        zoo(&args, &[])
    };
    let out = predict(&["--precision", "bf16"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("precision bf16 is not available: only the OpenVINO runtime runs bf16; add --runtime openvino"), "{}", text(&out));
    if !openvino_available() {
        return;
    }
    let out = predict(&["--runtime", "openvino", "--precision", "bf16"]);
    if d2serve_engine::openvino::cpu_has_bf16().unwrap() {
        assert!(out.status.success(), "{}", text(&out));
    } else {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("this CPU has neither AVX512_BF16 nor AMX"), "{}", text(&out));
    }
}

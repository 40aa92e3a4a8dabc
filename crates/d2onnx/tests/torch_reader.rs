//! The `.pth` reader against files written by real torch
//! (scripts/gen-torch-test-data.py), with the values torch itself read back
//! recorded in tests/data/torch/expected.json.

use std::path::PathBuf;

use d2serve_d2onnx::pickle::{Array, DType};
use d2serve_d2onnx::read_any_checkpoint;
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch").join(name)
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(data("expected.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone()
}

const CANONICAL_NAN: i128 = -1;

/// The tensor's elements as the integers torch printed (ints) or the raw bit
/// patterns of its floats (bits).
fn elements(a: &Array<'_>) -> Vec<i128> {
    let d = &a.data;
    match a.dtype {
        // Every NaN is one value: torch's own f16 -> f32 widening picks a
        // payload (0x7fffffff here) that depends on the CPU path it took.
        DType::F32 => d
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .map(|b| if f32::from_bits(b).is_nan() { CANONICAL_NAN } else { b as i128 })
            .collect(),
        DType::F64 => d.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i128).collect(),
        DType::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i128).collect(),
        DType::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as i128).collect(),
        DType::U8 | DType::Bool => d.iter().map(|&b| b as i128).collect(),
        DType::F16 => panic!("half tensors must be widened to float32"),
    }
}

#[test]
fn every_readable_file_gives_torchs_own_values() {
    let cases = expected();
    assert!(cases.len() >= 12, "expected.json lists {} files", cases.len());
    let mut tensors_checked = 0;
    for (file, case) in &cases {
        let bytes = std::fs::read(data(file)).unwrap();
        let ckpt = read_any_checkpoint(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ckpt.format.name(), case["format"].as_str().unwrap(), "{file}");
        let want = case["tensors"].as_array().unwrap();
        assert_eq!(ckpt.tensors.len(), want.len(), "{file}: tensor count");
        // A DataParallel checkpoint has `module.` on every key; fvcore strips it.
        let strip = file == "module_prefix.pth";
        for t in want {
            let torch_name = t["name"].as_str().unwrap();
            let name = if strip { torch_name.strip_prefix("module.").unwrap() } else { torch_name };
            let got = ckpt.get(name).unwrap_or_else(|| panic!("{file}: no tensor `{name}`"));
            let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(got.shape, shape, "{file}: {name} shape");
            assert_eq!(got.dtype.name(), t["dtype"].as_str().unwrap(), "{file}: {name} dtype");
            let values = t.get("bits").or_else(|| t.get("ints")).unwrap().as_array().unwrap();
            let is_f32 = got.dtype == DType::F32;
            let want: Vec<i128> = values
                .iter()
                .map(|v| v.as_i64().map(i128::from).unwrap_or_else(|| v.as_u64().unwrap() as i128))
                .map(|b| if is_f32 && f32::from_bits(b as u32).is_nan() { CANONICAL_NAN } else { b })
                .collect();
            assert_eq!(elements(got), want, "{file}: {name} values");
            tensors_checked += 1;
        }
    }
    println!("TORCH READER: {} files, {tensors_checked} tensors equal to torch's own, bit for bit", cases.len());
}

#[test]
fn training_state_is_skipped_without_reading_it() {
    // model_only_storages.pth lacks the optimizer's storage records entirely:
    // it reads, so nothing outside "model" was materialised.
    for file in ["d2_train.pth", "model_only_storages.pth"] {
        let bytes = std::fs::read(data(file)).unwrap();
        let ckpt = read_any_checkpoint(&bytes).unwrap();
        let names: Vec<&str> = ckpt.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.iter().all(|n| !n.starts_with("optimizer") && !n.starts_with("scheduler")), "{file}: {names:?}");
    }
}

/// Each hostile or foreign file is refused with a message naming the problem.
#[test]
fn hostile_and_foreign_files_are_refused_with_a_reason() {
    let cases: &[(&str, &[&str])] = &[
        ("evil_os_system.pth", &["os", "system"]),
        ("evil_eval.pth", &["builtins", "eval"]),
        ("evil_rcnn.pth", &["GeneralizedRCNN"]),
        ("whole_module.pth", &["state_dict"]),
        ("compressed.pth", &["compress"]),
        ("missing_storage.pth", &["data/0"]),
        ("short_storage.pth", &["data/1"]),
        ("big_endian.pth", &["endian"]),
        ("broadcast_bomb.pth", &["element"]),
        ("no_model.pth", &["model"]),
        ("bare_tensor.pth", &["tensor"]),
    ];
    for (file, words) in cases {
        let bytes = std::fs::read(data(file)).unwrap();
        let err = match read_any_checkpoint(&bytes) {
            Ok(c) => panic!("{file} was read ({} tensors); it must be refused", c.tensors.len()),
            Err(e) => e.to_string(),
        };
        for w in *words {
            assert!(err.to_lowercase().contains(&w.to_lowercase()), "{file}: `{err}` should mention `{w}`");
        }
        println!("REFUSED {file}: {err}");
    }
}

/// Truncating or corrupting a real checkpoint anywhere never panics.
#[test]
fn damaged_checkpoints_are_errors_not_panics() {
    let bytes = std::fs::read(data("d2_train.pth")).unwrap();
    let step = (bytes.len() / 97).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        let _ = read_any_checkpoint(&bytes[..cut]);
        let mut flipped = bytes.clone();
        flipped[cut] ^= 0xff;
        let _ = read_any_checkpoint(&flipped);
    }
    assert!(read_any_checkpoint(&bytes[..bytes.len() / 2]).is_err());
}

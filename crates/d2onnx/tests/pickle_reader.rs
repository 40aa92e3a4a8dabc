//! The checkpoint reader on pickles written by Python (protocols 2–5, numpy 1.x
//! and 2.x names, OrderedDict, Fortran order, f16/f64/i64), on hostile input,
//! and under mutation (every mutant must be read or refused, never panic).

use std::path::PathBuf;

use d2serve_d2onnx::pickle::{DType, PickleError, read_checkpoint};

fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pickles").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&data("expected.json")).unwrap()
}

#[test]
fn every_protocol_reads_like_numpy() {
    let exp = expected();
    for file in ["zoo_p2.pkl", "zoo_np1_p2.pkl", "zoo_p3.pkl", "zoo_p4.pkl", "zoo_p5.pkl", "zoo_ordereddict_p4.pkl"] {
        let bytes = data(file);
        let ck = read_checkpoint(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ck.author.as_deref(), Some("test"), "{file}");
        assert_eq!(ck.tensors.len(), exp.as_object().unwrap().len(), "{file}");
        for (name, want) in exp.as_object().unwrap() {
            let a = ck.get(name).unwrap_or_else(|| panic!("{file}: {name} missing"));
            let shape: Vec<usize> = want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(a.shape, shape, "{file} {name}");
            let dtype = match want["dtype"].as_str().unwrap() {
                "float32" => DType::F32,
                "float64" => DType::F64,
                "float16" => DType::F16,
                "int64" => DType::I64,
                other => panic!("{other}"),
            };
            assert_eq!(a.dtype, dtype, "{file} {name}");
            let vals = a.to_f32();
            let want_vals: Vec<f32> = want["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            assert_eq!(&vals[..want_vals.len()], &want_vals[..], "{file} {name}");
            if let Some(sum) = want.get("sum") {
                let s: f64 = vals.iter().map(|&v| v as f64).sum();
                assert!((s - sum.as_f64().unwrap()).abs() < 1e-3, "{file} {name}: sum {s}");
            }
        }
    }
}

#[test]
fn hostile_and_foreign_pickles_are_refused_clearly() {
    let err = read_checkpoint(&data("evil_os_system.pkl")).unwrap_err();
    assert!(matches!(err, PickleError::Global { .. }), "{err}");
    assert!(err.to_string().contains("system"), "{err}");

    let err = read_checkpoint(&data("torch_like.pkl")).unwrap_err().to_string();
    assert!(err.contains("torch._utils._rebuild_tensor_v2") && err.contains("torch.save"), "{err}");

    let err = read_checkpoint(&data("blobs_p2.pkl")).unwrap_err().to_string();
    assert!(err.contains("Detectron1"), "{err}");

    let err = read_checkpoint(&data("not_a_dict.pkl")).unwrap_err().to_string();
    assert!(err.contains("not a dict") || err.contains("list"), "{err}");

    let good = data("zoo_p4.pkl");
    for cut in [0, 1, 2, 10, good.len() / 2, good.len() - 1] {
        let err = read_checkpoint(&good[..cut]).unwrap_err();
        assert!(matches!(err, PickleError::Truncated(_) | PickleError::Malformed { .. }), "cut {cut}: {err}");
    }
    assert!(read_checkpoint(b"\x80\x01}.").unwrap_err().to_string().contains("protocols 2 to 5"));
    // A persistent reference is how torch.save stores tensors.
    assert!(read_checkpoint(b"\x80\x02X\x01\x00\x00\x00aQ.").unwrap_err().to_string().contains("persistent"));
}

#[test]
fn huge_declared_sizes_do_not_allocate() {
    // BINUNICODE8 / BINBYTES8 claiming 2^60 bytes, BINUNICODE claiming 4 GiB: refused as truncated.
    for bytes in [
        b"\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x10".to_vec(),
        b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x0f".to_vec(),
        b"\x80\x02X\xff\xff\xff\xff".to_vec(),
    ] {
        assert!(matches!(read_checkpoint(&bytes), Err(PickleError::Truncated(_))));
    }
}

/// A property test over mutated fixtures (the corpus of the cargo-fuzz target
/// in fuzz/): bit flips, byte overwrites, deletions, insertions and splices of
/// real checkpoints. Every mutant must be read or refused, never panic.
#[test]
fn mutated_checkpoints_never_panic() {
    let seeds: Vec<Vec<u8>> = ["zoo_p2.pkl", "zoo_p3.pkl", "zoo_p4.pkl", "zoo_p5.pkl", "zoo_ordereddict_p4.pkl", "torch_like.pkl"]
        .iter()
        .map(|f| data(f))
        .collect();
    let mut state = 0x243f_6a88_85a3_08d3u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let (mut ok, mut refused) = (0, 0);
    for i in 0..6000 {
        let mut m = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rand(4) {
            let pos = rand(m.len());
            match rand(5) {
                0 => m[pos] ^= 1 << rand(8),
                1 => m[pos] = rand(256) as u8,
                2 => {
                    m.remove(pos);
                }
                3 => m.insert(pos, rand(256) as u8),
                _ => {
                    let other = &seeds[rand(seeds.len())];
                    let start = rand(other.len());
                    let len = rand(64).min(other.len() - start);
                    m.splice(pos..pos, other[start..start + len].iter().copied());
                }
            }
            if m.is_empty() {
                break;
            }
        }
        match read_checkpoint(&m) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    println!("mutants: {ok} read, {refused} refused, none panicked");
    assert!(refused > 1000, "the mutations must exercise the error paths");
}

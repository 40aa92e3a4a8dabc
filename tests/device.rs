//! Execution provider choice with the CPU ONNX Runtime library the tests
//! install: `auto` runs (on CPU), `cuda` is refused with a message that says how
//! to get the GPU library. (With the onnxruntime-gpu library and a GPU, `cuda`
//! would load instead: that machine is not this one, so the test skips there.)

mod support;

use d2serve_d2onnx::ConvertOptions;
use d2serve_engine::runtime::{Device, Model, RuntimeError, SessionOptions, find_library};
use d2serve_registry::Catalog;
use support::{fixtures, ort_available};

#[test]
fn auto_falls_back_to_cpu_and_cuda_is_refused_clearly_without_the_gpu_library() {
    if !ort_available() {
        return;
    }
    let lib = find_library().unwrap();
    if lib.parent().is_some_and(|d| d.join("libonnxruntime_providers_cuda.so").exists()) {
        eprintln!("SKIPPED: {} is the GPU library", lib.display());
        return;
    }
    let catalog = Catalog::embedded().unwrap();
    let entry = catalog.require("r50-fpn-3x").unwrap();
    let out = tempfile::tempdir().unwrap();
    d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &fixtures().join("r50_fpn/model.pkl"), out.path(), &ConvertOptions::default()).unwrap();
    let path = out.path().join("model.onnx");

    let mut auto = Model::load(&path, &SessionOptions { device: Device::Auto, ..Default::default() }, None).unwrap();
    assert_eq!(auto.device(), Device::Cpu);
    let rgb = vec![128u8; 64 * 96 * 3];
    auto.run(&rgb, 64, 96).unwrap();

    let err = Model::load(&path, &SessionOptions { device: Device::Cuda, ..Default::default() }, None).err().expect("cuda must fail here");
    assert!(matches!(err, RuntimeError::Cuda(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("install-ort.sh --gpu") && msg.contains("--device cpu"), "{msg}");
    println!("cuda refused: {msg}");
}

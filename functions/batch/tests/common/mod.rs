//! Test support: the converted fixture model in a local registry, the fixture
//! images (plus a corrupt one and a non-image) as an input prefix, and the
//! real `batch` binary.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use d2serve_registry::store::LocalStore;
use d2serve_registry::{Catalog, Registry};

pub const KEY: &str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

pub use d2serve_engine::testing::ort_available;

/// The r50_fpn fixture converted at test size 320/512 (as serve's tests) into `dir/artifact`.
pub fn convert_fixture(dir: &Path) -> PathBuf {
    let catalog = Catalog::embedded().unwrap();
    let entry = catalog.require(KEY).unwrap();
    let art = dir.join("artifact");
    let opts = d2serve_d2onnx::ConvertOptions { min_size: Some(320), max_size: Some(512), ..Default::default() };
    d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &fixtures().join("r50_fpn/model.pkl"), &art, &opts).unwrap();
    art
}

/// A local registry holding the converted fixture.
pub async fn local_registry(dir: &Path) -> String {
    let art = convert_fixture(dir);
    let root = dir.join("registry");
    Registry::new(Arc::new(LocalStore::new(&root))).publish(KEY, &art).await.unwrap();
    format!("file://{}", root.display())
}

/// The input prefix: key → bytes. In key order: astronaut.png, broken.jpg
/// (a JPEG header and garbage), chelsea.png, notes.txt (not an image), sub/coffee.jpg.
pub fn input_objects() -> Vec<(String, Vec<u8>)> {
    let img = |n: &str| std::fs::read(fixtures().join("images").join(n)).unwrap();
    let mut broken = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec();
    broken.extend(std::iter::repeat_n(0x5a, 300));
    vec![
        ("astronaut.png".into(), img("astronaut.png")),
        ("broken.jpg".into(), broken),
        ("chelsea.png".into(), img("chelsea.png")),
        ("notes.txt".into(), b"not an image".to_vec()),
        ("sub/coffee.jpg".into(), img("coffee.jpg")),
    ]
}

/// (height, width) of each good image, for checking annotations.
pub fn image_sizes() -> Vec<(&'static str, u64, u64)> {
    vec![("astronaut.png", 512, 512), ("chelsea.png", 300, 451), ("sub/coffee.jpg", 400, 600)]
}

pub fn batch(args: &[&str], envs: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_batch"));
    cmd.args(args).env_remove("AWS_LAMBDA_RUNTIME_API").env("D2_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The summary a CLI run printed on stdout.
pub fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); status {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

//! Test support: a converted fixture model in a registry, the real `serve`
//! binary on a free port, golden masks, and Supervisely bitmap decoding.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use d2serve_registry::store::LocalStore;
use d2serve_registry::{Catalog, Registry};

pub const KEY: &str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub use d2serve_engine::testing::ort_available;

/// Convert the r50_fpn fixture (test size 320/512) into `dir/artifact`.
pub fn convert_fixture(dir: &Path) -> PathBuf {
    convert_family(dir, "r50_fpn", KEY, "artifact")
}

/// Convert fixture `family` as catalog entry `key` (test size 320/512) into `dir/name`.
pub fn convert_family(dir: &Path, family: &str, key: &str, name: &str) -> PathBuf {
    let catalog = Catalog::embedded().unwrap();
    let entry = catalog.require(key).unwrap();
    let out = dir.join(name);
    let opts = d2serve_d2onnx::ConvertOptions { min_size: Some(320), max_size: Some(512), ..Default::default() };
    d2serve_d2onnx::convert_checkpoint(entry, &catalog.classes(entry), &fixtures().join(family).join("model.pkl"), &out, &opts).unwrap();
    out
}

/// A local registry holding the converted fixture; returns its location.
pub async fn local_registry(dir: &Path) -> String {
    registry_with(dir, &[("r50_fpn", KEY)]).await
}

/// A local registry holding each (fixture family, catalog key); returns its location.
pub async fn registry_with(dir: &Path, models: &[(&str, &str)]) -> String {
    let root = dir.join("registry");
    let reg = Registry::new(std::sync::Arc::new(LocalStore::new(&root)));
    for (family, key) in models {
        let art = convert_family(dir, family, key, &format!("artifact-{family}"));
        reg.publish(key, &art).await.unwrap();
    }
    format!("file://{}", root.display())
}

/// Import the custom fixture `family` (a training run: model_final.pth,
/// config.yaml, model_classes.json) as `name` through `zoo import`'s library
/// path and publish it into the registry at `registry_root`.
pub async fn publish_custom(dir: &Path, registry_root: &Path, family: &str, name: &str) {
    let run = fixtures().join(family);
    let req = d2serve_d2onnx::import::ImportRequest {
        checkpoint: run.join("model_final.pth"),
        config: None,
        classes: None,
        name: name.to_string(),
    };
    let out = dir.join(format!("import-{family}"));
    d2serve_d2onnx::import::import_checkpoint(&req, &Catalog::embedded().unwrap(), &out, &Default::default()).unwrap();
    Registry::new(std::sync::Arc::new(LocalStore::new(registry_root))).publish(name, &out).await.unwrap();
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST one fixture photo to Supervisely's `/inference_image` as the SDK does
/// (multipart `files` + `settings`), optionally naming the model (`x-model`).
pub async fn inference_image(base: &str, image: &str, settings: &str, model: Option<&str>) -> (u16, serde_json::Value) {
    let bytes = std::fs::read(fixtures().join("images").join(image)).unwrap();
    let form = reqwest::multipart::Form::new()
        .part("files", reqwest::multipart::Part::bytes(bytes).file_name(image.to_string()))
        .text("settings", settings.to_string());
    let mut req = reqwest::Client::new().post(format!("{base}/inference_image")).multipart(form);
    if let Some(m) = model {
        req = req.header("x-model", m);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start the real `serve` binary and wait until it answers.
pub async fn start_serve(dir: &Path, registry: &str, extra: &[&str], envs: &[(String, String)]) -> Server {
    start_serve_model(dir, registry, "r50-fpn-3x", extra, envs).await
}

/// [`start_serve`] with `model` (a catalog name or an imported model's key) as the default model.
pub async fn start_serve_model(dir: &Path, registry: &str, model: &str, extra: &[&str], envs: &[(String, String)]) -> Server {
    let port = free_port();
    let log = dir.join(format!("serve-{port}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_serve"));
    cmd.args(["--registry", registry, "--model", model, "--listen", &format!("127.0.0.1:{port}")]);
    if !extra.contains(&"--cache-dir") {
        cmd.arg("--cache-dir").arg(dir.join(format!("cache-{port}")));
    }
    cmd.args(extra)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server { child, base: base.clone(), log };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/livez")).await {
            if r.status().is_success() {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "serve did not start: {}", std::fs::read_to_string(&server.log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fixture photos over HTTP on loopback (Python's `http.server`), for the
/// image-URL paths; stopped when dropped.
pub struct ImageServer {
    child: Child,
    /// `http://127.0.0.1:PORT`, serving `tests/fixtures/images/`.
    pub base: String,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn serve_fixture_images(python: &Path) -> ImageServer {
    let port = free_port();
    let child = Command::new(python)
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(fixtures().join("images"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ImageServer { child, base: format!("http://127.0.0.1:{port}") }
}

/// Decode a Supervisely bitmap object into (x0, y0, w, h, bits).
pub fn decode_bitmap(obj: &serde_json::Value) -> (usize, usize, usize, usize, Vec<bool>) {
    let data = obj["bitmap"]["data"].as_str().unwrap();
    let z = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    let mut png = Vec::new();
    flate2::read::ZlibDecoder::new(&z[..]).read_to_end(&mut png).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgba8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let bits = img.pixels().map(|p| p.0[3] > 0).collect();
    let o = obj["bitmap"]["origin"].as_array().unwrap();
    (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize, w, h, bits)
}

/// Golden final masks of a fixture image: (full-size H, W, per-instance (class_id, sparse pixel set as sorted indices)).
pub fn golden_masks(family: &str, image: &str) -> (usize, usize, Vec<(i64, Vec<usize>)>) {
    let dir = fixtures().join(family);
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{image}.json"))).unwrap()).unwrap();
    let inst: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{image}.instances.json"))).unwrap()).unwrap();
    let m = &info["masks"];
    let (h, w) = (m["shape"][1].as_u64().unwrap() as usize, m["shape"][2].as_u64().unwrap() as usize);
    let npy = std::fs::read(dir.join(m["file"].as_str().unwrap())).unwrap();
    let hlen = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let packed = &npy[10 + hlen..];
    let mut out = Vec::new();
    for (k, crop) in m["crops"].as_array().unwrap().iter().enumerate() {
        let c: Vec<usize> = crop.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (y0, x0, y1, x1) = (c[0], c[1], c[2], c[3]);
        let off = m["offsets"][k].as_u64().unwrap() as usize;
        let cw = x1 - x0;
        let mut px = Vec::new();
        for i in 0..(y1 - y0) * cw {
            if packed[off + i / 8] & (0x80 >> (i % 8)) != 0 {
                px.push((y0 + i / cw) * w + x0 + i % cw);
            }
        }
        out.push((inst[k]["class_id"].as_i64().unwrap(), px));
    }
    (h, w, out)
}

pub fn object_pixels(obj: &serde_json::Value, w: usize) -> Vec<usize> {
    let (x0, y0, bw, _bh, bits) = decode_bitmap(obj);
    bits.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| (y0 + i / bw) * w + x0 + i % bw).collect()
}

pub fn iou_sorted(a: &[usize], b: &[usize]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter).max(1) as f64
}

//! The registry on both real backends: a local folder and an S3 server (moto,
//! on 127.0.0.1). The same scenarios run against each.

use std::sync::Arc;
use std::time::Duration;

use d2serve_registry::registry::INDEX_KEY;
use d2serve_registry::store::{CondPut, LocalStore, ObjectStore, S3Store};
use d2serve_registry::testing::{MotoServer, fake_artifact};
use d2serve_registry::{Registry, RegistryError};

async fn publish_read_back_and_roll_back(store: Arc<dyn ObjectStore>) {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::new(store.clone());
    assert!(reg.index().await.unwrap().models.is_empty());
    let key = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x";

    let version = |dir: &str| Registry::check_artifact_dir(&tmp.path().join(dir), key).unwrap().1;
    fake_artifact(&tmp.path().join("v1"), key, 10_000, 1);
    let id1 = version("v1");
    let p1 = reg.publish(key, &tmp.path().join("v1")).await.unwrap();
    assert!(p1.uploaded);
    assert_eq!(p1.artifact, id1);
    assert_eq!(p1.previous, None);

    // Publishing the same artifact again uploads nothing and changes nothing.
    let again = reg.publish(key, &tmp.path().join("v1")).await.unwrap();
    assert!(!again.uploaded);

    let v2 = fake_artifact(&tmp.path().join("v2"), key, 12_000, 2);
    let id2 = version("v2");
    let p2 = reg.publish(key, &tmp.path().join("v2")).await.unwrap();
    assert_eq!(p2.previous.as_deref(), Some(id1.as_str()));

    let index = reg.index().await.unwrap();
    assert_eq!(index.format, d2serve_registry::registry::INDEX_FORMAT);
    assert_eq!(index.models[key].artifact, id2);

    // A reader fetches the current artifact, hash-checked.
    let dest = tmp.path().join("fetched");
    std::fs::create_dir_all(&dest).unwrap();
    let m = reg.fetch_current(key, &dest).await.unwrap();
    assert_eq!(m, v2);
    assert_eq!(std::fs::read(dest.join("model.onnx")).unwrap(), std::fs::read(tmp.path().join("v2/model.onnx")).unwrap());

    // Both artifacts are listed; roll back to v1.
    let arts = reg.artifacts().await.unwrap();
    assert_eq!(arts.len(), 2);
    assert_eq!(arts.iter().filter(|a| a.current).count(), 1);
    reg.set_current(key, &id1).await.unwrap();
    assert_eq!(reg.index().await.unwrap().models[key].artifact, id1);

    // gc keeps current and previous, removes what no entry names.
    fake_artifact(&tmp.path().join("v3"), key, 1_000, 3);
    let id3 = version("v3");
    reg.publish(key, &tmp.path().join("v3")).await.unwrap(); // current v3, previous v1
    let doomed = reg.gc(Duration::ZERO, true).await.unwrap();
    assert_eq!(doomed.len(), 1);
    assert_eq!(doomed[0].artifact, id2);
    assert_eq!(reg.artifacts().await.unwrap().len(), 3, "dry run removes nothing");
    // A young unreferenced artifact survives a gc with a grace period.
    assert!(reg.gc(Duration::from_secs(3600), false).await.unwrap().is_empty());
    let removed = reg.gc(Duration::ZERO, false).await.unwrap();
    assert_eq!(removed.len(), 1);
    let left: Vec<_> = reg.artifacts().await.unwrap().into_iter().map(|a| a.artifact).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&id3) && left.contains(&id1));

    // The same graph with a corrected manifest (a class renamed) is a new
    // version: uploaded, current, the old one its previous, and rolled back to.
    let fixed = tmp.path().join("v3-fixed");
    std::fs::create_dir_all(&fixed).unwrap();
    std::fs::copy(tmp.path().join("v3/model.onnx"), fixed.join("model.onnx")).unwrap();
    let mut m3 = d2serve_registry::Manifest::read(&tmp.path().join("v3/manifest.json")).unwrap();
    let typo = m3.classes[0].name.clone();
    m3.classes[0].name = format!("{typo}-fixed");
    std::fs::write(fixed.join("manifest.json"), m3.to_json()).unwrap();
    let p = reg.publish(key, &fixed).await.unwrap();
    assert!(p.uploaded, "a changed manifest is never 'already stored'");
    assert_ne!(p.artifact, id3);
    assert_eq!(p.previous.as_deref(), Some(id3.as_str()));
    let (entry, current) = reg.current(key).await.unwrap();
    assert_eq!((entry.artifact.as_str(), current.classes[0].name.as_str()), (p.artifact.as_str(), format!("{typo}-fixed").as_str()));
    let back = tmp.path().join("fixed-back");
    std::fs::create_dir_all(&back).unwrap();
    assert_eq!(reg.fetch_current(key, &back).await.unwrap().classes[0].name, format!("{typo}-fixed"));
    assert_eq!(std::fs::read(back.join("manifest.json")).unwrap(), std::fs::read(fixed.join("manifest.json")).unwrap(), "the manifest travels byte for byte");
    reg.set_current(key, &id3).await.unwrap();
    assert_eq!(reg.current(key).await.unwrap().1.classes[0].name, typo);

    // A folder whose manifest does not match its model is refused before upload.
    let bad = tmp.path().join("bad");
    fake_artifact(&bad, key, 100, 4);
    std::fs::write(bad.join("model.onnx"), b"tampered").unwrap();
    let err = reg.publish(key, &bad).await.unwrap_err();
    assert!(matches!(err, RegistryError::InvalidArtifact(_)), "{err}");
    assert!(err.to_string().contains("convert again"), "{err}");
    let err = reg.publish("other/key", &tmp.path().join("v1")).await.unwrap_err();
    assert!(err.to_string().contains("not `other/key`"), "{err}");
}

async fn concurrent_publishers_lose_nothing(store: Arc<dyn ObjectStore>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let key = format!("test/model_{i}");
        let dir = tmp.path().join(format!("a{i}"));
        fake_artifact(&dir, &key, 2_000 + i, i as u64);
        let reg = Registry::new(store.clone());
        tasks.push(tokio::spawn(async move { reg.publish(&key, &dir).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let index = Registry::new(store).index().await.unwrap();
    assert_eq!(index.models.len(), 8, "every publisher's entry survived: {:?}", index.models.keys());
}

async fn conditional_writes_are_honoured(store: Arc<dyn ObjectStore>) {
    let k = "cas/object.json";
    let v1 = match store.put_if(k, "1".into(), None).await.unwrap() {
        CondPut::Written(v) => v,
        CondPut::Conflict => panic!("first create conflicted"),
    };
    assert_eq!(store.put_if(k, "x".into(), None).await.unwrap(), CondPut::Conflict, "create-if-absent");
    let v2 = match store.put_if(k, "2".into(), Some(&v1)).await.unwrap() {
        CondPut::Written(v) => v,
        CondPut::Conflict => panic!("replace with the right version conflicted"),
    };
    assert_eq!(store.put_if(k, "3".into(), Some(&v1)).await.unwrap(), CondPut::Conflict, "stale version");
    let obj = store.get(k).await.unwrap().unwrap();
    assert_eq!(&obj.bytes[..], b"2");
    assert_eq!(obj.version, v2);
    store.delete(k).await.unwrap();
    assert!(store.get(k).await.unwrap().is_none());
}

async fn corrupt_index_is_reported(store: Arc<dyn ObjectStore>) {
    store.put_if(INDEX_KEY, "{not json".into(), None).await.unwrap();
    let err = Registry::new(store).index().await.unwrap_err().to_string();
    assert!(err.contains("corrupt") && err.contains("index.json"), "{err}");
}

fn local() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(tmp.path().join("registry")));
    (tmp, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_folder_registry() {
    let (tmp, store) = local();
    // A folder that is not there is an outage for a reader (unmounted, removed), not an
    // empty registry: serving must not answer "not published" for it. Publishing creates it.
    let err = Registry::new(store.clone()).index().await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    std::fs::create_dir_all(tmp.path().join("registry")).unwrap();
    publish_read_back_and_roll_back(store.clone()).await;
    conditional_writes_are_honoured(store.clone()).await;
    // No temporary or partial files remain visible.
    let all: Vec<_> = walk(&tmp.path().join("registry"));
    assert!(all.iter().all(|p| !p.contains(".tmp-")), "{all:?}");
    let (_t2, store2) = local();
    concurrent_publishers_lose_nothing(store2).await;
    let (_t3, store3) = local();
    corrupt_index_is_reported(store3).await;
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_registry() {
    let Some(moto) = MotoServer::start() else { return };
    moto.create_bucket("registry").await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::from_client(moto.client(), "registry", "prod/v1"));
    assert_eq!(store.location(), "s3://registry/prod/v1");
    publish_read_back_and_roll_back(store.clone()).await;
    conditional_writes_are_honoured(store.clone()).await;
    let isolated = |p: &str| -> Arc<dyn ObjectStore> { Arc::new(S3Store::from_client(moto.client(), "registry", p)) };
    concurrent_publishers_lose_nothing(isolated("race")).await;
    corrupt_index_is_reported(isolated("corrupt")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_upload_of_a_large_artifact() {
    let Some(moto) = MotoServer::start() else { return };
    moto.create_bucket("big").await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::from_client(moto.client(), "big", ""));
    let tmp = tempfile::tempdir().unwrap();
    let key = "test/large";
    let size = 21 * 1024 * 1024 + 123; // above the 16 MiB multipart threshold: 3 parts
    let m = fake_artifact(&tmp.path().join("a"), key, size, 9);
    let reg = Registry::new(store.clone());
    assert!(reg.publish(key, &tmp.path().join("a")).await.unwrap().uploaded);
    let head = moto
        .client()
        .head_object()
        .bucket("big")
        .key(format!("models/{key}/{}/model.onnx", Registry::check_artifact_dir(&tmp.path().join("a"), key).unwrap().1))
        .send()
        .await
        .unwrap();
    assert!(head.e_tag().unwrap().ends_with("-3\""), "a 3-part multipart ETag: {:?}", head.e_tag());
    assert_eq!(head.content_length(), Some(size as i64));
    let dest = tmp.path().join("back");
    std::fs::create_dir_all(&dest).unwrap();
    reg.fetch_current(key, &dest).await.unwrap();
    assert_eq!(
        d2serve_registry::hashing::sha256_file(&dest.join("model.onnx")).unwrap(),
        m.artifact.sha256
    );
    // Never overwritten: a second multipart create of the same key is refused.
    assert!(!store
        .create_from_file(&format!("models/{key}/{}/model.onnx", Registry::check_artifact_dir(&tmp.path().join("a"), key).unwrap().1), &tmp.path().join("a/model.onnx"))
        .await
        .unwrap());
}

/// A registry written before version ids (index format 1: folders named by the
/// graph's sha256) is still read and fetched as it is; the next publish of the
/// model writes a version id and moves the entry to it.
#[tokio::test]
async fn a_format_1_registry_keeps_working_and_migrates_on_publish() {
    let (tmp, store) = local();
    let key = "test/legacy";
    let m = fake_artifact(&tmp.path().join("a"), key, 3_000, 5);
    let old = &m.artifact.sha256;
    for file in ["model.onnx", "manifest.json"] {
        assert!(store.create_from_file(&format!("models/{key}/{old}/{file}"), &tmp.path().join("a").join(file)).await.unwrap());
    }
    let index = format!(r#"{{"format": 1, "models": {{"{key}": {{"artifact": "{old}", "size": 3000, "published_at": "2026-11-01T00:00:00Z"}}}}}}"#);
    store.put_if(INDEX_KEY, index.into(), None).await.unwrap();
    let reg = Registry::new(store.clone());
    let dest = tmp.path().join("fetched");
    std::fs::create_dir_all(&dest).unwrap();
    assert_eq!(reg.fetch_current(key, &dest).await.unwrap(), m);
    let stored = reg.stored_manifest(key, old).await.unwrap();
    assert!(stored.legacy);
    // A legacy folder whose manifest names another graph is broken, not served.
    let other = fake_artifact(&tmp.path().join("b"), key, 3_000, 6);
    let wrong = &other.artifact.sha256;
    store.create_from_file(&format!("models/{key}/{wrong}/manifest.json"), &tmp.path().join("a/manifest.json")).await.unwrap();
    let err = reg.stored_manifest(key, wrong).await.unwrap_err().to_string();
    assert!(err.contains("another artifact"), "{err}");

    let p = reg.publish(key, &tmp.path().join("a")).await.unwrap();
    assert!(p.uploaded && p.artifact != *old, "{p:?}");
    assert_eq!(p.previous.as_deref(), Some(old.as_str()));
    let index = reg.index().await.unwrap();
    assert_eq!((index.format, index.models[key].artifact.as_str()), (2, p.artifact.as_str()));
    assert!(!reg.stored_manifest(key, &p.artifact).await.unwrap().legacy);
}

/// A folder registry is who it points to: one folder named two ways is one
/// registry, two folders typed alike from two places are two.
#[test]
fn a_folder_registry_is_identified_by_its_resolved_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("x/registry")).unwrap();
    let a = LocalStore::new(tmp.path().join("x/registry"));
    let b = LocalStore::new(tmp.path().join("x/../x/./registry"));
    assert_eq!(a.identity(), b.identity());
    let c = LocalStore::new(tmp.path().join("y/registry"));
    assert_ne!(a.identity(), c.identity());
    // Not there yet: the same answer before and after it is created.
    let before = c.identity();
    std::fs::create_dir_all(tmp.path().join("y/registry")).unwrap();
    assert_eq!(before, c.identity());
    assert!(a.identity().starts_with("file:///"), "{}", a.identity());
}

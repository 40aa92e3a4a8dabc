//! Object stores behind the registry: one small trait, a local folder and S3.
//!
//! The registry needs exactly three guarantees from a store: objects appear
//! whole or not at all, an object can be created only if absent, and an object
//! can be replaced only if it still has the version the writer read
//! (compare-and-swap). Everything else (layout, index, gc) is written once, on
//! top of the trait, in [`crate::registry`].

use std::fmt::Debug;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

mod local;
mod s3;

pub use local::LocalStore;
pub use s3::{S3Config, S3Store, s3_client};

/// Opaque version of an object for conditional writes (an ETag on S3, the
/// content sha256 in a local folder).
pub type Version = String;

#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Bytes,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CondPut {
    Written(Version),
    /// Someone else wrote first: read again and retry.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store}: {op} {key}: {source}")]
    Io {
        store: String,
        op: &'static str,
        key: String,
        source: std::io::Error,
    },
    #[error("{store}: {op} {key}: {message}")]
    Remote {
        store: String,
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("{0}")]
    BadLocation(String),
}

#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Where this store lives, as a URL (`file:///…`, `s3://bucket/prefix`).
    fn location(&self) -> String;

    /// Who this store is, whatever way it was named: an absolute, resolved
    /// folder, or bucket + prefix + endpoint. Anything kept per registry (the
    /// cached index) is keyed by it, so `registry` typed in two folders is two
    /// registries, and one folder named two ways is one.
    fn identity(&self) -> String {
        self.location()
    }

    /// Read a small object whole.
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;

    /// Stream an object into `dest` (written under a temporary name, then renamed).
    /// Returns false when the object does not exist.
    async fn download(&self, key: &str, dest: &Path) -> Result<bool, StoreError>;

    /// Create `key` from a local file unless it already exists.
    /// Returns false (and writes nothing) when it existed.
    async fn create_from_file(&self, key: &str, src: &Path) -> Result<bool, StoreError>;

    /// Write `bytes` at `key` only if its current version is `expected`
    /// (`None`: only if the key does not exist yet).
    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<CondPut, StoreError>;

    /// Every object whose key starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StoreError>;

    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Whether the store itself is there, for readers that must tell "nothing
    /// published yet" from "the store is gone" (a registry folder that was
    /// unmounted or removed). A bucket answers for itself on every call.
    async fn check_present(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Open a store from `file://PATH`, a plain path, or `s3://BUCKET[/PREFIX]`.
/// S3 settings beyond bucket and prefix come from `s3` (endpoint, region,
/// path style) and the usual AWS environment.
pub async fn open_store(
    location: &str,
    s3: &S3Config,
) -> Result<std::sync::Arc<dyn ObjectStore>, StoreError> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::BadLocation(format!(
                "`{location}` names no bucket: write s3://BUCKET or s3://BUCKET/PREFIX"
            )));
        }
        return Ok(std::sync::Arc::new(S3Store::new(bucket, prefix, s3).await));
    }
    if location.contains("://") && !location.starts_with("file://") {
        return Err(StoreError::BadLocation(format!(
            "`{location}` is neither file://PATH nor s3://BUCKET/PREFIX"
        )));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    if path.is_empty() {
        return Err(StoreError::BadLocation("empty registry path".into()));
    }
    Ok(std::sync::Arc::new(LocalStore::new(path)))
}

//! One small trait over the two places images live: a local folder and an S3
//! prefix. Keys are relative to the location, `/`-separated, and listed in
//! byte order (S3's order), so "everything after key K" means the same in both.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::location::Location;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{location}: {op} `{key}`: {message}")]
    Failed { location: String, op: &'static str, key: String, message: String },
    #[error("{location}: `{key}` is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { location: String, key: String, size: u64, limit: u64 },
    #[error("{location}: `{key}` does not exist")]
    NotFound { location: String, key: String },
    #[error("`{0}` is not a valid key (empty, absolute, hidden or `..` components)")]
    BadKey(String),
}

#[async_trait]
pub trait Storage: Send + Sync {
    /// The location as the user wrote it (for messages and summaries).
    fn location(&self) -> String;
    /// Every key after `after` (exclusive; None: from the start), in byte order.
    async fn list(&self, after: Option<&str>) -> Result<Vec<String>, StorageError>;
    /// The whole object, refused beyond `max_bytes` before it is read.
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes, StorageError>;
    /// Write the object whole (readers never see a partial one).
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StorageError>;
    async fn exists(&self, key: &str) -> Result<bool, StorageError>;
}

/// Open a location; `s3` is the shared client for `s3://` ones.
pub fn open(location: &Location, s3: Option<&Client>) -> Result<Box<dyn Storage>, crate::BatchError> {
    match location {
        Location::Local(p) => Ok(Box::new(LocalDir::new(p))),
        Location::S3 { bucket, prefix } => {
            let client = s3.ok_or_else(|| crate::BatchError::BadLocation(format!("{location}: no S3 client configured")))?;
            Ok(Box::new(S3Prefix::new(client.clone(), bucket, prefix)))
        }
    }
}

fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty() && !key.starts_with('/') && key.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if ok { Ok(()) } else { Err(StorageError::BadKey(key.to_string())) }
}

// ---------- local folder ----------

#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn fail(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Failed { location: self.location(), op, key: key.to_string(), message: e.to_string() }
    }

    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Hidden names are temporary files of interrupted writes (and dotfiles).
            if name.starts_with('.') {
                continue;
            }
            let key = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            let ft = entry.file_type()?;
            if ft.is_dir() {
                Self::walk(&entry.path(), &key, out)?;
            } else if ft.is_file() || (ft.is_symlink() && entry.path().is_file()) {
                out.push(key);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Storage for LocalDir {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn list(&self, after: Option<&str>) -> Result<Vec<String>, StorageError> {
        let root = self.root.clone();
        let mut keys = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            match LocalDir::walk(&root, "", &mut out) {
                Ok(()) => Ok(out),
                // A missing output folder is an empty one.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| self.fail("list", "", e))?
        .map_err(|e| self.fail("list", "", e))?;
        keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if let Some(after) = after {
            keys.retain(|k| k.as_bytes() > after.as_bytes());
        }
        Ok(keys)
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes, StorageError> {
        check_key(key)?;
        let path = self.root.join(key);
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound { location: self.location(), key: key.into() });
            }
            Err(e) => return Err(self.fail("read", key, e)),
        };
        if meta.len() > max_bytes {
            return Err(StorageError::TooLarge { location: self.location(), key: key.into(), size: meta.len(), limit: max_bytes });
        }
        tokio::fs::read(&path).await.map(Bytes::from).map_err(|e| self.fail("read", key, e))
    }

    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let path = self.root.join(key);
        // Temp file in the same folder, then rename: atomic on one filesystem.
        let r = tokio::task::spawn_blocking(move || d2serve_registry::atomic::write(&path, &bytes))
        .await
        .map_err(|e| self.fail("write", key, e))?;
        r.map_err(|e| self.fail("write", key, e))
    }

    async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        Ok(tokio::fs::metadata(self.root.join(key)).await.is_ok_and(|m| m.is_file()))
    }
}

// ---------- S3 prefix ----------

#[derive(Debug, Clone)]
pub struct S3Prefix {
    client: Client,
    bucket: String,
    /// Empty or ending with `/`.
    prefix: String,
}

/// How to reach S3; unset fields fall back to the standard AWS environment.
pub type S3Config = d2serve_registry::S3Config;

/// The registry's S3 client (endpoint override and path style for S3-compatible
/// servers; us-east-1 when nothing names a region).
pub use d2serve_registry::store::s3_client;

fn http_status<E, R: HasStatus + std::fmt::Debug>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status_code)
}

trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

impl S3Prefix {
    pub fn new(client: Client, bucket: &str, prefix: &str) -> Self {
        let mut prefix = prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { client, bucket: bucket.to_string(), prefix }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn fail<E: std::error::Error + 'static, R: std::fmt::Debug>(&self, op: &'static str, key: &str, e: SdkError<E, R>) -> StorageError {
        StorageError::Failed { location: self.location(), op, key: key.to_string(), message: DisplayErrorContext(&e).to_string() }
    }
}

#[async_trait]
impl Storage for S3Prefix {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn list(&self, after: Option<&str>) -> Result<Vec<String>, StorageError> {
        let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(&self.prefix);
        if let Some(after) = after {
            req = req.start_after(format!("{}{after}", self.prefix));
        }
        let mut pages = req.into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("list", "", e))?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    // Keys ending in `/` are console "folders", not objects.
                    if !k.is_empty() && !k.ends_with('/') {
                        keys.push(k.to_string());
                    }
                }
            }
        }
        Ok(keys)
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes, StorageError> {
        check_key(key)?;
        let full = format!("{}{key}", self.prefix);
        let out = match self.client.get_object().bucket(&self.bucket).key(&full).send().await {
            Ok(o) => o,
            Err(e) if http_status(&e) == Some(404) => {
                return Err(StorageError::NotFound { location: self.location(), key: key.into() });
            }
            Err(e) => return Err(self.fail("get", key, e)),
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        if size > max_bytes {
            return Err(StorageError::TooLarge { location: self.location(), key: key.into(), size, limit: max_bytes });
        }
        let body = out.body.collect().await.map_err(|e| StorageError::Failed {
            location: self.location(),
            op: "get",
            key: key.into(),
            message: e.to_string(),
        })?;
        Ok(body.into_bytes())
    }

    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.prefix))
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.fail("put", key, e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(format!("{}{key}", self.prefix)).send().await {
            Ok(_) => Ok(true),
            Err(e) if http_status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.fail("head", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_dir_lists_in_byte_order_after_a_key_and_writes_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LocalDir::new(tmp.path());
        for k in ["b.png", "a/z.jpg", "a/b.jpg", "A.png", ".hidden", "a/.tmp"] {
            let p = tmp.path().join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, k).unwrap();
        }
        assert_eq!(d.list(None).await.unwrap(), ["A.png", "a/b.jpg", "a/z.jpg", "b.png"]);
        assert_eq!(d.list(Some("a/b.jpg")).await.unwrap(), ["a/z.jpg", "b.png"]);
        d.put("out/x/y.json", Bytes::from_static(b"{}"), "application/json").await.unwrap();
        assert!(d.exists("out/x/y.json").await.unwrap());
        assert!(!d.exists("out/x/none.json").await.unwrap());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(tmp.path().join("out/x")).unwrap().count(), 1);
        assert!(matches!(d.get("b.png", 2).await, Err(StorageError::TooLarge { size: 5, .. })));
        assert!(matches!(d.get("../etc/passwd", 100).await, Err(StorageError::BadKey(_))));
        assert!(matches!(d.get("nope.png", 100).await, Err(StorageError::NotFound { .. })));
        assert!(LocalDir::new(tmp.path().join("missing")).list(None).await.unwrap().is_empty());
    }
}

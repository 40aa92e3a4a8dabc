//! A registry in a local folder.
//!
//! Whole-or-nothing: every write goes to a hidden temporary file in the target
//! folder, then is linked (create) or renamed (replace) into place. Creation uses
//! `link`, which fails when the name exists, so an artifact is never overwritten.
//! Compare-and-swap holds an exclusive lock on a sibling `.NAME.lock` file while
//! it reads, compares and renames. Names starting with `.` are never listed.

use std::fs::File;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{CondPut, ListedObject, Object, ObjectStore, StoreError, Version};
use crate::atomic::temp_file_beside;
use crate::hashing::sha256_bytes;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let ok = !key.is_empty()
            && key
                .split('/')
                .all(|c| !c.is_empty() && !c.starts_with('.') && !c.contains('\\'));
        if !ok {
            return Err(StoreError::BadLocation(format!(
                "`{key}` is not a valid object key (empty, hidden or `..` components)"
            )));
        }
        Ok(self.root.join(key))
    }

    fn io(&self, op: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> StoreError {
        let store = self.location();
        let key = key.to_string();
        move |source| StoreError::Io {
            store,
            op,
            key,
            source,
        }
    }
}

/// `path` made absolute with symlinks and `..` resolved as far as it exists
/// (the rest appended), so the answer does not change when the folder is created.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

fn lock_path(target: &Path) -> PathBuf {
    let name = target.file_name().expect("object paths have a name");
    target.with_file_name(format!(".{}.lock", name.to_string_lossy()))
}

fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn create_from_file_blocking(target: &Path, src: &Path) -> std::io::Result<bool> {
    if target.exists() {
        return Ok(false);
    }
    let mut tmp = temp_file_beside(target)?;
    std::io::copy(&mut File::open(src)?, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    match std::fs::hard_link(tmp.path(), target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn put_if_blocking(target: &Path, bytes: &[u8], expected: Option<&str>) -> std::io::Result<CondPut> {
    std::fs::create_dir_all(target.parent().expect("object paths have a parent"))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(target))?;
    lock.lock()?;
    let current = read_optional(target)?.map(|b| sha256_bytes(&b));
    if current.as_deref() != expected {
        return Ok(CondPut::Conflict);
    }
    crate::atomic::write(target, bytes)?;
    // The lock is released when `lock` is dropped, after the rename.
    Ok(CondPut::Written(sha256_bytes(bytes)))
}

fn list_blocking(root: &Path, prefix: &str) -> std::io::Result<Vec<ListedObject>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let meta = entry.metadata()?;
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(root).expect("walk stays under root");
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if key.starts_with(prefix) {
                out.push(ListedObject {
                    key,
                    size: meta.len(),
                    modified: meta.modified().ok(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn identity(&self) -> String {
        format!("file://{}", resolved(&self.root).display())
    }

    async fn check_present(&self) -> Result<(), StoreError> {
        if self.root.is_dir() {
            return Ok(());
        }
        Err(StoreError::Io {
            store: self.location(),
            op: "open",
            key: "the folder".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "it does not exist (unmounted, removed, or nothing published there yet?)"),
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let path = self.path(key)?;
        let bytes = blocking(move || read_optional(&path))
            .await
            .map_err(self.io("read", key))?;
        Ok(bytes.map(|b| Object {
            version: sha256_bytes(&b),
            bytes: Bytes::from(b),
        }))
    }

    async fn download(&self, key: &str, dest: &Path) -> Result<bool, StoreError> {
        let src = self.path(key)?;
        let dest = dest.to_path_buf();
        blocking(move || {
            if !src.exists() {
                return Ok(false);
            }
            let mut tmp = temp_file_beside(&dest)?;
            std::io::copy(&mut File::open(&src)?, tmp.as_file_mut())?;
            tmp.persist(&dest).map_err(|e| e.error)?;
            Ok(true)
        })
        .await
        .map_err(self.io("download", key))
    }

    async fn create_from_file(&self, key: &str, src: &Path) -> Result<bool, StoreError> {
        let target = self.path(key)?;
        let src = src.to_path_buf();
        blocking(move || create_from_file_blocking(&target, &src))
            .await
            .map_err(self.io("create", key))
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<CondPut, StoreError> {
        let target = self.path(key)?;
        let expected = expected.cloned();
        blocking(move || put_if_blocking(&target, &bytes, expected.as_deref()))
            .await
            .map_err(self.io("conditional write", key))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        let root = self.root.clone();
        let p = prefix.to_string();
        blocking(move || list_blocking(&root, &p))
            .await
            .map_err(self.io("list", prefix))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let root = self.root.clone();
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // Tidy empty parent folders; failure just means the folder is not empty.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(self.io("delete", key))
    }
}

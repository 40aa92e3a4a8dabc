//! The registry: content-addressed artifacts plus one index naming the current
//! artifact of each model.
//!
//! Layout (the same in a folder and in a bucket):
//! ```text
//! index.json
//! models/<key>/<version id>/model.onnx
//! models/<key>/<version id>/manifest.json
//! ```
//! A version id is the sha256 of the artifact's `manifest.json` bytes
//! ([`Manifest::version_id`]); the manifest names the sha256 of `model.onnx`, so
//! the id covers the graph and every word of the manifest. Re-publishing the
//! same graph with other class names, colours, source kind or thresholds is a
//! new version that becomes current (and can be rolled back), never "already
//! stored".
//!
//! Registries written before (index format 1) named a folder by the sha256 of
//! `model.onnx` alone. Those folders are still read and served as they are
//! ("legacy" versions: their manifest cannot be checked against the id, so
//! readers re-read it from the registry rather than trusting a cached copy);
//! the next publish of a model writes it under its version id.
//!
//! An artifact is immutable once written (created only if absent) and is
//! complete before the index names it (model first, manifest last, index after),
//! so a reader that follows the index never sees a half-written artifact. The
//! index moves by compare-and-swap, so concurrent publishers never lose each
//! other's update: the loser re-reads and applies its change again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::hashing::{is_sha256_hex, sha256_file};
use crate::manifest::{MANIFEST_FILE, MODEL_FILE, Manifest, ManifestError};
use crate::store::{CondPut, ObjectStore, StoreError};

pub const INDEX_KEY: &str = "index.json";
const MODELS_PREFIX: &str = "models/";
const MAX_INDEX_ATTEMPTS: u32 = 50;
/// Index format this build writes (1: ids were the graph's sha256; 2: version ids).
pub const INDEX_FORMAT: u32 = 2;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Index {
    pub format: u32,
    /// Catalog key -> current artifact.
    pub models: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexEntry {
    /// The version id (sha256 of `manifest.json`), also its folder name; in a
    /// legacy entry (index format 1), the sha256 of `model.onnx`.
    pub artifact: String,
    pub size: u64,
    /// RFC 3339.
    pub published_at: String,
    /// The artifact this one replaced, for a quick roll back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidArtifact(String),
    #[error("the registry index at {location} is corrupt: {detail}; fix or remove index.json")]
    CorruptIndex { location: String, detail: String },
    #[error("the registry index at {0} kept changing under us; try again")]
    Contention(String),
    #[error("{location} has no published artifact for `{key}`; publish it with `zoo publish {key} --to {location}`")]
    NotPublished { location: String, key: String },
    #[error("{location}: artifact {artifact} of `{key}` is {what}")]
    BrokenArtifact {
        location: String,
        key: String,
        artifact: String,
        what: String,
    },
}

/// What [`Registry::publish`] did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Published {
    pub key: String,
    pub artifact: String,
    /// False when the same artifact was already stored.
    pub uploaded: bool,
    pub previous: Option<String>,
}

/// A stored artifact's manifest, with the exact bytes its version id hashes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub manifest: Manifest,
    pub bytes: Bytes,
    /// A folder named by the graph's sha256 (index format 1): the manifest
    /// bytes cannot be checked against the id.
    pub legacy: bool,
}

impl StoredManifest {
    /// Check manifest bytes read for version `artifact` of `key`: they hash to
    /// the id, or (a legacy folder) describe a graph whose sha256 is the id.
    pub fn check(key: &str, artifact: &str, bytes: Bytes, origin: &str) -> Result<Self, String> {
        let manifest = Manifest::from_slice(&bytes, origin).map_err(|e| e.to_string())?;
        if manifest.key != key {
            return Err(format!("described by the manifest of `{}`", manifest.key));
        }
        let legacy = if Manifest::version_id(&bytes) == artifact {
            false
        } else if manifest.artifact.sha256 == artifact {
            true
        } else {
            return Err("described by a manifest of another artifact".into());
        };
        Ok(Self { manifest, bytes, legacy })
    }
}

/// One artifact found in the store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredArtifact {
    pub key: String,
    pub artifact: String,
    pub bytes: u64,
    pub current: bool,
}

#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn ObjectStore>,
}

fn artifact_prefix(key: &str, sha: &str) -> String {
    format!("{MODELS_PREFIX}{key}/{sha}/")
}

/// Split `models/<key>/<sha>/<file>` into (key, sha, file).
fn parse_artifact_key(k: &str) -> Option<(&str, &str, &str)> {
    let rest = k.strip_prefix(MODELS_PREFIX)?;
    let (head, file) = rest.rsplit_once('/')?;
    let (key, sha) = head.rsplit_once('/')?;
    (!key.is_empty() && is_sha256_hex(sha)).then_some((key, sha, file))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Registry {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Who the registry is, however it was named ([`ObjectStore::identity`]).
    pub fn identity(&self) -> String {
        self.store.identity()
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The index with its store version (None when nothing was published yet).
    async fn read_index(&self) -> Result<(Index, Option<String>), RegistryError> {
        match self.store.get(INDEX_KEY).await? {
            None => Ok((
                Index {
                    format: INDEX_FORMAT,
                    models: BTreeMap::new(),
                },
                None,
            )),
            Some(obj) => {
                let index: Index =
                    serde_json::from_slice(&obj.bytes).map_err(|e| RegistryError::CorruptIndex {
                        location: self.location(),
                        detail: e.to_string(),
                    })?;
                Ok((index, Some(obj.version)))
            }
        }
    }

    /// The index. A registry with no index yet reads as empty, but a folder
    /// registry whose folder is gone is an error, not an empty registry: a
    /// reader must not take an outage for "nothing is published".
    pub async fn index(&self) -> Result<Index, RegistryError> {
        let (index, version) = self.read_index().await?;
        if version.is_none() {
            self.store.check_present().await?;
        }
        Ok(index)
    }

    /// Apply `change` to the index with compare-and-swap, retrying on conflict.
    async fn update_index<T>(
        &self,
        mut change: impl FnMut(&mut Index) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        for attempt in 0..MAX_INDEX_ATTEMPTS {
            let (mut index, version) = self.read_index().await?;
            let result = change(&mut index)?;
            // Entries of both formats are read; what is written now is format 2.
            index.format = INDEX_FORMAT;
            let body = Bytes::from(serde_json::to_vec_pretty(&index).expect("index serializes"));
            match self.store.put_if(INDEX_KEY, body, version.as_ref()).await? {
                CondPut::Written(_) => return Ok(result),
                CondPut::Conflict => {
                    // Jittered backoff so racing publishers spread out.
                    let ms = 5u64 * (1 << attempt.min(6)) + rand::random_range(0..20u64);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        }
        Err(RegistryError::Contention(self.location()))
    }

    /// Check a converted folder (`model.onnx` + `manifest.json`) and return its
    /// manifest and version id.
    pub fn check_artifact_dir(dir: &Path, key: &str) -> Result<(Manifest, String), RegistryError> {
        let model = dir.join(MODEL_FILE);
        let manifest_path = dir.join(MANIFEST_FILE);
        for p in [&model, &manifest_path] {
            if !p.is_file() {
                return Err(RegistryError::InvalidArtifact(format!(
                    "{} is missing: an artifact folder holds {MODEL_FILE} and {MANIFEST_FILE} (run `zoo convert {key}` first)",
                    p.display()
                )));
            }
        }
        let manifest_bytes = std::fs::read(&manifest_path).map_err(|source| RegistryError::Io {
            path: manifest_path.display().to_string(),
            source,
        })?;
        let manifest = Manifest::from_slice(&manifest_bytes, &manifest_path.display().to_string())?;
        if manifest.key != key {
            return Err(RegistryError::InvalidArtifact(format!(
                "{} describes `{}`, not `{key}`",
                manifest_path.display(),
                manifest.key
            )));
        }
        let sha = sha256_file(&model).map_err(|source| RegistryError::Io {
            path: model.display().to_string(),
            source,
        })?;
        if sha != manifest.artifact.sha256 {
            return Err(RegistryError::InvalidArtifact(format!(
                "{} has sha256 {sha} but its manifest says {}: the folder is inconsistent, convert again",
                model.display(),
                manifest.artifact.sha256
            )));
        }
        Ok((manifest, Manifest::version_id(&manifest_bytes)))
    }

    /// Upload an artifact folder and make it the current artifact of `key`.
    pub async fn publish(&self, key: &str, dir: &Path) -> Result<Published, RegistryError> {
        let (manifest, sha) = Self::check_artifact_dir(dir, key)?;
        let prefix = artifact_prefix(key, &sha);
        // Model first, manifest last: a manifest marks a complete artifact. The
        // manifest's exact bytes are uploaded: they are what the id hashes.
        let uploaded = self
            .store
            .create_from_file(&format!("{prefix}{MODEL_FILE}"), &dir.join(MODEL_FILE))
            .await?;
        self.store
            .create_from_file(&format!("{prefix}{MANIFEST_FILE}"), &dir.join(MANIFEST_FILE))
            .await?;
        let size = manifest.artifact.size;
        let previous = self.make_current(key, &sha, size).await?;
        Ok(Published {
            key: key.to_string(),
            artifact: sha,
            uploaded,
            previous,
        })
    }

    /// Point `key` at an artifact that is already stored (roll forward or back).
    pub async fn set_current(&self, key: &str, artifact: &str) -> Result<(), RegistryError> {
        let manifest = self.artifact_manifest(key, artifact).await?;
        self.make_current(key, artifact, manifest.artifact.size).await?;
        Ok(())
    }

    /// Point the index entry of `key` at `artifact`, keeping the one it replaces as
    /// `previous` (unless it is the same artifact); returns that previous artifact.
    async fn make_current(&self, key: &str, artifact: &str, size: u64) -> Result<Option<String>, RegistryError> {
        self.update_index(|index| {
            let previous = index.models.get(key).map(|e| e.artifact.clone()).filter(|p| p != artifact);
            index.models.insert(
                key.to_string(),
                IndexEntry { artifact: artifact.to_string(), size, published_at: now_rfc3339(), previous: previous.clone() },
            );
            Ok(previous)
        })
        .await
    }

    /// The manifest of a stored artifact.
    pub async fn artifact_manifest(&self, key: &str, artifact: &str) -> Result<Manifest, RegistryError> {
        Ok(self.stored_manifest(key, artifact).await?.manifest)
    }

    /// The manifest of a stored artifact with its bytes, checked against the version id.
    pub async fn stored_manifest(&self, key: &str, artifact: &str) -> Result<StoredManifest, RegistryError> {
        let path = format!("{}{MANIFEST_FILE}", artifact_prefix(key, artifact));
        let broken = |what: String| RegistryError::BrokenArtifact {
            location: self.location(),
            key: key.to_string(),
            artifact: artifact.to_string(),
            what,
        };
        let obj = self
            .store
            .get(&path)
            .await?
            .ok_or_else(|| broken("missing its manifest".into()))?;
        // A manifest this build cannot read (a newer format) is refused as such.
        Manifest::from_slice(&obj.bytes, &path)?;
        StoredManifest::check(key, artifact, obj.bytes, &path).map_err(broken)
    }

    /// The current manifest of `key`.
    pub async fn current(&self, key: &str) -> Result<(IndexEntry, Manifest), RegistryError> {
        let (entry, stored) = self.current_stored(key).await?;
        Ok((entry, stored.manifest))
    }

    /// The current manifest of `key`, with its bytes.
    pub async fn current_stored(&self, key: &str) -> Result<(IndexEntry, StoredManifest), RegistryError> {
        let index = self.index().await?;
        let entry = index
            .models
            .get(key)
            .cloned()
            .ok_or_else(|| RegistryError::NotPublished {
                location: self.location(),
                key: key.to_string(),
            })?;
        let manifest = self.stored_manifest(key, &entry.artifact).await?;
        Ok((entry, manifest))
    }

    /// Download the current artifact of `key` into `dest_dir` without hashing it
    /// (the caller verifies, e.g. to time that stage); returns its index entry and manifest.
    pub async fn download_current(&self, key: &str, dest_dir: &Path) -> Result<(IndexEntry, StoredManifest), RegistryError> {
        let (entry, manifest) = self.current_stored(key).await?;
        self.download_artifact(key, &entry.artifact, &manifest, dest_dir).await?;
        Ok((entry, manifest))
    }

    /// Download stored artifact `artifact` of `key` (whose manifest the caller
    /// read) into `dest_dir` without hashing it: `model.onnx`, then `manifest.json`,
    /// each written whole (the manifest byte for byte, so the copy still hashes to the id).
    pub async fn download_artifact(&self, key: &str, artifact: &str, manifest: &StoredManifest, dest_dir: &Path) -> Result<(), RegistryError> {
        let model_key = format!("{}{MODEL_FILE}", artifact_prefix(key, artifact));
        if !self.store.download(&model_key, &dest_dir.join(MODEL_FILE)).await? {
            return Err(RegistryError::BrokenArtifact {
                location: self.location(),
                key: key.to_string(),
                artifact: artifact.to_string(),
                what: "missing its model.onnx".into(),
            });
        }
        crate::atomic::write(&dest_dir.join(MANIFEST_FILE), &manifest.bytes).map_err(|source| RegistryError::Io {
            path: dest_dir.display().to_string(),
            source,
        })?;
        Ok(())
    }

    /// Download the current artifact of `key` into `dest_dir` and check its sha256.
    pub async fn fetch_current(&self, key: &str, dest_dir: &Path) -> Result<Manifest, RegistryError> {
        let (entry, stored) = self.download_current(key, dest_dir).await?;
        let manifest = stored.manifest;
        let dest = dest_dir.join(MODEL_FILE);
        let sha = sha256_file(&dest).map_err(|source| RegistryError::Io {
            path: dest.display().to_string(),
            source,
        })?;
        if sha != manifest.artifact.sha256 {
            let _ = std::fs::remove_file(&dest);
            return Err(RegistryError::BrokenArtifact {
                location: self.location(),
                key: key.to_string(),
                artifact: entry.artifact,
                what: format!("corrupt: its model.onnx hashes to {sha}, not {}", manifest.artifact.sha256),
            });
        }
        Ok(manifest)
    }

    /// Every artifact in the store, marking the ones the index names.
    pub async fn artifacts(&self) -> Result<Vec<StoredArtifact>, RegistryError> {
        let index = self.index().await?;
        let mut found: BTreeMap<(String, String), u64> = BTreeMap::new();
        for obj in self.store.list(MODELS_PREFIX).await? {
            if let Some((key, sha, _)) = parse_artifact_key(&obj.key) {
                *found.entry((key.to_string(), sha.to_string())).or_default() += obj.size;
            }
        }
        Ok(found
            .into_iter()
            .map(|((key, artifact), bytes)| StoredArtifact {
                current: index.models.get(&key).is_some_and(|e| e.artifact == artifact),
                key,
                artifact,
                bytes,
            })
            .collect())
    }

    /// Remove artifacts that no index entry names (current or previous) and
    /// that are older than `min_age`, so an upload in flight is never collected.
    pub async fn gc(&self, min_age: Duration, dry_run: bool) -> Result<Vec<StoredArtifact>, RegistryError> {
        let index = self.index().await?;
        let keep: BTreeSet<(String, String)> = index
            .models
            .iter()
            .flat_map(|(k, e)| {
                std::iter::once((k.clone(), e.artifact.clone()))
                    .chain(e.previous.clone().map(|p| (k.clone(), p)))
            })
            .collect();
        let now = SystemTime::now();
        let mut doomed: BTreeMap<(String, String), (u64, Vec<String>, bool)> = BTreeMap::new();
        for obj in self.store.list(MODELS_PREFIX).await? {
            let Some((key, sha, _)) = parse_artifact_key(&obj.key) else { continue };
            let id = (key.to_string(), sha.to_string());
            if keep.contains(&id) {
                continue;
            }
            let young = obj
                .modified
                .and_then(|m| now.duration_since(m).ok())
                .is_none_or(|age| age < min_age);
            let slot = doomed.entry(id).or_insert((0, Vec::new(), false));
            slot.0 += obj.size;
            slot.1.push(obj.key);
            slot.2 |= young;
        }
        let mut removed = Vec::new();
        for ((key, artifact), (bytes, objects, young)) in doomed {
            if young {
                continue;
            }
            if !dry_run {
                // Manifest first, so a half-removed artifact no longer looks complete.
                let mut objects = objects;
                objects.sort_by_key(|k| !k.ends_with(MANIFEST_FILE));
                for k in objects {
                    self.store.delete(&k).await?;
                }
            }
            removed.push(StoredArtifact {
                key,
                artifact,
                bytes,
                current: false,
            });
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_keys_split_into_key_sha_file() {
        let sha = "a".repeat(64);
        let k = format!("models/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/{sha}/model.onnx");
        assert_eq!(
            parse_artifact_key(&k),
            Some(("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", sha.as_str(), "model.onnx"))
        );
        assert_eq!(parse_artifact_key("models/x/notasha/model.onnx"), None);
        assert_eq!(parse_artifact_key("index.json"), None);
    }
}

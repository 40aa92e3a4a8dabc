//! Models on demand: artifacts fetched from the registry into a local cache
//! folder (Lambda: /tmp), hash-checked before loading, ONNX Runtime sessions
//! kept in an LRU bounded by count and bytes. Concurrent first requests for one
//! model share one load.
//!
//! The registry's index is read at most once per `index_ttl` (a roll-forward
//! with `zoo registry set` reaches a running process within that time; a model
//! the index does not name yet is looked up again at once, so a new publish is
//! seen immediately). Each read index is also written into the cache folder.
//! When the registry cannot be read, the last index read (in memory, else from
//! the cache folder) and the verified artifacts in the cache folder keep the
//! process serving; [`ModelCache::index_status`] says so, for warnings and
//! metrics. With nothing cached, that is [`LoadError::Unavailable`]: a
//! transient fault, not "not published".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use d2serve_registry::hashing::{sha256_bytes, sha256_file};
use d2serve_registry::manifest::{MANIFEST_FILE, MODEL_FILE, Manifest};
use d2serve_registry::registry::StoredManifest;
use d2serve_registry::{Index, Registry, RegistryError};

use crate::pipeline::LoadedModel;
use crate::runtime::{Model, RuntimeError, SessionOptions};

/// How often a key the cached index does not name sends us back to the registry.
const MISSING_KEY_RECHECK: Duration = Duration::from_secs(1);
/// Default `index_ttl`.
pub const DEFAULT_INDEX_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model `{0}` is not published in the registry; `GET /v1/models` lists what is")]
    NotPublished(String),
    /// The registry cannot be read now and nothing usable is cached: retry later.
    #[error("the registry is unreachable and no usable copy is cached: {0}")]
    Unavailable(String),
    /// The registry answered, but with something broken (a corrupt index or manifest).
    #[error("the registry is broken: {0}")]
    Registry(String),
    #[error("the registry's artifact of `{key}` is corrupt ({detail}); publish it again")]
    Corrupt { key: String, detail: String },
    /// The artifact cannot fit in the cache folder, even with every other cached artifact removed.
    #[error(
        "`{key}`'s artifact needs {need_mb:.0} MB in the cache folder {dir}, which has room for {room_mb:.0} MB with every other cached artifact removed: \
         give it more space (on Lambda the function's ephemeral storage: the ModelCacheStorage parameter of infra/template.yaml, up to 10240 MB; \
         elsewhere a bigger disk for --cache-dir, or a larger --cache-max-bytes)"
    )]
    NoSpace { key: String, dir: String, need_mb: f64, room_mb: f64 },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Io(String),
}

/// How long each cold-start stage took.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadTimings {
    pub fetch_s: f64,
    pub verify_s: f64,
    pub session_s: f64,
}

#[derive(Debug, Clone)]
pub struct CacheLimits {
    pub max_models: usize,
    pub max_bytes: u64,
}

struct Entry {
    model: Arc<LoadedModel>,
    last_used: Instant,
}

/// Where the index in use came from.
#[derive(Debug, Clone, Default)]
pub struct IndexStatus {
    /// Why the registry could not be read at the last attempt; None when it answered.
    pub unreachable: Option<String>,
    /// When the index in use was read from the registry (a cached copy keeps its time).
    pub read_at: Option<SystemTime>,
}

impl IndexStatus {
    /// Serving from a cached index because the registry cannot be read.
    pub fn is_stale(&self) -> bool {
        self.unreachable.is_some()
    }

    /// Seconds since the index in use was read from the registry.
    pub fn age_s(&self) -> Option<f64> {
        self.read_at.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs_f64())
    }
}

#[derive(Default)]
struct IndexState {
    index: Option<Arc<Index>>,
    checked_at: Option<Instant>,
}

pub struct ModelCache {
    /// Most bytes of artifacts the cache folder may hold (besides its disk's free space).
    disk_budget: Option<u64>,
    registry: Registry,
    dir: PathBuf,
    session: SessionOptions,
    limits: CacheLimits,
    index_ttl: Duration,
    index: tokio::sync::Mutex<IndexState>,
    status: Mutex<IndexStatus>,
    manifests: Mutex<HashMap<(String, String), StoredManifest>>,
    loaded: Mutex<HashMap<String, Entry>>,
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: Mutex<CacheStats>,
}

#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub loads: u64,
    pub evictions: u64,
    /// Cached artifacts whose bytes did not hash to their name: deleted and fetched again.
    pub corrupt_refetches: u64,
    pub last_load: Option<LoadTimings>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ModelCache {
    pub fn new(registry: Registry, dir: PathBuf, session: SessionOptions, limits: CacheLimits) -> Self {
        Self {
            disk_budget: None,
            registry,
            dir,
            session,
            limits,
            index_ttl: DEFAULT_INDEX_TTL,
            index: tokio::sync::Mutex::new(IndexState::default()),
            status: Mutex::new(IndexStatus::default()),
            manifests: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            stats: Mutex::new(CacheStats::default()),
        }
    }

    /// Keep the artifacts in the cache folder within `bytes` (the disk's free space bounds them anyway).
    pub fn with_disk_budget(mut self, bytes: Option<u64>) -> Self {
        self.disk_budget = bytes;
        self
    }

    /// How long an index read stays in use before the registry is asked again.
    pub fn with_index_ttl(mut self, ttl: Duration) -> Self {
        self.index_ttl = ttl;
        self
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn index_status(&self) -> IndexStatus {
        lock(&self.status).clone()
    }

    /// The registry's index: the one in use while younger than the TTL, else
    /// read again; when the registry cannot be read, the last one read.
    pub async fn index(&self) -> Result<Arc<Index>, LoadError> {
        self.index_for(None).await
    }

    async fn index_for(&self, wanted: Option<&str>) -> Result<Arc<Index>, LoadError> {
        let mut state = self.index.lock().await;
        if let (Some(index), Some(at)) = (&state.index, state.checked_at) {
            let missing = wanted.is_some_and(|k| !index.models.contains_key(k)) && at.elapsed() >= MISSING_KEY_RECHECK;
            if at.elapsed() < self.index_ttl && !missing {
                return Ok(index.clone());
            }
        }
        state.checked_at = Some(Instant::now());
        match self.registry.index().await {
            Ok(index) => {
                let index = Arc::new(index);
                if state.index.as_deref() != Some(&*index) {
                    self.persist_index(&index);
                }
                state.index = Some(index.clone());
                let mut status = lock(&self.status);
                if status.unreachable.is_some() {
                    tracing::info!(registry = %self.registry.location(), "the registry answers again");
                }
                *status = IndexStatus { unreachable: None, read_at: Some(SystemTime::now()) };
                Ok(index)
            }
            Err(e) => {
                let reason = e.to_string();
                if state.index.is_none() {
                    if let Some((index, read_at)) = self.read_persisted_index() {
                        state.index = Some(Arc::new(index));
                        lock(&self.status).read_at = Some(read_at);
                    }
                }
                let mut status = lock(&self.status);
                if status.unreachable.is_none() {
                    tracing::warn!(registry = %self.registry.location(), error = %reason, cached_index = state.index.is_some(), "the registry cannot be read; serving from the cache folder where possible");
                }
                status.unreachable = Some(reason.clone());
                state.index.clone().ok_or(LoadError::Unavailable(reason))
            }
        }
    }

    /// The file keeping the last index read from this registry. It is named by
    /// what the registry points to, not by how it was typed: `registry` in
    /// another folder is another registry, whose outage must not be answered
    /// with this one's models.
    fn persisted_index_path(&self) -> PathBuf {
        let id = sha256_bytes(self.registry.identity().as_bytes());
        self.dir.join(".index").join(format!("{}.json", &id[..16]))
    }

    fn persist_index(&self, index: &Index) {
        let path = self.persisted_index_path();
        let body = serde_json::to_vec_pretty(index).expect("index serializes");
        if let Err(e) = d2serve_registry::atomic::write(&path, &body) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep a copy of the registry index in the cache folder");
        }
    }

    fn read_persisted_index(&self) -> Option<(Index, SystemTime)> {
        let path = self.persisted_index_path();
        let bytes = std::fs::read(&path).ok()?;
        let read_at = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        serde_json::from_slice(&bytes).ok().map(|i| (i, read_at))
    }

    /// What a registry error means for a reader: a store that cannot be
    /// reached is transient; anything it answered wrongly is broken.
    fn registry_error(&self, key: &str, e: RegistryError) -> LoadError {
        match e {
            RegistryError::NotPublished { .. } => LoadError::NotPublished(key.to_string()),
            RegistryError::Store(_) | RegistryError::Io { .. } | RegistryError::Contention(_) => LoadError::Unavailable(e.to_string()),
            other => LoadError::Registry(other.to_string()),
        }
    }

    /// The manifest of stored artifact `artifact` of `key`: from memory, the
    /// cache folder, or the registry (then kept in both).
    pub async fn manifest(&self, key: &str, artifact: &str) -> Result<Manifest, LoadError> {
        Ok(self.stored_manifest(key, artifact).await?.manifest)
    }

    /// A version id is the sha256 of its manifest, so a cached copy that hashes
    /// to it is that version's manifest whichever registry left it, and one that
    /// does not is never served. A legacy id (the graph's sha256) cannot vouch
    /// for the manifest: another registry may have described the same graph
    /// otherwise (a sample published over a zoo copy), so the registry is asked
    /// and its answer replaces the cached copy; that copy serves only while the
    /// registry cannot be read.
    async fn stored_manifest(&self, key: &str, artifact: &str) -> Result<StoredManifest, LoadError> {
        let id = (key.to_string(), artifact.to_string());
        if let Some(m) = lock(&self.manifests).get(&id) {
            return Ok(m.clone());
        }
        let local = self.dir.join(key).join(artifact).join(MANIFEST_FILE);
        let cached = std::fs::read(&local)
            .ok()
            .and_then(|b| StoredManifest::check(key, artifact, b.into(), &local.display().to_string()).ok());
        let stored = match cached {
            Some(m) if !m.legacy => m,
            cached => match self.registry.stored_manifest(key, artifact).await {
                Ok(m) => {
                    if cached.as_ref().map(|c| &c.bytes) != Some(&m.bytes) {
                        if cached.is_some() {
                            tracing::warn!(model = %key, artifact = %artifact, path = %local.display(), "the cached manifest differs from the registry's; replaced");
                        }
                        if let Err(e) = d2serve_registry::atomic::write(&local, &m.bytes) {
                            tracing::warn!(path = %local.display(), error = %e, "cannot keep the manifest in the cache folder");
                        }
                    }
                    m
                }
                Err(e) => match (self.registry_error(key, e), cached) {
                    // Not remembered: once the registry answers, it is asked again.
                    (LoadError::Unavailable(_), Some(m)) => return Ok(m),
                    (err, _) => return Err(err),
                },
            },
        };
        lock(&self.manifests).insert(id, stored.clone());
        Ok(stored)
    }

    fn lookup(&self, key: &str, artifact: &str) -> Option<Arc<LoadedModel>> {
        let mut loaded = lock(&self.loaded);
        loaded.get_mut(key).filter(|e| e.model.version == artifact).map(|e| {
            e.last_used = Instant::now();
            e.model.clone()
        })
    }

    /// The loaded model of `key`'s current artifact, loading it (once, whoever
    /// asks first) if needed. After a roll-forward the new artifact replaces
    /// the old one here; requests holding the old one finish on it.
    pub async fn get(&self, key: &str) -> Result<Arc<LoadedModel>, LoadError> {
        let index = self.index_for(Some(key)).await?;
        let Some(entry) = index.models.get(key) else {
            return Err(match self.index_status().unreachable {
                Some(reason) => LoadError::Unavailable(format!("`{key}` is not in the last index read, and {reason}")),
                None => LoadError::NotPublished(key.to_string()),
            });
        };
        let artifact = entry.artifact.clone();
        if let Some(m) = self.lookup(key, &artifact) {
            lock(&self.stats).hits += 1;
            return Ok(m);
        }
        let gate_id = format!("{key}@{artifact}");
        let gate = lock(&self.loading).entry(gate_id.clone()).or_default().clone();
        let _guard = gate.lock().await;
        if let Some(m) = self.lookup(key, &artifact) {
            lock(&self.stats).hits += 1;
            return Ok(m);
        }
        let loaded = self.load(key, &artifact).await;
        lock(&self.loading).remove(&gate_id);
        let (model, timings) = loaded?;
        // The cold-start split (Lambda's first invoke, a container's first request).
        tracing::info!(model = %key, artifact = %artifact, bytes = model.file_bytes, fetch_s = timings.fetch_s, verify_s = timings.verify_s, session_s = timings.session_s, "model loaded");
        let model = Arc::new(model);
        let mut loaded = lock(&self.loaded);
        if let Some(old) = loaded.insert(key.to_string(), Entry { model: model.clone(), last_used: Instant::now() }) {
            tracing::info!(model = %key, from = %old.model.version, to = %artifact, "serving a new artifact");
        }
        let evicted = evict(&mut loaded, &self.limits, key);
        let mut stats = lock(&self.stats);
        stats.loads += 1;
        stats.evictions += evicted;
        stats.last_load = Some(timings);
        Ok(model)
    }

    async fn load(&self, key: &str, artifact: &str) -> Result<(LoadedModel, LoadTimings), LoadError> {
        let mut timings = LoadTimings::default();
        let t = Instant::now();
        let stored = self.stored_manifest(key, artifact).await?;
        let graph_sha = stored.manifest.artifact.sha256.clone();
        let dir = self.dir.join(key).join(artifact);
        let path = dir.join(MODEL_FILE);
        // A cached graph is used only if its bytes hash to what the manifest says; else it is
        // deleted and fetched again, never loaded.
        if path.is_file() {
            let tv = Instant::now();
            if let Err(actual) = verify(&path, &graph_sha).await? {
                tracing::warn!(model = %key, artifact = %artifact, actual = %actual, path = %path.display(), "the cached artifact is corrupt; deleted, fetching it again");
                let _ = std::fs::remove_file(&path);
                lock(&self.stats).corrupt_refetches += 1;
            }
            timings.verify_s = tv.elapsed().as_secs_f64();
        }
        if !path.is_file() {
            std::fs::create_dir_all(&dir).map_err(|e| LoadError::Io(format!("{}: {e}", dir.display())))?;
            self.make_room(key, artifact, stored.manifest.artifact.size)?;
            if let Err(e) = self.registry.download_artifact(key, artifact, &stored, &dir).await {
                // A folder registry that vanished reads as a missing file: an outage, not a broken artifact.
                return Err(match self.registry.store().check_present().await {
                    Err(gone) => LoadError::Unavailable(gone.to_string()),
                    Ok(()) => self.registry_error(key, e),
                });
            }
            timings.fetch_s = t.elapsed().as_secs_f64();
            let tv = Instant::now();
            if let Err(actual) = verify(&path, &graph_sha).await? {
                let _ = std::fs::remove_file(&path);
                return Err(LoadError::Corrupt { key: key.to_string(), detail: format!("its model.onnx hashes to {actual}, not {graph_sha}") });
            }
            timings.verify_s = tv.elapsed().as_secs_f64();
        }

        let t = Instant::now();
        let opts = self.session.clone();
        let p = path.clone();
        let spec = stored.manifest.spec.clone();
        let model = tokio::task::spawn_blocking(move || Model::load(&p, &opts, spec.as_ref()))
            .await
            .map_err(|e| LoadError::Io(e.to_string()))??;
        timings.session_s = t.elapsed().as_secs_f64();
        let bytes = stored.manifest.artifact.size;
        Ok((LoadedModel::new(stored.manifest, artifact.to_string(), model, bytes), timings))
    }

    /// Whether a request for `key` can be answered now: it is loaded, or its
    /// artifact can be had (the registry answers, or it is in the cache folder).
    /// The error says why not.
    pub async fn can_serve(&self, key: &str) -> Result<(), String> {
        if lock(&self.loaded).contains_key(key) {
            return Ok(());
        }
        let index = self.index_for(Some(key)).await.map_err(|e| e.to_string())?;
        let status = self.index_status();
        let Some(entry) = index.models.get(key) else {
            return Err(match status.unreachable {
                Some(reason) => format!("`{key}` is not in the last index read, and {reason}"),
                None => format!("`{key}` is not published in the registry {}", self.registry.location()),
            });
        };
        match status.unreachable {
            None => Ok(()),
            Some(reason) => {
                let cached = self.dir.join(key).join(&entry.artifact).join(MODEL_FILE);
                match std::fs::metadata(&cached) {
                    Ok(m) if m.len() == entry.size => Ok(()),
                    _ => Err(format!("the registry cannot be read ({reason}) and `{key}` is not in the cache folder")),
                }
            }
        }
    }

    /// The session options every model is loaded with.
    pub fn session(&self) -> &SessionOptions {
        &self.session
    }

    /// `key`'s model if it is loaded now (loads nothing).
    pub fn loaded(&self, key: &str) -> Option<Arc<LoadedModel>> {
        lock(&self.loaded).get(key).map(|e| e.model.clone())
    }

    /// The runtime and precision `key` runs in: its own when it is loaded, else
    /// what loading it would pick for `spec` (from its manifest or the catalog).
    pub fn runtime_of(&self, key: &str, spec: Option<&d2serve_registry::spec::ModelSpec>) -> RuntimeInfo {
        match self.loaded(key) {
            Some(m) => RuntimeInfo { runtime: m.runtime(), precision: m.precision(), reason: "loaded".into() },
            None => {
                let choice = crate::runtime::planned_runtime(spec, &self.session);
                RuntimeInfo { runtime: choice.runtime, precision: self.session.precision, reason: choice.reason }
            }
        }
    }

    /// Keys of the models currently loaded.
    pub fn loaded_keys(&self) -> Vec<String> {
        lock(&self.loaded).keys().cloned().collect()
    }
}

/// Which runtime and precision a model runs in, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeInfo {
    pub runtime: crate::runtime::Runtime,
    pub precision: crate::runtime::Precision,
    pub reason: String,
}

/// An artifact in the cache folder: `dir/<key>/<artifact>/model.onnx`.
struct CachedArtifact {
    dir: PathBuf,
    key: String,
    artifact: String,
    bytes: u64,
    used: SystemTime,
}

/// Every artifact folder under `root` (keys may hold slashes, so the walk goes deep).
fn cached_artifacts(root: &Path) -> Vec<CachedArtifact> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let model = p.join(MODEL_FILE);
            let artifact = e.file_name().to_string_lossy().into_owned();
            let is_artifact = artifact.len() == 64 && artifact.bytes().all(|b| b.is_ascii_hexdigit());
            if is_artifact && let Ok(rel) = dir.strip_prefix(root) {
                let bytes = std::fs::read_dir(&p).map(|es| es.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0);
                let used = std::fs::metadata(&model).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                found.push(CachedArtifact { dir: p, key: rel.to_string_lossy().into_owned(), artifact, bytes, used });
            } else if depth < 8 {
                stack.push((p, depth + 1));
            }
        }
    }
    found
}

/// Bytes free to this process on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path; statvfs only writes the struct we pass.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

impl ModelCache {
    /// Room for `need` bytes of `key`'s `artifact` before it is fetched. On a
    /// bounded disk (Lambda's /tmp) cached artifacts are removed, least recently
    /// used first: those of models not loaded now, then those of loaded ones (a
    /// loaded session no longer reads its file; the model is fetched again if it
    /// is ever loaded again), never one another request is fetching. What still
    /// cannot fit is [`LoadError::NoSpace`], never a download that fills the disk.
    fn make_room(&self, key: &str, artifact: &str, need: u64) -> Result<(), LoadError> {
        let loaded: Vec<(String, String)> = lock(&self.loaded).iter().map(|(k, e)| (k.clone(), e.model.version.clone())).collect();
        let fetching: Vec<(String, String)> = lock(&self.loading).keys().filter_map(|g| g.rsplit_once('@')).map(|(k, a)| (k.to_string(), a.to_string())).collect();
        let is = |set: &[(String, String)], c: &CachedArtifact| set.iter().any(|(k, a)| *k == c.key && *a == c.artifact);
        let mut cached = cached_artifacts(&self.dir);
        cached.sort_by_key(|c| (is(&loaded, c), c.used));
        loop {
            let held: u64 = cached.iter().map(|c| c.bytes).sum();
            let free = free_bytes(&self.dir).map_err(|e| LoadError::Io(format!("{}: {e}", self.dir.display())))?;
            let room = self.disk_budget.map_or(free, |b| free.min(b.saturating_sub(held)));
            if room >= need {
                return Ok(());
            }
            let victim = cached.iter().position(|c| !(c.key == key && c.artifact == artifact) && !is(&fetching, c));
            let Some(i) = victim else {
                let mb = |n: u64| n as f64 / 1e6;
                return Err(LoadError::NoSpace { key: key.to_string(), dir: self.dir.display().to_string(), need_mb: mb(need), room_mb: mb(room) });
            };
            let v = cached.remove(i);
            tracing::info!(model = %v.key, artifact = %v.artifact, bytes = v.bytes, need, room, "removing a cached artifact to make room");
            std::fs::remove_dir_all(&v.dir).map_err(|e| LoadError::Io(format!("{}: {e}", v.dir.display())))?;
        }
    }
}

/// Ok(Ok) when `path` hashes to `sha`, Ok(Err(actual)) when not.
async fn verify(path: &Path, sha: &str) -> Result<Result<(), String>, LoadError> {
    let p = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&p))
        .await
        .map_err(|e| LoadError::Io(e.to_string()))?
        .map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
    Ok(if actual == sha { Ok(()) } else { Err(actual) })
}

/// Drop least-recently-used models (never `keep`) until within limits.
fn evict(loaded: &mut HashMap<String, Entry>, limits: &CacheLimits, keep: &str) -> u64 {
    let mut evicted = 0;
    loop {
        let bytes: u64 = loaded.values().map(|e| e.model.file_bytes).sum();
        if loaded.len() <= limits.max_models.max(1) && bytes <= limits.max_bytes {
            return evicted;
        }
        let victim = loaded
            .iter()
            .filter(|(k, _)| k.as_str() != keep)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                loaded.remove(&k);
                evicted += 1;
            }
            None => return evicted,
        }
    }
}

/// Default local cache folder: /tmp on Lambda, else the XDG cache dir.
pub fn default_cache_dir() -> PathBuf {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return PathBuf::from("/tmp/d2serve-models");
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("d2serve/models")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached artifact folder of `bytes` bytes, last used `age_s` seconds ago.
    fn lay(root: &Path, key: &str, artifact: &str, bytes: usize, age_s: u64) -> PathBuf {
        let dir = root.join(key).join(artifact);
        std::fs::create_dir_all(&dir).unwrap();
        if bytes > 0 {
            let f = std::fs::File::create(dir.join(MODEL_FILE)).unwrap();
            f.set_len(bytes as u64).unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(age_s)).unwrap();
        }
        dir
    }

    #[test]
    fn room_comes_from_the_least_recently_used_artifacts_not_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let registry = Registry::new(Arc::new(d2serve_registry::store::LocalStore::new(tmp.path().join("registry"))));
        let root = tmp.path().join("cache");
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let oldest = lay(&root, "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", &a, 400, 300);
        let newer = lay(&root, "lemons", &b, 400, 200);
        lay(&root, "shapes", &c, 0, 0); // the folder of the artifact about to be fetched
        let limits = CacheLimits { max_models: 2, max_bytes: u64::MAX };
        let cache = ModelCache::new(registry, root.clone(), SessionOptions::default(), limits).with_disk_budget(Some(1000));

        // 800 of 1000 held: fetching 500 removes the least recently used artifact only.
        cache.make_room("shapes", &c, 500).unwrap();
        assert!(!oldest.exists(), "the least recently used artifact goes first");
        assert!(newer.exists(), "one removal made room");
        assert_eq!(cached_artifacts(&root).len(), 2);

        // An artifact another request is fetching stays, and what cannot fit is a clear error.
        lock(&cache.loading).insert(format!("lemons@{b}"), Arc::default());
        let e = cache.make_room("shapes", &c, 700).unwrap_err();
        assert!(newer.exists());
        let msg = e.to_string();
        assert!(matches!(e, LoadError::NoSpace { .. }) && msg.contains("ModelCacheStorage") && msg.contains("--cache-max-bytes"), "{msg}");

        // Once it is not in use, it makes room too.
        lock(&cache.loading).clear();
        cache.make_room("shapes", &c, 700).unwrap();
        assert!(!newer.exists());
        // More than the budget can ever hold: refused with nothing else to remove.
        assert!(matches!(cache.make_room("shapes", &c, 1001), Err(LoadError::NoSpace { .. })));
    }

    #[test]
    fn free_space_is_read_from_the_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(free_bytes(tmp.path()).unwrap() > 0);
        assert!(free_bytes(&tmp.path().join("missing")).is_err());
    }
}

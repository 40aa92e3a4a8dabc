//! Models on demand: artifacts fetched from the registry into a local cache
//! folder (Lambda: /tmp), hash-checked before loading, ONNX Runtime sessions
//! kept in an LRU bounded by count and bytes. Concurrent first requests for one
//! model share one load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use d2serve_registry::hashing::sha256_file;
use d2serve_registry::manifest::{MODEL_FILE, Manifest};
use d2serve_registry::{Registry, RegistryError};

use crate::pipeline::LoadedModel;
use crate::runtime::{Model, RuntimeError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model `{0}` is not published in the registry; `GET /v1/models` lists what is")]
    NotPublished(String),
    #[error("the registry cannot be read: {0}")]
    Registry(String),
    #[error("the cached artifact of `{key}` is corrupt ({detail}); it was removed, retry")]
    Corrupt { key: String, detail: String },
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

pub struct ModelCache {
    registry: Registry,
    dir: PathBuf,
    session: SessionOptions,
    limits: CacheLimits,
    loaded: Mutex<HashMap<String, Entry>>,
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: Mutex<CacheStats>,
}

#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub loads: u64,
    pub evictions: u64,
    pub last_load: Option<LoadTimings>,
}

impl ModelCache {
    pub fn new(registry: Registry, dir: PathBuf, session: SessionOptions, limits: CacheLimits) -> Self {
        Self {
            registry,
            dir,
            session,
            limits,
            loaded: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            stats: Mutex::new(CacheStats::default()),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn lookup(&self, key: &str) -> Option<Arc<LoadedModel>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded.get_mut(key).map(|e| {
            e.last_used = Instant::now();
            e.model.clone()
        })
    }

    /// The loaded model of `key`, loading it (once, whoever asks first) if needed.
    pub async fn get(&self, key: &str) -> Result<Arc<LoadedModel>, LoadError> {
        if let Some(m) = self.lookup(key) {
            self.stats.lock().unwrap_or_else(|p| p.into_inner()).hits += 1;
            return Ok(m);
        }
        let gate = {
            let mut loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
            loading.entry(key.to_string()).or_default().clone()
        };
        let _guard = gate.lock().await;
        if let Some(m) = self.lookup(key) {
            self.stats.lock().unwrap_or_else(|p| p.into_inner()).hits += 1;
            return Ok(m);
        }
        let (model, timings) = self.load(key).await?;
        let model = Arc::new(model);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded.insert(
            key.to_string(),
            Entry {
                model: model.clone(),
                last_used: Instant::now(),
            },
        );
        let evicted = evict(&mut loaded, &self.limits, key);
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.loads += 1;
        stats.evictions += evicted;
        stats.last_load = Some(timings);
        Ok(model)
    }

    async fn load(&self, key: &str) -> Result<(LoadedModel, LoadTimings), LoadError> {
        let mut timings = LoadTimings::default();
        let t = Instant::now();
        let (entry, manifest) = self.registry.current(key).await.map_err(|e| match e {
            RegistryError::NotPublished { .. } => LoadError::NotPublished(key.to_string()),
            other => LoadError::Registry(other.to_string()),
        })?;
        let dir = self.dir.join(key).join(&entry.artifact);
        let path = dir.join(MODEL_FILE);
        if !path.is_file() {
            std::fs::create_dir_all(&dir).map_err(|e| LoadError::Io(format!("{}: {e}", dir.display())))?;
            self.registry.download_current(key, &dir).await.map_err(|e| LoadError::Registry(e.to_string()))?;
        }
        timings.fetch_s = t.elapsed().as_secs_f64();

        // Whether just fetched or found in the cache, the bytes must be the manifest's.
        let t = Instant::now();
        verify(&path, &manifest, key).await?;
        timings.verify_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let opts = self.session.clone();
        let p = path.clone();
        let model = tokio::task::spawn_blocking(move || Model::load(&p, &opts))
            .await
            .map_err(|e| LoadError::Io(e.to_string()))??;
        timings.session_s = t.elapsed().as_secs_f64();
        let bytes = manifest.artifact.size;
        Ok((LoadedModel::new(manifest, model, bytes), timings))
    }

    /// Keys of the models currently loaded.
    pub fn loaded_keys(&self) -> Vec<String> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }
}

async fn verify(path: &Path, manifest: &Manifest, key: &str) -> Result<(), LoadError> {
    let p = path.to_path_buf();
    let sha = tokio::task::spawn_blocking(move || sha256_file(&p))
        .await
        .map_err(|e| LoadError::Io(e.to_string()))?
        .map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
    if sha != manifest.artifact.sha256 {
        let _ = std::fs::remove_file(path);
        return Err(LoadError::Corrupt {
            key: key.to_string(),
            detail: format!("sha256 {sha}, manifest says {}", manifest.artifact.sha256),
        });
    }
    Ok(())
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

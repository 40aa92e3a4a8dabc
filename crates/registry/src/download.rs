//! Checkpoint downloads into a local cache: resumable, retried, verified.
//!
//! A download streams into `<cache>/<key>/<file>.part`. A dropped connection,
//! a timeout or a 5xx is retried with exponential backoff, resuming from the
//! bytes already on disk with an HTTP `Range` request. A finished file must
//! match the md5 prefix of its zoo name and, once pinned, the size and sha256
//! recorded in `models.lock`; only then is it renamed into place. A file that
//! fails verification is removed, never left where a reader could take it for
//! a good one; a `.part` left by a network failure is kept for the next pull.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::catalog::ModelEntry;
use crate::hashing::{FileDigests, digest_file};

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub cache_dir: PathBuf,
    /// Replaces the zoo's base URL at the start of every download URL.
    pub mirror: Option<String>,
    /// Attempts after the first one.
    pub retries: u32,
    /// First backoff; doubles on every retry (with jitter), capped at 30 s.
    pub backoff: Duration,
}

/// Receives download progress (the CLI draws bars with it).
pub trait PullProgress: Send + Sync {
    fn started(&self, _key: &str, _total: Option<u64>, _already: u64) {}
    fn advanced(&self, _key: &str, _bytes: u64) {}
    fn retrying(&self, _key: &str, _attempt: u32, _reason: &str, _wait: Duration) {}
    fn finished(&self, _key: &str) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl PullProgress for NoProgress {}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{url} answered {status}: {hint}")]
    Http {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("download of {url} failed after {attempts} attempts: {last}; {}", if *.partial { "the partial file was kept, run the pull again to resume" } else { "check the network or the mirror (--mirror / ZOO_MIRROR) and run the pull again" })]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
        partial: bool,
    },
    #[error("md5 of {file} starts with {actual}, the zoo name says {expected}: the download is corrupt; it was removed, run the pull again")]
    Md5Mismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file} has sha256 {actual} ({actual_size} bytes) but {lock} pins {expected} ({expected_size} bytes): the download is not the file pulled before; it was removed. If the zoo really changed the file, delete its entry from {lock} and pull again")]
    ShaMismatch {
        file: String,
        lock: String,
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid lock file: {detail}; fix or delete it")]
    BadLock { path: String, detail: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `models.lock`: the size and sha256 of every checkpoint, recorded on its
/// first pull and enforced on every later pull and verify.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LockFile {
    #[serde(default, rename = "checkpoint")]
    pub checkpoints: Vec<LockEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockEntry {
    pub key: String,
    /// The zoo URL (not the mirror's), so a mirror is held to the same pin.
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

impl LockFile {
    pub fn load(path: &Path) -> Result<Self, PullError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| PullError::BadLock {
                path: path.display().to_string(),
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Written under a temporary name, then renamed: never half-written.
    pub fn save(&self, path: &Path) -> Result<(), PullError> {
        let mut sorted = self.clone();
        sorted.checkpoints.sort_by(|a, b| a.key.cmp(&b.key));
        let body = format!(
            "# models.lock: size and sha256 of each checkpoint, recorded by `zoo pull` on first\n# download and enforced afterwards. Do not edit by hand unless a checkpoint really changed.\n\n{}",
            toml::to_string_pretty(&sorted).expect("lock serializes")
        );
        crate::atomic::write(path, body.as_bytes()).map_err(io_err(path))
    }

    pub fn get(&self, url: &str) -> Option<&LockEntry> {
        self.checkpoints.iter().find(|e| e.url == url)
    }

    fn record(&mut self, entry: LockEntry) {
        self.checkpoints.retain(|e| e.url != entry.url);
        self.checkpoints.push(entry);
    }
}

/// The lock file shared by concurrent pulls of one process.
pub struct SharedLock {
    path: PathBuf,
    inner: Mutex<LockFile>,
}

impl SharedLock {
    pub fn open(path: &Path) -> Result<Self, PullError> {
        Ok(Self {
            inner: Mutex::new(LockFile::load(path)?),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn snapshot(&self) -> LockFile {
        self.inner.lock().await.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullStatus {
    /// Already in the cache and verified.
    Cached,
    Downloaded,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    pub key: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub status: PullStatus,
    /// True when this pull recorded the first pin in models.lock.
    pub pinned_now: bool,
}

/// Where a model's checkpoint lives in the cache.
pub fn cached_path(cache_dir: &Path, entry: &ModelEntry) -> PathBuf {
    cache_dir.join(entry.cache_relpath())
}

fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Check a finished file against the zoo name's md5 prefix and the lock;
/// pin it when the lock has no entry yet. Returns (digests, pinned_now).
async fn check_integrity(
    path: &Path,
    entry: &ModelEntry,
    lock: &SharedLock,
) -> Result<(FileDigests, bool), PullError> {
    let p = path.to_path_buf();
    let digests = tokio::task::spawn_blocking(move || digest_file(&p))
        .await
        .map_err(|e| io_err(path)(std::io::Error::other(e)))?
        .map_err(io_err(path))?;
    if !digests.md5.starts_with(&entry.md5_prefix) {
        return Err(PullError::Md5Mismatch {
            file: entry.file.clone(),
            expected: entry.md5_prefix.clone(),
            actual: format!("{}…", &digests.md5[..6]),
        });
    }
    let mut guard = lock.inner.lock().await;
    match guard.get(&entry.url) {
        Some(pin) if pin.sha256 != digests.sha256 || pin.size != digests.size => {
            Err(PullError::ShaMismatch {
                file: entry.file.clone(),
                lock: lock.path.display().to_string(),
                expected: pin.sha256.clone(),
                expected_size: pin.size,
                actual: digests.sha256.clone(),
                actual_size: digests.size,
            })
        }
        Some(_) => Ok((digests, false)),
        None => {
            guard.record(LockEntry {
                key: entry.key.clone(),
                url: entry.url.clone(),
                size: digests.size,
                sha256: digests.sha256.clone(),
            });
            guard.save(&lock.path)?;
            Ok((digests, true))
        }
    }
}

/// Why one attempt failed: retry, or give up at once.
enum AttemptError {
    Retry(String),
    Fatal(PullError),
}

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    key: &str,
    progress: &dyn PullProgress,
) -> Result<(), AttemptError> {
    let offset = tokio::fs::metadata(part).await.map(|m| m.len()).unwrap_or(0);
    let mut req = client.get(url);
    if offset > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| AttemptError::Retry(error_chain(&e)))?;
    let status = resp.status().as_u16();
    let resumed = match status {
        206 => {
            // Only trust a partial answer that starts where our file ends.
            let start = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(offset) {
                let _ = tokio::fs::remove_file(part).await;
                return Err(AttemptError::Retry(format!(
                    "server resumed at byte {start:?}, not {offset}; restarting"
                )));
            }
            true
        }
        200 => false,
        416 => {
            // Our partial file is not a prefix the server recognises: start over.
            let _ = tokio::fs::remove_file(part).await;
            return Err(AttemptError::Retry("range not satisfiable; restarting".into()));
        }
        408 | 425 | 429 | 500..=599 => {
            return Err(AttemptError::Retry(format!("server answered {status}")));
        }
        _ => {
            let _ = tokio::fs::remove_file(part).await;
            let hint = match status {
                404 | 410 => "the file does not exist there; check the URL, or --mirror / ZOO_MIRROR",
                401 | 403 => "access was refused; check the mirror's permissions",
                _ => "the server refused the download",
            };
            return Err(AttemptError::Fatal(PullError::Http {
                url: url.to_string(),
                status,
                hint,
            }));
        }
    };
    let remaining = resp.content_length();
    let total = remaining.map(|n| if resumed { n + offset } else { n });
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .await
        .map_err(|e| AttemptError::Fatal(io_err(part)(e)))?;
    let mut written = if resumed { offset } else { 0 };
    progress.started(key, total, written);
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = file.flush().await;
                return Err(AttemptError::Retry(error_chain(&e)));
            }
        };
        file.write_all(&chunk)
            .await
            .map_err(|e| AttemptError::Fatal(io_err(part)(e)))?;
        written += chunk.len() as u64;
        progress.advanced(key, chunk.len() as u64);
    }
    file.flush().await.map_err(|e| AttemptError::Fatal(io_err(part)(e)))?;
    file.sync_all().await.map_err(|e| AttemptError::Fatal(io_err(part)(e)))?;
    match total {
        Some(t) if written != t => Err(AttemptError::Retry(format!(
            "connection closed after {written} of {t} bytes"
        ))),
        _ => Ok(()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// An HTTP client with the timeouts a large download wants: a bounded wait
/// to connect and between bytes, no bound on the whole transfer.
pub fn http_client(read_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(read_timeout)
        .user_agent(concat!("d2serve-zoo/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// Download one checkpoint into the cache (or confirm the cached copy).
pub async fn pull(
    client: &reqwest::Client,
    entry: &ModelEntry,
    opts: &PullOptions,
    lock: &SharedLock,
    progress: &dyn PullProgress,
) -> Result<Pulled, PullError> {
    let dest = cached_path(&opts.cache_dir, entry);
    let done = |digests: FileDigests, status, pinned_now| Pulled {
        key: entry.key.clone(),
        path: dest.clone(),
        size: digests.size,
        sha256: digests.sha256,
        status,
        pinned_now,
    };
    if dest.is_file() {
        let (d, pinned) = check_integrity(&dest, entry, lock).await.inspect_err(|_| {
            let _ = std::fs::remove_file(&dest);
        })?;
        return Ok(done(d, PullStatus::Cached, pinned));
    }
    let dir = dest.parent().expect("cache paths have a parent");
    tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
    let part = part_path(&dest);
    let url = entry.url_via(opts.mirror.as_deref());
    let mut tries = 0;
    loop {
        match attempt(client, &url, &part, &entry.key, progress).await {
            Ok(()) => break,
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry(reason)) => {
                if tries >= opts.retries {
                    return Err(PullError::GaveUp {
                        url,
                        attempts: tries + 1,
                        last: reason,
                        partial: part.exists(),
                    });
                }
                let base = opts.backoff.as_millis() as u64;
                let wait = (base << tries.min(16)).min(30_000);
                let wait = Duration::from_millis(wait + rand::random_range(0..=wait / 4));
                tries += 1;
                progress.retrying(&entry.key, tries, &reason, wait);
                tokio::time::sleep(wait).await;
            }
        }
    }
    let (digests, pinned) = match check_integrity(&part, entry, lock).await {
        Ok(ok) => ok,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, &dest).map_err(io_err(&dest))?;
    progress.finished(&entry.key);
    Ok(done(digests, PullStatus::Downloaded, pinned))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyStatus {
    Ok,
    /// Matches its md5 prefix but has no pin in the lock yet.
    Unpinned,
    Md5Mismatch,
    ShaMismatch,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub key: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub status: VerifyStatus,
}

/// Re-hash every cached checkpoint of `entries` against its name and pin.
/// Nothing is modified.
pub fn verify_cache(entries: &[&ModelEntry], cache_dir: &Path, lock: &LockFile) -> Result<Vec<Verified>, PullError> {
    let mut out = Vec::new();
    for entry in entries {
        let path = cached_path(cache_dir, entry);
        if !path.is_file() {
            continue;
        }
        let d = digest_file(&path).map_err(io_err(&path))?;
        let status = if !d.md5.starts_with(&entry.md5_prefix) {
            VerifyStatus::Md5Mismatch
        } else {
            match lock.get(&entry.url) {
                None => VerifyStatus::Unpinned,
                Some(pin) if pin.sha256 == d.sha256 && pin.size == d.size => VerifyStatus::Ok,
                Some(_) => VerifyStatus::ShaMismatch,
            }
        };
        out.push(Verified {
            key: entry.key.clone(),
            path,
            size: d.size,
            sha256: d.sha256,
            status,
        });
    }
    Ok(out)
}

/// The pins of a lock file, by URL (for listings).
pub fn pins_by_url(lock: &LockFile) -> BTreeMap<&str, &LockEntry> {
    lock.checkpoints.iter().map(|e| (e.url.as_str(), e)).collect()
}

//! `zoo pull` and `zoo verify`: checkpoint downloads into the cache and their re-verification.

use std::time::Duration;

use anyhow::{Result, bail};
use d2serve_registry::download::{self, PullOptions, PullStatus, SharedLock, VerifyStatus};
use d2serve_registry::{Catalog, ModelEntry};
use futures_util::StreamExt;
use serde_json::json;

use crate::{ConvertArgs, Global, PullArgs, progress};

pub(crate) fn select<'c>(catalog: &'c Catalog, names: &[String], all: bool) -> Result<Vec<&'c ModelEntry>> {
    if all {
        return Ok(catalog.models.iter().collect());
    }
    if names.is_empty() {
        bail!("name at least one model (a key or alias from `zoo list`), or pass --all");
    }
    names
        .iter()
        .map(|n| catalog.require(n).map_err(Into::into))
        .collect()
}

pub(crate) async fn pull(g: &Global, args: &PullArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let entries = select(&catalog, &args.models, args.all)?;
    let opts = PullOptions {
        cache_dir: g.cache_dir()?,
        mirror: args.mirror.clone(),
        retries: args.retries,
        backoff: Duration::from_millis(args.backoff_ms),
    };
    let lock = SharedLock::open(&g.lock_path()?)?;
    let client = download::http_client(Duration::from_secs(args.timeout.max(1)));
    let bars = progress::Bars::new(entries.len(), !args.json);
    let results: Vec<_> = futures_util::stream::iter(entries.iter().map(|e| {
        let (client, opts, lock, bars) = (&client, &opts, &lock, &bars);
        async move { (e.key.clone(), download::pull(client, e, opts, lock, bars).await) }
    }))
    .buffer_unordered(args.jobs as usize)
    .collect()
    .await;
    bars.clear();
    let mut failures = 0;
    let mut report = Vec::new();
    for (key, r) in results {
        match r {
            Ok(p) => {
                if !args.json {
                    let what = match p.status {
                        PullStatus::Cached => "already cached, verified",
                        PullStatus::Downloaded => "downloaded, verified",
                    };
                    let pin = if p.pinned_now { "; sha256 pinned in models.lock" } else { "" };
                    println!("{key}: {what} ({} bytes){pin}\n  {}", p.size, p.path.display());
                }
                report.push(json!({"key": key, "ok": true, "status": p.status, "path": p.path, "size": p.size, "sha256": p.sha256}));
            }
            Err(e) => {
                failures += 1;
                eprintln!("zoo: {key}: {e}");
                report.push(json!({"key": key, "ok": false, "error": e.to_string()}));
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if failures > 0 {
        bail!("{failures} of {} downloads failed", report.len());
    }
    if args.convert {
        for e in &entries {
            crate::convert::convert(
                g,
                &ConvertArgs {
                    source: Some(e.key.clone()),
                    all: false,
                    synth: false,
                    as_key: None,
                    out: None,
                    min_size: None,
                    max_size: None,
                    debug_outputs: false,
                    random_weights: false,
                    json: args.json,
                },
            )?;
        }
    }
    Ok(())
}

pub(crate) fn verify(g: &Global, names: &[String], as_json: bool) -> Result<()> {
    let catalog = g.catalog()?;
    let entries = if names.is_empty() {
        catalog.models.iter().collect()
    } else {
        select(&catalog, names, false)?
    };
    let cache = g.cache_dir()?;
    let lock = download::LockFile::load(&g.lock_path()?)?;
    let results = download::verify_cache(&entries, &cache, &lock)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else if results.is_empty() {
        println!("nothing cached in {} yet: `zoo pull KEY` downloads a model", cache.display());
    } else {
        for r in &results {
            let what = match r.status {
                VerifyStatus::Ok => "ok",
                VerifyStatus::Unpinned => "ok by its md5 prefix; not pinned in models.lock yet (the next pull pins it)",
                VerifyStatus::Md5Mismatch => "CORRUPT: md5 does not start with the zoo name's prefix; delete it and pull again",
                VerifyStatus::ShaMismatch => "CHANGED: sha256 differs from models.lock; delete it and pull again",
            };
            println!("{}: {what}\n  {} ({} bytes, sha256 {})", r.key, r.path.display(), r.size, r.sha256);
        }
    }
    let bad = results
        .iter()
        .filter(|r| matches!(r.status, VerifyStatus::Md5Mismatch | VerifyStatus::ShaMismatch))
        .count();
    if bad > 0 {
        bail!("{bad} cached checkpoint(s) failed verification");
    }
    Ok(())
}

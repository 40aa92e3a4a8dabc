//! `zoo convert` and `zoo synth`: zoo checkpoints (downloaded or synthesized) into artifacts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use d2serve_d2onnx::{ConvertOptions, convert_checkpoint};
use d2serve_registry::atomic::temp_file_in;
use d2serve_registry::download::{self};
use d2serve_registry::manifest::MODEL_FILE;
use d2serve_registry::ModelEntry;
use serde_json::json;

use crate::{ConvertArgs, Global};

pub(crate) fn synth(g: &Global, name: &str, out: &Path, seed: u64) -> Result<()> {
    let catalog = g.catalog()?;
    let entry = catalog.require(name)?;
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = temp_file_in(dir, ".synth.", "")?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let n = d2serve_d2onnx::synth::write_checkpoint(entry, seed, &mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(out).map_err(|e| e.error).with_context(|| format!("writing {}", out.display()))?;
    let size = std::fs::metadata(out)?.len();
    println!("{}: wrote {} ({n} tensors, {size} bytes, random weights, seed {seed})", entry.key, out.display());
    Ok(())
}

/// Write a full-size synthesized checkpoint of `entry` into `dir` (removed on drop).
pub(crate) fn synth_temp(entry: &ModelEntry, dir: &Path) -> Result<tempfile::TempPath> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new().prefix(".synth.").suffix(".pkl").tempfile_in(dir)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    d2serve_d2onnx::synth::write_checkpoint(entry, 1, &mut w)?;
    Ok(w.into_inner().map_err(|e| e.into_error())?.into_temp_path())
}

/// Start a fresh peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM).
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub(crate) fn convert_all(g: &Global, args: &ConvertArgs) -> Result<()> {
    let catalog = g.catalog()?;
    let root = args.out.clone().unwrap_or_else(|| g.artifacts.clone());
    let cache = g.cache_dir()?;
    let per_model_peak = reset_peak_rss();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for entry in &catalog.models {
        let out = root.join(&entry.key);
        let synth;
        let pkl = if args.synth {
            synth = synth_temp(entry, &root)?;
            synth.to_path_buf()
        } else {
            let path = download::cached_path(&cache, entry);
            if !path.is_file() {
                eprintln!("zoo: {}: not downloaded ({} is missing): `zoo pull {}`, or use --synth", entry.key, path.display(), entry.key);
                failures.push(entry.key.clone());
                continue;
            }
            path
        };
        let checkpoint_bytes = std::fs::metadata(&pkl)?.len();
        reset_peak_rss();
        let t = std::time::Instant::now();
        let opts = ConvertOptions {
            min_size: args.min_size,
            max_size: args.max_size,
            debug_outputs: args.debug_outputs,
            random_weights: args.synth || args.random_weights,
        };
        match convert_checkpoint(entry, &catalog.classes(entry), &pkl, &out, &opts) {
            Ok(m) => {
                let secs = t.elapsed().as_secs_f64();
                let peak = d2serve_engine::bench::peak_rss_mb();
                if !args.json {
                    println!(
                        "{:<62} {:>7.2} s {:>7.0} MB peak {:>10} B artifact ({:.2}x checkpoint)",
                        entry.key,
                        secs,
                        peak,
                        m.artifact.size,
                        m.artifact.size as f64 / checkpoint_bytes as f64
                    );
                }
                rows.push(json!({"key": entry.key, "seconds": secs, "peak_rss_mb": peak, "artifact_bytes": m.artifact.size, "checkpoint_bytes": checkpoint_bytes, "out": out}));
            }
            Err(e) => {
                eprintln!("zoo: {}: {e}", entry.key);
                failures.push(entry.key.clone());
            }
        }
    }
    let convert_total: f64 = rows.iter().filter_map(|r| r["seconds"].as_f64()).sum();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"models": rows, "convert_seconds_total": convert_total, "wall_seconds": started.elapsed().as_secs_f64(), "per_model_peak_rss": per_model_peak, "failed": failures}))?);
    } else {
        println!(
            "{} converted in {convert_total:.1} s of conversion ({:.1} s wall{}){}",
            rows.len(),
            started.elapsed().as_secs_f64(),
            if args.synth { ", including writing the synthesized checkpoints" } else { "" },
            if per_model_peak { "" } else { "; peak memory is the process's running maximum (VmHWM could not be reset)" }
        );
    }
    if !failures.is_empty() {
        bail!("{} of {} models failed: {}", failures.len(), catalog.models.len(), failures.join(", "));
    }
    Ok(())
}

pub(crate) fn convert(g: &Global, args: &ConvertArgs) -> Result<()> {
    if args.all {
        return convert_all(g, args);
    }
    let catalog = g.catalog()?;
    let Some(source) = args.source.as_deref() else {
        bail!("which model? name a catalog key or alias (`zoo list`), a .pkl file with --as KEY, or pass --all");
    };
    let is_file = source.ends_with(".pkl") || Path::new(source).is_file();
    let synth;
    let (entry, pkl) = match (&args.as_key, is_file) {
        (Some(key), true) => (catalog.require(key)?, PathBuf::from(source)),
        (None, true) => bail!(
            "which model is {source}? add --as KEY (a key or alias from `zoo list`)"
        ),
        (Some(_), false) => bail!("{source} is not a file; --as names the model of a .pkl file"),
        (None, false) if args.synth => {
            let entry = catalog.require(source)?;
            let dir = args.out.clone().unwrap_or_else(|| g.artifact_dir(entry));
            synth = synth_temp(entry, dir.parent().unwrap_or(Path::new(".")))?;
            (entry, synth.to_path_buf())
        }
        (None, false) => {
            let entry = catalog.require(source)?;
            let path = download::cached_path(&g.cache_dir()?, entry);
            if !path.is_file() {
                bail!(
                    "{} is not downloaded yet ({} is missing): run `zoo pull {}` first, pass a .pkl with --as, or --synth for random weights",
                    entry.key,
                    path.display(),
                    entry.key
                );
            }
            (entry, path)
        }
    };
    let out = args.out.clone().unwrap_or_else(|| g.artifact_dir(entry));
    let opts = ConvertOptions {
        min_size: args.min_size,
        max_size: args.max_size,
        debug_outputs: args.debug_outputs,
        random_weights: args.synth || args.random_weights,
    };
    let started = std::time::Instant::now();
    let manifest = convert_checkpoint(entry, &catalog.classes(entry), &pkl, &out, &opts)
        .with_context(|| format!("converting {} ({})", pkl.display(), entry.key))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"key": entry.key, "out": out, "manifest": manifest, "seconds": started.elapsed().as_secs_f64()}))?);
    } else {
        println!(
            "{}: wrote {} ({} bytes, sha256 {}) and {} in {:.2} s",
            entry.key,
            out.join(MODEL_FILE).display(),
            manifest.artifact.size,
            manifest.artifact.sha256,
            out.join("manifest.json").display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

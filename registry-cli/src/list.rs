//! `zoo list` and `zoo show`: the catalog, and models imported with `zoo import`, with their local state.

use anyhow::Result;
use d2serve_registry::download;
use d2serve_registry::manifest::{MANIFEST_FILE, MODEL_FILE};
use d2serve_registry::Catalog;
use serde_json::json;

use crate::Global;

pub(crate) async fn list(g: &Global, as_json: bool, registry: &str) -> Result<()> {
    let catalog = g.catalog()?;
    let cache = g.cache_dir()?;
    // The registry column is informative: an unreachable registry must not hide the catalog.
    let index = match g.registry(registry).await {
        Ok(r) => r.index().await.ok(),
        Err(_) => None,
    };
    let mut rows: Vec<_> = catalog
        .models
        .iter()
        .map(|m| {
            let converted = g.artifact_dir(m).join(MODEL_FILE).is_file();
            // A local artifact with random weights (the demo's sample, --synth) is
            // shown as what it is, by its manifest's name: the real checkpoint's name and APs are not its.
            let sample_name = converted
                .then(|| d2serve_registry::Manifest::read(&g.artifact_dir(m).join(MANIFEST_FILE)).ok())
                .flatten()
                .filter(|a| a.is_sample())
                .map(|a| a.name);
            let sample = sample_name.is_some();
            json!({
                "key": m.key,
                "name": sample_name.unwrap_or_else(|| m.name.clone()),
                "aliases": m.aliases,
                "model_id": m.model_id,
                "dataset": m.dataset,
                "num_classes": m.num_classes,
                "box_ap": if sample { None } else { m.box_ap },
                "mask_ap": if sample { None } else { Some(m.mask_ap) },
                "inference_s_per_im": m.inference_s_per_im,
                "cached": download::cached_path(&cache, m).is_file(),
                "converted": converted,
                "published": index.as_ref().is_some_and(|i| i.models.contains_key(&m.key)),
                "source": if sample { "sample" } else { "zoo" },
            })
        })
        .collect();
    rows.extend(imported_rows(g, &catalog, index.as_ref()));
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let fmt_ap = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let width = rows.iter().filter_map(|r| r["key"].as_str()).map(str::len).max().unwrap_or(3);
    let name_width = rows.iter().filter_map(|r| r["name"].as_str()).map(|n| n.chars().count()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<name_width$}  {:<10}  {:>7}  {:>6}  {:>7}  STATE",
        "KEY", "NAME", "DATASET", "CLASSES", "BOX AP", "MASK AP"
    );
    for r in &rows {
        let mut state: Vec<&str> = [("cached", "local"), ("converted", "converted"), ("published", "published")]
            .iter()
            .filter(|(k, _)| r[*k].as_bool() == Some(true))
            .map(|(_, label)| *label)
            .collect();
        if r["source"] == "sample" {
            state.push("SAMPLE (random weights)");
        }
        println!(
            "{:<width$}  {:<name_width$}  {:<10}  {:>7}  {:>6}  {:>7}  {}",
            r["key"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
            r["dataset"].as_str().unwrap_or_default(),
            r["num_classes"].as_u64().map_or("-".to_string(), |n| n.to_string()),
            fmt_ap(&r["box_ap"]),
            fmt_ap(&r["mask_ap"]),
            if state.is_empty() { "-".to_string() } else { state.join(",") }
        );
    }
    Ok(())
}

/// Models of one's own (`zoo import`): converted folders under ARTIFACTS
/// whose manifest names a key the catalog does not have, and registry
/// entries that are not catalog models.
pub(crate) fn imported_rows(g: &Global, catalog: &Catalog, index: Option<&d2serve_registry::Index>) -> Vec<serde_json::Value> {
    let mut found: std::collections::BTreeMap<String, Option<d2serve_registry::Manifest>> = Default::default();
    // Keys may hold `/`: look two levels deep.
    let mut dirs = vec![g.artifacts.clone()];
    for depth in 0..2 {
        let mut next = Vec::new();
        for d in &dirs {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if !p.is_dir() {
                    continue;
                }
                match d2serve_registry::Manifest::read(&p.join(MANIFEST_FILE)) {
                    Ok(m) if catalog.get(&m.key).is_none() => {
                        found.insert(m.key.clone(), Some(m));
                    }
                    Ok(_) => {}
                    Err(_) if depth == 0 => next.push(p),
                    Err(_) => {}
                }
            }
        }
        dirs = next;
    }
    if let Some(index) = index {
        for key in index.models.keys().filter(|k| catalog.get(k).is_none()) {
            found.entry(key.clone()).or_insert(None);
        }
    }
    found
        .into_iter()
        .map(|(key, m)| {
            json!({
                "key": key,
                "name": m.as_ref().map(|m| m.name.clone()).unwrap_or_else(|| key.clone()),
                "aliases": [],
                "model_id": null,
                "dataset": m.as_ref().map(|m| m.dataset.clone()).unwrap_or_else(|| "custom".into()),
                "num_classes": m.as_ref().map(|m| m.classes.len()),
                "box_ap": null,
                "mask_ap": null,
                "inference_s_per_im": null,
                "cached": false,
                "converted": m.is_some(),
                "published": index.is_some_and(|i| i.models.contains_key(&key)),
                "source": "custom",
            })
        })
        .collect()
}

pub(crate) fn show(g: &Global, name: &str, as_json: bool) -> Result<()> {
    let catalog = g.catalog()?;
    let m = catalog.require(name)?;
    let classes = catalog.classes(m);
    // Through text, so f32 settings print as written (0.7, not 0.699999988).
    let mut value: serde_json::Value = serde_json::from_str(&serde_json::to_string(m)?)?;
    value["classes"] = serde_json::to_value(&classes.classes)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    value.as_object_mut().expect("an entry is an object").remove("classes");
    println!("{} ({})", m.name, m.key);
    print_tree(&value, 1);
    let names: Vec<&str> = classes.names().collect();
    let shown = names.iter().take(12).copied().collect::<Vec<_>>().join(", ");
    println!(
        "  classes: {} ({}{})",
        names.len(),
        shown,
        if names.len() > 12 { ", …; --json lists all" } else { "" }
    );
    Ok(())
}

pub(crate) fn print_tree(v: &serde_json::Value, depth: usize) {
    let pad = "  ".repeat(depth);
    if let Some(obj) = v.as_object() {
        for (k, v) in obj {
            if v.is_object() {
                println!("{pad}{k}:");
                print_tree(v, depth + 1);
            } else {
                println!("{pad}{k}: {}", compact(v));
            }
        }
    }
}

pub(crate) fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

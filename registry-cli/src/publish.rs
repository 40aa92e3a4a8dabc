//! `zoo publish` and `zoo registry`: artifacts into a registry, and its upkeep.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use d2serve_registry::manifest::SourceKind;
use serde_json::json;

use crate::{Global, RegistryCommand};

pub(crate) async fn publish(g: &Global, name: &str, to: &str, artifact: Option<&Path>, as_json: bool) -> Result<()> {
    let catalog = g.catalog()?;
    let key = g.model_key(&catalog, name, artifact)?;
    let dir = artifact.map_or_else(|| g.artifacts.join(&key), Path::to_path_buf);
    let registry = g.registry(to).await?;
    let p = registry.publish(&key, &dir).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!(
            "{}: artifact {} {} and is now current in {}{}",
            p.key,
            p.artifact,
            if p.uploaded { "uploaded" } else { "was already stored" },
            registry.location(),
            p.previous.map(|x| format!(" (previous: {x})")).unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) async fn registry_command(g: &Global, cmd: &RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Ls { registry, json } => {
            let r = g.registry(registry).await?;
            let index = r.index().await?;
            let artifacts = r.artifacts().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&json!({"location": r.location(), "index": index, "artifacts": artifacts}))?);
                return Ok(());
            }
            println!("registry {}", r.location());
            if index.models.is_empty() {
                println!("  (no model published yet)");
            }
            for (key, e) in &index.models {
                // The manifest says what the model is: a zoo model or one's own, and its classes.
                let what = match r.artifact_manifest(key, &e.artifact).await {
                    Ok(m) => {
                        let kind = match m.source.kind {
                            SourceKind::Custom => "imported",
                            SourceKind::Sample => "sample: random weights",
                            SourceKind::Zoo => "zoo",
                        };
                        format!("{}, {} classes, {kind}", m.name, m.classes.len())
                    }
                    Err(err) => format!("manifest unreadable: {err}"),
                };
                println!("  {key} ({what})\n    current {} ({} bytes, published {})", e.artifact, e.size, e.published_at);
                if let Some(p) = &e.previous {
                    println!("    previous {p}");
                }
            }
            let stale: Vec<_> = artifacts.iter().filter(|a| !a.current).collect();
            if !stale.is_empty() {
                println!("  not current ({}; `zoo registry gc` removes those no entry names):", stale.len());
                for a in stale {
                    println!("    {} {} ({} bytes)", a.key, a.artifact, a.bytes);
                }
            }
            Ok(())
        }
        RegistryCommand::Gc {
            registry,
            dry_run,
            min_age,
            json,
        } => {
            let r = g.registry(registry).await?;
            let removed = r.gc(Duration::from_secs(*min_age), *dry_run).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&json!({"dry_run": dry_run, "removed": removed}))?);
            } else if removed.is_empty() {
                println!("nothing to remove in {}", r.location());
            } else {
                for a in &removed {
                    println!("{} {} {} ({} bytes)", if *dry_run { "would remove" } else { "removed" }, a.key, a.artifact, a.bytes);
                }
            }
            Ok(())
        }
        RegistryCommand::Set {
            model,
            artifact,
            registry,
        } => {
            let catalog = g.catalog()?;
            let key = catalog.registry_key(model);
            let r = g.registry(registry).await?;
            r.set_current(&key, artifact).await?;
            println!("{key}: current artifact is now {artifact} in {}", r.location());
            Ok(())
        }
    }
}

//! One image in, one Supervisely annotation out. Behind a trait so the job
//! logic is tested without ONNX Runtime.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use d2serve_engine::cache::{LoadError, ModelCache};
use d2serve_engine::{LoadedModel, Settings};
use d2serve_registry::Catalog;
use serde_json::Value;

use crate::error::BatchError;
use crate::event::SettingsSpec;

pub use d2serve_engine::pipeline::DEFAULT_CONF_THRES;

#[async_trait]
pub trait Annotator: Send + Sync {
    /// The Supervisely annotation of one encoded image, or why there is none.
    async fn annotate(&self, image: Bytes) -> Result<Value, String>;
}

/// The engine: decode (pixel limit, EXIF), predict, Supervisely JSON.
pub struct EngineAnnotator {
    model: Arc<LoadedModel>,
    settings: Settings,
    max_pixels: u64,
}

impl EngineAnnotator {
    /// Resolve `model` (catalog or registry), load it through the cache, check the settings against its classes.
    pub async fn load(cache: &ModelCache, catalog: &Catalog, model: &str, spec: &SettingsSpec, max_pixels: u64) -> Result<Self, BatchError> {
        let key = catalog.registry_key(model);
        let loaded = cache.get(&key).await.map_err(|e| match e {
            LoadError::NotPublished(_) if catalog.get(model).is_none() => BatchError::UnknownModel(format!(
                "no model `{model}`: it is neither a catalog model (`zoo list`) nor published in the registry ({}); \
                 an imported model is published with `zoo import … --name {model} --to …`",
                cache.registry().location()
            )),
            LoadError::NotPublished(k) => BatchError::UnknownModel(format!(
                "model `{k}` is not published in the registry ({}): publish it with `zoo publish {k} --to …`",
                cache.registry().location()
            )),
            other => BatchError::ModelLoad(other.to_string()),
        })?;
        if let Some(names) = &spec.classes {
            for n in names {
                if !loaded.class_names().any(|c| c == n) {
                    return Err(BatchError::BadSettings(format!("unknown class `{n}` in settings.classes for model `{key}`")));
                }
            }
        }
        let settings = Settings { conf_thres: spec.conf_thres.unwrap_or(DEFAULT_CONF_THRES), classes: spec.classes.clone(), roi: None };
        Ok(Self { model: loaded, settings, max_pixels })
    }

    pub fn model_key(&self) -> &str {
        &self.model.manifest.key
    }
}

#[async_trait]
impl Annotator for EngineAnnotator {
    async fn annotate(&self, image: Bytes) -> Result<Value, String> {
        let (model, settings, max_pixels) = (self.model.clone(), self.settings.clone(), self.max_pixels);
        // Decoding and inference are CPU-bound: off the async workers.
        tokio::task::spawn_blocking(move || {
            let img = d2serve_engine::decode(&image, max_pixels).map_err(|e| e.to_string())?;
            let p = model.predict(&img, &settings).map_err(|e| e.to_string())?;
            Ok(model.annotation(&p))
        })
        .await
        .map_err(|e| format!("inference crashed: {e}"))?
    }
}

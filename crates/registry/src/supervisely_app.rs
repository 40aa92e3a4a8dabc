//! The Supervisely app's `config.json` (supervisely/config.json), generated
//! from the catalog so its model table is never copied by hand
//! (`zoo supervisely-app` writes it; a test checks the committed file).
//!
//! Field names follow the original "Serve Detectron2" app
//! (supervisely-ecosystem/detectron2, `supervisely/instance_segmentation/serve/config.json`
//! and `src/sly_globals.py`): the modal's state reaches the app container as
//! environment variables `modal.state.<field>` (nested fields joined with dots,
//! e.g. `modal.state.selectedModel.COCO`), next to `TASK_ID`, `SERVER_ADDRESS`,
//! `API_TOKEN` and `context.teamId` (`supervisely/io/env.py` of the SDK).

use serde_json::{Value, json};

use crate::catalog::{Catalog, ModelEntry};

/// The modal's tabs of pretrained models, in order.
pub const DATASET_TABS: [&str; 4] = ["COCO", "LVIS", "Cityscapes", "Others"];

/// The tab a catalog model is listed under: the original app's grouping
/// (Misc/ configs such as deformable, cascade, GN and X152 are "Others").
pub fn dataset_tab(entry: &ModelEntry) -> &'static str {
    if entry.key.starts_with("Misc/") {
        return "Others";
    }
    match entry.dataset.as_str() {
        "coco" => "COCO",
        d if d.starts_with("lvis") => "LVIS",
        "cityscapes" => "Cityscapes",
        _ => "Others",
    }
}

/// The model the modal preselects in a tab: the first alias-bearing R50-FPN-like
/// entry, i.e. simply the tab's first model in catalog order.
fn first_in(catalog: &Catalog, tab: &str) -> Option<String> {
    catalog.models.iter().find(|m| dataset_tab(m) == tab).map(|m| m.key.clone())
}

/// `config.json` of the app, for the Docker image `image`.
pub fn app_config(catalog: &Catalog, image: &str) -> Value {
    let mut models = serde_json::Map::new();
    let mut selected = serde_json::Map::new();
    for tab in DATASET_TABS {
        let rows: Vec<Value> = catalog
            .models
            .iter()
            .filter(|m| dataset_tab(m) == tab)
            .map(|m| {
                json!({
                    "model": m.key,
                    "name": m.name,
                    "alias": m.aliases.first(),
                    "dataset": catalog.datasets.get(&m.dataset).map(|d| d.title.clone()),
                    "box": m.box_ap,
                    "mask": m.mask_ap,
                    "inference_time": m.inference_s_per_im,
                    "model_id": m.model_id,
                })
            })
            .collect();
        models.insert(tab.to_string(), Value::Array(rows));
        selected.insert(tab.to_string(), first_in(catalog, tab).map_or(Value::Null, Value::String));
    }
    json!({
        "name": "Serve Detectron2 (d2serve)",
        "type": "app",
        "version": "2.0.0",
        "description": "Deploy a Detectron2 Mask R-CNN (the whole model zoo or your own training run) as a REST API service, without Python or PyTorch",
        "categories": ["neural network", "images", "videos", "instance segmentation", "segmentation & tracking", "serve"],
        "docker_image": image,
        "entrypoint": "serve --supervisely-app --listen 0.0.0.0:8000",
        "port": 8000,
        "modal_template": "supervisely/modal.html",
        "modal_width": 900,
        "modal_template_state": {
            "weightsInitialization": "custom",
            "weightsPath": "",
            "pretrainedDataset": "COCO",
            "selectedModel": selected,
            "device": "auto",
            "pretrainedModels": models,
            "modelColumns": [
                {"key": "model", "title": "Model", "subtitle": null},
                {"key": "alias", "title": "alias", "subtitle": null},
                {"key": "inference_time", "title": "inference time", "subtitle": "(s/im, V100)"},
                {"key": "box", "title": "box", "subtitle": "AP"},
                {"key": "mask", "title": "mask", "subtitle": "AP"},
                {"key": "model_id", "title": "model id", "subtitle": null},
            ],
        },
        "task_location": "application_sessions",
        "icon": "https://raw.githubusercontent.com/facebookresearch/detectron2/main/.github/Detectron2-Logo-Horz.svg",
        "isolate": true,
        "headless": true,
        "gpu": "preferred",
        "need_gpu": false,
        "session_tags": ["deployed_nn"],
        "community_agent": false,
        "license": {"type": "Apache-2.0"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_model_is_offered_once_and_each_tab_preselects_one_of_its_own() {
        let catalog = Catalog::embedded().unwrap();
        let cfg = app_config(&catalog, "d2serve/supervisely:test");
        let state = &cfg["modal_template_state"];
        let mut offered: Vec<&str> = DATASET_TABS
            .iter()
            .flat_map(|t| state["pretrainedModels"][*t].as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap()))
            .collect();
        offered.sort_unstable();
        let mut keys: Vec<&str> = catalog.models.iter().map(|m| m.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(offered, keys);
        for tab in DATASET_TABS {
            let pick = state["selectedModel"][tab].as_str().unwrap();
            assert!(state["pretrainedModels"][tab].as_array().unwrap().iter().any(|r| r["model"] == pick), "{tab}");
        }
        assert_eq!(cfg["session_tags"], json!(["deployed_nn"]));
        assert_eq!(dataset_tab(catalog.get("r50-fpn-3x").unwrap()), "COCO");
    }
}

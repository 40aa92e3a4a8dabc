//! `serve --supervisely-app`: start as the "Serve Detectron2" app of a
//! Supervisely team (supervisely/config.json), so the platform's own apps
//! (Apply NN to Images/Videos, NN Image Labeling) find it among the sessions
//! tagged `deployed_nn` and reach it through `/net/<sessionToken>/<command>`.
//!
//! Where the start-up facts come from (the SDK's `supervisely/io/env.py`, and
//! the original app's `src/sly_globals.py`): the platform starts the container
//! with `TASK_ID`, `SERVER_ADDRESS`, `API_TOKEN`, `context.teamId` and the
//! modal's state flattened into `modal.state.<field>` variables, nested fields
//! joined with dots (`modal.state.selectedModel.COCO`).
//!
//! Custom weights are read from Team Files through the REST API
//! (`POST {SERVER_ADDRESS}/public/api/v3/file-storage.download`,
//! `{"teamId", "path"}`, header `x-api-key`), in the layout the Train
//! Detectron2 app leaves: `…/checkpoints/<w>.pth`, `model_config.yaml|json`
//! beside it, `…/info/model_classes.json` one folder up. They are imported
//! like `zoo import` and published into the local registry; a pretrained
//! model is served from the registry when published there, else pulled from
//! the Detectron2 zoo and converted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use d2serve_d2onnx::ConvertOptions;
use d2serve_registry::download::{self, NoProgress, PullOptions, SharedLock};
use d2serve_registry::{Catalog, Registry};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Start(String),
    #[error("Team Files: {0}")]
    TeamFiles(String),
    #[error("{0}")]
    Model(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// A catalog key or alias from the modal's table.
    Pretrained(String),
    /// A Team Files path to a `.pth`.
    Custom(String),
}

/// What the platform told the app at start.
#[derive(Debug, Clone)]
pub struct AppStart {
    pub task_id: Option<i64>,
    pub server: String,
    pub token: String,
    pub team_id: Option<i64>,
    pub choice: ModelChoice,
    /// `auto`, `cpu` or `cuda` (the modal's `cuda:N` and bare indices mean `cuda`).
    pub device: String,
}

/// Read the start-up facts through `var` (the process environment in production).
pub fn read_start(var: &dyn Fn(&str) -> Option<String>) -> Result<AppStart, AppError> {
    let get = |k: &str| var(k).map(|v| v.trim().trim_matches('"').to_string()).filter(|v| !v.is_empty());
    let need = |k: &str| get(k).ok_or_else(|| AppError::Start(format!("{k} is not set: the Supervisely platform sets it when it starts the app")));
    let server = need("SERVER_ADDRESS")?;
    let token = need("API_TOKEN")?;
    let task_id = get("TASK_ID").and_then(|v| v.parse().ok());
    let team_id = ["CONTEXT_TEAMID", "context.teamId", "TEAM_ID"].iter().find_map(|k| get(k)).and_then(|v| v.parse().ok());
    let choice = match get("modal.state.weightsInitialization").as_deref().unwrap_or("custom") {
        "custom" => ModelChoice::Custom(get("modal.state.weightsPath").ok_or_else(|| {
            AppError::Start("custom weights were chosen but modal.state.weightsPath is empty: give the Team Files path of the .pth".into())
        })?),
        "pretrained" => {
            let tab = get("modal.state.pretrainedDataset").unwrap_or_else(|| "COCO".into());
            let model = get(&format!("modal.state.selectedModel.{tab}"))
                .or_else(|| {
                    get("modal.state.selectedModel")
                        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                        .and_then(|v| v.get(&tab).and_then(|m| m.as_str()).map(str::to_string))
                })
                .ok_or_else(|| AppError::Start(format!("pretrained weights were chosen but no model is selected for {tab} (modal.state.selectedModel.{tab})")))?;
            ModelChoice::Pretrained(model)
        }
        other => return Err(AppError::Start(format!("modal.state.weightsInitialization `{other}`: expected custom or pretrained"))),
    };
    let device = match get("modal.state.device").as_deref() {
        None | Some("auto") => "auto".to_string(),
        Some("cpu") => "cpu".to_string(),
        Some(d) if d == "cuda" || d.starts_with("cuda:") || d.chars().all(|c| c.is_ascii_digit()) => "cuda".to_string(),
        Some(d) => return Err(AppError::Start(format!("modal.state.device `{d}`: expected auto, cpu or cuda"))),
    };
    Ok(AppStart { task_id, server, token, team_id, choice, device })
}

/// Team Files of one team, read through the Supervisely REST API.
pub struct TeamFiles {
    client: reqwest::Client,
    server: String,
    token: String,
    team_id: i64,
}

impl TeamFiles {
    pub fn new(server: &str, token: &str, team_id: i64) -> Self {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(30)).build().expect("the HTTP client builds");
        Self { client, server: server.trim_end_matches('/').to_string(), token: token.to_string(), team_id }
    }

    /// Download `remote` into `dest` (whole or not at all); Ok(false) when Team Files has no such file.
    pub async fn download(&self, remote: &str, dest: &Path) -> Result<bool, AppError> {
        let url = format!("{}/public/api/v3/file-storage.download", self.server);
        let resp = self
            .client
            .post(&url)
            .header("x-api-key", &self.token)
            .json(&serde_json::json!({"teamId": self.team_id, "path": remote}))
            .send()
            .await
            .map_err(|e| AppError::TeamFiles(format!("{url}: {e}")))?;
        match resp.status().as_u16() {
            200 => {}
            400 | 404 => return Ok(false),
            401 | 403 => return Err(AppError::TeamFiles(format!("the platform refused the app's token reading {remote} ({})", resp.status()))),
            s => return Err(AppError::TeamFiles(format!("reading {remote}: the platform answered {s}"))),
        }
        let bytes = resp.bytes().await.map_err(|e| AppError::TeamFiles(format!("reading {remote}: {e}")))?;
        d2serve_registry::atomic::write(dest, &bytes).map_err(|e| AppError::TeamFiles(format!("{}: {e}", dest.display())))?;
        Ok(true)
    }
}

/// A registry key for custom weights at Team Files path `remote`:
/// `supervisely/<training run folder>/<weights name>`, in the characters keys allow.
pub fn custom_model_name(remote: &str) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect::<String>().trim_start_matches(['.', '-']).to_string();
    let parts: Vec<&str> = remote.trim_matches('/').split('/').collect();
    let stem = parts.last().map(|f| f.strip_suffix(".pth").unwrap_or(f)).unwrap_or("weights");
    // …/<run>/checkpoints/<w>.pth: the run folder names the model; else the folder holding the file.
    let run = match parts.len() {
        n if n >= 3 && matches!(parts[n - 2], "checkpoints" | "detectron_data") => parts[n - 3],
        n if n >= 2 => parts[n - 2],
        _ => "team-files",
    };
    let mut name = format!("supervisely/{}/{}", clean(run), clean(stem));
    name.truncate(128);
    name
}

/// The local registry key the app serves: custom weights imported from Team
/// Files, or a pretrained model (published already, else pulled and converted).
pub async fn prepare_model(start: &AppStart, catalog: &Catalog, registry: &Registry, work: &Path) -> Result<String, AppError> {
    match &start.choice {
        ModelChoice::Custom(remote) => {
            let team = start.team_id.ok_or_else(|| AppError::Start("context.teamId is not set: custom weights are read from that team's files".into()))?;
            let files = TeamFiles::new(&start.server, &start.token, team);
            // Mirror the Team Files layout, so the importer finds config and classes where the train app puts them.
            let local = |remote: &str| work.join("team-files").join(remote.trim_start_matches('/'));
            let weights = local(remote);
            if !files.download(remote, &weights).await? {
                return Err(AppError::TeamFiles(format!("{remote} does not exist in team {team}'s files: copy its path from Team Files")));
            }
            let remote_dir = remote.rsplit_once('/').map_or("", |(d, _)| d);
            let mut config = None;
            for name in ["model_config.yaml", "model_config.json"] {
                let r = format!("{remote_dir}/{name}");
                if files.download(&r, &local(&r)).await? {
                    config = Some(local(&r));
                    break;
                }
            }
            if config.is_none() {
                return Err(AppError::TeamFiles(format!(
                    "no model_config.yaml or model_config.json beside {remote}: the config (Detectron2's cfg.dump() YAML, or the train app's) must sit in the weights' folder"
                )));
            }
            let run_dir = remote_dir.rsplit_once('/').map_or("", |(d, _)| d);
            let classes_remote = format!("{run_dir}/info/model_classes.json");
            let classes = files.download(&classes_remote, &local(&classes_remote)).await?.then(|| local(&classes_remote));
            let name = custom_model_name(remote);
            let req = d2serve_d2onnx::import::ImportRequest { checkpoint: weights, config, classes, name: name.clone() };
            let out = work.join("artifact");
            let cat = catalog.clone();
            let o = out.clone();
            tokio::task::spawn_blocking(move || d2serve_d2onnx::import::import_checkpoint(&req, &cat, &o, &ConvertOptions::default()))
                .await
                .map_err(|e| AppError::Model(format!("import crashed: {e}")))?
                .map_err(|e| AppError::Model(format!("cannot import {remote}: {}", d2serve_registry::report::join_causes(anyhow::Error::new(e).chain()))))?;
            registry.publish(&name, &out).await.map_err(|e| AppError::Model(format!("publishing {name}: {e}")))?;
            Ok(name)
        }
        ModelChoice::Pretrained(model) => {
            let entry = catalog.get(model).ok_or_else(|| AppError::Start(format!("the selected model `{model}` is not in this build's catalog")))?;
            let key = entry.key.clone();
            let index = registry.index().await.map_err(|e| AppError::Model(format!("reading the registry {}: {e}", registry.location())))?;
            if index.models.contains_key(&key) {
                return Ok(key);
            }
            // Not published: fetch the zoo checkpoint (ZOO_MIRROR may point at a copy) and convert it.
            let cache = work.join("checkpoints");
            let opts = PullOptions { cache_dir: cache.clone(), mirror: std::env::var("ZOO_MIRROR").ok(), retries: 3, backoff: Duration::from_secs(1) };
            let lock = SharedLock::open(&cache.join("models.lock")).map_err(|e| AppError::Model(e.to_string()))?;
            let client = download::http_client(Duration::from_secs(60));
            let pulled = download::pull(&client, entry, &opts, &lock, &NoProgress)
                .await
                .map_err(|e| AppError::Model(format!("downloading {}: {e}", entry.url)))?;
            let out: PathBuf = work.join("artifact");
            let (entry, classes, o) = (entry.clone(), catalog.classes(entry), out.clone());
            tokio::task::spawn_blocking(move || d2serve_d2onnx::convert_checkpoint(&entry, &classes, &pulled.path, &o, &ConvertOptions::default()))
                .await
                .map_err(|e| AppError::Model(format!("conversion crashed: {e}")))?
                .map_err(|e| AppError::Model(format!("converting {key}: {e}")))?;
            registry.publish(&key, &out).await.map_err(|e| AppError::Model(format!("publishing {key}: {e}")))?;
            Ok(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_recorded_custom_start_reads_as_custom_weights() {
        let s = read_start(&env(&[
            ("TASK_ID", "31337"),
            ("SERVER_ADDRESS", "https://app.supervisely.com"),
            ("API_TOKEN", "tok"),
            ("context.teamId", "440"),
            ("modal.state.weightsInitialization", "\"custom\""),
            ("modal.state.weightsPath", "\"/detectron2/4242_lemons/checkpoints/model_final.pth\""),
            ("modal.state.device", "\"cuda:0\""),
        ]))
        .unwrap();
        assert_eq!(s.task_id, Some(31337));
        assert_eq!(s.team_id, Some(440));
        assert_eq!(s.choice, ModelChoice::Custom("/detectron2/4242_lemons/checkpoints/model_final.pth".into()));
        assert_eq!(s.device, "cuda");
    }

    #[test]
    fn a_pretrained_start_takes_the_selected_model_of_the_chosen_tab() {
        let base = [("SERVER_ADDRESS", "s"), ("API_TOKEN", "t"), ("modal.state.weightsInitialization", "pretrained"), ("modal.state.pretrainedDataset", "LVIS")];
        let mut flat = base.to_vec();
        flat.push(("modal.state.selectedModel.LVIS", "lvis-r50-fpn"));
        assert_eq!(read_start(&env(&flat)).unwrap().choice, ModelChoice::Pretrained("lvis-r50-fpn".into()));
        let mut json = base.to_vec();
        json.push(("modal.state.selectedModel", r#"{"COCO": "r50-fpn-3x", "LVIS": "lvis-r101-fpn"}"#));
        assert_eq!(read_start(&env(&json)).unwrap().choice, ModelChoice::Pretrained("lvis-r101-fpn".into()));
    }

    #[test]
    fn a_start_missing_what_it_needs_says_what() {
        let e = read_start(&env(&[("SERVER_ADDRESS", "s"), ("API_TOKEN", "t")])).unwrap_err().to_string();
        assert!(e.contains("weightsPath"), "{e}");
        let e = read_start(&env(&[("API_TOKEN", "t")])).unwrap_err().to_string();
        assert!(e.contains("SERVER_ADDRESS"), "{e}");
    }

    #[test]
    fn custom_model_names_come_from_the_training_run() {
        assert_eq!(custom_model_name("/detectron2/4242_lemons/checkpoints/model_final.pth"), "supervisely/4242_lemons/model_final");
        assert_eq!(custom_model_name("/detectron2/77_old run/detectron_data/best_model.pth"), "supervisely/77_old-run/best_model");
        assert_eq!(custom_model_name("/my weights/w.pth"), "supervisely/my-weights/w");
    }
}

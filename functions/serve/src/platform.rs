//! The Supervisely platform's REST API as the serving routes need it: video
//! info and frames, and image downloads, with the request's token. Every
//! failure names the call: the platform refusing the token is a 403, an
//! unknown id a 404, an unreachable or failing platform a 502.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// How long one platform call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Frames asked for in one `videos.bulk.download-frame` call.
pub const FRAMES_PER_CALL: usize = 16;

#[derive(Debug, Clone)]
pub struct Platform {
    server: String,
    token: String,
    client: reqwest::Client,
}

/// What `videos.info` says of a video.
#[derive(Debug, Clone)]
pub struct VideoInfo {
    pub id: i64,
    pub dataset_id: Option<i64>,
    pub project_id: Option<i64>,
    pub frames_count: i64,
    /// Seconds (the platform's `fileMeta.duration`).
    pub duration: Option<f64>,
}

impl Platform {
    /// The platform of a request: `--supervisely-server` (`SERVER_ADDRESS`);
    /// the token from `api_token`, `context.apiToken`, the `x-api-key` header,
    /// else `--supervisely-token`. A `server_address` in the body is not
    /// followed: it would let any client point this server, with a token, at
    /// any address (internal ones included).
    pub fn for_request(st: &AppState, body: &Value, headers: &HeaderMap) -> Result<Self, ApiError> {
        let server = st.cfg.supervisely_server.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::bad_request("no_supervisely_server", "ids need a Supervisely server: start serve with --supervisely-server (SERVER_ADDRESS)")
        })?;
        let token = body
            .get("api_token")
            .and_then(Value::as_str)
            .or_else(|| body.pointer("/context/apiToken").and_then(Value::as_str))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::to_string)
            .or_else(|| st.cfg.supervisely_token.clone())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no_api_token", "send api_token (or x-api-key) to read from Supervisely"))?;
        Ok(Self { server: server.trim_end_matches('/').to_string(), token, client: reqwest::Client::new() })
    }

    /// POST `method` with `body`; a non-2xx answer is an error naming the call.
    async fn call(&self, method: &str, body: &Value, what: &str) -> Result<reqwest::Response, ApiError> {
        let url = format!("{}/public/api/v3/{method}", self.server);
        let resp = self
            .client
            .post(&url)
            .header("x-api-key", &self.token)
            .json(body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_unreachable", format!("Supervisely {method}: {e}")))?;
        match resp.status().as_u16() {
            200..=299 => Ok(resp),
            401 | 403 => Err(ApiError::new(StatusCode::FORBIDDEN, "supervisely_refused", format!("Supervisely {method} refused {what}: check the API token"))),
            400 | 404 => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("Supervisely {method}: no {what}"))),
            s => Err(ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_error", format!("Supervisely {method} answered {s} for {what}"))),
        }
    }

    pub async fn video_info(&self, id: i64) -> Result<VideoInfo, ApiError> {
        let what = format!("video {id}");
        let v = self.json("videos.info", &json!({"id": id, "forceMetadataForLinks": true}), &what).await?;
        let frames_count = v
            .pointer("/fileMeta/framesCount")
            .or_else(|| v.get("framesCount"))
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_error", format!("Supervisely videos.info for {what} has no fileMeta.framesCount")))?;
        Ok(VideoInfo {
            id,
            dataset_id: v.get("datasetId").and_then(Value::as_i64),
            project_id: v.get("projectId").and_then(Value::as_i64),
            frames_count,
            duration: v.pointer("/fileMeta/duration").and_then(Value::as_f64),
        })
    }

    /// Frames `frames` of `video` as encoded images, in the order asked
    /// (`videos.bulk.download-frame`: multipart parts named by frame index, in any order).
    pub async fn video_frames(&self, video: i64, frames: &[i64]) -> Result<Vec<Vec<u8>>, ApiError> {
        let what = format!("frames {frames:?} of video {video}");
        let resp = self.call("videos.bulk.download-frame", &json!({"videoId": video, "frames": frames}), &what).await?;
        parts_by_name(resp, frames, "videos.bulk.download-frame", &what).await
    }

    async fn json(&self, method: &str, body: &Value, what: &str) -> Result<Value, ApiError> {
        self.call(method, body, what)
            .await?
            .json()
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_error", format!("Supervisely {method} for {what}: {e}")))
    }

    /// Every entity of a paged list method (`entities`, `pagesCount`).
    async fn list_all(&self, method: &str, body: Value, what: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let mut b = body.clone();
            if let Value::Object(o) = &mut b {
                o.insert("page".into(), json!(page));
                o.insert("per_page".into(), json!(500));
            }
            let v = self.json(method, &b, what).await?;
            out.extend(v.get("entities").and_then(Value::as_array).cloned().unwrap_or_default());
            let pages = v.get("pagesCount").and_then(Value::as_i64).unwrap_or(1);
            if page >= pages {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// `projects.info`: refused unless an images project.
    pub async fn images_project(&self, id: i64) -> Result<Value, ApiError> {
        let p = self.json("projects.info", &json!({"id": id}), &format!("project {id}")).await?;
        match p.get("type").and_then(Value::as_str) {
            Some("images") | None => Ok(p),
            Some(t) => Err(ApiError::bad_request("not_an_images_project", format!("project {id} is a {t} project: only images projects are supported"))),
        }
    }

    /// The project's datasets (nested ones too), by id.
    pub async fn datasets(&self, project: i64) -> Result<Vec<Value>, ApiError> {
        self.list_all("datasets.list", json!({"projectId": project, "filter": [], "recursive": true, "sort": "id", "sort_order": "asc"}), &format!("datasets of project {project}")).await
    }

    /// A dataset's images, in the platform's order.
    pub async fn images(&self, dataset: i64) -> Result<Vec<Value>, ApiError> {
        self.list_all("images.list", json!({"datasetId": dataset}), &format!("images of dataset {dataset}")).await
    }

    /// Images `ids` of `dataset` (`images.bulk.download`: multipart parts named by image id), in the order asked.
    pub async fn images_bulk(&self, dataset: i64, ids: &[i64]) -> Result<Vec<Vec<u8>>, ApiError> {
        let what = format!("images {ids:?} of dataset {dataset}");
        let resp = self.call("images.bulk.download", &json!({"datasetId": dataset, "imageIds": ids}), &what).await?;
        parts_by_name(resp, ids, "images.bulk.download", &what).await
    }

    /// An image's bytes (`images.download`).
    pub async fn image(&self, id: i64) -> Result<Vec<u8>, ApiError> {
        let what = format!("image {id}");
        let resp = self.call("images.download", &json!({"id": id}), &what).await?;
        let bytes = resp.bytes().await.map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_unreachable", format!("Supervisely images.download for {what}: {e}")))?;
        Ok(bytes.to_vec())
    }
}

/// The parts of a multipart answer named by `ids`, in that order (the platform may send them in any order).
async fn parts_by_name(resp: reqwest::Response, ids: &[i64], method: &str, what: &str) -> Result<Vec<Vec<u8>>, ApiError> {
    let bad = |detail: String| ApiError::new(StatusCode::BAD_GATEWAY, "supervisely_error", format!("Supervisely {method} for {what}: {detail}"));
    let ctype = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let boundary = multer::parse_boundary(&ctype).map_err(|_| bad(format!("not a multipart answer ({ctype})")))?;
    let mut parts = multer::Multipart::new(resp.bytes_stream(), boundary);
    let mut by_name: HashMap<i64, Vec<u8>> = HashMap::new();
    while let Some(field) = parts.next_field().await.map_err(|e| bad(e.to_string()))? {
        let Some(id) = field.name().and_then(|n| n.parse::<i64>().ok()) else { continue };
        let bytes = field.bytes().await.map_err(|e| bad(e.to_string()))?;
        by_name.insert(id, bytes.to_vec());
    }
    ids.iter().map(|i| by_name.remove(i).ok_or_else(|| bad(format!("{i} is missing from the answer")))).collect()
}

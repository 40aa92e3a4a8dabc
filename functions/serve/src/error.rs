//! HTTP errors: every failure a caller can cause is a 4xx with a JSON body
//! `{"error", "detail"}` (plus the `success`/`message` keys Supervisely
//! clients read). 5xx is for our own faults only: Supervisely clients retry
//! 5xx five times with 5 s sleeps.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Short machine-readable code.
    pub error: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header (transient refusals: overload, registry outage).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(error: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = self.error, detail = %self.detail, "request failed");
        } else {
            tracing::info!(status = self.status.as_u16(), error = self.error, detail = %self.detail, "request refused");
        }
        let body = crate::openapi::ErrorBody {
            error: self.error.to_string(),
            message: self.detail.clone(),
            detail: self.detail,
            success: false,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}

impl From<d2serve_engine::DecodeError> for ApiError {
    fn from(e: d2serve_engine::DecodeError) -> Self {
        use d2serve_engine::DecodeError as D;
        let status = match e {
            D::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            D::UnknownFormat | D::UnsupportedFeature { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, "bad_image", e.to_string())
    }
}

impl From<d2serve_engine::LoadError> for ApiError {
    fn from(e: d2serve_engine::LoadError) -> Self {
        use d2serve_engine::LoadError as L;
        match e {
            L::NotPublished(_) => ApiError::new(StatusCode::NOT_FOUND, "model_not_published", e.to_string()),
            // Transient: the registry is down and nothing usable is cached. Supervisely clients retry 5xx.
            L::Unavailable(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e.to_string()).retry_after(10),
            L::Registry(_) | L::Corrupt { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "registry_broken", e.to_string()),
            // The deployment's storage is too small for the model: ours to fix, not the caller's.
            L::NoSpace { .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "cache_full", e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<d2serve_engine::PredictError> for ApiError {
    fn from(e: d2serve_engine::PredictError) -> Self {
        use d2serve_engine::PredictError as P;
        match e {
            P::RoiOutside { .. } => ApiError::bad_request("bad_rectangle", e.to_string()),
            P::UnknownClass(_) => ApiError::bad_request("bad_settings", e.to_string()),
            P::Windows(_) => ApiError::bad_request("bad_sliding_window", e.to_string()),
            P::Runtime(r) => ApiError::internal(r.to_string()),
        }
    }
}

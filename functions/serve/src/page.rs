//! The pages: `GET /` (try a model in the browser), `GET /docs` (the API
//! contract, rendered offline from `/openapi.json`) and the spec itself.
//! Both pages are single self-contained files embedded in the binary: no
//! CDN, no external fonts or scripts, relative URLs (so they work under
//! `--path-prefix` and behind a Function URL).

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const DOCS_HTML: &str = include_str!("../assets/docs.html");

/// Content-Security-Policy of the pages: nothing from elsewhere, images from
/// the page's own blobs and data URLs, or the URL a user pasted.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data: http: https:; connect-src 'self'; base-uri 'none'; form-action 'none'";

fn page(html: &'static str) -> Response {
    let mut resp = Html(html).into_response();
    resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CSP));
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    resp
}

/// A page to try the models: pick one, drop an image, see masks, boxes and classes.
#[utoipa::path(get, path = "/", tag = "page", responses((status = 200, content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    page(INDEX_HTML)
}

/// This contract, rendered for people (offline).
#[utoipa::path(get, path = "/docs", tag = "page", responses((status = 200, content_type = "text/html", body = String)))]
pub async fn docs() -> Response {
    page(DOCS_HTML)
}

/// The OpenAPI 3.1 contract.
#[utoipa::path(get, path = "/openapi.json", tag = "page", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::spec_json()).into_response()
}

//! AWS Lambda's limit on a buffered response: the whole invocation response
//! (the JSON envelope `lambda_http` writes around the body) may be at most
//! 6 MB. Over it, Lambda drops the answer and the client gets Lambda's own
//! 502, the inference wasted and nothing said about why. Under Lambda every
//! response passes through [`fit_response`]: as it is when it fits, gzipped
//! when the client accepts gzip and that fits, else a 422 naming what makes
//! the answer smaller. The same request to a container has no such limit.

use std::io::Write;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, VARY};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Lambda's limit on a synchronous invocation's response payload (6 MB).
pub const LAMBDA_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;
/// Room kept for the envelope around the body: status, headers, keys.
const ENVELOPE_ROOM: usize = 16 * 1024;

/// Bytes the body takes in `lambda_http`'s envelope: text types as a JSON
/// string (quotes, backslashes and control characters escaped), anything else
/// (and anything with a Content-Encoding) base64.
pub fn enveloped_size(headers: &HeaderMap, body: &[u8]) -> usize {
    let text = headers.get(CONTENT_ENCODING).is_none() && {
        let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        ct.is_none_or(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            ["text", "application/json", "application/javascript", "application/xml", "application/yaml"].iter().any(|p| ct.starts_with(p))
                || ["+xml", "+yaml", "+json"].iter().any(|s| mime.ends_with(s))
        })
    };
    if !text {
        return body.len().div_ceil(3) * 4;
    }
    body.iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        // "gzip;q=0" is a refusal.
        let refused = parts.any(|p| p.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0)));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

/// Middleware for the Lambda path: every response made to fit [`LAMBDA_RESPONSE_LIMIT`].
pub async fn fit_response(req: Request, next: Next) -> Response {
    let gzip_ok = accepts_gzip(req.headers());
    let res = next.run(req).await;
    fit(res, gzip_ok, LAMBDA_RESPONSE_LIMIT).await
}

/// `res` as it is, gzipped, or refused, so that its envelope stays within `limit`.
pub async fn fit(res: Response, gzip_ok: bool, limit: usize) -> Response {
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(format!("reading the response body: {e}")).into_response(),
    };
    let size = enveloped_size(&parts.headers, &bytes);
    if size + ENVELOPE_ROOM <= limit {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let mut gzipped = None;
    if gzip_ok && parts.headers.get(CONTENT_ENCODING).is_none() {
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 2), flate2::Compression::default());
        let gz = enc.write_all(&bytes).and_then(|()| enc.finish());
        if let Ok(gz) = gz {
            if gz.len().div_ceil(3) * 4 + ENVELOPE_ROOM <= limit {
                parts.headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                parts.headers.remove(CONTENT_LENGTH);
                parts.headers.append(VARY, HeaderValue::from_static("accept-encoding"));
                tracing::info!(bytes = bytes.len(), gzipped = gz.len(), "response over Lambda's 6 MB limit sent gzipped");
                return Response::from_parts(parts, Body::from(gz));
            }
            gzipped = Some(gz.len());
        }
    }
    let mb = |n: usize| n as f64 / (1024.0 * 1024.0);
    let compressed = match (gzip_ok, gzipped) {
        (_, Some(g)) => format!(" (gzipped: {:.1} MB as Lambda sends it, still over)", mb(g.div_ceil(3) * 4)),
        (false, _) => " (send `Accept-Encoding: gzip` to have it compressed when that makes it fit)".to_string(),
        (true, None) => String::new(),
    };
    tracing::warn!(status = parts.status.as_u16(), bytes = bytes.len(), enveloped = size, "response over Lambda's 6 MB limit refused");
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "response_too_large",
        format!(
            "the answer is {:.1} MB as Lambda sends it{compressed}, over AWS Lambda's {:.0} MB response limit. Ask for less: a higher confidence threshold (`conf`, or `conf_thres` in the settings), fewer images per request, masks as COCO RLE, which gzip well (`?format=coco` on /v1/models/…/predict, with `Accept-Encoding: gzip`); or use the container deployment (no response limit)",
            mb(size),
            mb(limit),
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn envelope_size_as_lambda_http_writes_it() {
        // JSON is a JSON string in the envelope: quotes and backslashes double.
        assert_eq!(enveloped_size(&headers("application/json"), br#"{"a":"\\"}"#), 16);
        assert_eq!(enveloped_size(&headers("text/html; charset=utf-8"), b"<p>\n</p>\x01"), 7 + 2 + 6);
        // Anything else, and anything encoded, is base64.
        assert_eq!(enveloped_size(&headers("image/png"), &[0; 10]), 16);
        let mut gz = headers("application/json");
        gz.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(enveloped_size(&gz, &[0; 3]), 4);
    }

    #[test]
    fn gzip_only_where_accepted() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    async fn body_of(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap().to_vec()
    }

    fn json_response(body: Vec<u8>) -> Response {
        (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
    }

    #[tokio::test]
    async fn fits_passes_compresses_or_refuses() {
        // Within the limit: untouched.
        let small = b"{\"x\": 1}".to_vec();
        let r = fit(json_response(small.clone()), true, 64 * 1024).await;
        assert_eq!((r.status(), r.headers().get(CONTENT_ENCODING).is_none()), (StatusCode::OK, true));
        assert_eq!(body_of(r).await, small);

        // Over it, compressible: gzipped when accepted, and the client gets the same bytes back.
        let big: Vec<u8> = format!("{{\"a\": \"{}\"}}", "ab".repeat(40_000)).into_bytes();
        let r = fit(json_response(big.clone()), true, 64 * 1024).await;
        assert_eq!(r.headers().get(CONTENT_ENCODING).unwrap(), "gzip");
        let gz = body_of(r).await;
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, big);

        // Not accepted: refused with a 422 that says what to do.
        let r = fit(json_response(big.clone()), false, 64 * 1024).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
        assert_eq!(v["error"], "response_too_large");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("format=coco") && detail.contains("Accept-Encoding: gzip"), "{detail}");

        // Accepted but incompressible and over: refused, saying gzip was tried.
        let mut state = 7u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                b'a' + ((state >> 33) % 26) as u8
            })
            .collect();
        let r = fit(json_response(noise), true, 64 * 1024).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
        assert!(v["detail"].as_str().unwrap().contains("gzipped"), "{v}");
    }
}

//! Access control for container mode (Lambda sits behind the Function URL's
//! IAM auth and sets neither option).
//!
//! - `--auth-token T`: every route but the health probes needs
//!   `Authorization: Bearer T`, compared in constant time.
//! - `--path-prefix /P`: the whole API is also served under `/P`, where no
//!   token is asked: the prefix is the secret. Supervisely clients send no
//!   auth header to a `session_url`, so they are given `http://host/P`. With a
//!   prefix, the root answers only the health probes unless a token is set.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::{AppState, HEALTH_ROUTES};

/// Equal bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// `path` without the secret prefix, when it is under it (compared in constant time).
pub fn strip_prefix<'a>(st: &AppState, path: &'a str) -> Option<&'a str> {
    let prefix = st.cfg.path_prefix.as_deref()?;
    let head = path.as_bytes().get(..prefix.len())?;
    if !constant_time_eq(head, prefix.as_bytes()) {
        return None;
    }
    let rest = &path[prefix.len()..];
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Check a `--path-prefix` value: `/` followed by URL-safe characters.
pub fn parse_prefix(raw: &str) -> Result<String, String> {
    let p = format!("/{}", raw.trim().trim_matches('/'));
    if p.len() < 2 || !p[1..].chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)) {
        return Err(format!("--path-prefix `{raw}`: use one path segment of letters, digits, - _ . ~ (e.g. /s-8f2c41d9e7)"));
    }
    Ok(p)
}

fn bearer_matches(req: &Request, token: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

pub async fn check(State(st): State<std::sync::Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = HEALTH_ROUTES.contains(&path) || strip_prefix(&st, path).is_some();
    if open {
        return next.run(req).await;
    }
    match (&st.cfg.auth_token, &st.cfg.path_prefix) {
        (None, None) => next.run(req).await,
        (Some(token), _) if bearer_matches(&req, token) => next.run(req).await,
        (Some(_), _) => {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs `Authorization: Bearer <token>` (the value of its --auth-token / D2_AUTH_TOKEN); Supervisely clients use the session URL with its secret path prefix",
            )
            .into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        // A prefix without a token: only the prefix and the probes answer.
        (None, Some(_)) => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; this server answers under its path prefix").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn prefixes_are_one_safe_segment() {
        assert_eq!(parse_prefix("s-123").unwrap(), "/s-123");
        assert_eq!(parse_prefix("/s-123/").unwrap(), "/s-123");
        assert!(parse_prefix("/").is_err());
        assert!(parse_prefix("a/b").is_err());
        assert!(parse_prefix("a b").is_err());
    }
}

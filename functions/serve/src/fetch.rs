//! Fetching images from caller-supplied URLs without becoming a proxy into the
//! private network (SSRF). Every hop of a redirect chain is checked; names are
//! resolved by us, every resolved address is checked, and the connection goes
//! to the checked address (no second lookup an attacker could rebind).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use crate::error::ApiError;
use crate::ssrf::{AllowList, Blocked, check_host, check_ip, check_scheme};

/// Name resolution, replaceable in tests by a stub (never by real private hosts).
pub trait HostLookup: Send + Sync {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver.
pub struct SystemLookup;

impl HostLookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// reqwest resolver that only returns addresses the guard allows.
struct GuardedResolver {
    lookup: Arc<dyn HostLookup>,
    allow: Arc<AllowList>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.lookup.clone();
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = lookup.lookup(host.clone()).await?;
            let name_allowed = allow.allows_host(&host);
            let mut ok = Vec::new();
            let mut last = None;
            for ip in ips {
                match check_ip(ip, &allow) {
                    Ok(()) => ok.push(SocketAddr::new(ip, 0)),
                    Err(_) if name_allowed => ok.push(SocketAddr::new(ip, 0)),
                    Err(b) => last = Some(b),
                }
            }
            if ok.is_empty() {
                let msg = match last {
                    Some(b) => format!("{host} resolves to {b}"),
                    None => format!("{host} has no address"),
                };
                return Err(Box::new(BlockedError(msg)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[derive(Debug)]
struct BlockedError(String);
impl std::fmt::Display for BlockedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BlockedError {}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    allow: Arc<AllowList>,
    max_bytes: usize,
}

const MAX_REDIRECTS: usize = 5;

fn blocked(b: Blocked) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "url_blocked", b.to_string())
}

fn find_blocked(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BlockedError>() {
            return Some(b.0.clone());
        }
        cur = err.source();
    }
    None
}

impl Fetcher {
    pub fn new(allow: AllowList, lookup: Arc<dyn HostLookup>, max_bytes: usize, timeout: Duration) -> Self {
        let allow = Arc::new(allow);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { lookup, allow: allow.clone() }))
            .user_agent(concat!("d2serve/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Self { client, allow, max_bytes }
    }

    /// Check a URL against the guard (scheme and, for literal IPs, the address).
    pub fn check(&self, url: &url::Url) -> Result<(), ApiError> {
        check_scheme(url.scheme()).map_err(blocked)?;
        let host = url
            .host_str()
            .ok_or_else(|| ApiError::bad_request("bad_url", format!("{url} has no host")))?;
        check_host(host, &self.allow).map_err(blocked)?;
        Ok(())
    }

    /// GET `url` (following up to 5 checked redirects) and return the body.
    pub async fn get(&self, raw: &str) -> Result<Vec<u8>, ApiError> {
        let mut url = url::Url::parse(raw).map_err(|e| ApiError::bad_request("bad_url", format!("`{raw}` is not a URL: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            self.check(&url)?;
            let resp = self.client.get(url.clone()).send().await.map_err(|e| {
                if let Some(b) = find_blocked(&e) {
                    return ApiError::new(StatusCode::FORBIDDEN, "url_blocked", format!("{b}; only public hosts may be fetched (open hosts with --allow-hosts / D2_ALLOW_HOSTS)"));
                }
                let what = if e.is_timeout() { "timed out" } else { "failed" };
                ApiError::new(StatusCode::BAD_REQUEST, "url_unreachable", format!("fetching {url} {what}: {e}"))
            })?;
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| ApiError::bad_request("url_unreachable", format!("{url} redirects without a Location")))?;
                url = url
                    .join(loc)
                    .map_err(|e| ApiError::bad_request("bad_url", format!("{url} redirects to a bad URL: {e}")))?;
                continue;
            }
            if !status.is_success() {
                return Err(ApiError::bad_request("url_unreachable", format!("{url} answered {status}")));
            }
            if resp.content_length().is_some_and(|n| n > self.max_bytes as u64) {
                return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", format!("{url} is over {} bytes", self.max_bytes)));
            }
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ApiError::bad_request("url_unreachable", format!("reading {url}: {e}")))?;
                if body.len() + chunk.len() > self.max_bytes {
                    return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", format!("{url} is over {} bytes", self.max_bytes)));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(body);
        }
        Err(ApiError::bad_request("url_unreachable", format!("more than {MAX_REDIRECTS} redirects from {raw}")))
    }
}

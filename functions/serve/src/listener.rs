//! The HTTP server outside Lambda: connections accepted one by one, each with
//! deadlines, so slow or idle clients can neither hold the process's
//! descriptors nor keep it from answering its health probes.
//!
//! A client gets `header_timeout` from connecting (or from its last answer, on a
//! kept-alive connection) to send a complete request header, `body_timeout`
//! from the header to send its body (then 408), and `idle_timeout` between
//! requests on a kept-alive connection. Open connections are capped below the
//! descriptor limit; at the cap a new connection displaces the one that has
//! waited longest without a request in flight (a stalled or idle client) rather
//! than being refused, so a prober still gets through a flood of half-open
//! connections. A connection with a request in flight is never closed here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::error::ApiError;

/// Descriptors kept free for what is not a client connection: model files,
/// registry and image fetches, the platform's calls, logs.
pub const RESERVED_DESCRIPTORS: u64 = 128;

#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Connection counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub closed_header_timeout: AtomicU64,
    pub closed_body_timeout: AtomicU64,
    pub closed_idle_timeout: AtomicU64,
    /// Closed at the connection cap to make room for a new one.
    pub closed_at_cap: AtomicU64,
    /// New connections closed at once: the cap was reached and every open one had a request in flight.
    pub refused_at_cap: AtomicU64,
}

impl ConnStats {
    pub fn closed(&self, reason: &str) -> u64 {
        match reason {
            "header_timeout" => &self.closed_header_timeout,
            "body_timeout" => &self.closed_body_timeout,
            "idle_timeout" => &self.closed_idle_timeout,
            "at_cap" => &self.closed_at_cap,
            _ => &self.refused_at_cap,
        }
        .load(Ordering::Relaxed)
    }
}

/// Raise the soft descriptor limit to the hard one and return the soft limit now in force.
pub fn raise_descriptor_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur as u64)
}

/// The default connection cap under a descriptor limit.
pub fn default_max_connections(descriptor_limit: u64) -> usize {
    descriptor_limit.saturating_sub(RESERVED_DESCRIPTORS).clamp(16, 1 << 20) as usize
}

struct Conn {
    /// Accepted, or last answer finished.
    since: Instant,
    in_flight: usize,
    served: u64,
    close: Arc<Notify>,
    reason: Arc<Mutex<Option<&'static str>>>,
}

#[derive(Default)]
struct Table {
    conns: Mutex<HashMap<u64, Conn>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Table {
    /// Ask connection `id` to close for `reason` (taken only if it has no request in flight).
    fn close(conns: &mut HashMap<u64, Conn>, id: u64, reason: &'static str) {
        if let Some(c) = conns.get(&id) {
            *lock(&c.reason) = Some(reason);
            c.close.notify_one();
        }
    }

    /// At the cap: the connection without a request in flight that has waited longest.
    fn victim(&self) -> Option<u64> {
        let conns = lock(&self.conns);
        let id = conns
            .iter()
            .filter(|(_, c)| c.in_flight == 0 && lock(&c.reason).is_none())
            .min_by_key(|(_, c)| c.since)
            .map(|(id, _)| *id)?;
        drop(conns);
        Some(id)
    }

    /// Close connections past their header or idle deadline.
    fn reap(&self, limits: &ConnLimits) {
        let now = Instant::now();
        let mut conns = lock(&self.conns);
        let late: Vec<(u64, &'static str)> = conns
            .iter()
            .filter(|(_, c)| c.in_flight == 0 && lock(&c.reason).is_none())
            .filter_map(|(id, c)| {
                let waited = now.duration_since(c.since);
                if c.served == 0 && waited >= limits.header_timeout {
                    Some((*id, "header_timeout"))
                } else if c.served > 0 && waited >= limits.idle_timeout {
                    Some((*id, "idle_timeout"))
                } else {
                    None
                }
            })
            .collect();
        for (id, reason) in late {
            Self::close(&mut conns, id, reason);
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, let
/// every connection finish its request in flight, and return when all are closed.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnLimits, stats: Arc<ConnStats>, shutdown: impl Future<Output = ()>) {
    let table = Arc::new(Table::default());
    let (draining_tx, draining) = watch::channel(false);
    let reaper = {
        let (table, limits) = (table.clone(), limits.clone());
        let tick = limits.header_timeout.min(limits.idle_timeout).div_f64(4.0).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                table.reap(&limits);
            }
        })
    };
    tokio::pin!(shutdown);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: say so once a second, back off, go on.
                    if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!(error = %e, open = stats.open.load(Ordering::Relaxed), "accept failed");
                        last_accept_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if stats.open.load(Ordering::Relaxed) as usize >= limits.max_connections {
            match table.victim() {
                Some(id) => Table::close(&mut lock(&table.conns), id, "at_cap"),
                None => {
                    stats.refused_at_cap.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
            }
        }
        let _ = stream.set_nodelay(true);
        let id = table.next_id.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let reason = Arc::new(Mutex::new(None));
        lock(&table.conns).insert(id, Conn { since: Instant::now(), in_flight: 0, served: 0, close: close.clone(), reason: reason.clone() });
        stats.open.fetch_add(1, Ordering::Relaxed);
        let conn = connection(stream, id, app.clone(), limits.clone(), table.clone(), stats.clone(), close, reason, draining.clone());
        tokio::spawn(conn);
    }
    reaper.abort();
    drop(listener);
    let _ = draining_tx.send(true);
    // Connections hold clones of the receiver: all gone = all closed.
    drop(draining);
    draining_tx.closed().await;
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: tokio::net::TcpStream,
    id: u64,
    app: Router,
    limits: ConnLimits,
    table: Arc<Table>,
    stats: Arc<ConnStats>,
    close: Arc<Notify>,
    reason: Arc<Mutex<Option<&'static str>>>,
    mut draining: watch::Receiver<bool>,
) {
    let service = {
        let (table, stats, limits) = (table.clone(), stats.clone(), limits.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (app, table, stats, body_timeout) = (app.clone(), table.clone(), stats.clone(), limits.body_timeout);
            async move {
                if let Some(c) = lock(&table.conns).get_mut(&id) {
                    c.in_flight += 1;
                }
                let late = Arc::new(AtomicBool::new(false));
                let req = req.map(|body| Body::new(DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep(body_timeout)), late: late.clone(), timeout: body_timeout }));
                // The guard ends the request's stay in flight even if hyper drops this future.
                struct Done(Arc<Table>, u64);
                impl Drop for Done {
                    fn drop(&mut self) {
                        if let Some(c) = lock(&self.0.conns).get_mut(&self.1) {
                            c.in_flight = c.in_flight.saturating_sub(1);
                            c.served += 1;
                            c.since = Instant::now();
                        }
                    }
                }
                let _done = Done(table, id);
                let resp = app.oneshot(req).await.into_response();
                if late.load(Ordering::Relaxed) {
                    stats.closed_body_timeout.fetch_add(1, Ordering::Relaxed);
                    let detail = format!("the request body did not arrive within {} s of its header (--body-timeout); send it faster or in a smaller piece", body_timeout.as_secs_f64());
                    let mut r = ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", detail).into_response();
                    r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                    return Ok::<_, std::convert::Infallible>(r);
                }
                Ok(resp)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        stats.closed_header_timeout.fetch_add(1, Ordering::Relaxed);
                    }
                }
                break;
            }
            () = close.notified() => {
                // Re-checked here, where no request can start in between: one
                // that did start keeps its connection.
                let idle = lock(&table.conns).get(&id).is_none_or(|c| c.in_flight == 0);
                let why = lock(&reason).take();
                if idle {
                    match why {
                        Some("header_timeout") => stats.closed_header_timeout.fetch_add(1, Ordering::Relaxed),
                        Some("idle_timeout") => stats.closed_idle_timeout.fetch_add(1, Ordering::Relaxed),
                        _ => stats.closed_at_cap.fetch_add(1, Ordering::Relaxed),
                    };
                    break;
                }
            }
            changed = draining.changed(), if !shutting_down => {
                let _ = changed;
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    lock(&table.conns).remove(&id);
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// A request body that fails once its deadline passes (the handler's read
/// errors, and the response becomes a 408).
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    late: Arc<AtomicBool>,
    timeout: Duration,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(std::io::Error::other)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.late.store(true, Ordering::Relaxed);
            let msg = format!("the request body did not arrive within {} s", self.timeout.as_secs_f64());
            return Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, msg))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

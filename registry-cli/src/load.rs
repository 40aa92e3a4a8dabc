//! `zoo load`: N concurrent clients against a running `serve` for T seconds
//! (docs/BENCHMARKS.md, "Load"). Prints throughput, latency percentiles (all
//! answers, and admitted ones), status counts, connection errors, the server's
//! peak RSS, and how long the server took to be idle once the clients stopped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Base URL of a running serve (e.g. http://127.0.0.1:8000).
    pub url: String,
    /// Image posted to /v1/models/MODEL/predict.
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,
    #[arg(long, default_value = "r50-fpn-3x")]
    pub model: String,
    /// Clients sending one request after another.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub concurrency: usize,
    /// Seconds to send for (requests in flight then finish).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Seconds a client waits for one answer before giving up (counted as a timeout).
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// After a 503 with Retry-After, wait that long before the next request (as a polite client does); `ignore` retries at once.
    #[arg(long, default_value = "honour", value_parser = ["honour", "ignore"])]
    pub retry_after: String,
    /// The server's process id, for its peak RSS (Linux /proc).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Bearer token, when the server wants one.
    #[arg(long, env = "D2_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone)]
struct Sample {
    status: Option<u16>,
    seconds: f64,
    retry_after: Option<f64>,
    timed_out: bool,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Resident set size now and the peak (VmRSS, VmHWM) of `pid`, in bytes.
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A gauge from the server's /metrics.
async fn gauge(client: &reqwest::Client, base: &str, token: Option<&str>, name: &str) -> Option<f64> {
    let mut req = client.get(format!("{base}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let text = req.send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' '))).and_then(|v| v.trim().parse().ok())
}

pub async fn run(args: &LoadArgs) -> Result<()> {
    if args.concurrency == 0 || !(args.duration > 0.0) || !(args.timeout > 0.0) {
        bail!("--concurrency, --duration and --timeout must be positive");
    }
    let image = Arc::new(std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?);
    let base = args.url.trim_end_matches('/').to_string();
    let url = format!("{base}/v1/models/{}/predict", args.model);
    let client = reqwest::Client::builder().timeout(Duration::from_secs_f64(args.timeout)).pool_max_idle_per_host(args.concurrency).build()?;
    let probe = client.get(format!("{base}/livez")).send().await.with_context(|| format!("{base} does not answer: start serve first"))?;
    if !probe.status().is_success() {
        bail!("{base}/livez answered {}", probe.status());
    }
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let peak_rss = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let honour = args.retry_after == "honour";

    let bar = ProgressBar::with_draw_target(None, if args.json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));

    let mut clients = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, image, samples, token) = (client.clone(), url.clone(), image.clone(), samples.clone(), args.token.clone());
        clients.push(tokio::spawn(async move {
            while Instant::now() < end {
                let t = Instant::now();
                let mut req = client.post(&url).header("content-type", "application/octet-stream").body(image.as_ref().clone());
                if let Some(tok) = &token {
                    req = req.bearer_auth(tok);
                }
                let sample = match req.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
                        let read = r.bytes().await;
                        Sample { status: read.is_ok().then_some(status), seconds: t.elapsed().as_secs_f64(), retry_after, timed_out: read.is_err_and(|e| e.is_timeout()) }
                    }
                    Err(e) => Sample { status: None, seconds: t.elapsed().as_secs_f64(), retry_after: None, timed_out: e.is_timeout() },
                };
                let wait = sample.retry_after.filter(|_| honour && sample.status == Some(503));
                samples.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                if let Some(s) = wait {
                    let until = (Instant::now() + Duration::from_secs_f64(s)).min(end);
                    tokio::time::sleep_until(until.into()).await;
                }
            }
        }));
    }
    // Progress and RSS sampling until every client is done.
    let watcher = {
        let (samples, peak_rss, bar, pid) = (samples.clone(), peak_rss.clone(), bar.clone(), args.pid);
        tokio::spawn(async move {
            loop {
                if let Some((now, _)) = pid.and_then(rss) {
                    let mut p = peak_rss.lock().unwrap_or_else(|p| p.into_inner());
                    *p = (*p).max(now);
                }
                let s = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let ok = s.iter().filter(|x| x.status == Some(200)).count();
                let busy = s.iter().filter(|x| x.status == Some(503)).count();
                let other = s.len() - ok - busy;
                bar.set_message(format!("{} answers: {ok} ok, {busy} busy (503), {other} other", s.len()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    for c in clients {
        c.await?;
    }
    let wall = start.elapsed().as_secs_f64();
    // How long until the server has nothing running or queued any more.
    let idle_after_s = {
        let t = Instant::now();
        loop {
            let running = gauge(&client, &base, args.token.as_deref(), "d2serve_inferences_running").await;
            let waiting = gauge(&client, &base, args.token.as_deref(), "d2serve_queue_waiting").await;
            match (running, waiting) {
                (Some(r), Some(w)) if r == 0.0 && w == 0.0 => break Some(t.elapsed().as_secs_f64()),
                (None, _) | (_, None) => break None,
                _ if t.elapsed() > Duration::from_secs(600) => break None,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    watcher.abort();
    bar.finish_and_clear();
    let alive = client.get(format!("{base}/livez")).send().await.is_ok_and(|r| r.status().is_success());
    let rss_now = args.pid.and_then(rss);

    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for s in &samples {
        let k = match (s.status, s.timed_out) {
            (Some(code), _) => code.to_string(),
            (None, true) => "timeout".into(),
            (None, false) => "connection_error".into(),
        };
        *statuses.entry(k).or_default() += 1;
    }
    let mut all: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
    let mut ok: Vec<f64> = samples.iter().filter(|s| s.status == Some(200)).map(|s| s.seconds).collect();
    all.sort_by(f64::total_cmp);
    ok.sort_by(f64::total_cmp);
    let five_xx_without_retry_after = samples.iter().filter(|s| s.status.is_some_and(|c| c >= 500) && !(s.status == Some(503) && s.retry_after.is_some())).count();
    let peak = *peak_rss.lock().unwrap_or_else(|p| p.into_inner());
    let report = serde_json::json!({
        "url": url,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "wall_s": wall,
        "requests": samples.len(),
        "ok": ok.len(),
        "throughput_ok_per_s": ok.len() as f64 / wall,
        "statuses": statuses,
        "five_xx_other_than_503_with_retry_after": five_xx_without_retry_after,
        "latency_all_s": {"p50": percentile(&all, 50.0), "p95": percentile(&all, 95.0), "p99": percentile(&all, 99.0), "max": all.last()},
        "latency_ok_s": {"p50": percentile(&ok, 50.0), "p95": percentile(&ok, 95.0), "p99": percentile(&ok, 99.0), "max": ok.last()},
        "server_peak_rss_sampled_bytes": args.pid.map(|_| peak),
        "server_vm_hwm_bytes": rss_now.map(|r| r.1),
        "server_idle_after_s": idle_after_s,
        "server_alive_after": alive,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
    println!("{} clients for {:.0} s against {url} ({:.1} s wall)", args.concurrency, args.duration, wall);
    println!("  requests      {} ({} ok, {:.2} ok/s)", samples.len(), ok.len(), ok.len() as f64 / wall);
    println!("  statuses      {}", statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    println!("  latency all   p50 {} s  p95 {} s  p99 {} s  max {} s", f(percentile(&all, 50.0)), f(percentile(&all, 95.0)), f(percentile(&all, 99.0)), f(all.last().copied()));
    println!("  latency ok    p50 {} s  p95 {} s  p99 {} s  max {} s", f(percentile(&ok, 50.0)), f(percentile(&ok, 95.0)), f(percentile(&ok, 99.0)), f(ok.last().copied()));
    println!("  5xx other than 503+Retry-After: {five_xx_without_retry_after}");
    if let Some(pid) = args.pid {
        println!("  server pid {pid}: peak RSS during the run {:.0} MiB, VmHWM {}", peak as f64 / 1048576.0, rss_now.map_or("-".into(), |r| format!("{:.0} MiB", r.1 as f64 / 1048576.0)));
    }
    println!("  server idle {} s after the clients stopped; alive: {alive}", f(idle_after_s));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}

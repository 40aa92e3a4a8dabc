//! Slow and idle clients against the real `serve` under a 1024-descriptor
//! limit (a common container default): stalled connections neither exhaust
//! the descriptors nor keep the health probe from answering, and they are
//! closed within the header deadline; a body that stops arriving is a 408;
//! an idle kept-alive connection is closed after the idle deadline.

#[allow(unused_imports)]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

struct Serve {
    child: std::process::Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` started by a shell that first sets the descriptor limit (soft and hard) to `nofile`.
fn start_limited(dir: &std::path::Path, nofile: u32, extra: &str) -> Serve {
    let registry = dir.join("registry");
    std::fs::create_dir_all(&registry).unwrap();
    let port = free_port();
    let log = dir.join(format!("serve-{port}.log"));
    let cmd = format!(
        "ulimit -n {nofile} && exec '{}' --registry '{}' --cache-dir '{}' --listen 127.0.0.1:{port} {extra}",
        env!("CARGO_BIN_EXE_serve"),
        registry.display(),
        dir.join("cache").display()
    );
    let child = Command::new("bash")
        .args(["-c", &cmd])
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let s = Serve { child, addr, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while livez(&s.addr, Duration::from_secs(1)).is_none() {
        assert!(Instant::now() < deadline, "serve did not start: {}", std::fs::read_to_string(&s.log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

/// GET /livez on a fresh connection; the status line's code, or None.
fn livez(addr: &str, timeout: Duration) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The test process itself opens more than 1,100 sockets: its soft limit goes up to its hard one.
fn raise_own_limit(need: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain struct in, plain struct out.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(lim.rlim_cur as u64 >= need, "this test needs {need} descriptors; the hard limit is {}", lim.rlim_max);
}

/// Whether the server has closed `s` (EOF or reset), without waiting.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// GET `path` on a fresh connection; the body.
fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(text)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} missing: {text}"))
}

#[test]
fn stalled_connections_cannot_stop_the_server() {
    const STALLED: usize = 1100;
    // The deadline must outlast the opening of all 1,100 (1.2 s idle, 3.1 s
    // beside another test binary): the cap is only reached if the first ones
    // are still open when the 897th arrives.
    let header_timeout = 10.0;
    raise_own_limit(STALLED as u64 + 200);
    let tmp = tempfile::tempdir().unwrap();
    let s = start_limited(tmp.path(), 1024, &format!("--header-timeout {header_timeout}"));

    let opened = Instant::now();
    let mut stalled: Vec<(TcpStream, Instant, bool)> = (0..STALLED)
        .map(|i| {
            let mut c = TcpStream::connect(&s.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let at = Instant::now();
            // Half a request header, then nothing (a slowloris).
            c.write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Slow: ").unwrap();
            (c, at, false)
        })
        .collect();
    let all_open = opened.elapsed();

    // The probe answers while they stall.
    let t = Instant::now();
    assert_eq!(livez(&s.addr, Duration::from_secs(2)), Some(200), "livez with {STALLED} stalled connections");
    println!("SLOW CLIENTS: {STALLED} stalled connections opened in {:.2} s; /livez answered in {:.3} s", all_open.as_secs_f64(), t.elapsed().as_secs_f64());

    // Each is closed by the server within the header deadline of its own
    // connect (plus the reaper's tick and slack for a loaded machine).
    let last_opened = opened + all_open;
    let slack = 2.0;
    let deadline = last_opened + Duration::from_secs_f64(header_timeout + slack);
    let mut open_left = STALLED;
    while Instant::now() < deadline {
        let now = Instant::now();
        for (i, (c, at, closed)) in stalled.iter_mut().enumerate() {
            if !*closed {
                *closed = closed_by_server(c);
                let waited = now.duration_since(*at).as_secs_f64();
                assert!(*closed || waited <= header_timeout + slack, "connection {i} still open {waited:.1} s after it connected");
            }
        }
        open_left = stalled.iter().filter(|(_, _, closed)| !closed).count();
        if open_left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let closed_after = last_opened.elapsed();
    assert_eq!(open_left, 0, "stalled connections still open {:.1} s after the last was opened (header deadline {header_timeout} s)", closed_after.as_secs_f64());
    println!("SLOW CLIENTS: all {STALLED} closed by the server {:.2} s after the last was opened (header deadline {header_timeout} s)", closed_after.as_secs_f64());

    let metrics = get(&s.addr, "/metrics");
    let header = metric(&metrics, "d2serve_connections_closed_total{reason=\"header_timeout\"}");
    let at_cap = metric(&metrics, "d2serve_connections_closed_total{reason=\"at_cap\"}");
    assert!(header + at_cap >= STALLED as f64, "header {header} + at cap {at_cap}");
    assert!(at_cap > 0.0, "1,100 connections exceed the cap under 1,024 descriptors (opened in {:.2} s, deadline {header_timeout} s)", all_open.as_secs_f64());
    assert!(metric(&metrics, "d2serve_connections_open ") <= 2.0, "{metrics}");
    drop(stalled);
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("\"max_connections\":896") && log.contains("\"descriptor_limit\":1024"), "{log}");
}

#[test]
fn a_body_that_stops_arriving_is_a_408_and_idle_connections_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start_limited(tmp.path(), 4096, "--body-timeout 1 --idle-timeout 2");

    // A header promising 1,000 bytes, then 10 of them.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    c.write_all(b"POST /v1/models/r50-fpn-3x/predict HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789").unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let reply = String::from_utf8_lossy(&buf);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"error\":\"request_timeout\"") && reply.contains("--body-timeout"), "{reply}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A kept-alive connection after one answer: closed after the idle deadline.
    let mut k = TcpStream::connect(&s.addr).unwrap();
    k.write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    k.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut first = [0u8; 512];
    let n = k.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!closed_by_server(&mut k), "kept alive within the idle deadline");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(closed_by_server(&mut k), "closed after the idle deadline");

    let metrics = get(&s.addr, "/metrics");
    assert_eq!(metric(&metrics, "d2serve_connections_closed_total{reason=\"body_timeout\"}"), 1.0);
    assert_eq!(metric(&metrics, "d2serve_connections_closed_total{reason=\"idle_timeout\"}"), 1.0);
}

//! Test support: an HTTP file server on 127.0.0.1 that misbehaves on request,
//! a catalog naming a fixture checkpoint, and a runner for the real `zoo` binary.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};

/// What the server does with one request (queued; `Normal` when the queue is empty).
#[derive(Debug, Clone)]
pub enum Behavior {
    Normal,
    /// Promise the whole body, send this many bytes, then close the connection.
    DropAfter(usize),
    /// Answer with this status and no body.
    Status(u16),
    /// Serve the body with one byte changed.
    Corrupt,
    /// Send this many bytes, then go silent for the duration.
    Stall(usize, Duration),
}

pub struct FileServer {
    pub port: u16,
    behaviors: Arc<Mutex<VecDeque<Behavior>>>,
    /// (path, Range header) of every request, in order.
    pub requests: Arc<Mutex<Vec<(String, Option<String>)>>>,
}

impl FileServer {
    /// Serve `body` at every path.
    pub fn start(body: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let behaviors: Arc<Mutex<VecDeque<Behavior>>> = Arc::default();
        let requests: Arc<Mutex<Vec<(String, Option<String>)>>> = Arc::default();
        let body = Arc::new(body);
        let (b, r) = (behaviors.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (b, r, body) = (b.clone(), r.clone(), body.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &b, &r, &body);
                });
            }
        });
        Self {
            port,
            behaviors,
            requests,
        }
    }

    pub fn then(&self, b: Behavior) -> &Self {
        self.behaviors.lock().unwrap().push_back(b);
        self
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ranges(&self) -> Vec<Option<String>> {
        self.requests.lock().unwrap().iter().map(|(_, r)| r.clone()).collect()
    }
}

fn handle(
    mut stream: TcpStream,
    behaviors: &Mutex<VecDeque<Behavior>>,
    requests: &Mutex<Vec<(String, Option<String>)>>,
    body: &[u8],
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    requests.lock().unwrap().push((path, range.clone()));
    let behavior = behaviors.lock().unwrap().pop_front().unwrap_or(Behavior::Normal);
    if let Behavior::Status(code) = behavior {
        write!(stream, "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let mut data = body.to_vec();
    if let Behavior::Corrupt = behavior {
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
    }
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let (status, slice) = match start {
        Some(s) if s < data.len() => ("206 Partial Content", &data[s..]),
        Some(_) => {
            write!(stream, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        None => ("200 OK", &data[..]),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        slice.len()
    );
    if let Some(s) = start {
        head.push_str(&format!("Content-Range: bytes {s}-{}/{}\r\n", data.len() - 1, data.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    match behavior {
        Behavior::DropAfter(n) => {
            stream.write_all(&slice[..n.min(slice.len())])?;
            stream.flush()?;
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Behavior::Stall(n, d) => {
            stream.write_all(&slice[..n.min(slice.len())])?;
            stream.flush()?;
            std::thread::sleep(d);
        }
        _ => stream.write_all(slice)?,
    }
    Ok(())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The fixture checkpoint (a small zoo-format .pkl) and its zoo-style file name.
pub fn fixture_checkpoint() -> (Vec<u8>, String) {
    let bytes = std::fs::read(repo_root().join("tests/fixtures/r50_fpn/model.pkl")).unwrap();
    let md5 = hex::encode(Md5::digest(&bytes));
    (bytes, format!("model_final_{}.pkl", &md5[..6]))
}

/// A catalog (the real one's header and bases) with test entries named `keys`,
/// all pointing at `file`.
pub fn catalog_with(dir: &Path, keys: &[&str], file: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("models.toml")).unwrap();
    let mut out = text[..text.find("\n[[models]]").unwrap()].to_string();
    for (i, key) in keys.iter().enumerate() {
        let id = 1000 + i;
        out.push_str(&format!(
            "\n[[models]]\nkey = \"{key}\"\nname = \"Test {i}\"\nmodel_id = {id}\nconfig = \"{key}.yaml\"\n\
             url = \"https://dl.fbaipublicfiles.com/detectron2/{key}/{id}/{file}\"\nfile = \"{file}\"\n\
             md5_prefix = \"{}\"\nmask_ap = 1.0\ninference_s_per_im = 0.1\nbase = \"fpn\"\n",
            &file[file.len() - 10..file.len() - 4]
        ));
    }
    let path = dir.join("catalog.toml");
    std::fs::write(&path, out).unwrap();
    path
}

/// Run the real `zoo` binary with a clean environment.
pub fn zoo(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zoo"));
    cmd.args(args);
    for k in ["ZOO_CATALOG", "ZOO_CACHE", "ZOO_LOCK", "ZOO_MIRROR", "ZOO_REGISTRY", "ZOO_ARTIFACTS"] {
        cmd.env_remove(k);
    }
    cmd.env("ZOO_BACKOFF_MS", "10");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The small `r50_fpn` fixture converted by the real `zoo convert` (as
/// r50-fpn-3x, test size 320/512) into `dir/r50`; returns that artifact folder.
pub fn convert_r50_fixture(dir: &Path) -> PathBuf {
    let artifact = dir.join("r50");
    let pkl = repo_root().join("tests/fixtures/r50_fpn/model.pkl");
    let out = zoo(
        &["convert", pkl.to_str().unwrap(), "--as", "r50-fpn-3x", "--out", artifact.to_str().unwrap(), "--min-size", "320", "--max-size", "512"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    artifact
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Read exactly to EOF (helper for tests that inspect responses).
pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

//! Test support shared by this workspace's tests: a local S3 server and fake
//! artifacts. Not part of the public API.
#![doc(hidden)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::classes::ClassList;
use crate::hashing::sha256_file;
use crate::manifest::{
    FileInfo, MANIFEST_FILE, MODEL_FILE, Manifest, ResizeRule, TensorSpec, Thresholds,
};

/// A moto S3 server on 127.0.0.1, killed on drop.
///
/// Found at `$MOTO_SERVER` or `<repo>/.venv-test/bin/moto_server` (installed by
/// `scripts/setup-test-env.sh`). Missing, tests skip with a loud message,
/// unless `D2_REQUIRE_S3_TESTS=1` (as in CI), where they fail.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    pub fn start() -> Option<Self> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".venv-test/bin/moto_server"));
        if !bin.exists() {
            let msg = format!(
                "no S3 test server at {}: run scripts/setup-test-env.sh (or set MOTO_SERVER)",
                bin.display()
            );
            if std::env::var("D2_REQUIRE_S3_TESTS").as_deref() == Ok("1") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED (S3 tests): {msg}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// A client for this server with static test credentials.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("create bucket");
    }

    /// Publish the artifact folder `dir` as `key` into a registry at
    /// `s3://bucket/prefix` on this server (the bucket must exist); returns
    /// that registry URL, as `--registry` takes it.
    pub async fn publish(&self, bucket: &str, prefix: &str, key: &str, dir: &Path) -> String {
        let store = crate::store::S3Store::from_client(self.client(), bucket, prefix);
        crate::Registry::new(std::sync::Arc::new(store))
            .publish(key, dir)
            .await
            .unwrap_or_else(|e| panic!("publishing {key} to s3://{bucket}/{prefix}: {e}"));
        format!("s3://{bucket}/{prefix}")
    }

    /// What a function needs in its environment to use this server as its S3:
    /// [`Self::env`] plus `D2_S3_ENDPOINT` and `D2_S3_PATH_STYLE`.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push(("D2_S3_ENDPOINT".into(), self.endpoint.clone()));
        env.push(("D2_S3_PATH_STYLE".into(), "true".into()));
        env
    }

    /// Environment for a child process (`zoo`, `serve`) talking to this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write a stand-in artifact folder (random `model.onnx` of `size` bytes and a
/// consistent manifest) for registry tests that do not need a real graph.
pub fn fake_artifact(dir: &Path, key: &str, size: usize, seed: u64) -> Manifest {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect();
    let model = dir.join(MODEL_FILE);
    std::fs::write(&model, &bytes).unwrap();
    let tensor = |name: &str, dtype: &str, shape: &[&str]| TensorSpec {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.iter().map(|s| s.to_string()).collect(),
    };
    let manifest = Manifest {
        format: crate::manifest::MANIFEST_FORMAT,
        key: key.into(),
        name: "test artifact".into(),
        zoo_id: None,
        dataset: "cityscapes".into(),
        source: crate::manifest::SourceInfo {
            kind: crate::manifest::SourceKind::Zoo,
            file: "model_final_000000.pkl".into(),
            sha256: "0".repeat(64),
            size: 0,
        },
        artifact: FileInfo {
            file: MODEL_FILE.into(),
            sha256: sha256_file(&model).unwrap(),
            size: size as u64,
        },
        opset: 21,
        inputs: vec![tensor("image", "uint8", &["H", "W", "3"])],
        outputs: vec![tensor("boxes", "float32", &["N", "4"])],
        resize: ResizeRule {
            size: None,
            rule: "ResizeShortestEdge".into(),
            min_size: 800,
            max_size: 1333,
            interpolation: "pil-bilinear".into(),
        },
        classes: ClassList::builtin("cityscapes").unwrap().classes,
        box_ap: None,
        mask_ap: Some(1.0),
        thresholds: Thresholds {
            score: 0.05,
            nms: 0.5,
            detections_per_image: 100,
            mask: 0.5,
        },
        spec: None,
        converter_version: "test".into(),
    };
    std::fs::write(dir.join(MANIFEST_FILE), manifest.to_json()).unwrap();
    manifest
}

/// A mock Lambda Runtime API on 127.0.0.1 for driving a real function binary
/// (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:{port}`): hands out `events` one per
/// `invocation/next` (request ids `req-0`, `req-1`, ...; deadline 60 s ahead) and
/// records every response or error post as (path, JSON body).
pub struct MockLambdaRuntime {
    pub port: u16,
    pub responses: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl MockLambdaRuntime {
    pub fn start(function: &str, events: Vec<serde_json::Value>) -> Self {
        use std::collections::VecDeque;
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::{Arc, Mutex};

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let queue = Arc::new(Mutex::new(events.into_iter().enumerate().collect::<VecDeque<_>>()));
        let responses: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
        let r = responses.clone();
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{function}");
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (queue, r, arn) = (queue.clone(), r.clone(), arn.clone());
                std::thread::spawn(move || {
                    // Keep-alive: the runtime client reuses its connection.
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    let mut s = s;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut len = 0;
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0u8; len];
                        let _ = reader.read_exact(&mut body);
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        if path.ends_with("/invocation/next") {
                            let next = queue.lock().unwrap().pop_front();
                            let Some((i, ev)) = next else {
                                // No more events: hold the long poll, as Lambda does.
                                std::thread::sleep(Duration::from_secs(600));
                                return;
                            };
                            let payload = ev.to_string();
                            let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 60_000;
                            let _ = write!(
                                s,
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{i}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: {arn}\r\nContent-Length: {}\r\n\r\n{payload}",
                                payload.len()
                            );
                        } else {
                            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                            r.lock().unwrap().push((path, v));
                            let _ = write!(s, "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{{}}");
                        }
                    }
                });
            }
        });
        Self { port, responses }
    }
}

/// AWS's Lambda Runtime Interface Emulator (`aws-lambda-rie`, the static binary
/// AWS ships in the `aws-sam-cli` wheel) running a function's bootstrap as
/// Lambda runs a `provided.al2023` one: its own Runtime API, Lambda's payload
/// limits, its INIT/INVOKE reports in the log. Killed on drop.
///
/// Found at `$AWS_LAMBDA_RIE` or `<repo>/.venv-test/bin/aws-lambda-rie`
/// (installed by `scripts/setup-test-env.sh`). Missing, tests skip with a loud
/// message, unless `D2_REQUIRE_RIE=1` (as in CI), where they fail.
pub struct LambdaRie {
    child: Child,
    pub invoke_url: String,
    /// The emulator's and the function's output (stdout and stderr).
    pub log: PathBuf,
}

/// One invocation as the emulator answered it.
#[derive(Debug)]
pub struct Invocation {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Invocation {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("invocation body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body[..self.body.len().min(2000)])))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl LambdaRie {
    /// Start the emulator with `command` as the function's bootstrap (program
    /// and arguments) and `env` as the function's environment.
    pub fn start(command: &[&std::ffi::OsStr], env: &[(String, String)], log: &Path) -> Option<Self> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = std::env::var_os("AWS_LAMBDA_RIE").map(PathBuf::from).unwrap_or_else(|| repo.join(".venv-test/bin/aws-lambda-rie"));
        if !bin.exists() {
            let msg = format!("no Lambda Runtime Interface Emulator at {}: run scripts/setup-test-env.sh (or set AWS_LAMBDA_RIE)", bin.display());
            if std::env::var("D2_REQUIRE_RIE").as_deref() == Ok("1") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED (Lambda emulator tests): {msg}");
            return None;
        }
        let (invoke_port, api_port) = (free_port(), free_port());
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(&bin)
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{invoke_port}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{api_port}"))
            .args(command)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", invoke_port)).is_err() {
            assert!(Instant::now() < deadline, "the Lambda emulator did not listen on port {invoke_port}: {}", std::fs::read_to_string(log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, invoke_url: format!("http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations"), log: log.to_path_buf() })
    }

    /// Invoke the function with `event`, as Lambda's Invoke API does (synchronous, buffered).
    pub async fn invoke(&self, event: &serde_json::Value) -> Invocation {
        let r = reqwest::Client::new()
            .post(&self.invoke_url)
            .body(event.to_string())
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoking through the emulator: {e}\n{}", self.log_text()));
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap().to_vec();
        Invocation { status, body }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LambdaRie {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `Environment.Variables` of `resource` in `infra/template.yaml`, as the
/// function gets them: each value the template computes (`!Ref`, `!Sub`), and
/// any other the test must move (a cache folder), comes from `set` by name; a
/// computed value missing from `set` fails the test, so the template cannot
/// grow a variable these tests do not give.
pub fn template_env(resource: &str, set: &[(&str, &str)]) -> Vec<(String, String)> {
    let text = template_text();
    let body = template_block(&text, resource);
    let vars = body.iter().position(|l| l.trim() == "Variables:").unwrap_or_else(|| panic!("{resource} has no Environment.Variables"));
    let mut lines = body[vars + 1..].iter().copied().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let first = lines.next().expect("a variable");
    let depth = indent_of(first);
    let mut out = Vec::new();
    for line in std::iter::once(first).chain(lines) {
        let t = line.trim();
        if indent_of(line) != depth {
            break;
        }
        let (k, v) = t.split_once(':').unwrap_or_else(|| panic!("unexpected line in {resource}'s Variables: {line}"));
        let v = v.trim();
        let value = match set.iter().find(|(name, _)| *name == k) {
            Some((_, given)) => given.to_string(),
            None if v.starts_with('!') => panic!("infra/template.yaml computes {k} ({v}) for {resource}: give the test's value"),
            None => v.trim_matches('"').to_string(),
        };
        out.push((k.to_string(), value));
    }
    out
}

fn template_text() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(repo.join("infra/template.yaml")).unwrap()
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// The lines of the top-level entry `name` (a resource or a parameter): from
/// its name to the next line indented as little.
fn template_block<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| *l != format!("  {name}:"));
    assert!(lines.next().is_some(), "no {name} in infra/template.yaml");
    lines.take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || indent_of(l) > 2).collect()
}

/// A scalar property of `resource`'s `Properties` in `infra/template.yaml`
/// (`MemorySize`, `Timeout`), with `!Ref Parameter` read as that parameter's
/// `Default`: what Lambda gives the function when the stack takes defaults.
pub fn template_property(resource: &str, property: &str) -> String {
    let text = template_text();
    let body = template_block(&text, resource);
    let line = body
        .iter()
        .find(|l| indent_of(l) == 6 && l.trim_start().starts_with(&format!("{property}:")))
        .unwrap_or_else(|| panic!("{resource} has no {property} in infra/template.yaml"));
    let value = line.split_once(':').unwrap().1.trim();
    match value.strip_prefix("!Ref ") {
        Some(parameter) => {
            let param = template_block(&text, parameter.trim());
            let default = param
                .iter()
                .find_map(|l| l.trim().strip_prefix("Default:"))
                .unwrap_or_else(|| panic!("parameter {parameter} has no Default"));
            default.trim().trim_matches('"').to_string()
        }
        None => value.trim_matches('"').to_string(),
    }
}

//! The container images (infra/*.Dockerfile) against the code: ONNX Runtime
//! goes where the engine looks for it (beside the binaries), the binaries load
//! it from there, the build context copies what exists and what cargo needs,
//! and the Lambda bootstrap runs what the template names.

mod common;

use std::path::Path;

use common::*;

struct Copy {
    from: Option<String>,
    sources: Vec<String>,
    dest: String,
}

/// COPY instructions of the last stage and of every stage, and the RUN lines of stage `name`.
fn parse(dockerfile: &str) -> (Vec<Copy>, Vec<Copy>, String) {
    let text = std::fs::read_to_string(repo().join(dockerfile)).unwrap();
    // Join continuation lines.
    let text = text.replace("\\\n", " ");
    let (mut last, mut all) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("FROM") => last.clear(),
            Some("COPY") => {
                let mut args: Vec<String> = words.map(str::to_string).collect();
                let from = args.iter().position(|a| a.starts_with("--from=")).map(|i| args.remove(i)[7..].to_string());
                args.retain(|a| !a.starts_with("--"));
                let dest = args.pop().unwrap();
                let c = Copy { from, sources: args, dest };
                last.push(Copy { from: c.from.clone(), sources: c.sources.clone(), dest: c.dest.clone() });
                all.push(c);
            }
            _ => {}
        }
    }
    (last, all, text)
}

fn dir_of(dest: &str) -> String {
    dest.trim_end_matches('/').to_string()
}

#[test]
fn dockerfiles_put_onnx_runtime_beside_the_binaries() {
    let engine = std::fs::read_to_string(repo().join("crates/engine/src/runtime.rs")).unwrap();
    assert!(engine.contains("beside the running"), "the engine no longer documents the beside-the-binary rule: update the Dockerfiles");
    for (file, ort_dir, binaries) in [
        ("infra/lambda.Dockerfile", "third_party/ort/", &["serve", "batch"][..]),
        ("infra/gpu.Dockerfile", "third_party/ort-gpu/", &["serve"][..]),
    ] {
        let (last, _, text) = parse(file);
        let gpu = text.contains("install-ort.sh --gpu");
        assert_eq!(gpu, ort_dir.contains("gpu"), "{file}: the ort stage and the copied folder disagree");
        let ort = last.iter().find(|c| c.from.as_deref() == Some("ort")).unwrap_or_else(|| panic!("{file}: no COPY --from=ort"));
        assert!(ort.sources.iter().all(|s| s.ends_with(ort_dir)), "{file}: copies {:?}, install-ort.sh writes {ort_dir}", ort.sources);
        let bins = last.iter().find(|c| c.from.as_deref() == Some("build")).unwrap_or_else(|| panic!("{file}: no COPY --from=build"));
        for b in binaries {
            assert!(bins.sources.iter().any(|s| s.ends_with(&format!("target/release/{b}"))), "{file}: {b} is not copied");
        }
        assert_eq!(dir_of(&ort.dest), dir_of(&bins.dest), "{file}: ONNX Runtime must sit beside the binaries, where the engine looks");
    }
    // The Lambda image's OpenVINO sits in openvino/ beside the binaries (the engine's second place to look).
    let openvino = std::fs::read_to_string(repo().join("crates/engine/src/openvino.rs")).unwrap();
    assert!(openvino.contains("dirs.push(dir.join(\"openvino\"))"), "the engine no longer looks in openvino/ beside its binary: update lambda.Dockerfile");
    let (last, _, text) = parse("infra/lambda.Dockerfile");
    assert!(text.contains("RUN scripts/install-openvino.sh"), "lambda.Dockerfile does not install OpenVINO");
    let ov = last.iter().find(|c| c.sources.iter().any(|s| s.ends_with("third_party/openvino/"))).expect("lambda.Dockerfile copies no third_party/openvino/");
    let bins = last.iter().find(|c| c.from.as_deref() == Some("build")).unwrap();
    assert_eq!(dir_of(&ov.dest), format!("{}/openvino", dir_of(&bins.dest)), "OpenVINO must sit in openvino/ beside the binaries");
    // The GPU image starts serve from that folder.
    let (last, _, text) = parse("infra/gpu.Dockerfile");
    let dir = dir_of(&last.iter().find(|c| c.from.as_deref() == Some("build")).unwrap().dest);
    assert!(text.contains(&format!("ENTRYPOINT [\"{dir}/serve\"]")), "gpu.Dockerfile's ENTRYPOINT is not {dir}/serve");
}

#[test]
fn the_lambda_bootstrap_runs_the_binaries_the_template_names() {
    let (last, _, _) = parse("infra/lambda.Dockerfile");
    let dir = dir_of(&last.iter().find(|c| c.from.as_deref() == Some("build")).unwrap().dest);
    let boot = last.iter().find(|c| c.dest == "/var/runtime/bootstrap").expect("lambda.Dockerfile installs no /var/runtime/bootstrap");
    let script = std::fs::read_to_string(repo().join(&boot.sources[0])).unwrap();
    // Lambda sets LAMBDA_TASK_ROOT to /var/task; the emulator tests lay the task out elsewhere.
    assert!(script.contains(&format!("exec \"${{LAMBDA_TASK_ROOT:-{dir}}}/${{_HANDLER")), "the bootstrap does not run binaries from {dir}");
    let template = std::fs::read_to_string(repo().join("infra/template.yaml")).unwrap();
    for handler in ["serve", "batch"] {
        assert!(template.contains(&format!("Command: [{handler}]")), "template.yaml has no function with Command [{handler}]");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(repo().join(&boot.sources[0])).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "the bootstrap must be executable (COPY keeps the mode)");
    }
    let out = std::process::Command::new("sh").arg(repo().join(&boot.sources[0])).env("_HANDLER", "nope").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve or batch"));
}

#[test]
fn build_contexts_copy_what_exists_and_every_workspace_member() {
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let members_line = cargo.lines().find(|l| l.trim_start().starts_with("members")).expect("workspace members");
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(members.contains(&"functions/batch"), "{members:?}");
    for file in ["infra/lambda.Dockerfile", "infra/gpu.Dockerfile"] {
        let (_, all, _) = parse(file);
        let context: Vec<&str> = all.iter().filter(|c| c.from.is_none()).flat_map(|c| c.sources.iter().map(String::as_str)).collect();
        for src in &context {
            assert!(repo().join(src).exists(), "{file} copies {src}, which does not exist");
        }
        for m in &members {
            let covered = context.iter().any(|s| Path::new(m).starts_with(s.trim_end_matches('/')));
            assert!(covered, "{file}: workspace member {m} is not copied into the build (cargo cannot load the workspace)");
        }
        for needed in ["Cargo.lock", "models.toml"] {
            assert!(context.contains(&needed), "{file} does not copy {needed}");
        }
    }
}

/// The image layout in miniature: the batch binary and the library in one folder.
#[test]
fn the_binary_loads_onnx_runtime_from_beside_itself() {
    if !ort_available() {
        return;
    }
    let lib = d2serve_engine::runtime::find_library().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let task = tmp.path().join("task");
    std::fs::create_dir(&task).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_batch"), task.join("batch")).unwrap();
    let copied = task.join(lib.file_name().unwrap());
    std::fs::copy(&lib, &copied).unwrap();
    let out = std::process::Command::new(task.join("batch")).arg("--check-runtime").env_remove("ORT_DYLIB_PATH").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["onnxruntime"].as_str().map(Path::new), Some(copied.as_path()), "the library beside the binary must win");
    // OpenVINO in openvino/ beside the binary, as the Lambda image lays it out.
    if let Ok(ov) = d2serve_engine::openvino::load_library() {
        let dir = task.join("openvino");
        std::fs::create_dir(&dir).unwrap();
        for f in std::fs::read_dir(ov.parent().unwrap()).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let out = std::process::Command::new(task.join("batch")).arg("--check-runtime").env_remove("ORT_DYLIB_PATH").env_remove("OPENVINO_LIB_DIR").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["openvino"].as_str().map(Path::new), Some(dir.join(ov.file_name().unwrap()).as_path()), "{v}");
    }
}

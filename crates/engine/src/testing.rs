//! Test support shared by this workspace's tests. Not part of the public API.

/// A valid PNG (correct CRCs) whose header claims `width` x `height` RGB and whose
/// data is a few bytes: a decompression bomb as the header-only size check sees it.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, kind_and_data: &[u8]) {
        let mut crc = flate2::Crc::new();
        crc.update(kind_and_data);
        png.extend_from_slice(&(kind_and_data.len() as u32 - 4).to_be_bytes());
        png.extend_from_slice(kind_and_data);
        png.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, &ihdr);
    // A tiny IDAT: the header is all a decoder needs to read.
    chunk(&mut png, b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01");
    chunk(&mut png, b"IEND");
    png
}

/// Is the ONNX Runtime library there for tests that need it? Missing, a test skips
/// loudly, or fails when `D2_REQUIRE_ORT=1` (as `scripts/test.sh` sets).
pub fn ort_available() -> bool {
    available(crate::runtime::find_library().map(|_| ()), "D2_REQUIRE_ORT", "ONNX Runtime")
}

/// Is the OpenVINO runtime there for tests that need it? Missing, a test skips
/// that runtime loudly, or fails when `D2_REQUIRE_OPENVINO=1` (as `scripts/test.sh` sets).
pub fn openvino_available() -> bool {
    available(crate::openvino::load_library().map(|_| ()), "D2_REQUIRE_OPENVINO", "the OpenVINO runtime")
}

/// A runtime library's lookup as tests see it: found, or skipped with a line
/// saying so, or a failure where `require_var=1` says it must be there (CI).
fn available(found: Result<(), impl std::fmt::Display>, require_var: &str, what: &str) -> bool {
    match found {
        Ok(()) => true,
        Err(e) => {
            assert!(std::env::var(require_var).as_deref() != Ok("1"), "{e}");
            eprintln!("SKIPPED (needs {what}): {e}");
            false
        }
    }
}

/// A Lambda task folder laid out as `infra/lambda.Dockerfile` lays out
/// `/var/task`: the function binaries and ONNX Runtime's libraries side by
/// side (the binary finds the library beside itself, as in the image). Returns
/// `dir`; run `infra/lambda-bootstrap.sh` with `LAMBDA_TASK_ROOT=dir` and
/// `_HANDLER=<binary name>`, as Lambda runs the image's bootstrap.
pub fn lambda_task(dir: &std::path::Path, binaries: &[&std::path::Path]) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let lib = crate::runtime::find_library().expect("ONNX Runtime for the Lambda task folder");
    let lib_dir = lib.parent().unwrap();
    let mut files: Vec<std::path::PathBuf> = binaries.iter().map(|b| b.to_path_buf()).collect();
    for e in std::fs::read_dir(lib_dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("libonnxruntime") {
            files.push(e.path());
        }
    }
    for f in files {
        let to = dir.join(f.file_name().unwrap());
        // A hard link where the folders share a file system: the binaries are tens of MB.
        if std::fs::hard_link(&f, &to).is_err() {
            std::fs::copy(&f, &to).unwrap();
        }
    }
    dir.to_path_buf()
}

/// `infra/lambda-bootstrap.sh`, the image's Lambda bootstrap.
pub fn lambda_bootstrap() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/lambda-bootstrap.sh")
}

/// `resource` of `infra/template.yaml` (ServeFunction, BatchFunction) run by
/// AWS's Runtime Interface Emulator as Lambda runs it: a task folder under
/// `dir` holding `binary` and ONNX Runtime, the image's bootstrap with
/// `_HANDLER` = the binary's name, the template's environment (`set` gives
/// what it computes, see `template_env`) plus `extra_env` (a local S3's), and
/// the memory size and timeout the template gives the function. `None` when
/// the emulator is not installed (and not required).
pub fn function_under_rie(
    resource: &str,
    binary: &std::path::Path,
    dir: &std::path::Path,
    set: &[(&str, &str)],
    extra_env: Vec<(String, String)>,
) -> Option<d2serve_registry::testing::LambdaRie> {
    use d2serve_registry::testing::{LambdaRie, template_env, template_property};
    let task = lambda_task(&dir.join("task"), &[binary]);
    let handler = binary.file_name().unwrap().to_string_lossy().to_string();
    let mut env = template_env(resource, set);
    env.extend(extra_env);
    env.extend([
        ("_HANDLER".to_string(), handler.clone()),
        ("LAMBDA_TASK_ROOT".into(), task.display().to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), handler),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), template_property(resource, "MemorySize")),
        ("AWS_LAMBDA_FUNCTION_TIMEOUT".into(), template_property(resource, "Timeout")),
    ]);
    let bootstrap = lambda_bootstrap();
    LambdaRie::start(&[bootstrap.as_os_str()], &env, &dir.join("rie.log"))
}

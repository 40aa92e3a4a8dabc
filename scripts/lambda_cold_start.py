#!/usr/bin/env python3
"""Lambda cold start of `serve`, split, under AWS's Runtime Interface Emulator.

    lambda_cold_start.py --artifact DIR --image PNG [--serve BIN] [--runs N] [--runtime onnxruntime|openvino|auto]

Each run is a fresh function (a new emulator, a new process, an empty /tmp cache), as a
Lambda cold start is: `infra/lambda-bootstrap.sh` over a task folder laid out as the
image's /var/task (serve + ONNX Runtime + OpenVINO in openvino/), the environment `infra/template.yaml` gives
ServeFunction, the registry on a local S3 server (moto) holding DIR published with
`zoo publish`. Invocations: a Function URL GET of the page (Lambda's init phase and
a first invoke that loads nothing), then a native predict of PNG (the first model
load: fetch from S3, sha256 verify, ONNX Runtime session; then the inference), then
the same predict warm. Prints the median of each figure over the runs, and the
function's peak resident memory (VmHWM). Needs scripts/setup-test-env.sh (.venv-test:
moto, PyYAML, aws-lambda-rie; run it with .venv-test/bin/python) and a built `serve` and `zoo`.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from cfn_template import function_env, function_property, template

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv-test/bin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def url_event(method, path, query="", body=b"", content_type="text/plain"):
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"content-type": content_type, "host": "x.lambda-url.us-east-1.on.aws"},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "bench"},
                           "accountId": "123456789012", "apiId": "x", "domainName": "x.lambda-url.us-east-1.on.aws", "requestId": "r",
                           "routeKey": "$default", "stage": "$default", "time": "07/Dec/2026:00:00:00 +0000", "timeEpoch": 0},
        "body": base64.b64encode(body).decode() if body else "", "isBase64Encoded": bool(body),
    }


def one_cold_start(a, reg_env, endpoint, task, work, n):
    cache = os.path.join(work, f"tmp-{n}")
    env = {"PATH": os.environ["PATH"], **reg_env}
    tpl = template()
    env.update(function_env(tpl, "ServeFunction", {"D2_REGISTRY": "s3://models/registry", "D2_DEFAULT_MODEL": a.key,
                                                   "D2_CACHE_DIR": cache, "D2_MODEL_ROLLOUT": "1"}))
    env["D2_RUNTIME"] = a.runtime
    env.update(D2_S3_ENDPOINT=endpoint, D2_S3_PATH_STYLE="true", _HANDLER="serve", LAMBDA_TASK_ROOT=task,
               AWS_LAMBDA_FUNCTION_NAME="serve",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE=function_property(tpl, "ServeFunction", "MemorySize"),
               AWS_LAMBDA_FUNCTION_TIMEOUT=function_property(tpl, "ServeFunction", "Timeout"))
    port, api = free_port(), free_port()
    log_path = os.path.join(work, f"rie-{n}.log")
    log = open(log_path, "w")
    rie = subprocess.Popen([os.path.join(VENV, "aws-lambda-rie"), "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
                            "--runtime-api-address", f"127.0.0.1:{api}", os.path.join(REPO, "infra/lambda-bootstrap.sh")],
                           env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, rie, "the emulator")
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"

        def invoke(ev):
            t = time.time()
            r = json.loads(urllib.request.urlopen(urllib.request.Request(url, json.dumps(ev).encode()), timeout=300).read())
            return r, time.time() - t

        page, page_s = invoke(url_event("GET", "/"))
        assert page.get("statusCode") == 200, page
        png = open(a.image, "rb").read()
        first, first_s = invoke(url_event("POST", f"/v1/models/{a.key}/predict", "", png, "image/png"))
        assert first.get("statusCode") == 200, str(first)[:500]
        warm, warm_s = invoke(url_event("POST", f"/v1/models/{a.key}/predict", "", png, "image/png"))
        # The function's peak resident memory: serve is the emulator's child.
        pid = subprocess.run(["pgrep", "-P", str(rie.pid)], capture_output=True, text=True).stdout.split()
        hwm = None
        for p in pid:
            try:
                for line in open(f"/proc/{p}/status"):
                    if line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) / 1024
            except OSError:
                pass
    finally:
        rie.kill()
        rie.wait()
        log.close()
    text = open(log_path).read()
    init_ms = float(text.split("INIT REPORT(durationMs: ")[1].split(")")[0])
    reports = [l for l in text.splitlines() if l.startswith("REPORT RequestId")]
    dur = lambda l: float(l.split("\tDuration: ")[1].split(" ms")[0])
    loaded = next(json.loads(l)["fields"] for l in text.splitlines() if l.startswith("{") and '"model loaded"' in l)
    timing = {k: float(v) for k, v in (p.split(";dur=") for p in first["headers"]["server-timing"].split(", "))}
    warm_timing = {k: float(v) for k, v in (p.split(";dur=") for p in warm["headers"]["server-timing"].split(", "))}
    return {
        "init_ms": init_ms, "page_invoke_ms": dur(reports[0]), "first_predict_invoke_ms": dur(reports[1]),
        "fetch_ms": loaded["fetch_s"] * 1e3, "verify_ms": loaded["verify_s"] * 1e3, "session_ms": loaded["session_s"] * 1e3,
        "first_decode_ms": timing.get("decode", 0), "first_infer_ms": timing.get("infer", 0), "first_encode_ms": timing.get("encode", 0),
        "warm_predict_invoke_ms": dur(reports[2]), "warm_infer_ms": warm_timing.get("infer", 0),
        "client_first_predict_s": first_s, "peak_rss_mb": hwm, "artifact_bytes": loaded["bytes"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True, help="a converted artifact folder (model.onnx + manifest.json)")
    ap.add_argument("--key", default="COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", help="the registry key to publish it as")
    ap.add_argument("--image", default=os.path.join(REPO, "tests/fixtures/images/astronaut.png"))
    ap.add_argument("--serve", default=os.path.join(REPO, "target/debug/serve"))
    ap.add_argument("--zoo", default=os.path.join(REPO, "target/debug/zoo"))
    ap.add_argument("--ort", default=os.path.join(REPO, "third_party/ort"))
    ap.add_argument("--openvino", default=os.path.join(REPO, "third_party/openvino"))
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino", "auto"], help="D2_RUNTIME of the function")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="d2serve-coldstart-")
    task = os.path.join(work, "task")
    os.makedirs(task)
    for f in [a.serve] + [os.path.join(a.ort, n) for n in os.listdir(a.ort) if n.startswith("libonnxruntime")]:
        shutil.copy(f, task)
    if os.path.isdir(a.openvino):
        shutil.copytree(a.openvino, os.path.join(task, "openvino"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    moto = subprocess.Popen([os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, moto, "moto")
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/models", method="PUT")).read()
        subprocess.run([a.zoo, "publish", a.key, "--artifact", a.artifact, "--to", "s3://models/registry", "--s3-endpoint", endpoint,
                        "--s3-path-style"], env=dict(os.environ, **creds), check=True, capture_output=True)
        runs = [one_cold_start(a, creds, endpoint, task, work, n) for n in range(a.runs)]
    finally:
        moto.kill()
        moto.wait()
    print(json.dumps({"runtime": a.runtime, "artifact": a.artifact, "artifact_bytes": runs[0]["artifact_bytes"], "image": os.path.basename(a.image), "runs": a.runs,
                      "median": {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0] if k not in ("artifact_bytes",) and runs[0][k] is not None},
                      "each": runs}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

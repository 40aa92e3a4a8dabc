#!/usr/bin/env python3
"""Execute infra/template.yaml's Step Functions state machine for real, in ministack.

    state_machine_check.py --ministack BIN --batch BIN --zoo BIN [--keep DIR]

ministack (a local AWS emulator, pinned to 1.5.33; ../shared/docs/local-aws-emulators.md
has the survey) runs on 127.0.0.1 only. It executes a Distributed Map with an S3
listObjectsV2 ItemReader, and runs a `provided.al2023` Zip function's `bootstrap` as a
local process behind its own Lambda Runtime API: here the real `batch` binary.

What runs, each checked:
  1. the template's state machine over a prefix (four images, one corrupt, a text file,
     a key outside the prefix): SUCCEEDED, every image annotated, the corrupt one
     reported in a run summary, each child given the AWS batch envelope;
  2. the same with a model that is not published: FAILED with the Map's
     States.ExceedToleratedFailureThreshold, each child's error UnknownModel;
  3. the template's ItemProcessor (the child state machine, verbatim) over a batch of
     three images with no time budget (D2_SAFETY_MARGIN = the function's timeout): each
     invocation annotates one image and the Continue loop goes round until none remain;
  4. the template's EventBridge schedule target, fired by ministack's scheduler.

ministack does not implement four things the template's Map uses, so the state machine
is created with exactly these edits to its Map state (the EMULATOR SHIM; this script
asserts that nothing else differs from the template):
  - ItemBatcher -> ItemSelector giving the same envelope for one item per batch;
  - MaxConcurrencyPath -> MaxConcurrency 1;
  - ToleratedFailurePercentagePath -> ToleratedFailurePercentage (the template's default);
  - ResultWriter removed.
So ItemBatcher grouping, the two ...Path fields and ResultWriter stay unexecuted here
(infra/README.md says so).
"""
import argparse
import copy
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

import boto3

from cfn_template import function_env, template

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x"
SHIM_KEYS = {"ItemBatcher", "ItemSelector", "MaxConcurrencyPath", "MaxConcurrency",
             "ToleratedFailurePercentagePath", "ToleratedFailurePercentage", "ResultWriter"}
FAILED = []


def check(ok, what, detail=""):
    print(("ok    " if ok else "FAIL  ") + what + (f": {detail}" if detail and not ok else ""), flush=True)
    if not ok:
        FAILED.append(what)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def substitute(definition, values):
    text = json.dumps(definition)
    for k, v in values.items():
        text = text.replace("${" + k + "}", v)
    assert "${" not in text, f"an unsubstituted ${{...}} is left: {text[text.index('${'):][:60]}"
    return json.loads(text)


def shim(definition, tolerated):
    """The four edits ministack needs, to the Map state only; asserted to be the only difference."""
    d = copy.deepcopy(definition)
    m = d["States"]["AnnotatePrefix"]
    assert not ({"ItemSelector", "MaxConcurrency", "ToleratedFailurePercentage"} & m.keys()), "the template changed: review the shim"
    batcher = m.pop("ItemBatcher")
    m["ItemSelector"] = {"Items.$": "States.Array($$.Map.Item.Value)", "BatchInput": batcher["BatchInput"]}
    m.pop("MaxConcurrencyPath")
    m["MaxConcurrency"] = 1
    m.pop("ToleratedFailurePercentagePath")
    m["ToleratedFailurePercentage"] = tolerated
    m.pop("ResultWriter")

    def strip(x):
        x = copy.deepcopy(x)
        for k in SHIM_KEYS:
            x["States"]["AnnotatePrefix"].pop(k, None)
        return x

    assert strip(d) == strip(definition), "the shim changed more than the Map state's four fields"
    return d


def wait_execution(sfn, arn, timeout=300):
    deadline = time.time() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        if time.time() > deadline:
            raise TimeoutError(f"execution {arn} still RUNNING after {timeout} s")
        time.sleep(0.5)


def keys(s3, bucket, prefix):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def summaries(s3, bucket, prefix):
    return [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys(s3, bucket, prefix + "_runs/") if k.endswith(".json")]


def bootstrap_zip(binary):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(binary, "rb") as f:
            z.writestr(info, f.read())
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ministack", required=True)
    ap.add_argument("--batch", required=True, help="the batch binary, run as the function's bootstrap")
    ap.add_argument("--zoo", required=True, help="zoo, to publish the demo's r50-fpn-3x into the registry bucket")
    ap.add_argument("--artifacts", default=os.path.join(REPO, "artifacts"))
    a = ap.parse_args()

    tpl = template()
    params = {k: str(v.get("Default", "")) for k, v in tpl["Parameters"].items()}
    work = tempfile.mkdtemp(prefix="d2serve-sfn-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    env = dict(os.environ, BIND_HOST="127.0.0.1", GATEWAY_PORT=str(port), AWS_ENDPOINT_URL=endpoint, MINISTACK_REGION="us-east-1", **creds)
    log = open(os.path.join(work, "ministack.log"), "w")
    ms = subprocess.Popen([a.ministack], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=2)
                break
            except OSError:
                if ms.poll() is not None or time.time() > deadline:
                    sys.exit(f"ministack did not start: {open(log.name).read()[-3000:]}")
                time.sleep(0.2)
        run(a, tpl, params, endpoint, creds, work)
    finally:
        # The bootstraps are ministack's children: stop the whole group.
        try:
            os.killpg(ms.pid, signal.SIGTERM)
            ms.wait(timeout=10)
        except Exception:
            os.killpg(ms.pid, signal.SIGKILL)
        log.close()
    if FAILED:
        print(f"state machine check: {len(FAILED)} failed ({', '.join(FAILED)}); ministack's log: {log.name}")
        return 1
    print("state machine check: every check passed")
    return 0


def run(a, tpl, params, endpoint, creds, work):
    client = lambda name: boto3.client(name, endpoint_url=endpoint, region_name="us-east-1",
                                       aws_access_key_id="test", aws_secret_access_key="test")
    s3, lam, sfn, sched = client("s3"), client("lambda"), client("stepfunctions"), client("scheduler")
    for b in ("data", "registry", "deploy"):
        s3.create_bucket(Bucket=b)

    # The registry bucket holds the demo's r50-fpn-3x, published as a user publishes it.
    pub = subprocess.run([a.zoo, "--artifacts", a.artifacts, "publish", "r50-fpn-3x", "--to", "s3://registry/registry",
                          "--s3-endpoint", endpoint, "--s3-path-style"], env=dict(os.environ, **creds), capture_output=True, text=True)
    if pub.returncode != 0:
        sys.exit(f"zoo publish failed (run scripts/demo.sh first: it converts r50-fpn-3x): {pub.stderr}")

    images = os.path.join(REPO, "tests/fixtures/images")
    good = ["astronaut.png", "chelsea.png", "coffee.jpg", "sub/coffee.png"]
    for k in good:
        with open(os.path.join(images, os.path.basename(k)), "rb") as f:
            s3.put_object(Bucket="data", Key="incoming/" + k, Body=f.read())
    s3.put_object(Bucket="data", Key="incoming/broken.jpg", Body=b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"Z" * 300)
    s3.put_object(Bucket="data", Key="incoming/notes.txt", Body=b"not an image")
    s3.put_object(Bucket="data", Key="elsewhere/astronaut.png", Body=open(os.path.join(images, "astronaut.png"), "rb").read())

    # The function: `batch` as a provided.al2023 Zip, the template's environment.
    s3.put_object(Bucket="deploy", Key="batch.zip", Body=bootstrap_zip(a.batch))
    props = tpl["Resources"]["BatchFunction"]["Properties"]

    def create_function(name, timeout, extra):
        env = function_env(tpl, "BatchFunction", {
            "D2_REGISTRY": "s3://registry/registry", "D2_DEFAULT_MODEL": params["DefaultModel"],
            "D2_CACHE_DIR": os.path.join(work, name + "-cache"), "D2_MODEL_ROLLOUT": params["ModelRollout"], **extra})
        env.update(D2_S3_ENDPOINT=endpoint, D2_S3_PATH_STYLE="true")
        f = lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", PackageType="Zip",
                                Role="arn:aws:iam::000000000000:role/batch", Code={"S3Bucket": "deploy", "S3Key": "batch.zip"},
                                Timeout=timeout, MemorySize=int(params["BatchMemorySize"]), Environment={"Variables": env})
        return f["FunctionArn"]

    arn = create_function("batch", int(props["Timeout"]), {})

    # 1. The template's state machine, with the shim, over incoming/.
    sm = tpl["Resources"]["AnnotatePrefixStateMachine"]["Properties"]
    subs = {"Bucket": "data", "InputPrefix": params["InputPrefix"], "OutputPrefix": params["OutputPrefix"], "BatchFunctionArn": arn,
            "DefaultModel": params["DefaultModel"], "ConfThreshold": params["ConfThreshold"], "MaxItemsPerBatch": params["MapMaxItemsPerBatch"],
            "MaxConcurrency": params["MapMaxConcurrency"], "ToleratedFailurePercentage": params["MapToleratedFailurePercentage"]}
    assert set(subs) == set(sm["DefinitionSubstitutions"]), f"the template's substitutions changed: {sorted(sm['DefinitionSubstitutions'])}"
    definition = shim(substitute(sm["Definition"], subs), int(params["MapToleratedFailurePercentage"]))
    machine = sfn.create_state_machine(name="d2serve-annotate-prefix", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::000000000000:role/sfn", type="STANDARD")["stateMachineArn"]
    t = time.time()
    ex = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"settings": {"conf_thres": 0.3}}))["executionArn"]
    d = wait_execution(sfn, ex)
    print(f"      execution over incoming/: {d['status']} in {time.time() - t:.1f} s")
    check(d["status"] == "SUCCEEDED", "the template's state machine annotates the prefix", d.get("error", "") + " " + d.get("cause", "")[:500])
    incoming = keys(s3, "data", "incoming/")
    runs = sfn.list_map_runs(executionArn=ex)["mapRuns"]
    if check(len(runs) == 1, "one Map Run", runs):
        mr = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])
        check(mr["itemCounts"]["total"] == len(incoming), "the ItemReader listed every key under the prefix and nothing else",
              f"{mr['itemCounts']} for {len(incoming)} keys")
        children = sfn.list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]
        inputs = [json.loads(sfn.describe_execution(executionArn=c["executionArn"])["input"]) for c in children]
        print(f"      map run: {mr['status']}, items {mr['itemCounts']['total']}, {len(children)} child executions; one child's input: {json.dumps(inputs[0])[:300]}")
        check(len(inputs) == len(incoming) and all(set(i) == {"Items", "BatchInput"} and len(i["Items"]) == 1 for i in inputs),
              "each child got the batch envelope {Items, BatchInput}", inputs[:2])
        check(all(i["BatchInput"]["settings"] == {"conf_thres": 0.3} and i["BatchInput"]["model"] == params["DefaultModel"] for i in inputs),
              "the execution input's settings and the default model reach every child", inputs[:1])
    out = keys(s3, "data", params["OutputPrefix"])
    want = ["annotations/" + k + ".json" for k in good]
    check(all(w in out for w in want), "every image annotated", f"missing {[w for w in want if w not in out]}")
    check(not any("elsewhere" in k for k in out), "nothing outside the prefix touched")
    sums = summaries(s3, "data", params["OutputPrefix"])
    failed = [f["key"] for s in sums for f in s.get("failed", [])]
    check("broken.jpg" in failed, "the corrupt image is reported in a run summary", failed)
    ann = json.loads(s3.get_object(Bucket="data", Key="annotations/chelsea.png.json")["Body"].read())
    check(ann["size"] == {"height": 300, "width": 451} and ann["objects"], "an annotation is a Supervisely annotation with objects", str(ann)[:200])

    # 2. A model that is not published: every child fails UnknownModel (not retried), the Map fails.
    ex = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"model": "no-such-model"}))["executionArn"]
    d = wait_execution(sfn, ex)
    check(d["status"] == "FAILED" and d.get("error") == "States.ExceedToleratedFailureThreshold",
          "an unknown model fails the execution over the tolerated failures", f"{d['status']} {d.get('error')}")
    runs = sfn.list_map_runs(executionArn=ex)["mapRuns"]
    if runs:
        children = sfn.list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]
        errors = {sfn.describe_execution(executionArn=c["executionArn"]).get("error") for c in children}
        check(errors == {"UnknownModel"}, "each child's error is batch's UnknownModel", errors)

    # 3. The template's ItemProcessor, verbatim, over one batch of three with no time
    # budget: one image per invocation, the Continue loop until none remain.
    proc = copy.deepcopy(sm["Definition"]["States"]["AnnotatePrefix"]["ItemProcessor"])
    proc.pop("ProcessorConfig")
    tight_timeout = 30
    tight = create_function("batch-tight", tight_timeout, {"D2_SAFETY_MARGIN": f"{tight_timeout}s"})
    child = sfn.create_state_machine(name="d2serve-annotate-batch", definition=json.dumps(substitute(proc, {"BatchFunctionArn": tight})),
                                     roleArn="arn:aws:iam::000000000000:role/sfn", type="STANDARD")["stateMachineArn"]
    listed = s3.list_objects_v2(Bucket="data", Prefix="incoming/")["Contents"]
    items = [{"Etag": o["ETag"], "Key": o["Key"], "LastModified": o["LastModified"].timestamp(), "Size": o["Size"], "StorageClass": "STANDARD"}
             for o in listed if o["Key"] in {"incoming/astronaut.png", "incoming/chelsea.png", "incoming/coffee.jpg"}]
    batch_input = {"model": params["DefaultModel"], "settings": {"conf_thres": 0.3}, "input": "s3://data/incoming/", "output": "s3://data/tight/"}
    ex = sfn.start_execution(stateMachineArn=child, input=json.dumps({"Items": items, "BatchInput": batch_input}))["executionArn"]
    d = wait_execution(sfn, ex)
    result = json.loads(d.get("output") or "{}")
    check(d["status"] == "SUCCEEDED" and result.get("remaining") == 0, "the Continue loop finishes the batch", f"{d['status']} {result}")
    tight_runs = summaries(s3, "data", "tight/")
    print(f"      batch of three, no time budget: {d['status']}; invocations (processed, remaining, stopped): "
          f"{[(s.get('processed'), s.get('remaining'), s.get('stopped')) for s in tight_runs]}")
    check(len(tight_runs) == 3 and all(s.get("processed") == 1 for s in tight_runs),
          "with no time budget each invocation annotated one image and handed on its continuation",
          [(s.get("processed"), s.get("remaining"), s.get("stopped")) for s in tight_runs])
    check(len([k for k in keys(s3, "data", "tight/") if not k.startswith("tight/_runs/")]) == 3, "all three annotated")

    # 4. The schedule's target, with the template's Input (rendered for OutputPrefix scheduled/), fired by the scheduler.
    sched_props = props["Events"]["Scheduled"]["Properties"]
    text, values = sched_props["Input"]["!Sub"]
    render = dict(params, Bucket="data", OutputPrefix="scheduled/")
    for k, v in render.items():
        text = text.replace("${" + k + "}", v)
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 2))
    sched.create_schedule(Name="d2serve-batch", ScheduleExpression=f"at({at})", FlexibleTimeWindow={"Mode": "OFF"},
                          Target={"Arn": arn, "RoleArn": "arn:aws:iam::000000000000:role/scheduler", "Input": text})
    t = time.time()
    while time.time() - t < 60 and not all(f"scheduled/{k}.json" in keys(s3, "data", "scheduled/") for k in good):
        time.sleep(1)
    check(all(f"scheduled/{k}.json" in keys(s3, "data", "scheduled/") for k in good), "the schedule fired batch with the template's input",
          keys(s3, "data", "scheduled/"))


if __name__ == "__main__":
    sys.exit(main())

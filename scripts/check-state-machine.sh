#!/usr/bin/env bash
# Executes infra/template.yaml's Step Functions state machine (the Distributed Map over an
# S3 prefix) in ministack on 127.0.0.1, with the real `batch` binary as a provided.al2023
# function; scripts/state_machine_check.py says what runs, what is checked, and the four
# edits ministack needs (the only difference from the template, asserted).
# Needs: scripts/setup-test-env.sh (.venv-ministack) and scripts/demo.sh (the converted
# r50-fpn-3x it publishes into the emulated registry bucket).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-ministack/bin/ministack ] || { echo "check-state-machine: run scripts/setup-test-env.sh first (.venv-ministack)"; exit 1; }
cargo build --quiet --locked -p d2serve-batch -p zoo
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/third_party/ort/libonnxruntime.so.1.31.1}"
exec .venv-ministack/bin/python scripts/state_machine_check.py \
  --ministack "$PWD/.venv-ministack/bin/ministack" --batch "$PWD/target/debug/batch" --zoo "$PWD/target/debug/zoo"

#!/usr/bin/env bash
# The test command (README, .ci/run): installs the test tools the project needs,
# then runs every check and every test of the workspace. Tests that need the local
# S3 server or ONNX Runtime are required here, not skipped. It ends with one line,
# `N passed, M failed`, over everything it ran: each check script counts as one,
# each Rust test as one.
set -uo pipefail
cd "$(dirname "$0")/.."
PASSED=0
FAILED=0
FAILURES=()
finish() {
  echo
  if ((FAILED > 0)); then
    echo "failed: ${FAILURES[*]}"
  fi
  echo "$PASSED passed, $FAILED failed"
}
trap finish EXIT
# A check script: counted as one; the ones after it need what it built, so a failure stops here.
check() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    PASSED=$((PASSED + 1))
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("$name")
    exit 1
  fi
}
check setup-test-env scripts/setup-test-env.sh
# The deployment templates and Dockerfiles (cfn-lint, hadolint): seconds.
check infra-lint infra/lint.sh
# A one-shot build gains nothing from incremental state; it only costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The README's first command: the demo end to end, and what it leaves usable with no
# flags. Its build (zoo, serve) is the one the tests below reuse.
check demo scripts/check-demo.sh
# zoo load against serve on what the demo left: the queue bound seen from a client.
check load scripts/check-load.sh
# The OpenAPI contract: valid, and schemathesis-fuzzed against the live server.
check contract scripts/check-contract.sh
# Every runnable block of the README, pasted in order after the demo.
check readme timeout 900 scripts/check-readme.sh
# The template's Step Functions state machine executed in ministack with the real `batch`.
check state-machine timeout 600 scripts/check-state-machine.sh
export D2_REQUIRE_S3_TESTS=1 D2_REQUIRE_ORT=1 D2_REQUIRE_SDK=1 D2_REQUIRE_BROWSER=1 D2_REQUIRE_RIE=1 D2_REQUIRE_OPENVINO=1
# --nocapture: the parity tests print their measured worst cases.
log=$(mktemp)
cargo test --workspace --locked --no-fail-fast -- --nocapture 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Each test binary ends with `test result: ok. P passed; F failed; …`.
read -r p f < <(grep -aE '^test result: ' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' | awk '{p+=$1; f+=$2} END {print p+0, f+0}')
PASSED=$((PASSED + p))
FAILED=$((FAILED + f))
if ((status != 0 && f == 0)); then
  # Nothing failed by count, yet cargo failed: a test binary did not build or crashed.
  FAILED=$((FAILED + 1))
  FAILURES+=("cargo test (exit $status: a test binary did not build or run)")
elif ((f > 0)); then
  FAILURES+=($(grep -aE '^test .* \.\.\. FAILED$' "$log" | awk '{print $2}'))
fi
rm -f "$log"
((FAILED == 0))

#!/usr/bin/env bash
# The test command (README, .ci/run): installs the test tools the project needs,
# then runs every test of the workspace. Tests that need the local S3 server or
# ONNX Runtime are required here, not skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-env.sh
# The deployment templates and Dockerfiles (cfn-lint, hadolint): seconds, and a failure stops here.
infra/lint.sh
# A one-shot build gains nothing from incremental state; it only costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The README's first command: the demo end to end, and what it leaves usable with no
# flags. Its build (zoo, serve) is the one the tests below reuse.
scripts/check-demo.sh
# zoo load against serve on what the demo left: the queue bound seen from a client.
scripts/check-load.sh
# The OpenAPI contract: valid, and schemathesis-fuzzed against the live server.
scripts/check-contract.sh
export D2_REQUIRE_S3_TESTS=1 D2_REQUIRE_ORT=1 D2_REQUIRE_SDK=1 D2_REQUIRE_BROWSER=1
# --nocapture: the parity tests print their measured worst cases.
cargo test --workspace --locked --no-fail-fast -- --nocapture

#!/usr/bin/env bash
# The test command (README, .ci/run): installs the test tools the project needs,
# then runs every test of the workspace. S3 tests are required here, not skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-env.sh
export D2_REQUIRE_S3_TESTS=1
cargo test --workspace --locked

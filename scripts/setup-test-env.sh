#!/usr/bin/env bash
# Installs what the tests need beyond cargo, into the repository (idempotent):
#   .venv-test/  moto[server] (a local S3 server for the registry tests)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-test/bin/moto_server ]; then
  echo "setup: creating .venv-test with moto[server] (about a minute)"
  python3 -m venv .venv-test
  .venv-test/bin/pip install --quiet --disable-pip-version-check "moto[server]==5.2.5"
fi
echo "setup: test environment ready"

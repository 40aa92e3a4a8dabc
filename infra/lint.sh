#!/usr/bin/env bash
# Lints the deployment (scripts/test.sh runs it; tools from scripts/setup-test-env.sh):
# the SAM template as written and as SAM expands it (cfn-lint checks SAM
# resources loosely, the generated CloudFormation fully), the GPU stack, the
# Dockerfiles (hadolint) and the Lambda bootstrap. Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv-test/bin
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin/cfn-lint" infra/template.yaml infra/gpu-ecs.yaml
"$bin/python" infra/tools/sam-to-cfn.py infra/template.yaml "$tmp/template.json"
"$bin/cfn-lint" "$tmp/template.json"
"$bin/hadolint" infra/lambda.Dockerfile infra/gpu.Dockerfile supervisely/Dockerfile
sh -n infra/lambda-bootstrap.sh
echo "lint: infra/ ok (cfn-lint $("$bin/cfn-lint" --version | awk '{print $2}'), hadolint $("$bin/hadolint" --version | awk '{print $NF}'))"

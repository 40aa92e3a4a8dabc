#!/usr/bin/env bash
# The README runs as written: every ```sh block, in order, pasted into one bash
# from the repository root after the demo (scripts/test.sh runs this after
# scripts/check-demo.sh). Blocks fenced as ```text are reference and not run.
# A block that fails stops the check and names its line in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
script=$(mktemp)
trap 'rm -f "$script"' EXIT
python3 - "$script" <<'PY'
import re, sys
lines = open("README.md", encoding="utf-8").read().split("\n")
out, block, start = [], None, 0
for n, line in enumerate(lines, 1):
    if block is None and line.strip() == "```sh":
        block, start = [], n
    elif block is not None and line.strip() == "```":
        out.append(f'echo "== README.md:{start}"')
        out.append(f"README_LINE={start}")
        out.extend(block)
        block = None
    elif block is not None:
        block.append(line)
if block is not None:
    sys.exit(f"README.md:{start}: a ```sh block is not closed")
if not out:
    sys.exit("README.md has no ```sh blocks: nothing to check")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
blocks=$(grep -c '^README_LINE=' "$script")
# One shell for all blocks, as a reader pastes them: exports and background jobs carry over.
# A server a failed block left running in the background is stopped on the way out.
if ! bash -euo pipefail -c "trap 'echo \"check-readme: the block at README.md:\$README_LINE failed\" >&2' ERR; trap 'jobs -p | xargs -r kill 2>/dev/null || true' EXIT; source '$script'"; then
  exit 1
fi
echo "check-readme: all $blocks runnable blocks of README.md ran as written"

#!/usr/bin/env bash
# Prepares the CUDA check (scripts/gpu-check.sh) for a lent GPU machine that cannot
# reach PyPI and takes at most 64 MiB per call (working tree + carried paths).
#
#   scripts/gpu-prepare.sh          # .gpu/part.*: stripped zoo + the onnxruntime-gpu libraries,
#                                   #   one xz-compressed tar split into parts of 40 MB
#   scripts/gpu-prepare.sh --trim   # move the fixture families the check does not use out
#                                   #   of the working tree (the tree is ~87 MB with them)
#   git checkout -- tests/fixtures  # afterwards: bring them back
#
# Then, one device call per part (the machine stays warm ~30 s between calls, and
# ignored folders there survive between calls while it is warm):
#   carry [".gpu/part.aa"], command: mkdir -p .gpu-stash && mv .gpu/part.* .gpu-stash/
#   ... the same for part.ab, part.ac, ...
#   last: carry [".gpu/<last part>"], command: scripts/gpu-check.sh
# gpu-check.sh writes everything under $OUT (gpu-check.log, *.json).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--trim" ]; then
  keep=" r50_fpn cascade dconv images preprocessed "
  for d in tests/fixtures/*/; do
    name=$(basename "$d")
    case "$keep" in *" $name "*) ;; *) rm -rf "$d" ;; esac
  done
  echo "gpu-prepare: kept tests/fixtures/{r50_fpn,cascade,dconv,images,preprocessed}; restore with: git checkout -- tests/fixtures"
  git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1
  exit 0
fi

grep -qx '/.gpu' .gitignore || echo '/.gpu' >>.gitignore
grep -qx '/.gpu-stash' .gitignore || echo '/.gpu-stash' >>.gitignore
scripts/install-ort.sh --gpu
cargo build --release --locked -p zoo
rm -rf .gpu && mkdir -p .gpu/bin
cp target/release/zoo .gpu/bin/zoo && strip .gpu/bin/zoo
tar -cf - -C third_party/ort-gpu libonnxruntime.so.1.31.1 libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so \
  -C "$PWD/.gpu/bin" zoo | xz -6 -T2 | split -b 40000000 - .gpu/part.
rm -rf .gpu/bin
ls -l .gpu
echo "gpu-prepare: $(ls .gpu/part.* | wc -l) parts; see this script's header for the device calls"

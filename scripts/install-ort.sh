#!/usr/bin/env bash
# Installs the ONNX Runtime shared library d2serve loads at run time, from the
# PyPI wheel (the ort crate's own CDN download is not used):
#   third_party/ort/libonnxruntime.so.1.31.1           (CPU, default)
#   third_party/ort-gpu/libonnxruntime.so.1.31.1 (+ CUDA provider libs)  with --gpu
# Idempotent. Needs python3 with pip and unzip-free Python (zipfile).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.31.1
pkg=onnxruntime; dest=third_party/ort
if [ "${1:-}" = "--gpu" ]; then pkg=onnxruntime-gpu; dest=third_party/ort-gpu; fi
if ls "$dest"/libonnxruntime.so.* >/dev/null 2>&1; then
  echo "install-ort: $(ls "$dest"/libonnxruntime.so.*) already present"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "install-ort: downloading $pkg==$VERSION from PyPI"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux_2_28_x86_64 "$pkg==$VERSION" -d "$tmp"
mkdir -p "$dest.partial"
python3 - "$tmp" "$dest.partial" <<'PY'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("onnxruntime/capi/") and base.startswith("lib") and ".so" in base:
            with open(os.path.join(sys.argv[2], base), "wb") as f:
                f.write(z.read(n))
PY
rm -rf "$dest"; mv "$dest.partial" "$dest"
echo "install-ort: installed into $dest: $(ls "$dest" | paste -sd " " -)"

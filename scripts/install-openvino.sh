#!/usr/bin/env bash
# Installs the OpenVINO runtime libraries d2serve loads at run time for
# `--runtime openvino|auto` (CPU), from the PyPI `openvino` wheel:
#   third_party/openvino/libopenvino_c.so.2641 and what it needs beside it
#   (libopenvino, the CPU plugin, the ONNX frontend, TBB, hwloc).
# Only what the CPU plugin and the ONNX reader need is kept (about 95 MB of the
# wheel's 200). The wheel needs glibc >= 2.28. Idempotent. Needs python3 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2026.4.1
dest=third_party/openvino
if ls "$dest"/libopenvino_c.so.* >/dev/null 2>&1; then
  echo "install-openvino: $(ls "$dest"/libopenvino_c.so.*) already present"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp" "$dest.partial"' EXIT
echo "install-openvino: downloading openvino==$VERSION from PyPI"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux_2_28_x86_64 "openvino==$VERSION" -d "$tmp"
rm -rf "$dest.partial"; mkdir -p "$dest.partial"
python3 - "$tmp" "$dest.partial" <<'PY'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
keep = ("libopenvino.so", "libopenvino_c.so", "libopenvino_intel_cpu_plugin.so",
        "libopenvino_onnx_frontend.so", "libtbb.so", "libtbbmalloc.so", "libhwloc.so")
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("openvino/libs/") and base.startswith(keep):
            path = os.path.join(sys.argv[2], base)
            with open(path, "wb") as f:
                f.write(z.read(n))
            os.chmod(path, 0o755)
PY
rm -rf "$dest"; mv "$dest.partial" "$dest"
echo "install-openvino: installed into $dest: $(ls "$dest" | paste -sd " " -)"

#!/usr/bin/env bash
# OpenVINO bf16, measured for real: its speed and its accuracy cost (issue 25's last
# figures). Needs a CPU with AVX512_BF16 or AMX; none of this project's build machines
# has one (docs/BENCHMARKS.md has bf16's cost *emulated*). Run it wherever one is:
#
#   scripts/bf16-check.sh                 # a machine with the repo built (target/release or
#                                         #   target/debug zoo) and third_party/{ort,openvino}
#
# On a lent device machine (its host CPU may have them; no PyPI there, 64 MiB per call):
#   scripts/bf16-check.sh --pack          # here: .bf16/part.*: stripped zoo + ONNX Runtime's and
#                                         #   OpenVINO's CPU libraries, xz, parts of 24 MB
#   scripts/bf16-check.sh --trim          # here: drop every fixture but the photos from the working
#                                         #   tree (34 MB left, so that a 24 MB part fits a call)
#   then one device call per part:        carry [".bf16/part.aa"], command:
#                                         #   mkdir -p .bf16-stash && mv .bf16/part.* .bf16-stash/
#   and the last: carry [".bf16/<last part>"], command: scripts/bf16-check.sh
#   git checkout -- tests/fixtures        # here, afterwards
#
# What it runs (everything also written under $OUT, or out/bf16-check):
#  1. the CPU's flags, and whether zoo takes --precision bf16 here (elsewhere it must
#     refuse it by name);
#  2. the trained sample's box and mask AP on its validation set (zoo import + zoo eval):
#     ONNX Runtime f32, OpenVINO f32, OpenVINO bf16 - the AP cost of bf16;
#  3. zoo bench on the full-size synthesized R50-FPN, astronaut and motorcycle_wide, 2
#     threads: ONNX Runtime f32, OpenVINO f32 and OpenVINO bf16 in one process, rounds
#     interleaved - the speed of bf16 on the same artifact.
# Exit status: 0 measured, 1 a step failed, 3 this CPU cannot run bf16 (f32 figures only).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--trim" ]; then
  for d in tests/fixtures/*/; do [ "$(basename "$d")" = images ] || rm -rf "$d"; done
  echo "bf16-check: kept tests/fixtures/images; restore with: git checkout -- tests/fixtures"
  git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1
  exit 0
fi

if [ "${1:-}" = "--pack" ]; then
  set -e
  scripts/install-ort.sh
  scripts/install-openvino.sh
  cargo build --locked -p zoo   # the dev profile is optimized (Cargo.toml): the tests' build
  rm -rf .bf16 && mkdir -p .bf16/pack/ort .bf16/pack/openvino
  cp target/debug/zoo .bf16/pack/zoo && strip .bf16/pack/zoo
  cp -L third_party/ort/libonnxruntime.so* .bf16/pack/ort/
  cp -a third_party/openvino/. .bf16/pack/openvino/
  tar -cf - -C .bf16/pack . | xz -6 -T2 | split -b 24000000 - .bf16/part.
  rm -rf .bf16/pack
  ls -l .bf16
  echo "bf16-check: $(ls .bf16/part.* | wc -l) parts; see this script's header for the device calls"
  exit 0
fi

OUT=${OUT:-out/bf16-check}; mkdir -p "$OUT"
exec > >(tee "$OUT/bf16-check.log") 2>&1
work=${WORK:-/tmp/bf16-work}; mkdir -p "$work"

# The binary and libraries: unpacked from the parts on a device machine, else this build's.
if ls .bf16-stash/part.* .bf16/part.* >/dev/null 2>&1; then
  if [ ! -x "$work/pack/zoo" ]; then
    mkdir -p "$work/pack"
    cat $(ls .bf16-stash/part.* 2>/dev/null) $(ls .bf16/part.* 2>/dev/null) | xz -d | tar -C "$work/pack" -xf - ||
      { echo "bf16-check: could not unpack the parts"; exit 1; }
  fi
  ZOO=$work/pack/zoo
  export ORT_DYLIB_PATH=$(ls "$work"/pack/ort/libonnxruntime.so.* | head -1)
  export OPENVINO_LIB_DIR=$work/pack/openvino
else
  ZOO=target/release/zoo; [ -x $ZOO ] || ZOO=target/debug/zoo
  [ -x $ZOO ] || { echo "bf16-check: build zoo first (cargo build -p zoo) or run --pack"; exit 1; }
  [ -n "${ORT_DYLIB_PATH:-}" ] || export ORT_DYLIB_PATH=$(ls "$PWD"/third_party/ort/libonnxruntime.so.* | head -1)
fi
lscpu | grep -E 'Model name|^CPU\(s\)' || true
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512_bf16|amx_bf16|amx_tile|avx512_vnni)$' | tr '\n' ' ')
echo "bf16-check: CPU flags of interest: ${flags:-none}"
status=0
bf16=yes; echo " $flags " | grep -qE ' (avx512_bf16|amx_bf16) ' || bf16=no

# 1. the trained sample, imported as a user imports a model
export ZOO_ARTIFACTS=$work/artifacts ZOO_REGISTRY=$work/registry
$ZOO import samples/shapes/model/model_final.pth --name shapes >"$OUT/import.txt" 2>&1 ||
  { echo "bf16-check: zoo import failed:"; tail -5 "$OUT/import.txt"; exit 1; }
eval_one() {  # runtime precision
  $ZOO eval shapes --runtime "$1" --precision "$2" --images samples/shapes/val \
    --annotations samples/shapes/val/instances.json --json >"$OUT/eval-$1-$2.json" 2>"$OUT/eval-$1-$2.err"
}
eval_one onnxruntime f32 || { echo "eval onnxruntime f32 failed"; tail -3 "$OUT/eval-onnxruntime-f32.err"; status=1; }
eval_one openvino f32 || { echo "eval openvino f32 failed"; tail -3 "$OUT/eval-openvino-f32.err"; status=1; }
if [ $bf16 = yes ]; then
  eval_one openvino bf16 || { echo "eval openvino bf16 failed"; tail -3 "$OUT/eval-openvino-bf16.err"; status=1; }
else
  # Elsewhere bf16 must be refused by name, never silently run in f32.
  if eval_one openvino bf16; then
    echo "bf16-check: FAIL: zoo ran --precision bf16 on a CPU without AVX512_BF16 or AMX"; status=1
  else
    echo "bf16-check: refused here, as it must be: $(grep -m1 -i bf16 "$OUT/eval-openvino-bf16.err")"
  fi
  rm -f "$OUT/eval-openvino-bf16.json"
fi
echo "| trained sample, val (50 scenes) | box AP | mask AP |"
echo "|---|---|---|"
for f in "$OUT"/eval-*.json; do
  [ -s "$f" ] || continue
  python3 - "$f" <<'PY'
import json, sys, os
r = json.load(open(sys.argv[1]))
name = os.path.basename(sys.argv[1])[5:-5].replace("-", " ")
print(f"| {name} | {r['box_ap']['AP']:.3f} | {r['mask_ap']['AP']:.3f} |")
PY
done
echo "(Detectron2's COCOEvaluator: $(python3 -c "import json; d=json.load(open('samples/shapes/d2_eval.json')); print(f\"box {d['bbox']['AP']:.3f} mask {d['segm']['AP']:.3f}\")"))"

# 2. speed: every CPU runtime and precision zoo finds here, one process, interleaved
if [ ! -s "$work/r50/model.onnx" ]; then
  $ZOO synth r50-fpn-3x --out "$work/r50.pkl" >/dev/null && $ZOO convert "$work/r50.pkl" --as r50-fpn-3x --out "$work/r50" >/dev/null ||
    { echo "bf16-check: synth/convert failed"; exit 1; }
fi
for img in astronaut motorcycle_wide; do
  echo "== zoo bench, full-size R50-FPN, $img, 2 threads"
  $ZOO bench --model r50-fpn-3x --artifact "$work/r50" --image tests/fixtures/images/$img.png --runs ${RUNS:-9} \
    --threads 2 --runtime openvino >"$OUT/bench-$img.txt" 2>&1 || { tail -5 "$OUT/bench-$img.txt"; status=1; }
  cat "$OUT/bench-$img.txt"
done

if [ $status != 0 ]; then echo "bf16-check: FAIL"; exit $status; fi
if [ $bf16 = no ]; then echo "bf16-check: f32 only: this CPU has neither AVX512_BF16 nor AMX, bf16 not measured"; exit 3; fi
echo "bf16-check: measured"

#!/usr/bin/env bash
# The CUDA check, run ON the lent GPU machine (see scripts/gpu-prepare.sh for how the
# binary and the onnxruntime-gpu library get there). Uses the CUDA 13 / cuDNN 9
# libraries of that machine's Python (nvidia-* wheels beside PyTorch).
#
#  1. --device cuda loads (no silent CPU fallback) and reports the device;
#  2. predictions on the fixture photos with CUDA vs CPU, per family (r50_fpn,
#     cascade, dconv): same objects, scores and masks (scripts/gpu_compare.py);
#  3. zoo bench --device cuda on a full-size synthesized R50-FPN (astronaut, 800 px),
#     with the CPU figure of the same machine beside it.
# Everything is written to $OUT (or out/gpu-check when OUT is unset).
# A dry run without a GPU: ORT_LIB_DIR=third_party/ort DEVICE=auto scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}; mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true

DEVICE=${DEVICE:-cuda}  # PYTHON: a python3 with numpy and pillow (the GPU machine's has both)
lib=${ORT_LIB_DIR:-/tmp/ort-gpu}
if [ -z "${ORT_LIB_DIR:-}" ] && [ ! -f $lib/libonnxruntime_providers_cuda.so ]; then
  mkdir -p $lib
  cat .gpu-stash/part.* $(ls .gpu/part.* 2>/dev/null) | xz -d | tar -C $lib -xf - || { echo "gpu-check: could not unpack the library parts"; exit 1; }
fi
site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)
export LD_LIBRARY_PATH="$lib:$(ls -d "$site"/nvidia/*/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH=$(realpath $lib/libonnxruntime.so.1.31.1)
ZOO=$lib/zoo; [ -x $ZOO ] || ZOO=target/release/zoo
work=/tmp/gpu-work; mkdir -p $work
status=0

for spec in "r50_fpn r50-fpn-3x" "cascade cascade-r50-fpn-3x" "dconv r50-fpn-dconv-3x"; do
  set -- $spec; fam=$1; key=$2
  echo "== $fam ($key)"
  $ZOO convert tests/fixtures/$fam/model.pkl --as $key --out $work/$fam --min-size 320 --max-size 512 >/dev/null || { status=1; continue; }
  for dev in cpu $DEVICE; do
    $ZOO predict tests/fixtures/images/*.png --artifact $work/$fam --model $key --conf 0.05 --device $dev --json $OUT/$fam-$dev >$OUT/$fam-$dev.txt 2>&1 ||
      { echo "predict --device $dev failed:"; tail -5 $OUT/$fam-$dev.txt; status=1; }
  done
  ${PYTHON:-python3} scripts/gpu_compare.py $OUT/$fam-cpu $OUT/$fam-$DEVICE || status=1
done

echo "== bench: full-size synthesized R50-FPN, astronaut at 800"
$ZOO synth r50-fpn-3x --out $work/r50.pkl >/dev/null && $ZOO convert $work/r50.pkl --as r50-fpn-3x --out $work/r50 >/dev/null || status=1
$ZOO bench --model r50-fpn-3x --artifact $work/r50 --image tests/fixtures/images/astronaut.png --runs 20 --device $DEVICE --json >$OUT/bench-$DEVICE.json || status=1
$ZOO bench --model r50-fpn-3x --artifact $work/r50 --image tests/fixtures/images/astronaut.png --runs 5 --device cpu --json >$OUT/bench-cpu.json || status=1
cat $OUT/bench-$DEVICE.json $OUT/bench-cpu.json
echo "gpu-check: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status

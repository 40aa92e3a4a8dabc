#!/usr/bin/env bash
# The trained sample's accuracy, as a user checks a model of their own (README,
# "Check a model's accuracy"): imports samples/shapes/model/model_final.pth with
# `zoo import` (as `shapes`, into artifacts/shapes), then scores it on the
# committed validation set with `zoo eval`, writing the COCO results it scored
# to out/sample-eval/detections.json. Prints zoo eval's JSON last; compare its
# box_ap and mask_ap with Detectron2's own COCOEvaluator figures in
# samples/shapes/d2_eval.json (docs/PARITY.md has both).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-ort.sh > /dev/null
cargo build --locked -q -p zoo
ZOO=target/debug/zoo
SAMPLE=samples/shapes
if ! [ -s artifacts/shapes/model.onnx ] || [ "$SAMPLE/model/model_final.pth" -nt artifacts/shapes/model.onnx ]; then
  $ZOO import "$SAMPLE/model/model_final.pth" --name shapes >&2
fi
mkdir -p out/sample-eval
$ZOO eval shapes --images "$SAMPLE/val" --annotations "$SAMPLE/val/instances.json" \
  --json --detections out/sample-eval/detections.json

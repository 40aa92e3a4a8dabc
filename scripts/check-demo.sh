#!/usr/bin/env bash
# The README's first command, checked (run by scripts/test.sh before the tests,
# which then reuse its build): scripts/demo.sh runs end to end, says nothing that
# looks like an error on its offline fallback, and leaves a setup that `zoo list`,
# `zoo predict` and `serve` use with no flags.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$log"; [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null || true' EXIT
fail() { echo "check-demo: FAIL: $*"; echo "--- demo output:"; cat "$log"; exit 1; }

scripts/demo.sh > "$log" 2>&1 || fail "scripts/demo.sh exited $?"
grep -q "zoo: error" "$log" && fail "the demo printed an error line"
# The scene is demo.sh's default (named there only); its report says where the reply went.
ann=$(sed -n 's/^demo: Supervisely annotation: *//p' "$log")
overlay=$(sed -n 's/^demo: overlay picture: *//p' "$log")
[ -n "$ann" ] && [ -n "$overlay" ] || fail "the demo did not say where it wrote the annotation and overlay"
scene=$(basename "$ann" .json).png
# The demo shows the trained sample on a validation scene: real objects of its classes.
python3 - "$ann" samples/shapes/val/instances.json "$scene" <<'PY' || fail "$ann is not the trained sample's annotation of the objects in $scene"
import json, sys
ann = json.load(open(sys.argv[1]))["annotation"]
gt = json.load(open(sys.argv[2]))
img = next(i for i in gt["images"] if i["file_name"] == sys.argv[3])
assert ann["size"] == {"height": img["height"], "width": img["width"]}, ann["size"]
names = {c["name"] for c in gt["categories"]}
truth = [a for a in gt["annotations"] if a["image_id"] == img["id"]]
assert len(ann["objects"]) > 0 and {o["classTitle"] for o in ann["objects"]} <= names, ann["objects"]
assert abs(len(ann["objects"]) - len(truth)) <= 2, (len(ann["objects"]), len(truth))
PY
[ -s "$overlay" ] || fail "no overlay picture at $overlay"

target/debug/zoo list --json > "$tmp/list.json" || fail "zoo list"
python3 - "$tmp/list.json" <<'PY' || fail "zoo list does not show r50-fpn-3x converted and published"
import json, sys
row = next(r for r in json.load(open(sys.argv[1])) if r["key"] == "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x")
assert row["converted"] and row["published"], row
# Offline the demo serves the bundled sample: it must say so and claim no AP.
assert row["source"] == "zoo" or (row["source"] == "sample" and row["box_ap"] is None and "random weights" in row["name"]), row
shapes = next(r for r in json.load(open(sys.argv[1])) if r["key"] == "shapes")
assert shapes["converted"] and shapes["published"] and shapes["num_classes"] == 5, shapes
PY
target/debug/zoo predict tests/fixtures/images/chelsea.png --overlay "$tmp/chelsea.png" > "$tmp/predict.txt" || fail "zoo predict with no flags"
[ -s "$tmp/chelsea.png" ] || fail "zoo predict wrote no overlay"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/serve --listen "127.0.0.1:$PORT" > "$tmp/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/livez" >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/v1/models" | grep -q "mask_rcnn_R_50_FPN_3x" || fail "serve with no flags does not list the demo's model: $(cat "$tmp/serve.log")"
curl -sf -F "files=@tests/fixtures/images/astronaut.png" "http://127.0.0.1:$PORT/inference_image" | grep -q '"objects"' || fail "serve with no flags did not answer"
echo "check-demo: scripts/demo.sh ran; zoo list, zoo predict and serve work on what it left, with no flags"

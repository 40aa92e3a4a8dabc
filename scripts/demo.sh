#!/usr/bin/env bash
# The main job, end to end on a fresh machine (README "Quick start"):
# installs ONNX Runtime, builds zoo and serve, converts the default model
# (R50-FPN 3x from the Detectron2 zoo when online; offline, the bundled sample
# model: random weights, a pipeline check only), publishes it to a local
# registry, starts serve, sends one real Supervisely request and draws the
# reply over the photo. Results land in out/.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-tests/fixtures/images/astronaut.png}
OUT=out
mkdir -p "$OUT"
scripts/install-ort.sh
cargo build --release --locked -p zoo -p d2serve-serve
ZOO=target/release/zoo
SERVE=target/release/serve
export ZOO_CACHE="$PWD/$OUT/cache"

if $ZOO pull r50-fpn-3x --retries 1 --timeout 15; then
  $ZOO convert r50-fpn-3x --out "$OUT/artifact"
  echo "demo: converted the real zoo checkpoint"
else
  echo
  echo "demo: the Detectron2 model zoo is unreachable, so this run uses the BUNDLED SAMPLE MODEL:"
  echo "      random weights in the real R50-FPN architecture (narrow widths, test size 320/512)."
  echo "      It checks the whole pipeline; its detections are meaningless."
  echo
  $ZOO convert tests/fixtures/r50_fpn/model.pkl --as r50-fpn-3x --out "$OUT/artifact" --min-size 320 --max-size 512
fi
$ZOO publish r50-fpn-3x --artifact "$OUT/artifact" --to "file://$PWD/$OUT/registry"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$SERVE --registry "file://$PWD/$OUT/registry" --model r50-fpn-3x --listen "127.0.0.1:$PORT" \
  --cache-dir "$OUT/serve-cache" --preload > "$OUT/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/livez" >/dev/null 2>&1 && break
  kill -0 $SERVE_PID 2>/dev/null || { cat "$OUT/serve.log"; echo "demo: serve exited"; exit 1; }
  sleep 0.2
done
echo "demo: serve is up on http://127.0.0.1:$PORT (log: $OUT/serve.log)"

name=$(basename "$IMAGE"); stem=${name%.*}
curl -sf -D "$OUT/$stem.headers" -F "files=@$IMAGE" -F 'settings={"settings": {"conf_thres": 0.3}}' \
  "http://127.0.0.1:$PORT/inference_image" -o "$OUT/$stem.json"
$ZOO draw "$IMAGE" "$OUT/$stem.json" --out "$OUT/${stem}_overlay.png" --model r50-fpn-3x
echo "demo: Supervisely annotation: $OUT/$stem.json"
echo "demo: overlay picture:        $OUT/${stem}_overlay.png"
grep -i '^server-timing' "$OUT/$stem.headers" || true

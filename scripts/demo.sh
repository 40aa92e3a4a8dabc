#!/usr/bin/env bash
# The main job, end to end on a fresh machine (README "Quick start"):
# installs ONNX Runtime, builds zoo, serve and batch, imports the bundled
# trained sample (samples/shapes: a Mask R-CNN trained here with Detectron2 on
# synthetic shapes) with `zoo import` as a user imports a model of their own,
# publishes it to a local registry, starts serve, sends one real Supervisely
# request on a scene from the sample's validation set and draws the reply over
# it. It also converts and publishes R50-FPN 3x (the real zoo checkpoint when
# online; offline, a random-weight copy of its architecture, which the
# tests and `zoo predict`'s default use). Results land in out/.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-samples/shapes/val/val_0007.png}
OUT=out
mkdir -p "$OUT"
scripts/install-ort.sh
# The test profile (Cargo.toml [profile.dev]: optimized, line tables only), so that
# scripts/test.sh afterwards compiles only the tests: one build of the binaries for
# both commands. It serves as fast as --release here (docs/BENCHMARKS.md, "Build").
cargo build --locked -p zoo -p d2serve-serve -p d2serve-batch
ZOO=target/debug/zoo
SERVE=target/debug/serve
# Everything goes where zoo and serve look by default (artifacts/, registry/, the
# user cache), so afterwards `zoo list`, `zoo predict IMAGE` and `serve` work with no flags.
if $ZOO pull r50-fpn-3x --retries 1 --timeout 15 > "$OUT/pull.log" 2>&1; then
  $ZOO convert r50-fpn-3x
  echo "demo: converted the real zoo checkpoint"
else
  echo "demo: the Detectron2 model zoo is unreachable (offline? details in $OUT/pull.log), so r50-fpn-3x"
  echo "      is a random-weight copy of its architecture (zoo list, serve and zoo predict call it a"
  echo "      sample); the trained sample below is what this demo shows."
  $ZOO convert tests/fixtures/r50_fpn/model.pkl --as r50-fpn-3x --min-size 320 --max-size 512 --random-weights
fi
$ZOO publish r50-fpn-3x --to registry
# The trained sample, imported and published exactly as a user's own training run would be.
$ZOO import samples/shapes/model/model_final.pth --name shapes --to registry

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$SERVE --listen "127.0.0.1:$PORT" --model shapes --preload > "$OUT/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/livez" >/dev/null 2>&1 && break
  kill -0 $SERVE_PID 2>/dev/null || { cat "$OUT/serve.log"; echo "demo: serve exited"; exit 1; }
  sleep 0.2
done
echo "demo: serve is up on http://127.0.0.1:$PORT (log: $OUT/serve.log)"

name=$(basename "$IMAGE"); stem=${name%.*}
# No settings: the server's default confidence (0.45, as zoo predict, batch and the Supervisely app).
curl -sf -D "$OUT/$stem.headers" -F "files=@$IMAGE" \
  "http://127.0.0.1:$PORT/inference_image" -o "$OUT/$stem.json"
$ZOO draw "$IMAGE" "$OUT/$stem.json" --out "$OUT/${stem}_overlay.png" --model shapes
echo "demo: Supervisely annotation: $OUT/$stem.json"
echo "demo: overlay picture:        $OUT/${stem}_overlay.png"
grep -i '^server-timing' "$OUT/$stem.headers" || true
echo
echo "demo: left set up for you (repository root): artifacts/ (converted models), registry/ (published),"
echo "      so (README, \"After the demo\"):"
echo "        export PATH=\"\$PWD/target/debug:\$PATH\"   # zoo, serve and batch as built here"
echo "        zoo list                                   # shapes and r50-fpn-3x: converted, published"
echo "        zoo predict samples/shapes/val/val_0001.png --model shapes --overlay out/predict.png"
echo "        scripts/eval-sample.sh                     # the sample's box and mask AP on its val set"
echo "        serve --model shapes                       # the server on 127.0.0.1:8000"

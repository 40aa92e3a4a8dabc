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
  echo
  echo "demo: the Detectron2 model zoo is unreachable (offline? details in $OUT/pull.log), so this run"
  echo "      uses the BUNDLED SAMPLE MODEL: random weights in the real R50-FPN architecture (narrow"
  echo "      widths, test size 320/512). It checks the whole pipeline; its detections are meaningless,"
  echo "      and zoo list, serve and zoo predict call it a sample."
  echo
  $ZOO convert tests/fixtures/r50_fpn/model.pkl --as r50-fpn-3x --min-size 320 --max-size 512 --random-weights
fi
$ZOO publish r50-fpn-3x --to registry

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$SERVE --listen "127.0.0.1:$PORT" --preload > "$OUT/serve.log" 2>&1 &
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
$ZOO draw "$IMAGE" "$OUT/$stem.json" --out "$OUT/${stem}_overlay.png" --model r50-fpn-3x
echo "demo: Supervisely annotation: $OUT/$stem.json"
echo "demo: overlay picture:        $OUT/${stem}_overlay.png"
grep -i '^server-timing' "$OUT/$stem.headers" || true
echo
echo "demo: left set up for you (repository root): artifacts/ (converted model), registry/ (published),"
echo "      so with no extra flags (README, \"After the demo\"):"
echo "        export PATH=\"\$PWD/target/debug:\$PATH\"   # zoo, serve and batch as built here"
echo "        zoo list                                   # r50-fpn-3x: converted, published"
echo "        zoo predict $IMAGE --overlay out/predict.png"
echo "        serve                                      # the server on 127.0.0.1:8000"

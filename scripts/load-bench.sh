#!/usr/bin/env bash
# The load figures of docs/BENCHMARKS.md ("Load"): the full-size synthesized
# R50-FPN (real architecture and sizes, random weights) published to a
# temporary folder registry, served by `serve` (container mode, --preload),
# loaded by `zoo load` at concurrency 1, 4, 16 and 64 for DURATION seconds
# each, with the queue limit (--max-queue 2 --queue-timeout QUEUE_TIMEOUT) and
# without it (a queue no request ever overflows). A fresh server per run, so
# each VmHWM is that run's peak. Prints one markdown row per run; the JSON of
# each run stays in OUT (default out/load). RUNTIMES lists the serve --runtime
# of each set of runs (onnxruntime, openvino, auto); QUEUES which queues (limit, none).
#   usage: scripts/load-bench.sh [IMAGE]
#   env: DURATION=60 QUEUE_TIMEOUT=10 CONCURRENCY="1 4 16 64" RUNTIMES=onnxruntime QUEUES="limit none"
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-tests/fixtures/images/coffee.jpg}
DURATION=${DURATION:-60}
QUEUE_TIMEOUT=${QUEUE_TIMEOUT:-10}
CONCURRENCY=${CONCURRENCY:-1 4 16 64}
RUNTIMES=${RUNTIMES:-onnxruntime}
QUEUES=${QUEUES:-limit none}
OUT=${OUT:-out/load}
mkdir -p "$OUT"
cargo build --locked -p zoo -p d2serve-serve
ZOO=target/debug/zoo
SERVE=target/debug/serve
WORK=$(mktemp -d)
trap 'kill $SERVE_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
SERVE_PID=
$ZOO convert r50-fpn-3x --synth --out "$WORK/artifact" > /dev/null
$ZOO publish r50-fpn-3x --artifact "$WORK/artifact" --to "file://$WORK/registry" > /dev/null

run() { # name concurrency serve-flags...
  local name=$1 c=$2; shift 2
  local file=${name//[^a-z0-9]/-}
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  $SERVE --registry "file://$WORK/registry" --cache-dir "$WORK/cache" --listen "127.0.0.1:$port" --preload "$@" > "$OUT/serve-$file-c$c.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 $SERVE_PID 2>/dev/null || { cat "$OUT/serve-$file-c$c.log"; exit 1; }
    sleep 0.2
  done
  $ZOO load "http://127.0.0.1:$port" --image "$IMAGE" -c "$c" --duration "$DURATION" --pid $SERVE_PID --json > "$OUT/$file-c$c.json"
  kill -TERM $SERVE_PID
  local rc=0
  wait $SERVE_PID || rc=$?
  python3 - "$OUT/$file-c$c.json" "$name" "$rc" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); name, rc = sys.argv[2], sys.argv[3]
f = lambda v: "-" if v is None else "%.1f" % v
mib = lambda b: "-" if b is None else "%.0f" % (b / 1048576)
st = ", ".join("%s: %d" % kv for kv in sorted(r["statuses"].items()))
print("| %s | %d | %d | %.2f | %s | %s | %s | %s | %s | %d | %s | %s | %s |" % (
    name, r["concurrency"], r["requests"], r["throughput_ok_per_s"], f(r["latency_ok_s"]["p50"]), f(r["latency_ok_s"]["p95"]),
    f(r["latency_ok_s"]["p99"]), f(r["latency_all_s"]["p99"]), st, r["five_xx_other_than_503_with_retry_after"],
    mib(r["server_vm_hwm_bytes"]), f(r["server_idle_after_s"]), "yes, exit %s" % rc if r["server_alive_after"] else "NO"))
PY
  SERVE_PID=
}

echo "| queue | clients | requests | ok/s | p50 ok (s) | p95 ok (s) | p99 ok (s) | p99 all (s) | statuses | other 5xx | peak RSS (MiB) | idle after (s) | alive, SIGTERM |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for runtime in $RUNTIMES; do
  for queue in $QUEUES; do
    case $queue in
      limit) flags=(--max-queue 2 --queue-timeout "$QUEUE_TIMEOUT") ;;
      none) flags=(--max-queue 100000 --queue-timeout 100000) ;;
      *) echo "load-bench: unknown queue '$queue' (limit or none)" >&2; exit 1 ;;
    esac
    for c in $CONCURRENCY; do
      run "$queue, $runtime" "$c" "${flags[@]}" --runtime "$runtime"
    done
  done
done

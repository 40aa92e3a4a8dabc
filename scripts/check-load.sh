#!/usr/bin/env bash
# `zoo load` end to end against the real `serve` (run by scripts/test.sh after
# check-demo.sh, on the registry the demo left): a few seconds with room in the
# queue (every answer 200), then with no queue at all (--max-queue 0: the
# overflow is 503 with Retry-After, never another 5xx or a dropped connection).
# The full figures come from scripts/load-bench.sh (docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
SERVE_PID=
trap 'rm -rf "$tmp"; [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true' EXIT
fail() { echo "check-load: FAIL: $*"; cat "$tmp"/*.log 2>/dev/null || true; exit 1; }
IMAGE=tests/fixtures/images/chelsea.png

load() { # name serve-flags... ; then the report is in $tmp/name.json
  local name=$1; shift
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  target/debug/serve --listen "127.0.0.1:$port" --preload "$@" > "$tmp/$name.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  target/debug/zoo load "http://127.0.0.1:$port" --image "$IMAGE" -c 4 --duration 3 --retry-after ignore --pid $SERVE_PID --json > "$tmp/$name.json" || fail "zoo load ($name)"
  kill -TERM $SERVE_PID
  wait $SERVE_PID || fail "serve ($name) did not exit 0 after SIGTERM"
  SERVE_PID=
}

load room --max-queue 16
load none --max-queue 0 --concurrency 1
python3 - "$tmp/room.json" "$tmp/none.json" <<'PY' || fail "unexpected load reports"
import json, sys
room, none = (json.load(open(p)) for p in sys.argv[1:3])
for r in (room, none):
    assert r["server_alive_after"] and r["five_xx_other_than_503_with_retry_after"] == 0, r
    assert r["server_vm_hwm_bytes"] and r["server_idle_after_s"] is not None, r
    assert set(r["statuses"]) <= {"200", "503"}, r["statuses"]
assert room["statuses"] == {"200": room["requests"]} and room["ok"] > 4, room
assert none["statuses"].get("503", 0) > 0 and none["ok"] > 0, none["statuses"]
print("check-load: zoo load against serve: %d ok with room in the queue; with none, %d ok and %d refused with 503 + Retry-After"
      % (room["ok"], none["ok"], none["statuses"]["503"]))
PY

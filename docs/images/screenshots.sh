#!/usr/bin/env bash
# The README's pictures of the query page and the status page (docs/images/*.png): Janus (release
# build) in front of a real Prometheus holding the compatibility data, with demo log lines pushed
# for the same hours; each view opened from a link in Prometheus's format by
# `chromium --headless --screenshot`, in the light and the dark scheme. Everything listens on
# 127.0.0.1 and is stopped by PID.
#
# usage: docs/images/screenshots.sh        (needs prometheus, promtool, chromium)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/docs/images"
work=$(mktemp -d /tmp/janus-shots.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "not ready: $1" >&2; return 1
}

(cd "$root" && cargo build --release -q)
python3 "$root/compat-tests/gen_metrics.py" "$work/metrics.om" "$work/metrics.prom"
promtool tsdb create-blocks-from openmetrics "$work/metrics.om" "$work/prometheus" >/dev/null
prom_port=$(free_port)
prometheus --config.file="$root/compat-tests/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
  --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
janus_port=$(free_port)
mkdir -p "$work/store"
"$root/target/release/janus" --web.listen-address="127.0.0.1:$janus_port" \
  --upstream.url="http://127.0.0.1:$prom_port" --storage.path="$work/store" --retention.time=0s \
  >"$work/janus.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$prom_port/-/ready"
wait_ready "http://127.0.0.1:$janus_port/-/ready"
base="http://127.0.0.1:$janus_port"

# Demo lines for 02:00-03:00 on 2024-01-01, the hours the metric data covers; seeded, so the
# pictures only change when the page does.
python3 - "$base" <<'PY'
import json, random, sys, urllib.request
base = sys.argv[1]
rng = random.Random(7)
end = 1704078000
pods = ["shop-web-7f9c-a", "shop-web-7f9c-b", "shop-api-55d-x"]
lines = ["GET /api/v1/cart 200 12ms", "GET /healthz 200 1ms", "POST /checkout 200 84ms",
         "POST /checkout 504 upstream timeout after 5s", "WARN slow query orders 1.2s",
         "ERROR payment declined: card expired", "INFO cache warm: 1204 keys"]
streams = {}
for i in range(4000):
    t = end - 3600 + i * 0.9
    pod = rng.choice(pods)
    streams.setdefault(pod, []).append([str(int(t * 1e9)), f"{rng.choice(lines)} req={i:05d}"])
body = {"streams": [{"stream": {"namespace": "shop", "pod": p, "container": "app"}, "values": v}
                    for p, v in streams.items()]}
req = urllib.request.Request(f"{base}/loki/api/v1/push", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY

profile="$work/chromium"
shoot() { # name dark(0|1) path-and-query
  local extra=()
  [ "$2" = 1 ] && extra+=(--force-dark-mode)
  rm -rf "$profile"
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage --hide-scrollbars \
    --user-data-dir="$profile" --window-size=1280,760 --virtual-time-budget=10000 "${extra[@]}" \
    --screenshot="$out/$1.png" "$base$3" >/dev/null 2>&1
  echo "$out/$1.png"
}
link() { # expr tab range [extra]
  python3 -c 'import sys, urllib.parse as u; print("/graph?" + u.urlencode([("g0.expr", sys.argv[1]), ("g0.tab", sys.argv[2]), ("g0.range_input", sys.argv[3]), ("g0.end_input", "2024-01-01 03:00:00")] + ([tuple(sys.argv[4].split("=", 1))] if len(sys.argv) > 4 else [])))' "$@"
}
shoot logs-light 0 "$(link 'pod{namespace="shop"} |~ "timeout|ERROR"' 0 1h)"
shoot logs-dark 1 "$(link 'pod{namespace="shop"} |~ "timeout|ERROR"' 0 1h)"
shoot graph-light 0 "$(link 'sum by (namespace) (rate(http_requests_total[5m]))' 0 3h g0.stacked=1)"
shoot graph-dark 1 "$(link 'sum by (namespace) (rate(http_requests_total[5m]))' 0 3h g0.stacked=1)"
shoot mixed-light 0 "$(link 'sum(rate(http_requests_total{namespace="shop",code=~"5.."}[5m])) / sum(rate(pod{namespace="shop"} |= "timeout" [5m]))' 0 1h)"
shoot table-light 0 "$(link 'sum by (namespace, code) (rate(http_requests_total[5m]))' 1 1h)"
shoot status-light 0 "/"

#!/usr/bin/env bash
# Dashboard replay: a 12-panel dashboard over the last 24 hours at Grafana's step (1m for a
# 24h panel), refreshed 20 times, through two Janus side by side on the same Prometheus and
# copies of the same log tree: one with the results cache off (--query.cache-size=0), one with
# it on (defaults: split 24h, freshness 10m, 256MB). Each refresh asks the 12 panels six at a
# time (as a browser does) of the cache-off Janus, then of the cache-on one.
#
# (curl --parallel, one process per refresh.)
# Per refresh: the samples Prometheus loaded for the queries it was asked (from its query log,
# `totalQueryableSamples`), the bytes of log files Janus read (janus_store_scanned_bytes_total),
# and the dashboard's latency (all 12 panels answered). Data: dashboard_data.py (25 hours up to
# now; ~225k metric samples, ~900k log lines).
#
# usage: docs/benchmarks/dashboard.sh [refreshes] [seconds-between] [pods-per-namespace]
#        (needs prometheus, promtool, curl; pods default 3: 88 metric series)
set -euo pipefail
cd "$(dirname "$0")/../.."
refreshes=${1:-20}
pause=${2:-3}
pods=${3:-3}
for tool in prometheus promtool curl python3; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
cargo build --release --quiet

work=$(mktemp -d /tmp/janus-dashboard.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 600); do curl -fs -o /dev/null "$1" && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }

python3 docs/benchmarks/dashboard_data.py "$work/metrics.om" "$work/logs-off" "$pods"
cp -r "$work/logs-off" "$work/logs-on"
promtool tsdb create-blocks-from openmetrics "$work/metrics.om" "$work/tsdb" >/dev/null
cat >"$work/prometheus.yml" <<YAML
global:
  query_log_file: $work/query.log
YAML
pp=$(port); off=$(port); on=$(port)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:$pp >"$work/prom.log" 2>&1 &
pids+=($!)
ready "http://127.0.0.1:$pp/-/ready"
./target/release/janus --web.listen-address=127.0.0.1:$off --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/logs-off" --query.cache-size=0 --log.level=error &
pids+=($!)
./target/release/janus --web.listen-address=127.0.0.1:$on --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/logs-on" --log.level=error &
pids+=($!)
janus_on_pid=${pids[-1]}
ready "http://127.0.0.1:$off/-/ready"
ready "http://127.0.0.1:$on/-/ready"
touch "$work/query.log"

# The panels: eight metric range queries, two log metrics, one log metric over a metric (mixed),
# one newest-100 log panel.
panels=(
  'sum by (namespace) (rate(http_requests_total[5m]))'
  'avg(cpu_usage_ratio)'
  'histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))'
  'sum(rate(http_requests_total{code="500"}[5m])) / sum(rate(http_requests_total[5m]))'
  'max by (pod) (cpu_usage_ratio)'
  'sum by (job) (up)'
  'sum by (namespace) (increase(http_requests_total[1h]))'
  'count(cpu_usage_ratio > 0.8)'
  'sum by (namespace) (count_over_time(pod{namespace=~".+"}[5m]))'
  'sum(rate(pod{namespace="shop"} |= "ERROR" [5m]))'
  'sum(rate(pod{namespace="shop"} |= "ERROR" [5m])) / sum(rate(http_requests_total{namespace="shop"}[5m]))'
)
lines_panel='pod{namespace="shop"} |= "ERROR"'

counter() { # url metric-line-prefix
  curl -fs "$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { print $NF; found=1 } END { if (!found) print 0 }'
}
samples_since() { # line-offset
  tail -n +"$(( $1 + 1 ))" "$work/query.log" | python3 -c '
import json, sys
total = 0
for line in sys.stdin:
    try:
        total += json.loads(line)["stats"]["samples"]["totalQueryableSamples"]
    except (KeyError, ValueError):
        pass
print(total)'
}
refresh() { # base-url -> prints "samples bytes seconds"
  local base=$1 step=60
  local end=$(( $(date +%s) / step * step )) start
  start=$(( end - 86400 ))
  local before_lines before_bytes t0 t1
  before_lines=$(wc -l <"$work/query.log")
  before_bytes=$(counter "$base" janus_store_scanned_bytes_total)
  # One curl for the whole refresh, six requests at a time over kept-alive connections (as a
  # browser asks a dashboard's panels), so process start-up is not part of the latency.
  local args=(-Z --parallel-max 6 --fail --no-progress-meter)
  local first=1
  for q in "${panels[@]}"; do
    [ $first = 1 ] || args+=(--next)
    first=0
    args+=(-o /dev/null -G "$base/api/v1/query_range" --data-urlencode "query=$q"
      -d "start=$start" -d "end=$end" -d step=60)
  done
  args+=(--next -o /dev/null -G "$base/api/v1/query_range" --data-urlencode "query=$lines_panel"
    -d "start=$start" -d "end=$end" -d limit=100)
  t0=$(date +%s.%N)
  curl "${args[@]}"
  t1=$(date +%s.%N)
  sleep 0.2 # the query log is written as each query ends
  local samples bytes
  samples=$(samples_since "$before_lines")
  bytes=$(awk -v a="$before_bytes" -v b="$(counter "$base" janus_store_scanned_bytes_total)" 'BEGIN { printf "%.0f", b - a }')
  awk -v s="$samples" -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%s %s %.3f\n", s, b, z - a }'
}

printf '| refresh | cache off: samples | log bytes | seconds | cache on: samples | log bytes | seconds |\n|---:|---:|---:|---:|---:|---:|---:|\n'
: >"$work/results"
for r in $(seq "$refreshes"); do
  read -r so bo to <<<"$(refresh "http://127.0.0.1:$off")"
  read -r sn bn tn <<<"$(refresh "http://127.0.0.1:$on")"
  printf '| %d | %s | %s | %s | %s | %s | %s |\n' "$r" "$so" "$bo" "$to" "$sn" "$bn" "$tn"
  echo "$r $so $bo $to $sn $bn $tn" >>"$work/results"
  sleep "$pause"
done
echo
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
later = rows[1:]
def med(i): return statistics.median(r[i] for r in later)
so, bo, to, sn, bn, tn = (med(i) for i in range(1, 7))
print("| after the first refresh (median) | cache off | cache on | on / off |")
print("|---|---:|---:|---:|")
for name, a, b in [("upstream samples per refresh", so, sn), ("log bytes read per refresh", bo, bn), ("dashboard latency p50 (s)", to, tn)]:
    ratio = f"{b / a:.4f}" if a else "-"
    print(f"| {name} | {a:,.0f} | {b:,.0f} | {ratio} |" if name != "dashboard latency p50 (s)" else f"| {name} | {a:.3f} | {b:.3f} | {ratio} |")
first = rows[0]
print()
print(f"first refresh: cache off {first[3]:.3f} s, cache on {first[6]:.3f} s (filling the cache)")
PY
echo
echo "cache-on Janus: peak RSS $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$janus_on_pid/status)," \
  "cache holds $(counter "http://127.0.0.1:$on" 'janus_cache_bytes{face="metric"}') metric bytes and" \
  "$(counter "http://127.0.0.1:$on" 'janus_cache_bytes{face="log"}') log bytes (limit 256MB)"

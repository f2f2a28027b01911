#!/usr/bin/env bash
# Gateway benchmark: the same requests straight to Prometheus, through Janus, and (when nginx is
# installed) through nginx's proxy_pass as a reference for what any extra hop costs on this
# machine, side by side in one run with wrk; then Janus's peak RSS while it streams > 50 MB.
#
# usage: docs/benchmarks/gateway.sh [seconds-per-wrk-run]
#        (needs prometheus, promtool, wrk, curl; nginx optional: apt-get install -y nginx-light)
set -euo pipefail
cd "$(dirname "$0")/../.."
. docs/benchmarks/nginx_proxy.sh
secs=${1:-10}
for tool in prometheus promtool wrk curl; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install -y prometheus wrk curl)" >&2; exit 1; }
done
cargo build --release --quiet

work=$(mktemp -d /tmp/janus-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 300); do curl -fs -o /dev/null "$1" && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }

echo "generating 2,000 extra series x 1,441 samples (6 h at 15 s)..." >&2
python3 compat-tests/gen_metrics.py "$work/m.om" "$work/m.prom" --bench-series 2000
promtool tsdb create-blocks-from openmetrics "$work/m.om" "$work/tsdb" >/dev/null
pp=$(port); jp=$(port)
prometheus --config.file=compat-tests/prometheus.yml --storage.tsdb.path="$work/tsdb" \
  --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:$pp >"$work/prom.log" 2>&1 &
pids+=($!)
ready "http://127.0.0.1:$pp/-/ready"
./target/release/janus --web.listen-address=127.0.0.1:$jp --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/store" 2>/dev/null &
jpid=$!; pids+=($jpid)
ready "http://127.0.0.1:$jp/-/ready"

P=http://127.0.0.1:$pp; J=http://127.0.0.1:$jp
targets="direct janus"
if command -v nginx >/dev/null; then
  np=$(port)
  nginx_write_config "$work" "$pp" "$np" auto
  nginx -c "$work/nginx/nginx.conf" &
  pids+=($!)
  ready "http://127.0.0.1:$np/-/ready"
  N=http://127.0.0.1:$np
  targets="direct janus nginx"
fi
cheap='/api/v1/query?query=up&time=1704078000'
range='/api/v1/query_range?query=bench_load&start=1704067200&end=1704088800&step=60'
huge='/api/v1/query_range?query=bench_load&start=1704067200&end=1704088800&step=15'
size() { curl -s -o /dev/null -w '%{size_download}' "$1"; }
echo "range answer: $(( $(size "$P$range") / 1000000 )) MB; huge answer: $(( $(size "$P$huge") / 1000000 )) MB" >&2

# wrk's summary → "p50_ms req_per_s"
measure() { # url connections threads
  wrk -t"$3" -c"$2" -d"${secs}s" --latency "$1" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)} /^Requests\/sec/ {rps=$2}
    END {printf "%.3f %.3f %.1f", p50, p99, rps}'
}

printf '| workload | target | p50 ms | p99 ms | req/s |\n|---|---|---:|---:|---:|\n'
declare -A res
for w in "cheap c=1:$cheap:1:1" "cheap c=16:$cheap:16:2" "range ${secs}s c=2:$range:2:1"; do
  IFS=: read -r name path c t <<<"$w"
  for target in $targets; do
    case $target in direct) base=$P ;; janus) base=$J ;; nginx) base=$N ;; esac
    read -r p50 p99 rps <<<"$(measure "$base$path" "$c" "$t")"
    res[$name.$target]="$p50 $rps"
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$target" "$p50" "$p99" "$rps"
  done
done
echo
printf '| workload | proxy | added p50 latency ms | throughput / direct |\n|---|---|---:|---:|\n'
for name in "cheap c=1" "cheap c=16" "range ${secs}s c=2"; do
  read -r dp drps <<<"${res[$name.direct]}"
  for target in ${targets#direct }; do
    read -r tp50 trps <<<"${res[$name.$target]}"
    awk -v n="$name" -v t="$target" -v a="$dp" -v b="$tp50" -v x="$drps" -v y="$trps" \
      'BEGIN { printf "| %s | %s | %.3f | %.1f%% |\n", n, t, b-a, 100*y/x }'
  done
done

# Peak RSS with the results cache on (the default, 256 MB) and off: after the same range load,
# then streaming the huge answer to a fast reader and to a slow one (backpressure), twice.
jop=$(port)
./target/release/janus --web.listen-address=127.0.0.1:$jop --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/store-off" --query.cache-size=0 2>/dev/null &
jopid=$!; pids+=($jopid)
ready "http://127.0.0.1:$jop/-/ready"
rss() { awk '/VmHWM/ {print $2/1024}' /proc/$1/status; }
echo
printf '| Janus peak RSS (MB) | cache on (256 MB) | cache off |\n|---|---:|---:|\n'
declare -A peak
for mode in on off; do
  case $mode in on) pid=$jpid; base=$J ;; off) pid=$jopid; base=http://127.0.0.1:$jop ;; esac
  measure "$base$cheap" 16 2 >/dev/null
  measure "$base$range" 2 1 >/dev/null
  peak[$mode.wrk]=$(rss $pid)
  curl -s -o /dev/null "$base$huge"; curl -s -o /dev/null "$base$huge"
  peak[$mode.fast]=$(rss $pid)
  curl -s -o /dev/null --limit-rate 20M "$base$huge"
  peak[$mode.slow]=$(rss $pid)
done
mb=$(( $(size "$P$huge") / 1000000 ))
printf '| after the cheap and range wrk runs | %.1f | %.1f |\n' "${peak[on.wrk]}" "${peak[off.wrk]}"
printf '| after streaming the %s MB answer twice to a fast reader | %.1f | %.1f |\n' "$mb" "${peak[on.fast]}" "${peak[off.fast]}"
printf '| after streaming it to a 20 MB/s reader | %.1f | %.1f |\n' "${peak[on.slow]}" "${peak[off.slow]}"

#!/usr/bin/env bash
# CPU per forwarded request: Janus (results cache off, so every request goes upstream) against
# nginx (proxy_pass, keep-alive to the upstream, buffering off, one worker), both in front of the
# same Prometheus, the same cheap query at a fixed time, wrk c=8, alternating rounds. CPU is the
# proxy process's user + system time from /proc/<pid>/stat over the run, divided by the requests
# wrk completed: what the hop costs, whatever the machine's throughput.
#
# usage: docs/benchmarks/proxy_cpu.sh [seconds-per-run] [rounds] [JANUS_BINARY] [OLD_JANUS_BINARY]
#        (with an old binary, it runs beside the others as "janus-old": a change's effect in one run)
#        (needs prometheus, promtool, wrk, curl, nginx: apt-get install -y nginx-light)
set -euo pipefail
cd "$(dirname "$0")/../.."
. docs/benchmarks/nginx_proxy.sh
secs=${1:-6}
rounds=${2:-3}
janus=${3:-target/release/janus}
old=${4:-}
for tool in prometheus promtool wrk curl nginx; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install -y prometheus wrk curl nginx-light)" >&2; exit 1; }
done
[ -n "${3:-}" ] || cargo build --release --quiet --bin janus
work=$(mktemp -d /tmp/janus-cpu.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 300); do curl -fs -o /dev/null "$1" && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
python3 compat-tests/gen_metrics.py "$work/m.om" "$work/m.prom"
promtool tsdb create-blocks-from openmetrics "$work/m.om" "$work/tsdb" >/dev/null
pp=$(port); jp=$(port); np=$(port)
prometheus --config.file=compat-tests/prometheus.yml --storage.tsdb.path="$work/tsdb" \
  --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:$pp >"$work/prom.log" 2>&1 &
pids+=($!)
ready "http://127.0.0.1:$pp/-/ready"
"$janus" --web.listen-address=127.0.0.1:$jp --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/store" --query.cache-size=0 2>/dev/null >/dev/null &
jpid=$!; pids+=($jpid)
targets="janus nginx"
if [ -n "$old" ]; then
  op=$(port)
  "$old" --web.listen-address=127.0.0.1:$op --upstream.url=http://127.0.0.1:$pp \
    --storage.path="$work/store-old" --query.cache-size=0 2>/dev/null >/dev/null &
  opid=$!; pids+=($opid)
  ready "http://127.0.0.1:$op/-/ready"
  targets="janus-old janus nginx"
fi
nginx_write_config "$work" "$pp" "$np" 1
nginx -c "$work/nginx/nginx.conf" &
npid=$!; pids+=($npid)
ready "http://127.0.0.1:$jp/-/ready"
ready "http://127.0.0.1:$np/-/ready"
q='/api/v1/query?query=up&time=1704078000'
# user + system clock ticks of a process and its threads (nginx: the master and its worker)
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
hz=$(getconf CLK_TCK)
printf '| round | proxy | req/s | CPU µs per request |\n|---|---|---:|---:|\n'
declare -A sum
for round in $(seq "$rounds"); do
  for target in $targets; do
    case $target in
      janus) base=http://127.0.0.1:$jp; procs=$jpid ;;
      janus-old) base=http://127.0.0.1:$op; procs=$opid ;;
      nginx) base=http://127.0.0.1:$np; procs="$npid $(pgrep -P $npid | tr '\n' ' ')" ;;
    esac
    before=$(ticks $procs)
    out=$(wrk -t2 -c8 -d"${secs}s" "$base$q" 2>/dev/null)
    after=$(ticks $procs)
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    us=$(awk -v t=$((after - before)) -v hz=$hz -v n=$reqs 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    sum[$target]=$(awk -v a="${sum[$target]:-0}" -v b="$us" 'BEGIN { print a + b }')
    printf '| %s | %s | %s | %s |\n' "$round" "$target" "$rps" "$us"
  done
done
awk -v j="${sum[janus]}" -v n="${sum[nginx]}" -v r="$rounds" \
  'BEGIN { printf "\nmean CPU per request: janus %.1f µs, nginx %.1f µs, ratio %.2f×\n", j/r, n/r, j/n }'
if [ -n "$old" ]; then
  awk -v o="${sum[janus-old]}" -v n="${sum[nginx]}" -v r="$rounds" \
    'BEGIN { printf "old janus %.1f µs, ratio %.2f×\n", o/r, o/n }'
fi

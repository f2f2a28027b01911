#!/usr/bin/env bash
# Log-metrics benchmark: a dashboard query over the generated tree (docs/benchmarks/logs.sh makes
# it) at step 1m over the whole 12 h, against one plain filter scan of the same lines (the same
# count as a single window, and rg -F -c), side by side in one run; peak RSS. Then a mixed query
# against a real Prometheus (the compatibility data) next to its two parts run alone.
#
# usage: docs/benchmarks/log_metrics.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/janus-logbench}
[ -d "$dir/pod" ] || { echo "generate the tree first: docs/benchmarks/logs.sh $dir" >&2; exit 1; }
cargo build --release --quiet --bin janus
cat "$dir"/pod/team-*/* >/dev/null
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/janus-lm.XXXXXX)
python3 compat-tests/gen_metrics.py "$work/m.om" "$work/m.prom"
promtool tsdb create-blocks-from openmetrics "$work/m.om" "$work/tsdb" >/dev/null
pport=$(free)
prometheus --config.file=compat-tests/prometheus.yml --storage.tsdb.path="$work/tsdb" \
  --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:$pport >/dev/null 2>&1 &
ppid=$!
port=$(free)
./target/release/janus --web.listen-address=127.0.0.1:$port --storage.path="$dir" \
  --upstream.url=http://127.0.0.1:$pport --retention.time=0 2>/dev/null &
jpid=$!
trap 'kill $jpid $ppid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$pport/-/ready" && break; sleep 0.1; done
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.05; done
ms() { local s; s=$(date +%s%N); "$@" >/tmp/janus-lm.out; echo $(( ($(date +%s%N) - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
repeat() { local n=$1; shift; for _ in $(seq "$n"); do ms "$@"; done | median; }
range_q() { curl -s -G "http://127.0.0.1:$port/api/v1/query_range" --data-urlencode "query=$1" \
  -d start=2024-01-01T00:05:00Z -d end=2024-01-01T12:00:00Z -d step=60; }
instant_q() { curl -s -G "http://127.0.0.1:$port/api/v1/query" --data-urlencode "query=$1" \
  -d time=2024-01-01T12:00:00Z; }

metric='sum by (namespace) (count_over_time(pod{namespace=~"team-.*"} |= "x" [5m]))'
plain='sum(count_over_time(pod{namespace=~"team-.*"} |= "x" [12h]))'
range_q "$metric" >/dev/null # builds the indexes
t_metric=$(repeat 5 range_q "$metric")
points=$(range_q "$metric" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]["result"]; print(len(d), sum(len(s["values"]) for s in d))')
t_plain=$(repeat 5 instant_q "$plain")
lines=$(instant_q "$plain" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
t_rg=$(repeat 5 rg -F -c x "$dir"/pod/team-*)
rg_lines=$(rg -F -c x "$dir"/pod/team-* | awk -F: '{s+=$NF} END {print s}')
rss=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$jpid/status)
echo "| query | ms | ratio to the plain scan |"
echo "|---|---:|---:|"
echo "| \`${metric//|/\\|}\`, 12 h at step 1m ($points series/points) | $t_metric | $(awk -v a="$t_metric" -v b="$t_plain" 'BEGIN {printf "%.2f", a/b}') |"
echo "| plain scan: the same lines counted once (\`[12h]\` window; $lines lines) | $t_plain | 1.00 |"
echo "| \`rg -F -c x\` over the same files ($rg_lines lines) | $t_rg | $(awk -v a="$t_rg" -v b="$t_plain" 'BEGIN {printf "%.2f", a/b}') |"

# A mixed query over 6 h at step 1m, and its two parts alone.
mixed_q() { curl -s -G "$1/api/v1/query_range" --data-urlencode "query=$2" \
  -d start=2024-01-01T00:05:00Z -d end=2024-01-01T06:00:00Z -d step=60; }
log_part='sum(count_over_time(pod{namespace=~"team-.*"} |= "x" [5m]))'
metric_part='sum(rate(http_requests_total[5m]))'
J=http://127.0.0.1:$port; P=http://127.0.0.1:$pport
mixed_q "$J" "$log_part / $metric_part" >/dev/null
t_log=$(repeat 5 mixed_q "$J" "$log_part")
t_up=$(repeat 5 mixed_q "$P" "$metric_part")
t_mixed=$(repeat 5 mixed_q "$J" "$log_part / $metric_part")
rss=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$jpid/status)
echo
echo "| 6 h at step 1m | ms |"
echo "|---|---:|"
echo "| log part alone through Janus: \`${log_part//|/\\|}\` | $t_log |"
echo "| upstream part alone, straight to Prometheus: \`$metric_part\` | $t_up |"
echo "| the mixed query through Janus: log part / upstream part | $t_mixed |"
echo
echo "Janus peak RSS: $rss MB"

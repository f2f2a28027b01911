#!/usr/bin/env bash
# A parser whose label comes last in the line (Performance II): `| logfmt | status >= 500` where
# `status` follows fields that change on every line (a trace id, a span id, a user, a duration,
# a quoted message), and `| json | http_status >= 500` with the status nested, each against the
# same count without a parser over the same files, warm page cache, in one run (medians of 5).
#
# usage: docs/benchmarks/parsers_late.sh [BINARY] [DIR] [MB]  (defaults: this tree's release
#        build, /tmp/janus-parselate, 300 MB of each)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ] && [ -x "$1" ]; then bin=$1; shift; else cargo build --release --quiet --bin janus; bin=./target/release/janus; fi
dir=${1:-/tmp/janus-parselate}
mb=${2:-300}
cargo build --release --quiet --example gen_structured
if [ ! -d "$dir/pod" ]; then
  echo "generating 2 x $mb MB under $dir ..." >&2
  ./target/release/examples/gen_structured "$dir" "$mb" late
  touch -d '2 hours ago' "$dir"/pod/*/*
fi
cat "$dir"/pod/*/* >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --web.listen-address=127.0.0.1:$port --storage.path="$dir" \
  --upstream.url=http://127.0.0.1:1 --retention.time=0 --query.cache-size=0 2>/dev/null &
jpid=$!
trap 'kill $jpid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.05; done
ms() { local s; s=$(date +%s%N); "$@" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
q() {
  curl -s -o /tmp/janus-parselate.json -G "http://127.0.0.1:$port/loki/api/v1/query" \
    --data-urlencode "query=$1" -d time=2024-01-01T04:00:00Z
}
run() { q "$1"; for _ in 1 2 3 4 5; do ms q "$1"; done | median; }
value() { python3 -c 'import json; r = json.load(open("/tmp/janus-parselate.json"))["data"]["result"]; print(r[0]["value"][1] if r else "none")'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| query (4 h, one pass, $mb MB) | ms | × the count without a parser | result |"
echo "|---|---:|---:|---|"
for pair in "logfmt_late|logfmt | status >= 500" "json_late|json | http_status >= 500"; do
  ns=${pair%%|*}; stages=${pair#*|}
  count=$(run "sum(count_over_time({namespace=\"$ns\"}[4h]))")
  echo "| \`sum(count_over_time({namespace=\"$ns\"}[4h]))\` | $count | 1.00 | $(value) |"
  t=$(run "sum(count_over_time({namespace=\"$ns\"} | $stages [4h]))")
  echo "| \`sum(count_over_time({namespace=\"$ns\"} | $stages [4h]))\` | $t | $(ratio "$t" "$count") | $(value) |"
done

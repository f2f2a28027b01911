#!/usr/bin/env bash
# The log store seam, side by side: two builds (OLD, NEW release binaries) on the same warm
# Lethe tree, alternating, each workload repeated: a literal scan over 12 hours, the newest 1,000
# lines of a large hour, a log metric over 12 hours, and pushes (protobuf, 8 pushers). Medians;
# the ratio NEW/OLD says what the seam costs (1.00 = nothing).
#
# usage: docs/benchmarks/seam_ab.sh OLD_BINARY NEW_BINARY [DIR] [ROUNDS]
#        (the tree is generated once with tools/gen_logs.rs: 512 MB + a 256 MB hour)
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1; new=$2; dir=${3:-/tmp/janus-seambench}; rounds=${4:-5}
cargo build --release --quiet --example gen_logs --example push_load
if [ ! -d "$dir/pod" ]; then ./target/release/examples/gen_logs "$dir" 512 256 >/dev/null; fi
cat "$dir"/pod/*/* >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { local s; s=$(date +%s%N); "$@" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
work=$(mktemp -d /tmp/janus-seam.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
start() { # binary storage
  p=$(port)
  "$1" --web.listen-address=127.0.0.1:$p --upstream.url=http://127.0.0.1:1 --storage.path="$2" \
    --query.log-limit=100000 --retention.time=0 --query.cache-size=0 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$p/-/ready" && break; sleep 0.05; done
  url=http://127.0.0.1:$p
}
stop() { kill $pid; wait $pid 2>/dev/null || true; pid=; }
q() { curl -s -o /dev/null -G "$url/api/v1/query_range" --data-urlencode "query=$1" -d "start=$2" -d "end=$3" "${@:4}"; }
declare -A t
for round in $(seq "$rounds"); do
  for which in old new; do
    bin=$old; [ $which = new ] && bin=$new
    start "$bin" "$dir"
    q 'pod{namespace=~"team-.*"} |= "XYZZY-rare-token"' 2024-01-01T00:00:00Z 2024-01-01T11:59:59.999Z # warm indexes
    t[$which.scan]+="$(ms q 'pod{namespace=~"team-.*"} |= "XYZZY-rare-token"' 2024-01-01T00:00:00Z 2024-01-01T11:59:59.999Z) "
    t[$which.newest]+="$(ms q 'pod{namespace="bighour"}' 2024-01-01T12:00:00Z 2024-01-01T12:59:59.999Z -d limit=1000) "
    t[$which.metric]+="$(ms q 'sum by (namespace) (count_over_time(pod{namespace=~"team-.*"} |= "error" [5m]))' 2024-01-01T00:00:00Z 2024-01-01T11:59:59Z -d step=60) "
    stop
    rm -rf "$work/store"; start "$bin" "$work/store"
    lps=$(./target/release/examples/push_load "$url" 4 8 | sed -n 's/.*lines_per_second=\([0-9.]*\).*/\1/p')
    t[$which.push]+="${lps%.*} "
    stop
  done
done
echo "| workload (median of $rounds, alternating) | old | new | new / old |"
echo "|---|---:|---:|---:|"
for w in scan newest metric push; do
  o=$(echo ${t[old.$w]} | tr ' ' '\n' | median); n=$(echo ${t[new.$w]} | tr ' ' '\n' | median)
  unit=ms; [ $w = push ] && unit="lines/s"
  awk -v w="$w" -v o="$o" -v n="$n" -v u="$unit" 'BEGIN { printf "| %s (%s) | %s | %s | %.2f |\n", w, u, o, n, n / o }'
done

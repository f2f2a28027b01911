#!/usr/bin/env bash
# A/B of the passthrough path: two Janus binaries in front of one Prometheus, alternating 6 s wrk
# runs of the cheap query (three rounds at c=16, three at c=1), so that a change's cost shows
# apart from this machine's drift.
#
# usage: docs/benchmarks/gateway_ab.sh OLD_BINARY [NEW_BINARY]   (default NEW: target/release/janus)
#        (build OLD from another commit: git worktree add /tmp/old REV && cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${1:?usage: gateway_ab.sh OLD_BINARY [NEW_BINARY]}
new=${2:-target/release/janus}
[ -n "${2:-}" ] || cargo build --release --quiet --bin janus
work=$(mktemp -d /tmp/janus-ab.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 300); do curl -fs -o /dev/null "$1" && return; sleep 0.1; done; exit 1; }
python3 compat-tests/gen_metrics.py "$work/m.om" "$work/m.prom"
promtool tsdb create-blocks-from openmetrics "$work/m.om" "$work/tsdb" >/dev/null
pp=$(port); a=$(port); b=$(port)
prometheus --config.file=compat-tests/prometheus.yml --storage.tsdb.path="$work/tsdb" --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:$pp >"$work/prom.log" 2>&1 &
pids+=($!)
ready "http://127.0.0.1:$pp/-/ready"
"$old" --web.listen-address=127.0.0.1:$a --upstream.url=http://127.0.0.1:$pp --storage.path="$work/s1" 2>/dev/null & pids+=($!)
"$new" --web.listen-address=127.0.0.1:$b --upstream.url=http://127.0.0.1:$pp --storage.path="$work/s2" 2>/dev/null & pids+=($!)
ready "http://127.0.0.1:$a/-/ready"; ready "http://127.0.0.1:$b/-/ready"
q='/api/v1/query?query=up&time=1704078000'
for c in 16 1; do
  for round in 1 2 3; do
    for t in old:$a new:$b; do
      name=${t%%:*}; p=${t##*:}
      rps=$(wrk -t$([ $c = 1 ] && echo 1 || echo 2) -c$c -d6s "http://127.0.0.1:$p$q" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
      echo "c=$c round $round $name $rps"
    done
  done
done

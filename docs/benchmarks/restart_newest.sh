#!/usr/bin/env bash
# The first newest-N after a restart (Performance II): a sealed 256 MB hour that no query
# indexed before the restart (a literal search reads whole hours without indexing them, by
# design). Two runs on the same tree: restarted at once (as before: nothing indexed it), and
# restarted after the background pass over files at rest has run (five minutes after a start).
# Each against a full filtered scan of that hour on the same instance. Then a third: an hour
# pushed through Janus (tools/push_load.rs, 20 s at concurrency 8), never queried, Janus
# stopped and started again: the writer built its index as it appended and wrote it at shutdown.
#
# usage: docs/benchmarks/restart_newest.sh [BINARY] [DIR] [BIG_HOUR_MB]   (default 512, as the issue)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ] && [ -x "$1" ]; then bin=$1; shift; else cargo build --release --quiet; bin=./target/release/janus; fi
dir=${1:-/tmp/janus-restartbench}
big=${2:-512}
cargo build --release --quiet --example gen_logs --example push_load
if [ ! -d "$dir/pod" ]; then ./target/release/examples/gen_logs "$dir" 512 "$big" >/dev/null; fi
if [ "$(du -sm "$dir/pod/bighour" | cut -f1)" -lt $((big * 9 / 10)) ]; then
  echo "$dir holds a smaller big hour than $big MB: remove it to generate it again" >&2; exit 1
fi
cat "$dir"/pod/*/* >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { local s; s=$(date +%s%N); "$@" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); }
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; true' EXIT
start() {
  p=$(port)
  "$bin" --web.listen-address=127.0.0.1:$p --upstream.url=http://127.0.0.1:1 --storage.path="$dir" \
    --retention.time=0 --query.cache-size=0 --query.log-limit=100000 2>/dev/null &
  pid=$!
  for _ in $(seq 200); do curl -fs -o /dev/null "http://127.0.0.1:$p/-/ready" && break; sleep 0.05; done
  url=http://127.0.0.1:$p
}
stop() { kill $pid; wait $pid 2>/dev/null || true; pid=; }
q() { curl -s -o /dev/null -G "$url/api/v1/query_range" --data-urlencode "query=$1" \
  -d start=2024-01-01T12:00:00Z -d end=2024-01-01T12:59:59.999Z "${@:2}"; }
written() { curl -s "$url/metrics" | awk '$1 == "janus_store_index_files_written_total" {print $2}'; }
echo "| restart | newest 1,000 of the hour, first ask (ms) | full filtered scan of the hour (ms) | ratio |"
echo "|---|---:|---:|---:|"
for mode in at-once after-the-background-pass; do
  rm -rf "$dir/.janus/index"
  start
  q 'pod{namespace="bighour"} |= "XYZZY-rare-token"' # read whole, not indexed
  if [ $mode = after-the-background-pass ]; then
    for _ in $(seq 480); do
      n=$(written); [ "${n%.*}" -ge 1 ] 2>/dev/null && break; sleep 1
    done
    sleep 5 # the pass goes on over the other files
  fi
  stop
  start
  newest=$(ms q 'pod{namespace="bighour"}' -d limit=1000)
  scan=$(ms q 'pod{namespace="bighour"} |= "XYZZY-rare-token"')
  stop
  awk -v m="$mode" -v n="$newest" -v s="$scan" 'BEGIN { printf "| %s | %d | %d | %.2f |\n", m, n, s, n / s }'
done

# Written by Janus: a fresh store fed over the push API, stopped, started, asked.
pushed=$(mktemp -d /tmp/janus-restart-pushed.XXXXXX)
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$pushed"; true' EXIT
dir=$pushed start
./target/release/examples/push_load "$url" 20 8 >/dev/null
mb=$(du -sm "$pushed/pod/load-0" | cut -f1)
stop
dir=$pushed start
hour=$(date -u +%Y-%m-%dT%H:00:00Z)
qp() { curl -s -o /dev/null -G "$url/api/v1/query_range" --data-urlencode "query=$1" \
  -d start="$hour" -d end="$(date -u -d '+1 hour' +%Y-%m-%dT%H:00:00Z)" "${@:2}"; }
newest=$(ms qp 'pod{namespace="load-0"}' -d limit=1000)
indexed=$(curl -s "$url/metrics" | awk '$1 == "janus_store_indexed_bytes_total" {print $2}')
scan=$(ms qp 'pod{namespace="load-0"} |= "XYZZY-rare-token"')
stop
awk -v n="$newest" -v s="$scan" -v mb="$mb" -v i="${indexed:-0}" 'BEGIN { printf "| written by Janus (%d MB in the namespace; %d bytes read to index) | %d | %d | %.2f |\n", mb, i, n, s, n / s }'

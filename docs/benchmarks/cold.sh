#!/usr/bin/env bash
# Cold queries: Janus started on a tree it has never indexed, its first query timed against rg
# on the same files in the same run; then Janus restarted with the indexes it persisted, its
# first newest-1000 of the big hour timed against a full filtered scan of that hour. Page cache
# warm for every tool; when the machine lets root drop the cache, the first-query comparison is
# repeated with it dropped before each tool.
#
# usage: docs/benchmarks/cold.sh [DIR]   (the tree of docs/benchmarks/logs.sh; needs rg)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/janus-logbench}
command -v rg >/dev/null || { echo "missing rg (apt-get install -y ripgrep)" >&2; exit 1; }
cargo build --release --quiet --bin janus --example gen_logs
if [ ! -d "$dir/pod" ]; then
  echo "generating the tree of logs.sh under $dir ..." >&2
  ./target/release/examples/gen_logs "$dir" 2048 1024 >/dev/null
fi
# Files at rest (their indexes may be persisted), dated before anything is indexed.
find "$dir/pod" -name '*.log' -newermt '-1 minute' -exec touch -d '2 hours ago' {} +
warm_cache() { cat "$dir"/pod/*/* >/dev/null; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
jpid=
start() {
  ./target/release/janus --web.listen-address=127.0.0.1:$port --storage.path="$dir" \
    --upstream.url=http://127.0.0.1:1 --query.log-limit=100000 --retention.time=0 2>/dev/null &
  jpid=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready" && return; sleep 0.05; done
}
stop() { kill "$jpid" 2>/dev/null || true; wait "$jpid" 2>/dev/null || true; }
trap stop EXIT

ms() { local s; s=$(date +%s%N); "$@" >/tmp/janus-cold.out; echo $(( ($(date +%s%N) - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
janus() { # query start end [extra curl args]
  curl -s -o /tmp/janus-cold.json -G "http://127.0.0.1:$port/api/v1/query_range" \
    --data-urlencode "query=$1" -d "start=$2" -d "end=$3" "${@:4}"
}
count() { python3 -c 'import json; print(len(json.load(open("/tmp/janus-cold.json"))["data"]["result"]))'; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

day=(2024-01-01T00:00:00Z 2024-01-01T11:59:59.999Z)
big=(2024-01-01T12:00:00Z 2024-01-01T12:59:59.999Z)
literal='XYZZY-rare-token'
regex='timeout after [0-9]+ms'
lit_query="pod{namespace=~\"team-.*\"} |= \"$literal\""
re_query="pod{namespace=~\"team-.*\"} |~ \"$regex\""

# The first query of a fresh Janus on a never-indexed tree, five times (each a new process and
# no persisted index), against rg on the same warm files.
first() { # query
  local times=()
  for _ in 1 2 3 4 5; do
    rm -rf "$dir/.janus/index"; warm_cache; start
    times+=("$(ms janus "$1" "${day[@]}")")
    stop
  done
  printf '%s\n' "${times[@]}" | median
}
lit_first=$(first "$lit_query"); lit_count=$(count)
re_first=$(first "$re_query"); re_count=$(count)
warm_cache
lit_rg=$(for _ in 1 2 3 4 5; do ms rg -F -c "$literal" "$dir"/pod/team-*; done | median)
re_rg=$(for _ in 1 2 3 4 5; do ms rg -c "$regex" "$dir"/pod/team-*; done | median)
lit_rg_count=$(rg -F -c "$literal" "$dir"/pod/team-* | awk -F: '{s+=$NF} END {print s+0}')
re_rg_count=$(rg -c "$regex" "$dir"/pod/team-* | awk -F: '{s+=$NF} END {print s+0}')
start; janus "$lit_query" "${day[@]}"
unindexed=$(metric janus_store_files_scanned_unindexed_total); indexed=$(metric janus_store_indexed_bytes_total)
stop

# Restarts: the big hour's index is built once and persisted; every later Janus reads it back.
rm -rf "$dir/.janus/index"; start
big_build=$(ms janus 'pod{namespace="bighour"}' "${big[@]}" -d limit=1000)
stop
restart_newest=(); restart_scan=()
for _ in 1 2 3 4 5; do
  warm_cache; start
  restart_newest+=("$(ms janus 'pod{namespace="bighour"}' "${big[@]}" -d limit=1000)")
  loaded=$(metric janus_store_index_files_loaded_total); reindexed=$(metric janus_store_indexed_bytes_total)
  stop
  # A full filtered scan of the same hour, as its first query too (covers the hour: no index).
  rm -rf "$dir/.janus/index.keep"; mv "$dir/.janus/index" "$dir/.janus/index.keep"
  warm_cache; start
  restart_scan+=("$(ms janus "pod{namespace=\"bighour\"} |= \"$literal\"" "${big[@]}")")
  stop
  mv "$dir/.janus/index.keep" "$dir/.janus/index"
done
newest=$(printf '%s\n' "${restart_newest[@]}" | median)
scan=$(printf '%s\n' "${restart_scan[@]}" | median)

echo "| first query of a fresh Janus, never-indexed tree (median of 5 starts) | Janus ms | rg ms | Janus / rg | matches (Janus = rg) |"
echo "|---|---:|---:|---:|---|"
echo "| \`\\|= \"$literal\"\` | $lit_first | $lit_rg | $(ratio "$lit_first" "$lit_rg") | $lit_count = $lit_rg_count |"
echo "| \`\\|~ \"$regex\"\` | $re_first | $re_rg | $(ratio "$re_first" "$re_rg") | $re_count = $re_rg_count |"
echo
echo "files read without an index by the first literal query: $unindexed; bytes indexed: $indexed"
echo
echo "| big hour ($(cat "$dir"/pod/bighour/* | wc -c) bytes), first query after a restart (median of 5) | ms |"
echo "|---|---:|"
echo "| newest 1000 lines, index read back from .janus/index | $newest |"
echo "| full filtered scan of the hour (\`|= \"$literal\"\`) | $scan |"
echo "| ratio | $(ratio "$newest" "$scan") |"
echo "| (building that index once, before the restarts) | $big_build |"
echo
echo "index files loaded by the last restart: $loaded; bytes it indexed: $reindexed"

if [ "$(id -u)" = 0 ] && sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
  drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
  rm -rf "$dir/.janus/index"; drop; start
  lit_cold_janus=$(ms janus "$lit_query" "${day[@]}"); stop
  drop; lit_cold_rg=$(ms rg -F -c "$literal" "$dir"/pod/team-*)
  echo
  echo "| page cache dropped before each | Janus ms | rg ms | Janus / rg |"
  echo "|---|---:|---:|---:|"
  echo "| \`\\|= \"$literal\"\`, first query | $lit_cold_janus | $lit_cold_rg | $(ratio "$lit_cold_janus" "$lit_cold_rg") |"
else
  echo
  echo "(this machine does not let the page cache be dropped: cold-cache rows skipped)"
fi
[ "$lit_count" = "$lit_rg_count" ] && [ "$re_count" = "$re_rg_count" ] || { echo "MISMATCH between Janus and rg counts" >&2; exit 1; }

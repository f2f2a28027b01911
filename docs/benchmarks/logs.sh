#!/usr/bin/env bash
# Log-face benchmark: Janus's scan against ripgrep and grep on the same warm files, in one run.
# Generates (once) a Lethe-layout tree: 24 namespaces x 12 hours (TREE_MB in all) plus one
# BIG_MB hour in namespace `bighour`.
#
# usage: docs/benchmarks/logs.sh [DIR] [TREE_MB] [BIG_MB]   (needs rg and grep; apt-get install -y ripgrep)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/janus-logbench}
tree_mb=${2:-2048}
big_mb=${3:-1024}
command -v rg >/dev/null || { echo "missing rg (apt-get install -y ripgrep)" >&2; exit 1; }
cargo build --release --quiet --bin janus --example gen_logs
if [ ! -d "$dir/pod" ]; then
  echo "generating $tree_mb MB + $big_mb MB under $dir ..." >&2
  ./target/release/examples/gen_logs "$dir" "$tree_mb" "$big_mb" >/dev/null
fi
tree_bytes=$(cat "$dir"/pod/team-*/* | wc -c)
# Never indexed: no index persisted by an earlier run (docs/benchmarks/cold.sh measures restarts).
rm -rf "$dir/.janus/index"
cat "$dir"/pod/*/* >/dev/null # warm the page cache for everyone

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/janus --web.listen-address=127.0.0.1:$port --storage.path="$dir" \
  --upstream.url=http://127.0.0.1:1 --query.log-limit=100000 --retention.time=0 2>/dev/null &
jpid=$!
trap 'kill $jpid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.05; done

# Output goes to a file, not /dev/null: GNU grep stops at the first match when it sees /dev/null.
ms() { local s; s=$(date +%s%N); "$@" >/tmp/janus-logbench.out; echo $(( ($(date +%s%N) - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
repeat() { local n=$1; shift; for _ in $(seq "$n"); do ms "$@"; done | median; }
janus() { # query start end [extra curl args]
  curl -s -o /tmp/janus-logbench.json -G "http://127.0.0.1:$port/api/v1/query_range" \
    --data-urlencode "query=$1" -d "start=$2" -d "end=$3" "${@:4}"
}
count() { python3 -c 'import json; print(len(json.load(open("/tmp/janus-logbench.json"))["data"]["result"]))'; }
sum_counts() { awk -F: '{s+=$NF} END {print s+0}'; }

day=(2024-01-01T00:00:00Z 2024-01-01T11:59:59.999Z)
big=(2024-01-01T12:00:00Z 2024-01-01T12:59:59.999Z)
literal='XYZZY-rare-token'
regex='timeout after [0-9]+ms'

lit_cold=$(ms janus "pod{namespace=~\"team-.*\"} |= \"$literal\"" "${day[@]}")
lit_janus=$(repeat 5 janus "pod{namespace=~\"team-.*\"} |= \"$literal\"" "${day[@]}")
lit_count=$(count)
lit_rg=$(repeat 5 rg -F -c "$literal" "$dir"/pod/team-*)
lit_rg_count=$(rg -F -c "$literal" "$dir"/pod/team-* | sum_counts)
lit_grep=$(repeat 3 grep -r -F -c "$literal" "$dir"/pod/team-*)
re_janus=$(repeat 5 janus "pod{namespace=~\"team-.*\"} |~ \"$regex\"" "${day[@]}")
re_count=$(count)
re_rg=$(repeat 5 rg -c "$regex" "$dir"/pod/team-*)
re_rg_count=$(rg -c "$regex" "$dir"/pod/team-* | sum_counts)
re_grep=$(repeat 3 grep -r -E -c "$regex" "$dir"/pod/team-*)
big_cold=$(ms janus 'pod{namespace="bighour"}' "${big[@]}" -d limit=1000)
big_warm=$(repeat 9 janus 'pod{namespace="bighour"}' "${big[@]}" -d limit=1000)
big_count=$(count)
big_bytes=$(cat "$dir"/pod/bighour/* | wc -c)
rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$jpid/status)

gbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", b / 1e9 / (t / 1000) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "tree: $(awk -v b="$tree_bytes" 'BEGIN {printf "%.2f", b/1e9}') GB in $(ls "$dir"/pod/team-* | grep -c log) hour files; big hour: $(awk -v b="$big_bytes" 'BEGIN {printf "%.2f", b/1e9}') GB"
echo
echo "| workload | Janus ms | rg ms | grep ms | Janus GB/s | Janus / rg | matches (Janus = rg) |"
echo "|---|---:|---:|---:|---:|---:|---|"
echo "| \`\\|= \"$literal\"\` (repeated) | $lit_janus | $lit_rg | $lit_grep | $(gbps "$tree_bytes" "$lit_janus") | $(ratio "$lit_janus" "$lit_rg") | $lit_count = $lit_rg_count |"
echo "| same, first query of a never-indexed tree | $lit_cold | | | $(gbps "$tree_bytes" "$lit_cold") | $(ratio "$lit_cold" "$lit_rg") | |"
echo "| \`\\|~ \"$regex\"\` | $re_janus | $re_rg | $re_grep | $(gbps "$tree_bytes" "$re_janus") | $(ratio "$re_janus" "$re_rg") | $re_count = $re_rg_count |"
echo
echo "| newest 1000 lines of the big hour | ms |"
echo "|---|---:|"
echo "| index warm (median of 9) | $big_warm |"
echo "| first query (builds the index of the hour) | $big_cold |"
echo
echo "lines returned: $big_count; Janus peak RSS over the whole run: $rss MB"
[ "$lit_count" = "$lit_rg_count" ] && [ "$re_count" = "$re_rg_count" ] || { echo "MISMATCH between Janus and rg counts" >&2; exit 1; }

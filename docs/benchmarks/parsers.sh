#!/usr/bin/env bash
# LogQL parsers: `| json` and `| logfmt` with label filters over ~1 GB of each, against a plain
# scan of the same files (a line filter whose literal is in no line: every byte read, nothing
# parsed), warm page cache, in one run. Each query is a metric query over the whole window, so
# every line the filters let through is parsed.
#
# usage: docs/benchmarks/parsers.sh [DIR] [MB]   (defaults: /tmp/janus-parsebench, 1024)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/janus-parsebench}
mb=${2:-1024}
cargo build --release --quiet --bin janus --example gen_structured
if [ ! -d "$dir/pod" ]; then
  echo "generating 2 x $mb MB under $dir ..." >&2
  ./target/release/examples/gen_structured "$dir" "$mb"
  touch -d '2 hours ago' "$dir"/pod/*/*
fi
cat "$dir"/pod/*/* >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/janus --web.listen-address=127.0.0.1:$port --storage.path="$dir" \
  --upstream.url=http://127.0.0.1:1 --retention.time=0 2>/dev/null &
jpid=$!
trap 'kill $jpid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.05; done

ms() { local s; s=$(date +%s%N); "$@" >/tmp/janus-parsebench.out; echo $(( ($(date +%s%N) - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
q() { # query [step]: instant at the window's end without a step, else a range query
  if [ -z "${2:-}" ]; then
    curl -s -o /tmp/janus-parsebench.json -G "http://127.0.0.1:$port/loki/api/v1/query" \
      --data-urlencode "query=$1" -d time=2024-01-01T04:00:00Z
  else
    curl -s -o /tmp/janus-parsebench.json -G "http://127.0.0.1:$port/loki/api/v1/query_range" \
      --data-urlencode "query=$1" -d start=2024-01-01T00:00:00Z -d end=2024-01-01T04:00:00Z -d "step=$2"
  fi
}
run() { for _ in 1 2 3 4 5; do ms q "$@"; done | median; }
value() { python3 -c '
import json
d = json.load(open("/tmp/janus-parsebench.json"))["data"]
print(" ".join("%s=%s" % (next(iter(s["metric"].values()), "all"), s["value"][1]) for s in d["result"]) if d["resultType"] == "vector" else "")'; }
bytes() { cat "$dir"/pod/"$1"/* | wc -c; }
gbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.2f", b / 1e9 / (t / 1000) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "| query (4 h window, one pass) | ms | GB/s | × plain scan | × the count without a parser | result |"
echo "|---|---:|---:|---:|---:|---|"
for ns in json logfmt; do
  b=$(bytes $ns)
  plain=$(run "sum(count_over_time({namespace=\"$ns\"} |= \"zzzz-in-no-line\" [4h]))")
  echo "| plain scan of \`$ns\` (\`|= \"zzzz-in-no-line\"\`) | $plain | $(gbps "$b" "$plain") | 1.00 | | |"
  count=$(run "sum(count_over_time({namespace=\"$ns\"}[4h]))")
  echo "| \`count_over_time({namespace=\"$ns\"}[4h])\` | $count | $(gbps "$b" "$count") | $(ratio "$count" "$plain") | 1.00 | $(value) |"
  if [ $ns = json ]; then
    queries=("sum(count_over_time({namespace=\"json\"} | json | level=\"error\" [4h]))" \
             "sum(count_over_time({namespace=\"json\"} | json | status >= 500 [4h]))" \
             "sum by (level) (count_over_time({namespace=\"json\"} | json [4h]))" \
             "sum by (user_region) (count_over_time({namespace=\"json\"} | json [4h]))")
  else
    queries=("sum(count_over_time({namespace=\"logfmt\"} | logfmt | level=\"error\" [4h]))" \
             "sum(count_over_time({namespace=\"logfmt\"} | logfmt | status >= 500 [4h]))" \
             "sum by (level) (count_over_time({namespace=\"logfmt\"} | logfmt [4h]))" \
             "sum by (region) (count_over_time({namespace=\"logfmt\"} | logfmt [4h]))")
  fi
  for query in "${queries[@]}"; do
    t=$(run "$query")
    echo "| \`$query\` | $t | $(gbps "$b" "$t") | $(ratio "$t" "$plain") | $(ratio "$t" "$count") | $(value) |"
  done
  # The log volume against the same count at the same step, without a parser.
  volcount=$(run "sum(count_over_time({namespace=\"$ns\"}[1m]))" 60)
  vol=$(run "sum by (level) (count_over_time({namespace=\"$ns\"} | $ns [1m]))" 60)
  echo "| \`sum(count_over_time({namespace=\"$ns\"}[1m]))\`, 4 h at step 1m | $volcount | $(gbps "$b" "$volcount") | $(ratio "$volcount" "$plain") | 1.00 | |"
  echo "| log volume \`sum by (level) (count_over_time({…} | $ns [1m]))\`, 4 h at step 1m | $vol | $(gbps "$b" "$vol") | $(ratio "$vol" "$plain") | $(ratio "$vol" "$volcount") | |"
done
echo
echo "Janus peak RSS: $(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$jpid/status) MB"

#!/usr/bin/env bash
# The ruler at scale: 1,000 rules over 100 namespaces (per namespace one group of 10 rules: five
# log filters, each recorded and alerted on), every 15 s, on lines pushed live into those
# namespaces (2,000 lines/s, the last 10 minutes pre-filled). Reports evaluations per second,
# the CPU Janus used (cores), the slowest group evaluation, missed iterations and failures.
# With two binaries, runs both on the same feed one after the other (OLD then NEW).
#
# usage: docs/benchmarks/rules.sh [BINARY [OTHER_BINARY]] [SECONDS] [RANGE (1m; at most 10m, the
#        pre-filled span)]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ] && [ -x "$1" ]; then bins=("$1"); shift; else cargo build --release --quiet; bins=(./target/release/janus); fi
if [ $# -ge 1 ] && [ -x "$1" ]; then bins+=("$1"); shift; fi
seconds=${1:-120}; range=${2:-1m}
work=$(mktemp -d /tmp/janus-rulesbench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

python3 - "$work/rules.yml" "$range" <<'PY'
import sys
window = sys.argv[2]
filters = [("errors", '|= "ERROR"'), ("warnings", '|= "WARN"'), ("timeouts", '|= "timeout"'),
           ("panics", '|= "panic"'), ("status5xx", '|~ "status=5[0-9][0-9]"')]
out = ["groups:"]
for n in range(100):
    ns = f"ns-{n:03d}"
    out += [f"- name: {ns}", "  interval: 15s", "  rules:"]
    for name, f in filters:
        e = f'sum by (namespace) (count_over_time(pod{{namespace="{ns}"}} {f} [{window}]))'
        out += [f"  - record: namespace:{name}:count{window}", f"    expr: '{e}'",
                f"  - alert: Many_{name}", f"    expr: '{e} > 100'", "    for: 1m",
                "    annotations: {summary: '{{ $labels.namespace }}: {{ $value }}'}"]
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY

# Pushes 2,000 lines/s over the 100 namespaces (after pre-filling the last 10 minutes).
cat > "$work/feed.py" <<'PY'
import json, sys, time, urllib.request
url = sys.argv[1] + "/loki/api/v1/push"
words = ["GET /api ok status=200", "ERROR payment failed status=500", "WARN slow call",
         "upstream timeout status=504", "INFO done status=200", "panic: nil map"]
def push(t0, seconds, per_second):
    streams = []
    for n in range(100):
        values = []
        for i in range(int(seconds * per_second / 100)):
            t = t0 + i * (seconds / (seconds * per_second / 100))
            values.append([str(int(t * 1e9)), f"{words[(n + i) % len(words)]} req={i}"])
        streams.append({"stream": {"namespace": f"ns-{n:03d}", "pod": f"web-{n % 7}", "container": "app"}, "values": values})
    body = json.dumps({"streams": streams}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
now = time.time()
for k in range(60, 0, -1):
    push(now - k * 10, 10, 2000)
print("prefilled", flush=True)
while True:
    t = time.time()
    push(t, 1, 2000)
    time.sleep(max(0, 1 - (time.time() - t)))
PY

metric_sum() { curl -s "$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s+=$2} END {printf "%.0f", s}'; }
metric_max() { curl -s "$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {if ($2>x) x=$2} END {printf "%.3f", x}'; }
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }

echo "| build ($range windows) | rules | evaluations/s | CPU (cores) | slowest group (s) | missed iterations | failed evaluations | log reads shared | alerts pending or firing |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for bin in "${bins[@]}"; do
  p=$(port); store="$work/store-$p"
  "$bin" --web.listen-address=127.0.0.1:$p --upstream.url=http://127.0.0.1:1 --storage.path="$store" \
    --rules.file="$work/rules.yml" --query.cache-size=0 --retention.time=0 2>"$work/janus.log" &
  jpid=$!; pids+=($jpid)
  url=http://127.0.0.1:$p
  for _ in $(seq 200); do curl -fs -o /dev/null "$url/-/ready" && break; sleep 0.05; done
  python3 "$work/feed.py" "$url" > "$work/feed.log" 2>&1 &
  fpid=$!; pids+=($fpid)
  for _ in $(seq 600); do grep -q prefilled "$work/feed.log" && break; sleep 0.1; done
  sleep 20 # every group evaluated at least once on full windows
  e0=$(metric_sum "$url" janus_rule_evaluations_total); m0=$(metric_sum "$url" janus_rule_group_iterations_missed_total)
  c0=$(cpu_ticks $jpid); t0=$(date +%s.%N)
  sleep "$seconds"
  e1=$(metric_sum "$url" janus_rule_evaluations_total); m1=$(metric_sum "$url" janus_rule_group_iterations_missed_total)
  c1=$(cpu_ticks $jpid); t1=$(date +%s.%N)
  failed=$(metric_sum "$url" janus_rule_evaluation_failures_total)
  slowest=$(metric_max "$url" janus_rule_group_last_duration_seconds)
  rules=$(metric_sum "$url" janus_rule_group_rules)
  shared=$(metric_sum "$url" janus_rule_log_reads_shared_total)
  alerts=$(curl -s "$url/api/v1/alerts" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["alerts"]))')
  hz=$(getconf CLK_TCK)
  awk -v b="$(basename "$bin")" -v r="$rules" -v e=$((e1 - e0)) -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" -v hz="$hz" \
      -v s="$slowest" -v m=$((m1 - m0)) -v f="$failed" -v sh="$shared" -v a="$alerts" \
    'BEGIN { d = t1 - t0; printf "| %s | %d | %.1f | %.2f | %s | %d | %d | %d | %d |\n", b, r, e / d, c / hz / d, s, m, f, sh, a }'
  kill $fpid $jpid; wait $jpid 2>/dev/null || true
done

#!/usr/bin/env bash
# Label values without a window (Performance II): a Lethe-sized tree — 100 namespaces of 720
# hour files (30 days) each, 72,000 files — and `/api/v1/label/namespace/values` and
# `/api/v1/labels` with no start/end, on a freshly started Janus (first ask) and again (warm),
# against `find` listing the namespace directories. With two binaries, both run (OLD then NEW)
# and their answers are compared.
#
# usage: docs/benchmarks/label_values.sh [BINARY [OTHER_BINARY]] [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ge 1 ] && [ -x "$1" ]; then bins=("$1"); shift; else cargo build --release --quiet; bins=(./target/release/janus); fi
if [ $# -ge 1 ] && [ -x "$1" ]; then bins+=("$1"); shift; fi
dir=${1:-/tmp/janus-labelbench}
if [ ! -d "$dir/pod" ]; then
  echo "generating 100 namespaces x 720 hour files under $dir ..." >&2
  python3 - "$dir" <<'PY'
import os, sys, datetime
root = sys.argv[1]
start = datetime.datetime(2024, 1, 1)
for n in range(100):
    ns = f"team-{n:03d}"
    d = os.path.join(root, "pod", ns)
    os.makedirs(d, exist_ok=True)
    for h in range(720):
        t = start + datetime.timedelta(hours=h)
        with open(os.path.join(d, t.strftime("%Y-%m-%d_%H.log")), "w") as f:
            for m in (0, 30):
                f.write(f"{t.strftime('%Y-%m-%dT%H')}:{m:02d}:00Z[{ns}|web-{h % 5}|app] GET /api ok\n")
PY
  find "$dir/pod" -type f -exec touch -d '2 hours ago' {} +
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { local s; s=$(date +%s%N); "$@" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); }
find_ms=$(ms find "$dir/pod" -mindepth 1 -maxdepth 1 -type d)
echo "| build | namespace values, first (ms) | again (ms) | labels, first (ms) | again (ms) | values | \`find\` (ms) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; true' EXIT
for bin in "${bins[@]}"; do
  p=$(port)
  "$bin" --web.listen-address=127.0.0.1:$p --upstream.url=http://127.0.0.1:1 --storage.path="$dir" \
    --retention.time=0 --query.cache-size=0 2>/dev/null &
  pid=$!
  for _ in $(seq 200); do curl -fs -o /dev/null "http://127.0.0.1:$p/-/ready" && break; sleep 0.05; done
  sleep 2 # start-up's own indexing of the last day settles
  v1=$(ms curl -s -o "/tmp/janus-labelbench.$(basename "$bin").json" "http://127.0.0.1:$p/api/v1/label/namespace/values")
  v2=$(ms curl -s -o /dev/null "http://127.0.0.1:$p/api/v1/label/namespace/values")
  l1=$(ms curl -s -o "/tmp/janus-labelbench.$(basename "$bin").labels.json" "http://127.0.0.1:$p/api/v1/labels")
  l2=$(ms curl -s -o /dev/null "http://127.0.0.1:$p/api/v1/labels")
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"]))' "/tmp/janus-labelbench.$(basename "$bin").json")
  echo "| $(basename "$bin") | $v1 | $v2 | $l1 | $l2 | $n | $find_ms |"
  kill $pid; wait $pid 2>/dev/null || true; pid=
done
if [ ${#bins[@]} = 2 ]; then
  a=$(basename "${bins[0]}"); b=$(basename "${bins[1]}")
  python3 - "$a" "$b" <<'PY'
import json, sys
for suffix in ("json", "labels.json"):
    x = json.load(open(f"/tmp/janus-labelbench.{sys.argv[1]}.{suffix}"))["data"]
    y = json.load(open(f"/tmp/janus-labelbench.{sys.argv[2]}.{suffix}"))["data"]
    print(f"{suffix}: answers {'identical' if x == y else 'DIFFER'}")
PY
fi

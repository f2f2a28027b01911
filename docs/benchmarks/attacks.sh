#!/usr/bin/env bash
# What hostile requests cost: each attack of the unbreakable issue against a release build, with
# the answer's status, its time and the server's peak RSS (VmHWM) measured afresh per attack.
# A second binary (e.g. a build from before the hardening) can be run side by side.
#
# usage: docs/benchmarks/attacks.sh [OTHER_JANUS_BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin janus
work=$(mktemp -d /tmp/janus-attacks.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

python3 - "$work" <<'PY'
import gzip, os, sys
work = sys.argv[1]
os.makedirs(f"{work}/seed/pod/x", exist_ok=True)
with open(f"{work}/seed/pod/x/2024-01-01_00.log", "w") as f:
    pad = "y" * 4000
    for i in range(100_000):
        f.write(f"2024-01-01T00:{(i // 60) % 60:02}:{i % 60:02}Z[x|p-{i % 7}|c] {i} {pad}\n")
lm = 'count_over_time(pod{namespace="x"}[1m])'
open(f"{work}/deep.txt", "w").write("abs(" * 3000 + lm + ")" * 3000)
open(f"{work}/chain.txt", "w").write(lm + "+1" * 100_000)
open(f"{work}/regex.txt", "w").write('pod{namespace="x"}' + ' |~ "\\\\w{100}"' * 1000)
open(f"{work}/subquery.txt", "w").write(f"max_over_time({lm}[1w:1ms])")
head = b'{"streams":[{"stream":{"namespace":"x","pod":"p","container":"c"},"values":['
tiny = b'["1704067200000000000",""],'
body = head + tiny * ((63 << 20) // len(tiny)) + b'["1704067200000000000",""]]}]}'
open(f"{work}/bomb.gz", "wb").write(gzip.compress(body, 9))
line = b'["1704067200000000000","0123456789012345678901234567890123456789"],'
body = head + line * 900_000 + b'["1704067200000000000",""]]}]}'
open(f"{work}/big.json", "wb").write(body)
PY

run() { # binary label
  local bin=$1 label=$2
  rm -rf "$work/store"; cp -r "$work/seed" "$work/store"
  start_server() {
    "$bin" --web.listen-address=127.0.0.1:$port --upstream.url=http://127.0.0.1:1 \
      --storage.path="$work/store" --retention.time=0 --log.level=error 2>/dev/null &
    pid=$!
    for _ in $(seq 200); do curl -fs -o /dev/null "$url/-/healthy" && return; sleep 0.05; done
  }
  attack() { # name command...
    local name=$1; shift
    if ! kill -0 "$pid" 2>/dev/null; then start_server; fi
    # A fresh server per attack: the peak below is this attack's alone.
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; start_server
    local s e codes peak
    s=$(date +%s%N)
    codes=$("$@" 2>/dev/null | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}') || true
    e=$(( ($(date +%s%N) - s) / 1000000 ))
    if kill -0 "$pid" 2>/dev/null; then
      peak=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$pid/status 2>/dev/null) || peak=died
    else
      peak="died"; codes="${codes:-no answer}"
    fi
    echo "| $label | $name | ${codes:-none} | $e | $peak |"
  }
  q() { curl -s -o /dev/null -w '%{http_code}\n' --max-time 180 --data-urlencode "query@$1" \
    --data-urlencode time=2024-01-01T00:30:00Z "$url/api/v1/query"; }
  four() { for _ in 1 2 3 4; do "$@" & done; wait; }
  push_big() { curl -s -o /dev/null -w '%{http_code}\n' --max-time 180 -H 'Content-Type: application/json' \
    --data-binary @"$work/big.json" "$url/loki/api/v1/push"; }
  push_bomb() { curl -s -o /dev/null -w '%{http_code}\n' --max-time 180 -H 'Content-Type: application/json' \
    -H 'Content-Encoding: gzip' --data-binary @"$work/bomb.gz" "$url/loki/api/v1/push"; }
  answer() { curl -s -o /dev/null -w '%{http_code}\n' --max-time 180 --limit-rate 50M \
    "$url/api/v1/query_range?query=pod%7Bnamespace%3D%22x%22%7D&start=2024-01-01T00:00:00Z&end=2024-01-01T01:00:00Z&limit=100000"; }
  attack "abs( nested 3,000 deep" q "$work/deep.txt"
  attack "100,000-term chain" q "$work/chain.txt"
  attack "subquery [1w:1ms]" q "$work/subquery.txt"
  attack "4 × 1,000 \`|~ \"\\w{100}\"\`" four q "$work/regex.txt"
  attack "4 × gzip push of 63 MB tiny entries" four push_bomb
  attack "4 × 60 MB push of 900k entries" four push_big
  attack "4 readers of a 400 MB answer at 50 MB/s" four answer
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=
}

echo "| build | attack | answers | ms | peak RSS MB |"
echo "|---|---|---|---:|---:|"
run ./target/release/janus this
if [ -n "${1:-}" ]; then run "$1" other; fi

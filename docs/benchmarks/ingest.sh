#!/usr/bin/env bash
# Ingestion benchmark: the Loki push API under load (tools/push_load.rs: batches of 1,000
# lines of ~200 bytes, concurrency 8, protobuf+snappy unless said), for each fsync mode; p99 at
# half the measured rate; Janus's peak RSS; and the limit, a plain buffered file writer.
#
# usage: docs/benchmarks/ingest.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
cargo build --release --quiet --bin janus --example push_load
load=./target/release/examples/push_load
work=$(mktemp -d /tmp/janus-ingest.XXXXXX)
trap 'pkill -f "janus --web.listen-address=127.0.0.1:$port" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
run_janus() { # fsync mode
  rm -rf "$work/store"
  ./target/release/janus --web.listen-address=127.0.0.1:$port --upstream.url=http://127.0.0.1:1 \
    --storage.path="$work/store" --storage.fsync="$1" --retention.time=0 2>/dev/null &
  jpid=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "$url/-/ready" && break; sleep 0.05; done
}

echo "| fsync | format | rate asked | lines/s | p50 ms | p99 ms | Janus peak RSS MB |"
echo "|---|---|---:|---:|---:|---:|---:|"
for mode in never batch always; do
  run_janus "$mode"
  full=$($load "$url" "$secs" 8)
  rate=$(echo "$full" | field lines_per_second)
  echo "| $mode | protobuf | max | $rate | $(echo "$full" | field p50_ms) | $(echo "$full" | field p99_ms) | $(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$jpid/status) |"
  half=$(( ${rate%.*} / 2 ))
  paced=$($load "$url" "$secs" 8 "$half")
  echo "| $mode | protobuf | $half | $(echo "$paced" | field lines_per_second) | $(echo "$paced" | field p50_ms) | $(echo "$paced" | field p99_ms) | $(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$jpid/status) |"
  if [ "$mode" = never ]; then
    json=$($load "$url" "$secs" 8 0 json)
    echo "| $mode | json | max | $(echo "$json" | field lines_per_second) | $(echo "$json" | field p50_ms) | $(echo "$json" | field p99_ms) | $(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$jpid/status) |"
  fi
  kill $jpid; wait $jpid 2>/dev/null || true
done
echo
base=$($load --baseline "$work/baseline.log" 5000000)
echo "plain buffered writer (the limit): $(echo "$base" | field lines_per_second) lines/s"

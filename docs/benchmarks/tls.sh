#!/usr/bin/env bash
# What TLS, basic auth and tenants cost: the same instant query straight to Prometheus, through
# Janus over plain HTTP, through Janus with a --web.config.file of TLS (a self-signed ECDSA
# certificate made here with openssl) and one bcrypt user (cost 10), and the same with that user
# a restricted tenant (--auth.tenants-file: the query parsed, confined to its namespace, printed
# and forwarded, as prom-label-proxy would), in one run with wrk
# (keep-alive connections, as a dashboard's). Credentials are remembered after the first bcrypt
# check, so the steady state shows TLS and the remembered-credentials lookup; the first
# request's cost (one bcrypt check) is measured apart with curl.
#
# usage: docs/benchmarks/tls.sh [seconds-per-wrk-run]   (needs prometheus, wrk, curl, openssl)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
for tool in prometheus wrk curl openssl; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install -y prometheus wrk curl openssl)" >&2; exit 1; }
done
cargo build --release --quiet

work=$(mktemp -d /tmp/janus-tlsbench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 300); do curl -kfs -o /dev/null "$1" && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/server.key" -out "$work/server.pem" 2>/dev/null
# bcrypt at cost 10 from the system's crypt(3) (libxcrypt), as htpasswd -B would make it.
hash=$(python3 -W ignore -c 'import crypt; print(crypt.crypt("bench", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024)))')
cat >"$work/web.yml" <<YAML
tls_server_config:
  cert_file: server.pem
  key_file: server.key
basic_auth_users:
  bench: '$hash'
YAML

cat >"$work/tenants.yml" <<YAML
tenants:
  bench:
    users: [bench]
    namespaces: [bench]
YAML

pp=$(port); jp=$(port); tp=$(port); np=$(port)
prometheus --config.file=compat-tests/prometheus.yml --storage.tsdb.path="$work/tsdb" \
  --web.listen-address=127.0.0.1:$pp >"$work/prom.log" 2>&1 &
pids+=($!)
ready "http://127.0.0.1:$pp/-/ready"
./target/release/janus --web.listen-address=127.0.0.1:$jp --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/store1" 2>/dev/null &
pids+=($!)
./target/release/janus --web.listen-address=127.0.0.1:$tp --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/store2" --web.config.file="$work/web.yml" 2>/dev/null &
pids+=($!)
./target/release/janus --web.listen-address=127.0.0.1:$np --upstream.url=http://127.0.0.1:$pp \
  --storage.path="$work/store3" --web.config.file="$work/web.yml" \
  --auth.tenants-file="$work/tenants.yml" 2>/dev/null &
pids+=($!)
ready "http://127.0.0.1:$jp/-/ready"
ready "https://127.0.0.1:$tp/-/ready"
ready "https://127.0.0.1:$np/-/ready"
sleep 2 # one scrape, so `up` has a value

auth="Authorization: Basic $(printf 'bench:bench' | base64)"
# A selector and a function: what a dashboard panel asks (the store is empty: answers are small).
cheap='/api/v1/query?query=sum%20by%20(job)%20(rate(prometheus_http_requests_total%5B5m%5D))'
# The first request with these credentials: a TLS handshake and one bcrypt check; the second,
# on a new connection too, finds the credentials remembered.
ms() { curl -ks -o /dev/null -w '%{http_code} %{time_total}' -u bench:bench "$1" | awk '{ if ($1 != 200) { print "answered " $1 > "/dev/stderr"; exit 1 } printf "%.1f", $2 * 1000 }'; }
first=$(ms "https://127.0.0.1:$tp$cheap")
again=$(ms "https://127.0.0.1:$tp$cheap")

measure() { # url connections threads [header]
  wrk -t"$3" -c"$2" -d"${secs}s" --latency ${4:+-H "$4"} "$1" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)} /^Requests\/sec/ {rps=$2}
    END {printf "%.3f %.3f %.1f", p50, p99, rps}'
}

printf '| workload | target | p50 ms | p99 ms | req/s |\n|---|---|---:|---:|---:|\n'
declare -A res
for w in "c=1:1:1" "c=16:16:2"; do
  IFS=: read -r name c t <<<"$w"
  for target in direct janus janus-tls-auth janus-tls-auth-tenant; do
    case $target in
      direct) read -r p50 p99 rps <<<"$(measure "http://127.0.0.1:$pp$cheap" "$c" "$t")" ;;
      janus) read -r p50 p99 rps <<<"$(measure "http://127.0.0.1:$jp$cheap" "$c" "$t")" ;;
      janus-tls-auth) read -r p50 p99 rps <<<"$(measure "https://127.0.0.1:$tp$cheap" "$c" "$t" "$auth")" ;;
      janus-tls-auth-tenant) read -r p50 p99 rps <<<"$(measure "https://127.0.0.1:$np$cheap" "$c" "$t" "$auth")" ;;
    esac
    res[$name.$target]="$p50 $rps"
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$target" "$p50" "$p99" "$rps"
  done
done
echo
printf '| workload | target | added p50 ms over plain Janus | throughput / plain Janus |\n|---|---|---:|---:|\n'
for name in c=1 c=16; do
  read -r jp50 jrps <<<"${res[$name.janus]}"
  for target in janus-tls-auth janus-tls-auth-tenant; do
    read -r tp50 trps <<<"${res[$name.$target]}"
    awk -v n="$name" -v t="$target" -v a="$jp50" -v b="$tp50" -v x="$jrps" -v y="$trps" \
      'BEGIN { printf "| %s | %s | %.3f | %.1f%% |\n", n, t, b-a, 100*y/x }'
  done
done
echo
echo "a new TLS connection's first request: ${first} ms with its bcrypt check, ${again} ms once the credentials are remembered"

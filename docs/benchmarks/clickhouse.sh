#!/usr/bin/env bash
# ClickHouse backend benchmark: push throughput into ClickHouse through Janus (tools/push_load.rs,
# batches of 1,000 lines, 8 pushers, protobuf+snappy) with p99, then three queries over what was
# pushed, each through Janus, as the same SQL sent straight to ClickHouse, and through a file-store
# Janus that took the same load: newest-100 of one namespace over 1 h, a rare literal over 24 h of
# every namespace, a log metric by namespace over 24 h at 1 m steps. Medians of 5 runs.
#
# usage: docs/benchmarks/clickhouse.sh [push-seconds]   (needs clickhouse-server, e.g. Debian's)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-25}
cargo build --release --quiet --bin janus --example push_load
load=./target/release/examples/push_load
work=$(mktemp -d /tmp/janus-ch.XXXXXX)
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
chttp=$(free); ctcp=$(free); jc=$(free); jf=$(free)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; sleep 0.5; rm -rf "$work"' EXIT
cat >"$work/users.xml" <<X
<?xml version="1.0"?><yandex><profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas></yandex>
X
cat >"$work/config.xml" <<X
<?xml version="1.0"?><yandex><logger><level>warning</level><log>$work/ch.log</log><errorlog>$work/ch.err</errorlog></logger>
<listen_host>127.0.0.1</listen_host><http_port>$chttp</http_port><tcp_port>$ctcp</tcp_port>
<path>$work/ch/</path><tmp_path>$work/ch/tmp/</tmp_path><user_files_path>$work/ch/uf/</user_files_path>
<format_schema_path>$work/ch/fs/</format_schema_path><users_config>$work/users.xml</users_config>
<default_profile>default</default_profile><default_database>default</default_database><mark_cache_size>536870912</mark_cache_size></yandex>
X
/usr/sbin/clickhouse-server --config-file="$work/config.xml" >/dev/null 2>&1 &
pids+=($!)
ch=http://127.0.0.1:$chttp
for _ in $(seq 100); do curl -fs "$ch/ping" >/dev/null && break; sleep 0.1; done
./target/release/janus --web.listen-address=127.0.0.1:$jc --upstream.url=http://127.0.0.1:1 \
  --storage.path="$work/unused" --storage.clickhouse.url="$ch" --retention.time=0 --query.cache-size=0 2>/dev/null &
pids+=($!); jcpid=$!
./target/release/janus --web.listen-address=127.0.0.1:$jf --upstream.url=http://127.0.0.1:1 \
  --storage.path="$work/files" --storage.fsync=never --retention.time=0 --query.cache-size=0 2>/dev/null &
pids+=($!)
for u in $jc $jf; do for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$u/-/ready" && break; sleep 0.1; done; done

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
echo "== push into ClickHouse through Janus ($secs s, 8 pushers)"
out=$($load "http://127.0.0.1:$jc" "$secs" 8)
echo "lines/s=$(echo "$out" | field lines_per_second) p50_ms=$(echo "$out" | field p50_ms) p99_ms=$(echo "$out" | field p99_ms) janus_peak_rss_mb=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$jcpid/status)"
half=$(( $(echo "$out" | field lines_per_second | cut -d. -f1) / 2 ))
paced=$($load "http://127.0.0.1:$jc" 8 8 "$half")
echo "paced at $half lines/s: p50_ms=$(echo "$paced" | field p50_ms) p99_ms=$(echo "$paced" | field p99_ms)"
echo "== the same load into a file-store Janus"
out=$($load "http://127.0.0.1:$jf" "$secs" 8)
echo "lines/s=$(echo "$out" | field lines_per_second) p99_ms=$(echo "$out" | field p99_ms)"
rows=$(curl -fs "$ch" --data-binary "SELECT count() FROM janus.logs")
echo "rows in ClickHouse: $rows; bytes on disk: $(curl -fs "$ch" --data-binary "SELECT sum(bytes_on_disk) FROM system.parts WHERE database='janus' AND active")"
curl -fs "$ch" --data-binary "OPTIMIZE TABLE janus.logs FINAL" >/dev/null || true

now=$(date +%s)
s1=$((now - 3600)); s24=$((now - 86400))
rare=$(curl -fs "$ch" --data-binary "SELECT substring(line, position(line, 'orders/'), 14) FROM janus.logs WHERE target = 'load-2' LIMIT 1 OFFSET 777777" | cut -d' ' -f1)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total}\n' "$@"; done | median; }
loki() { timed -G "http://127.0.0.1:$1/loki/api/v1/query_range" --data-urlencode "query=$2" --data-urlencode "start=$3" --data-urlencode "end=$now" --data-urlencode limit=100; }
prom() { timed "http://127.0.0.1:$1/api/v1/query_range" --data-urlencode "query=$2" --data-urlencode "start=$s24" --data-urlencode "end=$now" --data-urlencode step=60; }
sql() { timed "$ch/" --data-binary "$1"; }
ns=000000000
echo
echo "| query | Janus on ClickHouse s | same SQL direct s | ratio | file-store Janus s |"
echo "|---|---:|---:|---:|---:|"
a=$(loki $jc '{namespace="load-1"}' $s1); b=$(sql "SELECT target, stream, container, ts, line FROM janus.logs WHERE kind = 'pod' AND ts >= $s1$ns AND ts <= $now$ns AND target = 'load-1' ORDER BY ts DESC, target DESC, seq DESC LIMIT 101 FORMAT TabSeparated"); c=$(loki $jf '{namespace="load-1"}' $s1)
echo "| newest-100, one namespace, 1 h | $a | $b | $(echo "$a $b" | awk '{printf "%.2f", $1/$2}') | $c |"
q="{namespace=~\".+\"} |= \"$rare \""
a=$(loki $jc "$q" $s24); b=$(sql "SELECT target, stream, container, ts, line FROM janus.logs WHERE kind = 'pod' AND ts >= $s24$ns AND ts <= $now$ns AND match(target, '^(?:.+)\$') AND line LIKE '%$rare %' ORDER BY ts DESC, target DESC, seq DESC LIMIT 101 FORMAT TabSeparated"); c=$(loki $jf "$q" $s24)
echo "| rare literal ($rare), every namespace, 24 h | $a | $b | $(echo "$a $b" | awk '{printf "%.2f", $1/$2}') | $c |"
q='sum by (namespace) (count_over_time(pod{namespace=~".+"}[1m]))'
a=$(prom $jc "$q"); b=$(sql "SELECT target, stream, container, intDiv(ts - ($((s24 - 60))$ns) - 1, 60000000000) + 1 AS j, count(), sum(length(line)) FROM janus.logs WHERE kind = 'pod' AND ts >= $((s24 - 60))$ns AND ts <= $now$ns AND match(target, '^(?:.+)\$') GROUP BY target, stream, container, j FORMAT TabSeparated"); c=$(prom $jf "$q")
echo "| count by namespace, 24 h at 1 m | $a | $b | $(echo "$a $b" | awk '{printf "%.2f", $1/$2}') | $c |"

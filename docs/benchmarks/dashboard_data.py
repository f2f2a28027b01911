#!/usr/bin/env python3
"""Data for the dashboard replay benchmark: the last 25 hours up to now.

usage: dashboard_data.py METRICS.om LOG_ROOT [PODS]

METRICS.om: OpenMetrics text for `promtool tsdb create-blocks-from openmetrics` (a sample
every 30 s; PODS pods per namespace, default 3): http_requests_total by
namespace/pod/code/method, cpu_usage_ratio by pod,
request_duration_seconds_bucket by namespace/le, up by job/instance.
LOG_ROOT: a Lethe tree, pod/<namespace>/YYYY-MM-DD_HH.log for shop and auth, three pods
each, a line every ~0.2 s per namespace, levels info/warn/ERROR, up to a few seconds ago.
"""
import datetime
import math
import os
import random
import sys
import time

NOW = int(time.time())
START = (NOW - 25 * 3600) // 30 * 30
END = NOW - 60
NAMESPACES = ["shop", "auth", "billing"]
PODS = int(sys.argv[3]) if len(sys.argv) > 3 else 3


def metrics(path):
    times = list(range(START, END, 30))
    with open(path, "w") as om:
        om.write("# TYPE http_requests counter\n")
        for ns in NAMESPACES:
            for p in range(PODS):
                for code in ["200", "500"]:
                    for method in ["GET", "POST"]:
                        total = 0.0
                        rate = (5 if code == "200" else 0.2) * (1 + p) * (2 if method == "GET" else 1)
                        labels = f'namespace="{ns}",pod="{ns}-{p}",code="{code}",method="{method}",job="api"'
                        for i, t in enumerate(times):
                            total += rate * 30 * (1 + 0.3 * math.sin(i / 97 + p))
                            om.write(f"http_requests_total{{{labels}}} {total:.3f} {t}\n")
        om.write("# TYPE cpu_usage_ratio gauge\n")
        for ns in NAMESPACES:
            for p in range(PODS):
                labels = f'namespace="{ns}",pod="{ns}-{p}",job="node"'
                for i, t in enumerate(times):
                    om.write(f"cpu_usage_ratio{{{labels}}} {0.5 + 0.4 * math.sin(i / 53 + p):.4f} {t}\n")
        om.write("# TYPE request_duration_seconds histogram\n")
        les = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]
        for ns in NAMESPACES:
            counts = [0.0] * len(les)
            series = []
            for i, t in enumerate(times):
                for b in range(len(les)):
                    counts[b] += 30 * (b + 1) * (1 + 0.2 * math.sin(i / 31))
                series.append((t, list(counts)))
            for b, le in enumerate(les):
                labels = f'namespace="{ns}",le="{le}",job="api"'
                for t, c in series:
                    om.write(f"request_duration_seconds_bucket{{{labels}}} {c[b]:.3f} {t}\n")
        om.write("# TYPE up gauge\n")
        for k in range(4):
            labels = f'job="{["api", "node"][k % 2]}",instance="10.0.0.{k}:9100"'
            for t in times:
                om.write(f"up{{{labels}}} 1 {t}\n")
        om.write("# EOF\n")


def logs(root):
    rng = random.Random(7)
    levels = ["info"] * 8 + ["warn"] * 2 + ["ERROR"]
    for ns in ["shop", "auth"]:
        directory = os.path.join(root, "pod", ns)
        os.makedirs(directory, exist_ok=True)
        t = float(START)
        handle, hour = None, None
        while t < NOW - 5:
            stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
            name = stamp.strftime("%Y-%m-%d_%H.log")
            if name != hour:
                if handle:
                    handle.close()
                handle, hour = open(os.path.join(directory, name), "w"), name
            pod = rng.randrange(3)
            level = rng.choice(levels)
            handle.write(
                f"{stamp.strftime('%Y-%m-%dT%H:%M:%S')}Z[{ns}|{ns}-{pod}|app] level={level} "
                f"method=GET path=/api/items/{rng.randrange(1000)} status={500 if level == 'ERROR' else 200} "
                f"took={rng.randrange(1, 900)}ms\n"
            )
            t += rng.uniform(0.05, 0.35)
        if handle:
            handle.close()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    metrics(sys.argv[1])
    logs(sys.argv[2])


if __name__ == "__main__":
    main()

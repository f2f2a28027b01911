#!/usr/bin/env python3
"""Deterministic metric data for the compatibility tests and benchmarks.

Writes the same samples twice: OpenMetrics text for `promtool tsdb create-blocks-from
openmetrics` (Prometheus) and Prometheus text with millisecond timestamps for
VictoriaMetrics' /api/v1/import/prometheus. No randomness: every value is a function of the
series index and the step, so a failing comparison can be reproduced exactly.

usage: gen_metrics.py OUT_OPENMETRICS OUT_PROMTEXT [--bench-series N]
"""
import math
import sys

T0 = 1704067200  # 2024-01-01T00:00:00Z
HOURS = 6
INTERVAL = 15
STEPS = HOURS * 3600 // INTERVAL + 1
NAMESPACES = ["shop", "auth", "billing"]


def fmt(v):
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if v == math.inf:
        return "+Inf"
    r = repr(float(v))
    return r[:-2] if r.endswith(".0") else r


def labels(d):
    return "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}" if d else ""


class Out:
    def __init__(self, om, pt):
        self.om, self.pt = om, pt

    def family(self, name, typ, help_text):
        self.om.write(f"# HELP {name} {help_text}\n# TYPE {name} {typ}\n")

    def sample(self, name, lbl, value, step):
        ts = T0 + step * INTERVAL
        self.om.write(f"{name}{labels(lbl)} {fmt(value)} {ts}\n")
        self.pt.write(f"{name}{labels(lbl)} {fmt(value)} {ts * 1000}\n")


def wobble(i, step, period=97):
    """A smooth, deterministic, non-negative signal in [0, 1]."""
    return 0.5 + 0.5 * math.sin((step + 13 * i) * 2 * math.pi / period)


def generate(out, bench_series):
    out.family("http_requests", "counter", "Requests served.")
    i = 0
    for ns in NAMESPACES:
        for p in range(3):
            for code in ("200", "500"):
                for method in ("GET", "POST"):
                    lbl = {"namespace": ns, "pod": f"{ns}-{p}", "job": "api", "code": code, "method": method}
                    total = 0.0
                    for s in range(STEPS):
                        rate = (5 if code == "200" else 0.25) * (1 + i % 4) * (0.5 + wobble(i, s))
                        total += round(rate * INTERVAL, 3)
                        # One series restarts halfway: a counter reset for rate() to handle.
                        if i == 7 and s == STEPS // 2:
                            total = 1.0
                        out.sample("http_requests_total", lbl, round(total, 3), s)
                    i += 1

    out.family("cpu_usage_ratio", "gauge", "CPU in use.")
    for n, ns in enumerate(NAMESPACES):
        for p in range(3):
            lbl = {"namespace": ns, "pod": f"{ns}-{p}", "job": "node"}
            for s in range(STEPS):
                out.sample("cpu_usage_ratio", lbl, round(wobble(n * 3 + p, s, 61), 4), s)

    out.family("temperature_celsius", "gauge", "Sensor readings; some sensors stop or start late, one reads NaN.")
    for k in range(4):
        lbl = {"sensor": f"s{k}", "job": "env"}
        for s in range(STEPS):
            if k == 1 and s > STEPS // 2:
                break  # stops reporting after 3h: missing later
            if k == 2 and s < STEPS // 3:
                continue  # starts after 2h
            v = float("nan") if (k == 3 and s % 50 == 0) else round(20 + 5 * wobble(k, s, 240), 2)
            out.sample("temperature_celsius", lbl, v, s)

    out.family("up", "gauge", "Target up.")
    for job, inst in (("api", "10.0.0.1:8080"), ("api", "10.0.0.2:8080"), ("node", "10.0.0.3:9100")):
        lbl = {"job": job, "instance": inst}
        for s in range(STEPS):
            out.sample("up", lbl, 0 if (inst.startswith("10.0.0.2") and 400 <= s < 480) else 1, s)

    buckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, math.inf]
    out.family("request_duration_seconds", "histogram", "Request latency.")
    for n, ns in enumerate(NAMESPACES):
        base = {"namespace": ns, "job": "api"}
        counts = [0] * len(buckets)
        total = 0.0
        for s in range(STEPS):
            for b in range(len(buckets)):
                counts[b] += 3 + b * (2 + n) + (s + b) % 3
            total += round(0.2 * counts[-1] / (s + 1) + wobble(n, s), 3)
            for b, le in enumerate(buckets):
                out.sample("request_duration_seconds_bucket", {**base, "le": fmt(le)}, counts[b], s)
            out.sample("request_duration_seconds_sum", base, round(total, 3), s)
            out.sample("request_duration_seconds_count", base, counts[-1], s)

    out.family("rpc_latency_seconds", "summary", "RPC latency.")
    for n, svc in enumerate(("cart", "login")):
        base = {"service": svc, "job": "rpc"}
        count, total = 0, 0.0
        for s in range(STEPS):
            count += 10 + n
            total += round(1.5 + wobble(n, s), 3)
            for q, mult in (("0.5", 1), ("0.9", 2), ("0.99", 4)):
                out.sample("rpc_latency_seconds", {**base, "quantile": q}, round(0.01 * mult * (1 + wobble(n, s)), 4), s)
            out.sample("rpc_latency_seconds_sum", base, round(total, 3), s)
            out.sample("rpc_latency_seconds_count", base, count, s)

    if bench_series:
        out.family("bench_load", "gauge", "Many series for answers of many megabytes.")
        for k in range(bench_series):
            lbl = {"series": f"b{k:05d}", "shard": f"{k % 16}"}
            for s in range(STEPS):
                out.sample("bench_load", lbl, round(1000 * wobble(k, s, 37), 3), s)

    out.om.write("# EOF\n")


def main():
    args = sys.argv[1:]
    bench = 0
    if "--bench-series" in args:
        i = args.index("--bench-series")
        bench = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    with open(args[0], "w") as om, open(args[1], "w") as pt:
        generate(Out(om, pt), bench)


if __name__ == "__main__":
    main()

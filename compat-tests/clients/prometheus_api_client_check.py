#!/usr/bin/env python3
"""prometheus-api-client (the Python library) against Janus: connection check, custom query,
range query and label values, with answers checked against the generated data.

usage: prometheus_api_client_check.py JANUS_URL [USER PASSWORD NAMESPACES]

With USER and PASSWORD the client signs in with basic auth, and NAMESPACES (comma-separated)
are the namespaces it must see (a tenant's); an https URL is verified against the CA bundle in
REQUESTS_CA_BUNDLE, as requests does.
"""
import datetime
import sys

from prometheus_api_client import PrometheusConnect

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def main():
    url = sys.argv[1]
    auth = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else None
    expected = sorted(sys.argv[4].split(",")) if len(sys.argv) > 4 else ["auth", "billing", "shop"]
    prom = PrometheusConnect(url=url, disable_ssl=not url.startswith("https:"), auth=auth)
    check(prom.check_prometheus_connection(), "check_prometheus_connection() is True")

    result = prom.custom_query(
        query="sum by (namespace) (rate(http_requests_total[5m]))",
        params={"time": str(int(T0.timestamp()) + 3 * 3600)},
    )
    namespaces = sorted(r["metric"]["namespace"] for r in result)
    check(namespaces == expected, f"custom_query by namespace: {namespaces}")
    check(all(float(r["value"][1]) > 0 for r in result), "every namespace has a positive rate")

    series = prom.custom_query_range(
        query="avg(cpu_usage_ratio)",
        start_time=T0 + datetime.timedelta(hours=1),
        end_time=T0 + datetime.timedelta(hours=2),
        step="5m",
    )
    check(len(series) == 1 and len(series[0]["values"]) == 13, "custom_query_range: 13 points")

    values = prom.get_label_values("namespace")
    check(sorted(values) == expected, f"get_label_values(namespace): {values}")

    names = prom.all_metrics()
    check("http_requests_total" in names, "all_metrics() lists the data")
    if auth is None:
        check("up" in names, "all_metrics() lists up")
    print("all checks passed")


if __name__ == "__main__":
    main()

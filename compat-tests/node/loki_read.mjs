// @myunisoft/loki (a Node Loki SDK) reading from Janus's Loki read API.
// usage: node loki_read.mjs JANUS_URL RUN_ID [USER PASSWORD]
// With USER and PASSWORD the client signs in with basic auth; an https URL is verified against
// NODE_EXTRA_CA_CERTS, as Node does. Prints one JSON object with what each call answered.
import { GrafanaApi } from "@myunisoft/loki";

const [url, runId, user, password] = process.argv.slice(2);
// The SDK's own "classic" type sends the base64 text without the "Basic " scheme, which no
// server reads as basic auth; the header is spelled out instead.
const authentication = user
  ? { type: "custom", authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` }
  : undefined;
const api = new GrafanaApi({ remoteApiURL: url, authentication });
const selector = `{namespace="${runId}"}`;
const out = {};
out.streams = await api.Loki.queryRangeStream(`${selector} |= "error"`, { start: "1h", limit: 3 });
out.matrix = await api.Loki.queryRangeMatrix(`sum by (pod) (count_over_time(${selector}[10m]))`, { start: "1h", step: "300" });
out.labels = await api.Loki.labels({ start: "1h" });
out.values = await api.Loki.labelValues("pod", { start: "1h" });
// The SDK's series() sends no credentials (6.0.0), so it is asked only without them.
out.series = user ? null : await api.Loki.series(selector);
console.log(JSON.stringify(out));

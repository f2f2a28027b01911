// @myunisoft/loki (a Node Loki SDK) reading from Janus's Loki read API.
// usage: node loki_read.mjs JANUS_URL RUN_ID
// Prints one JSON object with what each call answered.
import { GrafanaApi } from "@myunisoft/loki";

const [url, runId] = process.argv.slice(2);
const api = new GrafanaApi({ remoteApiURL: url });
const selector = `{namespace="${runId}"}`;
const out = {};
out.streams = await api.Loki.queryRangeStream(`${selector} |= "error"`, { start: "1h", limit: 3 });
out.matrix = await api.Loki.queryRangeMatrix(`sum by (pod) (count_over_time(${selector}[10m]))`, { start: "1h", step: "300" });
out.labels = await api.Loki.labels({ start: "1h" });
out.values = await api.Loki.labelValues("pod", { start: "1h" });
out.series = await api.Loki.series(selector);
console.log(JSON.stringify(out));

// winston-loki (protobuf + snappy, the default of that client) pushing to Janus.
// usage: node winston_loki_push.js JANUS_URL RUN_ID COUNT
const winston = require("winston");
const LokiTransport = require("winston-loki");

const [url, runId, count] = process.argv.slice(2);
const transport = new LokiTransport({
  host: url,
  json: false, // protobuf + snappy
  batching: true,
  interval: 0.2,
  labels: { namespace_name: "clients", pod_name: "winston-1", container_name: "node" },
  format: winston.format.printf(({ message }) => message),
  replaceTimestamp: false,
  onConnectionError: (err) => {
    console.error("connection error", err);
    process.exitCode = 1;
  },
});
const logger = winston.createLogger({ transports: [transport] });
for (let i = 0; i < Number(count); i++) {
  logger.info(`winston ${runId} line ${i}`);
}
setTimeout(async () => {
  await transport.flush();
  transport.close && transport.close();
  console.log("pushed", count);
}, 1000);

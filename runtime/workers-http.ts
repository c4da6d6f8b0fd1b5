// The workers' own small HTTP server: Prometheus metrics, liveness and readiness. A process
// without an edge (a workers-only deployment) is still observable and health-checked.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Metrics } from "../core/index.ts";
import type { Readiness } from "../edge/index.ts";

export interface WorkersHttp {
  url: string;
  close(): Promise<void>;
}

export async function startWorkersHttp(host: string, port: number, metrics: Metrics, readiness: Readiness): Promise<WorkersHttp> {
  const server = http.createServer((req, res) => {
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    const route = `${req.method} ${(req.url ?? "/").split("?")[0]}`;
    const handle = async () => {
      switch (route) {
        case "GET /metrics":
          return reply(200, metrics.registry.contentType, await metrics.registry.metrics());
        case "GET /healthz":
          return reply(200, "application/json", JSON.stringify({ status: "ok" }));
        case "GET /readyz": {
          const checks = await readiness();
          const ready = Object.values(checks).every((c) => c.ok);
          return reply(ready ? 200 : 503, "application/json", JSON.stringify({ status: ready ? "ready" : "not ready", checks }));
        }
        default:
          return reply(404, "application/json", JSON.stringify({ error: { code: "NOT_FOUND", message: "try /metrics, /healthz or /readyz", temporary: false } }));
      }
    };
    handle().catch(() => reply(500, "application/json", JSON.stringify({ error: { code: "INTERNAL", message: "internal error", temporary: true } })));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// GET /healthz (the process runs) and GET /readyz (NATS, streams, store and blobs answer, and the
// edge is not draining): for load balancers and orchestrators.
import type { FastifyPluginAsync } from "fastify";

export interface ReadinessCheck {
  ok: boolean;
  detail?: string;
}
export type Readiness = () => Promise<Record<string, ReadinessCheck>>;

export interface HealthRoutesDeps {
  readiness: Readiness;
  draining: () => boolean;
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesDeps> = async (app, deps) => {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    const checks = await deps.readiness();
    if (deps.draining()) checks.edge = { ok: false, detail: "draining" };
    const ready = Object.values(checks).every((c) => c.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", checks });
  });
};

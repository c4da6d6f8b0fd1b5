// GET /discovery?region=&limit=: the edges taking clients, best first (docs/protocol.md,
// "Discovery"); any edge answers from the edges bucket.
import type { FastifyPluginAsync } from "fastify";
import { NatterError } from "../../core/index.ts";
import { rankEdges, type EdgeRegistry } from "../../presence/index.ts";

export interface DiscoveryRoutesDeps {
  /** Absent: this edge does not serve discovery (503). */
  discovery?: { registry: EdgeRegistry; results: number } | undefined;
}

export const discoveryRoutes: FastifyPluginAsync<DiscoveryRoutesDeps> = async (app, deps) => {
  app.get<{ Querystring: { region?: string; limit?: string } }>(
    "/discovery",
    { schema: { querystring: { type: "object", properties: { region: { type: "string", maxLength: 64 }, limit: { type: "string", maxLength: 16 } } } } },
    async (req) => {
      if (!deps.discovery) throw new NatterError("UNAVAILABLE", "discovery is not enabled on this edge");
      const { registry, results } = deps.discovery;
      const asked = Number(req.query.limit ?? results);
      const limit = Number.isSafeInteger(asked) && asked >= 1 ? Math.min(asked, 100) : results;
      const region = typeof req.query.region === "string" && req.query.region !== "" ? req.query.region : undefined;
      const edges = rankEdges(await registry.list(), region, limit);
      if (edges.length === 0) throw new NatterError("UNAVAILABLE", "no edge is taking clients");
      return { edges };
    },
  );
};

// The web chat page (GET /) and the client SDK bundle it imports (GET /natter-client.js), both
// committed files served as they are (scripts/build-client.ts writes the bundle).
import { readFileSync } from "node:fs";
import type { FastifyPluginAsync } from "fastify";

const PAGE = new URL("../public/index.html", import.meta.url);
const SDK_BUNDLE = new URL("../public/natter-client.js", import.meta.url);

export const pageRoutes: FastifyPluginAsync = async (app) => {
  let page: string | undefined;
  app.get("/", async (_req, reply) => {
    page ??= readFileSync(PAGE, "utf8");
    return reply.type("text/html; charset=utf-8").send(page);
  });
  let sdk: string | undefined;
  app.get("/natter-client.js", async (_req, reply) => {
    sdk ??= readFileSync(SDK_BUNDLE, "utf8");
    return reply.type("text/javascript; charset=utf-8").header("cache-control", "no-cache").send(sdk);
  });
};

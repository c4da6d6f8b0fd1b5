// GET /push/vapid-public-key: the key browsers subscribe to Web Push with (404 PUSH_DISABLED when
// push is off). Registering a subscription is a WebSocket frame (`push.register`).
import type { FastifyPluginAsync } from "fastify";
import { NatterError } from "../../core/index.ts";
import type { SessionPush } from "../services.ts";

export const pushRoutes: FastifyPluginAsync<{ push?: SessionPush | undefined }> = async (app, deps) => {
  app.get("/push/vapid-public-key", async () => {
    if (!deps.push) throw new NatterError("PUSH_DISABLED");
    return { publicKey: deps.push.vapidPublicKey };
  });
};

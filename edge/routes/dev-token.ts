// POST /dev/token { "user" }: a token for any user name, for development only (auth.devTokens,
// `natter start --dev`). Production deployments mint tokens in their own login service.
import type { FastifyPluginAsync } from "fastify";
import { mintToken, type TokenSettings } from "../auth.ts";

export const devTokenRoutes: FastifyPluginAsync<{ tokens: TokenSettings }> = async (app, deps) => {
  app.post<{ Body: { user: string } }>(
    "/dev/token",
    { schema: { body: { type: "object", properties: { user: { type: "string", maxLength: 64 } }, required: ["user"] } } },
    async (req) => ({ token: await mintToken(deps.tokens, req.body.user) }),
  );
};

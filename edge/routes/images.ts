// The edge's image routes (docs/protocol.md, "Images"): POST /images takes one image as the raw
// request body and answers its reference; GET /images/<id>/<full|thumb> answers the bytes
// (filesystem blobs, streamed here) or a redirect to a short-lived presigned URL (S3), for the
// uploader and members of a conversation the image was sent to. Both need `Authorization: Bearer
// <token>`, the same JWT as the WebSocket's hello. The checks themselves live in media/.
import type { Readable } from "node:stream";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { NatterError } from "../../core/index.ts";
import type { ImageService, ImageVariant } from "../../media/index.ts";
import { authenticate, type TokenSettings } from "../auth.ts";
import type { RevocationCheck } from "../revocations.ts";

export interface ImageRoutesDeps {
  images: ImageService;
  tokens: TokenSettings;
  revocations: RevocationCheck;
}

/** The user of the request's bearer token: valid, unexpired, not revoked; 401 UNAUTHENTICATED otherwise. */
async function bearer(req: FastifyRequest, deps: ImageRoutesDeps): Promise<string> {
  const h = req.headers.authorization;
  const m = typeof h === "string" ? /^Bearer\s+(\S+)$/i.exec(h) : null;
  if (m === null) throw new NatterError("UNAUTHENTICATED", "send Authorization: Bearer <token>");
  return (await authenticate(deps.tokens, deps.revocations, m[1])).user;
}

/** Reads and drops what is left of a request body (bounded), so the client gets the answer. */
async function discard(body: unknown, maxBytes: number): Promise<void> {
  const stream = body as Readable | undefined;
  if (stream === undefined || typeof stream.read !== "function" || stream.readableEnded || stream.destroyed) return;
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > maxBytes) break;
  }
}

/** POST /images, GET /images/<id>/<variant>: a plugin with its own body parsing (the raw image). */
export const imageRoutes: FastifyPluginAsync<ImageRoutesDeps> = async (scope, deps) => {
  const { images } = deps;
  const maxBytes = images.config.maxBytes;
  // The body is the image itself, whatever its content type claims: media/ decides from the bytes.
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser("*", (_req, payload, done) => done(null, payload));

  scope.post("/images", { schema: { headers: { type: "object", properties: { authorization: { type: "string", maxLength: 8192 } } } } }, async (req, reply) => {
    try {
      const user = await bearer(req, deps);
      const declared = Number(req.headers["content-length"]);
      if (Number.isFinite(declared) && declared > maxBytes * 4) {
        // Far too large to read and drop: answer now and close.
        void reply.header("connection", "close");
        throw new NatterError("IMAGE_TOO_LARGE", `the file exceeds ${maxBytes} bytes`);
      }
      if (Number.isFinite(declared) && declared > maxBytes) throw new NatterError("IMAGE_TOO_LARGE", `the file exceeds ${maxBytes} bytes`);
      if (req.body === undefined || req.body === null) throw new NatterError("IMAGE_CORRUPT", "the request has no body");
      const image = await images.upload(user, req.headers["content-type"], req.body as Readable);
      return reply.code(201).send({ image });
    } catch (err) {
      // A body cut for its pace is not read further: answer, and close the connection behind it.
      if (err instanceof NatterError && err.code === "UPLOAD_TIMEOUT") void reply.header("connection", "close");
      if (reply.getHeader("connection") !== "close") await discard(req.body, maxBytes * 4).catch(() => undefined);
      throw err;
    }
  });

  // Any id and variant reach the handler: one that is not an image the user may see is the same
  // 404 whatever the reason, so ids do not leak.
  scope.get<{ Params: { id: string; variant: string } }>(
    "/images/:id/:variant",
    { schema: { params: { type: "object", properties: { id: { type: "string" }, variant: { type: "string" } }, required: ["id", "variant"] } } },
    async (req, reply) => {
      const user = await bearer(req, deps);
      const { id, variant } = req.params;
      if (variant !== "full" && variant !== "thumb") throw new NatterError("IMAGE_NOT_FOUND");
      const body = await images.open(user, id, variant as ImageVariant);
      if (body.kind === "url") {
        return reply.code(302).header("location", body.url).header("cache-control", "no-store").send();
      }
      return reply
        .type(body.contentType)
        .header("content-length", String(body.size))
        .header("cache-control", "private, max-age=300")
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", "default-src 'none'")
        .send(body.stream);
    },
  );
};

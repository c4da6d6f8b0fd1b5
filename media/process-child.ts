// The body of an image-processing child process (media/processor.ts): it says it is ready, then
// checks and re-encodes one image per message (process.ts) and answers with the result or the
// typed error. It holds nothing between images but its IPC channel, so when its parent goes (the
// channel closes) it ends by itself once the image in hand, if any, is done: no exit call.
import { asNatterError } from "../core/index.ts";
import { disableImageCache, processImage, type ProcessLimits } from "./process.ts";
import type { ChildReply, ChildRequest } from "./processor.ts";

const send = (reply: ChildReply) => process.send?.(reply);

disableImageCache();
process.on("message", (m: ChildRequest) => {
  const bytes = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
  const limits: ProcessLimits = m.limits;
  processImage(bytes, m.contentType, limits).then(
    (result) => send({ type: "done", id: m.id, result }),
    (err: unknown) => {
      const e = asNatterError(err);
      const cause = e.cause instanceof Error ? e.cause.message : e.cause === undefined ? undefined : String(e.cause);
      send({ type: "failed", id: m.id, code: e.code, message: e.message, ...(cause !== undefined ? { cause } : {}) });
    },
  );
});
send({ type: "ready" });

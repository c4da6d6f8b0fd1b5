// Redaction: tokens, secrets, passwords and keys logged by mistake never reach the output.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "./logger.ts";

function capture() {
  const lines: string[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: createLogger({ level: "info", pretty: false }, out), lines };
}

const TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";

describe("logger", () => {
  it("redacts tokens, secrets, passwords and keys wherever a logged object carries them, and keeps the rest", () => {
    const { log, lines } = capture();
    log.info({ token: TOKEN, user: "alice" }, "hello");
    log.warn({ req: { method: "POST", url: "/images", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "image/png" } } }, "upload");
    log.info({ frame: { type: "token", token: TOKEN } }, "frame");
    log.error({ cfg: { auth: { jwtSecret: "q3V8xTnL0wZr5KcY2mPa7GdH9sJb4EuF6iNoR1tX" }, blobs: { secretKey: "minio-secret-key" }, store: { password: "cassandra-pw" } } }, "config");
    log.info({ push: { secret: "webhook-secret", keys: { p256dh: "p256", auth: "auth-secret" } }, vapid: { privateKey: "vapid-private" }, nats: { pass: "nats-pw" } }, "push");
    const out = lines.join("");
    for (const leaked of [TOKEN, "q3V8xTnL0wZr5KcY2mPa7GdH9sJb4EuF6iNoR1tX", "minio-secret-key", "cassandra-pw", "webhook-secret", "auth-secret", "vapid-private", "nats-pw"]) {
      expect(out).not.toContain(leaked);
    }
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed[0]).toMatchObject({ token: "[redacted]", user: "alice", msg: "hello" });
    expect(parsed[1]).toMatchObject({ req: { method: "POST", headers: { authorization: "[redacted]", "content-type": "image/png" } } });
    expect(parsed[2]).toMatchObject({ frame: { type: "token", token: "[redacted]" } });
    expect(parsed[3]).toMatchObject({ cfg: { auth: { jwtSecret: "[redacted]" } } });
  });

  it("redacts in child loggers too", () => {
    const { log, lines } = capture();
    log.child({ component: "edge" }).warn({ token: TOKEN }, "child");
    expect(lines.join("")).not.toContain(TOKEN);
  });
});

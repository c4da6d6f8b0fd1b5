import { describe, expect, it } from "vitest";
import { GENERIC_BODY, GENERIC_TITLE, renderNotification, truncate } from "./content.ts";
import { pushPayload, outcomeOf } from "./senders.ts";
import { retryDelay } from "./worker.ts";

const msg = { conv: "dm_abc", id: 42, from: "alice", text: "hello bob, are you coming tonight?", ts: 1_700_000_000_000 };

describe("notification content", () => {
  it("preview: the sender as title, the start of the text as body, and where it belongs", () => {
    expect(renderNotification(msg, "preview", 100)).toEqual({
      type: "msg",
      title: "alice",
      body: "hello bob, are you coming tonight?",
      conv: "dm_abc",
      id: 42,
      from: "alice",
      ts: msg.ts,
    });
  });

  it("preview: long text is cut to previewChars characters with an ellipsis, never inside an emoji", () => {
    expect(renderNotification({ ...msg, text: "abcdefghij" }, "preview", 5).body).toBe("abcd…");
    expect(renderNotification({ ...msg, text: "abcde" }, "preview", 5).body).toBe("abcde");
    expect(truncate("👋👋👋👋👋👋", 3)).toBe("👋👋…");
    expect([...truncate("é".repeat(500), 100)]).toHaveLength(100);
    expect(truncate("  line one\n\n line two  ", 100)).toBe("line one line two");
  });

  it("preview: a message with images and no text says so", () => {
    expect(renderNotification({ ...msg, text: "", images: 1 }, "preview", 100).body).toBe("An image");
    expect(renderNotification({ ...msg, text: "", images: 3 }, "preview", 100).body).toBe("3 images");
    expect(renderNotification({ ...msg, text: "look", images: 3 }, "preview", 100).body).toBe("look");
  });

  it("generic: nothing of the message but its time (no sender, text or conversation)", () => {
    const n = renderNotification(msg, "generic", 100);
    expect(n).toEqual({ type: "msg", title: GENERIC_TITLE, body: GENERIC_BODY, ts: msg.ts });
    expect(JSON.stringify(pushPayload({ pushId: "p1", notification: n, ttlSec: 60 }))).not.toMatch(/alice|bob|dm_abc/);
  });
});

describe("sending", () => {
  it("classifies answers: 2xx sent, 404/410 gone, 408/425/429/5xx retried, other 4xx rejected", () => {
    expect(outcomeOf({ status: 201 }).kind).toBe("sent");
    expect(outcomeOf({ status: 410 }).kind).toBe("gone");
    expect(outcomeOf({ status: 404 }).kind).toBe("gone");
    expect(outcomeOf({ status: 429, retryAfterMs: 5000 })).toEqual({ kind: "retry", reason: "HTTP 429", afterMs: 5000 });
    expect(outcomeOf({ status: 503 }).kind).toBe("retry");
    expect(outcomeOf({ status: 400 }).kind).toBe("rejected");
    expect(outcomeOf({ status: 403 }).kind).toBe("rejected");
    expect(outcomeOf({ status: 301 }).kind).toBe("rejected"); // redirects are not followed
  });

  it("backs off exponentially up to the maximum; a longer Retry-After wins", () => {
    const s = { retryBaseMs: 1000, retryMaxMs: 60_000 };
    expect([1, 2, 3, 4, 7, 8, 50].map((n) => retryDelay(s, n))).toEqual([1000, 2000, 4000, 8000, 60_000, 60_000, 60_000]);
    expect(retryDelay(s, 1, 30_000)).toBe(30_000);
    expect(retryDelay(s, 1, 3_600_000)).toBe(60_000);
  });
});

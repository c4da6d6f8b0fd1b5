// Reading an inbox when NATS does not answer in time: what reaches the session is a temporary
// UNAVAILABLE (the device is told to resume later), never a raw library error (INTERNAL).
import type { BatchCallback, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import { NatterError } from "../core/index.ts";
import { topologyOf, type JetStreamRequests } from "../nats/index.ts";
import { readInbox } from "./inbox.ts";

const t = topologyOf(loadConfig({ env: {} }).streams);

/** nats.js's batch direct get whose subscription timed out: its callback is told the batch ended with a TimeoutError. */
function timingOut(): JetStreamManager {
  const timeout = Object.assign(new Error("timeout"), { name: "TimeoutError" });
  return {
    direct: {
      getBatch: async (_stream: string, opts: { callback: BatchCallback<StoredMsg> }) => {
        setTimeout(() => opts.callback({ err: timeout }, {} as StoredMsg), 1);
      },
    },
  } as unknown as JetStreamManager;
}

describe("readInbox", () => {
  it("turns a scan whose batch stopped coming into UNAVAILABLE (temporary), keeping the cause", async () => {
    // The newest entry is not there to read (as for entries from before chains): the catch-up scans.
    const requests = { directGet: async () => null } as unknown as JetStreamRequests;
    const read = async () => {
      for await (const _ of readInbox({ requests, jsm: timingOut() }, t, "alice", 10, 20)) void _;
    };
    const err = await read().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatterError);
    expect(err).toMatchObject({ code: "UNAVAILABLE", temporary: true });
    expect((err as NatterError).cause).toMatchObject({ name: "TimeoutError" });
  });
});

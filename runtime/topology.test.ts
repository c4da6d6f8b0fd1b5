import type { JetStreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import { silentLogger } from "../core/logger.ts";
import { awaitTopology, natterStreams } from "./topology.ts";

/** A JetStreamManager whose stream names are `present()` at each call. */
function fakeJsm(present: () => string[]): JetStreamManager {
  return {
    streams: {
      names: () =>
        (async function* () {
          yield* present();
        })(),
    },
  } as unknown as JetStreamManager;
}

describe("awaitTopology", () => {
  const cfg = loadConfig({ env: {} });

  it("returns once every stream of the configuration exists", async () => {
    let calls = 0;
    const all = natterStreams(cfg);
    await awaitTopology(fakeJsm(() => (++calls < 3 ? all.slice(1) : all)), cfg, silentLogger(), { pollMs: 1 });
    expect(calls).toBe(3);
  });

  it("fails naming the missing streams and who makes them", async () => {
    const all = natterStreams(cfg);
    await expect(awaitTopology(fakeJsm(() => all.filter((s) => s !== "INBOX_0")), cfg, silentLogger(), { timeoutMs: 0, pollMs: 1 })).rejects.toThrow(
      /still missing after 0 s \(INBOX_0\): a natter process with workers\.enabled creates them/,
    );
  });
});

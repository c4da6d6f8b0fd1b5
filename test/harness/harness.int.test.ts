// Integration tests of the test harness itself: every server it starts works, survives what the
// harness promises (kill9 + restart), and is gone after stop.
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { describe, expect, inject, onTestFinished, test, vi } from "vitest";
import { launchNatsServer, NatsServerLaunchError } from "../../runtime/nats-server.ts";
import { useKeyspace } from "./cassandra.ts";
import { useBucket } from "./minio.ts";
import { natsServerBinary, startNats, startNatsCluster } from "./nats.ts";
import { isAlive, RUN_DIR_ENV } from "./processes.ts";

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

async function connectTo(servers: string | string[]): Promise<NatsConnection> {
  const nc = await connect({ servers, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  onTestFinished(() => nc.close());
  return nc;
}

test("test workers see the run folder the global setup recorded", () => {
  expect(process.env[RUN_DIR_ENV]).toBe(inject("natterRunDir"));
});

describe("single nats-server", () => {
  test("acks a JetStream publish, keeps its store across restart, and is gone after stop", async () => {
    const nats = await startNats();
    onTestFinished(() => nats.stop());
    const pid = nats.pid;
    const nc = await connectTo(nats.url);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "harness", subjects: ["harness.>"] });
    const ack = await jetstream(nc).publish("harness.one", "hello");
    expect(ack).toMatchObject({ stream: "harness", seq: 1, duplicate: false });

    await nats.kill9();
    expect(isAlive(pid)).toBe(false);
    await nats.restart();
    expect(nats.pid).not.toBe(pid);
    // Same URL: the client reconnects on its own and the stored message is still there. (A request
    // sent while the client is still disconnected gets no answer: poll with a short timeout.)
    const polling = await jetstreamManager(nc, { timeout: 1_000, checkAPI: false });
    await vi.waitFor(async () => expect((await polling.streams.info("harness")).state.messages).toBe(1), {
      timeout: 10_000,
      interval: 100,
    });

    const secondPid = nats.pid;
    await nats.stop();
    expect(isAlive(secondPid)).toBe(false);
    expect(await exists(nats.dir)).toBe(false);
  });

  test("await using stops the server at the end of the scope", async () => {
    let pid = 0;
    let dir = "";
    {
      await using nats = await startNats({ jetstream: false });
      pid = nats.pid;
      dir = nats.dir;
      expect(isAlive(pid)).toBe(true);
    }
    expect(isAlive(pid)).toBe(false);
    expect(await exists(dir)).toBe(false);
  });

  test("a bad config fails fast with nats-server's own complaint", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "natter-bad-conf-"));
    onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
    const started = performance.now();
    const launch = launchNatsServer({
      binary: await natsServerBinary(),
      configText: 'port: -1\nhttp: "127.0.0.1:-1"\njetstream { store_dir: ',
      dir,
    });
    await expect(launch).rejects.toThrow(NatsServerLaunchError);
    await expect(launch).rejects.toThrow(/exited .* before it was ready[\s\S]*nats-server\.conf/);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe("3-node nats cluster", () => {
  test("an R3 stream keeps accepting publishes after kill9 of its leader, which restarts and catches up", async () => {
    await using cluster = await startNatsCluster(3);
    await cluster.waitForMeta();
    const nc = await connectTo(cluster.urls);
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await jsm.streams.add({ name: "r3", subjects: ["r3.>"], num_replicas: 3 });
    let sent = 0;
    const publish = async (): Promise<void> => {
      const n = ++sent;
      // Retried until acked; the msgID makes a retry of an already stored message a no-op.
      await vi.waitFor(() => js.publish(`r3.${n}`, `m${n}`, { msgID: `m${n}`, timeout: 2_000 }), {
        timeout: 30_000,
        interval: 200,
      });
    };
    for (let i = 0; i < 10; i++) await publish();

    const leaderName = (await jsm.streams.info("r3")).cluster?.leader;
    const victim = cluster.nodes.find((n) => n.name === leaderName);
    expect(victim, `stream leader ${leaderName} is one of the nodes`).toBeDefined();
    if (victim === undefined) return;
    const victimPid = victim.pid;
    await victim.kill9();
    expect(victim.running).toBe(false);
    expect(isAlive(victimPid as number)).toBe(false);

    for (let i = 0; i < 10; i++) await publish();
    await vi.waitFor(
      async () => {
        const info = await jsm.streams.info("r3");
        expect(info.state.messages).toBe(20);
        expect(info.cluster?.leader).not.toBe(victim.name);
      },
      { timeout: 15_000, interval: 200 },
    );

    await victim.restart();
    await cluster.waitForMeta();
    await vi.waitFor(
      async () => {
        // `replicas` lists the followers: the restarted node is one, and every one is current.
        const replicas = (await jsm.streams.info("r3")).cluster?.replicas ?? [];
        expect(replicas.map((r) => r.name)).toContain(victim.name);
        for (const r of replicas) expect({ name: r.name, current: r.current, offline: r.offline ?? false }).toEqual({ name: r.name, current: true, offline: false });
      },
      { timeout: 30_000, interval: 250 },
    );
    // The restarted node kept its data folder and caught up: it holds all 20 messages itself.
    await vi.waitFor(
      async () => {
        const jsz = (await (await fetch(`${victim.monitorUrl}/jsz`)).json()) as { messages: number };
        expect(jsz.messages).toBe(20);
      },
      { timeout: 15_000, interval: 250 },
    );
    await publish();
    expect((await jsm.streams.info("r3")).state.messages).toBe(21);
  });
});

describe("cassandra", () => {
  const ks = useKeyspace();

  test("a fresh keyspace takes a table, an insert and a select", async () => {
    expect(ks.keyspace).toMatch(/^t_[a-z0-9]+$/);
    await ks.client.execute("CREATE TABLE notes (id text PRIMARY KEY, body text)");
    await ks.client.execute("INSERT INTO notes (id, body) VALUES (?, ?)", ["a", "hello"], { prepare: true });
    const rs = await ks.client.execute("SELECT body FROM notes WHERE id = ?", ["a"], { prepare: true });
    expect(rs.first()?.get("body")).toBe("hello");
  });
});

describe("minio", () => {
  const s3 = useBucket();

  test("a fresh bucket takes an object", async () => {
    expect(s3.bucket.length).toBeGreaterThanOrEqual(3);
    await s3.client.putObject(s3.bucket, "greeting.txt", Buffer.from("hello"), 5, { "Content-Type": "text/plain" });
    const stat = await s3.client.statObject(s3.bucket, "greeting.txt");
    expect(stat.size).toBe(5);
  });
});

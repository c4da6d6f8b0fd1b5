// The workers in a worker thread: the entry the thread runs, and the main thread's handle on it.
// The thread gets the parsed config (with the NATS URL the main thread connected to) and answers
// "ready" with its HTTP URL, or "failed" with the error; "stop" makes it drain and answer
// "stopped". A thread that dies unexpectedly is reported to `onFailure`.
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import type { Config } from "../config/index.ts";
import { createLogger, NatterError, type Logger } from "../core/index.ts";
import { startWorkerNode, type WorkerNode } from "./workers-node.ts";

type FromThread = { type: "ready"; url: string } | { type: "failed"; message: string } | { type: "stopped" };

/** Starts the workers in a worker thread; resolves once they run. */
export async function startWorkersThread(cfg: Config, log: Logger, onFailure: (err: Error) => void): Promise<WorkerNode> {
  // The thread has no terminal: decide pretty logs here, as the main thread does.
  const threadCfg: Config = { ...cfg, log: { ...cfg.log, pretty: cfg.log.pretty ?? process.stdout.isTTY === true } };
  const worker = new Worker(new URL("./workers-thread-entry.mjs", import.meta.url), { workerData: { cfg: threadCfg } });
  let stopping = false;
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
  const url = await new Promise<string>((resolve, reject) => {
    worker.on("message", (m: FromThread) => {
      if (m.type === "ready") resolve(m.url);
      else if (m.type === "failed") reject(new NatterError("UNAVAILABLE", `the workers did not start: ${m.message}`));
    });
    worker.once("error", reject);
    void exited.then((code) => reject(new NatterError("UNAVAILABLE", `the workers' thread exited (${code}) while starting`)));
  });
  worker.on("error", (err) => log.error({ err }, "the workers' thread failed"));
  void exited.then((code) => {
    if (!stopping) onFailure(new NatterError("UNAVAILABLE", `the workers' thread exited unexpectedly (${code})`));
  });
  return {
    url,
    async close() {
      if (stopping) return;
      stopping = true;
      const stopped = new Promise<void>((resolve) => worker.on("message", (m: FromThread) => m.type === "stopped" && resolve()));
      worker.postMessage("stop");
      await Promise.race([stopped, exited]);
      await worker.terminate();
    },
  };
}

if (!isMainThread && parentPort && (workerData as { cfg?: Config } | undefined)?.cfg) {
  const port = parentPort;
  const cfg = (workerData as { cfg: Config }).cfg;
  const log = createLogger({ level: cfg.log.level, pretty: cfg.log.pretty ?? false }).child({ thread: "workers" });
  startWorkerNode(cfg, log).then(
    (node) => {
      port.on("message", (m: unknown) => {
        if (m === "stop") void node.close().finally(() => port.postMessage({ type: "stopped" } satisfies FromThread));
      });
      port.postMessage({ type: "ready", url: node.url } satisfies FromThread);
    },
    (err: unknown) => {
      log.error({ err }, "the workers did not start");
      port.postMessage({ type: "failed", message: (err as Error).message } satisfies FromThread);
    },
  );
}

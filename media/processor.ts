// Image processing in child processes. libvips decodes what strangers upload, so it runs apart
// from the edge: a decoder that crashes or runs away costs one child, not the edge and its
// sockets, and a job past images.processTimeoutSec is stopped by killing its child (SIGKILL:
// nothing in a decoder can keep it running) and answered IMAGE_TIMEOUT. One child per processing
// slot, started when first needed and kept while jobs come (it stops after a minute idle, giving
// its memory back); a killed or dead child is replaced by the next job. The caller bounds the
// jobs in flight (at most `size`).
import { type ChildProcess, fork } from "node:child_process";
import { type ErrorCode, type Logger, NatterError } from "../core/index.ts";
import type { ProcessedImage, ProcessLimits } from "./process.ts";

/** What the parent sends a child: one image. */
export interface ChildRequest {
  id: number;
  bytes: Uint8Array;
  contentType: string | undefined;
  limits: ProcessLimits;
}

/** What a child sends: ready once started, then one answer per request. */
export type ChildReply =
  | { type: "ready" }
  | { type: "done"; id: number; result: ProcessedImage }
  | { type: "failed"; id: number; code: ErrorCode; message: string; cause?: string };

export interface ImageProcessorOptions {
  /** Children kept (the most jobs run at once). */
  size: number;
  /** A job that takes longer has its child killed: IMAGE_TIMEOUT. */
  timeoutMs: number;
  limits: ProcessLimits;
  log: Logger;
  /** The child's entry module; the default runs process.ts. Tests give one that misbehaves. */
  entry?: URL;
}

const DEFAULT_ENTRY = new URL("./process-child-entry.mjs", import.meta.url);
/** A child that does not say it is ready in this time is given up (it is loading TypeScript and libvips). */
const START_TIMEOUT_MS = 30_000;
/** An idle child stops after this long. */
const IDLE_EXIT_MS = 60_000;

const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

export class ImageProcessor {
  readonly #o: ImageProcessorOptions;
  /** Started children waiting for a job, with the timers that stop them. */
  #idle: ChildProcess[] = [];
  readonly #idleTimers = new Map<ChildProcess, NodeJS.Timeout>();
  readonly #all = new Set<ChildProcess>();
  #nextId = 1;
  #closed = false;

  constructor(opts: ImageProcessorOptions) {
    this.#o = opts;
  }

  /**
   * Checks and re-encodes one image in a child: the result, or the child's typed error
   * (IMAGE_TYPE_REFUSED, IMAGE_DIMENSIONS, IMAGE_CORRUPT…); IMAGE_TIMEOUT past the deadline;
   * INTERNAL when the child dies on it.
   */
  async process(bytes: Buffer, contentType: string | undefined): Promise<ProcessedImage> {
    if (this.#closed) throw new NatterError("UNAVAILABLE", "the edge is shutting down");
    const child = this.#take() ?? (await this.#start());
    const id = this.#nextId++;
    return new Promise<ProcessedImage>((resolve, reject) => {
      const done = (err: NatterError | undefined, result?: ProcessedImage) => {
        clearTimeout(timer);
        child.off("message", onMessage);
        child.off("exit", onExit);
        if (err === undefined) resolve(result!);
        else reject(err);
      };
      const onMessage = (m: ChildReply) => {
        if (m.type === "done" && m.id === id) {
          this.#release(child);
          const r = m.result;
          done(undefined, { ...r, full: { ...r.full, data: asBuffer(r.full.data) }, thumb: { ...r.thumb, data: asBuffer(r.thumb.data) } });
        } else if (m.type === "failed" && m.id === id) {
          this.#release(child);
          if (m.code === "INTERNAL") this.#o.log.warn({ cause: m.cause }, "image processing failed");
          done(new NatterError(m.code, m.message));
        }
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        this.#o.log.warn({ code, signal }, "an image process died while processing an upload");
        done(new NatterError("INTERNAL", "the image could not be processed"));
      };
      const timer = setTimeout(() => {
        this.#kill(child);
        done(new NatterError("IMAGE_TIMEOUT", `processing the image took longer than ${this.#o.timeoutMs / 1000} s`));
      }, this.#o.timeoutMs);
      child.on("message", onMessage);
      child.once("exit", onExit);
      const request: ChildRequest = { id, bytes, contentType, limits: this.#o.limits };
      child.send(request, (err) => {
        if (err) {
          this.#kill(child);
          done(new NatterError("INTERNAL", "the image could not be handed to its process", { cause: err }));
        }
      });
    });
  }

  /** An idle child, or undefined when none is. */
  #take(): ChildProcess | undefined {
    const child = this.#idle.pop();
    if (child !== undefined) {
      clearTimeout(this.#idleTimers.get(child));
      this.#idleTimers.delete(child);
    }
    return child;
  }

  /** A child is done with its job: it waits for the next, or stops after IDLE_EXIT_MS. */
  #release(child: ChildProcess): void {
    this.#idle.push(child);
    this.#idleTimers.set(child, setTimeout(() => this.#kill(child), IDLE_EXIT_MS).unref());
  }

  /** Kills every child. */
  async close(): Promise<void> {
    this.#closed = true;
    const exits = [...this.#all].map((c) => new Promise<void>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once("exit", () => resolve()))));
    for (const c of this.#all) this.#kill(c);
    await Promise.all(exits);
  }

  /** Forks a child and waits for it to say it is ready. */
  async #start(): Promise<ChildProcess> {
    const child = fork(this.#o.entry ?? DEFAULT_ENTRY, [], {
      serialization: "advanced",
      execArgv: [],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // glibc's per-thread arenas keep what libvips' threads freed: two keep a child's memory near what one image needs.
      env: { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "2" },
    });
    this.#all.add(child);
    child.on("error", (err) => this.#o.log.warn({ err }, "image process error"));
    child.once("exit", () => {
      this.#all.delete(child);
      this.#idle = this.#idle.filter((c) => c !== child);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
        child.on("message", function ready(m: ChildReply) {
          if (m.type !== "ready") return;
          clearTimeout(timer);
          child.off("message", ready);
          resolve();
        });
        child.once("exit", (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`exited (${signal ?? code}) while starting`));
        });
        child.once("error", reject);
      });
    } catch (err) {
      this.#kill(child);
      throw new NatterError("UNAVAILABLE", "the image process did not start", { cause: err });
    }
    return child;
  }

  #kill(child: ChildProcess): void {
    this.#idle = this.#idle.filter((c) => c !== child);
    clearTimeout(this.#idleTimers.get(child));
    this.#idleTimers.delete(child);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

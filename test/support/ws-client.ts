// A small WebSocket client for tests: speaks natter's protocol v1 over a real socket.
import { WebSocket } from "ws";

export type Frame = { type: string; ref?: string; [k: string]: unknown };

export interface ConnectOptions {
  token: string;
  device: string;
  cursor?: number;
  /** Expect the server to close instead of welcoming (returns before welcome). */
  expectClose?: boolean;
}

export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  #nextRef = 1;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on("message", (data) => {
      const f = JSON.parse(data.toString()) as Frame;
      this.frames.push(f);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(f)) return true;
        w.resolve(f);
        return false;
      });
    });
  }

  static async open(url: string): Promise<TestClient> {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`);
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return client;
  }

  static async connect(url: string, opts: ConnectOptions): Promise<TestClient> {
    const c = await TestClient.open(url);
    c.sendRaw(JSON.stringify({ type: "hello", v: 1, token: opts.token, device: opts.device, ...(opts.cursor !== undefined ? { cursor: opts.cursor } : {}) }));
    if (!opts.expectClose) await c.waitFor((f) => f.type === "welcome");
    return c;
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  /** Sends a frame with a fresh ref and resolves with the reply carrying it. */
  async request(frame: Frame, timeoutMs = 10_000): Promise<Frame> {
    const ref = String(this.#nextRef++);
    const reply = this.waitFor((f) => f.ref === ref, timeoutMs);
    this.sendRaw(JSON.stringify({ ...frame, ref }));
    return reply;
  }

  waitFor(pred: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5))}`)), timeoutMs);
      this.#waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  /** Received "msg" frames, in arrival order. */
  messages(): Frame[] {
    return this.frames.filter((f) => f.type === "msg");
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed;
  }
}

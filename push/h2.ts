// HTTP/2 to the phone push services (APNs speaks nothing else; FCM and Google's token endpoint
// take it too). One connection per origin, kept open and shared by every request, as Apple asks
// ("keep your connections open"); a connection the server closes or sends GOAWAY on is dropped
// and the next request opens a new one. The hosts come from natter's configuration, never from
// a client, so no target rules apply here (compare http.ts). Bodies of answers are kept up to
// 64 KiB (error bodies are small JSON), each request has a deadline.
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { retryAfterMs } from "./http.ts";

export interface H2Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** From a Retry-After header, in ms. */
  retryAfterMs?: number | undefined;
}

export interface H2Request {
  headers: OutgoingHttpHeaders;
  body: string | Buffer;
  /** Deadline of the request, from sending to the end of the answer (ms). */
  timeoutMs: number;
}

const MAX_BODY = 64 * 1024;

/** A request that took longer than its deadline. */
class H2Timeout extends Error {
  readonly code = "ETIMEDOUT";
  override name = "H2Timeout";
}

export class Http2Client {
  readonly #sessions = new Map<string, ClientHttp2Session>();
  #closed = false;

  #session(origin: string): ClientHttp2Session {
    const open = this.#sessions.get(origin);
    if (open && !open.closed && !open.destroyed) return open;
    const session = http2.connect(origin);
    // Errors reach the streams of the session; the session itself is dropped below.
    session.on("error", () => undefined);
    const drop = () => {
      if (this.#sessions.get(origin) === session) this.#sessions.delete(origin);
    };
    session.on("close", drop);
    session.on("goaway", () => {
      drop();
      session.close(); // streams in flight finish; new ones go to a new connection
    });
    this.#sessions.set(origin, session);
    return session;
  }

  /** POSTs to `url`; resolves with the answer (any status), rejects with the network error or H2Timeout. */
  post(url: URL, req: H2Request): Promise<H2Response> {
    if (this.#closed) return Promise.reject(new Error("HTTP/2 client closed"));
    return new Promise<H2Response>((resolve, reject) => {
      const session = this.#session(url.origin);
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request({ ":method": "POST", ":path": `${url.pathname}${url.search}`, ...req.headers });
      } catch (err) {
        session.destroy(); // unusable (closing, out of stream ids): the next request opens a new one
        reject(err as Error);
        return;
      }
      let settled = false;
      const done = (err: Error | undefined, res?: H2Response) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(res!);
      };
      const timer = setTimeout(() => {
        // A connection that never came up is abandoned, so the next request tries a new one.
        if (session.connecting) session.destroy();
        stream.close(http2.constants.NGHTTP2_CANCEL);
        done(new H2Timeout(`no answer within ${req.timeoutMs} ms`));
      }, req.timeoutMs);
      let status = 0;
      let headers: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on("response", (h) => {
        status = Number(h[":status"] ?? 0);
        headers = h;
      });
      stream.on("data", (chunk: Buffer) => {
        if (size >= MAX_BODY) return;
        chunks.push(chunk);
        size += chunk.length;
      });
      stream.on("end", () => done(undefined, { status, headers, body: Buffer.concat(chunks).subarray(0, MAX_BODY), retryAfterMs: retryAfterMs(headers["retry-after"]) }));
      stream.on("error", (err) => done(err));
      stream.on("close", () => done(new Error(`stream closed without an answer (code ${stream.rstCode})`)));
      stream.end(req.body);
    });
  }

  close(): void {
    this.#closed = true;
    for (const session of this.#sessions.values()) session.close();
    this.#sessions.clear();
  }
}

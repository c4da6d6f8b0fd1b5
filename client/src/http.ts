// HTTP to the edge beside the socket: image uploads and downloads. Requests carry this user's
// token (the one the socket last used; a fresh one, once, when the edge refuses it) and fail with
// typed errors, like everything else the client does.
import type { Wire } from "./connection.js";
import { closedError, NatterError } from "./errors.js";
import type { TokenProvider } from "./options.js";
import type { ImageRef } from "./protocol.js";
import { toHttpUrl } from "./util.js";

export interface EdgeHttpOptions {
  /** Where requests go: an edge's URL, or a function that names one. */
  url: string | (() => string | Promise<string>);
  token: string | TokenProvider;
}

export class EdgeHttp {
  readonly #opts: EdgeHttpOptions;
  readonly #wire: Pick<Wire, "state">;
  /** The token of the last connection attempt or request, reused for the next request. */
  token: string | undefined;

  constructor(opts: EdgeHttpOptions, wire: Pick<Wire, "state">) {
    this.#opts = opts;
    this.#wire = wire;
  }

  async uploadImage(data: Blob | ArrayBuffer | Uint8Array, contentType?: string): Promise<ImageRef> {
    const type = contentType ?? (typeof Blob !== "undefined" && data instanceof Blob ? data.type : "");
    const res = await this.#request("/images", { method: "POST", body: data as BodyInit, headers: type !== "" ? { "content-type": type } : {} });
    const body = (await res.json().catch(() => undefined)) as { image?: ImageRef } | undefined;
    if (body?.image === undefined) throw new NatterError("INTERNAL", "POST /images: no image in the answer", { temporary: false });
    return body.image;
  }

  async fetchImage(id: string, variant: "full" | "thumb"): Promise<Blob> {
    const res = await this.#request(`/images/${encodeURIComponent(id)}/${variant}`, { method: "GET" });
    return res.blob();
  }

  /** An HTTP request to the edge with this user's token (refreshed once when refused); typed errors. */
  async #request(path: string, init: RequestInit): Promise<Response> {
    if (this.#wire.state === "closed") throw closedError();
    const raw = typeof this.#opts.url === "function" ? await this.#opts.url() : this.#opts.url;
    const url = new URL(path, toHttpUrl(raw));
    const provider = this.#opts.token;
    const tokenFor = async (reason: "connect" | "refresh") => (typeof provider === "function" ? provider(reason) : provider);
    let token = this.token ?? (await tokenFor("connect"));
    const request = (t: string) => fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${t}` } });
    let res: Response;
    try {
      res = await request(token);
      if (res.status === 401 && typeof provider === "function") {
        await res.body?.cancel();
        token = await tokenFor("refresh");
        res = await request(token);
      }
    } catch (err) {
      throw new NatterError("UNAVAILABLE", `${init.method ?? "GET"} ${url.pathname}: ${(err as Error)?.message ?? String(err)}`, { temporary: true, cause: err });
    }
    this.token = token;
    if (res.ok) return res;
    const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string; temporary?: boolean } };
    throw new NatterError(body.error?.code ?? (res.status === 404 ? "IMAGE_NOT_FOUND" : "UNAVAILABLE"), `${init.method ?? "GET"} ${url.pathname}: ${body.error?.message ?? `HTTP ${res.status}`}`, {
      temporary: body.error?.temporary ?? res.status >= 500,
    });
  }
}

// A TCP proxy on loopback in front of an edge, for network faults in tests: cut every
// connection (and refuse new ones) to take a client offline, or drop what the server sends
// while still passing what the client sends (a lost ack). natter itself is never touched.
import net from "node:net";

export interface TcpProxy {
  /** http://127.0.0.1:PORT: use it where the edge's URL would go. */
  readonly url: string;
  /** Connections accepted so far (each WebSocket connection attempt that got through). */
  readonly accepted: number;
  /** Destroys every connection and refuses new ones until restore(): the client is offline. */
  cut(): void;
  /** Accepts connections again and passes both directions. */
  restore(): void;
  /** While on, bytes from the server are dropped; bytes from the client still reach the server. */
  dropServerBytes(on: boolean): void;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const { hostname, port } = new URL(target);
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let refusing = false;
  let dropping = false;
  let accepted = 0;

  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    accepted++;
    const upstream = net.connect(Number(port), hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => {
      if (!dropping) client.write(d);
    });
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;

  const close = async (): Promise<void> => {
    for (const p of pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    pairs.clear();
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    url,
    get accepted() {
      return accepted;
    },
    cut() {
      refusing = true;
      for (const p of pairs) {
        // resetAndDestroy (RST) is what a pulled cable or a crashed middlebox looks like.
        p.client.resetAndDestroy();
        p.upstream.destroy();
      }
      pairs.clear();
    },
    restore() {
      refusing = false;
      dropping = false;
    },
    dropServerBytes(on) {
      dropping = on;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

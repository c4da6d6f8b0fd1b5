import { type DestinationStream, pino, type Logger } from "pino";

export type { Logger };

export interface LogOptions {
  level: string;
  /** Human-readable lines (pino-pretty) instead of JSON. */
  pretty: boolean;
}

/**
 * Fields whose values never reach a log line, at the top of a logged object and up to two levels
 * down (`{ token }`, `{ req: { token } }`, `{ cfg: { auth: { jwtSecret } } }`): tokens, secrets,
 * passwords and keys. Their values are replaced by "[redacted]". A value written into the message
 * string itself cannot be found: never interpolate one.
 */
const SECRET_FIELDS = ["token", "authorization", "cookie", "secret", "password", "pass", "jwtSecret", "secretKey", "privateKey", "keys"];
const REDACT = {
  paths: [
    ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
    "req.headers.authorization",
    "req.headers.cookie",
    "*.headers.authorization",
    "*.headers.cookie",
  ],
  censor: "[redacted]",
};

export function createLogger(opts: LogOptions, destination?: DestinationStream): Logger {
  if (opts.pretty && destination === undefined) {
    return pino({
      level: opts.level,
      redact: REDACT,
      transport: { target: "pino-pretty", options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname" } },
    });
  }
  return destination === undefined ? pino({ level: opts.level, redact: REDACT }) : pino({ level: opts.level, redact: REDACT }, destination);
}

/** A logger that writes nothing: for tests and tools that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/**
 * Client mistakes (bad frames, bad tokens, oversize messages) are a client's problem, not the
 * server's: each is counted by code, and the counts are logged at warn at most once per
 * interval, so no client can flood the log. Refusals under load, and temporary failures that
 * thousands of clients can meet at once (NATS slow in a reconnect storm), are counted the same
 * way (another `what`), with the first cause of each interval as an example.
 */
export class MistakeLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #what: string;
  #counts = new Map<string, number>();
  #example: unknown;
  #timer: NodeJS.Timeout | undefined;

  constructor(log: Logger, intervalMs = 10_000, what = "client mistakes (bad frames, bad tokens)") {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#what = what;
  }

  /** Counts one `code`; `example`: a cause to show (the first of the interval is logged). */
  note(code: string, example?: unknown): void {
    this.#counts.set(code, (this.#counts.get(code) ?? 0) + 1);
    if (example !== undefined) this.#example ??= example;
    this.#timer ??= setTimeout(() => this.flush(), this.#intervalMs).unref();
  }

  /** Logs what was counted since the last line (nothing when nothing was). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#counts.size === 0) return;
    const counts = Object.fromEntries(this.#counts);
    const example = this.#example;
    this.#counts = new Map();
    this.#example = undefined;
    this.#log.warn({ counts, intervalMs: this.#intervalMs, ...(example === undefined ? {} : { err: example }) }, `${this.#what} in the last interval`);
  }
}

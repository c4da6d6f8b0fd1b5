import { pino, type Logger } from "pino";

export type { Logger };

export interface LogOptions {
  level: string;
  /** Human-readable lines (pino-pretty) instead of JSON. */
  pretty: boolean;
}

export function createLogger(opts: LogOptions): Logger {
  if (opts.pretty) {
    return pino({
      level: opts.level,
      transport: { target: "pino-pretty", options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname" } },
    });
  }
  return pino({ level: opts.level });
}

/** A logger that writes nothing: for tests and tools that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

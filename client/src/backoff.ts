// Jittered exponential backoff between reconnect attempts: attempt n waits a random time in
// [base/2, base] where base = min(maxMs, initialMs · factor^n). The random half spreads a crowd
// of clients reconnecting after the same outage; the fixed half keeps a floor under each wait.

export interface BackoffOptions {
  /** First delay's upper bound (ms). Default 250. */
  initialMs?: number;
  /** Upper bound of any delay (ms). Default 30,000. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
}

export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = opts.initialMs ?? 250;
  const max = opts.maxMs ?? 30_000;
  const factor = opts.factor ?? 2;
  const base = Math.min(max, initial * factor ** Math.max(0, attempt));
  return Math.round(base / 2 + random() * (base / 2));
}

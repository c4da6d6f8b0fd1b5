// Compare-and-set on a subject's last sequence, the one way natter changes shared state in
// JetStream (membership, receipts, the conversation index, presence, uploads): read the current
// value and its sequence, decide, publish with `expect: { lastSubjectSequence }`. When another
// writer got there first the publish is refused (StreamWrongLastSequence) and the step runs again
// on what is there now.
import { NatterError } from "../core/index.ts";
import { isWrongLastSequence } from "./errors.ts";

export interface CompareAndSetOptions {
  /** What is being changed, for the CONFLICT and UNAVAILABLE messages ("the conversation"). */
  what: string;
  /** Tries before CONFLICT (temporary: the client retries). Default 50. */
  attempts?: number;
}

/**
 * Runs `step` until it returns without a compare-and-set refusal: a refused step is run again
 * after a short jittered wait (up to 50 ms, so concurrent writers spread out). `step` may return
 * without publishing (nothing to change). Errors that are not NatterErrors become UNAVAILABLE.
 */
export async function compareAndSet<T>(step: (attempt: number) => Promise<T>, opts: CompareAndSetOptions): Promise<T> {
  const attempts = opts.attempts ?? 50;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      return await step(attempt);
    } catch (err) {
      if (isWrongLastSequence(err)) {
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 ** attempt)));
        continue;
      }
      if (err instanceof NatterError) throw err;
      throw new NatterError("UNAVAILABLE", `could not change ${opts.what}`, { cause: err });
    }
  }
  throw new NatterError("CONFLICT", `${opts.what} kept changing; retry`);
}

// Validation of every id that may become part of a NATS subject or a msg id.
// Allowed: ASCII letters, digits, '_' and '-', 1..64 characters. That excludes '.', '*', '>',
// whitespace, control characters and anything non-ASCII, so no client string can change the
// shape of a subject.
import { NatterError } from "./errors.ts";

export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidId(value: unknown): value is string {
  return typeof value === "string" && ID_PATTERN.test(value);
}

/** Returns `value` when it is a safe id, otherwise throws INVALID_ID naming the field. */
export function checkId(field: string, value: unknown): string {
  if (!isValidId(value)) {
    throw new NatterError("INVALID_ID", `${field} must be 1-64 characters of A-Z a-z 0-9 _ -`);
  }
  return value;
}

// Frames for the protocol fuzz test: valid frames generated from the protocol's own schemas
// (edge/protocol.ts, as JSON Schema), then mutated the ways a careless or hostile client would.
// Seeded: the same seed gives the same frames.
import { z } from "zod";
import { ClientFrame, HelloFrame } from "../../edge/protocol.ts";

/** mulberry32: small, fast, good enough to pick mutations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Schema {
  type?: string | string[];
  const?: Json;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  oneOf?: Schema[];
  anyOf?: Schema[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  maxItems?: number;
  default?: Json;
}

/** Every object variant of a (nested) union. */
function variants(s: Schema): Schema[] {
  const alts = s.oneOf ?? s.anyOf;
  return alts ? alts.flatMap(variants) : [s];
}

const CLIENT_VARIANTS = variants(z.toJSONSchema(ClientFrame, { io: "input" }) as Schema);
const HELLO_SCHEMA = z.toJSONSchema(HelloFrame, { io: "input" }) as Schema;

/** Inserted into every string a mutation makes up: an error message must never contain it. */
export const MARKER = "zqx";
// biome-ignore lint/suspicious/noTemplateCurlyInString: a template placeholder is one of the nasty strings, on purpose
const NASTY = ["\u0000", "\u001b[31m", "\u202e", "\ud800", "\udfff", "\n", "\\", '"', "%s", "${x}", "<script>", "\u2028", "👋"];
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

export class FrameFuzzer {
  readonly rnd: () => number;
  constructor(seed: number) {
    this.rnd = prng(seed);
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rnd() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }

  id(): string {
    // Ids the fuzzer makes up start with "fz": they never name the chatting users.
    let s = "fz";
    for (let i = this.int(1, 10); i > 0; i--) s += this.pick([...ALPHABET]);
    return s;
  }

  nastyString(): string {
    let s = MARKER;
    for (let i = this.int(1, 6); i > 0; i--) s += this.pick(NASTY) + MARKER;
    return s;
  }

  /** A value valid for `s` (ids from the id pattern, numbers in range, lists within bounds). */
  valid(s: Schema): Json {
    if (s.const !== undefined) return s.const;
    const alts = s.oneOf ?? s.anyOf;
    if (alts) return this.valid(this.pick(alts));
    const type = Array.isArray(s.type) ? this.pick(s.type) : s.type;
    switch (type) {
      case "object": {
        const out: Record<string, Json> = {};
        for (const [k, p] of Object.entries(s.properties ?? {})) {
          if (k === "ref") continue; // the fuzz loop sets refs
          if (s.required?.includes(k) || this.chance(0.5)) out[k] = this.valid(p);
        }
        return out;
      }
      case "array": {
        const n = this.int(s.minItems ?? 0, Math.min(s.maxItems ?? 3, 3));
        return Array.from({ length: n }, () => this.valid(s.items ?? {}));
      }
      case "string":
        if (s.pattern) return this.id();
        return this.chance(0.2) ? this.nastyString() : `text ${this.int(0, 1e6)}`.slice(0, s.maxLength ?? 100);
      case "integer": {
        const lo = Math.max(s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : 0), 0);
        const hi = Math.min(s.maximum ?? 1000, lo + 1000);
        return this.int(lo, hi);
      }
      case "number":
        return this.int(0, 1000);
      case "boolean":
        return this.chance(0.5);
      case "null":
        return null;
      default:
        return this.nastyString();
    }
  }

  /** A value of another JSON type than `s` wants. */
  wrongType(s: Schema): Json {
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    const others: Json[] = [[], {}, true, null, 12345, -1, 1.5, this.nastyString(), [this.nastyString()], { [MARKER]: 1 }];
    return this.pick(others.filter((v) => (type === "string" ? typeof v !== "string" : type === "integer" || type === "number" ? typeof v !== "number" : type === "array" ? !Array.isArray(v) : true)));
  }

  hugeNumber(): Json {
    return this.pick([1e308, -1e308, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 0, -0, 1e-300, 4294967297]);
  }
}

export type RawFrame = { data: Buffer | string; binary?: boolean };

/**
 * What a mutation expects back. `close`: this close code and nothing else. `error`: an error frame
 * with one of these codes. `any`: any documented reply, error or close code (but never INTERNAL).
 */
type Expect = { close: number } | { error: string[] } | { any: true };

export interface FuzzCase {
  kind: string;
  frames: RawFrame[];
  expect: Expect;
}

/** Builds one case for an authenticated socket: a valid frame, mutated (or not) one way. */
export function authenticatedCase(f: FrameFuzzer, ref: string, limits: { maxPayloadBytes: number; hardMaxBytes: number }): FuzzCase {
  const variant = f.pick(CLIENT_VARIANTS);
  const frame = f.valid(variant) as Record<string, Json>;
  frame.ref = ref;
  const fields = Object.keys(variant.properties ?? {}).filter((k) => k !== "type" && k !== "ref");
  const text = (v: unknown) => JSON.stringify(v);
  const r = f.rnd();
  const kinds: [number, () => FuzzCase][] = [
    [0.2, () => ({ kind: "valid", frames: [{ data: text(frame) }], expect: { any: true } })],
    [
      0.1,
      () => {
        const k = fields.length ? f.pick(fields) : "type";
        frame[k] = f.wrongType(variant.properties?.[k] ?? {});
        return { kind: `wrong type of ${k}`, frames: [{ data: text(frame) }], expect: k === "type" ? { error: ["BAD_FRAME"] } : { any: true } };
      },
    ],
    [
      0.07,
      () => {
        const k = f.pick([...fields, "type"]);
        delete frame[k];
        return { kind: `without ${k}`, frames: [{ data: text(frame) }], expect: k === "type" ? { error: ["BAD_FRAME"] } : { any: true } };
      },
    ],
    [0.06, () => ({ kind: "extra field", frames: [{ data: text({ ...frame, [f.nastyString()]: f.nastyString() }) }], expect: { error: ["BAD_FRAME"] } })],
    [
      0.05,
      () => {
        const k = fields.length ? f.pick(fields) : "extra";
        let deep = "1";
        for (let i = f.int(9, 5000); i > 0; i--) deep = `[${deep}]`;
        const raw = text({ ...frame, [k]: "@@" }).replace('"@@"', deep);
        return { kind: `deep ${k}`, frames: [{ data: raw }], expect: { error: ["BAD_FRAME"] } };
      },
    ],
    [
      0.05,
      () => {
        let deep = '"ping"';
        for (let i = f.int(9, 5000); i > 0; i--) deep = `[${deep}]`;
        return { kind: "deep type", frames: [{ data: `{"type":${deep},"ref":"${ref}"}` }], expect: { error: ["BAD_FRAME"] } };
      },
    ],
    [
      0.06,
      () => {
        const k = fields.length ? f.pick(fields) : "extra";
        frame[k] = f.hugeNumber();
        return { kind: `huge number in ${k}`, frames: [{ data: text(frame) }], expect: { any: true } };
      },
    ],
    [
      0.07,
      () => {
        const k = fields.length ? f.pick(fields) : "extra";
        frame[k] = f.chance(0.5) ? f.nastyString() : `${MARKER}${"y".repeat(f.int(60, 20_000))}`;
        return { kind: `odd string in ${k}`, frames: [{ data: text(frame) }], expect: { any: true } };
      },
    ],
    [0.05, () => ({ kind: "unknown type", frames: [{ data: text({ ...frame, type: f.nastyString() }) }], expect: { error: ["UNKNOWN_TYPE"] } })],
    [0.04, () => ({ kind: "missing type", frames: [{ data: text({ ref, x: 1 }) }], expect: { error: ["BAD_FRAME"] } })],
    [
      0.05,
      () => {
        const whole = text(frame);
        return { kind: "truncated JSON", frames: [{ data: whole.slice(0, f.int(1, whole.length - 1)) }], expect: { error: ["BAD_JSON"] } };
      },
    ],
    [0.04, () => ({ kind: "not an object", frames: [{ data: text(f.pick<Json>([[1, 2], "ping", 42, null, true, [frame]])) }], expect: { error: ["BAD_FRAME"] } })],
    [0.04, () => ({ kind: "binary frame", frames: [{ data: Buffer.from(text(frame)), binary: true }], expect: { error: ["BAD_FRAME"] } })],
    [
      0.04,
      () => {
        const bytes = Buffer.from(text(frame));
        const at = f.int(0, bytes.length - 1);
        const bad = Buffer.concat([bytes.subarray(0, at), Buffer.from([f.pick([0xff, 0xc0, 0xed, 0xf8, 0x80])]), bytes.subarray(at)]);
        return { kind: "invalid UTF-8", frames: [{ data: bad }], expect: { close: 1007 } };
      },
    ],
    [
      0.04,
      () => ({
        kind: "over maxPayloadBytes",
        frames: [{ data: text({ ...frame, pad: "p".repeat(f.int(limits.maxPayloadBytes, limits.hardMaxBytes - 1000)) }) }],
        expect: { error: ["FRAME_TOO_LARGE"] },
      }),
    ],
    [
      0.03,
      () => ({
        kind: "over the hard limit, more frames behind it",
        frames: [{ data: "x".repeat(f.int(limits.hardMaxBytes + 1, 1024 * 1024)) }, { data: text({ type: "ping", ref: "behind" }) }, { data: text(frame) }],
        expect: { close: 1009 },
      }),
    ],
    [1, () => ({ kind: "garbage text", frames: [{ data: f.nastyString() }], expect: { error: ["BAD_JSON"] } })],
  ];
  let acc = 0;
  for (const [p, make] of kinds) {
    acc += p;
    if (r < acc) return make();
  }
  return kinds[kinds.length - 1]![1]();
}

/** A first frame on a fresh socket: a hello (valid or not) or anything else. */
export function firstFrameCase(f: FrameFuzzer, token: string, limits: { hardMaxBytes: number }): FuzzCase {
  const hello = f.valid(HELLO_SCHEMA) as Record<string, Json>;
  hello.token = token;
  hello.v = 1;
  delete hello.cursor;
  const r = f.rnd();
  if (r < 0.2) return { kind: "valid hello", frames: [{ data: JSON.stringify(hello) }], expect: { any: true } };
  if (r < 0.3) return { kind: "hello with a bad token", frames: [{ data: JSON.stringify({ ...hello, token: f.nastyString() }) }, { data: '{"type":"ping","ref":"early"}' }], expect: { close: 4401 } };
  if (r < 0.35) return { kind: "hello of another version", frames: [{ data: JSON.stringify({ ...hello, v: f.pick([0, 2, 99, -1]) }) }], expect: { close: 4426 } };
  if (r < 0.45) {
    const k = f.pick(["v", "token", "device"]);
    return { kind: `hello with a wrong ${k}`, frames: [{ data: JSON.stringify({ ...hello, [k]: f.wrongType(HELLO_SCHEMA.properties?.[k] ?? {}) }) }], expect: { close: 4400 } };
  }
  if (r < 0.55) return { kind: "another frame first", frames: [{ data: JSON.stringify({ type: "ping" }) }], expect: { close: 4400 } };
  if (r < 0.65) return { kind: "garbage first", frames: [{ data: f.nastyString() }], expect: { close: 4400 } };
  if (r < 0.72) return { kind: "binary first", frames: [{ data: Buffer.from(JSON.stringify(hello)), binary: true }], expect: { close: 4400 } };
  if (r < 0.8) return { kind: "oversize first", frames: [{ data: "x".repeat(limits.hardMaxBytes + 10) }, { data: JSON.stringify(hello) }], expect: { close: 1009 } };
  if (r < 0.87) return { kind: "invalid UTF-8 first", frames: [{ data: Buffer.from([0x7b, 0xff, 0x7d]) }], expect: { close: 1007 } };
  let deep = '"hello"';
  for (let i = f.int(9, 5000); i > 0; i--) deep = `[${deep}]`;
  return { kind: "deep first", frames: [{ data: `{"type":${deep}}` }], expect: { close: 4400 } };
}

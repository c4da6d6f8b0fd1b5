// How natter encodes what it stores in JetStream: JSON, read back through a schema.
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(data: Uint8Array): unknown {
  return JSON.parse(decoder.decode(data)) as unknown;
}

/** decodeJson, or undefined for bytes that are not JSON (a schema check then refuses them). */
export function decodeJsonOrUndefined(data: Uint8Array): unknown {
  try {
    return decodeJson(data);
  } catch {
    return undefined;
  }
}

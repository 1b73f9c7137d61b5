/**
 * The cleartext header of a Double Ratchet message and its 41-byte encoding.
 * Private to crypto/: other folders import crypto/mod.ts.
 *
 * @module
 */
import { Malformed } from "./errors.ts";
import { assertLength, KEY_BYTES } from "./_primitives.ts";

/** Largest value of a ratchet counter (N, PN, Ns, Nr): they are encoded as u32. */
export const U32_MAX = 0xffff_ffff;

const HEADER_VERSION = 1;
const HEADER_BYTES = 1 + KEY_BYTES + 4 + 4;

/**
 * The cleartext header of a ratchet message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RatchetHeader } from "./mod.ts";
 * const header: RatchetHeader = { publicKey: new Uint8Array(32), pn: 0, n: 0 };
 * assert(header.n === 0);
 * ```
 */
export interface RatchetHeader {
  /** The sender's current ratchet public key. */
  publicKey: Uint8Array;
  /** PN: number of messages in the sender's previous sending chain. */
  pn: number;
  /** N: this message's number in the sending chain. */
  n: number;
}

/**
 * Encodes a header: version (1) ‖ public key (32) ‖ PN (u32 BE) ‖ N (u32 BE), 41 bytes.
 *
 * @throws {RangeError} when the key is not 32 bytes or PN/N is not a u32
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRatchetHeader, encodeRatchetHeader } from "./mod.ts";
 * const bytes = encodeRatchetHeader({ publicKey: new Uint8Array(32), pn: 2, n: 5 });
 * assert(decodeRatchetHeader(bytes).n === 5);
 * ```
 */
export function encodeRatchetHeader(h: RatchetHeader): Uint8Array {
  assertLength(h.publicKey, KEY_BYTES, "a ratchet header public key");
  assertU32(h.pn, "a ratchet header PN");
  assertU32(h.n, "a ratchet header N");
  const out = new Uint8Array(HEADER_BYTES);
  const view = new DataView(out.buffer);
  out[0] = HEADER_VERSION;
  out.set(h.publicKey, 1);
  view.setUint32(1 + KEY_BYTES, h.pn);
  view.setUint32(1 + KEY_BYTES + 4, h.n);
  return out;
}

/**
 * Decodes what {@linkcode encodeRatchetHeader} produced.
 *
 * @throws {Malformed} on a wrong length or version
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Malformed } from "./errors.ts";
 * import { decodeRatchetHeader } from "./mod.ts";
 * try {
 *   decodeRatchetHeader(new Uint8Array(3));
 *   throw new Error("unreachable");
 * } catch (e) {
 *   assert(e instanceof Malformed);
 * }
 * ```
 */
export function decodeRatchetHeader(b: Uint8Array): RatchetHeader {
  if (!(b instanceof Uint8Array) || b.length !== HEADER_BYTES) {
    throw new Malformed(
      `Cannot decode a ratchet header: expected ${HEADER_BYTES} bytes, got ${b?.length}`,
    );
  }
  if (b[0] !== HEADER_VERSION) {
    throw new Malformed(`Cannot decode a ratchet header: unknown version ${b[0]}`);
  }
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    publicKey: b.slice(1, 1 + KEY_BYTES),
    pn: view.getUint32(1 + KEY_BYTES),
    n: view.getUint32(1 + KEY_BYTES + 4),
  };
}

/**
 * Throws a RangeError unless `value` fits a u32 counter.
 *
 * @throws {RangeError} when `value` is not an integer in 0..U32_MAX
 */
export function assertU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new RangeError(`Cannot encode ${what}: ${value} is not a u32`);
  }
}

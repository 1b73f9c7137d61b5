/**
 * Message authentication under a shared secret: HMAC-SHA-256, checked in constant time.
 *
 * @module
 */
import { assertLength, hkdfSha256, hmacSha256, KEY_BYTES } from "./_primitives.ts";
import { equalBytes } from "./bytes.ts";

/** Length of a {@linkcode mac} tag, in bytes. */
export const MAC_BYTES = 32;

/**
 * HMAC-SHA-256 of `message` under `key` (32 bytes).
 *
 * @throws {RangeError} when `key` is not 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mac, MAC_BYTES, verifyMac } from "./mod.ts";
 * const key = new Uint8Array(32).fill(7);
 * const tag = mac(key, new Uint8Array([1, 2]));
 * assert.equal(tag.length, MAC_BYTES);
 * assert(verifyMac(key, new Uint8Array([1, 2]), tag));
 * assert(!verifyMac(key, new Uint8Array([1, 3]), tag));
 * ```
 */
export function mac(key: Uint8Array, message: Uint8Array): Uint8Array {
  assertLength(key, KEY_BYTES, "a MAC key");
  return hmacSha256(key, message);
}

/**
 * Whether `tag` is {@linkcode mac}`(key, message)`, compared in constant time. Never throws: a
 * key or tag of the wrong length is `false`.
 */
export function verifyMac(key: Uint8Array, message: Uint8Array, tag: Uint8Array): boolean {
  if (key.length !== KEY_BYTES || !(tag instanceof Uint8Array) || tag.length !== MAC_BYTES) {
    return false;
  }
  return equalBytes(hmacSha256(key, message), tag);
}

/**
 * A 32-byte key for one purpose, derived from `secret` with HKDF-SHA-256 under the label `info`
 * (no salt): distinct labels give independent keys.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveKey } from "./mod.ts";
 * const secret = new Uint8Array(32).fill(1);
 * assert.notDeepEqual(deriveKey(secret, "a"), deriveKey(secret, "b"));
 * assert.deepEqual(deriveKey(secret, "a"), deriveKey(secret, "a"));
 * ```
 */
export function deriveKey(secret: Uint8Array, info: string): Uint8Array {
  return hkdfSha256(secret, {
    salt: new Uint8Array(0),
    info: new TextEncoder().encode(info),
    length: KEY_BYTES,
  });
}

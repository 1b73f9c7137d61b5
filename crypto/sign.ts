/**
 * Ed25519 signatures (RFC 8032), through `node:crypto`.
 *
 * @module
 */
import { assertLength, KEY_BYTES } from "./_primitives.ts";
import { ed25519Sign, ed25519Verify } from "./_native.ts";

/** Length of an Ed25519 signature. */
export const SIGNATURE_BYTES = 64;

/**
 * Signs `message` with a 32-byte Ed25519 private key (seed): 64 bytes, deterministic.
 *
 * @throws {RangeError} when `privateKey` is not 32 bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateSigningKeyPair, SeededRandom, sign, verify } from "./mod.ts";
 * const { privateKey, publicKey } = generateSigningKeyPair(new SeededRandom(1));
 * const message = new TextEncoder().encode("meow");
 * const signature = await sign(privateKey, message);
 * assert(await verify(publicKey, message, signature));
 * ```
 */
export function sign(privateKey: Uint8Array, message: Uint8Array): Uint8Array {
  assertLength(privateKey, KEY_BYTES, "an Ed25519 private key");
  return ed25519Sign(privateKey, message);
}

/**
 * Whether `signature` is a valid Ed25519 signature of `message` by `publicKey`.
 * Never throws: a malformed key or signature is simply not valid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateSigningKeyPair, SeededRandom, sign, verify } from "./mod.ts";
 * const { privateKey, publicKey } = generateSigningKeyPair(new SeededRandom(1));
 * const signature = await sign(privateKey, new Uint8Array([1]));
 * assert(!(await verify(publicKey, new Uint8Array([2]), signature)));
 * assert(!(await verify(new Uint8Array(3), new Uint8Array([1]), signature)));
 * ```
 */
export function verify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (
    !(publicKey instanceof Uint8Array) || publicKey.length !== KEY_BYTES ||
    !(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES ||
    !(message instanceof Uint8Array)
  ) {
    return false;
  }
  try {
    return ed25519Verify(publicKey, message, signature);
  } catch {
    // An invalid point may fail at import or at verification: either way, not valid.
    return false;
  }
}

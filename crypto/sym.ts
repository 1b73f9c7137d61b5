/**
 * The symmetric layer: XChaCha20-Poly1305 under a shared 32-byte key.
 *
 * @module
 */
import { BadCiphertext } from "./errors.ts";
import type { Random } from "./random.ts";
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  aeadDecrypt,
  aeadEncrypt,
  assertLength,
} from "./_primitives.ts";

/**
 * Encrypts with XChaCha20-Poly1305 under `key` (32 bytes): a random 24-byte
 * nonce ‖ ciphertext ‖ 16-byte tag. `ad` (associated data) is authenticated,
 * not encrypted: {@linkcode symDecrypt} must be given the same bytes. `before`, when given,
 * comes first in the same buffer (the header of a message that carries the box), so the box is
 * not copied again to frame it; the result is then `before` ‖ box.
 *
 * @throws {RangeError} when `key` is not 32 bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom, symDecrypt, symEncrypt } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const key = random.bytes(32);
 * const box = symEncrypt(key, new Uint8Array([1, 2, 3]), random);
 * assert(symDecrypt(key, box).join() === "1,2,3");
 * ```
 */
export function symEncrypt(
  key: Uint8Array,
  plaintext: Uint8Array,
  random: Random,
  ad?: Uint8Array,
  before?: Uint8Array,
): Uint8Array {
  assertLength(key, AEAD_KEY_BYTES, "a symmetric key");
  const nonce = random.bytes(AEAD_NONCE_BYTES);
  return aeadEncrypt(key, plaintext, { nonce, ad, prefix: before ? [before, nonce] : [nonce] });
}

/** How many bytes {@linkcode symEncrypt}'s box of a `plaintextBytes`-byte plaintext takes. */
export function symBoxBytes(plaintextBytes: number): number {
  return AEAD_NONCE_BYTES + plaintextBytes + AEAD_TAG_BYTES;
}

/**
 * Decrypts what {@linkcode symEncrypt} produced with the same associated data `ad`.
 *
 * @throws {RangeError} when `key` is not 32 bytes
 * @throws {BadCiphertext} when the input is too short, tampered, under another key, or
 *   sealed with other associated data
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BadCiphertext } from "./errors.ts";
 * import { SeededRandom, symDecrypt, symEncrypt } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const box = symEncrypt(random.bytes(32), new Uint8Array([1]), random);
 * try {
 *   symDecrypt(random.bytes(32), box);
 *   throw new Error("unreachable");
 * } catch (e) {
 *   assert(e instanceof BadCiphertext);
 * }
 * ```
 */
export function symDecrypt(
  key: Uint8Array,
  ciphertext: Uint8Array,
  ad?: Uint8Array,
): Uint8Array {
  assertLength(key, AEAD_KEY_BYTES, "a symmetric key");
  if (
    !(ciphertext instanceof Uint8Array) || ciphertext.length < AEAD_NONCE_BYTES + AEAD_TAG_BYTES
  ) {
    throw new BadCiphertext(
      `Cannot decrypt a symmetric message: ${ciphertext?.length} bytes is shorter than ` +
        `nonce and tag (${AEAD_NONCE_BYTES + AEAD_TAG_BYTES})`,
    );
  }
  return aeadDecrypt(key, ciphertext.subarray(AEAD_NONCE_BYTES), {
    nonce: ciphertext.subarray(0, AEAD_NONCE_BYTES),
    ad,
    what: "a symmetric message",
  });
}

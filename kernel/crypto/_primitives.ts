/**
 * The symmetric building blocks every layer shares, all from noble:
 * HKDF-SHA-256, HMAC-SHA-256 and XChaCha20-Poly1305. Private to kernel/crypto.
 *
 * @module
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { BadCiphertext, Malformed } from "../errors.ts";

/** Length of every private and public key in meowsync. */
export const KEY_BYTES = 32;
/** XChaCha20-Poly1305 key length. */
export const AEAD_KEY_BYTES = 32;
/** XChaCha20-Poly1305 nonce length. */
export const AEAD_NONCE_BYTES = 24;
/** Poly1305 tag length. */
export const AEAD_TAG_BYTES = 16;

/** HKDF-SHA-256 (RFC 5869): extract with `salt`, expand with `info` to `length` bytes. */
export function hkdfSha256(
  ikm: Uint8Array,
  options: { salt: Uint8Array; info: Uint8Array; length: number },
): Uint8Array {
  return hkdf(sha256, ikm, options.salt, options.info, options.length);
}

/** HMAC-SHA-256 of `message` under `key`. */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  return hmac(sha256, key, message);
}

/** XChaCha20-Poly1305 encryption: ciphertext ‖ tag. */
export function aeadEncrypt(
  key: Uint8Array,
  plaintext: Uint8Array,
  options: { nonce: Uint8Array; ad?: Uint8Array },
): Uint8Array {
  return xchacha20poly1305(key, options.nonce, options.ad).encrypt(plaintext);
}

/**
 * XChaCha20-Poly1305 decryption of ciphertext ‖ tag.
 *
 * @throws {BadCiphertext} when the tag does not authenticate
 */
export function aeadDecrypt(
  key: Uint8Array,
  ciphertext: Uint8Array,
  options: { nonce: Uint8Array; ad?: Uint8Array; what: string },
): Uint8Array {
  if (ciphertext.length < AEAD_TAG_BYTES) {
    throw new BadCiphertext(
      `Cannot decrypt ${options.what}: ${ciphertext.length} bytes is shorter than the tag`,
    );
  }
  try {
    return xchacha20poly1305(key, options.nonce, options.ad).decrypt(ciphertext);
  } catch (cause) {
    throw new BadCiphertext(
      `Cannot decrypt ${options.what}: the ${ciphertext.length}-byte ciphertext does not ` +
        `authenticate (tampered, or the wrong key)`,
      { cause },
    );
  }
}

/** Throws a RangeError unless `bytes` is a Uint8Array of exactly `length` bytes (misuse). */
export function assertLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    const seen = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw new RangeError(`Cannot use ${what}: expected ${length} bytes, got ${seen}`);
  }
}

/** Throws Malformed unless `publicKey` is 32 bytes: public keys come from peers. */
export function assertPublicKey(publicKey: Uint8Array, what: string): void {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== KEY_BYTES) {
    const seen = publicKey instanceof Uint8Array ? `${publicKey.length} bytes` : typeof publicKey;
    throw new Malformed(`Cannot compute ${what}: the public key is ${seen}, expected 32 bytes`);
  }
}

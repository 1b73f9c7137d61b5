/**
 * The symmetric building blocks every layer shares: HKDF-SHA-256 and
 * ChaCha20-Poly1305 from Deno's built-in `node:crypto` (computed at once, on
 * the calling thread), HMAC-SHA-256 and XChaCha20's HChaCha20 subkey from
 * noble (faster than a `node:crypto` call for 32-byte inputs). Private to
 * crypto/.
 *
 * XChaCha20-Poly1305 is ChaCha20-Poly1305 (RFC 8439) under the HChaCha20
 * subkey of the key and the nonce's first 16 bytes, with the nonce's last 8
 * bytes after four zero bytes as its 12-byte nonce
 * (draft-irtf-cfrg-xchacha-03, section 2.3); tests check it against the
 * draft's vector and noble's own XChaCha20-Poly1305.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, hkdfSync } from "node:crypto";
import { hchacha } from "@noble/ciphers/chacha.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { BadCiphertext, Malformed } from "./errors.ts";
import { concatBytes } from "./bytes.ts";

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
  return new Uint8Array(hkdfSync("sha256", ikm, options.salt, options.info, options.length));
}

/** HMAC-SHA-256 of `message` under `key`. */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  return hmac(sha256, key, message);
}

/** "expand 32-byte k", ChaCha20's constant, as four little-endian words. */
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

/** The ChaCha20-Poly1305 key and 12-byte nonce that XChaCha20-Poly1305 runs under. */
function xchachaParts(
  key: Uint8Array,
  nonce: Uint8Array,
): { subkey: Uint8Array; iv: Uint8Array } {
  if (key.length !== AEAD_KEY_BYTES || nonce.length !== AEAD_NONCE_BYTES) {
    throw new RangeError(
      `Cannot use XChaCha20-Poly1305: the key is ${key.length} bytes and the nonce ` +
        `${nonce.length}, expected ${AEAD_KEY_BYTES} and ${AEAD_NONCE_BYTES}`,
    );
  }
  const words = new Uint32Array(12);
  const bytes = new Uint8Array(words.buffer);
  bytes.set(key, 0);
  bytes.set(nonce.subarray(0, 16), 32);
  const subkey = new Uint32Array(8);
  hchacha(SIGMA, words.subarray(0, 8), words.subarray(8, 12), subkey);
  const iv = new Uint8Array(12);
  iv.set(nonce.subarray(16, 24), 4);
  return { subkey: new Uint8Array(subkey.buffer), iv };
}

/**
 * XChaCha20-Poly1305 encryption: ciphertext ‖ tag, after the bytes of `prefix` when given (the
 * box's nonce, a sealed box's key), so the caller's box is built with one copy, not two.
 */
export function aeadEncrypt(
  key: Uint8Array,
  plaintext: Uint8Array,
  options: { nonce: Uint8Array; ad?: Uint8Array; prefix?: readonly Uint8Array[] },
): Uint8Array {
  const { subkey, iv } = xchachaParts(key, options.nonce);
  const cipher = createCipheriv("chacha20-poly1305", subkey, iv, { authTagLength: AEAD_TAG_BYTES });
  if (options.ad) cipher.setAAD(options.ad, { plaintextLength: plaintext.length });
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  return concatBytes(...(options.prefix ?? []), head, tail, cipher.getAuthTag());
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
  const { subkey, iv } = xchachaParts(key, options.nonce);
  const body = ciphertext.subarray(0, ciphertext.length - AEAD_TAG_BYTES);
  try {
    const decipher = createDecipheriv("chacha20-poly1305", subkey, iv, {
      authTagLength: AEAD_TAG_BYTES,
    });
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - AEAD_TAG_BYTES));
    if (options.ad) decipher.setAAD(options.ad, { plaintextLength: body.length });
    const head = decipher.update(body);
    return concatBytes(head, decipher.final());
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

/**
 * Sealed boxes: anonymous encryption to an X25519 public key. An ephemeral
 * X25519 key agrees a secret with the recipient; HKDF-SHA-256 turns it into an
 * XChaCha20-Poly1305 key. Output: ephemeral public key (32) ‖ nonce (24) ‖
 * ciphertext ‖ tag (16).
 *
 * @module
 */
import { BadCiphertext, MeowError } from "./errors.ts";
import type { Random } from "./random.ts";
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  aeadDecrypt,
  aeadEncrypt,
  assertLength,
  assertPublicKey,
  hkdfSha256,
  KEY_BYTES,
} from "./_primitives.ts";
import { x25519, x25519Ephemeral, x25519PublicKey } from "./_native.ts";
import { concatBytes } from "./bytes.ts";

const SEAL_INFO = new TextEncoder().encode("meowsync/seal/v1");
/** Bytes a sealed box adds to its plaintext. */
export const SEAL_OVERHEAD_BYTES = KEY_BYTES + AEAD_NONCE_BYTES + AEAD_TAG_BYTES;

/** Binding both public keys into the KDF ties the key to this exact exchange. */
function sealKey(
  sharedSecret: Uint8Array,
  ephemeralPublicKey: Uint8Array,
  recipientPublicKey: Uint8Array,
): Uint8Array {
  return hkdfSha256(sharedSecret, {
    salt: concatBytes(ephemeralPublicKey, recipientPublicKey),
    info: SEAL_INFO,
    length: AEAD_KEY_BYTES,
  });
}

/**
 * Encrypts `plaintext` so only the holder of `recipientPublicKey`'s private key can read it.
 *
 * @throws {Malformed} when `recipientPublicKey` is not 32 bytes or is a low-order point
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEncryptionKeyPair, open, seal, SeededRandom } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const server = generateEncryptionKeyPair(random);
 * const sealed = await seal(server.publicKey, new Uint8Array([1, 2]), random);
 * assert((await open(server.privateKey, sealed)).join() === "1,2");
 * ```
 */
export function seal(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  random: Random,
): Uint8Array {
  return sealNow(recipientPublicKey, plaintext, random);
}

function sealNow(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  random: Random,
): Uint8Array {
  assertPublicKey(recipientPublicKey, "a sealed box");
  const ephemeral = random.bytes(KEY_BYTES);
  const nonce = random.bytes(AEAD_NONCE_BYTES);
  const { publicKey, sharedSecret } = x25519Ephemeral(ephemeral, recipientPublicKey, {
    cachePeer: true,
  });
  const key = sealKey(sharedSecret, publicKey, recipientPublicKey);
  return aeadEncrypt(key, plaintext, { nonce, prefix: [publicKey, nonce] });
}

/**
 * Decrypts a box made by {@linkcode seal} with the recipient's private key.
 *
 * @throws {RangeError} when `recipientPrivateKey` is not 32 bytes
 * @throws {BadCiphertext} when the box is too short, tampered, or for another key
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BadCiphertext } from "./errors.ts";
 * import { generateEncryptionKeyPair, open, SeededRandom } from "./mod.ts";
 * const { privateKey } = generateEncryptionKeyPair(new SeededRandom(1));
 * assert.throws(() => open(privateKey, new Uint8Array(10)), BadCiphertext);
 * ```
 */
export function open(recipientPrivateKey: Uint8Array, sealed: Uint8Array): Uint8Array {
  return openNow(recipientPrivateKey, sealed);
}

function openNow(recipientPrivateKey: Uint8Array, sealed: Uint8Array): Uint8Array {
  assertLength(recipientPrivateKey, KEY_BYTES, "an X25519 private key");
  if (!(sealed instanceof Uint8Array) || sealed.length < SEAL_OVERHEAD_BYTES) {
    throw new BadCiphertext(
      `Cannot open a sealed box: ${sealed?.length} bytes is shorter than the ` +
        `${SEAL_OVERHEAD_BYTES}-byte overhead`,
    );
  }
  const ephemeralPublicKey = sealed.subarray(0, KEY_BYTES);
  const nonce = sealed.subarray(KEY_BYTES, KEY_BYTES + AEAD_NONCE_BYTES);
  let sharedSecret: Uint8Array;
  try {
    sharedSecret = x25519(recipientPrivateKey, ephemeralPublicKey, { cache: true });
  } catch (cause) {
    if (!(cause instanceof MeowError)) throw cause;
    throw new BadCiphertext("Cannot open a sealed box: its ephemeral key is a low-order point", {
      cause,
    });
  }
  const recipientPublicKey = x25519PublicKey(recipientPrivateKey, { cache: true });
  const key = sealKey(sharedSecret, ephemeralPublicKey, recipientPublicKey);
  return aeadDecrypt(key, sealed.subarray(KEY_BYTES + AEAD_NONCE_BYTES), {
    nonce,
    what: "a sealed box",
  });
}

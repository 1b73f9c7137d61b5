/**
 * Key pairs and X25519 key agreement.
 *
 * @module
 */
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import type { Random } from "./random.ts";
import { assertLength, assertPublicKey, KEY_BYTES } from "./_primitives.ts";
import { countOperation, x25519 as x25519Fast, x25519Ephemeral } from "./_native.ts";

/**
 * A 32-byte private key (an Ed25519 seed or an X25519 scalar) and its 32-byte public key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateSigningKeyPair, type KeyPair, SeededRandom } from "./mod.ts";
 * const pair: KeyPair = generateSigningKeyPair(new SeededRandom(1));
 * assert(pair.publicKey.length === 32);
 * ```
 */
export interface KeyPair {
  /** The private half: an Ed25519 seed or an X25519 scalar. */
  privateKey: Uint8Array;
  /** The public half. */
  publicKey: Uint8Array;
}

/**
 * A fresh Ed25519 key pair for signing (identity and device keys).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateSigningKeyPair, SeededRandom } from "./mod.ts";
 * const { privateKey, publicKey } = generateSigningKeyPair(new SeededRandom(1));
 * assert(privateKey.length === 32 && publicKey.length === 32);
 * ```
 */
export function generateSigningKeyPair(random: Random): KeyPair {
  const privateKey = random.bytes(KEY_BYTES);
  countOperation("keyGeneration");
  return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
}

/**
 * The Ed25519 key pair of a 32-byte seed (the identity root, derived from
 * the recovery code): the same seed gives the same pair.
 *
 * @throws {RangeError} when the seed is not 32 bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signingKeyPairFromSeed } from "./mod.ts";
 * const seed = new Uint8Array(32).fill(3);
 * assert.deepEqual(signingKeyPairFromSeed(seed).publicKey, signingKeyPairFromSeed(seed).publicKey);
 * ```
 */
export function signingKeyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== KEY_BYTES) throw new RangeError(`A signing seed is ${KEY_BYTES} bytes`);
  return { privateKey: seed.slice(), publicKey: ed25519.getPublicKey(seed) };
}

/**
 * A fresh X25519 key pair for key agreement and sealing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEncryptionKeyPair, SeededRandom } from "./mod.ts";
 * const { publicKey } = generateEncryptionKeyPair(new SeededRandom(1));
 * assert(publicKey.length === 32);
 * ```
 */
export function generateEncryptionKeyPair(random: Random): KeyPair {
  const privateKey = random.bytes(KEY_BYTES);
  countOperation("keyGeneration");
  return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
}

/**
 * A fresh Ed25519 lookup key pair: its public key's base64url names a relay
 * queue, its private key signs the pull requests for that queue.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateLookupKeyPair, SeededRandom, toBase64Url } from "./mod.ts";
 * const queue = toBase64Url(generateLookupKeyPair(new SeededRandom(1)).publicKey);
 * assert(queue.length === 43);
 * ```
 */
export function generateLookupKeyPair(random: Random): KeyPair {
  return generateSigningKeyPair(random);
}

/**
 * The X25519 shared secret of our private key and a peer's public key.
 *
 * @throws {RangeError} when `privateKey` is not 32 bytes
 * @throws {Malformed} when `publicKey` is not 32 bytes or is a low-order point
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEncryptionKeyPair, SeededRandom, x25519SharedSecret } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const a = generateEncryptionKeyPair(random);
 * const b = generateEncryptionKeyPair(random);
 * const ab = await x25519SharedSecret(a.privateKey, b.publicKey);
 * const ba = await x25519SharedSecret(b.privateKey, a.publicKey);
 * assert(ab.join() === ba.join());
 * ```
 */
export function x25519SharedSecret(
  privateKey: Uint8Array,
  publicKey: Uint8Array,
): Uint8Array {
  assertLength(privateKey, KEY_BYTES, "an X25519 private key");
  assertPublicKey(publicKey, "an X25519 shared secret");
  return x25519Fast(privateKey, publicKey, { cache: true });
}

/**
 * A fresh X25519 key used once: its public key and its shared secret with `peerPublicKey`
 * (one key generation and one agreement). The private key is dropped at once and never cached,
 * so a key per request cannot evict long-term keys; the peer's key is cached for reuse.
 *
 * @throws {Malformed} when `peerPublicKey` is not 32 bytes or is a low-order point
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   generateEncryptionKeyPair, SeededRandom, x25519EphemeralAgreement, x25519SharedSecret,
 * } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const relay = generateEncryptionKeyPair(random);
 * const { publicKey, sharedSecret } = await x25519EphemeralAgreement(relay.publicKey, random);
 * assert((await x25519SharedSecret(relay.privateKey, publicKey)).join() === sharedSecret.join());
 * ```
 */
export function x25519EphemeralAgreement(
  peerPublicKey: Uint8Array,
  random: Random,
): { publicKey: Uint8Array; sharedSecret: Uint8Array } {
  assertPublicKey(peerPublicKey, "an X25519 shared secret");
  return x25519Ephemeral(random.bytes(KEY_BYTES), peerPublicKey, { cachePeer: true });
}

/**
 * The fast path: Ed25519 and X25519 through Deno's built-in `node:crypto`,
 * which computes on the calling thread and returns at once. WebCrypto does
 * the same arithmetic on a pool of threads and completes through the event
 * loop, which here costs more than the arithmetic (two thread wake-ups per
 * operation); noble in plain JavaScript is 3-7x slower still. noble stays the
 * reference (see `_reference.ts`); tests cross-check the two byte for byte.
 *
 * Raw 32-byte keys enter `node:crypto` as DER: a private key as PKCS#8 (a
 * fixed 16-byte prefix, then the key), a public key as SubjectPublicKeyInfo
 * (a fixed 12-byte prefix, then the key). Keys that are used again (our
 * long-term keys, peers' identity keys) are kept as KeyObjects; keys used
 * once (ephemeral and ratchet keys) are not, so they cannot evict them.
 *
 * Everything here is synchronous: the operations are pure functions of their
 * inputs, so a simulated run needs no help to keep their order.
 *
 * @module
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  type KeyObject,
  sign as nodeSign,
  verify as nodeVerify,
} from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { Malformed } from "./errors.ts";
import { concatBytes } from "./bytes.ts";

/**
 * Most KeyObjects kept per cache (one cache per key kind) unless
 * {@linkcode setImportedKeysMax} says otherwise. Least recently used go
 * first. A device with a few hundred contacts holds about three keys per
 * contact of each kind; a cache smaller than the keys in use evicts a key
 * just before it is needed again, and a miss of a private X25519 key costs an
 * import and a scalar multiplication.
 */
export const IMPORTED_KEYS_MAX_DEFAULT = 4_096;

/** The DER bytes before a raw 32-byte key of the curve with OID 1.3.101.`oid` (RFC 8410). */
function derPrefix(kind: "pkcs8" | "spki", oid: number): Uint8Array {
  const algorithm = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, oid];
  return kind === "pkcs8"
    // SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING { OCTET STRING (32) } }
    ? Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, ...algorithm, 0x04, 0x22, 0x04, 0x20)
    // SEQUENCE { AlgorithmIdentifier, BIT STRING (0 unused bits, 32 bytes) }
    : Uint8Array.of(0x30, 0x2a, ...algorithm, 0x03, 0x21, 0x00);
}
const ED25519_OID = 0x70;
const X25519_OID = 0x6e;
const ED25519_PKCS8 = derPrefix("pkcs8", ED25519_OID);
const ED25519_SPKI = derPrefix("spki", ED25519_OID);
const X25519_PKCS8 = derPrefix("pkcs8", X25519_OID);
const X25519_SPKI = derPrefix("spki", X25519_OID);

/** A least-recently-used map of imported keys by their bytes, holding at most `max` entries. */
class BoundedCache<V> {
  readonly #map = new Map<string, V>();
  #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  /** Sets the bound, dropping the least recently used entries beyond it. */
  resize(max: number): void {
    this.#max = max;
    while (this.#map.size > max) this.#map.delete(this.#map.keys().next().value!);
  }
  /** The entry for `bytes`, made by `make` (and kept) on a miss. */
  obtain(bytes: Uint8Array, make: () => V): V {
    const key = String.fromCharCode.apply(null, bytes as unknown as number[]);
    let value = this.#map.get(key);
    if (value === undefined) value = make();
    else this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value!);
    return value;
  }
  get size(): number {
    return this.#map.size;
  }
}

/** The kinds of public-key operation {@linkcode publicKeyOperations} counts. */
export type PublicKeyOperation = "keyGeneration" | "x25519" | "ed25519Sign" | "ed25519Verify";

const operations: Record<PublicKeyOperation, number> = {
  keyGeneration: 0,
  x25519: 0,
  ed25519Sign: 0,
  ed25519Verify: 0,
};

/** Counts one public-key operation of `kind` (a scalar multiplication or a signature check). */
export function countOperation(kind: PublicKeyOperation): void {
  operations[kind]++;
}

/**
 * How many public-key operations this process has done so far, by kind: key generations (a
 * private key made or imported, its public key computed), X25519 agreements, Ed25519
 * signatures and checks. Cached imported keys are not imported (nor counted) again.
 * Tests and benches take the difference around a step to count what it costs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEncryptionKeyPair, publicKeyOperations, SeededRandom } from "./mod.ts";
 * const before = publicKeyOperations().keyGeneration;
 * generateEncryptionKeyPair(new SeededRandom(1));
 * assert(publicKeyOperations().keyGeneration === before + 1);
 * ```
 */
export function publicKeyOperations(): Record<PublicKeyOperation, number> {
  return { ...operations };
}

let keysMax = IMPORTED_KEYS_MAX_DEFAULT;
const ed25519Private = new BoundedCache<KeyObject>(keysMax);
const ed25519Public = new BoundedCache<KeyObject>(keysMax);
const x25519Private = new BoundedCache<{ key: KeyObject; publicKey: Uint8Array }>(keysMax);
const x25519Public = new BoundedCache<KeyObject>(keysMax);

/**
 * Sets how many imported keys each cache keeps (`undefined` restores
 * {@linkcode IMPORTED_KEYS_MAX_DEFAULT}); a smaller bound drops the least
 * recently used at once. One process simulating many devices holds all of
 * their keys: the simulator sizes the caches to its devices.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importedKeysMax, setImportedKeysMax } from "./_native.ts";
 * setImportedKeysMax(64);
 * assert(importedKeysMax() === 64);
 * setImportedKeysMax(undefined);
 * ```
 */
export function setImportedKeysMax(max: number | undefined): void {
  const next = max ?? IMPORTED_KEYS_MAX_DEFAULT;
  if (!Number.isSafeInteger(next) || next < 1) {
    throw new RangeError(`Cannot bound the key caches at ${max}: a positive integer is needed`);
  }
  keysMax = next;
  for (const cache of [ed25519Private, ed25519Public, x25519Private, x25519Public]) {
    cache.resize(next);
  }
}

/** The current bound of each key cache. */
export function importedKeysMax(): number {
  return keysMax;
}

/** The current sizes of the key caches, for tests of their bound. */
export function _cacheSizes(): {
  ed25519Private: number;
  ed25519Public: number;
  x25519: number;
  x25519Public: number;
} {
  return {
    ed25519Private: ed25519Private.size,
    ed25519Public: ed25519Public.size,
    x25519: x25519Private.size,
    x25519Public: x25519Public.size,
  };
}

/** Imports a raw private key; counted as a key generation (its public key is computed). */
function importPrivate(prefix: Uint8Array, key: Uint8Array): KeyObject {
  countOperation("keyGeneration");
  return createPrivateKey({
    key: concatBytes(prefix, key) as Buffer,
    format: "der",
    type: "pkcs8",
  });
}

function importPublic(prefix: Uint8Array, key: Uint8Array): KeyObject {
  return createPublicKey({ key: concatBytes(prefix, key) as Buffer, format: "der", type: "spki" });
}

/** The raw 32 bytes of a public KeyObject (the end of its SubjectPublicKeyInfo). */
function rawPublic(key: KeyObject): Uint8Array {
  const spki = key.export({ format: "der", type: "spki" });
  return new Uint8Array(spki.buffer, spki.byteOffset + spki.length - 32, 32).slice();
}

/** Ed25519 signature of `message` by the 32-byte seed `seed` (its KeyObject cached). */
export function ed25519Sign(seed: Uint8Array, message: Uint8Array): Uint8Array {
  const key = ed25519Private.obtain(seed, () => importPrivate(ED25519_PKCS8, seed));
  countOperation("ed25519Sign");
  const signature = nodeSign(null, message, key);
  return new Uint8Array(signature.buffer, signature.byteOffset, signature.length);
}

/**
 * Whether `signature` is a valid Ed25519 signature of `message` by the
 * 32-byte `publicKey` (its KeyObject cached).
 *
 * Like WebCrypto, `node:crypto` accepts small-order public keys, under which
 * a signature with R = identity and S = 0 verifies for *every* message. So a
 * key must first decode strictly (canonical encoding, on the curve) and not
 * be of small order; the check costs one point decompression, once per
 * cached key.
 *
 * @throws {Malformed} when the key is not a canonical point or has small order
 */
export function ed25519Verify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  const key = ed25519Public.obtain(publicKey, () => {
    let point;
    try {
      point = ed25519.Point.fromBytes(publicKey, false);
    } catch (cause) {
      throw new Malformed("Cannot use an Ed25519 public key: not a canonical curve point", {
        cause,
      });
    }
    if (point.isSmallOrder()) {
      throw new Malformed("Cannot use an Ed25519 public key: it is a small-order point");
    }
    return importPublic(ED25519_SPKI, publicKey);
  });
  countOperation("ed25519Verify");
  return nodeVerify(null, message, key, signature);
}

/** A peer's X25519 public key as a KeyObject; cached when `cache` is set. */
function x25519PeerKey(publicKey: Uint8Array, cache: boolean): KeyObject {
  const make = () => importPublic(X25519_SPKI, publicKey);
  return cache ? x25519Public.obtain(publicKey, make) : make();
}

function deriveX25519(privateKey: KeyObject, publicKey: Uint8Array, cache = false): Uint8Array {
  countOperation("x25519");
  try {
    const secret = diffieHellman({ privateKey, publicKey: x25519PeerKey(publicKey, cache) });
    return new Uint8Array(secret.buffer, secret.byteOffset, secret.length);
  } catch (cause) {
    // A low-order point gives an all-zero shared secret, which is refused (RFC 7748 §6.1).
    throw new Malformed(
      "Cannot compute an X25519 shared secret: the public key is a low-order point",
      { cause },
    );
  }
}

/** A private X25519 key and its public key; cached when `cache` is set. */
function x25519Key(
  privateKey: Uint8Array,
  cache: boolean,
): { key: KeyObject; publicKey?: Uint8Array } {
  if (!cache) return { key: importPrivate(X25519_PKCS8, privateKey) };
  return x25519Private.obtain(privateKey, () => {
    const key = importPrivate(X25519_PKCS8, privateKey);
    return { key, publicKey: rawPublic(createPublicKey(key)) };
  });
}

/**
 * X25519(privateKey, publicKey). `cache` keeps the imported private key for
 * reuse (long-term keys); leave it off for keys used once.
 *
 * @throws {Malformed} when the result is all zero (a low-order public key)
 */
export function x25519(
  privateKey: Uint8Array,
  publicKey: Uint8Array,
  options: { cache: boolean },
): Uint8Array {
  return deriveX25519(x25519Key(privateKey, options.cache).key, publicKey);
}

/** The X25519 public key of `privateKey`; `cache` as in {@linkcode x25519}. */
export function x25519PublicKey(
  privateKey: Uint8Array,
  options: { cache: boolean },
): Uint8Array {
  const entry = x25519Key(privateKey, options.cache);
  return entry.publicKey ?? rawPublic(createPublicKey(entry.key));
}

/**
 * For a fresh private key used once (seal's ephemeral key, a ratchet step):
 * its public key and its shared secret with `peerPublicKey`, importing it once.
 * `cachePeer` keeps the imported peer key for reuse (a relay's or a peer's
 * long-term key that boxes are sealed to again and again).
 *
 * @throws {Malformed} when `peerPublicKey` is a low-order point
 */
export function x25519Ephemeral(
  privateKey: Uint8Array,
  peerPublicKey: Uint8Array,
  options: { cachePeer: boolean } = { cachePeer: false },
): { publicKey: Uint8Array; sharedSecret: Uint8Array } {
  const key = importPrivate(X25519_PKCS8, privateKey);
  return {
    publicKey: rawPublic(createPublicKey(key)),
    sharedSecret: deriveX25519(key, peerPublicKey, options.cachePeer),
  };
}

/**
 * The fast path: Ed25519 and X25519 through Deno's built-in WebCrypto, which
 * is 3-7x faster than noble here. noble stays the reference (see
 * `_reference.ts`); tests cross-check the two byte for byte.
 *
 * Raw 32-byte private keys enter WebCrypto as PKCS#8 (a fixed 16-byte prefix,
 * then the key). Importing costs about as much as one operation, so keys that
 * are used again (our long-term keys, peers' identity keys) are cached; keys
 * used once (ephemeral and ratchet keys) are not, so they cannot evict them.
 *
 * @module
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { Malformed } from "../errors.ts";

/** Runs one WebCrypto operation and resolves with its result. */
export type WebCryptoRunner = <T>(operation: () => Promise<T>) => Promise<T>;

const direct: WebCryptoRunner = (operation) => operation();
let runner: WebCryptoRunner = direct;

/**
 * Replaces how WebCrypto operations run (`undefined` restores the default:
 * at once). WebCrypto completes through the event loop, so two operations in
 * flight may finish in either order; the simulator installs a runner that
 * runs them one at a time, in the order they were asked for, and tracks
 * each, which keeps a simulated run's order of events reproducible.
 */
export function setWebCryptoRunner(next: WebCryptoRunner | undefined): void {
  runner = next ?? direct;
}

/** `crypto.subtle`, through the installed runner. */
export const subtle = {
  importKey: (...args: Parameters<SubtleCrypto["importKey"]>): Promise<CryptoKey> =>
    runner(() => crypto.subtle.importKey(...args)),
  deriveBits: (...args: Parameters<SubtleCrypto["deriveBits"]>): Promise<ArrayBuffer> =>
    runner(() => crypto.subtle.deriveBits(...args)),
  sign: (...args: Parameters<SubtleCrypto["sign"]>): Promise<ArrayBuffer> =>
    runner(() => crypto.subtle.sign(...args)),
  verify: (...args: Parameters<SubtleCrypto["verify"]>): Promise<boolean> =>
    runner(() => crypto.subtle.verify(...args)),
};

/**
 * Most CryptoKeys kept per cache (one cache per key kind) unless
 * {@linkcode setImportedKeysMax} says otherwise. Least recently used go
 * first. A device with a few hundred contacts holds about three keys per
 * contact of each kind; a cache smaller than the keys in use evicts a key
 * just before it is needed again, and a miss of a private X25519 key costs an
 * import and a scalar multiplication.
 */
export const IMPORTED_KEYS_MAX_DEFAULT = 4_096;

/**
 * The fixed 16-byte PKCS#8 prefix of a raw 32-byte key of the curve with OID
 * 1.3.101.`oid` (112: Ed25519, 110: X25519), RFC 8410.
 */
function pkcs8Prefix(oid: number): Uint8Array {
  // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.oid }, OCTET STRING { OCTET STRING (32) } }
  return Uint8Array.of(
    0x30,
    0x2e,
    0x02,
    0x01,
    0x00,
    0x30,
    0x05,
    0x06,
    0x03,
    0x2b,
    0x65,
    oid,
    0x04,
    0x22,
    0x04,
    0x20,
  );
}
const ED25519_PKCS8_PREFIX = pkcs8Prefix(0x70);
const X25519_PKCS8_PREFIX = pkcs8Prefix(0x6e);
/** The X25519 base point u = 9: DH with it gives a private key's public key. */
const X25519_BASE_POINT = Uint8Array.of(9, ...new Uint8Array(31));
const ED25519 = { name: "Ed25519" } as const;
const X25519 = { name: "X25519" } as const;

/** A least-recently-used map holding at most `max` entries. */
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
  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }
  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value!);
  }
  get size(): number {
    return this.#map.size;
  }
}

let keysMax = IMPORTED_KEYS_MAX_DEFAULT;
const ed25519Private = new BoundedCache<CryptoKey>(keysMax);
const ed25519Public = new BoundedCache<CryptoKey>(keysMax);
const x25519Private = new BoundedCache<{ key: CryptoKey; publicKey: Uint8Array }>(keysMax);

/**
 * Sets how many imported keys each cache keeps (`undefined` restores
 * {@linkcode IMPORTED_KEYS_MAX_DEFAULT}); a smaller bound drops the least
 * recently used at once. One process simulating many devices holds all of
 * their keys: the simulator sizes the caches to its devices.
 *
 * @example
 * ```ts
 * import { importedKeysMax, setImportedKeysMax } from "./_webcrypto.ts";
 * setImportedKeysMax(64);
 * console.assert(importedKeysMax() === 64);
 * setImportedKeysMax(undefined);
 * ```
 */
export function setImportedKeysMax(max: number | undefined): void {
  const next = max ?? IMPORTED_KEYS_MAX_DEFAULT;
  if (!Number.isSafeInteger(next) || next < 1) {
    throw new RangeError(`Cannot bound the key caches at ${max}: a positive integer is needed`);
  }
  keysMax = next;
  for (const cache of [ed25519Private, ed25519Public, x25519Private]) cache.resize(next);
}

/** The current bound of each key cache. */
export function importedKeysMax(): number {
  return keysMax;
}

/** The current sizes of the key caches, for tests of their bound. */
export function _cacheSizes(): { ed25519Private: number; ed25519Public: number; x25519: number } {
  return {
    ed25519Private: ed25519Private.size,
    ed25519Public: ed25519Public.size,
    x25519: x25519Private.size,
  };
}

function cacheKey(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

function pkcs8(prefix: Uint8Array, key: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(prefix.length + key.length);
  out.set(prefix, 0);
  out.set(key, prefix.length);
  return out;
}

/** A copy backed by a plain ArrayBuffer, as WebCrypto's types require. */
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

/** The non-extractable signing key for a 32-byte Ed25519 seed (cached). */
export async function ed25519SigningKey(seed: Uint8Array): Promise<CryptoKey> {
  const id = cacheKey(seed);
  let key = ed25519Private.get(id);
  if (key === undefined) {
    key = await subtle.importKey(
      "pkcs8",
      pkcs8(ED25519_PKCS8_PREFIX, seed),
      ED25519,
      false,
      [
        "sign",
      ],
    );
    ed25519Private.set(id, key);
  }
  return key;
}

/**
 * The verifying key for a 32-byte Ed25519 public key (cached).
 *
 * WebCrypto accepts small-order public keys, under which a signature with
 * R = identity and S = 0 verifies for *every* message. So a key must first
 * decode strictly (canonical encoding, on the curve) and not be of small order;
 * the check costs one point decompression, once per cached key.
 *
 * @throws {Malformed} when the key is not a canonical point or has small order
 */
export async function ed25519VerifyingKey(publicKey: Uint8Array): Promise<CryptoKey> {
  const id = cacheKey(publicKey);
  let key = ed25519Public.get(id);
  if (key === undefined) {
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
    key = await subtle.importKey("raw", own(publicKey), ED25519, false, ["verify"]);
    ed25519Public.set(id, key);
  }
  return key;
}

async function importX25519Private(privateKey: Uint8Array): Promise<CryptoKey> {
  return await subtle.importKey(
    "pkcs8",
    pkcs8(X25519_PKCS8_PREFIX, privateKey),
    X25519,
    false,
    ["deriveBits"],
  );
}

async function deriveX25519(privateKey: CryptoKey, publicKey: Uint8Array): Promise<Uint8Array> {
  try {
    const peer = await subtle.importKey("raw", own(publicKey), X25519, false, []);
    return new Uint8Array(
      await subtle.deriveBits({ name: "X25519", public: peer }, privateKey, 256),
    );
  } catch (cause) {
    // WebCrypto refuses low-order points (an all-zero shared secret), as RFC 7748 §6.1 allows.
    throw new Malformed(
      "Cannot compute an X25519 shared secret: the public key is a low-order point",
      { cause },
    );
  }
}

/** A private X25519 key and its public key; cached when `cache` is set. */
async function x25519Key(
  privateKey: Uint8Array,
  cache: boolean,
): Promise<{ key: CryptoKey; publicKey?: Uint8Array }> {
  if (!cache) return { key: await importX25519Private(privateKey) };
  const id = cacheKey(privateKey);
  let entry = x25519Private.get(id);
  if (entry === undefined) {
    const key = await importX25519Private(privateKey);
    entry = { key, publicKey: await deriveX25519(key, X25519_BASE_POINT) };
    x25519Private.set(id, entry);
  }
  return entry;
}

/**
 * X25519(privateKey, publicKey). `cache` keeps the imported private key for
 * reuse (long-term keys); leave it off for keys used once.
 *
 * @throws {Malformed} when the result is all zero (a low-order public key)
 */
export async function x25519(
  privateKey: Uint8Array,
  publicKey: Uint8Array,
  options: { cache: boolean },
): Promise<Uint8Array> {
  const { key } = await x25519Key(privateKey, options.cache);
  return await deriveX25519(key, publicKey);
}

/** The X25519 public key of `privateKey`; `cache` as in {@linkcode x25519}. */
export async function x25519PublicKey(
  privateKey: Uint8Array,
  options: { cache: boolean },
): Promise<Uint8Array> {
  const entry = await x25519Key(privateKey, options.cache);
  return entry.publicKey ?? await deriveX25519(entry.key, X25519_BASE_POINT);
}

/**
 * For a fresh private key used once (seal's ephemeral key, a ratchet step):
 * its public key and its shared secret with `peerPublicKey`, importing it once.
 *
 * @throws {Malformed} when `peerPublicKey` is a low-order point
 */
export async function x25519Ephemeral(
  privateKey: Uint8Array,
  peerPublicKey: Uint8Array,
): Promise<{ publicKey: Uint8Array; sharedSecret: Uint8Array }> {
  const key = await importX25519Private(privateKey);
  const [publicKey, sharedSecret] = await Promise.all([
    deriveX25519(key, X25519_BASE_POINT),
    deriveX25519(key, peerPublicKey),
  ]);
  return { publicKey, sharedSecret };
}

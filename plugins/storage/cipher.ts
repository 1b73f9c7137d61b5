/**
 * At-rest encryption of stored records: a {@linkcode StoreCipher} seals every
 * record a store writes and opens every record it reads. Keys (uids, message
 * uuids, outbox ids, seen ids) and the ordering columns stay in the clear, so
 * the store can still index and order; everything a record says is sealed.
 *
 * Each record is sealed with its store key as associated data
 * ({@linkcode recordAd}): a record moved or copied to another key (another
 * peer, another message, another table) does not open there, so whoever can
 * write the file cannot swap records between keys undetected.
 *
 * @module
 */
import { concatBytes, symDecrypt, symEncrypt } from "../../crypto/mod.ts";
import type { Random } from "../../ports/mod.ts";

/**
 * The format byte every sealed record starts with. Version 2 binds a record
 * to its store key; records of version 1 (sealed without associated data,
 * with no format byte) are refused: the home is re-created.
 */
export const SEAL_FORMAT_VERSION = 2;

/** Bytes a sealed record takes beyond its plaintext: a format byte, a 24-byte nonce and a 16-byte tag. */
export const SEAL_OVERHEAD_BYTES = 41;

/**
 * Seals records before they are written and opens them after they are read.
 * `ad` is the record's store key as {@linkcode recordAd} encodes it: `open`
 * succeeds only with the `ad` the record was sealed with. `open` throws on
 * bytes it cannot open (another key, another store key, altered bytes, an
 * older format); the store turns that into an {@linkcode UnreadableRecord}.
 */
export interface StoreCipher {
  /** The sealed form of `bytes`, bound to `ad`. */
  seal(bytes: Uint8Array, ad: Uint8Array): Uint8Array;
  /** The plaintext of what {@linkcode StoreCipher.seal} produced with `ad`; throws when it does not open. */
  open(bytes: Uint8Array, ad: Uint8Array): Uint8Array;
}

/** One part of a store key: a Deno KV key part, or a SQLite table name or key column. */
export type StoreKeyPart = Deno.KvKeyPart;

/** The tags of {@linkcode recordAd}'s encoding, one per part type. */
const AD_TAG = { string: 1, bytes: 2, number: 3, bigint: 4, boolean: 5 } as const;

const utf8 = new TextEncoder();

/**
 * The associated data that binds a record to its store key `parts` (for Deno
 * KV the full key, prefix included, e.g. `["peer", uid]`; for SQLite the
 * table name then the primary key columns, e.g. `["messages", peerUid, uuid]`).
 *
 * Encoding, each part in turn: a 1-byte type tag (1 string, 2 bytes,
 * 3 number, 4 bigint, 5 boolean), the content's length as 4 bytes big-endian,
 * then the content (a string as UTF-8, a number as an IEEE 754 double
 * big-endian, a bigint as its decimal digits in ASCII, a boolean as one byte
 * 0 or 1). Every part says its type and length, so two different keys never
 * encode alike, whatever bytes (NUL included) their strings hold.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordAd } from "./cipher.ts";
 * assert.deepEqual(recordAd(["a"]), new Uint8Array([1, 0, 0, 0, 1, 97]));
 * assert.notDeepEqual(recordAd(["a\0b", "c"]), recordAd(["a", "b\0c"]));
 * ```
 */
export function recordAd(parts: readonly StoreKeyPart[]): Uint8Array {
  return concatBytes(...parts.map((part) => {
    let tag: number;
    let content: Uint8Array;
    if (typeof part === "string") {
      tag = AD_TAG.string;
      content = utf8.encode(part);
    } else if (part instanceof Uint8Array) {
      tag = AD_TAG.bytes;
      content = part;
    } else if (typeof part === "number") {
      tag = AD_TAG.number;
      content = new Uint8Array(8);
      new DataView(content.buffer).setFloat64(0, part);
    } else if (typeof part === "bigint") {
      tag = AD_TAG.bigint;
      content = utf8.encode(part.toString(10));
    } else if (typeof part === "boolean") {
      tag = AD_TAG.boolean;
      content = new Uint8Array([part ? 1 : 0]);
    } else {
      throw new TypeError(`Cannot encode a store key part: ${typeof part} is no key part`);
    }
    const head = new Uint8Array(5);
    head[0] = tag;
    new DataView(head.buffer).setUint32(1, content.length);
    return concatBytes(head, content);
  }));
}

/**
 * A stored record that does not open with the store's cipher: the key is not
 * the one the store was written with, or the file was altered. Not a
 * `MeowError`: it is no bad input from the network, and a message being
 * received when it happens must stay on the relay, not be rejected.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnreadableRecord } from "./cipher.ts";
 * const e = new UnreadableRecord("Cannot read the identity of SqliteStore: wrong key");
 * assert(e.name === "UnreadableRecord");
 * ```
 */
export class UnreadableRecord extends Error {
  /** @param message what could not be read, and the likely reasons */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnreadableRecord";
  }
}

/**
 * A {@linkcode StoreCipher} with XChaCha20-Poly1305 under a 32-byte key; each
 * record gets a fresh 24-byte nonce from `random` (random nonces of that size
 * never repeat in practice, whatever the number of records). A sealed record
 * is the format byte {@linkcode SEAL_FORMAT_VERSION} ‖ nonce ‖ ciphertext ‖
 * tag; the AEAD's associated data is the format byte ‖ `ad`, so neither can
 * be changed undetected.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../../crypto/mod.ts";
 * import { recordAd, xchachaCipher } from "./cipher.ts";
 * const random = new SeededRandom(1);
 * const cipher = xchachaCipher(random.bytes(32), random);
 * const sealed = cipher.seal(new TextEncoder().encode("hello"), recordAd(["peer", "bob"]));
 * assert(new TextDecoder().decode(cipher.open(sealed, recordAd(["peer", "bob"]))) === "hello");
 * assert.throws(() => cipher.open(sealed, recordAd(["peer", "carol"])));
 * ```
 */
export function xchachaCipher(key: Uint8Array, random: Random): StoreCipher {
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    throw new RangeError(`Cannot make a store cipher: the key must be 32 bytes`);
  }
  const secret = key.slice();
  const version = new Uint8Array([SEAL_FORMAT_VERSION]);
  const bind = (ad: Uint8Array): Uint8Array => {
    if (!(ad instanceof Uint8Array)) {
      throw new TypeError("Cannot use a store cipher: ad must be a Uint8Array (see recordAd)");
    }
    return concatBytes(version, ad);
  };
  return {
    seal: (bytes, ad) => concatBytes(version, symEncrypt(secret, bytes, random, bind(ad))),
    open: (bytes, ad) => {
      const bound = bind(ad);
      if (bytes.length === 0 || bytes[0] !== SEAL_FORMAT_VERSION) {
        throw new UnreadableRecord(
          `the record is not in format version ${SEAL_FORMAT_VERSION}: it was sealed by an older ` +
            "meowsync, before records were bound to their store keys; re-create the home " +
            "(a new `init` or `pair join`)",
        );
      }
      return symDecrypt(secret, bytes.subarray(1), bound);
    },
  };
}

/**
 * Opens a record `store` read at the store key `key` (returns it as it is
 * without a cipher); a record that does not open there becomes an
 * {@linkcode UnreadableRecord} naming `what` and `store`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../../crypto/mod.ts";
 * import { openRecord, recordAd, UnreadableRecord, xchachaCipher } from "./cipher.ts";
 * const random = new SeededRandom(1);
 * const cipher = xchachaCipher(random.bytes(32), random);
 * const sealed = cipher.seal(new Uint8Array([7]), recordAd(["peer", "bob"]));
 * assert(openRecord(cipher, sealed, ["peer", "bob"], "a peer", "MyStore")[0] === 7);
 * assert.throws(() => openRecord(cipher, sealed, ["peer", "eve"], "a peer", "MyStore"), UnreadableRecord);
 * ```
 */
export function openRecord(
  cipher: StoreCipher | undefined,
  bytes: Uint8Array,
  key: readonly StoreKeyPart[],
  what: string,
  store: string,
): Uint8Array {
  if (!cipher) return bytes;
  try {
    return cipher.open(bytes, recordAd(key));
  } catch (cause) {
    if (cause instanceof UnreadableRecord) {
      throw new UnreadableRecord(`Cannot read ${what} of ${store}: ${cause.message}`, { cause });
    }
    throw new UnreadableRecord(
      `Cannot read ${what} of ${store}: it does not open with this key at this place ` +
        `(the wrong key, or the stored data was altered or moved): ${(cause as Error).message}`,
      { cause },
    );
  }
}

/**
 * Seals a record a store writes at the store key `key` (returns it as it is without a cipher).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sealRecord } from "./cipher.ts";
 * assert.deepEqual(sealRecord(undefined, new Uint8Array([7]), ["peer", "bob"]), new Uint8Array([7]));
 * ```
 */
export function sealRecord(
  cipher: StoreCipher | undefined,
  bytes: Uint8Array,
  key: readonly StoreKeyPart[],
): Uint8Array {
  return cipher ? cipher.seal(bytes, recordAd(key)) : bytes;
}

/**
 * At-rest encryption of stored records: a {@linkcode StoreCipher} seals every
 * record a store writes and opens every record it reads. Keys (uids, message
 * uuids, outbox ids, seen ids) and the ordering columns stay in the clear, so
 * the store can still index and order; everything a record says is sealed.
 *
 * @module
 */
import { symDecrypt, symEncrypt } from "../../kernel/crypto/sym.ts";
import type { Random } from "../../kernel/ports.ts";

/** Bytes a sealed record takes beyond its plaintext: a 24-byte nonce and a 16-byte tag. */
export const SEAL_OVERHEAD_BYTES = 40;

/**
 * Seals records before they are written and opens them after they are read.
 * `open` throws on bytes it cannot open (another key, or altered bytes); the
 * store turns that into an {@linkcode UnreadableRecord}.
 */
export interface StoreCipher {
  /** The sealed form of `bytes`. */
  seal(bytes: Uint8Array): Uint8Array;
  /** The plaintext of what {@linkcode StoreCipher.seal} produced; throws when it does not open. */
  open(bytes: Uint8Array): Uint8Array;
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
 * never repeat in practice, whatever the number of records).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../../kernel/crypto/mod.ts";
 * import { xchachaCipher } from "./cipher.ts";
 * const random = new SeededRandom(1);
 * const cipher = xchachaCipher(random.bytes(32), random);
 * const sealed = cipher.seal(new TextEncoder().encode("hello"));
 * assert(new TextDecoder().decode(cipher.open(sealed)) === "hello");
 * ```
 */
export function xchachaCipher(key: Uint8Array, random: Random): StoreCipher {
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    throw new RangeError(`Cannot make a store cipher: the key must be 32 bytes`);
  }
  const secret = key.slice();
  return {
    seal: (bytes) => symEncrypt(secret, bytes, random),
    open: (bytes) => symDecrypt(secret, bytes),
  };
}

/**
 * Opens a record `store` read (returns it as it is without a cipher); a
 * record that does not open becomes an {@linkcode UnreadableRecord} naming
 * `what` and `store`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../../kernel/crypto/mod.ts";
 * import { openRecord, xchachaCipher } from "./cipher.ts";
 * const random = new SeededRandom(1);
 * const cipher = xchachaCipher(random.bytes(32), random);
 * const bytes = openRecord(cipher, cipher.seal(new Uint8Array([7])), "a record", "MyStore");
 * assert(bytes[0] === 7);
 * ```
 */
export function openRecord(
  cipher: StoreCipher | undefined,
  bytes: Uint8Array,
  what: string,
  store: string,
): Uint8Array {
  if (!cipher) return bytes;
  try {
    return cipher.open(bytes);
  } catch (cause) {
    throw new UnreadableRecord(
      `Cannot read ${what} of ${store}: it does not open with this key ` +
        `(the wrong key, or the stored data was altered): ${(cause as Error).message}`,
      { cause },
    );
  }
}

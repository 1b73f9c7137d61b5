/**
 * The randomness port. Every private key, nonce and uuid in meowsync comes
 * from a {@linkcode Random}: the OS CSPRNG in production, a seeded ChaCha20
 * stream in the simulator so that a run is reproducible byte for byte.
 *
 * @module
 */
import { createCipheriv } from "node:crypto";
import { sha256 } from "@noble/hashes/sha2.js";

/**
 * A source of random bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "./random.ts";
 * const random = new SeededRandom(7);
 * assert(random.bytes(32).length === 32);
 * ```
 */
export interface Random {
  /** Returns `length` fresh random bytes. */
  bytes(length: number): Uint8Array;
}

const encoder = new TextEncoder();
/** Bytes of keystream generated per refill of a seeded stream. */
const SEEDED_BLOCK_BYTES = 4096;
const ZEROS = new Uint8Array(SEEDED_BLOCK_BYTES);

/**
 * Deterministic randomness: the ChaCha20 keystream under a key derived from a
 * seed. {@linkcode SeededRandom.fork} derives independent streams by label, so
 * adding a consumer never shifts another consumer's bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "./random.ts";
 * const a = new SeededRandom(42).fork("alice/phone").bytes(8);
 * const b = new SeededRandom(42).fork("alice/phone").bytes(8);
 * assert(a.join() === b.join());
 * ```
 */
export class SeededRandom implements Random {
  readonly #key: Uint8Array;
  #counter = 0;
  #buffer: Uint8Array = new Uint8Array(0);
  #offset = 0;

  /** @param seed a number, string or bytes; equal seeds give equal streams */
  constructor(seed: number | string | Uint8Array) {
    const material = seed instanceof Uint8Array ? seed : encoder.encode(`meowsync/seed/${seed}`);
    this.#key = sha256(material);
  }

  /** Returns the next `length` bytes of the stream. */
  bytes(length: number): Uint8Array {
    if (!Number.isInteger(length) || length < 0) {
      throw new RangeError(`Cannot draw ${length} random bytes: expected a non-negative integer`);
    }
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      if (this.#offset === this.#buffer.length) this.#refill();
      const take = Math.min(length - filled, this.#buffer.length - this.#offset);
      out.set(this.#buffer.subarray(this.#offset, this.#offset + take), filled);
      this.#offset += take;
      filled += take;
    }
    return out;
  }

  /** An independent stream named `label`, derived from this stream's key (not its position). */
  fork(label: string): SeededRandom {
    const label_ = encoder.encode(label);
    const material = new Uint8Array(this.#key.length + 1 + label_.length);
    material.set(this.#key, 0);
    material[this.#key.length] = 0x2f;
    material.set(label_, this.#key.length + 1);
    return new SeededRandom(sha256(material));
  }

  #refill(): void {
    // Each refill continues the keystream at the next 64-byte block: ChaCha20 (RFC 8439) with
    // a zero nonce, through node:crypto, whose 16-byte IV is the block counter (little
    // endian) then the nonce.
    const iv = new Uint8Array(16);
    new DataView(iv.buffer).setUint32(0, this.#counter, true);
    const keystream = createCipheriv("chacha20", this.#key, iv).update(ZEROS);
    this.#buffer = new Uint8Array(keystream.buffer, keystream.byteOffset, keystream.length);
    this.#counter += SEEDED_BLOCK_BYTES / 64;
    this.#offset = 0;
  }
}

/**
 * A random RFC 4122 version-4 uuid string drawn from `random`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomUuid, SeededRandom } from "./random.ts";
 * assert(/^[0-9a-f-]{36}$/.test(randomUuid(new SeededRandom(1))));
 * ```
 */
export function randomUuid(random: Random): string {
  return uuidOf(random.bytes(16));
}

/** The version-4 UUID made of 16 random bytes (its version and variant bits set in place). */
function uuidOf(b: Uint8Array): string {
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = HEX;
  return h[b[0]] + h[b[1]] + h[b[2]] + h[b[3]] + "-" + h[b[4]] + h[b[5]] + "-" + h[b[6]] +
    h[b[7]] + "-" + h[b[8]] + h[b[9]] + "-" + h[b[10]] + h[b[11]] + h[b[12]] + h[b[13]] +
    h[b[14]] + h[b[15]];
}

/** Two lower-case hex digits for each byte value. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * `count` random UUIDs, as `count` calls of {@linkcode randomUuid} would give them (the same
 * bytes of the stream, in the same order), drawn at once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomUuid, randomUuids, SeededRandom } from "./random.ts";
 * const one = new SeededRandom(2);
 * assert.deepEqual(randomUuids(new SeededRandom(2), 3), [1, 2, 3].map(() => randomUuid(one)));
 * ```
 */
export function randomUuids(random: Random, count: number): string[] {
  const all = random.bytes(16 * count);
  const out = new Array<string>(count);
  for (let i = 0; i < count; i++) out[i] = uuidOf(all.subarray(16 * i, 16 * i + 16));
  return out;
}

/**
 * A uniform float in [0, 1) with 53 bits of precision.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomFloat, SeededRandom } from "./random.ts";
 * const x = randomFloat(new SeededRandom(1));
 * assert(x >= 0 && x < 1);
 * ```
 */
export function randomFloat(random: Random): number {
  const b = random.bytes(8);
  const hi = ((b[0] << 21) | (b[1] << 13) | (b[2] << 5) | (b[3] >>> 3)) >>> 0; // 29 bits
  const lo = ((b[4] << 16) | (b[5] << 8) | b[6]) >>> 0; // 24 bits
  return (hi * 2 ** 24 + lo) / 2 ** 53;
}

/**
 * A uniform integer in [0, `maxExclusive`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomInt, SeededRandom } from "./random.ts";
 * const n = randomInt(new SeededRandom(1), 6);
 * assert(n >= 0 && n < 6);
 * ```
 */
export function randomInt(random: Random, maxExclusive: number): number {
  if (!Number.isSafeInteger(maxExclusive) || maxExclusive <= 0) {
    throw new RangeError(
      `Cannot draw an integer below ${maxExclusive}: expected a positive integer`,
    );
  }
  return Math.floor(randomFloat(random) * maxExclusive);
}

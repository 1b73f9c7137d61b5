/**
 * Helpers shared by the crypto tests. Private to crypto/.
 *
 * @module
 */
import type { Random } from "./random.ts";

/** Decodes a hex string (whitespace ignored). */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Encodes bytes as lowercase hex. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A copy of `bytes` with bit 0 of byte `index` flipped. */
export function flipByte(bytes: Uint8Array, index: number): Uint8Array {
  const out = bytes.slice();
  out[index] ^= 0x01;
  return out;
}

/** A Random that hands out the given bytes, in order, and fails when they run out. */
export class FixedRandom implements Random {
  readonly #bytes: Uint8Array;
  #at = 0;
  constructor(...chunks: Uint8Array[]) {
    this.#bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      this.#bytes.set(c, at);
      at += c.length;
    }
  }
  bytes(length: number): Uint8Array {
    if (this.#at + length > this.#bytes.length) throw new Error("FixedRandom ran out of bytes");
    const out = this.#bytes.slice(this.#at, this.#at + length);
    this.#at += length;
    return out;
  }
}

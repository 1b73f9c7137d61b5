/**
 * Unpadded base64url (RFC 4648 §5), the text form of keys: a lookup key's
 * base64url *is* its relay queue name, so decoding accepts only the one
 * canonical spelling of each byte string.
 *
 * @module
 */
import { Malformed } from "./errors.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/**
 * Encodes bytes as unpadded base64url.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toBase64Url } from "./mod.ts";
 * assert(toBase64Url(new Uint8Array([0xfb, 0xff])) === "-_8");
 * ```
 */
export function toBase64Url(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[v >> 18] + ALPHABET[(v >> 12) & 63] + ALPHABET[(v >> 6) & 63] +
      ALPHABET[v & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const v = bytes[i] << 16;
    out += ALPHABET[v >> 18] + ALPHABET[(v >> 12) & 63];
  } else if (rest === 2) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[v >> 18] + ALPHABET[(v >> 12) & 63] + ALPHABET[(v >> 6) & 63];
  }
  return out;
}

/**
 * Decodes unpadded base64url. Padding, whitespace, the standard alphabet's `+`
 * and `/`, and non-zero unused trailing bits are all rejected, so each byte
 * string has exactly one accepted text form.
 *
 * @throws {Malformed} when `text` is not canonical unpadded base64url
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromBase64Url } from "./mod.ts";
 * assert(fromBase64Url("-_8").join() === "251,255");
 * ```
 */
export function fromBase64Url(text: string): Uint8Array {
  if (text.length % 4 === 1) {
    throw new Malformed(`Cannot decode base64url: length ${text.length} is impossible`);
  }
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? DECODE[c] : -1;
    if (v < 0) {
      throw new Malformed(
        `Cannot decode base64url: character ${JSON.stringify(text[i])} at ${i} is not allowed`,
      );
    }
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) {
    throw new Malformed("Cannot decode base64url: the unused trailing bits are not zero");
  }
  return out;
}

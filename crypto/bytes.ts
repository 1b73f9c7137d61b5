/**
 * Byte helpers shared by the crypto layer and its callers.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";

/**
 * Joins byte arrays into one new array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concatBytes } from "./mod.ts";
 * const joined = concatBytes(new Uint8Array([1]), new Uint8Array([2, 3]));
 * assert(joined.join() === "1,2,3");
 * ```
 */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Whether two byte arrays hold the same bytes: the one byte-equality check of the project,
 * constant-time in the contents (a length mismatch returns at once), so it is safe for MACs and
 * secrets as well as public data.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { equalBytes } from "./mod.ts";
 * assert(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2])));
 * assert(!equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 3])));
 * assert(!equalBytes(new Uint8Array([1]), new Uint8Array([1, 0])));
 * ```
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Whether `needle` occurs in `haystack` (used to refuse sending any byte of a
 * private key that must never leave the device).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { containsBytes } from "./mod.ts";
 * assert(containsBytes(new Uint8Array([1, 2, 3, 4]), new Uint8Array([2, 3])));
 * assert(!containsBytes(new Uint8Array([1, 2, 3]), new Uint8Array([3, 2])));
 * ```
 */
export function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0 || needle.length > haystack.length) return false;
  const first = needle[0];
  const last = haystack.length - needle.length;
  outer: for (
    let i = haystack.indexOf(first);
    i !== -1 && i <= last;
    i = haystack.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

/**
 * Byte helpers shared by the crypto layer and its callers.
 *
 * @module
 */

/**
 * Joins byte arrays into one new array.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./mod.ts";
 * const joined = concatBytes(new Uint8Array([1]), new Uint8Array([2, 3]));
 * console.assert(joined.join() === "1,2,3");
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

/** Whether two byte arrays hold the same bytes (not constant-time: for public data only). */
export function _bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

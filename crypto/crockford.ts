/**
 * Crockford base32 for codes people read aloud and type: random codes of
 * 5 bits a character, input normalisation that forgives case, spaces, dashes
 * and the look-alikes O/0 and I/L/1, and grouping for display.
 *
 * @module
 */
import { Malformed } from "./errors.ts";
import type { Random } from "./random.ts";

/** Crockford's 32 symbols, value order: no I, L, O or U. */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** Bits a Crockford character carries. */
const CHAR_BITS = 5;
/** Characters a Crockford alias maps to (checked after uppercasing). */
const ALIASES: Readonly<Record<string, string>> = { O: "0", I: "1", L: "1" };

/**
 * `chars` random Crockford characters, each uniform: 5 consecutive bits of
 * `random`'s bytes per character, most significant first (no rejection, no
 * bias; the last byte's unused low bits are dropped).
 *
 * @throws {RangeError} when `chars` is not a non-negative integer
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomCrockford, SeededRandom } from "./mod.ts";
 * const code = randomCrockford(new SeededRandom(1), 8);
 * assert(/^[0-9A-HJKMNP-TV-Z]{8}$/.test(code));
 * ```
 */
export function randomCrockford(random: Random, chars: number): string {
  if (!Number.isSafeInteger(chars) || chars < 0) {
    throw new RangeError(
      `Cannot draw ${chars} Crockford characters: expected a non-negative integer`,
    );
  }
  const bytes = random.bytes(Math.ceil((chars * CHAR_BITS) / 8));
  let out = "";
  let buffer = 0;
  let bits = 0;
  let next = 0;
  while (out.length < chars) {
    if (bits < CHAR_BITS) {
      buffer = ((buffer << 8) | bytes[next++]) & 0xfff;
      bits += 8;
    }
    bits -= CHAR_BITS;
    out += ALPHABET[(buffer >>> bits) & 0x1f];
  }
  return out;
}

/**
 * The canonical form of a typed code: ASCII letters uppercased, whitespace and
 * '-' removed, O read as 0 and I and L as 1.
 *
 * @throws {Malformed} when a character is not Crockford base32 (U included), naming it
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeCrockford } from "./mod.ts";
 * assert.equal(normalizeCrockford(" 7kq2-m9xo il "), "7KQ2M9X011");
 * ```
 */
export function normalizeCrockford(text: string): string {
  let out = "";
  for (const char of text) {
    if (char === "-" || /\s/.test(char)) continue;
    // Only ASCII letters fold: "ß" or "ı" must not uppercase into valid symbols.
    const upper = char >= "a" && char <= "z" ? char.toUpperCase() : char;
    const canonical = ALIASES[upper] ?? upper;
    if (!ALPHABET.includes(canonical)) {
      throw new Malformed(
        `Cannot read ${
          JSON.stringify(char)
        } in a Crockford base32 code: expected 0-9 or A-Z except U`,
      );
    }
    out += canonical;
  }
  return out;
}

/**
 * `text` with '-' between groups of `size` characters, for display.
 *
 * @throws {RangeError} when `size` is not a positive integer
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { groupCode } from "./mod.ts";
 * assert.equal(groupCode("7KQ2M9XD1"), "7KQ2-M9XD-1");
 * assert.equal(groupCode("ABCDEF", 3), "ABC-DEF");
 * ```
 */
export function groupCode(text: string, size = 4): string {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new RangeError(`Cannot group a code by ${size}: expected a positive integer`);
  }
  const groups: string[] = [];
  for (let i = 0; i < text.length; i += size) groups.push(text.slice(i, i + size));
  return groups.join("-");
}

import assert from "node:assert/strict";
import fc from "fast-check";
import { Malformed } from "./errors.ts";
import { groupCode, normalizeCrockford, randomCrockford } from "./crockford.ts";
import { SeededRandom } from "./random.ts";
import { FixedRandom, hex } from "./_test_util.ts";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** The reference: the bytes as one bit string, cut into 5-bit characters. */
function reference(bytes: Uint8Array, chars: number): string {
  const bits = Array.from(bytes, (b) => b.toString(2).padStart(8, "0")).join("");
  let out = "";
  for (let i = 0; i < chars; i++) out += ALPHABET[parseInt(bits.slice(5 * i, 5 * i + 5), 2)];
  return out;
}

Deno.test("randomCrockford() encodes 5 bits per character, most significant first", () => {
  assert.equal(randomCrockford(new FixedRandom(hex("00443214c7")), 8), "01234567");
  assert.equal(randomCrockford(new FixedRandom(hex("ffffffffff")), 8), "ZZZZZZZZ");
  // 3 characters use 15 bits: 2 bytes, the last bit dropped.
  assert.equal(randomCrockford(new FixedRandom(hex("f801")), 3), "Z00");
  assert.equal(randomCrockford(new FixedRandom(), 0), "");
});

Deno.test("randomCrockford() matches the bit-string reference and draws ceil(5n/8) bytes", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 64 }), fc.integer(), (chars, seed) => {
      const bytes = new SeededRandom(seed).bytes(Math.ceil((chars * 5) / 8));
      // FixedRandom fails when asked for more than it holds.
      const code = randomCrockford(new FixedRandom(bytes), chars);
      assert.equal(code, reference(bytes, chars));
      assert.equal(code.length, chars);
    }),
    { numRuns: 300 },
  );
});

Deno.test("randomCrockford() hits every symbol about equally often", () => {
  const code = randomCrockford(new SeededRandom("crockford/uniform"), 32 * 400);
  const counts = new Map<string, number>();
  for (const char of code) counts.set(char, (counts.get(char) ?? 0) + 1);
  assert.equal(counts.size, 32);
  for (const [char, count] of counts) assert(count > 300 && count < 500, `${char}: ${count}`);
});

Deno.test("randomCrockford() is deterministic under a seeded Random and rejects a bad length", () => {
  assert.equal(randomCrockford(new SeededRandom(1), 10), randomCrockford(new SeededRandom(1), 10));
  assert.throws(() => randomCrockford(new SeededRandom(1), -1), RangeError);
  assert.throws(() => randomCrockford(new SeededRandom(1), 1.5), RangeError);
});

Deno.test("normalizeCrockford() uppercases, strips spaces and dashes, and maps look-alikes", () => {
  assert.equal(normalizeCrockford("7kq2-m9xd"), "7KQ2M9XD");
  assert.equal(normalizeCrockford(" ab cd\t-ef "), "ABCDEF");
  assert.equal(normalizeCrockford("oO iI lL"), "001111");
  assert.equal(normalizeCrockford(""), "");
  fc.assert(
    fc.property(fc.integer(), fc.integer({ min: 0, max: 20 }), (seed, chars) => {
      const code = randomCrockford(new SeededRandom(seed), chars);
      assert.equal(normalizeCrockford(groupCode(code.toLowerCase(), 3)), code);
    }),
  );
});

Deno.test("normalizeCrockford() rejects U and non-symbols with Malformed naming the character", () => {
  for (
    const [input, char] of [["ABCU", "U"], ["abcu", "u"], ["12*4", "*"], ["ß", "ß"], ["ı", "ı"]]
  ) {
    assert.throws(
      () => normalizeCrockford(input),
      (e: unknown) => e instanceof Malformed && e.message.includes(JSON.stringify(char)),
      input,
    );
  }
});

Deno.test("groupCode() inserts '-' between groups", () => {
  assert.equal(groupCode("ABCDEFGH"), "ABCD-EFGH");
  assert.equal(groupCode("ABCDEFGHI"), "ABCD-EFGH-I");
  assert.equal(groupCode("AB", 4), "AB");
  assert.equal(groupCode("", 4), "");
  assert.equal(groupCode("ABCDEF", 2), "AB-CD-EF");
  assert.throws(() => groupCode("AB", 0), RangeError);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { chacha20 } from "@noble/ciphers/chacha.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomFloat, randomInt, randomUuid, SeededRandom } from "./random.ts";
import { SystemRandom } from "./system_random.ts";

Deno.test("SeededRandom.bytes() gives equal streams for equal seeds, however the reads are split", () => {
  fc.assert(
    fc.property(fc.string(), fc.array(fc.nat(5000), { maxLength: 6 }), (seed, sizes) => {
      const total = sizes.reduce((a, b) => a + b, 0);
      const whole = new SeededRandom(seed).bytes(total);
      const split = new SeededRandom(seed);
      let at = 0;
      for (const size of sizes) {
        assert.deepEqual(split.bytes(size), whole.subarray(at, at + size));
        at += size;
      }
    }),
    { numRuns: 50 },
  );
});

Deno.test("SeededRandom accepts number, string and byte seeds, and different seeds differ", () => {
  assert.notDeepEqual(new SeededRandom(1).bytes(32), new SeededRandom(2).bytes(32));
  assert.notDeepEqual(new SeededRandom(1).bytes(32), new SeededRandom("2").bytes(32));
  assert.deepEqual(new SeededRandom(1).bytes(32), new SeededRandom("1").bytes(32));
  assert.deepEqual(
    new SeededRandom(new Uint8Array([1])).bytes(8),
    new SeededRandom(new Uint8Array([1])).bytes(8),
  );
});

Deno.test("SeededRandom.fork() derives by label from the key, not the stream position", () => {
  const a = new SeededRandom(42);
  const b = new SeededRandom(42);
  b.bytes(100);
  assert.deepEqual(a.fork("x").bytes(16), b.fork("x").bytes(16));
  assert.notDeepEqual(a.fork("x").bytes(16), a.fork("y").bytes(16));
  assert.notDeepEqual(a.fork("x").bytes(16), new SeededRandom(42).bytes(16));
});

Deno.test("SeededRandom.bytes() rejects negative and fractional lengths with a RangeError", () => {
  const random = new SeededRandom(0);
  assert.throws(() => random.bytes(-1), RangeError);
  assert.throws(() => random.bytes(1.5), RangeError);
  assert.equal(random.bytes(0).length, 0);
});

Deno.test("randomUuid() returns RFC 4122 version-4 uuids", () => {
  const random = new SeededRandom(3);
  for (let i = 0; i < 100; i++) {
    assert.match(
      randomUuid(random),
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  }
});

Deno.test("randomInt() stays in range and rejects bad bounds", () => {
  fc.assert(
    fc.property(fc.integer(), fc.integer({ min: 1, max: 2 ** 40 }), (seed, max) => {
      const n = randomInt(new SeededRandom(seed), max);
      assert.ok(Number.isInteger(n) && n >= 0 && n < max);
    }),
  );
  for (const bad of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1, NaN]) {
    assert.throws(() => randomInt(new SeededRandom(1), bad), RangeError);
  }
});

Deno.test("randomFloat() is in [0, 1) and reaches both halves", () => {
  const random = new SeededRandom(4);
  const values = Array.from({ length: 1000 }, () => randomFloat(random));
  assert.ok(values.every((x) => x >= 0 && x < 1));
  assert.ok(values.some((x) => x < 0.5) && values.some((x) => x >= 0.5));
});

Deno.test("SystemRandom.bytes() fills requests larger than one getRandomValues call", () => {
  const out = new SystemRandom().bytes(70_000);
  assert.equal(out.length, 70_000);
  assert.ok(out.subarray(65_536).some((b) => b !== 0));
});

Deno.test("SeededRandom's stream is the ChaCha20 keystream (RFC 8439, zero nonce) under sha256 of its seed", () => {
  // 20,000 bytes cross several refills: each must continue at the right block counter.
  const key = sha256(new TextEncoder().encode("meowsync/seed/7"));
  const expected = chacha20(key, new Uint8Array(12), new Uint8Array(20_000));
  assert.deepEqual(new SeededRandom(7).bytes(20_000), expected);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { BadCiphertext } from "./errors.ts";
import { SeededRandom } from "./random.ts";
import { symDecrypt, symEncrypt } from "./sym.ts";
import { aeadEncrypt } from "./_primitives.ts";
import { flipByte } from "./_test_util.ts";

Deno.test("symEncrypt() then symDecrypt() round-trips any plaintext", () => {
  fc.assert(
    fc.property(fc.integer(), fc.uint8Array({ maxLength: 3000 }), (seed, plaintext) => {
      const random = new SeededRandom(seed);
      const key = random.bytes(32);
      const box = symEncrypt(key, plaintext, random);
      assert.equal(box.length, 24 + plaintext.length + 16);
      assert.deepEqual(symDecrypt(key, box), plaintext);
    }),
    { numRuns: 200 },
  );
});

Deno.test("symEncrypt() prepends a random 24-byte nonce to the XChaCha20-Poly1305 ciphertext", () => {
  const key = new SeededRandom("key").bytes(32);
  const plaintext = new Uint8Array([1, 2, 3, 4]);
  const box = symEncrypt(key, plaintext, new SeededRandom("nonce"));
  const nonce = new SeededRandom("nonce").bytes(24);
  assert.deepEqual(box.subarray(0, 24), nonce);
  assert.deepEqual(box.subarray(24), aeadEncrypt(key, plaintext, { nonce }));
});

Deno.test("symDecrypt() rejects every single-byte flip", () => {
  const random = new SeededRandom("flip");
  const key = random.bytes(32);
  const box = symEncrypt(key, new TextEncoder().encode("symmetric layer"), random);
  for (let i = 0; i < box.length; i++) {
    assert.throws(() => symDecrypt(key, flipByte(box, i)), BadCiphertext);
  }
});

Deno.test("symDecrypt() rejects the wrong key and inputs shorter than nonce and tag", () => {
  const random = new SeededRandom("wrong");
  const box = symEncrypt(random.bytes(32), new Uint8Array([1]), random);
  assert.throws(() => symDecrypt(random.bytes(32), box), BadCiphertext);
  for (let n = 0; n < 40; n++) {
    assert.throws(() => symDecrypt(random.bytes(32), new Uint8Array(n)), BadCiphertext);
  }
});

Deno.test("symEncrypt() and symDecrypt() reject a key that is not 32 bytes with a RangeError", () => {
  const random = new SeededRandom("range");
  assert.throws(() => symEncrypt(new Uint8Array(16), new Uint8Array(1), random), RangeError);
  assert.throws(() => symDecrypt(new Uint8Array(33), new Uint8Array(64)), RangeError);
});

Deno.test("symEncrypt() is deterministic under a SeededRandom", () => {
  const key = new SeededRandom("k").bytes(32);
  const a = symEncrypt(key, new Uint8Array([9]), new SeededRandom(3));
  const b = symEncrypt(key, new Uint8Array([9]), new SeededRandom(3));
  assert.deepEqual(a, b);
});

Deno.test("symDecrypt() opens only with the associated data the box was sealed with", () => {
  const random = new SeededRandom("ad");
  const key = random.bytes(32);
  const ad = new TextEncoder().encode("peer/bob");
  const box = symEncrypt(key, new Uint8Array([5]), random, ad);
  assert.deepEqual(symDecrypt(key, box, ad), new Uint8Array([5]));
  assert.throws(() => symDecrypt(key, box, new TextEncoder().encode("peer/bod")), BadCiphertext);
  assert.throws(() => symDecrypt(key, box), BadCiphertext);
  const plain = symEncrypt(key, new Uint8Array([5]), random);
  assert.throws(() => symDecrypt(key, plain, ad), BadCiphertext);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { BadCiphertext } from "./errors.ts";
import { aeadDecrypt, aeadEncrypt, hkdfSha256, hmacSha256 } from "./_primitives.ts";
import { flipByte, hex, toHex } from "./_test_util.ts";

Deno.test("hkdfSha256() matches RFC 5869 test case 1", () => {
  const okm = hkdfSha256(hex("0b".repeat(22)), {
    salt: hex("000102030405060708090a0b0c"),
    info: hex("f0f1f2f3f4f5f6f7f8f9"),
    length: 42,
  });
  assert.equal(
    toHex(okm),
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  );
});

Deno.test("hmacSha256() matches RFC 4231 test case 2", () => {
  const mac = hmacSha256(
    new TextEncoder().encode("Jefe"),
    new TextEncoder().encode("what do ya want for nothing?"),
  );
  assert.equal(toHex(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
});

const XCHACHA = {
  key: hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
  nonce: hex("404142434445464748494a4b4c4d4e4f5051525354555657"),
  ad: hex("50515253c0c1c2c3c4c5c6c7"),
  plaintext: new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the " +
      "future, sunscreen would be it.",
  ),
  sealed: hex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb" +
      "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452" +
      "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9" +
      "21f9664c97637da9768812f615c68b13b52e" + "c0875924c1c7987947deafd8780acf49",
  ),
};

Deno.test("aeadEncrypt() matches the XChaCha20-Poly1305 vector of draft-irtf-cfrg-xchacha A.3.1", () => {
  const { key, nonce, ad, plaintext, sealed } = XCHACHA;
  assert.deepEqual(aeadEncrypt(key, plaintext, { nonce, ad }), sealed);
});

Deno.test("aeadDecrypt() opens the A.3.1 vector and rejects it with any byte flipped", () => {
  const { key, nonce, ad, plaintext, sealed } = XCHACHA;
  assert.deepEqual(aeadDecrypt(key, sealed, { nonce, ad, what: "the vector" }), plaintext);
  for (let i = 0; i < sealed.length; i++) {
    assert.throws(
      () => aeadDecrypt(key, flipByte(sealed, i), { nonce, ad, what: "the vector" }),
      BadCiphertext,
    );
  }
  for (let i = 0; i < ad.length; i++) {
    assert.throws(
      () => aeadDecrypt(key, sealed, { nonce, ad: flipByte(ad, i), what: "the vector" }),
      BadCiphertext,
    );
  }
  assert.throws(
    () => aeadDecrypt(key, sealed.subarray(0, 15), { nonce, ad, what: "the vector" }),
    BadCiphertext,
  );
});

Deno.test("aeadEncrypt() and aeadDecrypt() agree with noble's XChaCha20-Poly1305 on any input", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 24, maxLength: 24 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.option(fc.uint8Array({ maxLength: 80 }), { nil: undefined }),
      (key, nonce, plaintext, ad) => {
        const sealed = aeadEncrypt(key, plaintext, { nonce, ad });
        assert.deepEqual(sealed, xchacha20poly1305(key, nonce, ad).encrypt(plaintext));
        assert.deepEqual(aeadDecrypt(key, sealed, { nonce, ad, what: "a box" }), plaintext);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("aeadEncrypt() refuses a key or nonce of the wrong length", () => {
  const { key, nonce, plaintext } = XCHACHA;
  assert.throws(() => aeadEncrypt(key.subarray(1), plaintext, { nonce }), RangeError);
  assert.throws(() => aeadEncrypt(key, plaintext, { nonce: nonce.subarray(12) }), RangeError);
});

Deno.test("hkdfSha256() agrees with noble's HKDF on any input", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 64 }),
      fc.integer({ min: 1, max: 96 }),
      (ikm, salt, info, length) => {
        assert.deepEqual(
          hkdfSha256(ikm, { salt, info, length }),
          hkdf(sha256, ikm, salt, info, length),
        );
      },
    ),
    { numRuns: 200 },
  );
});

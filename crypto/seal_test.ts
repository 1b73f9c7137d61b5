import assert from "node:assert/strict";
import fc from "fast-check";
import { BadCiphertext, Malformed } from "./errors.ts";
import { concatBytes } from "./bytes.ts";
import { generateEncryptionKeyPair } from "./keys.ts";
import { SeededRandom } from "./random.ts";
import { open, seal, SEAL_OVERHEAD_BYTES } from "./seal.ts";
import { aeadDecrypt, hkdfSha256 } from "./_primitives.ts";
import { x25519PublicKeyReference, x25519Reference } from "./_reference.ts";
import { flipByte, hex } from "./_test_util.ts";
import { _cacheSizes, setImportedKeysMax } from "./_native.ts";

Deno.test("seal() then open() round-trips any plaintext", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer(), fc.uint8Array({ maxLength: 2000 }), async (seed, plaintext) => {
      const random = new SeededRandom(seed);
      const { privateKey, publicKey } = generateEncryptionKeyPair(random);
      const sealed = await seal(publicKey, plaintext, random);
      assert.equal(sealed.length, plaintext.length + SEAL_OVERHEAD_BYTES);
      assert.deepEqual(await open(privateKey, sealed), plaintext);
    }),
    { numRuns: 100 },
  );
});

Deno.test("seal() output is ephemeral public key ‖ nonce ‖ ciphertext, as noble computes it", async () => {
  // The reference construction, spelled out with noble only.
  await fc.assert(
    fc.asyncProperty(fc.integer(), fc.uint8Array({ maxLength: 300 }), async (seed, plaintext) => {
      const { privateKey, publicKey } = generateEncryptionKeyPair(new SeededRandom(seed));
      const drawn = new SeededRandom(`${seed}/seal`);
      const sealed = await seal(publicKey, plaintext, drawn);
      const replay = new SeededRandom(`${seed}/seal`);
      const ephemeral = replay.bytes(32);
      const nonce = replay.bytes(24);
      const ephemeralPublicKey = x25519PublicKeyReference(ephemeral);
      assert.deepEqual(sealed.subarray(0, 32), ephemeralPublicKey);
      assert.deepEqual(sealed.subarray(32, 56), nonce);
      const key = hkdfSha256(x25519Reference(privateKey, ephemeralPublicKey), {
        salt: concatBytes(ephemeralPublicKey, publicKey),
        info: new TextEncoder().encode("meowsync/seal/v1"),
        length: 32,
      });
      assert.deepEqual(aeadDecrypt(key, sealed.subarray(56), { nonce, what: "ref" }), plaintext);
    }),
    { numRuns: 50 },
  );
});

Deno.test("open() rejects every single-byte flip of a sealed box", async () => {
  const random = new SeededRandom("flip");
  const { privateKey, publicKey } = generateEncryptionKeyPair(random);
  const sealed = await seal(publicKey, new TextEncoder().encode("a user message"), random);
  for (let i = 0; i < sealed.length; i++) {
    assert.throws(() => open(privateKey, flipByte(sealed, i)), BadCiphertext);
  }
});

Deno.test("open() rejects a box sealed to another key", async () => {
  const random = new SeededRandom("wrong key");
  const right = generateEncryptionKeyPair(random);
  const wrong = generateEncryptionKeyPair(random);
  const sealed = await seal(right.publicKey, new Uint8Array([1, 2, 3]), random);
  assert.throws(() => open(wrong.privateKey, sealed), BadCiphertext);
});

Deno.test("open() rejects every input shorter than the overhead as BadCiphertext", () => {
  const { privateKey } = generateEncryptionKeyPair(new SeededRandom("short"));
  for (let n = 0; n < SEAL_OVERHEAD_BYTES; n++) {
    assert.throws(() => open(privateKey, new Uint8Array(n)), BadCiphertext);
  }
});

Deno.test("open() rejects a low-order ephemeral key as BadCiphertext", () => {
  const { privateKey } = generateEncryptionKeyPair(new SeededRandom("low"));
  const sealed = new Uint8Array(SEAL_OVERHEAD_BYTES + 4);
  sealed.set(hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"));
  assert.throws(() => open(privateKey, sealed), BadCiphertext);
});

Deno.test("seal() rejects a malformed recipient key and open() a wrong-size private key", () => {
  const random = new SeededRandom("bad");
  assert.throws(() => seal(new Uint8Array(31), new Uint8Array(1), random), Malformed);
  assert.throws(() => seal(new Uint8Array(32), new Uint8Array(1), random), Malformed);
  assert.throws(() => open(new Uint8Array(16), new Uint8Array(100)), RangeError);
});

Deno.test("seal() is deterministic under a SeededRandom and fresh for each call", async () => {
  const { publicKey } = generateEncryptionKeyPair(new SeededRandom("det"));
  const plaintext = new Uint8Array([7, 7, 7]);
  const a = await seal(publicKey, plaintext, new SeededRandom(5));
  const b = await seal(publicKey, plaintext, new SeededRandom(5));
  assert.deepEqual(a, b);
  const random = new SeededRandom(5);
  const first = await seal(publicKey, plaintext, random);
  const second = await seal(publicKey, plaintext, random);
  assert.notDeepEqual(first.subarray(0, 56), second.subarray(0, 56));
});

Deno.test("seal() keeps at most importedKeysMax() recipients' keys, and opens the same", async () => {
  const random = new SeededRandom("seal cache");
  setImportedKeysMax(8);
  try {
    const recipients = Array.from({ length: 20 }, () => generateEncryptionKeyPair(random));
    for (const recipient of [...recipients, ...recipients]) {
      const sealed = await seal(recipient.publicKey, new Uint8Array([7]), random);
      assert.deepEqual(await open(recipient.privateKey, sealed), new Uint8Array([7]));
      assert.ok(_cacheSizes().x25519Public <= 8);
    }
    assert.equal(_cacheSizes().x25519Public, 8);
  } finally {
    setImportedKeysMax(undefined);
  }
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { ed25519 } from "@noble/curves/ed25519.js";
import { Malformed } from "./errors.ts";
import {
  generateEncryptionKeyPair,
  generateLookupKeyPair,
  generateSigningKeyPair,
  x25519SharedSecret,
} from "./keys.ts";
import { SeededRandom } from "./random.ts";
import { x25519PublicKeyReference, x25519Reference } from "./_reference.ts";
import {
  _cacheSizes,
  IMPORTED_KEYS_MAX_DEFAULT,
  importedKeysMax,
  setImportedKeysMax,
  x25519PublicKey,
} from "./_native.ts";
import { FixedRandom, hex, toHex } from "./_test_util.ts";

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

Deno.test("x25519SharedSecret() matches the RFC 7748 section 5.2 vectors", async () => {
  const vectors = [
    [
      "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
      "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
      "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ],
    [
      "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
      "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
      "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ],
  ];
  for (const [scalar, u, out] of vectors) {
    assert.equal(toHex(await x25519SharedSecret(hex(scalar), hex(u))), out);
    assert.equal(toHex(x25519Reference(hex(scalar), hex(u))), out);
  }
});

Deno.test("x25519SharedSecret() matches the RFC 7748 section 5.2 iterated vectors (1 and 1000)", async () => {
  let k: Uint8Array = hex("09" + "00".repeat(31));
  let u: Uint8Array = k.slice();
  for (let i = 1; i <= 1000; i++) {
    const next = await x25519SharedSecret(k, u);
    u = k;
    k = next;
    if (i === 1) {
      assert.equal(toHex(k), "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
    }
  }
  assert.equal(toHex(k), "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
});

Deno.test("x25519SharedSecret() matches the RFC 7748 section 6.1 Diffie-Hellman example", async () => {
  const alice = generateEncryptionKeyPair(
    new FixedRandom(hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")),
  );
  const bob = generateEncryptionKeyPair(
    new FixedRandom(hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")),
  );
  assert.equal(
    toHex(alice.publicKey),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
  assert.equal(
    toHex(bob.publicKey),
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
  );
  const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  assert.equal(toHex(await x25519SharedSecret(alice.privateKey, bob.publicKey)), shared);
  assert.equal(toHex(await x25519SharedSecret(bob.privateKey, alice.publicKey)), shared);
});

Deno.test("x25519SharedSecret() through node:crypto equals noble's on random keys", async () => {
  await fc.assert(
    fc.asyncProperty(bytes32, bytes32, async (privateKey, peerPrivateKey) => {
      const peerPublicKey = x25519PublicKeyReference(peerPrivateKey);
      assert.deepEqual(
        await x25519SharedSecret(privateKey, peerPublicKey),
        x25519Reference(privateKey, peerPublicKey),
      );
    }),
    { numRuns: 200 },
  );
});

Deno.test("x25519SharedSecret() agrees with noble on arbitrary u-coordinates", () => {
  fc.assert(
    fc.property(bytes32, bytes32, (privateKey, u) => {
      let reference: Uint8Array | null;
      try {
        reference = x25519Reference(privateKey, u);
      } catch {
        reference = null;
      }
      let fast: Uint8Array | null;
      try {
        fast = x25519SharedSecret(privateKey, u);
      } catch (e) {
        assert.ok(e instanceof Malformed);
        fast = null;
      }
      assert.deepEqual(fast, reference);
    }),
    { numRuns: 200 },
  );
});

Deno.test("x25519SharedSecret() rejects low-order and wrong-length public keys as Malformed", () => {
  const privateKey = new SeededRandom("low-order").bytes(32);
  const lowOrder = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  ];
  for (const u of lowOrder) {
    assert.throws(() => x25519SharedSecret(privateKey, hex(u)), Malformed);
  }
  assert.throws(() => x25519SharedSecret(privateKey, new Uint8Array(31)), Malformed);
  assert.throws(() => x25519SharedSecret(new Uint8Array(31), hex(lowOrder[2])), RangeError);
});

Deno.test("generateEncryptionKeyPair() gives the public key node:crypto derives from the private key", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer(), async (seed) => {
      const pair = generateEncryptionKeyPair(new SeededRandom(seed));
      assert.deepEqual(await x25519PublicKey(pair.privateKey, { cache: false }), pair.publicKey);
    }),
    { numRuns: 50 },
  );
});

Deno.test("generateSigningKeyPair() and generateLookupKeyPair() are Ed25519 pairs from 32 random bytes", () => {
  for (const generate of [generateSigningKeyPair, generateLookupKeyPair]) {
    const seed = new SeededRandom("pair").bytes(32);
    const pair = generate(new FixedRandom(seed));
    assert.deepEqual(pair.privateKey, seed);
    assert.deepEqual(pair.publicKey, ed25519.getPublicKey(seed));
  }
});

Deno.test("generateSigningKeyPair() and friends are deterministic under a SeededRandom", () => {
  for (
    const generate of [generateSigningKeyPair, generateEncryptionKeyPair, generateLookupKeyPair]
  ) {
    const a = generate(new SeededRandom(9));
    const b = generate(new SeededRandom(9));
    const c = generate(new SeededRandom(10));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.privateKey, c.privateKey);
    assert.notDeepEqual(a.publicKey, c.publicKey);
  }
});

Deno.test("x25519SharedSecret() keeps at most importedKeysMax() imported private keys", async () => {
  const random = new SeededRandom("x25519 cache");
  const peer = generateEncryptionKeyPair(random).publicKey;
  setImportedKeysMax(64);
  try {
    for (let i = 0; i < 64 + 20; i++) {
      await x25519SharedSecret(random.bytes(32), peer);
    }
    assert.equal(_cacheSizes().x25519, 64);
    setImportedKeysMax(16); // a smaller bound drops the least recently used at once
    assert.equal(_cacheSizes().x25519, 16);
    assert.throws(() => setImportedKeysMax(0), RangeError);
    assert.equal(importedKeysMax(), 16, "a refused bound changes nothing");
  } finally {
    setImportedKeysMax(undefined);
  }
  assert.equal(importedKeysMax(), IMPORTED_KEYS_MAX_DEFAULT);
});

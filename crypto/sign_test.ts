import assert from "node:assert/strict";
import fc from "fast-check";
import { ED25519_TORSION_SUBGROUP } from "@noble/curves/ed25519.js";
import { generateSigningKeyPair } from "./keys.ts";
import { SeededRandom } from "./random.ts";
import { sign, verify } from "./sign.ts";
import { signReference, verifyReference } from "./_reference.ts";
import { _cacheSizes, setImportedKeysMax } from "./_native.ts";
import { FixedRandom, flipByte, hex, toHex } from "./_test_util.ts";

const RFC8032 = [
  {
    secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    public: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    message: "",
    signature:
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    public: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    message: "72",
    signature:
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
  {
    secret: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    public: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    message: "af82",
    signature:
      "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
  },
];

Deno.test("sign() and verify() match RFC 8032 Ed25519 test vectors 1-3", async () => {
  for (const v of RFC8032) {
    const pair = generateSigningKeyPair(new FixedRandom(hex(v.secret)));
    assert.equal(toHex(pair.publicKey), v.public);
    const signature = await sign(pair.privateKey, hex(v.message));
    assert.equal(toHex(signature), v.signature);
    assert.equal(await verify(hex(v.public), hex(v.message), hex(v.signature)), true);
    assert.equal(toHex(signReference(hex(v.secret), hex(v.message))), v.signature);
  }
});

Deno.test("sign() through node:crypto equals noble's signature on random keys and messages", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ maxLength: 300 }),
      async (seed, message) => {
        const signature = await sign(seed, message);
        assert.deepEqual(signature, signReference(seed, message));
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("verify() through node:crypto agrees with noble on valid, tampered and garbage input", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer(),
      fc.uint8Array({ maxLength: 100 }),
      fc.nat(63),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 64, maxLength: 64 }),
      async (seed, message, flip, garbageKey, garbageSignature) => {
        const { privateKey, publicKey } = generateSigningKeyPair(new SeededRandom(seed));
        const signature = signReference(privateKey, message);
        const cases: [Uint8Array, Uint8Array][] = [
          [publicKey, signature],
          [publicKey, flipByte(signature, flip)],
          [garbageKey, signature],
          [publicKey, garbageSignature],
          [garbageKey, garbageSignature],
        ];
        for (const [key, sig] of cases) {
          assert.equal(await verify(key, message, sig), verifyReference(key, message, sig));
        }
        assert.equal(await verify(publicKey, message, signature), true);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("verify() rejects every single-byte flip of signature, message and key", async () => {
  const { privateKey, publicKey } = generateSigningKeyPair(new SeededRandom("flip"));
  const message = new TextEncoder().encode("destination|payload|header");
  const signature = await sign(privateKey, message);
  for (let i = 0; i < signature.length; i++) {
    assert.equal(await verify(publicKey, message, flipByte(signature, i)), false);
  }
  for (let i = 0; i < message.length; i++) {
    assert.equal(await verify(publicKey, flipByte(message, i), signature), false);
  }
  for (let i = 0; i < publicKey.length; i++) {
    assert.equal(await verify(flipByte(publicKey, i), message, signature), false);
  }
});

Deno.test("verify() returns false, never throws, for malformed keys and signatures", async () => {
  const { privateKey, publicKey } = generateSigningKeyPair(new SeededRandom("malformed"));
  const message = new Uint8Array([1, 2, 3]);
  const signature = await sign(privateKey, message);
  const notAPoint = new Uint8Array(32).fill(0xff);
  notAPoint[31] = 0x7f;
  const identity = hex("01" + "00".repeat(31));
  const cases: [unknown, unknown, unknown][] = [
    [publicKey.subarray(0, 31), message, signature],
    [new Uint8Array(33), message, signature],
    [notAPoint, message, signature],
    [identity, message, signature],
    [new Uint8Array(32), message, signature],
    [publicKey, message, signature.subarray(0, 63)],
    [publicKey, message, new Uint8Array(65)],
    [publicKey, message, new Uint8Array(64).fill(0xff)],
    [publicKey, message, new Uint8Array(64)],
    [null, message, signature],
    [publicKey, "abc", signature],
    [publicKey, message, undefined],
  ];
  for (const [k, m, s] of cases) {
    assert.equal(
      await verify(k as Uint8Array, m as Uint8Array, s as Uint8Array),
      false,
    );
  }
});

Deno.test("sign() rejects a private key that is not 32 bytes with a RangeError", () => {
  assert.throws(() => sign(new Uint8Array(64), new Uint8Array()), RangeError);
  assert.throws(() => sign(new Uint8Array(31), new Uint8Array()), RangeError);
});

Deno.test("sign() keeps at most importedKeysMax() imported keys", async () => {
  const random = new SeededRandom("cache");
  setImportedKeysMax(64);
  try {
    for (let i = 0; i < 64 + 20; i++) {
      const { privateKey, publicKey } = generateSigningKeyPair(random);
      const signature = await sign(privateKey, new Uint8Array([i]));
      assert.equal(await verify(publicKey, new Uint8Array([i]), signature), true);
    }
    const sizes = _cacheSizes();
    assert.equal(sizes.ed25519Private, 64);
    assert.equal(sizes.ed25519Public, 64);
  } finally {
    setImportedKeysMax(undefined);
  }
});

Deno.test("verify() rejects small-order and non-canonical public keys, which node:crypto alone accepts", async () => {
  // Under a small-order key A, R = a small-order point and S = 0 satisfy [S]B = R + [k]A
  // for many messages: a universal forgery unless such keys are refused.
  const nonCanonical = [
    "0100000000000000000000000000000000000000000000000000000000000080", // identity, x = -0
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // order 2, x = -0
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1
  ];
  const keys = [...ED25519_TORSION_SUBGROUP, ...nonCanonical].map(hex);
  const message = new Uint8Array([1, 2, 3]);
  for (const key of keys) {
    for (const r of [...ED25519_TORSION_SUBGROUP.map(hex), key]) {
      const signature = new Uint8Array(64);
      signature.set(r);
      assert.equal(await verify(key, message, signature), false, toHex(key));
      assert.equal(verifyReference(key, message, signature), false, toHex(key));
    }
  }
});

Deno.test("verify() rejects a signature whose S is not reduced (S + L), so signatures are not malleable", async () => {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const { privateKey, publicKey } = generateSigningKeyPair(new SeededRandom("malleable"));
  const message = new Uint8Array([4, 5, 6]);
  const signature = await sign(privateKey, message);
  let s = 0n;
  for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(signature[32 + i]);
  const malleated = signature.slice();
  for (let i = 0; i < 32; i++) malleated[32 + i] = Number(((s + L) >> BigInt(8 * i)) & 0xffn);
  assert.equal(await verify(publicKey, message, malleated), false);
  assert.equal(verifyReference(publicKey, message, malleated), false);
});

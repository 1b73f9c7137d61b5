import assert from "node:assert/strict";
import { SeededRandom, symEncrypt } from "../../crypto/mod.ts";
import {
  openRecord,
  recordAd,
  SEAL_FORMAT_VERSION,
  SEAL_OVERHEAD_BYTES,
  UnreadableRecord,
  xchachaCipher,
} from "./cipher.ts";

Deno.test("recordAd() encodes different store keys differently, whatever their parts hold", () => {
  const keys = [
    [],
    [""],
    ["", ""],
    ["a"],
    ["ab"],
    ["a", "b"],
    ["a\0b"],
    ["a\0", "b"],
    ["a", "\0b"],
    ["peer", "bob"],
    ["device", "bob"],
    ["msg", "bob", "m1"],
    ["msg", "bob\0m1"],
    [1],
    ["1"],
    [1n],
    [true],
    [new Uint8Array([97])],
    ["identity", 0],
    ["identity", "0"],
  ];
  const seen = new Map<string, string>();
  for (const key of keys) {
    const hex = Array.from(recordAd(key), (b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(seen.get(hex), undefined, `${String(key)} encodes like ${seen.get(hex)}`);
    seen.set(hex, JSON.stringify(key, (_, v) => typeof v === "bigint" ? `${v}n` : v));
  }
  assert.throws(() => recordAd([{} as never]), TypeError);
});

Deno.test("xchachaCipher() seals with a format byte and opens only at the same store key", () => {
  const random = new SeededRandom(3);
  const cipher = xchachaCipher(random.bytes(32), random);
  const sealed = cipher.seal(new Uint8Array([1, 2, 3]), recordAd(["peer", "bob"]));
  assert.equal(sealed[0], SEAL_FORMAT_VERSION);
  assert.equal(sealed.length, 3 + SEAL_OVERHEAD_BYTES);
  assert.deepEqual(
    openRecord(cipher, sealed, ["peer", "bob"], "a peer", "S"),
    new Uint8Array([1, 2, 3]),
  );
  for (const key of [["peer", "bo"], ["device", "bob"], ["peer", "bob", ""], []]) {
    assert.throws(() => openRecord(cipher, sealed, key, "a peer", "S"), UnreadableRecord);
  }
  // Another format byte is refused.
  const other = sealed.slice();
  other[0] = SEAL_FORMAT_VERSION + 1;
  assert.throws(() => openRecord(cipher, other, ["peer", "bob"], "a peer", "S"), UnreadableRecord);
});

Deno.test("openRecord() refuses a record of the older format, sealed without its store key", () => {
  const random = new SeededRandom(4);
  const key = random.bytes(32);
  const cipher = xchachaCipher(key, random);
  let old = symEncrypt(key, new Uint8Array([9]), random);
  if (old[0] === SEAL_FORMAT_VERSION) old = symEncrypt(key, new Uint8Array([9]), random);
  assert.throws(
    () => openRecord(cipher, old, ["peer", "bob"], "a peer", "SqliteStore"),
    (e: Error) =>
      e instanceof UnreadableRecord &&
      /^Cannot read a peer of SqliteStore: .*older meowsync.*re-create the home/.test(e.message),
  );
  assert.throws(() => openRecord(cipher, new Uint8Array(0), ["x"], "a", "S"), UnreadableRecord);
});

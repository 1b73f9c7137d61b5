import assert from "node:assert/strict";
import fc from "fast-check";
import { Malformed } from "./errors.ts";
import { fromBase64Url, toBase64Url } from "./base64.ts";

const text = new TextEncoder();

Deno.test("toBase64Url() matches the RFC 4648 vectors without padding", () => {
  const vectors: [string, string][] = [
    ["", ""],
    ["f", "Zg"],
    ["fo", "Zm8"],
    ["foo", "Zm9v"],
    ["foob", "Zm9vYg"],
    ["fooba", "Zm9vYmE"],
    ["foobar", "Zm9vYmFy"],
  ];
  for (const [plain, encoded] of vectors) {
    assert.equal(toBase64Url(text.encode(plain)), encoded);
    assert.deepEqual(fromBase64Url(encoded), text.encode(plain));
  }
  assert.equal(toBase64Url(new Uint8Array([0xfb, 0xff, 0xbf])), "-_-_");
});

Deno.test("toBase64Url() agrees with the built-in encoder and round-trips", () => {
  const builtIn = (b: Uint8Array): string =>
    btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const encoded = toBase64Url(bytes);
      assert.equal(encoded, builtIn(bytes));
      assert.deepEqual(fromBase64Url(encoded), bytes);
    }),
    { numRuns: 500 },
  );
});

Deno.test("fromBase64Url() rejects padding, whitespace, other alphabets and impossible lengths", () => {
  for (
    const bad of ["Zg==", "Zg=", "Zm9v\n", " Zm9v", "Zm+v", "Zm/v", "Z", "Zm9vY", "Zé", "Zm9v!"]
  ) {
    assert.throws(() => fromBase64Url(bad), Malformed, bad);
  }
});

Deno.test("fromBase64Url() accepts only the canonical spelling (unused bits zero)", () => {
  assert.throws(() => fromBase64Url("Zh"), Malformed);
  assert.throws(() => fromBase64Url("Zm9"), Malformed);
  fc.assert(
    fc.property(
      fc.string({ unit: fc.constantFrom(..."AZaz09-_Qw".split("")), maxLength: 20 }),
      (s) => {
        let decoded: Uint8Array;
        try {
          decoded = fromBase64Url(s);
        } catch (e) {
          assert.ok(e instanceof Malformed);
          return;
        }
        assert.equal(toBase64Url(decoded), s);
      },
    ),
    { numRuns: 500 },
  );
});

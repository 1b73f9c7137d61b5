import assert from "node:assert/strict";
import { concatBytes, equalBytes } from "./bytes.ts";

Deno.test("concatBytes() joins parts in order into a new array", () => {
  const a = new Uint8Array([1, 2]);
  const b = new Uint8Array(0);
  const c = new Uint8Array([3, 4, 5]).subarray(1);
  const joined = concatBytes(a, b, c);
  assert.deepEqual(joined, new Uint8Array([1, 2, 4, 5]));
  joined[0] = 9;
  assert.equal(a[0], 1);
  assert.deepEqual(concatBytes(), new Uint8Array(0));
});

Deno.test("equalBytes() compares length and content", () => {
  assert.equal(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2])), true);
  assert.equal(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 3])), false);
  assert.equal(equalBytes(new Uint8Array([1]), new Uint8Array([1, 0])), false);
});

import assert from "node:assert/strict";
import { SeededRandom, symEncrypt, toBase64Url } from "../crypto/mod.ts";
import { AgentError, EXIT } from "./errors.ts";
import { deriveKey, getPassphrase, keyCheck, keyMatches, newKdfParams } from "./passphrase.ts";

Deno.test("deriveKey() is stable for one passphrase and salt, and the key check tells them apart", () => {
  const random = new SeededRandom(1);
  const params = newKdfParams(random, 10);
  assert.deepEqual(deriveKey("pw", params), deriveKey("pw", params));
  const check = keyCheck(deriveKey("pw", params), random);
  assert.equal(keyMatches(deriveKey("pw", params), check), true);
  assert.equal(keyMatches(deriveKey("pW", params), check), false);
  assert.equal(keyMatches(deriveKey("pw", newKdfParams(random, 10)), check), false);
  assert.equal(keyMatches(deriveKey("pw", params), "garbage"), false);
});

Deno.test("newKdfParams() refuses a cost out of range", () => {
  assert.throws(() => newKdfParams(new SeededRandom(1), 4), AgentError);
  assert.throws(() => newKdfParams(new SeededRandom(1), 30), AgentError);
});

Deno.test("getPassphrase() takes MEOW_PASSPHRASE, else asks, and checks the confirmation", async () => {
  assert.equal(await getPassphrase({ env: () => "from-env" }), "from-env");
  const answers = ["one", "two"];
  await assert.rejects(
    getPassphrase({ env: () => undefined, ask: () => Promise.resolve(answers.shift()) }, {
      confirm: true,
    }),
    (e: AgentError) => e.exitCode === EXIT.passphrase && /differ/.test(e.message),
  );
  await assert.rejects(
    getPassphrase({ env: () => undefined, ask: () => Promise.resolve(undefined) }),
    (e: AgentError) => e.exitCode === EXIT.passphrase && /MEOW_PASSPHRASE/.test(e.message),
  );
});

Deno.test("keyMatches() refuses the key check of a home made before records were bound to their keys", () => {
  const random = new SeededRandom(2);
  const key = random.bytes(32);
  // The old format: nonce ‖ ciphertext ‖ tag, no format byte, no associated data.
  const old = toBase64Url(
    symEncrypt(key, new TextEncoder().encode("meowsync key check v1"), random),
  );
  assert.throws(
    () => keyMatches(key, old),
    (e: AgentError) => e.exitCode === EXIT.failure && /older meowsync/.test(e.message),
  );
  assert.equal(keyMatches(key, keyCheck(key, random)), true);
});

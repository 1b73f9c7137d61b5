/**
 * Pull tokens, attacked. Each attack runs against a deliberately weakened token check written
 * here (the MAC not bound to the request, or the token not bound to its queue), where it must
 * succeed, and against the real relay core, where it must fail.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { concatBytes, mac, publicKeyOperations, verifyMac } from "../crypto/mod.ts";
import { decode } from "../proto/codec.ts";
import {
  type ConversationRequest,
  ConversationRequestSchema,
  ErrorCode,
  type PullToken,
  PullTokenBodySchema,
} from "../proto/gen/meow_pb.ts";
import { symDecrypt } from "../crypto/mod.ts";
import { text } from "../tests/support/relay.ts";
import { macPull, PULL_TOKEN_LIFETIME_MS, pullTokenKey } from "./token.ts";
import { testRelay } from "./_test_relay.ts";

const encoder = new TextEncoder();

/** A relay with Bob's queue holding "secret", Bob holding a token for it, and Mallory. */
async function world() {
  const relay = await testRelay(21);
  const bob = relay.device();
  bob.useTokens = true;
  const mallory = relay.device();
  mallory.useTokens = true;
  const alice = relay.device();
  await alice.request({ messages: [alice.message(bob.queue, "secret")] });
  // Bob's first pull is signed, and brings a token.
  const first = await bob.request({ pullRequests: [await bob.pull()] });
  assert.equal(first.pullTokens.length, 1);
  // Mallory has a queue and a token of her own.
  await mallory.request({ pullRequests: [await mallory.pull()] });
  return { ...relay, bob, mallory, token: bob.tokens.get(bob.queue)! };
}

/** The weakened check: the MAC covers relay uid ‖ lookup key ‖ timestamp, not the request. */
function weakMacPull(serverUid: string, token: PullToken, now: number): ConversationRequest {
  const signed = concatBytes(
    encoder.encode(serverUid),
    encoder.encode(token.lookupKey),
    encoder.encode(String(now)),
  );
  return create(ConversationRequestSchema, {
    lookupKey: token.lookupKey,
    sendTimestamp: now,
    pullToken: token.token,
    tokenMac: mac(token.secret, signed),
  });
}

/**
 * The weakened relay's verdict: the token opens, it names the pull's queue unless `checkQueue`
 * is off, and the MAC verifies over the weak bytes.
 */
function weakAccepts(
  tokenKey: Uint8Array,
  serverUid: string,
  pull: ConversationRequest,
  checkQueue: boolean,
): boolean {
  const body = decode(PullTokenBodySchema, symDecrypt(tokenKey, pull.pullToken));
  if (checkQueue && body.lookupKey !== pull.lookupKey) return false;
  const signed = concatBytes(
    encoder.encode(serverUid),
    encoder.encode(pull.lookupKey),
    encoder.encode(String(pull.sendTimestamp)),
  );
  return verifyMac(body.secret, signed, pull.tokenMac);
}

Deno.test("a pull of a known key costs no public-key operation", async () => {
  const { core, bob } = await world();
  const before = publicKeyOperations();
  const stats = core.stats();
  const pull = await bob.pull();
  const answer = await bob.request({ pullRequests: [pull], acks: [] });
  const after = publicKeyOperations();
  assert.deepEqual(answer.errors, []);
  assert.deepEqual(answer.chat.map(text), ["secret"]);
  assert.equal(pull.lookupSignature.length, 0, "no signature");
  assert.equal(after.ed25519Sign - before.ed25519Sign, 0);
  assert.equal(after.ed25519Verify - before.ed25519Verify, 0);
  // What is left is the envelope's: the device's key and agreement, the relay's agreement.
  assert.equal(after.x25519 - before.x25519, 2);
  assert.equal(core.stats().tokenPulls, stats.tokenPulls + 1);
  assert.equal(core.stats().signedPulls, stats.signedPulls);
  assert.deepEqual(answer.pullTokens, [], "a token pull brings no new token");
});

Deno.test("attack: a token pull lifted into another request reads the queue through the weakened check", async () => {
  const { core, keys, token } = await world();
  const lifted = weakMacPull(core.card().uid, token, Date.now());
  // Mallory wraps the captured pull in her own request: nothing in it names Bob's request.
  assert(weakAccepts(pullTokenKey(keys.encryption.privateKey), core.card().uid, lifted, true));
});

Deno.test("attack: a token pull lifted into another request is refused by the relay, and burns nothing", async () => {
  const { core, data, bob, mallory, clock } = await world();
  const { binding: ephemeralPublicKey } = await bob.next();
  const lifted = macPull({
    server: core.card(),
    token: bob.tokens.get(bob.queue)!,
    now: clock.now(),
    ephemeralPublicKey,
  });
  const used = data.signatures.size;
  const answer = await mallory.request({ pullRequests: [lifted] });
  assert.deepEqual(answer.chat, []);
  assert.equal(answer.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.equal(data.signatures.size, used, "a refused pull burns nothing");
  // In Bob's own request it is good once; the same body again is refused.
  const { body, exchange } = await bob.seal({ pullRequests: [lifted] });
  assert.deepEqual(exchange.open(await core.handle(body)).chat.map(text), ["secret"]);
  const again = exchange.open(await core.handle(body));
  assert.equal(again.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.match(again.errors[0].detail, /used before/);
  assert.deepEqual(again.chat, []);
});

Deno.test("attack: Mallory's own token names Bob's queue through a check that skips the queue", async () => {
  const { core, keys, bob, mallory, clock } = await world();
  const own = mallory.tokens.get(mallory.queue)!;
  const { binding: ephemeralPublicKey } = await mallory.next();
  const forged = macPull({
    server: core.card(),
    token: { ...own, lookupKey: bob.queue },
    now: clock.now(),
    ephemeralPublicKey,
  });
  const tokenKey = pullTokenKey(keys.encryption.privateKey);
  assert(
    weakAccepts(
      tokenKey,
      core.card().uid,
      weakMacPull(core.card().uid, { ...own, lookupKey: bob.queue }, 5),
      false,
    ),
  );
  // The real relay: the token seals Mallory's queue, not Bob's.
  const answer = await mallory.request({ pullRequests: [forged] });
  assert.deepEqual(answer.chat, []);
  assert.equal(answer.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.equal(answer.errors[0].lookupKey, bob.queue);
});

Deno.test("a token from another relay, an expired token and a revoked token are refused", async () => {
  const { core, bob, clock } = await world();
  const other = await testRelay(22);
  const stranger = other.device();
  stranger.useTokens = true;
  await stranger.request({ pullRequests: [await stranger.pull()] });
  const foreign = stranger.tokens.get(stranger.queue)!;
  // Bob presents a token another relay issued for his key's queue name.
  const { binding: ephemeralPublicKey } = await bob.next();
  const misplaced = macPull({
    server: core.card(),
    token: { ...foreign, lookupKey: bob.queue },
    now: clock.now(),
    ephemeralPublicKey,
  });
  const refused = await bob.request({ pullRequests: [misplaced] });
  assert.equal(refused.errors[0]?.code, ErrorCode.BAD_LOOKUP_SIGNATURE);

  // Expired: past its lifetime the token is refused; a signed pull brings a new one.
  clock.advance(PULL_TOKEN_LIFETIME_MS + 1);
  const expired = await bob.request({ pullRequests: [await bob.pull()] });
  assert.match(expired.errors[0]?.detail ?? "", /expired/);
  bob.useTokens = false;
  const signed = await bob.request({ pullRequests: [await bob.pull()] });
  assert.deepEqual(signed.errors, []);
  assert.equal(signed.pullTokens.length, 1);
  bob.useTokens = true;
  assert.deepEqual((await bob.request({ pullRequests: [await bob.pull()] })).errors, []);

  // Revoked: a signed pull that revokes gets no token, and the old one stops working.
  const kept = bob.tokens.get(bob.queue)!;
  bob.useTokens = false;
  const revoke = await bob.pull();
  revoke.revokeTokens = true;
  const revoking = await bob.request({ pullRequests: [revoke] });
  assert.deepEqual(revoking.errors, []);
  assert.deepEqual(revoking.pullTokens, []);
  bob.useTokens = true;
  bob.tokens.set(bob.queue, kept);
  clock.advance(1);
  const revoked = await bob.request({ pullRequests: [await bob.pull()] });
  assert.match(revoked.errors[0]?.detail ?? "", /revoked/);
  // A token issued after the revocation is good.
  clock.advance(1);
  bob.useTokens = false;
  await bob.request({ pullRequests: [await bob.pull()] });
  bob.useTokens = true;
  assert.deepEqual((await bob.request({ pullRequests: [await bob.pull()] })).errors, []);
});

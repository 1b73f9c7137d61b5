/**
 * Relay sessions, and the attacks on them. Each attack runs twice: against a relay whose
 * sessions are deliberately weakened (one of {@linkcode RelaySessions}' checks overridden here),
 * where it must succeed, and against the real relay, where it must fail with nothing changed.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { decode, encode } from "../proto/codec.ts";
import {
  type FromServerMessage,
  PackedServerMessageSchema,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { publicKeyOperations, SeededRandom } from "../crypto/mod.ts";
import { MemoryBackend, MemoryData } from "../server/memory.ts";
import { ServerCore } from "../server/core.ts";
import { ManualClock, TestDevice, text } from "../tests/support/relay.ts";
import {
  RelaySessions,
  sealSessionRequest,
  SESSION_LIFETIME_MS,
  SESSION_UNKNOWN_ANSWER,
  SESSION_WINDOW,
  type SessionEntry,
  type SessionKeys,
  sessionKeys,
  SessionUnknown,
} from "./session.ts";
import { openRelayExchange } from "./request.ts";

/** A relay over memory with `sessions`, and devices on its card that use sessions. */
async function world(sessions: RelaySessions = new RelaySessions()) {
  const clock = new ManualClock();
  const data = new MemoryData();
  const random = new SeededRandom(31);
  const core = await ServerCore.create({
    backend: new MemoryBackend({ data }),
    clock,
    random: random.fork("relay"),
    sessions,
  });
  let devices = 0;
  const device = () => {
    const d = new TestDevice(
      random.fork(`device-${devices++}`),
      core.card(),
      (body) => core.handle(body),
      () => clock.now(),
    );
    d.useSessions = true;
    d.useTokens = true;
    return d;
  };
  const alice = device();
  const mallory = device();
  const bob = device();
  // Each opens its session with a first pull (in v2).
  for (const d of [alice, mallory, bob]) {
    const first = await d.request({ pullRequests: [await d.pull()] });
    assert(first.session, "the first pull opens a session");
  }
  /** How many messages wait in `queue`. */
  const waiting = (queue: string) => data.queues.get(queue)?.size ?? 0;
  return { core, clock, random, alice, mallory, bob, waiting };
}

/** Alice's next request, in her session, storing `note` for Bob; sealed, not sent. */
async function aliceStores(
  alice: TestDevice,
  bob: TestDevice,
  note: string,
): Promise<{ body: Uint8Array; handle: Uint8Array; open: (b: Uint8Array) => FromServerMessage }> {
  // A pull puts the request in the session (as the kernel's polls are).
  const pull = await alice.pull();
  const { body, exchange } = await alice.seal({
    pullRequests: [pull],
    messages: [alice.message(bob.queue, note)],
  });
  assert(exchange.inSession);
  return { body, handle: exchange.binding, open: (b) => exchange.open(b) };
}

Deno.test("a request in a session costs the device and the relay no public-key operation", async () => {
  const { core, alice, bob } = await world();
  const before = publicKeyOperations();
  const stats = core.stats();
  const sent = await alice.request({
    pullRequests: [await alice.pull()],
    messages: [alice.message(bob.queue, "hi")],
  });
  assert.deepEqual(sent.errors, []);
  assert.equal(sent.stored, 1);
  const pulled = await bob.request({ pullRequests: [await bob.pull()] });
  assert.deepEqual(pulled.chat.map(text), ["hi"]);
  const after = publicKeyOperations();
  assert.equal(after.x25519 - before.x25519, 0);
  assert.equal(after.keyGeneration - before.keyGeneration, 0);
  assert.equal(after.ed25519Verify - before.ed25519Verify, 0);
  assert.equal(core.stats().sessionRequests - stats.sessionRequests, 2);
});

Deno.test("a session's requests may arrive out of order within the window, each once", async () => {
  const { core, alice } = await world();
  const sealed = [];
  for (let i = 0; i < SESSION_WINDOW; i++) {
    sealed.push(await alice.seal({ pullRequests: [await alice.pull()] }));
  }
  for (const { body, exchange } of sealed.reverse()) {
    assert(exchange.inSession);
    assert.deepEqual(exchange.open(await core.handle(body)).errors, []);
  }
  for (const { body } of sealed) assert.deepEqual(await core.handle(body), SESSION_UNKNOWN_ANSWER);
});

class ReplayableSessions extends RelaySessions {
  /** Weakened: a used handle is never retired. */
  override retire(): void {}
}

Deno.test("attack: a replayed session request stores again through sessions that never retire a handle", async () => {
  const { core, alice, bob, waiting } = await world(new ReplayableSessions());
  const { body } = await aliceStores(alice, bob, "once");
  await core.handle(body);
  await core.handle(body);
  assert.equal(waiting(bob.queue), 2, "the replay went through");
});

Deno.test("attack: a replayed session request is refused, and changes nothing", async () => {
  const { core, alice, bob, waiting } = await world();
  const { body, open } = await aliceStores(alice, bob, "once");
  open(await core.handle(body));
  const replay = await core.handle(body);
  assert.deepEqual(replay, SESSION_UNKNOWN_ANSWER);
  assert.throws(() => open(replay), SessionUnknown);
  assert.equal(waiting(bob.queue), 1);
});

class TimelessSessions extends RelaySessions {
  /** Weakened: a session never expires. */
  override expired(): boolean {
    return false;
  }
}

Deno.test("attack: an expired session still works through sessions that never expire", async () => {
  const { core, clock, alice, bob, waiting } = await world(new TimelessSessions());
  const { body } = await aliceStores(alice, bob, "late");
  clock.advance(SESSION_LIFETIME_MS);
  await core.handle(body);
  assert.equal(waiting(bob.queue), 1);
});

Deno.test("attack: an expired session is refused, and changes nothing; the device opens a new one", async () => {
  const { core, clock, alice, bob, waiting } = await world();
  const { body } = await aliceStores(alice, bob, "late");
  clock.advance(SESSION_LIFETIME_MS);
  assert.deepEqual(await core.handle(body), SESSION_UNKNOWN_ANSWER);
  assert.equal(waiting(bob.queue), 0);
  assert.equal(core.sessions.size, 2, "Alice's dropped when met, nothing else");
  // The device's own clock says the session is past its use: its next pull opens a new one.
  const renewed = await alice.request({ pullRequests: [await alice.pull()] });
  assert(renewed.session);
});

/** Every session's requests and answers under one key set: the secret is not secret. */
class SharedKeySessions extends RelaySessions {
  static readonly keys: SessionKeys = sessionKeys(new Uint8Array(32));
  override keysOf(_entry: SessionEntry): SessionKeys {
    return SharedKeySessions.keys;
  }
}

/** Mallory's request in the session of `handle` (lifted off the wire), under `keys`. */
function malloryStores(
  mallory: TestDevice,
  victim: TestDevice,
  handle: Uint8Array,
  requestKey: Uint8Array,
): Uint8Array {
  const request = create(ToServerMessageSchema, {
    uuid: "mallory",
    messages: [mallory.message(victim.queue, "from mallory")],
  });
  return sealSessionRequest(
    requestKey,
    handle,
    encode(ToServerMessageSchema, request),
    mallory.random,
  );
}

Deno.test("attack: Mallory uses Alice's session, and burns her request, through sessions under one key", async () => {
  const { core, alice, mallory, bob, waiting } = await world(new SharedKeySessions());
  const { body, handle } = await aliceStores(alice, bob, "alice's");
  const forged = malloryStores(mallory, bob, handle, SharedKeySessions.keys.requestKey);
  assert.notDeepEqual(await core.handle(forged), SESSION_UNKNOWN_ANSWER);
  assert.equal(waiting(bob.queue), 1, "stored in Alice's session");
  assert.deepEqual(await core.handle(body), SESSION_UNKNOWN_ANSWER, "Alice's request is refused");
});

Deno.test("attack: Mallory's request in Alice's session, or under a made-up handle, is refused; Alice's goes through", async () => {
  const { core, alice, mallory, bob, waiting } = await world();
  const { body, handle, open } = await aliceStores(alice, bob, "alice's");
  // Mallory seals under her own session's keys (all she has) with Alice's handle.
  const { exchange } = await mallory.seal({ pullRequests: [await mallory.pull()] });
  assert(exchange.inSession);
  const own = (exchange as unknown as { keys: { requestKey: Uint8Array } }).keys.requestKey;
  assert.deepEqual(
    await core.handle(malloryStores(mallory, bob, handle, own)),
    SESSION_UNKNOWN_ANSWER,
  );
  // A handle she made up.
  const madeUp = malloryStores(mallory, bob, mallory.random.bytes(32), own);
  assert.deepEqual(await core.handle(madeUp), SESSION_UNKNOWN_ANSWER);
  assert.equal(waiting(bob.queue), 0);
  // Alice's own request is still good.
  const answer = open(await core.handle(body));
  assert.equal(answer.stored, 1);
  assert.equal(waiting(bob.queue), 1);
});

/** Weakened: a payload that does not open counts as an empty request (its handle is taken). */
class CarelessSessions extends RelaySessions {
  override authenticate(keys: SessionKeys, envelope: Parameters<RelaySessions["authenticate"]>[1]) {
    return super.authenticate(keys, envelope) ?? new Uint8Array(0);
  }
}

function tamper(body: Uint8Array): Uint8Array {
  const envelope = decode(PackedServerMessageSchema, body);
  envelope.payload = envelope.payload.slice();
  envelope.payload[envelope.payload.length - 1] ^= 1;
  return encode(PackedServerMessageSchema, envelope);
}

Deno.test("attack: a tampered copy burns Alice's session request through sessions that take what does not open", async () => {
  const { core, alice, bob, waiting } = await world(new CarelessSessions());
  const { body } = await aliceStores(alice, bob, "alice's");
  assert.notDeepEqual(await core.handle(tamper(body)), SESSION_UNKNOWN_ANSWER);
  assert.deepEqual(await core.handle(body), SESSION_UNKNOWN_ANSWER, "Alice's request is refused");
  assert.equal(waiting(bob.queue), 0);
});

Deno.test("attack: a tampered session request is refused and burns nothing", async () => {
  const { core, alice, bob, waiting } = await world();
  const { body, open } = await aliceStores(alice, bob, "alice's");
  assert.deepEqual(await core.handle(tamper(body)), SESSION_UNKNOWN_ANSWER);
  assert.equal(waiting(bob.queue), 0);
  assert.equal(open(await core.handle(body)).stored, 1);
});

Deno.test("an answer in a session opens for its own request only", async () => {
  const { core, alice } = await world();
  const first = await alice.seal({ pullRequests: [await alice.pull()] });
  const second = await alice.seal({ pullRequests: [await alice.pull()] });
  const reply = await core.handle(first.body);
  assert.throws(() => second.exchange.open(reply), { name: "BadCiphertext" });
  assert.deepEqual(first.exchange.open(reply).errors, []);
});

Deno.test("a relay keeps at most sessionsMax sessions, the oldest forgotten first", async () => {
  const sessions = new RelaySessions({ sessionsMax: 2 });
  const { core, alice } = await world(sessions);
  assert.equal(sessions.size, 2);
  // Alice's was the first session: forgotten. Her request in it is answered session_unknown.
  const { body } = await alice.seal({ pullRequests: [await alice.pull()] });
  assert.deepEqual(await core.handle(body), SESSION_UNKNOWN_ANSWER);
  assert.throws(() => new RelaySessions({ sessionsMax: 0 }), RangeError);
  // A device without a session is unaffected by any of it.
  const exchange = await openRelayExchange({ server: core.card(), random: alice.random });
  assert(!exchange.inSession);
});

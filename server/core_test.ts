import assert from "node:assert/strict";
import fc from "fast-check";
import { create } from "@bufbuild/protobuf";
import { SeededRandom } from "../kernel/crypto/mod.ts";
import { decode, encode } from "../proto/codec.ts";
import {
  ErrorCode,
  InvitationAction,
  PackedServerMessageSchema,
  PackedUserMessageSchema,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { openAnswer } from "./client.ts";
import { ServerCore, type ServerCoreOptions } from "./core.ts";
import { MemoryBackend, MemoryData } from "./memory.ts";
import { ManualClock, TestDevice, text } from "./_testing.ts";
import type { ServerLimitsInit } from "./limits.ts";

interface Relay {
  core: ServerCore;
  clock: ManualClock;
  data: MemoryData;
  device(): TestDevice;
}

async function relay(
  options: { limits?: Partial<ServerLimitsInit>; data?: MemoryData; seed?: number } = {},
): Promise<Relay> {
  const clock = new ManualClock();
  const data = options.data ?? new MemoryData();
  const random = new SeededRandom(options.seed ?? 1);
  const coreOptions: ServerCoreOptions = {
    backend: new MemoryBackend({ data }),
    clock,
    random: random.fork("relay"),
    limits: options.limits,
  };
  const core = await ServerCore.create(coreOptions);
  let devices = 0;
  return {
    core,
    clock,
    data,
    device: () =>
      new TestDevice(
        random.fork(`device-${devices++}`),
        core.card(),
        (body) => core.handle(body),
        () => clock.now(),
      ),
  };
}

/** A comparable snapshot of everything a memory relay stores. */
function snapshot(data: MemoryData): string {
  return JSON.stringify({
    queues: [...data.queues].map(([q, m]) => [q, [...m.keys()]]),
    signatures: [...data.signatures],
    invitations: [...data.invitations.keys()],
  });
}

Deno.test("ServerCore.handle() stores, delivers oldest first and removes acked messages", async () => {
  const { device } = await relay();
  const alice = device();
  const bob = device();
  const sent = await alice.request({
    uuid: "s1",
    messages: ["one", "two", "three"].map((t) => alice.message(bob.queue, t)),
  });
  assert.equal(sent.uuidAck, "s1");
  assert.equal(sent.stored, 3);
  assert.deepEqual(sent.errors, []);

  const pulled = await bob.request({ uuid: "p1", pullRequests: [await bob.pull()] });
  assert.deepEqual(pulled.chat.map(text), ["one", "two", "three"]);
  assert.ok(pulled.chat.every((m) => m.serverDeliveryUuid.length === 36));
  assert.ok(pulled.chat.every((m) => m.serverReceivedMs > 0));

  const again = await bob.request({ pullRequests: [await bob.pull()] });
  assert.equal(again.chat.length, 3, "unacked messages are delivered again");

  const acked = await bob.request({
    pullRequests: [await bob.pull()],
    acks: pulled.chat.slice(0, 2).map((m) => m.serverDeliveryUuid),
  });
  assert.deepEqual(acked.chat.map(text), ["three"]);
});

Deno.test("ServerCore.handle() refuses pulls and acks of a queue without its lookup key", async () => {
  const { device, data } = await relay();
  const alice = device();
  const bob = device();
  const mallory = device();
  await alice.request({ messages: [alice.message(bob.queue, "secret")] });
  const delivered = await bob.request({ pullRequests: [await bob.pull()] });
  const uuid = delivered.chat[0].serverDeliveryUuid;

  // Mallory names Bob's queue but signs with her own lookup key.
  const forged = await mallory.pull(mallory.lookup);
  forged.lookupKey = bob.queue;
  const answer = await mallory.request({ pullRequests: [forged], acks: [uuid] });
  assert.deepEqual(answer.chat, []);
  assert.equal(answer.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.equal(answer.errors[0].lookupKey, bob.queue);

  // Acking with a proof for her own queue does not touch Bob's.
  await mallory.request({ pullRequests: [await mallory.pull()], acks: [uuid] });
  assert.equal(data.queues.get(bob.queue)?.size, 1);
});

Deno.test("ServerCore.handle() refuses a replayed pull signature for that key alone", async () => {
  const { device } = await relay();
  const bob = device();
  const carol = device();
  const pull = await bob.pull();
  const first = await bob.request({ pullRequests: [pull] });
  assert.deepEqual(first.errors, []);
  const replay = await bob.request({ pullRequests: [pull, await carol.pull(carol.lookup)] });
  assert.equal(replay.errors.length, 1);
  assert.equal(replay.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.equal(replay.errors[0].lookupKey, bob.queue);
});

Deno.test("ServerCore.handle() refuses replays across a restart over the same data", async () => {
  const data = new MemoryData();
  const first = await relay({ data });
  const bob = first.device();
  const pull = await bob.pull();
  assert.deepEqual((await bob.request({ pullRequests: [pull] })).errors, []);
  const second = await relay({ data, seed: 2 });
  assert.equal(second.core.card().uid, first.core.card().uid, "keys persist in the backend");
  const again = new TestDevice(
    new SeededRandom(5),
    second.core.card(),
    (body) => second.core.handle(body),
    () => first.clock.now(),
  );
  const answer = await again.request({ pullRequests: [pull] });
  assert.equal(answer.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
});

Deno.test("ServerCore.handle() refuses stale and future pull timestamps", async () => {
  const { device, clock, core } = await relay();
  const bob = device();
  const { signPull } = await import("./client.ts");
  for (const offset of [-5 * 60_000 - 1, 5 * 60_000 + 1]) {
    const pull = await signPull({
      server: core.card(),
      lookup: bob.lookup,
      now: clock.now() + offset,
    });
    const answer = await bob.request({ pullRequests: [pull] });
    assert.equal(answer.errors[0].code, ErrorCode.STALE);
  }
  const edge = await signPull({
    server: core.card(),
    lookup: bob.lookup,
    now: clock.now() - 300_000,
  });
  assert.deepEqual((await bob.request({ pullRequests: [edge] })).errors, []);
});

Deno.test("ServerCore.handle() answers request-wide limits with TOO_LARGE and applies nothing", async () => {
  const { device, data } = await relay({ limits: { messagesPerRequestMax: 2 } });
  const alice = device();
  const before = snapshot(data);
  const answer = await alice.request({
    pullRequests: [await alice.pull()],
    messages: [1, 2, 3].map((i) => alice.message(alice.queue, `m${i}`)),
  });
  assert.equal(answer.errors.length, 1);
  assert.equal(answer.errors[0].code, ErrorCode.TOO_LARGE);
  assert.equal(answer.stored, 0);
  assert.equal(snapshot(data), before, "not even the pull signature was used");
});

Deno.test("ServerCore.handle() refuses oversized messages and full queues per message", async () => {
  const { device } = await relay({ limits: { messageBytesMax: 200, queueLengthMax: 2 } });
  const alice = device();
  const bob = device();
  const answer = await alice.request({
    messages: [
      alice.message(bob.queue, "a"),
      alice.message(bob.queue, "x".repeat(300)),
      alice.message(bob.queue, "b"),
      alice.message(bob.queue, "c"),
      alice.message("not a lookup key", "d"),
    ],
  });
  assert.equal(answer.stored, 2);
  const byIndex = Object.fromEntries(answer.errors.map((e) => [e.messageIndex, e.code]));
  assert.deepEqual(byIndex, {
    2: ErrorCode.TOO_LARGE,
    4: ErrorCode.QUEUE_FULL,
    5: ErrorCode.MALFORMED,
  });
  const pulled = await bob.request({ pullRequests: [await bob.pull()] });
  assert.deepEqual(pulled.chat.map(text), ["a", "b"]);
});

Deno.test("ServerCore.handle() drops messages older than retentionMs", async () => {
  const { device, clock, core } = await relay({ limits: { retentionMs: 60_000 } });
  const alice = device();
  const bob = device();
  await alice.request({ messages: [alice.message(bob.queue, "old")] });
  clock.advance(30_000);
  await alice.request({ messages: [alice.message(bob.queue, "new")] });
  clock.advance(30_001);
  const pulled = await bob.request({ pullRequests: [await bob.pull()] });
  assert.deepEqual(pulled.chat.map(text), ["new"]);
  clock.advance(30_000);
  assert.equal(await core.sweep(), 1);
});

Deno.test("ServerCore.handle() keeps, fetches, guards and deletes invitations", async () => {
  const { device, clock } = await relay({ limits: { retentionMs: 100_000 } });
  const alice = device();
  const bob = device();
  const card = new Uint8Array([1, 2, 3]);
  const store = (code: string, extra = {}) =>
    alice.request({
      invitation: { action: InvitationAction.STORE, code, payload: card, ...extra },
    });
  const fetch = (code: string, password = "") =>
    bob.request({ invitation: { action: InvitationAction.FETCH, code, password } });

  const stored = await store("abc-123", {
    password: "pw",
    expiresAt: clock.now() + 10_000,
  });
  assert.deepEqual(stored.errors, []);
  assert.equal(stored.invitation?.code, "ABC-123");
  assert.equal((await store("ABC-123")).errors[0].code, ErrorCode.CONFLICT);
  assert.equal((await fetch("abc-123")).errors[0].code, ErrorCode.BAD_PASSWORD);
  assert.equal((await fetch("abc-123", "wrong")).errors[0].code, ErrorCode.BAD_PASSWORD);
  const fetched = await fetch("abc-123", "pw");
  assert.deepEqual(fetched.invitation?.payload, card);
  assert.equal((await fetch("nope")).errors[0].code, ErrorCode.NOT_FOUND);

  clock.advance(10_000);
  assert.equal((await fetch("abc-123", "pw")).errors[0].code, ErrorCode.NOT_FOUND, "expired");
  assert.deepEqual((await store("abc-123")).errors, [], "an expired code is free again");

  const deleted = await alice.request({
    invitation: { action: InvitationAction.DELETE, code: "abc-123" },
  });
  assert.deepEqual(deleted.errors, []);
  assert.equal((await fetch("abc-123")).errors[0].code, ErrorCode.NOT_FOUND);

  // No expiry asked: the relay's retention applies.
  await store("later");
  clock.advance(99_999);
  assert.deepEqual((await fetch("later")).errors, []);
  clock.advance(1);
  assert.equal((await fetch("later")).errors[0].code, ErrorCode.NOT_FOUND);
});

Deno.test("ServerCore.handle() long poll returns as soon as a message is stored", async () => {
  const { device, clock } = await relay();
  const alice = device();
  const bob = device();
  const poll = bob.request({ pullRequests: [await bob.pull()], timeoutMs: 20_000 });
  // Wait until the poll is asleep on the clock: then it is watching the queue.
  await clock.sleepers(1);
  assert.equal(clock.sleeping, 1);
  await alice.request({ messages: [alice.message(bob.queue, "wake")] });
  const answer = await poll;
  assert.deepEqual(answer.chat.map(text), ["wake"]);
  assert.equal(clock.sleeping, 0, "the poll's sleep was cancelled");
});

Deno.test("ServerCore.handle() long poll ends at min(timeout_ms, longPollMsMax)", async () => {
  const { device, clock } = await relay({ limits: { longPollMsMax: 5_000 } });
  const bob = device();
  let done = false;
  const poll = bob.request({ pullRequests: [await bob.pull()], timeoutMs: 600_000 }).finally(() => {
    done = true;
  });
  await clock.sleepers(1);
  clock.advance(4_999);
  await Promise.race([poll, Promise.resolve()]);
  assert.equal(done, false);
  assert.equal(clock.sleeping, 1);
  clock.advance(1);
  const answer = await poll;
  assert.deepEqual(answer.chat, []);
  assert.deepEqual(answer.errors, []);
});

Deno.test("ServerCore.handle() answers BUSY beyond longPollsOpenMax", async () => {
  const { device, clock } = await relay({ limits: { longPollsOpenMax: 1 } });
  const bob = device();
  const carol = device();
  const first = bob.request({ pullRequests: [await bob.pull()], timeoutMs: 1_000 });
  await clock.sleepers(1);
  const second = await carol.request({ pullRequests: [await carol.pull()], timeoutMs: 1_000 });
  assert.equal(second.errors[0].code, ErrorCode.BUSY);
  clock.advance(1_000);
  assert.deepEqual((await first).errors, []);
});

Deno.test("ServerCore.handle() ends a long poll when the request's signal aborts", async () => {
  const { device, clock, core } = await relay();
  const bob = device();
  const stop = new AbortController();
  const body = await bob.seal({ pullRequests: [await bob.pull()], timeoutMs: 10_000 });
  const poll = core.handle(body, stop.signal);
  await clock.sleepers(1);
  stop.abort();
  const answer = await openAnswer({
    server: core.card(),
    body: await poll,
    deviceEncryption: bob.encryption,
  });
  assert.deepEqual(answer.chat, []);
  assert.equal(core.stats().longPollsOpen, 0);
});

Deno.test("ServerCore.observe sees each unsealed request and each stored message", async () => {
  const { device, core } = await relay();
  const alice = device();
  const seen: string[] = [];
  core.observe = (event) => seen.push(event.kind);
  await alice.request({ messages: [alice.message(alice.queue, "x")] });
  assert.deepEqual(seen, ["request", "stored"]);
});

Deno.test("ServerCore.handle() answers random bytes without throwing and changes nothing", async () => {
  const { core, data } = await relay();
  const before = snapshot(data);
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
      const answer = await core.handle(bytes);
      assert.ok(answer instanceof Uint8Array);
    }),
    { numRuns: 500 },
  );
  assert.equal(snapshot(data), before);
});

Deno.test("ServerCore.handle() answers truncated and corrupted requests with MALFORMED, changing nothing", async () => {
  const { core, data, device } = await relay();
  const alice = device();
  const body = await alice.seal({
    messages: [alice.message(alice.queue, "x")],
    pullRequests: [await alice.pull()],
  });
  const before = snapshot(data);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.integer({ min: 0, max: body.length - 1 }).map((n) => body.slice(0, n)),
        fc.tuple(fc.integer({ min: 0, max: body.length - 1 }), fc.integer({ min: 1, max: 255 }))
          .map(([i, x]) => {
            const copy = body.slice();
            copy[i] ^= x;
            return copy;
          }),
      ),
      async (bad) => {
        // Some flips re-encode the same envelope (protobuf-es ignores a wrong wire type on a
        // bytes field): such a body is the original request, not a corrupted one.
        fc.pre(!sameEnvelope(bad, body));
        const answer = await core.handle(bad);
        if (answer.length === 0) return;
        const opened = await openAnswer({
          server: core.card(),
          body: answer,
          deviceEncryption: alice.encryption,
        }).catch(() => undefined);
        // A corrupted `from` seals the answer to someone else: unreadable, and fine.
        if (!opened) return;
        assert.equal(opened.errors.length, 1);
        assert.equal(opened.errors[0].code, ErrorCode.MALFORMED);
      },
    ),
    { numRuns: 300 },
  );
  assert.equal(snapshot(data), before);
});

Deno.test("ServerCore.handle() gives the empty answer to oversized bodies and envelopes without a key", async () => {
  const { core } = await relay({ limits: { requestBytesMax: 1024 } });
  assert.equal((await core.handle(new Uint8Array(4096))).length, 0);
  const noKey = encode(PackedServerMessageSchema, create(PackedServerMessageSchema, {}));
  assert.equal((await core.handle(noKey)).length, 0);
});

Deno.test("ServerCore.handle() answers a body over requestBytesMax with a sealed TOO_LARGE", async () => {
  const { core, device, data } = await relay({ limits: { requestBytesMax: 2048 } });
  const alice = device();
  const before = snapshot(data);
  const body = await alice.seal({
    messages: [
      alice.message(alice.queue, "x".repeat(1500)),
      alice.message(alice.queue, "y".repeat(800)),
    ],
  });
  assert.ok(body.length > 2048 && body.length <= 4096);
  const answer = await openAnswer({
    server: core.card(),
    body: await core.handle(body),
    deviceEncryption: alice.encryption,
  });
  assert.equal(answer.errors[0].code, ErrorCode.TOO_LARGE);
  assert.equal(snapshot(data), before);
});

Deno.test("ServerCore.handle() still serves good requests after 10,000 bad ones", async () => {
  const { core, device, data } = await relay();
  const alice = device();
  const bob = device();
  const random = new SeededRandom(77);
  const good = await alice.seal({ messages: [alice.message(bob.queue, "ok")] });
  for (let i = 0; i < 10_000; i++) {
    const kind = i % 3;
    const bad = kind === 0
      ? random.bytes(i % 512)
      : kind === 1
      ? good.slice(0, i % good.length)
      : (() => {
        const copy = good.slice();
        copy[i % copy.length] ^= 1 + (i % 255);
        return copy;
      })();
    await core.handle(bad);
  }
  assert.equal(data.queues.size, 0);
  const answer = await bob.request({ pullRequests: [await bob.pull()] });
  assert.deepEqual(answer.chat, []);
  const stored = await openAnswer({
    server: core.card(),
    body: await core.handle(good),
    deviceEncryption: alice.encryption,
  });
  assert.equal(stored.stored, 1);
  assert.deepEqual((await bob.request({ pullRequests: [await bob.pull()] })).chat.map(text), [
    "ok",
  ]);
});

Deno.test("ServerCore.handle() overwrites client-set delivery fields", async () => {
  const { device } = await relay();
  const alice = device();
  const m = alice.message(alice.queue, "x");
  m.serverDeliveryUuid = "forged";
  m.serverReceivedMs = 1;
  await alice.request({ messages: [m] });
  const [got] = (await alice.request({ pullRequests: [await alice.pull()] })).chat;
  assert.notEqual(got.serverDeliveryUuid, "forged");
  assert.notEqual(got.serverReceivedMs, 1);
  // The stored bytes decode on their own.
  assert.equal(
    decode(PackedUserMessageSchema, encode(PackedUserMessageSchema, got)).destination,
    alice.queue,
  );
  assert.ok(create(ToServerMessageSchema, {}));
});

function sameEnvelope(a: Uint8Array, b: Uint8Array): boolean {
  try {
    const x = decode(PackedServerMessageSchema, a);
    const y = decode(PackedServerMessageSchema, b);
    return encode(PackedServerMessageSchema, x).join() ===
      encode(PackedServerMessageSchema, y).join();
  } catch {
    return false;
  }
}

import assert from "node:assert/strict";
import fc from "fast-check";
import { create } from "@bufbuild/protobuf";
import { SeededRandom } from "../crypto/mod.ts";
import { BadCiphertext, Malformed } from "../kernel/errors.ts";
import { decode, encode } from "../proto/codec.ts";
import type { Random } from "../crypto/mod.ts";
import {
  ErrorCode,
  type FromServerMessage,
  FromServerMessageSchema,
  MailboxAction,
  MailboxRequestSchema,
  PackedServerMessageSchema,
  PackedUserMessageSchema,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { ServerCore, type ServerCoreOptions } from "./core.ts";
import { MemoryBackend, MemoryData } from "./memory.ts";
import type { StoredMessage } from "./backend.ts";
import { ManualClock, TestDevice, text } from "../tests/support/relay.ts";
import type { ServerLimitsInit } from "./limits.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";

/** A mailbox step as a request carries it. */
type MailboxStep = MessageInitShape<typeof MailboxRequestSchema>;

interface Relay {
  core: ServerCore;
  clock: ManualClock;
  data: MemoryData;
  /** A device whose requests come from client address `client`. */
  device(client?: string): TestDevice;
}

async function relay(
  options: {
    limits?: Partial<ServerLimitsInit>;
    data?: MemoryData;
    seed?: number;
    random?: (seeded: Random) => Random;
  } = {},
): Promise<Relay> {
  const clock = new ManualClock();
  const data = options.data ?? new MemoryData();
  const random = new SeededRandom(options.seed ?? 1);
  const coreOptions: ServerCoreOptions = {
    backend: new MemoryBackend({ data }),
    clock,
    random: options.random?.(random.fork("relay")) ?? random.fork("relay"),
    limits: options.limits,
  };
  const core = await ServerCore.create(coreOptions);
  let devices = 0;
  return {
    core,
    clock,
    data,
    device: (client?: string) =>
      new TestDevice(
        random.fork(`device-${devices++}`),
        core.card(),
        (body) => core.handle(body, { client }),
        () => clock.now(),
      ),
  };
}

/** A comparable snapshot of everything a memory relay stores. */
function snapshot(data: MemoryData): string {
  return JSON.stringify({
    queues: [...data.queues].map(([q, m]) => [q, [...m.keys()]]),
    signatures: [...data.signatures],
    mailboxes: [...data.mailboxes.keys()],
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

Deno.test("ServerCore.handle() refuses a pull signed for another request, for that key alone", async () => {
  const { device } = await relay();
  const bob = device();
  const carol = device();
  const pull = await bob.pull();
  const first = await bob.request({ pullRequests: [pull] });
  assert.deepEqual(first.errors, []);
  const replay = await bob.request({ pullRequests: [pull, await bob.pull(carol.lookup)] });
  assert.equal(replay.errors.length, 1);
  assert.equal(replay.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.equal(replay.errors[0].lookupKey, bob.queue);
  assert.match(replay.errors[0].detail, /does not verify/);
});

Deno.test("ServerCore.handle() refuses the pulls of a whole request sent again", async () => {
  const { core, device } = await relay();
  const bob = device();
  const { body, exchange } = await bob.seal({ uuid: "once", pullRequests: [await bob.pull()] });
  assert.deepEqual(exchange.open(await core.handle(body)).errors, []);
  const again = exchange.open(await core.handle(body));
  assert.equal(again.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.match(again.errors[0].detail, /used before/);
});

Deno.test("ServerCore.handle() refuses replays across a restart over the same data", async () => {
  const data = new MemoryData();
  const first = await relay({ data });
  const bob = first.device();
  const { body, exchange } = await bob.seal({ pullRequests: [await bob.pull()] });
  assert.deepEqual(exchange.open(await first.core.handle(body)).errors, []);
  const second = await relay({ data, seed: 2 });
  assert.equal(second.core.card().uid, first.core.card().uid, "keys persist in the backend");
  const answer = exchange.open(await second.core.handle(body));
  assert.equal(answer.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
});

Deno.test("ServerCore.handle() refuses stale and future pull timestamps", async () => {
  const { device, clock } = await relay();
  const bob = device();
  for (const offset of [-5 * 60_000 - 1, 5 * 60_000 + 1]) {
    const pull = await bob.pull(bob.lookup, clock.now() + offset);
    const answer = await bob.request({ pullRequests: [pull] });
    assert.equal(answer.errors[0].code, ErrorCode.STALE);
  }
  const edge = await bob.pull(bob.lookup, clock.now() - 300_000);
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
  const { body, exchange } = await bob.seal({
    pullRequests: [await bob.pull()],
    timeoutMs: 10_000,
  });
  const poll = core.handle(body, { signal: stop.signal });
  await clock.sleepers(1);
  stop.abort();
  const answer = exchange.open(await poll);
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
  const { body, exchange } = await alice.seal({
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
        // A corrupted `from` gives other keys: the answer does not open, and that is fine. A
        // corrupted payload does not open at the relay: MALFORMED, under this request's keys.
        assert.throws(
          () => exchange.open(answer),
          (e) =>
            e instanceof BadCiphertext ||
            (e instanceof Malformed && /could not read .*MALFORMED/.test(e.message)),
        );
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
  const { body, exchange } = await alice.seal({
    uuid: "big",
    messages: [
      alice.message(alice.queue, "x".repeat(1500)),
      alice.message(alice.queue, "y".repeat(800)),
    ],
  });
  assert.ok(body.length > 2048 && body.length <= 4096);
  const answer = exchange.open(await core.handle(body));
  assert.equal(answer.uuidAck, "big");
  assert.equal(answer.errors[0].code, ErrorCode.TOO_LARGE);
  assert.equal(snapshot(data), before);
});

Deno.test("ServerCore.handle() still serves good requests after 10,000 bad ones", async () => {
  const { core, device, data } = await relay();
  const alice = device();
  const bob = device();
  const random = new SeededRandom(77);
  const { body: good, exchange } = await alice.seal({
    messages: [alice.message(bob.queue, "ok")],
  });
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
    // A flip that re-encodes the same envelope (see sameEnvelope) is the good request itself.
    if (sameEnvelope(bad, good)) continue;
    await core.handle(bad);
  }
  assert.equal(data.queues.size, 0);
  const answer = await bob.request({ pullRequests: [await bob.pull()] });
  assert.deepEqual(answer.chat, []);
  const stored = exchange.open(await core.handle(good));
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

const SIDE_A = new Uint8Array(16).fill(0xa);
const SIDE_B = new Uint8Array(16).fill(0xb);
const SIDE_C = new Uint8Array(16).fill(0xc);
const utf8 = (text: string) => new TextEncoder().encode(text);

/** Sends one mailbox step from `device`. */
function step(
  device: TestDevice,
  mailbox: MailboxStep,
  extra: { timeoutMs?: number; uuid?: string } = {},
): Promise<FromServerMessage> {
  return device.request({ uuid: extra.uuid, timeoutMs: extra.timeoutMs, mailbox });
}

/** The texts of an answer's mailbox posts as "index:text". */
function postTexts(answer: FromServerMessage): string[] {
  return (answer.mailbox?.posts ?? []).map((p) => `${p.index}:${new TextDecoder().decode(p.body)}`);
}

/** The codes of an answer's errors. */
const codes = (answer: FromServerMessage) => answer.errors.map((e) => e.code);

Deno.test("ServerCore.handle() allocates, exchanges and closes a mailbox", async () => {
  const { device, clock, core } = await relay();
  const limits = core.card().limits!;
  assert.equal(limits.mailboxMsMax, 600_000);
  assert.equal(limits.mailboxPostsMax, 8);
  assert.equal(limits.mailboxLookupsPerMinuteMax, 10);
  const seen: string[] = [];
  core.observe = (e) => e.kind === "mailbox" && seen.push(new TextDecoder().decode(e.bytes));
  const alice = device("10.0.0.1");
  const bob = device("10.0.0.2");
  const allocated = await step(alice, {
    action: MailboxAction.ALLOCATE,
    side: SIDE_A,
    post: utf8("a0"),
  });
  assert.deepEqual(allocated.errors, []);
  const nameplate = allocated.mailbox!.nameplate;
  assert.match(nameplate, /^[0-9A-HJKMNP-TV-Z]{4}$/);
  assert.equal(allocated.mailbox!.expiresAt, clock.now() + 600_000, "the default life");

  // Typed by hand: case and spaces do not matter.
  const typed = ` ${nameplate.toLowerCase()} `;
  const joined = await step(bob, {
    action: MailboxAction.EXCHANGE,
    nameplate: typed,
    side: SIDE_B,
    post: utf8("b1"),
  });
  assert.deepEqual(joined.errors, []);
  assert.equal(joined.mailbox?.nameplate, nameplate);
  assert.deepEqual(postTexts(joined), ["0:a0"]);
  assert.equal(joined.mailbox?.expiresAt, allocated.mailbox!.expiresAt);
  const exchange = (device: TestDevice, side: Uint8Array, after: number, post?: string) =>
    step(device, {
      action: MailboxAction.EXCHANGE,
      nameplate,
      side,
      after,
      post: post === undefined ? undefined : utf8(post),
    });
  assert.deepEqual(postTexts(await exchange(alice, SIDE_A, 1, "a2")), ["1:b1"]);
  assert.deepEqual(postTexts(await exchange(bob, SIDE_B, 1)), ["2:a2"]);
  assert.deepEqual(seen, ["a0", "b1", "a2"], "observe sees each stored post");

  const closed = await step(alice, { action: MailboxAction.CLOSE, nameplate, side: SIDE_A });
  assert.deepEqual(closed.errors, []);
  assert.equal(closed.mailbox?.nameplate, nameplate);
  assert.deepEqual(codes(await exchange(bob, SIDE_B, 0)), [ErrorCode.NOT_FOUND], "gone");

  const short = await step(alice, {
    action: MailboxAction.ALLOCATE,
    side: SIDE_A,
    expiresMs: 5_000,
  });
  assert.equal(short.mailbox?.expiresAt, clock.now() + 5_000, "a shorter life asked for");
  const long = await step(alice, {
    action: MailboxAction.ALLOCATE,
    side: SIDE_A,
    expiresMs: 1e12,
  });
  assert.equal(long.mailbox?.expiresAt, clock.now() + 600_000, "bounded by mailboxMsMax");
});

Deno.test("ServerCore.handle() answers an unknown, expired, closed or taken mailbox identically", async () => {
  const { device, clock } = await relay({ limits: { mailboxLookupsPerMinuteMax: 100 } });
  const alice = device();
  const allocate = async () =>
    (await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A, expiresMs: 1_000 }))
      .mailbox!.nameplate;
  const expired = await allocate();
  clock.advance(1_000);
  const closed = await allocate();
  await step(alice, { action: MailboxAction.CLOSE, nameplate: closed, side: SIDE_A });
  const taken = await allocate();
  await step(alice, { action: MailboxAction.EXCHANGE, nameplate: taken, side: SIDE_B });
  const unknown = ["0000", "ZZZZ"].find((n) => ![expired, closed, taken].includes(n))!;
  const answers: string[] = [];
  for (
    const [nameplate, side] of [
      [unknown, SIDE_C],
      [expired, SIDE_A],
      [closed, SIDE_A],
      [taken, SIDE_C],
    ] as const
  ) {
    const answer = await step(alice, {
      action: MailboxAction.EXCHANGE,
      nameplate,
      side,
      post: utf8("x"),
    }, { uuid: "same" });
    assert.deepEqual(codes(answer), [ErrorCode.NOT_FOUND]);
    assert.equal(answer.errors[0].detail, "no such mailbox");
    answer.serverTime = 0;
    answers.push(encode(FromServerMessageSchema, answer).join());
  }
  assert.equal(new Set(answers).size, 1, "byte-identical answers");
  const closes: string[] = [];
  for (const nameplate of [unknown, expired, closed, taken]) {
    const answer = await step(alice, {
      action: MailboxAction.CLOSE,
      nameplate,
      side: SIDE_C,
    }, { uuid: "same" });
    answer.serverTime = 0;
    closes.push(encode(FromServerMessageSchema, answer).join());
  }
  assert.equal(new Set(closes).size, 1, "closes too");
  assert.deepEqual(closes[0], answers[0], "and a close answers like an exchange");
});

Deno.test("ServerCore.handle() limits mailbox look-ups per client address and minute", async () => {
  const { device, clock } = await relay();
  const alice = device("10.0.0.1");
  const mallory = device("10.6.6.6");
  const carol = device("10.0.0.3");
  const live = (await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A }))
    .mailbox!.nameplate;
  const guess = (who: TestDevice, nameplate: string, side = SIDE_C) =>
    step(who, { action: MailboxAction.EXCHANGE, nameplate, side });
  const misses = ["0000", "1111", "2222", "3333", "4444", "5555", "6666", "7777", "8888", "9999"]
    .filter((n) => n !== live);
  for (const nameplate of misses.slice(0, 10)) {
    assert.deepEqual(codes(await guess(mallory, nameplate)), [ErrorCode.NOT_FOUND]);
  }
  if (misses.length < 10) await guess(mallory, "AAAA");
  const windowEndMs = (Math.floor(clock.now() / 60_000) + 1) * 60_000;
  clock.advance(1);
  const refused = await guess(mallory, live);
  assert.deepEqual(codes(refused), [ErrorCode.BUSY], "the 11th look-up");
  assert.equal(refused.errors[0].retryAfterMs, windowEndMs - clock.now());
  assert.ok(refused.errors[0].retryAfterMs > 0);
  assert.equal(refused.mailbox, undefined);
  // The refused claim did not reach the backend: the second place is still free.
  const claimed = await guess(carol, live, SIDE_B);
  assert.deepEqual(claimed.errors, [], "another client is unaffected");
  assert.deepEqual(codes(await guess(mallory, "AAAA")), [ErrorCode.BUSY]);
  clock.advance(windowEndMs - clock.now());
  assert.deepEqual(codes(await guess(mallory, "AAAA")), [ErrorCode.NOT_FOUND], "a new window");
});

Deno.test("ServerCore.handle(): a code scanner past the look-up limit finds nothing; with no limit it claims a live mailbox", async () => {
  for (const weakened of [true, false]) {
    const limits = weakened ? { mailboxLookupsPerMinuteMax: 1_000_000 } : {};
    const { device } = await relay({ limits });
    const alice = device("10.0.0.1");
    const scanner = device("10.6.6.6");
    const live = (await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A }))
      .mailbox!.nameplate;
    // The scanner walks nameplates; the live one comes 20th.
    const walk = Array.from({ length: 19 }, (_, i) => `Z${String(i).padStart(3, "0")}`)
      .filter((n) => n !== live).slice(0, 19);
    let found = false;
    for (const nameplate of [...walk, live]) {
      const answer = await step(scanner, {
        action: MailboxAction.EXCHANGE,
        nameplate,
        side: SIDE_C,
      });
      if (answer.errors.length === 0) found = true;
    }
    assert.equal(found, weakened, weakened ? "unlimited: the scan claims it" : "limited: never");
  }
});

Deno.test("ServerCore.handle() never counts a member's own mailbox steps as look-ups", async () => {
  const { device } = await relay({ limits: { mailboxLookupsPerMinuteMax: 2 } });
  const alice = device("10.0.0.1");
  const bob = device("10.0.0.2");
  const nameplate = (await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A }))
    .mailbox!.nameplate;
  const own = (who: TestDevice, side: Uint8Array, post: string) =>
    step(who, { action: MailboxAction.EXCHANGE, nameplate, side, post: utf8(post) });
  assert.deepEqual((await own(bob, SIDE_B, "join")).errors, [], "a claim counts once");
  for (let i = 0; i < 6; i++) {
    assert.deepEqual((await own(alice, SIDE_A, `a${i}`)).errors.map((e) => e.code), []);
    if (i < 1) assert.deepEqual((await own(bob, SIDE_B, `b${i}`)).errors, []);
  }
  const mailboxPostsMax = 8;
  assert.deepEqual(
    codes(await own(alice, SIDE_A, "over")),
    [ErrorCode.QUEUE_FULL],
    `${mailboxPostsMax} posts at most`,
  );
  const closed = await step(alice, { action: MailboxAction.CLOSE, nameplate, side: SIDE_A });
  assert.deepEqual(closed.errors, []);
  // Bob used one of his two look-ups (the claim); Alice none.
  const miss = (who: TestDevice) =>
    step(who, { action: MailboxAction.EXCHANGE, nameplate, side: SIDE_C });
  assert.deepEqual(codes(await miss(bob)), [ErrorCode.NOT_FOUND]);
  assert.deepEqual(codes(await miss(bob)), [ErrorCode.BUSY]);
  assert.deepEqual(codes(await miss(alice)), [ErrorCode.NOT_FOUND]);
  assert.deepEqual(codes(await miss(alice)), [ErrorCode.NOT_FOUND]);
  assert.deepEqual(codes(await miss(alice)), [ErrorCode.BUSY]);
});

Deno.test("ServerCore.handle() refuses mailbox posts beyond mailboxPostsMax and still answers", async () => {
  const { device } = await relay({ limits: { mailboxPostsMax: 2 } });
  const alice = device();
  const bob = device();
  const nameplate = (await step(alice, {
    action: MailboxAction.ALLOCATE,
    side: SIDE_A,
    post: utf8("a0"),
  })).mailbox!.nameplate;
  const post = (who: TestDevice, side: Uint8Array, text: string) =>
    step(who, { action: MailboxAction.EXCHANGE, nameplate, side, post: utf8(text) });
  assert.deepEqual((await post(bob, SIDE_B, "b1")).errors, []);
  const full = await post(bob, SIDE_B, "b2");
  assert.deepEqual(codes(full), [ErrorCode.QUEUE_FULL]);
  assert.deepEqual(postTexts(full), ["0:a0"], "posts are still answered");
  assert.deepEqual(postTexts(await post(alice, SIDE_A, "a3")), ["1:b1"], "b2 was not kept");
});

Deno.test("ServerCore.handle() long-polls a mailbox exchange until the other side posts", async () => {
  const { device, clock, core } = await relay();
  const alice = device();
  const bob = device();
  const nameplate = (await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A }))
    .mailbox!.nameplate;
  const poll = step(bob, { action: MailboxAction.EXCHANGE, nameplate, side: SIDE_B }, {
    timeoutMs: 20_000,
  });
  await clock.sleepers(1);
  assert.equal(core.stats().longPollsOpen, 1);
  await step(alice, { action: MailboxAction.EXCHANGE, nameplate, side: SIDE_A, post: utf8("hi") });
  const answer = await poll;
  assert.deepEqual(answer.errors, []);
  assert.deepEqual(postTexts(answer), ["0:hi"]);
  assert.equal(clock.sleeping, 0, "the poll's sleep was cancelled");

  // Closed by the other member while waiting: no such mailbox.
  const waiting = step(bob, {
    action: MailboxAction.EXCHANGE,
    nameplate,
    side: SIDE_B,
    after: 1,
  }, { timeoutMs: 20_000 });
  await clock.sleepers(1);
  await step(alice, { action: MailboxAction.CLOSE, nameplate, side: SIDE_A });
  clock.advance(20_000);
  assert.deepEqual(codes(await waiting), [ErrorCode.NOT_FOUND]);
  assert.equal(core.stats().longPollsOpen, 0);
});

Deno.test("ServerCore.handle() refuses oversized mailbox posts with TOO_LARGE", async () => {
  const { device, data } = await relay({ limits: { messageBytesMax: 200 } });
  const alice = device();
  const big = new Uint8Array(201);
  const allocated = await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A, post: big });
  assert.deepEqual(codes(allocated), [ErrorCode.TOO_LARGE]);
  assert.equal(allocated.mailbox, undefined);
  assert.equal(data.mailboxes.size, 0);
  const nameplate = (await step(alice, {
    action: MailboxAction.ALLOCATE,
    side: SIDE_A,
    post: new Uint8Array(200),
  })).mailbox!.nameplate;
  const refused = await step(alice, {
    action: MailboxAction.EXCHANGE,
    nameplate,
    side: SIDE_B,
    post: big,
  });
  assert.deepEqual(codes(refused), [ErrorCode.TOO_LARGE]);
  assert.equal(data.mailboxes.get(nameplate)?.sides.length, 1, "nothing was applied");
});

Deno.test("ServerCore.handle() answers malformed mailbox steps with MALFORMED, not counting them", async () => {
  const { device, data } = await relay({ limits: { mailboxLookupsPerMinuteMax: 1 } });
  const alice = device();
  const nameplate = (await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A }))
    .mailbox!.nameplate;
  const bad: MailboxStep[] = [
    { action: MailboxAction.ALLOCATE, side: new Uint8Array(15) },
    { action: MailboxAction.EXCHANGE, nameplate, side: new Uint8Array(17) },
    { action: MailboxAction.EXCHANGE, nameplate, side: new Uint8Array(0) },
    { action: MailboxAction.CLOSE, nameplate, side: SIDE_A.subarray(1) },
    { action: MailboxAction.EXCHANGE, nameplate: "ABC", side: SIDE_B },
    { action: MailboxAction.EXCHANGE, nameplate: "ABCU", side: SIDE_B },
    { action: MailboxAction.EXCHANGE, nameplate: "", side: SIDE_B },
    { action: 9 as MailboxAction, nameplate, side: SIDE_B },
  ];
  for (const mailbox of bad) {
    const answer = await step(alice, mailbox);
    assert.deepEqual(codes(answer), [ErrorCode.MALFORMED], JSON.stringify(mailbox));
    assert.equal(answer.errors[0].lookupKey, "", "scoped to the request");
    assert.equal(answer.errors[0].messageIndex, 0);
    assert.equal(answer.mailbox, undefined);
  }
  assert.equal(data.mailboxes.get(nameplate)?.sides.length, 1, "nothing was applied");
  const joined = await step(alice, { action: MailboxAction.EXCHANGE, nameplate, side: SIDE_B });
  assert.deepEqual(joined.errors, [], "no malformed step used the one look-up");
});

Deno.test("ServerCore.handle() answers BUSY when no free nameplate turns up", async () => {
  // Every nameplate draw is "0000": the second allocation finds it taken each time.
  const { device } = await relay({
    random: (inner) => ({ bytes: (n) => (n === 4 ? new Uint8Array(4) : inner.bytes(n)) }),
  });
  const alice = device();
  const first = await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_A });
  assert.equal(first.mailbox?.nameplate, "0000");
  const second = await step(alice, { action: MailboxAction.ALLOCATE, side: SIDE_B });
  assert.deepEqual(codes(second), [ErrorCode.BUSY]);
  assert.equal(second.mailbox, undefined);
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

/** Whether `request` long-polls (the relay's clock gets one more sleeper) or is answered first. */
/** A long poll of `who`'s own queue. */
async function longPoll(who: TestDevice, timeoutMs = 30_000): Promise<FromServerMessage> {
  return await who.request({ pullRequests: [await who.pull()], timeoutMs });
}

async function heldOrAnswered(
  clock: ManualClock,
  request: Promise<FromServerMessage>,
): Promise<"held" | FromServerMessage> {
  return await Promise.race([
    request,
    clock.sleepers(clock.sleeping + 1).then(() => "held" as const),
  ]);
}

Deno.test("ServerCore.handle() answers BUSY at once beyond longPollsPerClientMax for one address", async () => {
  const { device, clock, core } = await relay();
  const perClient = core.limits.longPollsPerClientMax;
  assert.equal(perClient, 8);
  assert.equal(core.card().limits!.longPollsPerClientMax, 8);
  const poll = (who: TestDevice) => longPoll(who, 20_000);
  // The first of this address's long polls can be ended by its signal (its client went away).
  const first = device("10.0.0.1");
  const stop = new AbortController();
  const firstPoll = first.seal({ pullRequests: [await first.pull()], timeoutMs: 20_000 })
    .then(({ body }) => core.handle(body, { client: "10.0.0.1", signal: stop.signal }));
  await clock.sleepers(1);
  const held: Promise<FromServerMessage>[] = [];
  for (let i = 1; i < perClient; i++) {
    const request = poll(device("10.0.0.1"));
    assert.equal(await heldOrAnswered(clock, request), "held", `long poll ${i + 1}`);
    held.push(request);
  }
  assert.equal(core.stats().longPollsOpen, perClient);

  const refused = await poll(device("10.0.0.1"));
  assert.deepEqual(codes(refused), [ErrorCode.BUSY], "answered at once, not held");
  assert.ok(refused.errors[0].retryAfterMs > 0);
  assert.equal(refused.errors[0].lookupKey, "", "scoped to the request");
  assert.equal(core.stats().longPollsOpen, perClient, "took no global slot");

  const other = poll(device("10.0.0.2"));
  assert.equal(await heldOrAnswered(clock, other), "held", "another address still long-polls");
  held.push(other);

  stop.abort();
  await firstPoll;
  assert.equal(core.stats().longPollsOpen, perClient);
  const freed = poll(device("10.0.0.1"));
  assert.equal(await heldOrAnswered(clock, freed), "held", "an ended poll frees its slot");
  held.push(freed);

  clock.advance(20_000);
  for (const answer of await Promise.all(held)) assert.deepEqual(answer.errors, []);
  assert.equal(core.stats().longPollsOpen, 0);
});

Deno.test("ServerCore.handle() bounds long-poll slot exhaustion from one address", async () => {
  const longPollsOpenMax = 12;
  const { device, clock, core } = await relay({
    limits: { longPollsOpenMax, requestsPerSecondPerClientMax: 10_000 },
  });
  const perClient = core.limits.longPollsPerClientMax;
  const mallory = device("10.6.6.6");
  const polls: Promise<FromServerMessage>[] = [];
  let busy = 0;
  for (let i = 0; i < 1_000; i++) {
    const request = longPoll(mallory);
    const outcome = await heldOrAnswered(clock, request);
    if (outcome === "held") polls.push(request);
    else if (codes(outcome).join() === String(ErrorCode.BUSY)) busy++;
  }
  assert.equal(polls.length, perClient, `at most longPollsPerClientMax ${perClient} held`);
  assert.equal(busy, 1_000 - perClient);
  assert.equal(core.stats().longPollsOpen, perClient);
  // The rest of the relay's slots are still there for everybody else.
  for (let i = 0; i < longPollsOpenMax - perClient; i++) {
    const carol = device(`10.0.1.${i}`);
    const request = longPoll(carol);
    assert.equal(await heldOrAnswered(clock, request), "held", `others' long poll ${i + 1}`);
    polls.push(request);
  }
  const dave = device("10.0.2.1");
  const full = await longPoll(dave);
  assert.deepEqual(codes(full), [ErrorCode.BUSY], "longPollsOpenMax still holds");
  clock.advance(30_000);
  await Promise.all(polls);
  assert.equal(core.stats().longPollsOpen, 0);
});

Deno.test("ServerCore.handle() answers a request that stores messages at once: no long poll to refuse", async () => {
  const { device, clock, data } = await relay({ limits: { longPollsPerClientMax: 1 } });
  const alice = device("10.0.0.1");
  const bob = device("10.0.0.2");
  const held = longPoll(device("10.0.0.1"));
  assert.equal(await heldOrAnswered(clock, held), "held");
  // Alice's address holds its one long poll: a store asking to long-poll her empty queue too.
  const answer = await alice.request({
    messages: [alice.message(bob.queue, "once")],
    pullRequests: [await alice.pull()],
    timeoutMs: 20_000,
  });
  assert.equal(answer.stored, 1);
  assert.deepEqual(codes(answer), [], "no refusal of the whole request: its message is stored");
  assert.equal(data.queues.get(bob.queue)?.size, 1);
  // With a slot free, it is not held either: its answer says the message is stored.
  const carol = device("10.0.0.3");
  const free = carol.request({
    messages: [carol.message(bob.queue, "twice")],
    pullRequests: [await carol.pull()],
    timeoutMs: 20_000,
  });
  const answered = await heldOrAnswered(clock, free);
  assert.notEqual(answered, "held");
  assert.equal((answered as FromServerMessage).stored, 1);
  clock.advance(30_000);
  await held;
});

Deno.test("ServerCore.handle() keeps a request's stored messages when its pull then fails", async () => {
  class FailingReads extends MemoryBackend {
    override readQueues(): Promise<StoredMessage[]> {
      return Promise.reject(new Error("disk on fire"));
    }
  }
  const data = new MemoryData();
  const clock = new ManualClock();
  const random = new SeededRandom(7);
  const core = await ServerCore.create({
    backend: new FailingReads({ data }),
    clock,
    random: random.fork("relay"),
  });
  const device = (name: string) =>
    new TestDevice(random.fork(name), core.card(), (body) => core.handle(body), () => clock.now());
  const alice = device("alice");
  const bob = device("bob");
  const answer = await alice.request({
    messages: [alice.message(bob.queue, "kept")],
    pullRequests: [await alice.pull()],
  });
  assert.equal(answer.stored, 1);
  assert.deepEqual(
    answer.errors.map((e) => [e.code, e.lookupKey]),
    [[ErrorCode.BUSY, alice.queue]],
    "the failure is the pull's, not a refusal of the whole request",
  );
  assert.match(answer.errors[0].detail, /disk on fire/);
  assert.equal(data.queues.get(bob.queue)?.size, 1);
  // A request that stored nothing is refused whole, as before.
  const pull = await bob.request({ pullRequests: [await bob.pull()] });
  assert.deepEqual(pull.errors.map((e) => [e.code, e.lookupKey]), [[ErrorCode.BUSY, ""]]);
});

Deno.test("ServerCore.handle() limits requests per client address and second", async () => {
  const { device, clock, core, data } = await relay({
    limits: { requestsPerSecondPerClientMax: 3 },
  });
  assert.equal(core.card().limits!.requestsPerSecondPerClientMax, 3);
  const alice = device("10.0.0.1");
  const bob = device("10.0.0.2");
  const seen: string[] = [];
  core.observe = (event) => seen.push(event.kind);
  clock.advance(1_000 - (clock.now() % 1_000)); // the start of a second
  for (let i = 0; i < 3; i++) {
    assert.deepEqual((await alice.request({ uuid: `a${i}` })).errors, [], `request ${i + 1}`);
  }
  clock.advance(400);
  seen.length = 0;
  const refused = await alice.request({
    uuid: "a3",
    messages: [alice.message(bob.queue, "too many")],
  });
  assert.deepEqual(codes(refused), [ErrorCode.BUSY]);
  assert.equal(refused.errors[0].retryAfterMs, 600, "until the second ends");
  assert.equal(refused.stored, 0);
  assert.equal(data.queues.size, 0, "nothing reached storage");
  assert.deepEqual(seen, [], "the request was not even opened");
  assert.deepEqual((await bob.request({ uuid: "b0" })).errors, [], "another address");
  assert.deepEqual((await alice.request({})).errors.map((e) => e.code), [ErrorCode.BUSY]);
  clock.advance(600);
  const next = await alice.request({ uuid: "a4", messages: [alice.message(bob.queue, "ok")] });
  assert.deepEqual(next.errors, [], "the next second starts afresh");
  assert.equal(next.stored, 1);
});

Deno.test("ServerCore.handle() refuses a mailbox step beside anything else, applying nothing", async () => {
  const { device, data } = await relay();
  const alice = device();
  const bob = device();
  const allocate = { action: MailboxAction.ALLOCATE, side: SIDE_A, post: utf8("a0") };
  const before = snapshot(data);
  const mailbox = allocate;
  const beside: [string, () => Promise<FromServerMessage>][] = [
    ["messages", () => alice.request({ mailbox, messages: [alice.message(bob.queue, "m")] })],
    ["pulls", async () => alice.request({ mailbox, pullRequests: [await alice.pull()] })],
    ["acks", () => alice.request({ mailbox, acks: ["00000000-0000-4000-8000-000000000000"] })],
    ["a session request", () => alice.request({ mailbox, openSession: true })],
  ];
  for (const [what, request] of beside) {
    const answer = await request();
    assert.deepEqual(codes(answer), [ErrorCode.MALFORMED], what);
    assert.match(answer.errors[0].detail, /a mailbox step travels alone/, what);
    assert.equal(answer.errors[0].lookupKey, "", `${what}: the request's error`);
    assert.equal(answer.stored, 0, what);
    assert.equal(answer.mailbox, undefined, what);
    assert.equal(answer.session, undefined, what);
  }
  assert.equal(snapshot(data), before, "nothing stored, no mailbox made, no signature used");
  // Alone, the same step is served.
  assert.deepEqual(codes(await step(alice, allocate)), []);
});

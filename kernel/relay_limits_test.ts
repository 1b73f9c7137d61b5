import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { decode, encode } from "../proto/codec.ts";
import {
  DbMessageSchema,
  OutboxEntrySchema,
  PeerRecordSchema,
  ServerCardSchema,
  ServerLimitsSchema,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { CHAT_API, type ChatApi } from "../plugins/chat/mod.ts";
import { type KernelObservation, QUEUE_FULL_ATTEMPTS_MAX } from "./kernel.ts";
import { MessageTooLarge, RelayRefused } from "./errors.ts";
import { userMessageBytesMax } from "./pipeline.ts";
import type { PluginHost, PluginInput } from "./plugin.ts";
import { chatPlugin, newUserMessage } from "../plugins/chat/mod.ts";
import { dedupPlugin } from "../plugins/dedup/mod.ts";
import { type TestDevice, TestWorld } from "../tests/support/world.ts";
import type { ServerLimitsInit } from "../server/mod.ts";

function chat(device: TestDevice): ChatApi {
  return device.kernel.api(CHAT_API);
}

/** A hub with `contacts` contacts, each paired out of band and settled. */
async function hubWith(
  contacts: number,
  limits: Partial<ServerLimitsInit>,
  options: { observe?: (o: KernelObservation) => void } = {},
): Promise<{ world: TestWorld; hub: TestDevice; others: TestDevice[]; uids: string[] }> {
  const world = await TestWorld.create(7, { limits });
  const hub = await world.device("hub", {
    nickname: "hub",
    kernel: { observe: options.observe },
  });
  const others: TestDevice[] = [];
  const uids: string[] = [];
  for (let i = 0; i < contacts; i++) {
    const other = await world.device(`c${i}`, { nickname: `c${i}` });
    const ticket = await hub.kernel.createInvitation();
    uids.push(await other.kernel.acceptInvitation(ticket.bytes));
    others.push(other);
  }
  await world.settle([hub, ...others]);
  return { world, hub, others, uids };
}

/** How many messages wait in the relay's queues of `device`. */
async function waiting(world: TestWorld, device: TestDevice): Promise<number> {
  const queues = device.kernel.pullKeys().map((k) => k.lookupKey);
  const messages = await world.core.backend.readQueues(queues, {
    nowMs: world.clock.now(),
    retentionMs: world.core.limits.retentionMs,
    messagesMax: 100_000,
  });
  return messages.length;
}

for (const contacts of [16, 17]) {
  Deno.test(`Kernel polls ${contacts} contacts on a relay taking 16 pulls a request: every message arrives, acked equals delivered`, async () => {
    const { world, hub, others, uids } = await hubWith(contacts, { pullRequestsMax: 16 });
    for (const [i, other] of others.entries()) await chat(other).send(uids[i], `hello from c${i}`);
    await world.settle([hub, ...others]);
    // The last poll's acks ride on the next poll: one more settles them.
    await hub.kernel.pollOnce();
    for (const uid of uids) {
      const texts = (await hub.kernel.messages(uid)).map((m) => m.message!.data);
      assert.equal(texts.filter((t) => t.startsWith("hello from c")).length, 1, uid);
    }
    const stats = world.core.stats();
    assert.equal(stats.acked, stats.delivered);
    assert.equal(await waiting(world, hub), 0);
    assert.deepEqual(
      hub.kernel.relayHealth().map((h) => [h.request, h.state, h.refusals]),
      [["poll", "ok", 0], ["send", "ok", 0]],
    );
  });
}

Deno.test("Kernel splits pulls to a relay whose card overstates its limit: refused, retried smaller, nothing lost", async () => {
  const observed: KernelObservation[] = [];
  const world = await TestWorld.create(8, { limits: { pullRequestsMax: 16 } });
  // A card that says 256 pulls for a relay that takes 16: the relay refuses, the kernel halves.
  const card = world.core.card();
  card.limits = create(ServerLimitsSchema, { ...card.limits!, pullRequestsMax: 256 });
  const hub = await world.device("hub", {
    nickname: "hub",
    card: create(ServerCardSchema, card),
    kernel: { observe: (o) => observed.push(o) },
  });
  const others: TestDevice[] = [];
  const uids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const other = await world.device(`c${i}`, { nickname: `c${i}` });
    const ticket = await hub.kernel.createInvitation();
    uids.push(await other.kernel.acceptInvitation(ticket.bytes));
    others.push(other);
  }
  await world.settle([hub, ...others]);
  for (const [i, other] of others.entries()) await chat(other).send(uids[i], `hi ${i}`);
  await world.settle([hub, ...others]);
  await hub.kernel.pollOnce();
  for (const uid of uids) assert.equal((await hub.kernel.messages(uid)).length, 1);
  assert.equal(await waiting(world, hub), 0);
  const poll = hub.kernel.relayHealth().find((h) => h.request === "poll")!;
  assert.equal(poll.state, "ok");
  assert(poll.refusals >= 1, "the relay refused the oversized poll at least once");
  const states = observed.filter((o) => o.kind === "relay").map((o) => o.state);
  assert.deepEqual(states.slice(0, 2), ["refused", "ok"]);
});

Deno.test("Kernel surfaces a relay that refuses every poll: typed error, never quiet, acks kept", async () => {
  // A relay that reads no request larger than 200 bytes: no pull fits.
  const world = await TestWorld.create(9, { limits: { requestBytesMax: 200 } });
  const hub = await world.device("hub", { nickname: "hub" });
  await hub.kernel.createInvitation();
  await assert.rejects(hub.kernel.pollOnce(), (e) => {
    assert(e instanceof RelayRefused);
    assert.equal(e.relayCode, "TOO_LARGE");
    return true;
  });
  assert.equal(hub.kernel.quietPollAt(world.core.card().uid), 0);
  const poll = hub.kernel.relayHealth().find((h) => h.request === "poll")!;
  assert.equal(poll.state, "refused");
  assert.match(poll.detail, /TOO_LARGE/);
});

for (const extra of [0, 1]) {
  Deno.test(`Kernel sends ${4 + extra} queued messages to a relay taking 4 a request, and acks ${4 + extra} in requests of 4`, async () => {
    const limits = { messagesPerRequestMax: 4, acksPerRequestMax: 4, pullMessagesMax: 4 };
    const { world, hub, others, uids } = await hubWith(1, limits);
    const [bob] = others;
    for (let i = 0; i < 4 + extra; i++) await chat(bob).send(uids[0], `m${i}`);
    assert.equal(await bob.kernel.flushOutbox(), 4 + extra);
    // One pollOnce takes every message: a full answer (pullMessagesMax) makes it go on at once.
    await hub.kernel.pollOnce();
    assert.equal((await hub.kernel.messages(uids[0])).length, 4 + extra);
    assert.equal(await waiting(world, hub), 0);
    for (const d of [hub, bob]) {
      assert(d.kernel.relayHealth().every((h) => h.state === "ok" && h.refusals === 0));
    }
  });
}

Deno.test("Kernel keeps each request within the relay's requestBytesMax: a big outbox goes in several requests", async () => {
  const { world, hub, others, uids } = await hubWith(1, { requestBytesMax: 4096 });
  const [bob] = others;
  for (let i = 0; i < 12; i++) await chat(bob).send(uids[0], `${i} ${"x".repeat(900)}`);
  assert.equal(await bob.kernel.flushOutbox(), 12);
  await world.settle([hub, bob]);
  assert.equal((await hub.kernel.messages(uids[0])).length, 12);
  assert(bob.kernel.relayHealth().every((h) => h.refusals === 0));
});

/** Everything `device` keeps, as one string: peers (ratchets included), outbox and messages. */
async function snapshot(device: TestDevice): Promise<string> {
  const parts: string[] = [];
  for (const p of await device.store.listPeers()) parts.push(encode(PeerRecordSchema, p).join());
  for (const e of await device.store.listOutbox()) parts.push(encode(OutboxEntrySchema, e).join());
  for (const uid of await device.store.listConversations()) {
    for (const m of await device.store.listMessages(uid)) {
      parts.push(encode(DbMessageSchema, m).join());
    }
  }
  return parts.join("|");
}

/** The text whose chat message to `uid` is exactly `bob`'s userMessageBytesMax plus `extra` bytes. */
async function textOfLimit(bob: TestDevice, uid: string, extra: number): Promise<string> {
  const bytesMax = userMessageBytesMax(bob.kernel.peer(uid)!);
  const error = await chat(bob).send(uid, "x".repeat(bytesMax)).catch((e) => e);
  assert(error instanceof MessageTooLarge && error.bytesMax === bytesMax);
  return "x".repeat(bytesMax - (error.bytes - bytesMax) + extra);
}

Deno.test("Kernel sends a chat message of exactly userMessageBytesMax and refuses one byte more at send, storing nothing", async () => {
  const { world, hub, others, uids } = await hubWith(1, {});
  const [bob] = others;
  const bytesMax = userMessageBytesMax(bob.kernel.peer(uids[0])!);
  assert.equal(bytesMax, 16384 - 105, "a 32 KiB relay takes the 16 KiB bucket");
  const stored: number[] = [];
  world.core.observe = (e) => {
    if (e.kind === "stored") stored.push(e.bytes.length);
  };
  const over = await textOfLimit(bob, uids[0], 1);
  const before = await snapshot(bob);
  const error = await chat(bob).send(uids[0], over).catch((e) => e);
  assert(error instanceof MessageTooLarge, "one byte more is refused with a typed error");
  assert.equal(error.bytes, bytesMax + 1);
  assert.equal(error.message, `message too large: ${bytesMax + 1} bytes, at most ${bytesMax}`);
  assert.equal(await snapshot(bob), before, "nothing stored, ratchet unchanged");
  await chat(bob).send(uids[0], await textOfLimit(bob, uids[0], 0));
  assert.equal(await bob.kernel.flushOutbox(), 1);
  assert.equal(stored.length, 1, "a message of exactly the limit is stored");
  assert(stored[0] <= 32 * 1024);
  await world.settle([hub, bob]);
  assert.equal((await hub.kernel.messages(uids[0])).length, 1);
});

/** A chat send as it was before the one size limit: stored and queued, no size check of its own. */
function uncheckedChat(): {
  plugin: PluginInput;
  send: (uid: string, text: string) => Promise<void>;
} {
  let host: PluginHost | undefined;
  return {
    plugin: { name: "unchecked_chat", setup: (h: PluginHost) => void (host = h) },
    send: (uid, text) =>
      host!.transact(async (tx) => {
        const peer = tx.peer(uid)!;
        const message = newUserMessage(tx, peer, "chat", host!.random);
        message.data = text;
        tx.putMessage(
          create(DbMessageSchema, { peerUid: uid, outbound: true, message, storedAt: tx.now }),
        );
        await tx.send(uid, message);
      }),
  };
}

Deno.test("attack oversized send: a 40,000-character message is refused at send, not reported sent and dropped", async () => {
  const text = "x".repeat(40_000);
  for (const weakened of [true, false]) {
    const observed: KernelObservation[] = [];
    const world = await TestWorld.create(7);
    const hub = await world.device("hub", { nickname: "hub" });
    const unchecked = uncheckedChat();
    const bob = await world.device("bob", {
      nickname: "bob",
      plugins: () => [chatPlugin(), dedupPlugin(), unchecked.plugin],
      // The weakened build: pack does not check the size either.
      kernel: { observe: (o) => observed.push(o), sealing: { checkSize: !weakened } },
    });
    const ticket = await hub.kernel.createInvitation();
    const uid = await bob.kernel.acceptInvitation(ticket.bytes);
    await world.settle([hub, bob]);
    const stored: number[] = [];
    world.core.observe = (e) => {
      if (e.kind === "stored") stored.push(e.bytes.length);
    };
    const before = await snapshot(bob);
    if (weakened) {
      await unchecked.send(uid, text);
      assert.equal((await bob.kernel.messages(uid)).length, 1, "weakened: reported sent");
      await bob.kernel.flushOutbox();
      assert.deepEqual(stored, [], "weakened: the relay never stored it");
      assert.equal(bob.kernel.relayHealth().find((h) => h.request === "send")?.dropped, 1);
      assert(
        observed.some((o) => o.kind === "relay" && o.state === "dropped"),
        "weakened: dropped",
      );
    } else {
      for (const send of [() => chat(bob).send(uid, text), () => unchecked.send(uid, text)]) {
        const error = await send().catch((e) => e);
        assert(error instanceof MessageTooLarge, "refused at send with a typed error");
        assert(
          error.bytes > 40_000 && error.bytesMax === userMessageBytesMax(bob.kernel.peer(uid)!),
        );
        assert.equal(await snapshot(bob), before, "nothing stored, ratchet unchanged");
      }
      assert.equal(await bob.kernel.flushOutbox(), 0);
      assert.deepEqual(stored, []);
    }
  }
});

Deno.test("Kernel retries QUEUE_FULL, then marks the message failed after QUEUE_FULL_ATTEMPTS_MAX", async () => {
  const { world, hub, others, uids } = await hubWith(1, { queueLengthMax: 1 });
  const [bob] = others;
  await chat(bob).send(uids[0], "fills the queue");
  await chat(bob).send(uids[0], "finds it full");
  for (let i = 0; i < QUEUE_FULL_ATTEMPTS_MAX - 1; i++) {
    await bob.kernel.flushOutbox();
    world.clock.advance(60_000);
  }
  const [first, second] = await bob.kernel.messages(uids[0]);
  assert.equal(first.failedAt, 0);
  assert.equal(second.failedAt, 0, "not failed before the last attempt");
  assert.equal(bob.kernel.outboxSize(), 1);
  await bob.kernel.flushOutbox();
  assert.equal(bob.kernel.outboxSize(), 0);
  const failed = (await bob.kernel.messages(uids[0]))[1];
  assert.match(failed.failedReason, /^queue full: /);
  assert.equal(
    (await bob.store.getMessage(uids[0], failed.message!.status!.uuid))?.failedAt,
    world.clock.now(),
  );
  await world.settle([hub, bob]);
  assert.deepEqual((await hub.kernel.messages(uids[0])).map((m) => m.message?.data), [
    "fills the queue",
  ]);
});

Deno.test("Kernel asks no longer a long poll than the relay's longPollMsMax", async () => {
  for (const longPollMs of [1000, 1001]) {
    const world = await TestWorld.create(10, { limits: { longPollMsMax: 1000 } });
    const device = await world.device("d", {
      nickname: "d",
      kernel: { longPollMs, pollIntervalMs: 10 },
    });
    await device.kernel.createInvitation();
    const asked = new Promise<number>((resolve) => {
      world.core.observe = (e) => {
        if (e.kind !== "request") return;
        const timeoutMs = decode(ToServerMessageSchema, e.bytes).timeoutMs;
        if (timeoutMs > 0) resolve(timeoutMs);
      };
    });
    device.kernel.start();
    assert.equal(await asked, 1000);
    // The relay's long poll waits on the test's clock, which never moves: stop ends it.
    await device.kernel.stop();
  }
});

Deno.test("Kernel long-polls no more chunks at once than the relay's longPollsPerClientMax; the rest short-poll", async () => {
  const { world, hub } = await hubWith(5, { pullRequestsMax: 2, longPollsPerClientMax: 2 });
  const waits: number[] = [];
  const seen = new Promise<void>((resolve) => {
    world.core.observe = (e) => {
      if (e.kind !== "request") return;
      const request = decode(ToServerMessageSchema, e.bytes);
      if (request.pullRequests.length === 0) return;
      waits.push(request.timeoutMs);
      if (waits.length === 3) resolve();
    };
  });
  hub.kernel.start();
  await seen;
  await hub.kernel.stop();
  // Five contacts in chunks of two: three requests, two of them long polls.
  assert.deepEqual(waits.map((w) => w > 0), [true, true, false]);
});

Deno.test("userMessageBytesMax answers for each relay limit, after another limit was asked", () => {
  const peerOf = (messageBytesMax: number) =>
    create(PeerRecordSchema, {
      contact: {
        lookupPublicKey: new Uint8Array(32),
        pullServers: [{ limits: { messageBytesMax } }],
      },
    });
  // Asked in turn, each answer is worked out for its own limit (one remembered per limit).
  assert.equal(userMessageBytesMax(peerOf(32 * 1024)), 16384 - 105);
  assert.equal(userMessageBytesMax(peerOf(8 * 1024)), 4096 - 105);
  assert.equal(userMessageBytesMax(peerOf(32 * 1024)), 16384 - 105);
  assert.equal(userMessageBytesMax(peerOf(100)), 0, "no bucket fits a 100-byte relay");
});

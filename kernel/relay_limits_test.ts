import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { decode } from "../proto/codec.ts";
import {
  ServerCardSchema,
  ServerLimitsSchema,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import type { ChatApi } from "../plugins/chat/mod.ts";
import { type KernelObservation, QUEUE_FULL_ATTEMPTS_MAX } from "./kernel.ts";
import { RelayRefused } from "./errors.ts";
import { packedBytes } from "./pipeline.ts";
import { type TestDevice, TestWorld } from "./_test_world.ts";
import type { ServerLimitsInit } from "../server/mod.ts";

function chat(device: TestDevice): ChatApi {
  return device.kernel.api<ChatApi>("chat");
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

Deno.test("Kernel sends a message of exactly messageBytesMax and drops one byte more, reported, never sent", async () => {
  // Measure the packed size of a text on a relay with room to spare, then set the limit to it.
  const probe = await hubWith(1, {});
  await chat(probe.others[0]).send(probe.uids[0], "x".repeat(1000));
  const limit = packedBytes((await probe.others[0].store.listOutbox())[0].packed!);
  for (const extra of [0, 1]) {
    const observed: KernelObservation[] = [];
    const world = await TestWorld.create(7, { limits: { messageBytesMax: limit } });
    const hub = await world.device("hub", { nickname: "hub" });
    const bob = await world.device("bob", {
      nickname: "bob",
      kernel: { observe: (o) => observed.push(o) },
    });
    const ticket = await hub.kernel.createInvitation();
    const uid = await bob.kernel.acceptInvitation(ticket.bytes);
    await world.settle([hub, bob]);
    const stored: number[] = [];
    world.core.observe = (e) => {
      if (e.kind === "stored") stored.push(e.bytes.length);
    };
    await chat(bob).send(uid, "x".repeat(1000 + extra));
    await bob.kernel.flushOutbox();
    const send = bob.kernel.relayHealth().find((h) => h.request === "send");
    const drops = observed.filter((o) => o.kind === "relay" && o.state === "dropped");
    if (extra === 0) {
      assert.equal(stored.length, 1, "a message of exactly the limit is stored");
      assert.equal(send?.dropped ?? 0, 0);
      assert.equal(drops.length, 0);
    } else {
      assert.deepEqual(stored, [], "a message the relay cannot store is never sent");
      assert.equal(send?.dropped, 1);
      assert.equal(drops.length, 1);
      assert.equal(bob.kernel.outboxSize(), 0);
      const [row] = await bob.kernel.messages(uid);
      assert.match(row.failedReason, /^too large: /, "the message is marked failed, with why");
      assert.equal(row.failedAt, world.clock.now());
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

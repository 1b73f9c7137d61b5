import assert from "node:assert/strict";
import { clone, create } from "@bufbuild/protobuf";
import { encode } from "../proto/codec.ts";
import {
  DbMessageSchema,
  OutboxEntrySchema,
  type PackedUserMessage,
  PackedUserMessageSchema,
  PeerRecordSchema,
  type ServerCard,
} from "../proto/gen/meow_pb.ts";
import { CHAT_API, type ChatApi, chatPlugin } from "../plugins/chat/mod.ts";
import { dedupPlugin } from "../plugins/dedup/mod.ts";
import { randomInt, SeededRandom } from "../crypto/mod.ts";
import { newUserMessage } from "../plugins/chat/mod.ts";
import { apiKey, type Plugin } from "./plugin.ts";
import { type Store, type Transport, TransportError } from "../ports/mod.ts";
import { ManualClock, type TestDevice, TestWorld } from "../tests/support/world.ts";
import { pack } from "./pipeline.ts";
import { Kernel, QUARANTINE_MAX } from "./kernel.ts";
import { OUTBOX_REQUESTS_AT_ONCE, waves } from "./_outbox.ts";

/** Everything a store holds, as comparable bytes. */
async function snapshot(store: Store): Promise<string> {
  const parts: string[] = [];
  const identity = await store.loadIdentity();
  parts.push(String(identity?.uid));
  for (const p of await store.listPeers()) parts.push(encode(PeerRecordSchema, p).join());
  for (const p of await store.listDevices()) parts.push(encode(PeerRecordSchema, p).join());
  for (const e of await store.listOutbox()) parts.push(encode(OutboxEntrySchema, e).join());
  for (const uid of await store.listConversations()) {
    for (const m of await store.listMessages(uid)) parts.push(encode(DbMessageSchema, m).join());
  }
  return parts.join("|");
}

async function pairOutOfBand(world: TestWorld, a: TestDevice, b: TestDevice): Promise<string> {
  const ticket = await a.kernel.createInvitation();
  const uid = await b.kernel.acceptInvitation(ticket.bytes);
  await world.settle([a, b]);
  assert.equal(uid, ticket.peerUid);
  return uid;
}

function chat(device: TestDevice): ChatApi {
  return device.kernel.api(CHAT_API);
}

async function texts(device: TestDevice, peerUid: string): Promise<string[]> {
  return (await device.kernel.messages(peerUid)).map((m) =>
    `${m.outbound ? ">" : "<"}${m.message!.data}`
  );
}

Deno.test("Kernel pairs two identities out of band and both can send at once", async () => {
  const world = await TestWorld.create();
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const ticket = await alice.kernel.createInvitation();
  const uid = await bob.kernel.acceptInvitation(ticket.bytes);
  // Bob sends before Alice has even seen the answer: the answer carries the ratchet's start.
  await chat(bob).send(uid, "hello alice");
  await world.settle([alice, bob]);
  await chat(alice).send(uid, "hello bob");
  await world.settle([alice, bob]);
  assert.deepEqual(await texts(alice, uid), ["<hello alice", ">hello bob"]);
  assert.deepEqual(await texts(bob, uid), [">hello alice", "<hello bob"]);
  assert.equal(alice.kernel.peer(uid)?.name, "bob");
  assert.equal(bob.kernel.peer(uid)?.name, "alice");
  // Delivery acks came back: the sender's copy shows when it was received.
  const sent = (await alice.kernel.messages(uid)).find((m) => m.outbound)!;
  assert.ok(sent.message!.status!.received > 0);
});

Deno.test("Kernel exchanges 1,000 messages both ways with restarts at random points; nothing is lost", async () => {
  const world = await TestWorld.create(3);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  const random = new SeededRandom("restarts");
  const sentBy = { alice: [] as string[], bob: [] as string[] };
  for (let i = 0; i < 500; i++) {
    await chat(alice).send(uid, `a${i}`);
    sentBy.alice.push(`a${i}`);
    await chat(bob).send(uid, `b${i}`);
    sentBy.bob.push(`b${i}`);
    // Deliver some of the time, and now and then restart one side mid-flight.
    const roll = randomInt(random, 10);
    if (roll < 3) await world.settle([alice, bob]);
    else if (roll === 3) await (randomInt(random, 2) === 0 ? alice : bob).restart();
    else if (roll === 4) {
      await alice.kernel.flushOutbox();
      await bob.restart();
      await bob.kernel.pollOnce();
    }
  }
  await world.settle([alice, bob], 200);
  for (const device of [alice, bob]) {
    const messages = await device.kernel.messages(uid);
    assert.equal(messages.length, 1000, "every message once");
    const got = new Set(messages.map((m) => m.message!.data));
    for (const text of [...sentBy.alice, ...sentBy.bob]) {
      assert.ok(got.has(text), `${text} present`);
    }
  }
  const aliceIds = (await alice.kernel.messages(uid)).map((m) => m.message!.status!.uuid).sort();
  const bobIds = (await bob.kernel.messages(uid)).map((m) => m.message!.status!.uuid).sort();
  assert.deepEqual(aliceIds, bobIds, "both stores hold the same uuids");
  // Every delivery ack arrived.
  for (const m of await alice.kernel.messages(uid)) {
    if (m.outbound) assert.ok(m.message!.status!.received > 0, `ack for ${m.message!.data}`);
  }
});

Deno.test("Kernel.receive() rejects bad input with a typed error and changes nothing but the quarantine", async () => {
  const world = await TestWorld.create(4);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  // Capture a genuine packed message from Alice to Bob without delivering it.
  const captured: PackedUserMessage[] = [];
  await chat(alice).send(uid, "genuine");
  const entry = (await alice.store.listOutbox())[0];
  captured.push(entry.packed!);
  const good = captured[0];

  const before = await snapshot(bob.store);
  const cases: [string, PackedUserMessage, string][] = [];
  const unknown = clone(PackedUserMessageSchema, good);
  unknown.destination = "nobody";
  cases.push(["unknown destination", unknown, "UnknownDestination"]);
  const badSig = clone(PackedUserMessageSchema, good);
  badSig.signature = new Uint8Array(badSig.signature.map((b, i) => i === 5 ? b ^ 1 : b));
  cases.push(["bad signature", badSig, "BadSignature"]);
  const tampered = clone(PackedUserMessageSchema, good);
  tampered.payload = new Uint8Array(tampered.payload.map((b, i) => i === 40 ? b ^ 1 : b));
  cases.push(["tampered payload (signature breaks first)", tampered, "BadSignature"]);
  const shortPayload = clone(PackedUserMessageSchema, good);
  shortPayload.payload = shortPayload.payload.subarray(0, 100);
  cases.push(["truncated payload", shortPayload, "BadSignature"]);
  for (const [i, [what, packed, code]] of cases.entries()) {
    packed.serverDeliveryUuid = `delivery-${i}`;
    const outcome = await bob.kernel.receive(packed);
    assert.equal(outcome.kind, "rejected", what);
    assert.equal(outcome.kind === "rejected" && outcome.error.code, code, what);
    assert.equal(outcome.kind === "rejected" && outcome.quarantined, true, what);
    assert.equal(await snapshot(bob.store), before, `${what}: store unchanged`);
    // Kept, with its error, before anything acks it: in the store, not only in memory.
    const kept = (await bob.store.listQuarantine()).at(-1)!;
    assert.equal(kept.id, `delivery-${i}`, what);
    assert.equal(kept.errorCode, code, what);
    assert.equal(kept.queue, packed.destination, what);
    assert.deepEqual(kept.packed?.payload, packed.payload, what);
  }
  assert.equal(bob.kernel.quarantineCount(), cases.length);
  // A message correctly signed and sealed whose plaintext is garbage, and one of an unknown type.
  const alicePeer = alice.kernel.peer(uid)!;
  const unknownType = newUserMessage(
    { now: world.clock.now() } as never,
    alicePeer,
    "nobody-owns",
    world.random,
  );
  const forged = await pack(alicePeer, unknownType, {
    random: world.random,
    now: world.clock.now(),
  });
  const typeOutcome = await bob.kernel.receive(forged.packed);
  assert.equal(typeOutcome.kind === "rejected" && typeOutcome.error.code, "UnknownType");
  assert.equal(await snapshot(bob.store), before, "unknown type: store and ratchet unchanged");

  // The genuine message still decrypts after all that, exactly once.
  const first = await bob.kernel.receive(good);
  assert.equal(first.kind, "accepted");
  const replay = await bob.kernel.receive(good);
  assert.equal(replay.kind === "rejected" && replay.error.code, "Replay");
  assert.equal(replay.kind === "rejected" && replay.quarantined, false, "a repeat is not kept");
  assert.deepEqual(await texts(bob, uid), ["<genuine"]);
  assert.deepEqual(
    bob.kernel.quarantine().map((q) => q.errorCode),
    [...cases.map(([, , code]) => code), "UnknownType"],
  );
});

Deno.test("Kernel quarantine keeps at most QUARANTINE_MAX, evicting the oldest, across a restart", async () => {
  const world = await TestWorld.create(4);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  await chat(alice).send(uid, "genuine");
  const good = (await alice.store.listOutbox())[0].packed!;
  for (let i = 0; i < QUARANTINE_MAX + 2; i++) {
    const bad = clone(PackedUserMessageSchema, good);
    bad.signature = new Uint8Array(64);
    bad.serverDeliveryUuid = `d${String(i).padStart(4, "0")}`;
    world.clock.advance(1);
    const outcome = await bob.kernel.receive(bad);
    assert.equal(outcome.kind === "rejected" && outcome.quarantined, true);
  }
  const ids = (await bob.store.listQuarantine()).map((q) => q.id);
  assert.equal(ids.length, QUARANTINE_MAX);
  assert.equal(ids[0], "d0002", "the two oldest went");
  assert.equal(ids.at(-1), `d${String(QUARANTINE_MAX + 1).padStart(4, "0")}`);
  const again = await bob.restart();
  assert.deepEqual(again.quarantine().map((q) => q.id), ids);
  assert.equal(again.quarantineCount(), QUARANTINE_MAX);
});

Deno.test("Kernel routes a custom plugin's message type without any kernel change", async () => {
  const world = await TestWorld.create(5);
  const seen: string[] = [];
  const reactions = (): Plugin => {
    let send: ((peerUid: string, emoji: string) => Promise<void>) | undefined;
    return {
      name: "reaction",
      types: ["reaction"],
      setup(host) {
        send = (peerUid, emoji) =>
          host.transact(async (tx) => {
            const peer = tx.peer(peerUid)!;
            const message = newUserMessage(tx, peer, "reaction", host.random);
            message.data = emoji;
            await tx.send(peerUid, message);
          });
      },
      api: { react: (peerUid: string, emoji: string) => send!(peerUid, emoji) },
      receive(message, { tx, peer }) {
        tx.afterCommit(() => seen.push(`${peer.name}:${message.data}`));
      },
    };
  };
  const plugins = () => [chatPlugin(), dedupPlugin(), reactions()];
  const alice = await world.device("alice", { nickname: "alice", plugins });
  const bob = await world.device("bob", { nickname: "bob", plugins });
  const uid = await pairOutOfBand(world, alice, bob);
  const REACTION_API = apiKey<{ react(uid: string, e: string): Promise<void> }>("reaction");
  await alice.kernel.api(REACTION_API).react(uid, "🐟");
  await world.settle([alice, bob]);
  assert.deepEqual(seen, ["alice:🐟"]);
});

Deno.test("Kernel.open() refuses two plugins claiming one type, and a plugin without a name", async () => {
  const world = await TestWorld.create(6);
  await assert.rejects(
    world.device("x", { plugins: () => [chatPlugin(), { name: "other", types: ["chat"] }] }),
    /type "chat" already belongs to "chat"/,
  );
  await assert.rejects(world.device("y", { plugins: () => [{ name: "" }] }), /without a name/);
});

Deno.test("Kernel commits the ratchet with the outbox entry: a restart before delivery still delivers", async () => {
  const world = await TestWorld.create(7);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  await chat(alice).send(uid, "one");
  await alice.restart(); // nothing was flushed yet
  assert.equal(alice.kernel.outboxSize(), 1);
  await chat(alice).send(uid, "two");
  await world.settle([alice, bob]);
  assert.deepEqual((await texts(bob, uid)).sort(), ["<one", "<two"]);
});

Deno.test("chat markRead() sets processed and sends read receipts that advance the sender's status", async () => {
  const world = await TestWorld.create(8);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  await chat(alice).send(uid, "read me");
  await world.settle([alice, bob]);
  assert.equal(await chat(bob).markRead(uid), 1);
  await world.settle([alice, bob]);
  const [sent] = await alice.kernel.messages(uid);
  assert.ok(sent.message!.status!.processed > 0);
  assert.equal(await chat(bob).markRead(uid), 0, "nothing unread any more");
  void create;
});

Deno.test("Kernel.receive() drops a repeated invitation answer as a Replay and defers a message that overtakes its answer", async () => {
  const world = await TestWorld.create(9);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const ticket = await alice.kernel.createInvitation();
  const uid = await bob.kernel.acceptInvitation(ticket.bytes);
  await chat(bob).send(uid, "right after answering");
  const [answer, early] = (await bob.store.listOutbox()).map((e) => e.packed!);
  assert.equal(answer.payload.length, early.payload.length, "answer and message share a bucket");
  // The chat message overtakes the answer: it is kept for a later poll, not dropped.
  assert.equal((await alice.kernel.receive(early)).kind, "deferred");
  assert.equal((await alice.kernel.receive(answer)).kind, "accepted");
  const before = await snapshot(alice.store);
  const again = await alice.kernel.receive(answer);
  assert.equal(again.kind === "rejected" && again.error.code, "Replay");
  assert.equal(await snapshot(alice.store), before, "a repeated answer changes nothing");
  assert.equal((await alice.kernel.receive(early)).kind, "accepted");
  assert.deepEqual(await texts(alice, uid), ["<right after answering"]);
});

/** Yields to the event loop until `done()` holds, at most `turnsMax` turns. */
async function untilTrue(done: () => boolean, turnsMax = 2_000): Promise<boolean> {
  for (let turn = 0; turn < turnsMax && !done(); turn++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return done();
}

Deno.test("Kernel restarts a long poll when a new peer adds a queue: an answer does not wait out the poll", async () => {
  const world = await TestWorld.create();
  // The manual clock never moves here: a long poll ends only when its queues see a message.
  const alice = await world.device("alice", {
    nickname: "alice",
    kernel: { longPollMs: 60_000 },
  });
  const bob = await world.device("bob", { nickname: "bob" });
  const carol = await world.device("carol", { nickname: "carol" });
  await pairOutOfBand(world, alice, carol); // alice has a queue to wait on
  alice.kernel.start();
  try {
    assert.ok(await untilTrue(() => world.core.stats().longPollsOpen === 1), "alice waits");
    const ticket = await alice.kernel.createInvitation();
    const uid = await bob.kernel.acceptInvitation(ticket.bytes);
    assert.equal(await bob.kernel.flushOutbox(), 1, "bob's answer is on the relay");
    assert.ok(
      await untilTrue(() => alice.kernel.peer(uid)?.contact !== undefined),
      "alice finalized the invitation from the answer while her clock stood still",
    );
  } finally {
    await alice.kernel.stop();
  }
});

/** A transport that holds every exchange while closed; a held one ends only on its signal. */
class GatedTransport implements Transport {
  open = true;
  held = 0;
  constructor(readonly inner: Transport) {}
  exchange(server: ServerCard, body: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.open) return this.inner.exchange(server, body, signal);
    this.held++;
    return new Promise((_, reject) =>
      signal?.addEventListener(
        "abort",
        () => reject(new TransportError("Cannot reach relay: the exchange was aborted")),
        { once: true },
      )
    );
  }
  fetchCard(url: string, signal?: AbortSignal): Promise<ServerCard> {
    return this.inner.fetchCard(url, signal);
  }
}

Deno.test("Kernel.stop() during a delivery leaves the entry due: the flush that follows sends it", async () => {
  const world = await TestWorld.create();
  const gate = new GatedTransport(world.transport);
  const alice = await world.device("alice", { nickname: "alice", kernel: { transport: gate } });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  gate.open = false;
  alice.kernel.start();
  await chat(alice).send(uid, "sent while stopping");
  assert.ok(await untilTrue(() => gate.held >= 2), "the poll and the delivery are in flight");
  await alice.kernel.stop(); // aborts the delivery: not a failed attempt
  gate.open = true;
  assert.equal(
    await alice.kernel.flushOutbox(),
    1,
    "the entry is still due, with the clock unmoved",
  );
  assert.equal(alice.kernel.outboxSize(), 0);
  await world.settle([alice, bob]);
  assert.deepEqual(await texts(bob, uid), ["<sent while stopping"]);
});

/** A transport that holds exchanges while closed and lets them all go on when opened. */
class ReleasingTransport implements Transport {
  #open = true;
  readonly #waiting: (() => void)[] = [];
  held = 0;
  constructor(readonly inner: Transport) {}
  close(): void {
    this.#open = false;
  }
  open(): void {
    this.#open = true;
    for (const go of this.#waiting.splice(0)) go();
  }
  async exchange(server: ServerCard, body: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    if (!this.#open) {
      this.held++;
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    return this.inner.exchange(server, body, signal);
  }
  fetchCard(url: string, signal?: AbortSignal): Promise<ServerCard> {
    return this.inner.fetchCard(url, signal);
  }
}

Deno.test("Kernel sends an outbox backlog of several batches at once: three requests in flight, nothing lost", async () => {
  const world = await TestWorld.create(3, { limits: { messagesPerRequestMax: 4 } });
  const gate = new ReleasingTransport(world.transport);
  const alice = await world.device("alice", { nickname: "alice", kernel: { transport: gate } });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  for (let i = 0; i < 12; i++) await chat(alice).send(uid, `backlog ${i}`);
  gate.close();
  const flushed = alice.kernel.flushOutbox();
  // Twelve messages, four a request: the three requests leave together, not one per round trip.
  assert.ok(await untilTrue(() => gate.held === 3), `3 requests in flight, saw ${gate.held}`);
  gate.open();
  assert.equal(await flushed, 12);
  await world.settle([alice, bob]);
  const got = await texts(bob, uid);
  assert.equal(got.length, 12);
  assert.deepEqual(new Set(got), new Set([...Array(12).keys()].map((i) => `<backlog ${i}`)));
});

Deno.test("waves: at most OUTBOX_REQUESTS_AT_ONCE batches at once, and nothing for a queue leaves with its barrier", () => {
  const entry = (id: string, queue: string, barrier = false) =>
    create(OutboxEntrySchema, {
      id,
      barrier,
      packed: create(PackedUserMessageSchema, { destination: queue }),
    });
  const ids = (w: ReturnType<typeof waves>) => w.map((wave) => wave.map((b) => b.map((e) => e.id)));
  const plain = [...Array(OUTBOX_REQUESTS_AT_ONCE + 1).keys()].map((i) => [entry(`e${i}`, "q")]);
  assert.deepEqual(ids(waves(plain)).map((w) => w.length), [OUTBOX_REQUESTS_AT_ONCE, 1]);
  // A rekey of q1 in the first batch: the next batch's q1 message waits for it, q2 does not.
  const behind = [[entry("reset", "q1", true), entry("a", "q2")], [entry("b", "q2")], [
    entry("c", "q1"),
    entry("d", "q2"),
  ]];
  assert.deepEqual(ids(waves(behind)), [[["reset", "a"], ["b"]], [["c", "d"]]]);
  assert.deepEqual(waves([]), []);
});

/** The manual clock, recording every sleep asked of it. */
class SleepLog extends ManualClock {
  readonly sleeps: number[] = [];
  override sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    return super.sleep(ms, signal);
  }
}

Deno.test("Kernel starts its polls one interval apart: the time a poll took counts toward the interval", async () => {
  const world = await TestWorld.create(4);
  const clock = new SleepLog(world.clock.now());
  // Every exchange of alice's takes 700 ms of her clock.
  const slow: Transport = {
    exchange: async (server, body, signal) => {
      const answer = await world.transport.exchange(server, body, signal);
      clock.advance(700);
      return answer;
    },
    fetchCard: (url, signal) => world.transport.fetchCard(url, signal),
  };
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  await pairOutOfBand(world, alice, bob);
  const kernel = await Kernel.open({
    store: alice.store,
    clock,
    random: new SeededRandom(5),
    transport: slow,
    plugins: [chatPlugin(), dedupPlugin()],
    name: "alice",
    pollIntervalMs: 3_000,
    longPollMs: 0,
  });
  kernel.start();
  try {
    // One pull request of 700 ms, nothing brought: the next poll starts 2.3 s later, 3 s after it began.
    assert.ok(await untilTrue(() => clock.sleeps.includes(2_300)), `sleeps: ${clock.sleeps}`);
    assert.ok(!clock.sleeps.includes(3_000), `sleeps: ${clock.sleeps}`);
  } finally {
    await kernel.stop();
  }
});

Deno.test("Kernel's outbox sends what is queued while a delivery is in flight at once, beside it", async () => {
  const world = await TestWorld.create(6);
  const gate = new ReleasingTransport(world.transport);
  const alice = await world.device("alice", { nickname: "alice", kernel: { transport: gate } });
  const bob = await world.device("bob", { nickname: "bob" });
  const uid = await pairOutOfBand(world, alice, bob);
  gate.close();
  alice.kernel.start();
  try {
    await chat(alice).send(uid, "first");
    assert.ok(await untilTrue(() => gate.held === 2), "the poll and the first delivery are out");
    await chat(alice).send(uid, "second");
    // The second does not wait for the first's answer (which never comes while the gate is shut).
    assert.ok(await untilTrue(() => gate.held === 3), `3 requests in flight, saw ${gate.held}`);
    gate.open();
    assert.ok(await untilTrue(() => alice.kernel.outboxSize() === 0), "both delivered");
  } finally {
    await alice.kernel.stop();
  }
  await world.settle([alice, bob]);
  // Both arrive; sent in the same virtual millisecond, their order is the uuids' (send time, then uuid).
  assert.deepEqual((await texts(bob, uid)).sort(), ["<first", "<second"]);
});

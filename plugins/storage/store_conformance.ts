/**
 * The contract every {@linkcode Store} adapter passes, the fake exactly as the
 * real ones. Each adapter's `*_test.ts` calls {@linkcode storeConformance}
 * with a factory; nothing here depends on one adapter.
 *
 * Longer than most files: every case of the Store contract in one suite, so that no adapter skips
 * one.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  clone,
  create,
  type DescMessage,
  equals,
  type MessageShape,
  toJsonString,
} from "@bufbuild/protobuf";
import type { Batch, Store } from "../../ports/mod.ts";
import {
  type DbMessage,
  DbMessageSchema,
  FileMetaSchema,
  type IdentityRecord,
  IdentityRecordSchema,
  type OutboxEntry,
  OutboxEntrySchema,
  type PeerRecord,
  PeerRecordSchema,
  PeerType,
  type QuarantineRecord,
  QuarantineRecordSchema,
  ServerCardSchema,
} from "../../proto/mod.ts";

/** How the suite makes, reopens and disposes of stores of one adapter. */
export interface StoreFactory {
  /** The adapter's name, shown in every test name. */
  name: string;
  /** The largest encoded record the adapter accepts, in bytes. */
  recordBytesMax: number;
  /** A new, empty store. */
  open(): Promise<Store>;
  /** Closes `store` and opens the same data again, as a restarted device would. */
  reopen(store: Store): Promise<Store>;
  /**
   * Closes `store` and removes whatever `open` created for it (files).
   * @default {store.close()}
   */
  dispose?(store: Store): Promise<void>;
}

/**
 * Registers the conformance tests for one adapter with `Deno.test`.
 *
 * @example
 * ```ts ignore
 * import { MemoryStore } from "./memory.ts";
 * import { storeConformance } from "./store_conformance.ts";
 * storeConformance({
 *   name: "MemoryStore",
 *   recordBytesMax: 4 * 1024 * 1024,
 *   open: () => Promise.resolve(new MemoryStore()),
 *   reopen: (store) => Promise.resolve((store as MemoryStore).reopen()),
 * });
 * ```
 */
export function storeConformance(factory: StoreFactory): void {
  const test = (name: string, body: (h: Handle) => Promise<void>): void => {
    Deno.test(`${name} [${factory.name}]`, async () => {
      const h: Handle = {
        store: await factory.open(),
        reopen: async () => h.store = await factory.reopen(h.store),
      };
      try {
        await body(h);
      } finally {
        await (factory.dispose ? factory.dispose(h.store) : h.store.close());
      }
    });
  };

  test("loadIdentity() is undefined on a new store, then the identity last committed", async (h) => {
    assert.equal(await h.store.loadIdentity(), undefined);
    await h.store.commit({ identity: identity("first") });
    const second = identity("second");
    await h.store.commit({ identity: second });
    assertRecords(IdentityRecordSchema, [await h.store.loadIdentity()], [second]);
  });

  test("listPeers() and listDevices() are separate collections", async (h) => {
    const contact = peer("same-uid", PeerType.CONTACT, "Bob");
    const device = peer("same-uid", PeerType.DEVICE, "laptop");
    await h.store.commit({ peers: [contact, peer("p2", PeerType.CONTACT)], devices: [device] });
    assert.deepEqual((await h.store.listPeers()).map((p) => [p.uid, p.name]), [
      ["p2", ""],
      ["same-uid", "Bob"],
    ]);
    assertRecords(PeerRecordSchema, await h.store.listDevices(), [device]);

    await h.store.commit({ deletePeers: ["same-uid", "never-there"] });
    assert.deepEqual((await h.store.listPeers()).map((p) => p.uid), ["p2"]);
    assertRecords(PeerRecordSchema, await h.store.listDevices(), [device]);

    await h.store.commit({ deleteDevices: ["same-uid"] });
    assert.deepEqual(await h.store.listDevices(), []);
    assert.deepEqual((await h.store.listPeers()).map((p) => p.uid), ["p2"]);
  });

  test("listPeers() and listDevices() return records in uid order, upserted by uid", async (h) => {
    await h.store.commit({
      peers: [peer("c"), peer("a"), peer("b")],
      devices: [peer("z"), peer("y")],
    });
    await h.store.commit({ peers: [peer("a", PeerType.CONTACT, "renamed")] });
    assert.deepEqual((await h.store.listPeers()).map((p) => [p.uid, p.name]), [
      ["a", "renamed"],
      ["b", ""],
      ["c", ""],
    ]);
    assert.deepEqual((await h.store.listDevices()).map((p) => p.uid), ["y", "z"]);
  });

  test("commit() upserts a message by (peerUid, uuid): one row, not two", async (h) => {
    await h.store.commit({ messages: [message("bob", "m1", 10, "draft")] });
    await h.store.commit({ messages: [message("bob", "m1", 10, "final")] });
    await h.store.commit({ messages: [message("carol", "m1", 5, "other conversation")] });
    assert.deepEqual(texts(await h.store.listMessages("bob")), ["final"]);
    assert.equal((await h.store.getMessage("bob", "m1"))?.message?.data, "final");
    assert.equal((await h.store.getMessage("carol", "m1"))?.message?.data, "other conversation");
    assert.equal(await h.store.getMessage("bob", "nope"), undefined);
    assert.equal(await h.store.getMessage("nobody", "m1"), undefined);

    // Re-storing with another storedAt moves it in the order, and leaves no trace at the old place.
    await h.store.commit({ messages: [message("bob", "m0", 20, "later")] });
    await h.store.commit({ messages: [message("bob", "m1", 30, "moved")] });
    for (const limit of [undefined, 1, 2, 3]) {
      const want = ["later", "moved"].slice(limit === 1 ? 1 : 0);
      assert.deepEqual(texts(await h.store.listMessages("bob", { limit })), want, `limit ${limit}`);
    }

    // Within one batch the last upsert of a key wins.
    await h.store.commit({
      messages: [message("bob", "m2", 40, "a"), message("bob", "m2", 1, "b")],
    });
    assert.deepEqual(texts(await h.store.listMessages("bob")), ["b", "later", "moved"]);
    assert.deepEqual(texts(await h.store.listMessages("bob", { limit: 1 })), ["moved"]);
  });

  test("listMessages() orders by storedAt then uuid; limit keeps the newest in that order", async (h) => {
    const order = [
      message("bob", "b", 1),
      message("bob", "a", 2),
      message("bob", "c", 2),
      message("bob", "\u{1F600}", 2), // above U+FFFF: after U+FFFD in UTF-8 order, before in UTF-16
      message("bob", "\uFFFD", 2),
      message("bob", "z", 3),
      message("bob", "y", 1_000_000_000_000),
    ];
    const expected = ["b", "a", "c", "\uFFFD", "\u{1F600}", "z", "y"];
    const shuffled = [order[4], order[6], order[0], order[2], order[5], order[3], order[1]];
    await h.store.commit({ messages: shuffled });
    await h.store.commit({ messages: [message("bo", "x", 0), message("bobby", "x", 0)] });
    assert.deepEqual(uuids(await h.store.listMessages("bob")), expected);
    assert.deepEqual(uuids(await h.store.listMessages("bob", { limit: 3 })), expected.slice(4));
    assert.deepEqual(uuids(await h.store.listMessages("bob", { limit: 7 })), expected);
    assert.deepEqual(uuids(await h.store.listMessages("bob", { limit: 100 })), expected);
    assert.deepEqual(await h.store.listMessages("bob", { limit: 0 }), []);
    assert.deepEqual(await h.store.listMessages("nobody"), []);
    assert.deepEqual(await h.store.listMessages("nobody", { limit: 5 }), []);
    for (const limit of [-1, 1.5, NaN]) {
      await assert.rejects(h.store.listMessages("bob", { limit }), RangeError);
    }
  });

  test("listConversations() lists each peer with stored messages once, in uid order", async (h) => {
    assert.deepEqual(await h.store.listConversations(), []);
    await h.store.commit({
      messages: [message("carol", "1", 1), message("bob", "1", 1), message("bob", "2", 2)],
      peers: [peer("dave")],
    });
    await h.store.commit({ messages: [message("alice", "1", 1), message("bob", "3", 3)] });
    assert.deepEqual(await h.store.listConversations(), ["alice", "bob", "carol"]);
  });

  test("listOutbox() orders by queuedAt then id; outboxPut upserts and outboxDelete removes", async (h) => {
    await h.store.commit({
      outboxPut: [outbox("o3", 5), outbox("o1", 9), outbox("o2", 5), outbox("o0", 7)],
    });
    assert.deepEqual(ids(await h.store.listOutbox()), ["o2", "o3", "o0", "o1"]);
    const retried = outbox("o2", 5);
    retried.attempts = 3;
    retried.nextAttemptAt = 100;
    await h.store.commit({ outboxPut: [retried], outboxDelete: ["o3", "never-there"] });
    const after = await h.store.listOutbox();
    assert.deepEqual(ids(after), ["o2", "o0", "o1"]);
    assertRecords(OutboxEntrySchema, [after[0]], [retried]);
    await h.store.commit({ outboxDelete: ["o2", "o0", "o1"] });
    assert.deepEqual(await h.store.listOutbox(), []);
  });

  test("listQuarantine() orders by at then id; quarantinePut upserts and quarantineDelete removes", async (h) => {
    assert.deepEqual(await h.store.listQuarantine(), []);
    await h.store.commit({
      quarantinePut: [quarantined("q3", 5), quarantined("q1", 9), quarantined("q2", 5)],
    });
    assert.deepEqual(ids(await h.store.listQuarantine()), ["q2", "q3", "q1"]);
    const again = quarantined("q2", 20);
    again.errorMessage = "seen again";
    await h.store.commit({ quarantinePut: [again], quarantineDelete: ["q3", "never-there"] });
    const after = await h.store.listQuarantine();
    assert.deepEqual(ids(after), ["q1", "q2"]);
    assertRecords(QuarantineRecordSchema, [after[1]], [again]);
    await h.reopen();
    assertRecords(QuarantineRecordSchema, await h.store.listQuarantine(), after);
    await h.store.commit({ quarantineDelete: ["q1", "q2"] });
    assert.deepEqual(await h.store.listQuarantine(), []);
  });

  test("seen marks keep the first time; isSeen() and pruneSeen() count what they delete", async (h) => {
    assert.equal(await h.store.isSeen("d1"), false);
    await h.store.commit({ seen: [{ id: "d1", at: 100 }, { id: "d2", at: 200 }] });
    // Marked again later, and twice in one batch: the first time stays.
    await h.store.commit({
      seen: [{ id: "d1", at: 10 }, { id: "d3", at: 300 }, { id: "d3", at: 1 }],
    });
    assert.equal(await h.store.isSeen("d1"), true);
    assert.equal(await h.store.isSeen("d4"), false);

    assert.equal(await h.store.pruneSeen(100), 0, "at < beforeMs, not <=; d1's time is still 100");
    assert.equal(await h.store.pruneSeen(201), 2);
    assert.deepEqual(await seenOf(h.store, ["d1", "d2", "d3"]), [false, false, true]);
    assert.equal(await h.store.pruneSeen(201), 0);
    // A pruned id is new again.
    await h.store.commit({ seen: [{ id: "d1", at: 500 }] });
    assert.equal(await h.store.pruneSeen(400), 1);
    assert.deepEqual(await seenOf(h.store, ["d1", "d3"]), [true, false]);
    await assert.rejects(h.store.pruneSeen(NaN), TypeError);
  });

  test("pruneSeen() deletes more marks than one write can hold", async (h) => {
    for (let round = 0; round < 3; round++) {
      const seen = Array.from({ length: 300 }, (_, i) => ({
        id: `r${round}-${"x".repeat(100)}-${i}`,
        at: round * 1000 + i,
      }));
      await h.store.commit({ seen });
    }
    assert.equal(await h.store.pruneSeen(2000), 600);
    assert.equal(await h.store.isSeen(`r1-${"x".repeat(100)}-299`), false);
    assert.equal(await h.store.isSeen(`r2-${"x".repeat(100)}-0`), true);
    assert.equal(await h.store.pruneSeen(Infinity), 300);
  });

  test("commit() of a batch with a bad record changes nothing", async (h) => {
    const good = (): Batch => ({
      identity: identity("kept"),
      peers: [peer("p9")],
      devices: [peer("d9", PeerType.DEVICE)],
      messages: [message("bob", "m9", 9), message("zed", "m1", 1)],
      outboxPut: [outbox("o9", 9)],
      outboxDelete: ["o1"],
      deletePeers: ["p1"],
      deleteDevices: ["d1"],
      seen: [{ id: "s9", at: 9 }],
      quarantinePut: [quarantined("q9", 9)],
      quarantineDelete: ["q1"],
      pluginPut: [pluginRecord("reactions", "k9", "after")],
      pluginDelete: [{ namespace: "reactions", key: "k1" }],
    });
    await h.store.commit({
      identity: identity("before"),
      peers: [peer("p1")],
      devices: [peer("d1", PeerType.DEVICE)],
      messages: [message("bob", "m1", 1)],
      outboxPut: [outbox("o1", 1)],
      seen: [{ id: "s1", at: 1 }],
      quarantinePut: [quarantined("q1", 1)],
      pluginPut: [pluginRecord("reactions", "k1", "before")],
    });
    const before = await snapshot(h.store);

    const noUuid = message("bob", "x", 1);
    noUuid.message!.status!.uuid = "";
    const noStatus = create(DbMessageSchema, { peerUid: "bob", message: { data: "no status" } });
    const notATime = message("bob", "x", 1);
    notATime.storedAt = NaN;
    const unencodable = outbox("o5", 1);
    unencodable.attempts = -1.5; // a uint32: the protobuf writer refuses it
    const big = peer("big");
    big.avatar = new Uint8Array(factory.recordBytesMax + 1);
    const bad: [string, Batch, typeof TypeError | typeof RangeError][] = [
      ["a message with no uuid", { messages: [noUuid] }, TypeError],
      ["a message with no status", { messages: [noStatus] }, TypeError],
      ["a message with no peerUid", { messages: [message("", "x", 1)] }, TypeError],
      ["a message stored at NaN", { messages: [notATime] }, TypeError],
      ["a record that cannot be encoded", { outboxPut: [unencodable] }, TypeError],
      ["a peer with no uid", { peers: [peer("")] }, TypeError],
      ["a device with no uid", { devices: [peer("", PeerType.DEVICE)] }, TypeError],
      ["an outbox entry with no id", { outboxPut: [outbox("", 1)] }, TypeError],
      ["a quarantined message with no id", { quarantinePut: [quarantined("", 1)] }, TypeError],
      [
        "a quarantined message both upserted and deleted",
        { quarantinePut: [quarantined("q5", 1)], quarantineDelete: ["q5"] },
        TypeError,
      ],
      [
        "a record of the wrong type",
        { peers: [outbox("o5", 1) as unknown as PeerRecord] },
        TypeError,
      ],
      ["a seen mark with no id", { seen: [{ id: "", at: 1 }] }, TypeError],
      ["a seen mark with a fractional time", { seen: [{ id: "s5", at: 0.5 }] }, TypeError],
      ["a lone surrogate in a key", { peers: [peer("\uD800")] }, TypeError],
      ["a peer both upserted and deleted", { peers: [peer("p5")], deletePeers: ["p5"] }, TypeError],
      ["a record over the adapter's size limit", { peers: [big] }, RangeError],
      ["a plugin record with no namespace", { pluginPut: [pluginRecord("", "k", "x")] }, TypeError],
      ["a plugin record with no key", { pluginPut: [pluginRecord("edits", "", "x")] }, TypeError],
      [
        "a plugin record whose value is not bytes",
        { pluginPut: [{ namespace: "edits", key: "k", value: "text" as unknown as Uint8Array }] },
        TypeError,
      ],
      [
        "a plugin record both upserted and deleted",
        {
          pluginPut: [pluginRecord("edits", "k5", "x")],
          pluginDelete: [{ namespace: "edits", key: "k5" }],
        },
        TypeError,
      ],
      [
        "a plugin record over the adapter's size limit",
        {
          pluginPut: [{
            namespace: "edits",
            key: "big",
            value: new Uint8Array(factory.recordBytesMax + 1),
          }],
        },
        RangeError,
      ],
    ];
    for (const [what, extra, type] of bad) {
      const batch = good();
      for (const [field, value] of Object.entries(extra)) {
        const list = batch[field as keyof Batch] as unknown[];
        // The bad record goes last, after good ones that an eager adapter would already have written.
        (batch as Record<string, unknown>)[field] = [...(list ?? []), ...(value as unknown[])];
      }
      await assert.rejects(h.store.commit(batch), type, what);
      assert.deepEqual(await snapshot(h.store), before, `${what} changed the store`);
    }
    await h.store.commit(good());
    assert.notDeepEqual(await snapshot(h.store), before, "the good part alone commits");
  });

  test("plugin records: one collection per namespace, upserted and deleted by key, listed by prefix in key order, durable", async (h) => {
    const text = (r: { value: Uint8Array }) => new TextDecoder().decode(r.value);
    await h.store.commit({
      pluginPut: [
        pluginRecord("reactions", "m2/bob", "👍"),
        pluginRecord("reactions", "m1/bob", "❤"),
        pluginRecord("reactions", "m1/alice", "😺"),
        pluginRecord("reactions", "m1/\u{1F600}", "astral"),
        pluginRecord("reactions", "m1/\uFFFD", "bmp"),
        pluginRecord("edits", "m1/bob", "an edit"),
      ],
    });
    const list = async (namespace: string, prefix?: string) =>
      (await h.store.listPluginRecords(namespace, prefix)).map((r) => `${r.key}=${text(r)}`);
    // Code point order, as UTF-8 bytes sort: U+FFFD before U+1F600.
    assert.deepEqual(await list("reactions", "m1/"), [
      "m1/alice=😺",
      "m1/bob=❤",
      "m1/\uFFFD=bmp",
      "m1/\u{1F600}=astral",
    ]);
    assert.deepEqual(await list("reactions", "m2"), ["m2/bob=👍"]);
    assert.deepEqual(await list("reactions", "m3"), []);
    assert.deepEqual(await list("edits"), ["m1/bob=an edit"]);
    assert.deepEqual(await list("deletions"), []);
    assert.equal(text({ value: (await h.store.getPluginRecord("edits", "m1/bob"))! }), "an edit");
    assert.equal(await h.store.getPluginRecord("edits", "m2/bob"), undefined);
    assert.equal(await h.store.getPluginRecord("chat", "m1/bob"), undefined);
    await h.store.commit({
      pluginPut: [pluginRecord("reactions", "m1/bob", "👎")],
      pluginDelete: [{ namespace: "reactions", key: "m2/bob" }, { namespace: "x", key: "none" }],
    });
    await h.reopen();
    assert.deepEqual(await list("reactions", "m"), [
      "m1/alice=😺",
      "m1/bob=👎",
      "m1/\uFFFD=bmp",
      "m1/\u{1F600}=astral",
    ]);
    const read = (await h.store.getPluginRecord("reactions", "m1/bob"))!;
    read[0] ^= 0xff; // a caller's copy: the store keeps its own
    assert.equal(text({ value: (await h.store.getPluginRecord("reactions", "m1/bob"))! }), "👎");
  });

  test("commit() is durable: an acknowledged commit survives close() and reopen", async (h) => {
    const all: Batch = {
      identity: identity("me"),
      peers: [peer("bob"), peer("carol")],
      devices: [peer("laptop", PeerType.DEVICE)],
      messages: [message("bob", "m1", 1), message("bob", "m2", 2), message("carol", "m1", 3)],
      outboxPut: [outbox("o1", 1), outbox("o2", 2)],
      seen: [{ id: "s1", at: 1 }, { id: "s2", at: 2 }],
    };
    await h.store.commit(all);
    await h.store.commit({ outboxDelete: ["o1"], messages: [message("bob", "m1", 5, "moved")] });
    await h.store.commit({ deletePeers: ["carol"], seen: [{ id: "s1", at: 9 }] });
    const before = await snapshot(h.store);
    await h.reopen();
    assert.deepEqual(await snapshot(h.store), before);
    assert.deepEqual(uuids(await h.store.listMessages("bob", { limit: 1 })), ["m1"]);
    // And the reopened store is writable.
    await h.store.commit({ seen: [{ id: "s3", at: 3 }] });
    assert.equal(await h.store.isSeen("s3"), true);
  });

  test("records read back equal what was written, and mutating them does not change the store", async (h) => {
    const me = identity("me");
    me.servers.push(create(ServerCardSchema, { url: "http://relay.example", name: "home" }));
    me.hiddenPeers.push("hidden");
    const bob = peer("bob", PeerType.CONTACT, "Bob");
    bob.avatar = new Uint8Array([1, 2, 3]);
    bob.ratchet = new Uint8Array([9, 9]);
    const laptop = peer("laptop", PeerType.DEVICE, "Laptop");
    const m = message("bob", "m1", 7, "hello");
    m.filePaths.push("/tmp/a.png");
    m.message!.files.push(
      create(FileMetaSchema, { name: "a.png", mime: "image/png", sizeBytes: 3 }),
    );
    const o = outbox("o1", 3);
    const written: Batch = {
      identity: me,
      peers: [bob],
      devices: [laptop],
      messages: [m],
      outboxPut: [o],
    };
    const expected = structuredClone(written);
    await h.store.commit(written);

    // Mutating what was committed does not reach the store.
    me.deviceName = "changed";
    bob.name = "changed";
    bob.avatar[0] = 42;
    m.message!.data = "changed";
    o.attempts = 99;

    const check = async (): Promise<void> => {
      assertRecords(IdentityRecordSchema, [await h.store.loadIdentity()], [expected.identity!]);
      assertRecords(PeerRecordSchema, await h.store.listPeers(), expected.peers!);
      assertRecords(PeerRecordSchema, await h.store.listDevices(), expected.devices!);
      assertRecords(DbMessageSchema, await h.store.listMessages("bob"), expected.messages!);
      assertRecords(DbMessageSchema, [await h.store.getMessage("bob", "m1")], expected.messages!);
      assertRecords(OutboxEntrySchema, await h.store.listOutbox(), expected.outboxPut!);
    };
    await check();

    // Mutating what was read does not reach the store either.
    (await h.store.loadIdentity())!.deviceName = "changed";
    (await h.store.listPeers())[0].avatar[0] = 42;
    (await h.store.listDevices())[0].name = "changed";
    (await h.store.listMessages("bob"))[0].message!.data = "changed";
    (await h.store.getMessage("bob", "m1"))!.message!.status!.uuid = "changed";
    (await h.store.listOutbox())[0].attempts = 99;
    await check();
  });

  test("commit() of a large batch (200 messages, 50 seen marks, 10 outbox entries) applies all of it", async (h) => {
    const messages = Array.from(
      { length: 200 },
      (_, i) => message(`peer${i % 4}`, `uuid-${String(i).padStart(3, "0")}`, i, `text ${i}`),
    );
    const seen = Array.from({ length: 50 }, (_, i) => ({ id: `dedup-${i}`, at: 1000 + i }));
    const outboxPut = Array.from({ length: 10 }, (_, i) => outbox(`out-${i}`, i));
    await h.store.commit({ identity: identity("me"), messages, seen, outboxPut });
    assert.deepEqual(await h.store.listConversations(), ["peer0", "peer1", "peer2", "peer3"]);
    for (let p = 0; p < 4; p++) {
      const got = await h.store.listMessages(`peer${p}`);
      assert.equal(got.length, 50);
      assertRecords(DbMessageSchema, got, messages.filter((_, i) => i % 4 === p));
    }
    assert.deepEqual(await seenOf(h.store, seen.map((s) => s.id)), seen.map(() => true));
    assert.equal((await h.store.listOutbox()).length, 10);
    // Re-storing every message at a new time moves each one exactly once.
    const moved = messages.map((m) => {
      const copy = clone(DbMessageSchema, m);
      copy.storedAt = 10_000 - m.storedAt;
      return copy;
    });
    await h.store.commit({ messages: moved });
    const peer0 = await h.store.listMessages("peer0", { limit: 50 });
    assert.equal(peer0.length, 50);
    assert.equal(peer0[0].message?.status?.uuid, "uuid-196");
  });

  test("close() is idempotent and a closed store refuses to be used", async (h) => {
    await h.store.close();
    await h.store.close();
    await assert.rejects(h.store.listPeers(), TypeError);
    await assert.rejects(h.store.commit({ seen: [{ id: "s", at: 1 }] }), TypeError);
    await h.reopen();
    assert.equal(await h.store.isSeen("s"), false);
  });
}

interface Handle {
  store: Store;
  reopen(): Promise<Store>;
}

function identity(deviceName: string): IdentityRecord {
  return create(IdentityRecordSchema, {
    uid: "id-1",
    deviceUid: "dev-1",
    deviceName,
    createdAt: 1_700_000_000_000,
    root: { publicKey: new Uint8Array([1, 2, 3]), privateKey: new Uint8Array([4, 5, 6]) },
  } as never);
}

function peer(uid: string, type: PeerType = PeerType.CONTACT, name = ""): PeerRecord {
  return create(PeerRecordSchema, { uid, type, name, updatedAt: 5, visible: true });
}

function message(peerUid: string, uuid: string, storedAt: number, data = uuid): DbMessage {
  return create(DbMessageSchema, {
    peerUid,
    storedAt,
    message: { type: "chat", data, status: { uuid, sent: storedAt } },
  });
}

function outbox(id: string, queuedAt: number): OutboxEntry {
  return create(OutboxEntrySchema, { id, queuedAt, messageUuid: `m-${id}`, peerUid: "bob" });
}

function quarantined(id: string, at: number): QuarantineRecord {
  return create(QuarantineRecordSchema, {
    id,
    at,
    queue: "lookup-1",
    packed: { destination: "lookup-1", payload: new Uint8Array([1, 2, 3]) },
    errorCode: "BadSignature",
    errorMessage: `cannot open ${id}`,
  });
}

const texts = (ms: DbMessage[]): string[] => ms.map((m) => m.message?.data ?? "");
const uuids = (ms: DbMessage[]): string[] => ms.map((m) => m.message?.status?.uuid ?? "");
const ids = (es: (OutboxEntry | QuarantineRecord)[]): string[] => es.map((e) => e.id);

function seenOf(store: Store, idList: string[]): Promise<boolean[]> {
  return Promise.all(idList.map((id) => store.isSeen(id)));
}

function assertRecords<D extends DescMessage>(
  schema: D,
  got: (MessageShape<D> | undefined)[],
  want: MessageShape<D>[],
): void {
  assert.equal(got.length, want.length, `${schema.typeName}: count`);
  got.forEach((g, i) => {
    assert.ok(g, `${schema.typeName}[${i}] missing`);
    assert.ok(
      equals(schema, g, want[i]),
      `${schema.typeName}[${i}]: got ${toJsonString(schema, g)}, want ${
        toJsonString(schema, want[i])
      }`,
    );
  });
}

/** Everything the port can show of a store, as comparable JSON. */
async function snapshot(store: Store): Promise<unknown> {
  const identityRecord = await store.loadIdentity();
  const conversations = await store.listConversations();
  const probeIds = ["s1", "s5", "s9"];
  return {
    identity: identityRecord && toJsonString(IdentityRecordSchema, identityRecord),
    peers: (await store.listPeers()).map((p) => toJsonString(PeerRecordSchema, p)),
    devices: (await store.listDevices()).map((p) => toJsonString(PeerRecordSchema, p)),
    outbox: (await store.listOutbox()).map((e) => toJsonString(OutboxEntrySchema, e)),
    quarantine: (await store.listQuarantine()).map((q) => toJsonString(QuarantineRecordSchema, q)),
    conversations,
    messages: await Promise.all(
      conversations.map(async (c) =>
        (await store.listMessages(c)).map((m) => toJsonString(DbMessageSchema, m))
      ),
    ),
    newest: await Promise.all(
      conversations.map(async (c) => uuids(await store.listMessages(c, { limit: 1 }))),
    ),
    seen: await seenOf(store, probeIds),
    plugin: await Promise.all(
      ["reactions", "edits"].map(async (ns) =>
        (await store.listPluginRecords(ns)).map((r) => [r.key, [...r.value]])
      ),
    ),
  };
}

function pluginRecord(namespace: string, key: string, value: string) {
  return { namespace, key, value: new TextEncoder().encode(value) };
}

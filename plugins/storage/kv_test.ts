import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { Store } from "../../ports/mod.ts";
import { DbMessageSchema } from "../../proto/gen/meow_pb.ts";
import { KV_MUTATIONS_MAX, KV_VALUE_BYTES_MAX, KvStore } from "./kv.ts";
import { storeConformance } from "./store_conformance.ts";
import { cipherConformance, type RecordPlace } from "./cipher_conformance.ts";
import { SEAL_OVERHEAD_BYTES } from "./cipher.ts";

const dirs = new WeakMap<Store, string>();

storeConformance({
  name: "KvStore",
  recordBytesMax: KV_VALUE_BYTES_MAX,
  open: async () => {
    const dir = await Deno.makeTempDir({ prefix: "meowsync_kv_" });
    const store = await KvStore.open(`${dir}/device.kv`);
    dirs.set(store, dir);
    return store;
  },
  reopen: async (store) => {
    const dir = dirs.get(store)!;
    await store.close();
    const next = await KvStore.open(`${dir}/device.kv`);
    dirs.set(next, dir);
    return next;
  },
  dispose: async (store) => {
    await store.close();
    await Deno.remove(dirs.get(store)!, { recursive: true });
  },
});

const message = (peerUid: string, uuid: string, storedAt: number) =>
  create(DbMessageSchema, { peerUid, storedAt, message: { status: { uuid } } });

Deno.test("KvStore.commit() refuses a batch over Deno KV's mutation limit and writes nothing", async () => {
  const store = await KvStore.open(":memory:");
  try {
    const messages = Array.from({ length: 400 }, (_, i) => message("bob", `m${i}`, i));
    await assert.rejects(
      store.commit({ messages }),
      (e: Error) => e instanceof RangeError && e.message.includes("KV_MUTATIONS_MAX"),
    );
    assert.deepEqual(await store.listConversations(), []);
    assert.ok(400 * 3 > KV_MUTATIONS_MAX);
  } finally {
    await store.close();
  }
});

Deno.test("KvStore.commit() refuses a batch over Deno KV's total size limit", async () => {
  const store = await KvStore.open(":memory:");
  try {
    const messages = Array.from({ length: 13 }, (_, i) => {
      const m = message("bob", `m${i}`, i);
      m.message!.appdata = new Uint8Array(65_000);
      return m;
    });
    await assert.rejects(store.commit({ messages }), /KV_ATOMIC_BYTES_MAX/);
    await store.commit({ messages: messages.slice(0, 10) });
    assert.equal((await store.listMessages("bob")).length, 10);
  } finally {
    await store.close();
  }
});

Deno.test("KvStore with different prefixes shares one database without sharing data", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_kv_" });
  try {
    // One handle at a time: a local KV file takes one writer, and each handle runs background
    // writes of its own, so two open handles sometimes fail a commit with "database is locked".
    const path = `${dir}/shared.kv`;
    const phone = await KvStore.open(path, { prefix: ["dev", "phone"] });
    await phone.commit({ messages: [message("bob", "m1", 1)], seen: [{ id: "d1", at: 1 }] });
    await phone.close();
    const laptop = await KvStore.open(path, { prefix: ["dev", "laptop"] });
    assert.deepEqual(await laptop.listConversations(), []);
    assert.equal(await laptop.isSeen("d1"), false);
    assert.equal(await laptop.pruneSeen(Infinity), 0);
    await laptop.close();
    const again = await KvStore.open(path, { prefix: ["dev", "phone"] });
    assert.equal(await again.isSeen("d1"), true);
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("KvStore.commit() calls racing on one handle keep the order index exact", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_kv_" });
  try {
    const store = await KvStore.open(`${dir}/device.kv`, { commitAttemptsMax: 50 });
    // Interleaved commits re-store the same messages at different times: without the check on
    // the counter, two commits reading the same old storedAt would each leave an order key behind.
    const writes: Promise<void>[] = [];
    for (let round = 0; round < 10; round++) {
      writes.push(
        store.commit({ messages: [message("bob", "m1", round), message("bob", "m2", 99)] }),
      );
      writes.push(store.commit({ messages: [message("bob", "m1", 50 + round)] }));
    }
    await Promise.all(writes);
    assert.equal((await store.listMessages("bob")).length, 2);
    assert.equal((await store.listMessages("bob", { limit: 10 })).length, 2);
    await store.close();
    const kv = await Deno.openKv(`${dir}/device.kv`);
    let orderKeys = 0;
    for await (const _ of kv.list({ prefix: ["msg_order"] })) orderKeys++;
    kv.close();
    assert.equal(orderKeys, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ─── At-rest encryption ──────────────────────────────────────────────────────

/** The Deno KV key of a record (the store has no prefix). */
const kvKey = (place: RecordPlace): Deno.KvKey =>
  place.table === "identity"
    ? ["identity"]
    : place.table === "message"
    ? ["msg", place.peerUid, place.uuid]
    : [place.table, place.id];

/** Runs `f` on the KV database at `path`, opened directly (the store closed). */
async function withKv<T>(path: string, f: (kv: Deno.Kv) => Promise<T>): Promise<T> {
  const kv = await Deno.openKv(path);
  try {
    return await f(kv);
  } finally {
    kv.close();
  }
}

cipherConformance({
  name: "KvStore",
  file: "device.kv",
  recordBytesMax: KV_VALUE_BYTES_MAX - SEAL_OVERHEAD_BYTES,
  open: (path, cipher) => KvStore.open(path, { cipher }),
  files: (path) => [path, `${path}-wal`, `${path}-shm`],
  readRaw: (path, place) =>
    withKv(path, async (kv) => {
      const entry = await kv.get<Uint8Array>(kvKey(place));
      assert.ok(entry.value instanceof Uint8Array, `no record at ${JSON.stringify(place)}`);
      return entry.value;
    }),
  writeRaw: (path, place, bytes) =>
    withKv(path, async (kv) => {
      assert.ok((await kv.set(kvKey(place), bytes)).ok);
    }),
});

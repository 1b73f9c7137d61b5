/**
 * The at-rest encryption tests every store adapter with a `cipher` option
 * passes: the whole store conformance suite with a cipher, records
 * round-trip through a reopen, the wrong key is an
 * {@linkcode UnreadableRecord} (never garbage), a record swapped or copied
 * to another store key does not open there, no record text reaches the files
 * on disk while the keys stay readable, and the files are the owner's only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { Store } from "../../ports/mod.ts";
import { containsBytes, SeededRandom } from "../../crypto/mod.ts";
import {
  DbMessageSchema,
  IdentityRecordSchema,
  OutboxEntrySchema,
  PeerRecordSchema,
} from "../../proto/mod.ts";
import { type StoreCipher, UnreadableRecord, xchachaCipher } from "./cipher.ts";
import { storeConformance } from "./store_conformance.ts";

/** Where a record lives in a store, as the at-rest tests name it to the adapter. */
export type RecordPlace =
  | { table: "identity" }
  | { table: "peer" | "device" | "outbox"; id: string }
  | { table: "message"; peerUid: string; uuid: string };

/** How the at-rest tests open an adapter. */
export interface CipherConformance {
  /** The adapter's name as its errors say it ("SqliteStore"). */
  name: string;
  /** The store's file name in a fresh directory ("device.db"). */
  file: string;
  /** The largest encoded record the adapter accepts with a cipher, in bytes. */
  recordBytesMax: number;
  /** Opens the store at `path`, with `cipher` when given. */
  open(path: string, cipher?: StoreCipher): Promise<Store>;
  /** The files that hold the store at `path`, the main one first (its WAL and so on after). */
  files(path: string): string[];
  /** The stored (sealed) bytes at `place` in the closed store at `path`, straight from the database. */
  readRaw(path: string, place: RecordPlace): Promise<Uint8Array>;
  /**
   * Writes `bytes` as the stored bytes at `place` in the closed store at
   * `path`, straight into the database (a new row when there is none; a new
   * message need not be listed by `listMessages` with a limit).
   */
  writeRaw(path: string, place: RecordPlace, bytes: Uint8Array): Promise<void>;
}

const SECRET_TEXT = "the owl flies at midnight";

/**
 * Registers the at-rest encryption tests of one adapter.
 *
 * @example
 * ```ts ignore
 * cipherConformance({
 *   name: "SqliteStore",
 *   file: "device.db",
 *   recordBytesMax: MESSAGE_BYTES_MAX,
 *   open: (path, cipher) => SqliteStore.open(path, { cipher }),
 *   files: (path) => [path, `${path}-wal`, `${path}-shm`],
 *   readRaw: (path, place) => readRow(path, place),
 *   writeRaw: (path, place, bytes) => writeRow(path, place, bytes),
 * });
 * ```
 */
export function cipherConformance(adapter: CipherConformance): void {
  const random = new SeededRandom(7);
  const key = random.bytes(32);
  const sealed = (): StoreCipher => xchachaCipher(key, random);

  const dirs = new WeakMap<Store, string>();
  storeConformance({
    name: `${adapter.name} with a cipher`,
    recordBytesMax: adapter.recordBytesMax,
    open: async () => {
      const dir = await Deno.makeTempDir({ prefix: "meowsync_cipher_" });
      const store = await adapter.open(`${dir}/${adapter.file}`, sealed());
      dirs.set(store, dir);
      return store;
    },
    reopen: async (store) => {
      const dir = dirs.get(store)!;
      await store.close();
      const next = await adapter.open(`${dir}/${adapter.file}`, sealed());
      dirs.set(next, dir);
      return next;
    },
    dispose: async (store) => {
      await store.close();
      await Deno.remove(dirs.get(store)!, { recursive: true });
    },
  });

  async function withSealedStore(body: (path: string, store: Store) => Promise<void>) {
    const dir = await Deno.makeTempDir({ prefix: "meowsync_cipher_" });
    try {
      const path = `${dir}/${adapter.file}`;
      const store = await adapter.open(path, sealed());
      await store.commit({
        identity: create(IdentityRecordSchema, { uid: "id-1", deviceName: SECRET_TEXT }),
        peers: [create(PeerRecordSchema, { uid: "bob", name: `${SECRET_TEXT} (peer)` })],
        devices: [create(PeerRecordSchema, { uid: "laptop", name: `${SECRET_TEXT} (device)` })],
        messages: [
          create(DbMessageSchema, {
            peerUid: "bob",
            storedAt: 1,
            message: { type: "chat", data: `${SECRET_TEXT} (message)`, status: { uuid: "m1" } },
          }),
        ],
        outboxPut: [create(OutboxEntrySchema, { id: "o1", messageUuid: SECRET_TEXT })],
      });
      await body(path, store);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }

  Deno.test(`${adapter.name} with a cipher round-trips every record through a reopen`, async () => {
    await withSealedStore(async (path, store) => {
      // A second commit re-stores m1 at another time: the adapter reads the sealed old row.
      await store.commit({
        messages: [
          create(DbMessageSchema, {
            peerUid: "bob",
            storedAt: 2,
            message: { type: "chat", data: `${SECRET_TEXT} (message)`, status: { uuid: "m1" } },
          }),
        ],
      });
      await store.close();
      const again = await adapter.open(path, sealed());
      try {
        assert.equal((await again.loadIdentity())?.deviceName, SECRET_TEXT);
        assert.equal((await again.listPeers())[0].name, `${SECRET_TEXT} (peer)`);
        assert.equal((await again.listDevices())[0].name, `${SECRET_TEXT} (device)`);
        const message = await again.getMessage("bob", "m1");
        assert.equal(message?.message?.data, `${SECRET_TEXT} (message)`);
        assert.equal(message?.storedAt, 2);
        const newest = await again.listMessages("bob", { limit: 1 });
        assert.deepEqual(newest.map((m) => m.message?.status?.uuid), ["m1"]);
        assert.equal((await again.listMessages("bob")).length, 1);
        assert.equal((await again.listOutbox())[0].messageUuid, SECRET_TEXT);
      } finally {
        await again.close();
      }
    });
  });

  Deno.test(`${adapter.name} with a cipher under the wrong key fails with UnreadableRecord`, async () => {
    await withSealedStore(async (path, store) => {
      await store.close();
      const other = new SeededRandom(8);
      const wrong = await adapter.open(path, xchachaCipher(other.bytes(32), other));
      try {
        await assert.rejects(wrong.loadIdentity(), (e: Error) => {
          assert.ok(e instanceof UnreadableRecord, `${e}`);
          assert.match(
            e.message,
            new RegExp(`^Cannot read the identity of ${adapter.name}: .*wrong key`),
          );
          return true;
        });
        await assert.rejects(wrong.listPeers(), UnreadableRecord);
        await assert.rejects(wrong.listMessages("bob"), UnreadableRecord);
        await assert.rejects(wrong.listMessages("bob", { limit: 1 }), UnreadableRecord);
        await assert.rejects(wrong.listOutbox(), UnreadableRecord);
      } finally {
        await wrong.close();
      }
      // Without a cipher the sealed bytes do not decode either: never silently garbage.
      const plain = await adapter.open(path);
      try {
        await assert.rejects(plain.loadIdentity());
      } finally {
        await plain.close();
      }
    });
  });

  Deno.test(`${adapter.name} with a cipher leaves no record text in its files`, async () => {
    await withSealedStore(async (path, store) => {
      // Before close: the write-ahead log holds the commits; after close: the main file.
      const needle = new TextEncoder().encode(SECRET_TEXT.slice(4, 16));
      const files = () =>
        Promise.all(
          adapter.files(path).map((f) => Deno.readFile(f).catch(() => new Uint8Array(0))),
        );
      const open = await files();
      assert.ok(open.some((b) => b.length > 0), "the store wrote its files");
      for (const bytes of open) assert.equal(containsBytes(bytes, needle), false);
      await store.close();
      for (const bytes of await files()) assert.equal(containsBytes(bytes, needle), false);
      // The keys stay readable, as documented.
      const keys = (await files()).some((b) => containsBytes(b, new TextEncoder().encode("bob")));
      assert.equal(keys, true);
    });
  });

  const peer = (uid: string) => create(PeerRecordSchema, { uid, name: `${uid}'s name` });
  const chat = (peerUid: string, uuid: string, storedAt: number) =>
    create(DbMessageSchema, {
      peerUid,
      storedAt,
      message: { type: "chat", data: `${uuid} of ${peerUid}`, status: { uuid } },
    });
  /** A sealed store with two of each keyed record, closed; `body` gets its path. */
  async function withClosedStore(body: (path: string) => Promise<void>) {
    const dir = await Deno.makeTempDir({ prefix: "meowsync_cipher_" });
    try {
      const path = `${dir}/${adapter.file}`;
      const store = await adapter.open(path, sealed());
      await store.commit({
        identity: create(IdentityRecordSchema, { uid: "id-1", deviceName: "phone" }),
        peers: [peer("bob"), peer("carol")],
        devices: [peer("laptop"), peer("tablet")],
        messages: [chat("bob", "m1", 1), chat("bob", "m2", 2), chat("carol", "m3", 3)],
        outboxPut: [
          create(OutboxEntrySchema, { id: "o1", queuedAt: 1, messageUuid: "m1" }),
          create(OutboxEntrySchema, { id: "o2", queuedAt: 2, messageUuid: "m2" }),
        ],
      });
      await store.close();
      await body(path);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  const unreadable = (e: Error) => {
    assert.ok(e instanceof UnreadableRecord, `${e}`);
    assert.match(e.message, /moved/);
    return true;
  };

  Deno.test(`${adapter.name} with a cipher: a record swapped between two store keys does not open`, async () => {
    await withClosedStore(async (path) => {
      const swap = async (a: RecordPlace, b: RecordPlace) => {
        const [bytesA, bytesB] = [await adapter.readRaw(path, a), await adapter.readRaw(path, b)];
        await adapter.writeRaw(path, a, bytesB);
        await adapter.writeRaw(path, b, bytesA);
      };
      await swap({ table: "peer", id: "bob" }, { table: "peer", id: "carol" });
      await swap({ table: "device", id: "laptop" }, { table: "device", id: "tablet" });
      await swap({ table: "message", peerUid: "bob", uuid: "m1" }, {
        table: "message",
        peerUid: "bob",
        uuid: "m2",
      });
      await swap({ table: "outbox", id: "o1" }, { table: "outbox", id: "o2" });
      const store = await adapter.open(path, sealed());
      try {
        await assert.rejects(store.listPeers(), unreadable);
        await assert.rejects(store.listDevices(), unreadable);
        await assert.rejects(store.getMessage("bob", "m1"), unreadable);
        await assert.rejects(store.getMessage("bob", "m2"), unreadable);
        await assert.rejects(store.listMessages("bob"), unreadable);
        await assert.rejects(store.listMessages("bob", { limit: 1 }), unreadable);
        await assert.rejects(store.listOutbox(), unreadable);
        // What was not moved still opens.
        assert.equal((await store.loadIdentity())?.deviceName, "phone");
        assert.equal((await store.getMessage("carol", "m3"))?.message?.data, "m3 of carol");
      } finally {
        await store.close();
      }
    });
  });

  Deno.test(`${adapter.name} with a cipher: a record copied to another store key does not open there`, async () => {
    await withClosedStore(async (path) => {
      const copy = async (from: RecordPlace, to: RecordPlace) =>
        await adapter.writeRaw(path, to, await adapter.readRaw(path, from));
      // Same uid, another table: a contact must not turn into a sibling device.
      await copy({ table: "peer", id: "bob" }, { table: "device", id: "bob" });
      // Same uuid, another conversation; another uuid, same conversation.
      await copy({ table: "message", peerUid: "bob", uuid: "m1" }, {
        table: "message",
        peerUid: "carol",
        uuid: "m1",
      });
      await copy({ table: "message", peerUid: "bob", uuid: "m2" }, {
        table: "message",
        peerUid: "bob",
        uuid: "m9",
      });
      await copy({ table: "outbox", id: "o1" }, { table: "outbox", id: "o9" });
      await copy({ table: "identity" }, { table: "peer", id: "dave" });
      const store = await adapter.open(path, sealed());
      try {
        await assert.rejects(store.listDevices(), unreadable);
        await assert.rejects(store.getMessage("carol", "m1"), unreadable);
        await assert.rejects(store.listMessages("carol"), unreadable);
        await assert.rejects(store.getMessage("bob", "m9"), unreadable);
        await assert.rejects(store.listMessages("bob"), unreadable);
        await assert.rejects(store.listOutbox(), unreadable);
        await assert.rejects(store.listPeers(), unreadable);
        // The originals still open where they were sealed.
        assert.equal((await store.getMessage("bob", "m1"))?.message?.data, "m1 of bob");
        assert.equal((await store.getMessage("bob", "m2"))?.message?.data, "m2 of bob");
        assert.equal((await store.loadIdentity())?.uid, "id-1");
      } finally {
        await store.close();
      }
    });
  });

  Deno.test(`${adapter.name} creates its files readable by their owner only (0600)`, {
    ignore: Deno.build.os === "windows",
  }, async () => {
    await withSealedStore(async (path, store) => {
      const modes = async () => {
        const out: Record<string, number> = {};
        for (const file of adapter.files(path)) {
          const stat = await Deno.stat(file).catch(() => undefined);
          if (stat) out[file.slice(path.length) || "(main)"] = stat.mode! & 0o777;
        }
        return out;
      };
      // Open, the write-ahead log and its index exist besides the main file.
      const open = await modes();
      assert.ok(Object.keys(open).length >= 2, JSON.stringify(open));
      for (const [file, mode] of Object.entries(open)) {
        assert.equal(mode, 0o600, `${file}: 0${mode.toString(8)}`);
      }
      await store.close();
      const again = await adapter.open(path, sealed());
      await again.close();
      for (const [file, mode] of Object.entries(await modes())) {
        assert.equal(mode, 0o600, `${file}: 0${mode.toString(8)}`);
      }
    });
  });
}

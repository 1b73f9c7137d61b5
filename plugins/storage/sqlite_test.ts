import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { MESSAGE_BYTES_MAX } from "../../proto/codec.ts";
import type { Store } from "../../kernel/ports.ts";
import { create } from "@bufbuild/protobuf";
import { SeededRandom } from "../../kernel/crypto/mod.ts";
import {
  DbMessageSchema,
  IdentityRecordSchema,
  OutboxEntrySchema,
  PeerRecordSchema,
} from "../../proto/gen/meow_pb.ts";
import { type StoreCipher, UnreadableRecord, xchachaCipher } from "./cipher.ts";
import { SqliteStore } from "./sqlite.ts";
import { storeConformance } from "./store_conformance.ts";

const dirs = new WeakMap<Store, string>();

storeConformance({
  name: "SqliteStore",
  recordBytesMax: MESSAGE_BYTES_MAX,
  open: async () => {
    const dir = await Deno.makeTempDir({ prefix: "meowsync_sqlite_" });
    const store = await SqliteStore.open(`${dir}/device.db`);
    dirs.set(store, dir);
    return store;
  },
  reopen: async (store) => {
    const dir = dirs.get(store)!;
    await store.close();
    const next = await SqliteStore.open(`${dir}/device.db`);
    dirs.set(next, dir);
    return next;
  },
  dispose: async (store) => {
    await store.close();
    await Deno.remove(dirs.get(store)!, { recursive: true });
  },
});

Deno.test("SqliteStore.open() uses WAL and the exact seen table of the design", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_sqlite_" });
  try {
    const store = await SqliteStore.open(`${dir}/device.db`);
    await store.commit({ seen: [{ id: "d1", at: 1 }] });
    await store.close();
    const db = new DatabaseSync(`${dir}/device.db`);
    assert.deepEqual({ ...db.prepare("PRAGMA journal_mode").get() }, { journal_mode: "wal" });
    const seen = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'seen'").get() as {
      sql: string;
    };
    assert.equal(seen.sql, "CREATE TABLE seen (id TEXT PRIMARY KEY, seen_at INTEGER NOT NULL)");
    assert.deepEqual({ ...db.prepare("SELECT id, seen_at FROM seen").get() }, {
      id: "d1",
      seen_at: 1,
    });
    db.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteStore.open() refuses a file written by a newer schema version", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_sqlite_" });
  try {
    const db = new DatabaseSync(`${dir}/device.db`);
    db.exec("PRAGMA user_version = 99");
    db.close();
    await assert.rejects(SqliteStore.open(`${dir}/device.db`), /schema version is 99/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteStore.open(':memory:') works without files", async () => {
  const store = await SqliteStore.open(":memory:");
  await store.commit({ seen: [{ id: "d1", at: 1 }] });
  assert.equal(await store.isSeen("d1"), true);
  await store.close();
});

// ─── At-rest encryption ──────────────────────────────────────────────────────

const cipherRandom = new SeededRandom(7);
const cipherKey = cipherRandom.bytes(32);
const sealed = (): StoreCipher => xchachaCipher(cipherKey, cipherRandom);

storeConformance({
  name: "SqliteStore with a cipher",
  recordBytesMax: MESSAGE_BYTES_MAX,
  open: async () => {
    const dir = await Deno.makeTempDir({ prefix: "meowsync_sqlite_" });
    const store = await SqliteStore.open(`${dir}/device.db`, { cipher: sealed() });
    dirs.set(store, dir);
    return store;
  },
  reopen: async (store) => {
    const dir = dirs.get(store)!;
    await store.close();
    const next = await SqliteStore.open(`${dir}/device.db`, { cipher: sealed() });
    dirs.set(next, dir);
    return next;
  },
  dispose: async (store) => {
    await store.close();
    await Deno.remove(dirs.get(store)!, { recursive: true });
  },
});

const SECRET_TEXT = "the owl flies at midnight";

async function withSealedStore(
  body: (path: string, store: SqliteStore) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_sqlite_" });
  try {
    const store = await SqliteStore.open(`${dir}/device.db`, { cipher: sealed() });
    await store.commit({
      identity: create(IdentityRecordSchema, { uid: "id-1", deviceName: SECRET_TEXT }),
      peers: [create(PeerRecordSchema, { uid: "bob", name: `${SECRET_TEXT} (peer)` })],
      messages: [
        create(DbMessageSchema, {
          peerUid: "bob",
          storedAt: 1,
          message: { type: "chat", data: `${SECRET_TEXT} (message)`, status: { uuid: "m1" } },
        }),
      ],
      outboxPut: [create(OutboxEntrySchema, { id: "o1", messageUuid: SECRET_TEXT })],
    });
    await body(`${dir}/device.db`, store);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SqliteStore with a cipher round-trips every record through a reopen", async () => {
  await withSealedStore(async (path, store) => {
    await store.close();
    const again = await SqliteStore.open(path, { cipher: sealed() });
    assert.equal((await again.loadIdentity())?.deviceName, SECRET_TEXT);
    assert.equal((await again.listPeers())[0].name, `${SECRET_TEXT} (peer)`);
    assert.equal((await again.getMessage("bob", "m1"))?.message?.data, `${SECRET_TEXT} (message)`);
    assert.equal((await again.listMessages("bob", { limit: 1 }))[0].message?.status?.uuid, "m1");
    assert.equal((await again.listOutbox())[0].messageUuid, SECRET_TEXT);
    await again.close();
  });
});

Deno.test("SqliteStore with a cipher under the wrong key fails with UnreadableRecord", async () => {
  await withSealedStore(async (path, store) => {
    await store.close();
    const otherRandom = new SeededRandom(8);
    const wrong = await SqliteStore.open(path, {
      cipher: xchachaCipher(otherRandom.bytes(32), otherRandom),
    });
    try {
      await assert.rejects(wrong.loadIdentity(), (e: Error) => {
        assert.ok(e instanceof UnreadableRecord, `${e}`);
        assert.match(e.message, /^Cannot read the identity of SqliteStore: .*wrong key/);
        return true;
      });
      await assert.rejects(wrong.listPeers(), UnreadableRecord);
      await assert.rejects(wrong.listMessages("bob"), UnreadableRecord);
      // Without a cipher the sealed bytes do not decode either: never silently garbage.
      const plain = await SqliteStore.open(path);
      await assert.rejects(plain.loadIdentity());
      await plain.close();
    } finally {
      await wrong.close();
    }
  });
});

Deno.test("SqliteStore with a cipher leaves no record text in the database files", async () => {
  await withSealedStore(async (path, store) => {
    // Before close: the WAL holds the commits; after close: the checkpointed database.
    const needle = new TextEncoder().encode(SECRET_TEXT.slice(4, 16));
    const files = async () => {
      const out: Uint8Array[] = [];
      for (const suffix of ["", "-wal"]) {
        out.push(await Deno.readFile(path + suffix).catch(() => new Uint8Array(0)));
      }
      return out;
    };
    const open = await files();
    assert.ok(open.some((b) => b.length > 0));
    for (const bytes of open) assert.equal(containsBytes(bytes, needle), false);
    await store.close();
    for (const bytes of await files()) assert.equal(containsBytes(bytes, needle), false);
    // The keys stay readable, as documented.
    assert.equal(containsBytes(await Deno.readFile(path), new TextEncoder().encode("bob")), true);
  });
});

function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

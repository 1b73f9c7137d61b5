import assert from "node:assert/strict";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { MESSAGE_BYTES_MAX } from "../../proto/codec.ts";
import type { Store } from "../../ports/mod.ts";
import { SqliteStore } from "./sqlite.ts";
import { storeConformance } from "./store_conformance.ts";
import { cipherConformance, type RecordPlace } from "./cipher_conformance.ts";

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

/** The table, key columns and key values of a record's row. */
function row(place: RecordPlace): { table: string; columns: string[]; values: SQLInputValue[] } {
  switch (place.table) {
    case "identity":
      return { table: "identity", columns: ["k"], values: [0] };
    case "message":
      return {
        table: "messages",
        columns: ["peer_uid", "uuid"],
        values: [place.peerUid, place.uuid],
      };
    case "outbox":
      return { table: "outbox", columns: ["id"], values: [place.id] };
    default:
      return { table: `${place.table}s`, columns: ["uid"], values: [place.id] };
  }
}

/** Runs `f` on the SQLite file at `path`, opened directly (the store closed). */
function withDb<T>(path: string, f: (db: DatabaseSync) => T): Promise<T> {
  const db = new DatabaseSync(path);
  try {
    return Promise.resolve(f(db));
  } finally {
    db.close();
  }
}

cipherConformance({
  name: "SqliteStore",
  file: "device.db",
  recordBytesMax: MESSAGE_BYTES_MAX,
  open: (path, cipher) => SqliteStore.open(path, { cipher }),
  files: (path) => [path, `${path}-wal`, `${path}-shm`],
  readRaw: (path, place) =>
    withDb(path, (db) => {
      const { table, columns, values } = row(place);
      const where = columns.map((c) => `${c} = ?`).join(" AND ");
      const found = db.prepare(`SELECT data FROM ${table} WHERE ${where}`).get(...values);
      assert.ok(found?.data instanceof Uint8Array, `no record at ${JSON.stringify(place)}`);
      return found.data;
    }),
  writeRaw: (path, place, bytes) =>
    withDb(path, (db) => {
      const { table, columns, values } = row(place);
      // A new message or outbox row also needs its ordering column; 0 puts it first.
      const extra = table === "messages" ? ["stored_at"] : table === "outbox" ? ["queued_at"] : [];
      const all = [...columns, ...extra, "data"];
      db.prepare(
        `INSERT INTO ${table} (${all.join(", ")}) VALUES (${all.map(() => "?").join(", ")}) ` +
          `ON CONFLICT (${columns.join(", ")}) DO UPDATE SET data = excluded.data`,
      ).run(...values, ...extra.map(() => 0), bytes);
    }),
});

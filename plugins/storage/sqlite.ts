/**
 * The SQLite store, over the built-in `node:sqlite`: the agent's storage on a
 * machine with a disk. One file per device; one transaction per batch.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Batch, ListMessagesOptions, PluginRecord, Store } from "../../ports/mod.ts";
import { decode, MESSAGE_BYTES_MAX } from "../../proto/mod.ts";
import {
  type DbMessage,
  DbMessageSchema,
  type IdentityRecord,
  IdentityRecordSchema,
  type OutboxEntry,
  OutboxEntrySchema,
  type PeerRecord,
  PeerRecordSchema,
  type QuarantineRecord,
  QuarantineRecordSchema,
} from "../../proto/mod.ts";
import { checkBeforeMs, checkLimit, prepareBatch } from "./_prepare.ts";
import { run } from "./_run.ts";
import { openRecord, sealRecord, type StoreCipher, type StoreKeyPart } from "./cipher.ts";
import { createOwnerOnly } from "./_files.ts";

const NAME = "SqliteStore";

/** The schema version this code writes (`PRAGMA user_version`). */
const SCHEMA_VERSION = 1;

/**
 * How long a write waits for another connection's lock before failing, in ms.
 * One device normally has one connection; this covers a second process (a CLI
 * inspecting the file) holding a short transaction.
 */
const BUSY_TIMEOUT_MS = 5_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS identity (k INTEGER PRIMARY KEY CHECK (k = 0), data BLOB);
CREATE TABLE IF NOT EXISTS peers (uid TEXT PRIMARY KEY, data BLOB);
CREATE TABLE IF NOT EXISTS devices (uid TEXT PRIMARY KEY, data BLOB);
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, queued_at INTEGER, data BLOB);
CREATE TABLE IF NOT EXISTS quarantine (id TEXT PRIMARY KEY, at INTEGER, data BLOB);
CREATE TABLE IF NOT EXISTS messages (
  peer_uid TEXT,
  uuid TEXT,
  stored_at INTEGER,
  data BLOB,
  PRIMARY KEY (peer_uid, uuid)
);
CREATE INDEX IF NOT EXISTS messages_order ON messages (peer_uid, stored_at, uuid);
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, seen_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (seen_at);
CREATE TABLE IF NOT EXISTS plugin_records (
  namespace TEXT,
  key TEXT,
  data BLOB,
  PRIMARY KEY (namespace, key)
);
`;

const SQL = {
  identityGet: "SELECT data FROM identity WHERE k = 0",
  identityPut: "INSERT INTO identity (k, data) VALUES (0, ?) " +
    "ON CONFLICT (k) DO UPDATE SET data = excluded.data",
  peersList: "SELECT uid, data FROM peers ORDER BY uid",
  peerPut: "INSERT INTO peers (uid, data) VALUES (?, ?) " +
    "ON CONFLICT (uid) DO UPDATE SET data = excluded.data",
  peerDelete: "DELETE FROM peers WHERE uid = ?",
  devicesList: "SELECT uid, data FROM devices ORDER BY uid",
  devicePut: "INSERT INTO devices (uid, data) VALUES (?, ?) " +
    "ON CONFLICT (uid) DO UPDATE SET data = excluded.data",
  deviceDelete: "DELETE FROM devices WHERE uid = ?",
  outboxList: "SELECT id, data FROM outbox ORDER BY queued_at, id",
  outboxPut: "INSERT INTO outbox (id, queued_at, data) VALUES (?, ?, ?) " +
    "ON CONFLICT (id) DO UPDATE SET queued_at = excluded.queued_at, data = excluded.data",
  outboxDelete: "DELETE FROM outbox WHERE id = ?",
  quarantineList: "SELECT id, data FROM quarantine ORDER BY at, id",
  quarantinePut: "INSERT INTO quarantine (id, at, data) VALUES (?, ?, ?) " +
    "ON CONFLICT (id) DO UPDATE SET at = excluded.at, data = excluded.data",
  quarantineDelete: "DELETE FROM quarantine WHERE id = ?",
  messageGet: "SELECT data FROM messages WHERE peer_uid = ? AND uuid = ?",
  messagesList:
    "SELECT peer_uid, uuid, data FROM messages WHERE peer_uid = ? ORDER BY stored_at, uuid",
  messagesNewest: "SELECT peer_uid, uuid, data FROM (SELECT peer_uid, uuid, data, stored_at " +
    "FROM messages WHERE peer_uid = ? ORDER BY stored_at DESC, uuid DESC LIMIT ?) " +
    "ORDER BY stored_at, uuid",
  messagePut: "INSERT INTO messages (peer_uid, uuid, stored_at, data) VALUES (?, ?, ?, ?) " +
    "ON CONFLICT (peer_uid, uuid) DO UPDATE SET stored_at = excluded.stored_at, data = excluded.data",
  conversations: "SELECT DISTINCT peer_uid FROM messages ORDER BY peer_uid",
  seenGet: "SELECT 1 AS hit FROM seen WHERE id = ?",
  seenPut: "INSERT INTO seen (id, seen_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
  seenPrune: "DELETE FROM seen WHERE seen_at < ?",
  pluginGet: "SELECT data FROM plugin_records WHERE namespace = ? AND key = ?",
  pluginList: "SELECT namespace, key, data FROM plugin_records WHERE namespace = ? " +
    "AND substr(key, 1, length(?)) = ? ORDER BY key",
  pluginPut: "INSERT INTO plugin_records (namespace, key, data) VALUES (?, ?, ?) " +
    "ON CONFLICT (namespace, key) DO UPDATE SET data = excluded.data",
  pluginDelete: "DELETE FROM plugin_records WHERE namespace = ? AND key = ?",
} as const;

type Statements = { [K in keyof typeof SQL]: StatementSync };

/** Options for {@linkcode SqliteStore.open}. */
export interface SqliteStoreOptions {
  /**
   * Seals every record (the BLOB column of each table) before it is written
   * and opens it after it is read: at-rest encryption of the identity, the
   * peers, the messages and the outbox. Keys and ordering columns (uids,
   * uuids, ids, times) stay in the clear. Each record is bound to its table
   * and primary key (`["messages", peerUid, uuid]`, `["peers", uid]`,
   * `["identity", 0]`, …): moved to another row it does not open. A store
   * written with a cipher must be opened with the same one; a record that
   * does not open is an {@linkcode UnreadableRecord}.
   * @default {no cipher: records are stored as they are}
   */
  cipher?: StoreCipher;
}

/**
 * A {@linkcode Store} in one SQLite file, in WAL mode with `synchronous=FULL`:
 * a commit is on disk (the WAL fsynced) before `commit` resolves, because the
 * kernel sends a message right after committing the ratchet step that
 * encrypted it, and a ratchet step lost to a power cut would make the device
 * reuse a message key. (`NORMAL` is crash-safe but may drop the last commits.)
 *
 * The interface is async; SQLite here is synchronous, so every method does its
 * work at once and returns a settled promise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { SqliteStore } from "./sqlite.ts";
 * import { DbMessageSchema } from "../../proto/gen/meow_pb.ts";
 * const store = await SqliteStore.open(":memory:");
 * const message = create(DbMessageSchema, {
 *   peerUid: "bob",
 *   storedAt: 10,
 *   message: { type: "chat", data: "hi", status: { uuid: "m1" } },
 * });
 * await store.commit({ messages: [message], seen: [{ id: "m1", at: 10 }] });
 * assert((await store.listMessages("bob"))[0].message?.data === "hi");
 * await store.close();
 * ```
 */
export class SqliteStore implements Store {
  readonly #db: DatabaseSync;
  readonly #q: Statements;
  readonly #cipher: StoreCipher | undefined;

  private constructor(db: DatabaseSync, cipher: StoreCipher | undefined) {
    this.#db = db;
    this.#cipher = cipher;
    this.#q = Object.fromEntries(
      Object.entries(SQL).map(([name, sql]) => [name, db.prepare(sql)]),
    ) as Statements;
  }

  /**
   * Opens (creating if needed) the store in the SQLite file at `path`;
   * `":memory:"` gives a store that lives as long as the handle. A file that
   * does not exist yet is created readable by its owner only (0600); SQLite
   * gives its `-wal` and `-shm` files the same mode. With `options.cipher`
   * every record is sealed at rest (see {@linkcode SqliteStoreOptions}).
   *
   * @throws {Error} the file cannot be opened, or was written by a newer schema version
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SqliteStore } from "./sqlite.ts";
   * const store = await SqliteStore.open(":memory:");
   * assert((await store.listPeers()).length === 0);
   * await store.close();
   * ```
   */
  static open(path: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    return run(() => {
      if (path !== ":memory:" && path !== "") createOwnerOnly(path);
      const db = new DatabaseSync(path);
      try {
        db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
        db.exec("PRAGMA journal_mode = WAL"); // ":memory:" stays "memory": nothing to make durable
        db.exec("PRAGMA synchronous = FULL");
        const version = (db.prepare("PRAGMA user_version").get() as { user_version: number })
          .user_version;
        if (version > SCHEMA_VERSION) {
          throw new Error(
            `Cannot open ${NAME} at ${path}: its schema version is ${version}, ` +
              `newer than ${SCHEMA_VERSION}, the newest this code knows`,
          );
        }
        db.exec("BEGIN IMMEDIATE");
        try {
          db.exec(SCHEMA);
          db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
          db.exec("COMMIT");
        } catch (e) {
          if (db.isTransaction) db.exec("ROLLBACK");
          throw e;
        }
        return new SqliteStore(db, options.cipher);
      } catch (e) {
        db.close();
        throw e;
      }
    });
  }

  get #stmt(): Statements {
    if (!this.#db.isOpen) throw new TypeError(`Cannot use ${NAME}: it is closed`);
    return this.#q;
  }

  /** The identity record, if this device has one. */
  loadIdentity(): Promise<IdentityRecord | undefined> {
    return run(() => {
      const row = this.#stmt.identityGet.get() as Row | undefined;
      return row &&
        decode(IdentityRecordSchema, this.#open(bytesOf(row), IDENTITY_KEY, "the identity"));
    });
  }

  /** Every contact peer, by uid. */
  listPeers(): Promise<PeerRecord[]> {
    return run(() =>
      this.#all(this.#stmt.peersList, (r) => ["peers", r.uid!])
        .map((b) => decode(PeerRecordSchema, b))
    );
  }

  /** Every device peer (sibling), by uid. */
  listDevices(): Promise<PeerRecord[]> {
    return run(() =>
      this.#all(this.#stmt.devicesList, (r) => ["devices", r.uid!])
        .map((b) => decode(PeerRecordSchema, b))
    );
  }

  /** Every outbox entry, by queuedAt then id. */
  listOutbox(): Promise<OutboxEntry[]> {
    return run(() =>
      this.#all(this.#stmt.outboxList, (r) => ["outbox", r.id!])
        .map((b) => decode(OutboxEntrySchema, b))
    );
  }

  /** Every quarantined message, by at then id. */
  listQuarantine(): Promise<QuarantineRecord[]> {
    return run(() =>
      this.#all(this.#stmt.quarantineList, (r) => ["quarantine", r.id!])
        .map((b) => decode(QuarantineRecordSchema, b))
    );
  }

  /** One stored message by conversation and uuid. */
  getMessage(peerUid: string, uuid: string): Promise<DbMessage | undefined> {
    return run(() => {
      const row = this.#stmt.messageGet.get(peerUid, uuid) as Row | undefined;
      return row &&
        decode(DbMessageSchema, this.#open(bytesOf(row), messageKey(peerUid, uuid), "a message"));
    });
  }

  /** The messages of one conversation by storedAt then uuid; `limit` keeps the newest. */
  listMessages(peerUid: string, options: ListMessagesOptions = {}): Promise<DbMessage[]> {
    return run(() => {
      const limit = checkLimit(NAME, options.limit);
      const key = (r: Row) => messageKey(r.peer_uid!, r.uuid!);
      const rows = limit === undefined
        ? this.#all(this.#stmt.messagesList, key, peerUid)
        : this.#all(this.#stmt.messagesNewest, key, peerUid, limit);
      return rows.map((b) => decode(DbMessageSchema, b));
    });
  }

  /** The peer uids with at least one stored message, in uid order. */
  listConversations(): Promise<string[]> {
    return run(() =>
      (this.#stmt.conversations.all() as { peer_uid: string }[]).map((r) => r.peer_uid)
    );
  }

  /** Whether a dedup id is in the seen table. */
  isSeen(id: string): Promise<boolean> {
    return run(() => this.#stmt.seenGet.get(id) !== undefined);
  }

  /** One plugin record, by collection and key. */
  getPluginRecord(namespace: string, key: string): Promise<Uint8Array | undefined> {
    return run(() => {
      const row = this.#stmt.pluginGet.get(namespace, key) as Row | undefined;
      return row && this.#open(bytesOf(row), ["plugin_records", namespace, key], "a plugin record");
    });
  }

  /** The records of one plugin collection whose keys start with `prefix`, in key order. */
  listPluginRecords(namespace: string, prefix = ""): Promise<PluginRecord[]> {
    return run(() =>
      (this.#stmt.pluginList.all(namespace, prefix, prefix) as unknown as Row[]).map((row) => ({
        namespace,
        key: row.key!,
        value: this.#open(bytesOf(row), ["plugin_records", namespace, row.key!], "a plugin record"),
      }))
    );
  }

  /** Applies `batch` in one `BEGIN IMMEDIATE … COMMIT`, rolled back on any error. */
  commit(batch: Batch): Promise<void> {
    return run(() => {
      const q = this.#stmt;
      const p = prepareBatch(batch, {
        store: NAME,
        recordBytesMax: MESSAGE_BYTES_MAX,
        // Larger records could be written but not read back: decode refuses them.
        recordLimitName: "the record limit (MESSAGE_BYTES_MAX)",
      });
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const seal = (bytes: Uint8Array, key: readonly StoreKeyPart[]) =>
          sealRecord(this.#cipher, bytes, key);
        if (p.identity) q.identityPut.run(seal(p.identity, IDENTITY_KEY));
        for (const [uid, bytes] of p.peers) q.peerPut.run(uid, seal(bytes, ["peers", uid]));
        for (const uid of p.deletePeers) q.peerDelete.run(uid);
        for (const [uid, bytes] of p.devices) q.devicePut.run(uid, seal(bytes, ["devices", uid]));
        for (const uid of p.deleteDevices) q.deviceDelete.run(uid);
        for (const m of p.messages.values()) {
          q.messagePut.run(
            m.peerUid,
            m.uuid,
            m.storedAt,
            seal(m.bytes, messageKey(m.peerUid, m.uuid)),
          );
        }
        for (const e of p.outboxPut.values()) {
          q.outboxPut.run(e.id, e.queuedAt, seal(e.bytes, ["outbox", e.id]));
        }
        for (const id of p.outboxDelete) q.outboxDelete.run(id);
        for (const r of p.quarantinePut.values()) {
          q.quarantinePut.run(r.id, r.at, seal(r.bytes, ["quarantine", r.id]));
        }
        for (const id of p.quarantineDelete) q.quarantineDelete.run(id);
        for (const [id, at] of p.seen) q.seenPut.run(id, at);
        for (const r of p.pluginPut.values()) {
          q.pluginPut.run(
            r.namespace,
            r.key,
            seal(r.bytes, ["plugin_records", r.namespace, r.key]),
          );
        }
        for (const r of p.pluginDelete.values()) q.pluginDelete.run(r.namespace, r.key);
        this.#db.exec("COMMIT");
      } catch (e) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw e;
      }
    });
  }

  /** Deletes seen marks first seen before `beforeMs`; resolves with how many went. */
  pruneSeen(beforeMs: number): Promise<number> {
    return run(() => {
      checkBeforeMs(NAME, beforeMs);
      return Number(this.#stmt.seenPrune.run(beforeMs).changes);
    });
  }

  /** Closes the database; closing twice is harmless. */
  close(): Promise<void> {
    return run(() => {
      if (this.#db.isOpen) this.#db.close();
    });
  }

  /** The records `statement` selects, each opened at the key `keyOf` reads from its row. */
  #all(
    statement: StatementSync,
    keyOf: (row: Row) => StoreKeyPart[],
    ...params: (string | number)[]
  ): Uint8Array[] {
    return (statement.all(...params) as unknown as Row[]).map((row) =>
      this.#open(bytesOf(row), keyOf(row), "a record")
    );
  }

  /** Opens a record sealed to `key` (as it is without a cipher). */
  #open(bytes: Uint8Array, key: readonly StoreKeyPart[], what: string): Uint8Array {
    return openRecord(this.#cipher, bytes, key, what, NAME);
  }
}

/**
 * The store key a record is sealed to: its table, then its primary key
 * columns. The identity table's one row has the key `k = 0`.
 */
const IDENTITY_KEY: readonly StoreKeyPart[] = ["identity", 0];

/** The store key of a message row. */
function messageKey(peerUid: string, uuid: string): StoreKeyPart[] {
  return ["messages", peerUid, uuid];
}

/** A selected row: the record, and the key columns the statement selects. */
interface Row {
  data: Uint8Array | null;
  uid?: string;
  id?: string;
  peer_uid?: string;
  uuid?: string;
  key?: string;
}

/** A zero-length BLOB (a record with every field at its default) may come back as null. */
function bytesOf(row: Row): Uint8Array {
  return row.data ?? new Uint8Array(0);
}

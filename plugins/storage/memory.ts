/**
 * The in-memory store: the simulator's and the tests' storage port. It keeps
 * its data in an object that outlives the store handle, so a simulated crash
 * (drop the kernel, keep the "disk") is `store.reopen()`.
 *
 * @module
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
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
import { compareMessages, compareOutbox, compareQuarantine, compareStrings } from "./_order.ts";
import { checkBeforeMs, checkLimit, prepareBatch } from "./_prepare.ts";
import { run } from "./_run.ts";

/**
 * The device's "disk": what survives a crash and a reopen. Records are kept as the bytes a
 * commit encoded and decoded when read, as SQLite or Deno KV would read them back (unknown
 * fields dropped, the same normalization): a commit does no decoding, and a record takes the
 * room of its bytes rather than of a message object graph.
 */
interface MemoryData {
  identity: Uint8Array | undefined;
  peers: Map<string, Uint8Array>;
  devices: Map<string, Uint8Array>;
  outbox: Map<string, Uint8Array>;
  /** peerUid → uuid → message. */
  messages: Map<string, Map<string, Uint8Array>>;
  /** dedup id → first seen, in ms. */
  seen: Map<string, number>;
  /** id → quarantined message. */
  quarantine: Map<string, Uint8Array>;
  /** namespace → key → plugin record. */
  plugin: Map<string, Map<string, Uint8Array>>;
}

const NAME = "MemoryStore";

/**
 * A {@linkcode Store} in memory. Records are copied on the way in and on the
 * way out, so no caller can change stored state by mutating an object. It
 * accepts and rejects exactly what the SQLite adapter does (records up to
 * `MESSAGE_BYTES_MAX` encoded bytes), because every record goes through the
 * same protobuf encoding on `commit`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { MemoryStore } from "./memory.ts";
 * import { PeerRecordSchema } from "../../proto/gen/meow_pb.ts";
 * const store = new MemoryStore();
 * await store.commit({ peers: [create(PeerRecordSchema, { uid: "bob", name: "Bob" })] });
 * await store.close(); // a crash: the handle goes, the data stays
 * const again = store.reopen();
 * assert((await again.listPeers())[0].name === "Bob");
 * ```
 */
export class MemoryStore implements Store {
  #data: MemoryData;
  #closed = false;

  /** Creates an empty store (a fresh device). */
  constructor() {
    this.#data = {
      identity: undefined,
      peers: new Map(),
      devices: new Map(),
      outbox: new Map(),
      messages: new Map(),
      seen: new Map(),
      quarantine: new Map(),
      plugin: new Map(),
    };
  }

  /**
   * Returns a new handle over this store's data, as a restarted process would
   * reopen its files; closes this handle first if it is still open, as a
   * crash would.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MemoryStore } from "./memory.ts";
   * const store = new MemoryStore();
   * await store.commit({ seen: [{ id: "d1", at: 5 }] });
   * assert(await store.reopen().isSeen("d1"));
   * ```
   */
  reopen(): MemoryStore {
    this.#closed = true;
    const next = new MemoryStore();
    // Shared, not copied: both handles are views of one disk, and the old one is closed.
    next.#data = this.#data;
    return next;
  }

  get #d(): MemoryData {
    if (this.#closed) throw new TypeError(`Cannot use ${NAME}: it is closed`);
    return this.#data;
  }

  /** The identity record, if this device has one. */
  loadIdentity(): Promise<IdentityRecord | undefined> {
    return run(() => {
      const identity = this.#d.identity;
      return identity && read(IdentityRecordSchema, identity);
    });
  }

  /** Every contact peer, by uid. */
  listPeers(): Promise<PeerRecord[]> {
    return run(() => sortedByKey(this.#d.peers).map((p) => read(PeerRecordSchema, p)));
  }

  /** Every device peer (sibling), by uid. */
  listDevices(): Promise<PeerRecord[]> {
    return run(() => sortedByKey(this.#d.devices).map((p) => read(PeerRecordSchema, p)));
  }

  /** Every outbox entry, by queuedAt then id. */
  listOutbox(): Promise<OutboxEntry[]> {
    return run(() =>
      [...this.#d.outbox.values()].map((e) => read(OutboxEntrySchema, e)).sort(compareOutbox)
    );
  }

  /** Every quarantined message, by at then id. */
  listQuarantine(): Promise<QuarantineRecord[]> {
    return run(() =>
      [...this.#d.quarantine.values()].map((q) => read(QuarantineRecordSchema, q))
        .sort(compareQuarantine)
    );
  }

  /** One stored message by conversation and uuid. */
  getMessage(peerUid: string, uuid: string): Promise<DbMessage | undefined> {
    return run(() => {
      const message = this.#d.messages.get(peerUid)?.get(uuid);
      return message && read(DbMessageSchema, message);
    });
  }

  /** The messages of one conversation by storedAt then uuid; `limit` keeps the newest. */
  listMessages(peerUid: string, options: ListMessagesOptions = {}): Promise<DbMessage[]> {
    return run(() => {
      const limit = checkLimit(NAME, options.limit);
      const all = [...(this.#d.messages.get(peerUid)?.values() ?? [])]
        .map((m) => read(DbMessageSchema, m)).sort(compareMessages);
      return limit === undefined ? all : all.slice(Math.max(0, all.length - limit));
    });
  }

  /** The peer uids with at least one stored message, in uid order. */
  listConversations(): Promise<string[]> {
    return run(() => [...this.#d.messages.keys()].sort(compareStrings));
  }

  /** Whether a dedup id is in the seen table. */
  isSeen(id: string): Promise<boolean> {
    return run(() => this.#d.seen.has(id));
  }

  /** One plugin record, by collection and key. */
  getPluginRecord(namespace: string, key: string): Promise<Uint8Array | undefined> {
    return run(() => this.#d.plugin.get(namespace)?.get(key)?.slice());
  }

  /** The records of one plugin collection whose keys start with `prefix`, in key order. */
  listPluginRecords(namespace: string, prefix = ""): Promise<PluginRecord[]> {
    return run(() =>
      [...(this.#d.plugin.get(namespace) ?? new Map<string, Uint8Array>())]
        .filter(([key]) => key.startsWith(prefix))
        .sort(([a], [b]) => compareStrings(a, b))
        .map(([key, value]) => ({ namespace, key, value: value.slice() }))
    );
  }

  /** Applies `batch` atomically: every record is validated and encoded before any is stored. */
  commit(batch: Batch): Promise<void> {
    return run(() => {
      const d = this.#d;
      const p = prepareBatch(batch, {
        store: NAME,
        recordBytesMax: MESSAGE_BYTES_MAX,
        recordLimitName: "the record limit (MESSAGE_BYTES_MAX)",
      });
      // The encoded bytes are kept (see MemoryData): read back, they decode as SQLite's would.
      if (p.identity) d.identity = p.identity;
      for (const [uid, bytes] of p.peers) d.peers.set(uid, bytes);
      for (const uid of p.deletePeers) d.peers.delete(uid);
      for (const [uid, bytes] of p.devices) d.devices.set(uid, bytes);
      for (const uid of p.deleteDevices) d.devices.delete(uid);
      for (const m of p.messages.values()) {
        let conversation = d.messages.get(m.peerUid);
        if (!conversation) d.messages.set(m.peerUid, conversation = new Map());
        conversation.set(m.uuid, m.bytes);
      }
      for (const e of p.outboxPut.values()) d.outbox.set(e.id, e.bytes);
      for (const id of p.outboxDelete) d.outbox.delete(id);
      for (const [id, at] of p.seen) if (!d.seen.has(id)) d.seen.set(id, at);
      for (const q of p.quarantinePut.values()) {
        d.quarantine.set(q.id, q.bytes);
      }
      for (const id of p.quarantineDelete) d.quarantine.delete(id);
      for (const r of p.pluginPut.values()) {
        let collection = d.plugin.get(r.namespace);
        if (!collection) d.plugin.set(r.namespace, collection = new Map());
        collection.set(r.key, r.bytes);
      }
      for (const r of p.pluginDelete.values()) d.plugin.get(r.namespace)?.delete(r.key);
    });
  }

  /** Deletes seen marks first seen before `beforeMs`; resolves with how many went. */
  pruneSeen(beforeMs: number): Promise<number> {
    return run(() => {
      checkBeforeMs(NAME, beforeMs);
      const seen = this.#d.seen;
      let count = 0;
      for (const [id, at] of seen) {
        if (at < beforeMs) {
          seen.delete(id);
          count++;
        }
      }
      return count;
    });
  }

  /** Closes this handle; closing twice is harmless. The data stays for {@linkcode reopen}. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}

/**
 * Decodes a stored record from a copy of its bytes: a decoded `bytes` field is a view of the
 * bytes it was decoded from, and what a caller does to it must not reach the store.
 */
function read<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  return decode(schema, bytes.slice());
}

function sortedByKey<T>(map: Map<string, T>): T[] {
  return [...map.entries()].sort(([a], [b]) => compareStrings(a, b)).map(([, v]) => v);
}

/**
 * The Deno KV store: a device's storage on Deno Deploy (the default database)
 * or in a local file. One batch is one `kv.atomic()`.
 *
 * Longer than most files: one method per Store operation over one key layout, which reads best in
 * one place.
 *
 * @module
 */
import type { Batch, ListMessagesOptions, PluginRecord, Store } from "../../ports/mod.ts";
import { decode } from "../../proto/mod.ts";
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
import { compareMessages, compareOutbox, compareQuarantine } from "./_order.ts";
import { openRecord, SEAL_OVERHEAD_BYTES, sealRecord, type StoreCipher } from "./cipher.ts";
import { createOwnerOnly } from "./_files.ts";
import {
  checkBeforeMs,
  checkLimit,
  describe,
  prepareBatch,
  type PreparedBatch,
} from "./_prepare.ts";

/** Deno KV's limit on one value, in bytes: an encoded record larger than this cannot be stored. */
export const KV_VALUE_BYTES_MAX = 65_536;
/** Deno KV's limit on one key, in bytes (tuple-encoded). */
export const KV_KEY_BYTES_MAX = 2_048;
/** Deno KV's limit on the mutations of one atomic operation. */
export const KV_MUTATIONS_MAX = 1_000;
/** Deno KV's limit on the keys plus values of one atomic operation, in bytes (800 KiB). */
export const KV_ATOMIC_BYTES_MAX = 819_200;
/** Deno KV's limit on the keys of one atomic operation, in bytes (80 KiB). */
export const KV_ATOMIC_KEY_BYTES_MAX = 81_920;

/** Deno KV's limit on the keys of one `getMany`. */
const GET_MANY_KEYS_MAX = 10;
/** Seen rows listed per pruning round (each then costs two deletes of one atomic). */
const PRUNE_ROWS_PER_ROUND_MAX = 400;

const NAME = "KvStore";

/** Options for {@linkcode KvStore.open}. */
export interface KvStoreOptions {
  /**
   * A key prefix for every key of this store, so several devices (or a relay
   * backend) can share one database, as on Deno Deploy.
   * @default {[]}
   */
  prefix?: Deno.KvKey;
  /**
   * How many times a commit or a pruning round is retried when another writer
   * changed the store between its reads and its atomic write.
   * @default {8}
   */
  commitAttemptsMax?: number;
  /**
   * Seals every record (identity, peers, devices, messages, outbox entries, quarantine)
   * before it is written and opens it after it is read: at-rest encryption.
   * Keys (uids, uuids, ids, times) stay in the clear, so the store can still
   * index and order. Each record is bound to its full key (prefix included):
   * moved to another key it does not open. A store written with a cipher
   * must be opened with the same one; a record that does not open is an
   * {@linkcode UnreadableRecord}.
   * @default {no cipher: records are stored as they are}
   */
  cipher?: StoreCipher;
}

/**
 * A {@linkcode Store} over Deno KV. Keys (under the optional prefix):
 * `["identity"]`, `["peer", uid]`, `["device", uid]`, `["outbox", id]`, `["quarantine", id]`,
 * `["msg", peerUid, uuid]` (the encoded `DbMessage`), the order index
 * `["msg_order", peerUid, storedAt, uuid]` → uuid, `["conv", peerUid]`,
 * `["seen", id]` → at, the pruning index `["seen_at", at, id]`, plugin records
 * `["plugin", namespace, key]`, and
 * `["commit"]`, a counter every write bumps.
 *
 * **Batch limits.** A batch is one atomic operation, so it must fit Deno KV's
 * limits: {@linkcode KV_MUTATIONS_MAX} mutations, {@linkcode KV_ATOMIC_BYTES_MAX}
 * bytes and {@linkcode KV_ATOMIC_KEY_BYTES_MAX} bytes of keys; each record at
 * most {@linkcode KV_VALUE_BYTES_MAX} bytes encoded. A message costs up to 3
 * mutations, a seen mark 2, anything else 1, plus 1 per conversation and 1 for
 * the counter: 200 messages, 50 seen marks and 10 outbox entries fit. A batch
 * over a limit is refused whole with a `RangeError` naming the limit, before
 * anything is written; callers keep batches to one inbound message or action.
 *
 * **Concurrent writers.** A commit reads the rows it replaces (to move a
 * message's order key when its `storedAt` changed, and to keep a seen mark's
 * first time), then writes with a check on the counter's versionstamp: if any
 * other write landed in between, the atomic fails and the commit starts over
 * (at most `commitAttemptsMax` times), so the order index is never corrupted.
 * One counter instead of one check per row read, because Deno KV allows only
 * 100 checks per atomic and a large batch reads more rows than that.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { KvStore } from "./kv.ts";
 * import { OutboxEntrySchema } from "../../proto/gen/meow_pb.ts";
 * const store = await KvStore.open(":memory:");
 * await store.commit({ outboxPut: [create(OutboxEntrySchema, { id: "o1", queuedAt: 5 })] });
 * assert((await store.listOutbox())[0].id === "o1");
 * await store.close();
 * ```
 */
export class KvStore implements Store {
  readonly #kv: Deno.Kv;
  readonly #prefix: Deno.KvKey;
  readonly #attemptsMax: number;
  readonly #cipher: StoreCipher | undefined;
  #closed = false;

  private constructor(
    kv: Deno.Kv,
    prefix: Deno.KvKey,
    attemptsMax: number,
    cipher: StoreCipher | undefined,
  ) {
    this.#kv = kv;
    this.#prefix = prefix;
    this.#attemptsMax = attemptsMax;
    this.#cipher = cipher;
  }

  /**
   * Opens the Deno KV database at `path` (a file, or `":memory:"`), or the
   * default database (Deno Deploy's) when `path` is undefined. A file that
   * does not exist yet is created readable by its owner only (0600), and so
   * are its side files (`-wal`, `-shm`), which take the main file's mode.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { KvStore } from "./kv.ts";
   * const store = await KvStore.open(":memory:", { prefix: ["device", "phone"] });
   * assert(!(await store.isSeen("d1")));
   * await store.close();
   * ```
   */
  static async open(path: string | undefined, options: KvStoreOptions = {}): Promise<KvStore> {
    const prefix = options.prefix ?? [];
    const attemptsMax = options.commitAttemptsMax ?? 8;
    if (!Number.isSafeInteger(attemptsMax) || attemptsMax < 1) {
      throw new RangeError(
        `Cannot open ${NAME}: commitAttemptsMax must be a positive integer, got ${
          describe(attemptsMax)
        }`,
      );
    }
    if (path !== undefined && path !== ":memory:") createOwnerOnly(path);
    const kv = await Deno.openKv(path);
    return new KvStore(kv, [...prefix], attemptsMax, options.cipher);
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    if (this.#closed) throw new TypeError(`Cannot use ${NAME}: it is closed`);
    return [...this.#prefix, ...parts];
  }

  /** The identity record, if this device has one. */
  async loadIdentity(): Promise<IdentityRecord | undefined> {
    const key = this.#key("identity");
    const entry = await this.#kv.get<Uint8Array>(key);
    return entry.value === null
      ? undefined
      : decode(IdentityRecordSchema, this.#open(entry.value, key, "the identity"));
  }

  /** Every contact peer, by uid. */
  async listPeers(): Promise<PeerRecord[]> {
    return (await this.#values(this.#key("peer"))).map((b) => decode(PeerRecordSchema, b));
  }

  /** Every device peer (sibling), by uid. */
  async listDevices(): Promise<PeerRecord[]> {
    return (await this.#values(this.#key("device"))).map((b) => decode(PeerRecordSchema, b));
  }

  /** Every outbox entry, by queuedAt then id. */
  async listOutbox(): Promise<OutboxEntry[]> {
    // No order index: the whole outbox is returned anyway, so sorting it here costs less than
    // keeping a second key per entry in step.
    return (await this.#values(this.#key("outbox")))
      .map((b) => decode(OutboxEntrySchema, b))
      .sort(compareOutbox);
  }

  /** Every quarantined message, by at then id. */
  async listQuarantine(): Promise<QuarantineRecord[]> {
    // Bounded by the kernel (QUARANTINE_MAX): sorted here, like the outbox.
    return (await this.#values(this.#key("quarantine")))
      .map((b) => decode(QuarantineRecordSchema, b))
      .sort(compareQuarantine);
  }

  /** One stored message by conversation and uuid. */
  async getMessage(peerUid: string, uuid: string): Promise<DbMessage | undefined> {
    const key = this.#key("msg", peerUid, uuid);
    const entry = await this.#kv.get<Uint8Array>(key);
    return entry.value === null
      ? undefined
      : decode(DbMessageSchema, this.#open(entry.value, key, "a message"));
  }

  /** The messages of one conversation by storedAt then uuid; `limit` keeps the newest. */
  async listMessages(peerUid: string, options: ListMessagesOptions = {}): Promise<DbMessage[]> {
    const limit = checkLimit(NAME, options.limit);
    if (limit === undefined) {
      // All of them: one range read of the rows beats the index plus a getMany per 10 rows.
      return (await this.#values(this.#key("msg", peerUid)))
        .map((b) => decode(DbMessageSchema, b))
        .sort(compareMessages);
    }
    if (limit === 0) return [];
    const keys: Deno.KvKey[] = [];
    const newest = this.#kv.list<string>({ prefix: this.#key("msg_order", peerUid) }, {
      reverse: true,
      limit,
    });
    for await (const entry of newest) keys.push(this.#key("msg", peerUid, entry.value));
    const out: DbMessage[] = [];
    for (let i = 0; i < keys.length; i += GET_MANY_KEYS_MAX) {
      const entries = await this.#kv.getMany<Uint8Array[]>(keys.slice(i, i + GET_MANY_KEYS_MAX));
      for (const e of entries) {
        if (e.value !== null) {
          out.push(decode(DbMessageSchema, this.#open(e.value, e.key, "a message")));
        }
      }
    }
    // The index and the rows are two reads: sort again so a concurrent re-store cannot misorder.
    return out.sort(compareMessages);
  }

  /** The peer uids with at least one stored message, in uid order. */
  async listConversations(): Promise<string[]> {
    const out: string[] = [];
    for await (const entry of this.#kv.list({ prefix: this.#key("conv") })) {
      out.push(entry.key[entry.key.length - 1] as string);
    }
    return out;
  }

  /** Whether a dedup id is in the seen table. */
  async isSeen(id: string): Promise<boolean> {
    return (await this.#kv.get(this.#key("seen", id))).value !== null;
  }

  /** One plugin record, by collection and key. */
  async getPluginRecord(namespace: string, key: string): Promise<Uint8Array | undefined> {
    const k = this.#key("plugin", namespace, key);
    const entry = await this.#kv.get<Uint8Array>(k);
    return entry.value === null ? undefined : this.#open(entry.value, k, "a plugin record");
  }

  /** The records of one plugin collection whose keys start with `prefix`, in key order. */
  async listPluginRecords(namespace: string, prefix = ""): Promise<PluginRecord[]> {
    const out: PluginRecord[] = [];
    // Keys sort by their UTF-8 bytes, so those with the prefix come together, from the prefix on.
    const collection = this.#key("plugin", namespace);
    const list = this.#kv.list<Uint8Array>(
      prefix === ""
        ? { prefix: collection }
        : { prefix: collection, start: [...collection, prefix] },
    );
    for await (const entry of list) {
      const key = entry.key.at(-1) as string;
      if (!key.startsWith(prefix)) break;
      out.push({ namespace, key, value: this.#open(entry.value, entry.key, "a plugin record") });
    }
    return out;
  }

  /**
   * Applies `batch` as one atomic operation.
   *
   * @throws {TypeError} a record misses its key or cannot be encoded
   * @throws {RangeError} the batch or a record exceeds a Deno KV limit (see the class docs)
   * @throws {Error} other writers changed the store during every attempt
   */
  async commit(batch: Batch): Promise<void> {
    const counterKey = this.#key("commit");
    const p = this.#seal(prepareBatch(batch, {
      store: NAME,
      recordBytesMax: KV_VALUE_BYTES_MAX - (this.#cipher ? SEAL_OVERHEAD_BYTES : 0),
      recordLimitName: "Deno KV's value limit (KV_VALUE_BYTES_MAX)" +
        (this.#cipher ? `, less the cipher's ${SEAL_OVERHEAD_BYTES} bytes` : ""),
    }));
    this.#checkLimits(p, counterKey);
    const messages = [...p.messages.values()];
    const seenIds = [...p.seen.keys()];
    for (let attempt = 1; attempt <= this.#attemptsMax; attempt++) {
      const counter = await this.#kv.get(counterKey);
      const oldKeys = messages.map((m) => this.#key("msg", m.peerUid, m.uuid));
      const old = await this.#getMany(oldKeys);
      const seen = await this.#getMany(seenIds.map((id) => this.#key("seen", id)));

      const op = this.#kv.atomic().check(counter).sum(counterKey, 1n);
      if (p.identity) op.set(this.#key("identity"), p.identity);
      for (const [uid, bytes] of p.peers) op.set(this.#key("peer", uid), bytes);
      for (const uid of p.deletePeers) op.delete(this.#key("peer", uid));
      for (const [uid, bytes] of p.devices) op.set(this.#key("device", uid), bytes);
      for (const uid of p.deleteDevices) op.delete(this.#key("device", uid));
      const conversations = new Set<string>();
      messages.forEach((m, i) => {
        const before = old[i].value;
        const beforeAt = before === null
          ? undefined
          : Number(decode(DbMessageSchema, this.#open(before, oldKeys[i], "a message")).storedAt);
        if (beforeAt !== undefined && beforeAt !== m.storedAt) {
          op.delete(this.#key("msg_order", m.peerUid, beforeAt, m.uuid));
        }
        op.set(this.#key("msg", m.peerUid, m.uuid), m.bytes);
        if (beforeAt !== m.storedAt) {
          op.set(this.#key("msg_order", m.peerUid, m.storedAt, m.uuid), m.uuid);
        }
        conversations.add(m.peerUid);
      });
      for (const peerUid of conversations) op.set(this.#key("conv", peerUid), true);
      for (const e of p.outboxPut.values()) op.set(this.#key("outbox", e.id), e.bytes);
      for (const id of p.outboxDelete) op.delete(this.#key("outbox", id));
      for (const q of p.quarantinePut.values()) op.set(this.#key("quarantine", q.id), q.bytes);
      for (const id of p.quarantineDelete) op.delete(this.#key("quarantine", id));
      for (const r of p.pluginPut.values()) {
        op.set(this.#key("plugin", r.namespace, r.key), r.bytes);
      }
      for (const r of p.pluginDelete.values()) op.delete(this.#key("plugin", r.namespace, r.key));
      seenIds.forEach((id, i) => {
        if (seen[i].value !== null) return; // seen before: keep the first time
        const at = p.seen.get(id)!;
        op.set(this.#key("seen", id), at);
        op.set(this.#key("seen_at", at, id), true);
      });
      if ((await op.commit()).ok) return;
    }
    throw new Error(
      `Cannot commit to ${NAME}: another writer changed the store during each of ` +
        `${this.#attemptsMax} attempts`,
    );
  }

  /**
   * Deletes seen marks first seen before `beforeMs`, in rounds of one atomic
   * operation each (a round removes a mark and its index key together, so the
   * index stays exact even if pruning stops half way); resolves with how many
   * went.
   */
  async pruneSeen(beforeMs: number): Promise<number> {
    checkBeforeMs(NAME, beforeMs);
    const counterKey = this.#key("commit");
    let count = 0;
    let conflicts = 0;
    for (;;) {
      const counter = await this.#kv.get(counterKey);
      const op = this.#kv.atomic().check(counter).sum(counterKey, 1n);
      let mutations = 1;
      let keyBytes = 2 * keySize(counterKey);
      let rows = 0;
      const old = this.#kv.list({
        prefix: this.#key("seen_at"),
        end: this.#key("seen_at", beforeMs),
      }, { limit: PRUNE_ROWS_PER_ROUND_MAX });
      for await (const entry of old) {
        const id = entry.key[entry.key.length - 1] as string;
        const seenKey = this.#key("seen", id);
        const size = keySize(entry.key) + keySize(seenKey);
        if (mutations + 2 > KV_MUTATIONS_MAX || keyBytes + size > KV_ATOMIC_KEY_BYTES_MAX) break;
        op.delete(entry.key).delete(seenKey);
        mutations += 2;
        keyBytes += size;
        rows++;
      }
      if (rows === 0) return count;
      if ((await op.commit()).ok) {
        count += rows;
      } else if (++conflicts >= this.#attemptsMax) {
        throw new Error(
          `Cannot prune seen marks in ${NAME}: another writer changed the store ` +
            `${conflicts} times (${count} marks pruned so far)`,
        );
      }
    }
  }

  /** Closes the database; closing twice is harmless. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#kv.close();
    }
    return Promise.resolve();
  }

  async #values(prefix: Deno.KvKey): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for await (const entry of this.#kv.list<Uint8Array>({ prefix })) {
      out.push(this.#open(entry.value, entry.key, "a record"));
    }
    return out;
  }

  /**
   * The batch with every record sealed to its key (as it is without a
   * cipher); sealed once per commit.
   */
  #seal(p: PreparedBatch): PreparedBatch {
    const cipher = this.#cipher;
    if (!cipher) return p;
    const seal = (bytes: Uint8Array, ...key: Deno.KvKeyPart[]) =>
      sealRecord(cipher, bytes, this.#key(...key));
    const sealMap = <K, V extends { bytes: Uint8Array }>(
      map: Map<K, V>,
      key: (v: V) => Deno.KvKeyPart[],
    ) => new Map([...map].map(([k, v]) => [k, { ...v, bytes: seal(v.bytes, ...key(v)) }]));
    return {
      ...p,
      identity: p.identity && seal(p.identity, "identity"),
      peers: new Map([...p.peers].map(([uid, bytes]) => [uid, seal(bytes, "peer", uid)])),
      devices: new Map([...p.devices].map(([uid, bytes]) => [uid, seal(bytes, "device", uid)])),
      messages: sealMap(p.messages, (m) => ["msg", m.peerUid, m.uuid]),
      outboxPut: sealMap(p.outboxPut, (e) => ["outbox", e.id]),
      quarantinePut: sealMap(p.quarantinePut, (q) => ["quarantine", q.id]),
      pluginPut: sealMap(p.pluginPut, (r) => ["plugin", r.namespace, r.key]),
    };
  }

  /** Opens a record sealed to `key` (as it is without a cipher). */
  #open(bytes: Uint8Array, key: Deno.KvKey, what: string): Uint8Array {
    return openRecord(this.#cipher, bytes, key, what, NAME);
  }

  async #getMany(keys: Deno.KvKey[]): Promise<Deno.KvEntryMaybe<Uint8Array>[]> {
    const out: Deno.KvEntryMaybe<Uint8Array>[] = [];
    for (let i = 0; i < keys.length; i += GET_MANY_KEYS_MAX) {
      out.push(...await this.#kv.getMany<Uint8Array[]>(keys.slice(i, i + GET_MANY_KEYS_MAX)));
    }
    return out;
  }

  /**
   * Refuses a batch that could exceed a Deno KV limit, counting the worst case
   * (every message moves its order key, every seen mark is new), so whether a
   * batch fits never depends on what the store holds.
   */
  #checkLimits(p: PreparedBatch, counterKey: Deno.KvKey): void {
    let mutations = 0;
    let keyBytes = 0;
    let bytes = 0;
    const add = (key: Deno.KvKey, valueBytes: number): void => {
      const size = keySize(key);
      if (size > KV_KEY_BYTES_MAX) {
        throw new RangeError(
          `Cannot commit to ${NAME}: key ${
            JSON.stringify(key).slice(0, 80)
          }… takes ${size} bytes, over Deno KV's key limit (KV_KEY_BYTES_MAX) of ${KV_KEY_BYTES_MAX}`,
        );
      }
      mutations++;
      keyBytes += size;
      bytes += size + valueBytes;
    };
    add(counterKey, 8);
    keyBytes += keySize(counterKey); // the check
    bytes += keySize(counterKey);
    if (p.identity) add(this.#key("identity"), p.identity.length);
    for (const [uid, value] of p.peers) add(this.#key("peer", uid), value.length);
    for (const uid of p.deletePeers) add(this.#key("peer", uid), 0);
    for (const [uid, value] of p.devices) add(this.#key("device", uid), value.length);
    for (const uid of p.deleteDevices) add(this.#key("device", uid), 0);
    const conversations = new Set<string>();
    for (const m of p.messages.values()) {
      add(this.#key("msg", m.peerUid, m.uuid), m.bytes.length);
      const orderKey = this.#key("msg_order", m.peerUid, m.storedAt, m.uuid);
      add(orderKey, v8StringSize(m.uuid));
      add(orderKey, 0); // the old order key: same size, a different storedAt
      conversations.add(m.peerUid);
    }
    for (const peerUid of conversations) add(this.#key("conv", peerUid), V8_SMALL_VALUE_BYTES);
    for (const e of p.outboxPut.values()) add(this.#key("outbox", e.id), e.bytes.length);
    for (const id of p.outboxDelete) add(this.#key("outbox", id), 0);
    for (const q of p.quarantinePut.values()) add(this.#key("quarantine", q.id), q.bytes.length);
    for (const id of p.quarantineDelete) add(this.#key("quarantine", id), 0);
    for (const r of p.pluginPut.values()) {
      add(this.#key("plugin", r.namespace, r.key), r.bytes.length);
    }
    for (const r of p.pluginDelete.values()) add(this.#key("plugin", r.namespace, r.key), 0);
    for (const [id, at] of p.seen) {
      add(this.#key("seen", id), V8_SMALL_VALUE_BYTES);
      add(this.#key("seen_at", at, id), V8_SMALL_VALUE_BYTES);
    }
    const over = (what: string, seen: number, limit: number, name: string): RangeError =>
      new RangeError(
        `Cannot commit to ${NAME}: the batch needs up to ${seen} ${what} in one atomic operation, ` +
          `over Deno KV's limit (${name}) of ${limit}; split it into smaller batches`,
      );
    if (mutations > KV_MUTATIONS_MAX) {
      throw over("mutations", mutations, KV_MUTATIONS_MAX, "KV_MUTATIONS_MAX");
    }
    if (keyBytes > KV_ATOMIC_KEY_BYTES_MAX) {
      throw over("bytes of keys", keyBytes, KV_ATOMIC_KEY_BYTES_MAX, "KV_ATOMIC_KEY_BYTES_MAX");
    }
    if (bytes > KV_ATOMIC_BYTES_MAX) {
      throw over("bytes", bytes, KV_ATOMIC_BYTES_MAX, "KV_ATOMIC_BYTES_MAX");
    }
  }
}

/** An upper bound on a V8-serialized number or boolean, in bytes. */
const V8_SMALL_VALUE_BYTES = 16;

/** An upper bound on a V8-serialized string (two bytes per UTF-16 unit at worst), in bytes. */
function v8StringSize(s: string): number {
  return 16 + 2 * s.length;
}

const utf8 = new TextEncoder();

/**
 * The size of a key in Deno KV's tuple encoding: a tag byte per part, then
 * strings and bytes with NUL escaped plus a terminator, numbers as 8 bytes.
 * Exact for strings, numbers and booleans; an upper bound for bigints.
 */
function keySize(key: Deno.KvKey): number {
  let size = 0;
  for (const part of key) {
    if (typeof part === "string" || part instanceof Uint8Array) {
      const bytes = typeof part === "string" ? utf8.encode(part) : part;
      size += 2 + bytes.length + bytes.filter((b) => b === 0).length;
    } else if (typeof part === "number") {
      size += 9;
    } else if (typeof part === "bigint") {
      size += 2 + Math.ceil(part.toString(16).length / 2) + 8;
    } else {
      size += 1;
    }
  }
  return size;
}

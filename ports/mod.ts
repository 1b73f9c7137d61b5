/**
 * The ports: the only ways the kernel (and the relay core) touch the world.
 * Production implements them over the real clock, the OS CSPRNG, HTTP and
 * files; the simulator over virtual time, seeded streams and in-process
 * relays. Nothing else in `kernel/`, `plugins/`, `server/` core or `sim/`
 * reads the real clock or a global random source.
 *
 * @module
 */
import type {
  DbMessage,
  IdentityRecord,
  OutboxEntry,
  PeerRecord,
  QuarantineRecord,
  ServerCard,
} from "../proto/mod.ts";

export type { Random } from "../crypto/mod.ts";

/**
 * Time, in milliseconds since the Unix epoch. Production: `systemClock`
 * (system_clock.ts); the simulator: a virtual clock.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Clock } from "../kernel/mod.ts";
 * const fixed: Clock = { now: () => 1000, sleep: () => Promise.resolve() };
 * assert(fixed.now() === 1000);
 * ```
 */
export interface Clock {
  /** The current time in milliseconds. */
  now(): number;
  /**
   * Resolves after `ms` milliseconds of this clock's time; rejects with the
   * signal's reason when `signal` aborts first.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Carries one request to a relay and brings back its answer. The bodies are
 * serialized `PackedServerMessage`s: sealing happens above the transport, so
 * a tap on this port sees exactly the bytes that leave the device.
 *
 * Implementations: in-process to a server core (`server/`), HTTP (`POST /`).
 */
export interface Transport {
  /**
   * Sends `body` to the relay described by `server` and resolves with the
   * answer's bytes; rejects with a {@linkcode TransportError} when the relay
   * cannot be reached (the caller retries).
   */
  exchange(server: ServerCard, body: Uint8Array, signal?: AbortSignal): Promise<Uint8Array>;
  /** Fetches a relay's card by URL (`GET /card`). */
  fetchCard(url: string, signal?: AbortSignal): Promise<ServerCard>;
}

/** A relay could not be reached, or answered with something other than a relay answer. */
export class TransportError extends Error {
  /** @param message what was attempted and what went wrong */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TransportError";
  }
}

/** One seen-table row: a dedup id and when it was first seen. */
export interface SeenMark {
  /** The dedup id. */
  id: string;
  /** When it was first seen, in ms. */
  at: number;
}

/**
 * One record of a plugin's own collection: `value` (bytes the plugin encodes as it likes; sealed at
 * rest like every other record) under `key` in the collection `namespace` (the plugin's name).
 * Keys are stored in the clear, as uids and ids are: they order and index, so they must not carry
 * contents.
 */
export interface PluginRecord {
  /** The collection: the name of the plugin that owns it. */
  namespace: string;
  /** The record's key in its collection. */
  key: string;
  /** The record. */
  value: Uint8Array;
}

/**
 * Everything that changes together: applied by {@linkcode Store.commit} as
 * one atomic write, so a crash never leaves half of it behind. One inbound
 * message, or one local action, is one batch: the ratchet step, the stored
 * message, the seen mark and every outbox entry it causes.
 */
export interface Batch {
  /** Replace the identity record. */
  identity?: IdentityRecord;
  /** Upsert contact peers by uid. */
  peers?: PeerRecord[];
  /** Delete contact peers by uid. */
  deletePeers?: string[];
  /** Upsert device peers (siblings) by uid, in the device store. */
  devices?: PeerRecord[];
  /** Delete device peers by uid. */
  deleteDevices?: string[];
  /** Upsert stored messages by (peer_uid, message.status.uuid). */
  messages?: DbMessage[];
  /** Upsert outbox entries by id. */
  outboxPut?: OutboxEntry[];
  /** Delete outbox entries by id. */
  outboxDelete?: string[];
  /** Mark dedup ids as seen (ids already present keep their first time). */
  seen?: SeenMark[];
  /** Upsert quarantined messages by id (the kernel keeps the collection bounded). */
  quarantinePut?: QuarantineRecord[];
  /** Delete quarantined messages by id. */
  quarantineDelete?: string[];
  /** Upsert plugin records by (namespace, key). */
  pluginPut?: PluginRecord[];
  /** Delete plugin records by (namespace, key). */
  pluginDelete?: { namespace: string; key: string }[];
}

/** Options for {@linkcode Store.listMessages}. */
export interface ListMessagesOptions {
  /**
   * Return at most this many, the newest ones, oldest first.
   * @default {unlimited}
   */
  limit?: number;
}

/**
 * A device's persistent state. Adapters: memory, Deno KV, SQLite; all pass
 * one conformance suite. A write acknowledged by `commit` survives a reopen.
 */
export interface Store {
  /** The identity record, if this device has one. */
  loadIdentity(): Promise<IdentityRecord | undefined>;
  /** Every contact peer. */
  listPeers(): Promise<PeerRecord[]>;
  /** Every device peer (sibling) from the device store. */
  listDevices(): Promise<PeerRecord[]>;
  /** Every outbox entry, oldest queued first. */
  listOutbox(): Promise<OutboxEntry[]>;
  /** Every quarantined message, oldest first (by `at`, then id). */
  listQuarantine(): Promise<QuarantineRecord[]>;
  /** One stored message by conversation and uuid. */
  getMessage(peerUid: string, uuid: string): Promise<DbMessage | undefined>;
  /** The stored messages of one conversation, ordered by stored_at then uuid. */
  listMessages(peerUid: string, options?: ListMessagesOptions): Promise<DbMessage[]>;
  /** The peer uids that have at least one stored message. */
  listConversations(): Promise<string[]>;
  /** Whether a dedup id is in the seen table. */
  isSeen(id: string): Promise<boolean>;
  /** One plugin record, by collection and key. */
  getPluginRecord(namespace: string, key: string): Promise<Uint8Array | undefined>;
  /**
   * The records of one plugin collection whose keys start with `prefix` (every one by default), in
   * key order (by code point, as UTF-8 bytes sort).
   */
  listPluginRecords(namespace: string, prefix?: string): Promise<PluginRecord[]>;
  /** Applies `batch` atomically: all of it or none of it. */
  commit(batch: Batch): Promise<void>;
  /** Deletes seen rows first seen before `beforeMs`; resolves with how many went. */
  pruneSeen(beforeMs: number): Promise<number>;
  /** Releases files and handles; the store is unusable afterwards. */
  close(): Promise<void>;
}
export { systemClock } from "./system_clock.ts";

/**
 * The device stores of a simulation: in memory, or real SQLite / Deno KV
 * files in a temp folder (`--storage`). Deno KV completes through the event
 * loop, so its calls run one at a time in the order asked and are tracked by
 * the scheduler, which keeps the run reproducible.
 *
 * @module
 */
import type { Store } from "../ports/mod.ts";
import { KvStore, MemoryStore, SqliteStore } from "../plugins/storage/mod.ts";

/** Where device state lives in a simulation. */
export type StorageKind = "memory" | "sqlite" | "kv";

/** Options of {@linkcode openStore}. */
export interface OpenStoreOptions {
  /** Folder for the files (sqlite, kv). */
  folder?: string;
  /** `user/device`: names the file. */
  ref: string;
  /** The store being reopened after a crash (memory keeps its data there). */
  reopen?: Store;
  /** Tracks real I/O so the scheduler waits for it. */
  track?: <T>(promise: Promise<T>) => Promise<T>;
}

/** Opens (or reopens) a device's store. */
export async function openStore(kind: StorageKind, options: OpenStoreOptions): Promise<Store> {
  const file = `${options.folder}/${options.ref.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  switch (kind) {
    case "memory":
      return options.reopen ? (options.reopen as MemoryStore).reopen() : new MemoryStore();
    case "sqlite":
      if (!options.folder) throw new TypeError("sqlite storage needs a folder");
      return SqliteStore.open(`${file}.db`);
    case "kv": {
      if (!options.folder) throw new TypeError("kv storage needs a folder");
      const track = options.track ?? (<T>(p: Promise<T>) => p);
      return serialized(await track(KvStore.open(`${file}.kv`)), track);
    }
  }
}

/** A store whose calls run one at a time, each tracked. */
function serialized(store: Store, track: <T>(promise: Promise<T>) => Promise<T>): Store {
  let chain: Promise<unknown> = Promise.resolve();
  const run = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn);
    chain = next.catch(() => {});
    return track(next);
  };
  return {
    loadIdentity: () => run(() => store.loadIdentity()),
    listPeers: () => run(() => store.listPeers()),
    listDevices: () => run(() => store.listDevices()),
    listOutbox: () => run(() => store.listOutbox()),
    listQuarantine: () => run(() => store.listQuarantine()),
    getMessage: (peerUid, uuid) => run(() => store.getMessage(peerUid, uuid)),
    listMessages: (peerUid, o) => run(() => store.listMessages(peerUid, o)),
    listConversations: () => run(() => store.listConversations()),
    isSeen: (id) => run(() => store.isSeen(id)),
    getPluginRecord: (namespace, key) => run(() => store.getPluginRecord(namespace, key)),
    listPluginRecords: (namespace, prefix) => run(() => store.listPluginRecords(namespace, prefix)),
    commit: (batch) => run(() => store.commit(batch)),
    pruneSeen: (before) => run(() => store.pruneSeen(before)),
    close: () => run(() => store.close()),
  };
}

/**
 * The storage adapters of the {@linkcode Store} port: in memory (tests and the
 * simulator), Deno KV (Deno Deploy) and SQLite (`node:sqlite`, the agent).
 * All three pass one conformance suite (`store_conformance.ts`). SQLite and
 * Deno KV can seal every record at rest with a {@linkcode StoreCipher}
 * (`cipher.ts`), each bound to its store key, in files only their owner can read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryStore, SqliteStore } from "./mod.ts";
 * for (const store of [new MemoryStore(), await SqliteStore.open(":memory:")]) {
 *   await store.commit({ seen: [{ id: "d1", at: 1 }] });
 *   assert(await store.isSeen("d1"));
 *   await store.close();
 * }
 * ```
 *
 * @module
 */
import type { Store } from "../../ports/mod.ts";

export { MemoryStore } from "./memory.ts";
export {
  KV_ATOMIC_BYTES_MAX,
  KV_ATOMIC_KEY_BYTES_MAX,
  KV_KEY_BYTES_MAX,
  KV_MUTATIONS_MAX,
  KV_VALUE_BYTES_MAX,
  KvStore,
  type KvStoreOptions,
} from "./kv.ts";
export { SqliteStore, type SqliteStoreOptions } from "./sqlite.ts";
export {
  recordAd,
  SEAL_FORMAT_VERSION,
  SEAL_OVERHEAD_BYTES,
  type StoreCipher,
  type StoreKeyPart,
  UnreadableRecord,
  xchachaCipher,
} from "./cipher.ts";
export type { Store };

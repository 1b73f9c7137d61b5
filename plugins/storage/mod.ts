/**
 * The storage adapters of the {@linkcode Store} port: in memory (tests and the
 * simulator), Deno KV (Deno Deploy) and SQLite (`node:sqlite`, the agent).
 * All three pass one conformance suite (`store_conformance.ts`).
 *
 * @example
 * ```ts
 * import { MemoryStore, SqliteStore } from "./mod.ts";
 * for (const store of [new MemoryStore(), await SqliteStore.open(":memory:")]) {
 *   await store.commit({ seen: [{ id: "d1", at: 1 }] });
 *   console.assert(await store.isSeen("d1"));
 *   await store.close();
 * }
 * ```
 *
 * @module
 */
import type { Store } from "../../kernel/ports.ts";

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
export { SqliteStore } from "./sqlite.ts";
export type { Store };

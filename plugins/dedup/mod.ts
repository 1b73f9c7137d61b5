/**
 * The dedup plugin: the seen table that drops repeated sync payloads.
 * `markSeen` is an atomic check-and-mark inside the transaction that applies
 * the payload, so a crash can never mark a payload seen without applying it.
 * Rows older than the retention are pruned once per prune interval.
 *
 * @module
 */
import { apiKey, type Plugin, type PluginHost, type Tx } from "../../kernel/mod.ts";

/** How long a dedup id is remembered, in ms (30 days). */
export const SEEN_RETENTION_MS = 30 * 24 * 3600 * 1000;
/** How often the seen table is pruned while the kernel runs, in ms (a week). */
export const PRUNE_INTERVAL_MS = 7 * 24 * 3600 * 1000;

/** The typed key of the dedup plugin's api: `kernel.api(DEDUP_API)` is a {@linkcode DedupApi}. */
export const DEDUP_API = apiKey<DedupApi>("dedup");

/** What the dedup plugin offers other plugins, under {@linkcode DEDUP_API}. */
export interface DedupApi {
  /** Whether `id` is in the committed seen table. */
  isSeen(id: string): Promise<boolean>;
  /** Atomic check-and-mark in `tx`: true the first time, false for a repeat. */
  markSeen(tx: Tx, id: string): Promise<boolean>;
  /** Deletes rows first seen before `beforeMs`; resolves with how many went. */
  prune(beforeMs: number): Promise<number>;
}

/** Options of {@linkcode dedupPlugin}. */
export interface DedupOptions {
  /**
   * How long an id is remembered, in ms.
   * @default {SEEN_RETENTION_MS}
   */
  retentionMs?: number;
  /**
   * Time between two prunes while the kernel runs, in ms.
   * @default {PRUNE_INTERVAL_MS}
   */
  pruneIntervalMs?: number;
}

/**
 * Creates the dedup plugin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dedupPlugin } from "./mod.ts";
 * assert(dedupPlugin().name === "dedup");
 * ```
 */
export function dedupPlugin(options: DedupOptions = {}): Plugin {
  const retentionMs = options.retentionMs ?? SEEN_RETENTION_MS;
  const pruneIntervalMs = options.pruneIntervalMs ?? PRUNE_INTERVAL_MS;
  let host: PluginHost | undefined;
  const api: DedupApi = {
    isSeen: (id) => host!.isSeen(id),
    markSeen: (tx, id) => tx.markSeen(id),
    prune: (beforeMs) => host!.pruneSeen(beforeMs),
  };
  return {
    name: "dedup",
    api,
    setup(h) {
      host = h;
    },
    async run(h, signal) {
      while (!signal.aborted) {
        try {
          await h.clock.sleep(pruneIntervalMs, signal);
        } catch {
          return;
        }
        const pruned = await h.pruneSeen(h.clock.now() - retentionMs);
        h.log("debug", `pruned ${pruned} seen ids older than ${retentionMs} ms`);
      }
    },
  };
}

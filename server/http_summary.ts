// meowsync:production-port — the periodic log summary and sweep run on real timers.
/**
 * The relay process's periodic chores: an info-level summary line and the
 * retention sweep, on real timers.
 *
 * @module
 */
import type { ServerCore } from "./core.ts";
import type { LogSink } from "./http.ts";

/** Options for {@linkcode startChores}. */
export interface ChoresOptions {
  /** Receives the summary lines (level `info`) and sweep failures (`warn`). */
  log: LogSink;
  /**
   * How often to log the summary, in ms.
   * @default {60000}
   */
  summaryMs?: number;
  /**
   * How often to sweep expired messages, in ms.
   * @default {600000}
   */
  sweepMs?: number;
}

/**
 * Starts the summary and sweep timers; the returned function stops them.
 *
 * @example
 * ```ts
 * import { startChores } from "./http_summary.ts";
 * import { ServerCore } from "./core.ts";
 * import { MemoryBackend } from "./memory.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * const core = await ServerCore.create({
 *   backend: new MemoryBackend(), random: new SeededRandom(1),
 *   clock: { now: () => 0, sleep: () => Promise.resolve() },
 * });
 * const stop = startChores(core, { log: () => {} });
 * stop();
 * ```
 */
export function startChores(core: ServerCore, options: ChoresOptions): () => void {
  const { log } = options;
  let last = core.stats();
  const summary = setInterval(() => {
    const now = core.stats();
    log(
      "info",
      `last ${Math.round((options.summaryMs ?? 60_000) / 1000)}s: ` +
        `${now.requests - last.requests} requests (${now.rejected - last.rejected} rejected), ` +
        `${now.stored - last.stored} stored, ${now.delivered - last.delivered} delivered, ` +
        `${now.acked - last.acked} acked; ${now.longPollsOpen} long polls open`,
    );
    last = now;
  }, options.summaryMs ?? 60_000);
  const sweep = setInterval(() => {
    core.sweep().then(
      (n) => n > 0 && log("info", `sweep dropped ${n} expired messages`),
      (e) => log("warn", `sweep failed: ${(e as Error).message}`),
    );
  }, options.sweepMs ?? 600_000);
  return () => {
    clearInterval(summary);
    clearInterval(sweep);
  };
}

/**
 * The simulator's {@linkcode Clock}: time is the scheduler's virtual time,
 * shifted to a fixed epoch so that timestamps look real (and land in the same
 * place on every run).
 *
 * @module
 */
import type { Clock } from "../ports/mod.ts";
import type { Scheduler } from "./scheduler.ts";

/** 2026-01-01T00:00:00Z, i.e. `Date.UTC(2026, 0, 1)`: where virtual time 0 sits on the calendar. */
export const VIRTUAL_EPOCH_MS = 1_767_225_600_000;

/** Options of {@linkcode VirtualClock}. */
export interface VirtualClockOptions {
  /**
   * The clock's time when the scheduler's time is 0.
   * @default VIRTUAL_EPOCH_MS
   */
  epochMs?: number;
  /**
   * Prefix of the labels of this clock's wake-up events (e.g. the device
   * name), so a trace shows who was sleeping.
   * @default "clock"
   */
  label?: string;
}

/**
 * A {@linkcode Clock} over a {@linkcode Scheduler}: `now()` is
 * `epochMs + scheduler.now`, and `sleep(ms)` schedules a wake-up event `ms`
 * later in virtual time. Scenario times (`atMs`) are scheduler times; only the
 * kernel sees the calendar offset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Scheduler } from "./scheduler.ts";
 * import { VIRTUAL_EPOCH_MS, VirtualClock } from "./virtual_clock.ts";
 * const scheduler = new Scheduler();
 * const clock = new VirtualClock(scheduler);
 * let wokeAt = 0;
 * scheduler.schedule(0, async () => {
 *   await clock.sleep(5_000);
 *   wokeAt = clock.now();
 * });
 * await scheduler.runUntil(10_000);
 * assert(wokeAt === VIRTUAL_EPOCH_MS + 5_000);
 * ```
 */
export class VirtualClock implements Clock {
  readonly #scheduler: Scheduler;
  readonly #epochMs: number;
  readonly #label: string;

  /** Creates a clock reading `scheduler`'s time. */
  constructor(scheduler: Scheduler, options: VirtualClockOptions = {}) {
    this.#scheduler = scheduler;
    this.#epochMs = options.epochMs ?? VIRTUAL_EPOCH_MS;
    this.#label = options.label ?? "clock";
  }

  /**
   * The current virtual time in ms since the Unix epoch.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * import { VirtualClock } from "./virtual_clock.ts";
   * const clock = new VirtualClock(new Scheduler({ startMs: 1_000 }), { epochMs: 0 });
   * assert(clock.now() === 1_000);
   * ```
   */
  now(): number {
    return this.#epochMs + this.#scheduler.now;
  }

  /**
   * Resolves when the scheduler reaches `now + ms` (a negative `ms` counts as
   * 0, as with timers; `Infinity` waits for the signal alone); rejects with
   * `signal.reason` as soon as `signal` aborts, cancelling the wake-up event.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * import { VirtualClock } from "./virtual_clock.ts";
   * const scheduler = new Scheduler();
   * const clock = new VirtualClock(scheduler);
   * const controller = new AbortController();
   * const slept = clock.sleep(60_000, controller.signal).catch((e) => e);
   * controller.abort(new Error("stop"));
   * assert((await slept).message === "stop" && scheduler.pending() === 0);
   * ```
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (Number.isNaN(ms)) throw new RangeError(`Cannot sleep for ${ms}ms`);
    const delayMs = Math.max(0, ms);
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const id = delayMs === Infinity ? undefined : this.#scheduler.schedule(
        this.#scheduler.now + delayMs,
        wake,
        `${this.#label}: sleep ${delayMs}ms`,
      );
      const onAbort = () => {
        if (id !== undefined) this.#scheduler.cancel(id);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

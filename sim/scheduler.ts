/**
 * Discrete-event scheduling for the simulator: virtual time only moves when the
 * next event runs, so an hour of simulated traffic takes as long as the work
 * it does. Events run in (time, sequence) order, sequence being the order they
 * were scheduled in; between two events every piece of asynchronous work the
 * first one started is allowed to settle, so a run's order of events depends on
 * nothing but the events themselves.
 *
 * @module
 */
import { setImmediate } from "node:timers";

/** Identifies a scheduled event, for {@linkcode Scheduler.cancel}. */
export type EventId = number;

/** An event's callback; a returned promise is observed for errors, not awaited (see `runUntil`). */
export type EventCallback = () => void | Promise<void>;

/** What {@linkcode SchedulerOptions.onEvent} sees of each event as it runs. */
export interface EventInfo {
  /** The event's id. */
  id: EventId;
  /** Its virtual time in ms. */
  atMs: number;
  /** Its label, `""` when none was given. */
  label: string;
}

/** Options of {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /**
   * Virtual time at the start, in ms.
   * @default 0
   */
  startMs?: number;
  /**
   * Rounds of draining (flush microtasks, then wait for tracked promises)
   * after one event before the run is declared stuck.
   * @default 10000
   */
  drainRoundsMax?: number;
  /**
   * Events that may run at one virtual time before the run is declared a
   * livelock (work that keeps scheduling itself without time passing).
   * @default 1000000
   */
  eventsAtOneTimeMax?: number;
  /** Called just before each event runs, e.g. to write a trace. */
  onEvent?: (event: EventInfo) => void;
}

/** Options of {@linkcode Scheduler.runUntil}. */
export interface RunOptions {
  /**
   * Checked after each event once its work has drained; returning `true`
   * stops the run early (quiescence), leaving `now` at that event's time.
   * @default never idle
   */
  idle?: () => boolean;
}

interface Entry {
  id: EventId;
  atMs: number;
  seq: number;
  fn: EventCallback;
  label: string;
  /** Position in the heap, kept up to date so `cancel` is O(log n). */
  slot: number;
}

/**
 * A discrete-event scheduler: a binary heap of events ordered by (time,
 * sequence).
 *
 * `runUntil` runs one event at a time and, before the next, drains: it waits
 * until every microtask has run (a macrotask, `setImmediate`, is the barrier:
 * it only ever runs once the microtask queue is empty) and every
 * promise passed to {@linkcode Scheduler.track} has settled, repeating until a
 * round brings nothing new. Real I/O a callback starts must be tracked, or the
 * next event may run before it completes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Scheduler } from "./scheduler.ts";
 * const scheduler = new Scheduler();
 * const seen: string[] = [];
 * scheduler.schedule(20, () => void seen.push("b"));
 * scheduler.schedule(10, async () => {
 *   await Promise.resolve();
 *   seen.push("a");
 *   scheduler.schedule(scheduler.now + 10, () => void seen.push("c"));
 * });
 * await scheduler.runUntil(1_000);
 * assert(seen.join("") === "abc" && scheduler.now === 1_000);
 * ```
 */
export class Scheduler {
  /** The virtual time in ms: that of the event running, or of the last one run. */
  now: number;
  readonly #heap: Entry[] = [];
  readonly #byId = new Map<EventId, Entry>();
  readonly #tracked = new Set<Promise<unknown>>();
  readonly #drainRoundsMax: number;
  readonly #eventsAtOneTimeMax: number;
  readonly #onEvent?: (event: EventInfo) => void;
  #nextId = 1;
  #nextSeq = 0;
  /** Bumped by anything that shows asynchronous work still going on; drained when it stops moving. */
  #generation = 0;
  #eventsRun = 0;
  #running = false;
  #failure: Error | undefined;

  /** Creates an empty scheduler at `options.startMs`. */
  constructor(options: SchedulerOptions = {}) {
    this.now = options.startMs ?? 0;
    this.#drainRoundsMax = options.drainRoundsMax ?? 10_000;
    this.#eventsAtOneTimeMax = options.eventsAtOneTimeMax ?? 1_000_000;
    this.#onEvent = options.onEvent;
    if (!Number.isFinite(this.now)) throw new RangeError(`Invalid startMs: ${this.now}`);
  }

  /**
   * Schedules `fn` to run at virtual time `atMs` (not before `now`); events
   * at the same time run in the order they were scheduled.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * const scheduler = new Scheduler();
   * const id = scheduler.schedule(5, () => {}, "ping");
   * assert(typeof id === "number" && scheduler.pending() === 1);
   * ```
   */
  schedule(atMs: number, fn: EventCallback, label = ""): EventId {
    if (!Number.isFinite(atMs) || atMs < this.now) {
      throw new RangeError(
        `Cannot schedule "${label}" at ${atMs}ms: it is before now (${this.now}ms) or not a time`,
      );
    }
    const entry: Entry = { id: this.#nextId++, atMs, seq: this.#nextSeq++, fn, label, slot: 0 };
    this.#byId.set(entry.id, entry);
    this.#push(entry);
    this.#generation++;
    return entry.id;
  }

  /**
   * Removes a pending event; returns whether it was still pending.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * const scheduler = new Scheduler();
   * const id = scheduler.schedule(5, () => {});
   * assert(scheduler.cancel(id) && !scheduler.cancel(id) && scheduler.pending() === 0);
   * ```
   */
  cancel(id: EventId): boolean {
    const entry = this.#byId.get(id);
    if (entry === undefined) return false;
    this.#byId.delete(id);
    this.#removeAt(entry.slot);
    this.#generation++;
    return true;
  }

  /**
   * How many events are waiting to run.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * assert(new Scheduler().pending() === 0);
   * ```
   */
  pending(): number {
    return this.#heap.length;
  }

  /**
   * How many events have run so far (for reports).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * const scheduler = new Scheduler();
   * scheduler.schedule(1, () => {});
   * await scheduler.runUntil(1);
   * assert(scheduler.eventsRun === 1);
   * ```
   */
  get eventsRun(): number {
    return this.#eventsRun;
  }

  /**
   * Registers real asynchronous work (a file, SQLite or Deno KV write) that
   * the current event started: `runUntil` waits for it to settle before the
   * next event. Returns `promise` itself, so a caller can `await
   * scheduler.track(write())`. The scheduler only waits for it: a rejection
   * is the caller's to handle. Never track work that waits for a later event
   * (a virtual sleep, a simulated delivery): the drain would wait for it
   * forever, since the next event only runs once the drain is over.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * const scheduler = new Scheduler();
   * let written = false;
   * scheduler.schedule(1, () => {
   *   scheduler.track(Deno.makeTempFile().then(async (p) => {
   *     await Deno.remove(p);
   *     written = true;
   *   }));
   * });
   * scheduler.schedule(2, () => assert(written));
   * await scheduler.runUntil(2);
   * ```
   */
  track<T>(promise: Promise<T>): Promise<T> {
    this.#tracked.add(promise);
    this.#generation++;
    const settled = () => {
      this.#tracked.delete(promise);
      this.#generation++;
    };
    promise.then(settled, settled);
    return promise;
  }

  /**
   * Runs events in (time, sequence) order up to and including `endMs`,
   * draining all asynchronous work between two events. Stops early when
   * `options.idle()` holds after an event; otherwise `now` ends at `endMs`.
   *
   * A callback's returned promise is not awaited (it may be waiting for a
   * later event, e.g. a virtual sleep), but its rejection fails the run, as
   * does a callback that throws: `runUntil` rejects with an error naming the
   * event, the original as its `cause`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Scheduler } from "./scheduler.ts";
   * const scheduler = new Scheduler();
   * let ticks = 0;
   * const tick = () => {
   *   ticks++;
   *   scheduler.schedule(scheduler.now + 1_000, tick);
   * };
   * scheduler.schedule(0, tick);
   * await scheduler.runUntil(60_000, { idle: () => ticks === 10 });
   * assert(ticks === 10 && scheduler.now === 9_000);
   * ```
   */
  async runUntil(endMs: number, options: RunOptions = {}): Promise<void> {
    if (!Number.isFinite(endMs) || endMs < this.now) {
      throw new RangeError(`Cannot run until ${endMs}ms: it is before now (${this.now}ms)`);
    }
    if (this.#running) throw new TypeError("Cannot run the scheduler: it is already running");
    this.#running = true;
    try {
      await this.#drain(undefined);
      let eventsAtThisTime = 0;
      while (this.#heap.length > 0 && this.#heap[0].atMs <= endMs) {
        const entry = this.#pop();
        this.#byId.delete(entry.id);
        eventsAtThisTime = entry.atMs === this.now ? eventsAtThisTime + 1 : 1;
        if (eventsAtThisTime > this.#eventsAtOneTimeMax) {
          throw new Error(
            `Scheduler livelock: more than ${this.#eventsAtOneTimeMax} events at ${this.now}ms ` +
              `(eventsAtOneTimeMax), the last "${entry.label}"`,
          );
        }
        this.now = entry.atMs;
        this.#eventsRun++;
        this.#onEvent?.({ id: entry.id, atMs: entry.atMs, label: entry.label });
        this.#invoke(entry);
        await this.#drain(entry);
        if (options.idle?.()) return;
      }
      this.now = endMs;
    } finally {
      this.#running = false;
    }
  }

  #invoke(entry: Entry): void {
    let result: void | Promise<void>;
    try {
      result = entry.fn();
    } catch (e) {
      throw eventFailed(entry, e);
    }
    if (result instanceof Promise) {
      result.then(undefined, (e) => {
        this.#failure ??= eventFailed(entry, e);
        this.#generation++;
      });
    }
  }

  /** Waits until microtasks and tracked promises stop producing work. */
  async #drain(entry: Entry | undefined): Promise<void> {
    for (let round = 0; round < this.#drainRoundsMax; round++) {
      const generation = this.#generation;
      await macrotask();
      if (this.#failure !== undefined) {
        const failure = this.#failure;
        this.#failure = undefined;
        throw failure;
      }
      if (this.#tracked.size > 0) {
        await Promise.allSettled([...this.#tracked]);
        continue;
      }
      // Nothing settled, was tracked or was scheduled while the barrier flushed
      // the microtask queue: everything the event started has run its course.
      if (generation === this.#generation) return;
    }
    throw new Error(
      `Scheduler could not drain after ${
        entry ? `"${entry.label}" at ${entry.atMs}ms` : "start"
      }: ` +
        `asynchronous work still going on after ${this.#drainRoundsMax} rounds (drainRoundsMax)`,
    );
  }

  // --- binary heap ordered by (atMs, seq) ----------------------------------

  #push(entry: Entry): void {
    entry.slot = this.#heap.length;
    this.#heap.push(entry);
    this.#up(entry.slot);
  }

  #pop(): Entry {
    const top = this.#heap[0];
    this.#removeAt(0);
    return top;
  }

  #removeAt(slot: number): void {
    const last = this.#heap.pop()!;
    if (slot === this.#heap.length) return;
    this.#heap[slot] = last;
    last.slot = slot;
    this.#down(slot);
    this.#up(slot);
  }

  #up(slot: number): void {
    const heap = this.#heap;
    while (slot > 0) {
      const parent = (slot - 1) >> 1;
      if (!before(heap[slot], heap[parent])) return;
      this.#swap(slot, parent);
      slot = parent;
    }
  }

  #down(slot: number): void {
    const heap = this.#heap;
    for (;;) {
      const left = 2 * slot + 1;
      const right = left + 1;
      let first = slot;
      if (left < heap.length && before(heap[left], heap[first])) first = left;
      if (right < heap.length && before(heap[right], heap[first])) first = right;
      if (first === slot) return;
      this.#swap(slot, first);
      slot = first;
    }
  }

  #swap(a: number, b: number): void {
    const heap = this.#heap;
    [heap[a], heap[b]] = [heap[b], heap[a]];
    heap[a].slot = a;
    heap[b].slot = b;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}

function eventFailed(entry: Entry, cause: unknown): Error {
  const what = cause instanceof Error ? cause.message : String(cause);
  return new Error(`Event "${entry.label}" at ${entry.atMs}ms failed: ${what}`, { cause });
}

/**
 * Resolves from a macrotask, and so only once the microtask queue is empty:
 * awaiting it flushes every microtask queued before it, and every one those
 * queue in turn, however deep the chain. `setImmediate` is the one macrotask
 * that is fit for this: it reads no clock and is not clamped (a zero
 * `setTimeout` costs ~2ms here), and a `MessageChannel` message in Deno is
 * delivered after only a few microtask turns, so it is no barrier at all.
 * What runs in the meantime is decided by the microtask queue alone, so the
 * order of events does not depend on it.
 */
/** Resolves after one macrotask turn: every microtask queued before it has run. */
export function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

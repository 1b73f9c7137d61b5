/**
 * Per-client rate limits over fixed windows of the caller's clock, for limits
 * a relay keeps per client address (mailbox look-ups today). The counters
 * live in one process's memory, so each relay process counts on its own.
 *
 * @module
 */

/** Options for {@linkcode WindowLimiter}. */
export interface WindowLimiterOptions {
  /** Most takes one client may make per window. */
  takesMax: number;
  /** The length of a window, in ms; windows start at whole multiples of it. */
  windowMs: number;
  /**
   * Most clients tracked at once; a new client beyond it evicts the one seen least recently (which
   * then starts again from zero).
   */
  clientsMax: number;
}

/** What {@linkcode WindowLimiter.take} answers. */
export type WindowTake =
  /** Allowed; `window` identifies the window it counted in (for a refund). */
  | { ok: true; window: number }
  /** Refused: the client used its takes; the next window starts in `retryAfterMs`. */
  | { ok: false; retryAfterMs: number };

/**
 * Counts takes per client key in fixed windows: a client may take
 * `takesMax` times per window, then is refused until the window ends.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WindowLimiter } from "./client_limits.ts";
 * const limiter = new WindowLimiter({ takesMax: 2, windowMs: 60_000, clientsMax: 100 });
 * assert(limiter.take("10.0.0.1", 1_000).ok);
 * assert(limiter.take("10.0.0.1", 2_000).ok);
 * const refused = limiter.take("10.0.0.1", 3_000);
 * assert(!refused.ok && refused.retryAfterMs === 57_000);
 * assert(limiter.take("10.0.0.2", 3_000).ok, "another client has its own count");
 * assert(limiter.take("10.0.0.1", 60_000).ok, "the next window starts afresh");
 * ```
 */
export class WindowLimiter {
  readonly #options: Readonly<WindowLimiterOptions>;
  /** client → its window and count, least recently seen first. */
  readonly #clients = new Map<string, { window: number; count: number }>();

  /**
   * @param options see {@linkcode WindowLimiterOptions}
   * @throws {RangeError} when a limit is not a positive safe integer
   */
  constructor(options: WindowLimiterOptions) {
    for (const [name, value] of Object.entries(options)) {
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new RangeError(
          `Cannot limit clients with ${name}=${value}: expected a positive integer`,
        );
      }
    }
    this.#options = Object.freeze({ ...options });
  }

  /** How many clients are tracked now. */
  get size(): number {
    return this.#clients.size;
  }

  /** Counts one take by `client` at `nowMs`, unless it used its takes in this window. */
  take(client: string, nowMs: number): WindowTake {
    const { takesMax, windowMs, clientsMax } = this.#options;
    const window = Math.floor(nowMs / windowMs);
    let entry = this.#clients.get(client);
    if (entry) this.#clients.delete(client);
    else if (this.#clients.size >= clientsMax) {
      this.#clients.delete(this.#clients.keys().next().value!);
    }
    if (!entry || entry.window !== window) entry = { window, count: 0 };
    this.#clients.set(client, entry);
    if (entry.count >= takesMax) {
      return { ok: false, retryAfterMs: (window + 1) * windowMs - nowMs };
    }
    entry.count++;
    return { ok: true, window };
  }

  /** Gives back a take `client` made in `window` (nothing when that window is over). */
  refund(client: string, window: number): void {
    const entry = this.#clients.get(client);
    if (entry && entry.window === window && entry.count > 0) entry.count--;
  }
}

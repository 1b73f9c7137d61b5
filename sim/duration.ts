/**
 * Durations as scenario files write them: a number of milliseconds, or a
 * string with a unit (`250ms`, `10s`, `5m`, `1h`, `3d`). Everything downstream works
 * in whole milliseconds.
 *
 * @module
 */

/** What a duration looks like, for error messages. */
export const DURATION_EXPECTED = "a number of ms or a string like 250ms, 10s, 5m, 1h, 3d";

/** Milliseconds per unit a duration string may carry. */
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A number (digits, an optional fraction) and a unit; nothing else, not even a space between. */
const DURATION_PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * Reads a duration into whole milliseconds, or returns `undefined` when the
 * value is not one: a negative, fractional or non-finite number of ms, a string
 * without a unit or with an unknown one, or anything that is neither a number
 * nor a string. A fraction is allowed in a string as long as the result is a
 * whole number of ms (`1.5s`, not `0.5ms`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDuration } from "./duration.ts";
 * assert(parseDuration("1.5s") === 1500);
 * assert(parseDuration(250) === 250);
 * assert(parseDuration("10 seconds") === undefined);
 * ```
 */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== "string") return undefined;
  const match = DURATION_PATTERN.exec(value.trim());
  if (match === null) return undefined;
  const [, amount, unit] = match;
  // Scale by the digits rather than by a float so "0.3s" is exactly 300, not 300.00000000000006.
  const [whole, fraction = ""] = amount.split(".");
  const scale = UNIT_MS[unit as keyof typeof UNIT_MS];
  const ms = Number(whole) * scale + (Number(fraction) * scale) / 10 ** fraction.length;
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/**
 * Writes milliseconds in the largest unit that divides them exactly, the way a
 * scenario file would (`90s`, `5m`, `250ms`); the inverse of
 * {@linkcode parseDuration}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./duration.ts";
 * assert(formatDuration(300_000) === "5m");
 * assert(formatDuration(1500) === "1500ms");
 * ```
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(`Cannot format duration: ${ms} is not a non-negative whole number of ms`);
  }
  if (ms === 0) return "0s";
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

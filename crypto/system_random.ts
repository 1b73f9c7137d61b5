// meowsync:production-port — the OS CSPRNG behind the Random port.
/**
 * Production randomness for the {@linkcode Random} port.
 *
 * @module
 */
import type { Random } from "./random.ts";

/**
 * Production randomness: the operating system's CSPRNG.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SystemRandom } from "./system_random.ts";
 * assert(new SystemRandom().bytes(16).length === 16);
 * ```
 */
export class SystemRandom implements Random {
  /** Returns `length` bytes from `crypto.getRandomValues`. */
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    // getRandomValues fills at most 65,536 bytes per call.
    for (let offset = 0; offset < length; offset += 65536) {
      crypto.getRandomValues(out.subarray(offset, Math.min(length, offset + 65536)));
    }
    return out;
  }
}

/**
 * Skipped message keys of the Double Ratchet: walking a receiving chain past
 * messages that have not arrived, storing their keys (capped, oldest evicted),
 * expiring them, and taking one out when its message comes. Private to
 * crypto/: other folders import crypto/mod.ts.
 *
 * @module
 */
import { TooManySkipped } from "./errors.ts";
import { hmacSha256 } from "./_primitives.ts";
import { equalBytes } from "./bytes.ts";

/**
 * Most message keys ONE message may make the receiver skip in a chain (Signal's
 * MAX_SKIP). A header past it in the current chain, or in the new chain of a DH
 * step, throws {@linkcode TooManySkipped}; it bounds the work one message
 * costs. It does not bound how many keys are stored: see
 * {@linkcode SKIPPED_KEYS_MAX}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_SKIP } from "./mod.ts";
 * assert(MAX_SKIP === 1000);
 * ```
 */
export const MAX_SKIP = 1000;

/**
 * Most skipped message keys one session stores. Storing more evicts the
 * oldest: a gap is never refused for this reason. It is at least twice
 * {@linkcode MAX_SKIP}, so one DH step (the rest of the old chain plus the
 * start of the new one) never evicts the keys it just stored.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_SKIP, SKIPPED_KEYS_MAX } from "./mod.ts";
 * assert(SKIPPED_KEYS_MAX >= 2 * MAX_SKIP);
 * ```
 */
export const SKIPPED_KEYS_MAX = 2 * MAX_SKIP;

/**
 * Age after which a stored skipped message key is dropped: a message delayed
 * longer than this can no longer be decrypted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SKIPPED_KEY_TTL_MS } from "./mod.ts";
 * assert(SKIPPED_KEY_TTL_MS === 604_800_000);
 * ```
 */
export const SKIPPED_KEY_TTL_MS = 7 * 24 * 3600 * 1000;

const CHAIN_MESSAGE = Uint8Array.of(0x01);
const CHAIN_NEXT = Uint8Array.of(0x02);

/**
 * A message key kept for a message that has not arrived yet.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SkippedMessageKey } from "./mod.ts";
 * const entry: SkippedMessageKey = {
 *   publicKey: new Uint8Array(32),
 *   n: 3,
 *   messageKey: new Uint8Array(32),
 *   createdMs: 0,
 * };
 * assert(entry.n === 3);
 * ```
 */
export interface SkippedMessageKey {
  /** The remote ratchet public key of the chain the message belongs to. */
  readonly publicKey: Uint8Array;
  /** The message's number in that chain. */
  readonly n: number;
  /** The message key. */
  readonly messageKey: Uint8Array;
  /** When the key was stored (ms, the caller's clock): it expires after SKIPPED_KEY_TTL_MS. */
  readonly createdMs: number;
}

/** KDF_CK, one step of a symmetric-key chain: [message key, next chain key]. */
export function kdfCk(ck: Uint8Array): [Uint8Array, Uint8Array] {
  return [hmacSha256(ck, CHAIN_MESSAGE), hmacSha256(ck, CHAIN_NEXT)];
}

/** The stored keys still fresh at `now` (the same array when none expired). */
export function expireSkipped(
  skipped: readonly SkippedMessageKey[],
  now: number,
): readonly SkippedMessageKey[] {
  const fresh = (k: SkippedMessageKey) => now - k.createdMs <= SKIPPED_KEY_TTL_MS;
  return skipped.every(fresh) ? skipped : skipped.filter(fresh);
}

/** Signal's TrySkippedMessageKeys: the key of message `n` of chain `publicKey`, and the store without it. */
export function takeSkipped(
  skipped: readonly SkippedMessageKey[],
  publicKey: Uint8Array,
  n: number,
): { messageKey: Uint8Array; rest: readonly SkippedMessageKey[] } | null {
  const found = skipped.findIndex((k) => k.n === n && equalBytes(k.publicKey, publicKey));
  if (found < 0) return null;
  return { messageKey: skipped[found].messageKey, rest: skipped.toSpliced(found, 1) };
}

/**
 * Throws {@linkcode TooManySkipped} when one message would skip more than
 * {@linkcode MAX_SKIP} keys of a chain.
 *
 * @throws {TooManySkipped} when `count` is more than MAX_SKIP
 */
export function assertSkipBound(count: number, where: string): void {
  if (count > MAX_SKIP) {
    throw new TooManySkipped(
      `Cannot decrypt a ratchet message: it would skip ${count} message keys ${where} ` +
        `(max ${MAX_SKIP} per message)`,
    );
  }
}

/**
 * Signal's SkipMessageKeys: advances a chain from message `from` to `until`,
 * storing each skipped key; when the store then holds more than
 * {@linkcode SKIPPED_KEYS_MAX}, the oldest are evicted.
 *
 * @throws {RangeError} when asked to skip more than MAX_SKIP (callers bound it first)
 */
export function skipMessageKeys(
  ck: Uint8Array,
  options: {
    from: number;
    until: number;
    publicKey: Uint8Array;
    now: number;
    into: readonly SkippedMessageKey[];
  },
): { ck: Uint8Array; skipped: readonly SkippedMessageKey[] } {
  if (options.until <= options.from) return { ck, skipped: options.into };
  if (options.until - options.from > MAX_SKIP) {
    throw new RangeError(`Cannot skip ${options.until - options.from} message keys at once`);
  }
  const skipped = options.into.slice();
  for (let n = options.from; n < options.until; n++) {
    const [messageKey, next] = kdfCk(ck);
    skipped.push({ publicKey: options.publicKey, n, messageKey, createdMs: options.now });
    ck = next;
  }
  if (skipped.length > SKIPPED_KEYS_MAX) skipped.splice(0, skipped.length - SKIPPED_KEYS_MAX);
  return { ck, skipped };
}

/**
 * The limits a relay enforces, each with its unit last, and their defaults.
 *
 * @module
 */
import { ASSUMED_LIMITS } from "../envelope/mod.ts";

/** How far a pull request's timestamp may be from the relay's clock, in ms (PROTOCOL.md). */
export const PULL_FRESHNESS_MS = 5 * 60 * 1000;

/**
 * Every limit of a relay, each published in the card (`ServerLimits`) so
 * clients keep within them.
 */
export interface ServerLimitsInit {
  /**
   * Largest packed user message stored (serialized), and largest mailbox post, in bytes.
   * @default {32768}
   */
  messageBytesMax: number;
  /**
   * Most packed user messages one request may carry.
   * @default {16}
   */
  messagesPerRequestMax: number;
  /**
   * Most live messages one queue holds; more are refused with QUEUE_FULL.
   * @default {1000}
   */
  queueLengthMax: number;
  /**
   * How long a stored message is kept, in ms.
   * @default {1209600000} (14 days)
   */
  retentionMs: number;
  /**
   * Longest long-poll wait granted, in ms.
   * @default {30000}
   */
  longPollMsMax: number;
  /**
   * Most long polls open at once in this process; more are answered at once with BUSY.
   * @default {1000}
   */
  longPollsOpenMax: number;
  /**
   * Most pull requests one request may carry: enough for a device with a couple of hundred
   * contacts in one long poll (a device with more splits its pulls into several requests).
   * @default {256}
   */
  pullRequestsMax: number;
  /**
   * Largest request body read, in bytes.
   * @default {1048576}
   */
  requestBytesMax: number;
  /**
   * Most messages one answer carries (the oldest ones; the client acks and pulls again).
   * @default {64}
   */
  pullMessagesMax: number;
  /**
   * Most delivery uuids one request may ack.
   * @default {1024}
   */
  acksPerRequestMax: number;
  /**
   * Longest life of a mailbox, in ms; also the life of one whose ALLOCATE asks for none.
   * @default {600000} (10 minutes)
   */
  mailboxMsMax: number;
  /**
   * Most posts one mailbox holds (both members together); more are refused with QUEUE_FULL.
   * @default {8}
   */
  mailboxPostsMax: number;
  /**
   * Most mailbox look-ups per client address per minute: EXCHANGE and CLOSE steps by a side that
   * was not a member yet (claims and misses). More are answered with BUSY.
   * @default {10}
   */
  mailboxLookupsPerMinuteMax: number;
  /**
   * Most long polls one client address may hold open at once; a request that would long-poll
   * beyond it is answered at once with BUSY (and takes none of the `longPollsOpenMax` slots).
   * @default {8}
   */
  longPollsPerClientMax: number;
  /**
   * Most requests one client address may make per second of the relay's clock; more are answered
   * with BUSY (retry when the second ends) before any storage work.
   * @default {50}
   */
  requestsPerSecondPerClientMax: number;
}

/** The defaults of {@linkcode ServerLimitsInit}. */
export const DEFAULT_LIMITS: Readonly<ServerLimitsInit> = Object.freeze({
  // The card's limits start from the protocol's values (envelope/limits.ts) ...
  ...ASSUMED_LIMITS,
  // ... except that a relay takes a device with a couple of hundred contacts in one pull.
  pullRequestsMax: 256,
  queueLengthMax: 1000,
  longPollsOpenMax: 1000,
  mailboxMsMax: 10 * 60 * 1000,
  mailboxPostsMax: 8,
  mailboxLookupsPerMinuteMax: 10,
  requestsPerSecondPerClientMax: 50,
});

/**
 * The defaults overridden by `overrides`, validated.
 *
 * @throws {RangeError} when a limit is not a positive safe integer (uint32 for card fields)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveLimits } from "./limits.ts";
 * assert(resolveLimits({ queueLengthMax: 5 }).queueLengthMax === 5);
 * ```
 */
export function resolveLimits(overrides: Partial<ServerLimitsInit> = {}): ServerLimitsInit {
  const limits = { ...DEFAULT_LIMITS };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!(name in DEFAULT_LIMITS)) throw new RangeError(`Unknown relay limit "${name}"`);
    const max = name === "retentionMs" ? Number.MAX_SAFE_INTEGER : 0xffffffff;
    if (!Number.isSafeInteger(value) || value <= 0 || value > max) {
      throw new RangeError(
        `Cannot use relay limit ${name}=${value}: expected a positive integer up to ${max}`,
      );
    }
    (limits as Record<string, number>)[name] = value;
  }
  return limits;
}

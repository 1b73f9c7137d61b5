/**
 * The relay limits of the protocol, defined once for both sides: what a relay's card states, as
 * a client keeps within them, and the values the relay's own defaults start from
 * (server/limits.ts). A card
 * written before a limit existed says 0 for it; the client then assumes the
 * protocol's most conservative value, so it never sends what an older relay
 * would refuse.
 *
 * @module
 */
import type { ServerCard } from "../proto/mod.ts";

/** What a client reads of a relay's card, every field filled. */
export interface RelayLimits {
  /** Largest packed user message the relay stores, in bytes. */
  messageBytesMax: number;
  /** Most packed messages in one request. */
  messagesPerRequestMax: number;
  /** Most pull requests in one request. */
  pullRequestsMax: number;
  /** Most acks in one request. */
  acksPerRequestMax: number;
  /** Largest request body, in bytes. */
  requestBytesMax: number;
  /** Most messages one answer carries: an answer this full means more may wait. */
  pullMessagesMax: number;
  /** Longest long-poll wait the relay grants, in ms. */
  longPollMsMax: number;
  /** How long the relay keeps a message, in ms. */
  retentionMs: number;
  /** Long polls one client address may hold open at once. */
  longPollsPerClientMax: number;
}

/** What a client assumes for a limit its relay's card does not state (the protocol's first values). */
export const ASSUMED_LIMITS: Readonly<RelayLimits> = Object.freeze({
  messageBytesMax: 32 * 1024,
  messagesPerRequestMax: 16,
  pullRequestsMax: 16,
  acksPerRequestMax: 1024,
  requestBytesMax: 1024 * 1024,
  pullMessagesMax: 64,
  longPollMsMax: 30_000,
  retentionMs: 14 * 24 * 60 * 60 * 1000,
  longPollsPerClientMax: 8,
});

/**
 * The limits of `server`'s card, with {@linkcode ASSUMED_LIMITS} for what it does not state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { ServerCardSchema } from "../proto/gen/meow_pb.ts";
 * import { relayLimits } from "./limits.ts";
 * const card = create(ServerCardSchema, { limits: { pullRequestsMax: 8 } });
 * assert.equal(relayLimits(card).pullRequestsMax, 8);
 * assert.equal(relayLimits(card).messagesPerRequestMax, 16);
 * ```
 */
export function relayLimits(server: ServerCard): RelayLimits {
  const card = server.limits;
  const pick = (name: keyof RelayLimits): number => {
    const value = Number(card?.[name] ?? 0);
    return value > 0 ? value : ASSUMED_LIMITS[name];
  };
  return {
    messageBytesMax: pick("messageBytesMax"),
    messagesPerRequestMax: pick("messagesPerRequestMax"),
    pullRequestsMax: pick("pullRequestsMax"),
    acksPerRequestMax: pick("acksPerRequestMax"),
    requestBytesMax: pick("requestBytesMax"),
    pullMessagesMax: pick("pullMessagesMax"),
    longPollMsMax: pick("longPollMsMax"),
    retentionMs: pick("retentionMs"),
    longPollsPerClientMax: pick("longPollsPerClientMax"),
  };
}

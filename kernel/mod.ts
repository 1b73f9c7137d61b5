/**
 * The meowsync microkernel: identity, peers, the crypto pipeline, the plugin
 * router, the outbox and the poll loop, over the ports.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel } from "./mod.ts";
 * assert(typeof Kernel.open === "function");
 * ```
 *
 * @module
 */
export { Kernel } from "./kernel.ts";
export type {
  InvitationTicket,
  KernelObservation,
  KernelOptions,
  LogLevel,
  ReceiveOutcome,
  RelayHealth,
  RelayRequestKind,
} from "./kernel.ts";
export { ASSUMED_LIMITS, type RelayLimits, relayLimits } from "./relay_limits.ts";
export type {
  EventHooks,
  KernelEventName,
  KernelEvents,
  Plugin,
  PluginHost,
  PluginInput,
  ReceiveContext,
  Tx,
} from "./plugin.ts";
export type {
  Batch,
  Clock,
  ListMessagesOptions,
  Random,
  SeenMark,
  Store,
  Transport,
} from "./ports.ts";
export { TransportError } from "./ports.ts";
export { systemClock } from "./system_clock.ts";
export * from "./errors.ts";
export {
  answerInvitation,
  createInvitation,
  decodeCard,
  finalizeInvitation,
  HELLO_TYPE,
} from "./invitation.ts";
export { contactLookupKey, lookupKeyOf, myLookupKey, pack, ratchetAd, unpack } from "./pipeline.ts";

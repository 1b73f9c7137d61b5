/**
 * forward_relay: the primary-device relay. A contact's primary (the device
 * that completed the invitation with it) alone holds the contact's ratchet;
 * siblings forward what they send to it, and it sends and syncs back. See
 * the module doc of `forward_relay.ts` for what happens while the primary is
 * away (no handover: forwards wait in its queue on the relay).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FORWARD_SYNC_TYPE, forwardRelayPlugin } from "./mod.ts";
 * assert(forwardRelayPlugin().name === "forward_relay" && FORWARD_SYNC_TYPE === "forward");
 * ```
 *
 * @module
 */
export {
  FORWARD_RELAY_API,
  FORWARD_SYNC_TYPE,
  forwardRelayPlugin,
  HANDOVER_ACK_SYNC_TYPE,
  HANDOVER_SYNC_TYPE,
  primaryDeviceOf,
} from "./forward_relay.ts";
export type { ForwardRelayApi, ForwardRelayOptions } from "./forward_relay.ts";

/**
 * device_sync: multi-device sync of one user's conversations (DESIGN.md, "The
 * sync model"). Pairs a user's devices into a full mesh, sends every change
 * (messages, statuses, contacts, profile, relays) to every sibling as a
 * `DeviceSyncPayload`, and applies what siblings send, once each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatPlugin } from "../chat/mod.ts";
 * import { dedupPlugin } from "../dedup/mod.ts";
 * import { deviceSyncPlugin } from "./mod.ts";
 * const plugins = [chatPlugin(), dedupPlugin(), deviceSyncPlugin()];
 * assert(plugins[2].name === "device_sync");
 * ```
 *
 * @module
 */
export { DEVICE_SYNC_API, deviceSyncPlugin } from "./device_sync.ts";
export type {
  CatchUpReport,
  DeviceSyncApi,
  DeviceSyncOptions,
  DispatchOptions,
} from "./device_sync.ts";
export {
  CATCH_UP_MARGIN_MS,
  HISTORY_DEFAULT,
  HISTORY_MESSAGES_PER_CONVERSATION_MAX,
  HISTORY_MESSAGES_TOTAL_MAX,
  HISTORY_PAYLOAD_MESSAGES_MAX,
  HISTORY_WINDOW_MS_DEFAULT,
  type HistoryWindow,
  lastActivityMs,
  parseHistoryWindow,
} from "./_history.ts";
export type { SyncContext, SyncHandler } from "./_consume.ts";
export { adoptKeys } from "./_consume.ts";
export {
  containsBytes,
  decodeSyncPayload,
  DEVICE_SYNC_TYPE,
  encodeSyncPayload,
  messageDedupId,
  messageForSync,
  peerForSync,
  profileForSync,
  publicIdentity,
  SYNC_PAYLOAD_BYTES_MAX,
  SYNC_TYPES,
  wins,
} from "./payload.ts";
export type { BuiltInSyncType, Version } from "./payload.ts";

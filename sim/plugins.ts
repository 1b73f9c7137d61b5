/**
 * The plugins every simulated device runs: the production set, in the order a
 * device agent registers them.
 *
 * @module
 */
import type { PluginInput } from "../kernel/mod.ts";
import { chatPlugin } from "../plugins/chat/mod.ts";
import { dedupPlugin } from "../plugins/dedup/mod.ts";
import { deviceSyncPlugin } from "../plugins/device_sync/mod.ts";
import { forwardRelayPlugin } from "../plugins/forward_relay/mod.ts";
import { relaysPlugin } from "../plugins/relays/mod.ts";

export {
  DEVICE_SYNC_API,
  type DeviceSyncApi as DeviceSyncLike,
} from "../plugins/device_sync/mod.ts";

/** The production plugin set, in registration order. */
export function defaultPlugins(): PluginInput[] {
  return [chatPlugin(), dedupPlugin(), deviceSyncPlugin(), forwardRelayPlugin(), relaysPlugin()];
}

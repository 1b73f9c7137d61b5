/**
 * The production plugin set: the one list every meowsync device runs — the device agent, the
 * simulator's virtual devices — in registration order. Each plugin is its own folder with its own
 * `mod.ts`; this door only assembles them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { productionPlugins } from "./mod.ts";
 * assert.deepEqual(productionPlugins().map((p) => p.name), [
 *   "chat",
 *   "dedup",
 *   "device_sync",
 *   "forward_relay",
 *   "relays",
 * ]);
 * ```
 *
 * @module
 */
import type { Plugin } from "../kernel/mod.ts";
import { chatPlugin } from "./chat/mod.ts";
import { dedupPlugin } from "./dedup/mod.ts";
import { deviceSyncPlugin } from "./device_sync/mod.ts";
import { forwardRelayPlugin } from "./forward_relay/mod.ts";
import { relaysPlugin } from "./relays/mod.ts";

/** A fresh instance of each production plugin, in the order a device registers them. */
export function productionPlugins(): Plugin[] {
  return [chatPlugin(), dedupPlugin(), deviceSyncPlugin(), forwardRelayPlugin(), relaysPlugin()];
}

/**
 * The plugins every simulated device runs: the production set, in the order a
 * device agent registers them.
 *
 * @module
 */
import type { PluginInput } from "../kernel/mod.ts";
import { productionPlugins, type Weakening } from "../plugins/mod.ts";

export type { Weakening } from "../plugins/mod.ts";

export {
  DEVICE_SYNC_API,
  type DeviceSyncApi as DeviceSyncLike,
} from "../plugins/device_sync/mod.ts";

/** The production plugin set, in registration order (plugins/mod.ts: the one list). */
export function defaultPlugins(weakening: Weakening = {}): PluginInput[] {
  return productionPlugins(weakening);
}

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
 *   "reactions",
 *   "edits",
 *   "deletions",
 * ]);
 * ```
 *
 * @module
 */
import type { Plugin, PluginModule } from "../kernel/mod.ts";
import { chatPlugin } from "./chat/mod.ts";
import { dedupPlugin } from "./dedup/mod.ts";
import { deviceSyncPlugin } from "./device_sync/mod.ts";
import { forwardRelayPlugin } from "./forward_relay/mod.ts";
import { relaysPlugin } from "./relays/mod.ts";
import { reactionsModule, reactionsPlugin } from "./reactions/mod.ts";
import { editsModule, editsPlugin } from "./edits/mod.ts";
import { deletionsModule, deletionsPlugin } from "./deletions/mod.ts";

export { loadPluginModule, PluginModuleError } from "./loader.ts";

/**
 * The modules of the message plugins shipped with meowsync (reactions, edits, deletions): their
 * plugins are in {@linkcode productionPlugins}; the simulator and the agent take their steps,
 * expectations, commands and history notes from here, as from a module loaded with `--plugin`.
 */
export const BUILTIN_MODULES: readonly PluginModule[] = [
  reactionsModule,
  editsModule,
  deletionsModule,
];

/**
 * Mechanisms of the production plugins a test build switches off to show
 * what they are worth (never in production): history on pairing, catch-up,
 * and sending again what was not acknowledged or confirmed.
 */
export interface Weakening {
  /** No history for a newly paired device. */
  noHistory?: boolean;
  /** No catch-up after an absence past half the retention. */
  noCatchUp?: boolean;
  /** Nothing sent again before the relay's retention runs out. */
  noRefresh?: boolean;
  /**
   * An old primary refuses the forwards that still reach it instead of passing them on, and a
   * new primary leaves what is pending for its contact to the refresh.
   */
  noReforward?: boolean;
  /** A removed device stays a sibling everywhere (its removal is recorded, nothing is dropped). */
  keepRemoved?: boolean;
  /** The remover does not take over the contacts of a removed primary (no session reset). */
  noTakeover?: boolean;
  /** No rekey when a device is removed: every conversation keeps the keys the removed one holds. */
  noRekey?: boolean;
  /** Device list changes (introductions, removals) are taken without the root's signature. */
  unsignedList?: boolean;
  /** The primary keeps a contact's reactions and deletions to itself (siblings never see them). */
  marksNoPassOn?: boolean;
  /** The last edit to arrive wins, whatever its time. */
  editsLastArrival?: boolean;
}

/** A fresh instance of each production plugin, in the order a device registers them. */
export function productionPlugins(weakening: Weakening = {}): Plugin[] {
  return [
    chatPlugin({ refresh: !weakening.noRefresh }),
    dedupPlugin(),
    deviceSyncPlugin({
      history: !weakening.noHistory,
      catchUp: !weakening.noCatchUp,
      dropRemoved: !weakening.keepRemoved,
      unsignedList: weakening.unsignedList,
    }),
    forwardRelayPlugin({
      refresh: !weakening.noRefresh,
      reforward: !weakening.noReforward,
      takeover: !weakening.noTakeover,
      rekey: !weakening.noRekey,
    }),
    relaysPlugin(),
    reactionsPlugin({ noPassOn: weakening.marksNoPassOn }),
    editsPlugin({ lastArrivalWins: weakening.editsLastArrival }),
    deletionsPlugin({ noPassOn: weakening.marksNoPassOn }),
  ];
}

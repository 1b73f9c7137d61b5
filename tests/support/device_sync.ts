/**
 * Test helpers for multi-device worlds: devices running chat, dedup,
 * device_sync (and forward_relay), pairing helpers, and a record of every
 * plaintext user message each device encrypted. Private to tests.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type TestDevice, TestWorld } from "./world.ts";
import type { KernelObservation } from "../../kernel/kernel.ts";
import type { PluginInput } from "../../kernel/plugin.ts";
import { CHAT_API, type ChatApi, chatPlugin } from "../../plugins/chat/mod.ts";
import { dedupPlugin } from "../../plugins/dedup/mod.ts";
import {
  DEVICE_SYNC_API,
  type DeviceSyncApi,
  deviceSyncPlugin,
} from "../../plugins/device_sync/mod.ts";

/** A device of a multi-device test, with its name. */
export interface SyncDevice extends TestDevice {
  /** The device's name (also its kernel's log name). */
  name: string;
}

/** A test world that records every observation of every device. */
export class SyncWorld {
  readonly world: TestWorld;
  /** Every observation, tagged with the observing device's name. */
  readonly observed: { device: string; observation: KernelObservation }[] = [];
  readonly #plugins: () => PluginInput[];

  private constructor(world: TestWorld, plugins: () => PluginInput[]) {
    this.world = world;
    this.#plugins = plugins;
  }

  /** A world around one relay; `plugins` defaults to chat, dedup, device_sync. */
  static async create(seed: number, plugins?: () => PluginInput[]): Promise<SyncWorld> {
    return new SyncWorld(
      await TestWorld.create(seed),
      plugins ?? (() => [chatPlugin(), dedupPlugin(), deviceSyncPlugin()]),
    );
  }

  /**
   * A device; with `nickname` it creates a new identity (its root from `recoveryCode` when
   * given), without it is a fresh install.
   */
  async device(name: string, nickname?: string, recoveryCode?: string): Promise<SyncDevice> {
    const device = await this.world.device(name, {
      nickname,
      recoveryCode,
      plugins: this.#plugins,
      kernel: { observe: (observation) => this.observed.push({ device: name, observation }) },
    });
    return Object.assign(device, { name });
  }

  /** Delivers everything in flight between `devices`. */
  settle(devices: TestDevice[], roundsMax = 40): Promise<void> {
    return this.world.settle(devices, roundsMax);
  }

  /** Pairs a fresh install `name` with `from`, then settles `all` plus the newcomer. */
  async pairDevice(from: SyncDevice, name: string, all: SyncDevice[]): Promise<SyncDevice> {
    const fresh = await this.device(name);
    const ticket = await sync(from).initDevicePairing();
    await sync(fresh).answerDevicePairing(ticket.bytes, { deviceName: name });
    await this.settle([...all, fresh]);
    return fresh;
  }

  /** Pairs two identities' devices as contacts (`a` invites); resolves with the conversation uid. */
  async befriend(a: SyncDevice, b: SyncDevice, all: SyncDevice[]): Promise<string> {
    const ticket = await a.kernel.createInvitation();
    const uid = await b.kernel.acceptInvitation(ticket.bytes);
    await this.settle(all);
    assert.equal(uid, ticket.peerUid);
    return uid;
  }
}

/** The device_sync api of a device. */
export function sync(device: TestDevice): DeviceSyncApi {
  return device.kernel.api(DEVICE_SYNC_API);
}

/** The chat api of a device. */
export function chat(device: TestDevice): ChatApi {
  return device.kernel.api(CHAT_API);
}

/** A conversation as sortable lines: direction, text, uuid, pending flag. */
export async function lines(device: TestDevice, peerUid: string): Promise<string[]> {
  return (await device.kernel.messages(peerUid)).map((m) =>
    `${m.outbound ? ">" : "<"}${m.message!.data}${m.pendingForward ? " (pending)" : ""}`
  ).sort();
}

/** The uuids of a conversation, asserting none appears twice. */
export async function uuids(device: TestDevice, peerUid: string): Promise<string[]> {
  const all = (await device.kernel.messages(peerUid)).map((m) => m.message!.status!.uuid);
  assert.equal(new Set(all).size, all.length, `${peerUid} on a device holds a uuid twice`);
  return all.sort();
}

/**
 * A simulated world: relays (the production server core), devices (production
 * kernels with production plugins over real stores), the network between
 * them, and the scenario's steps, all on one virtual clock and one seed.
 * The world holds the state; its devices' lives are in devices.ts, the steps
 * in steps.ts, the recording in recording.ts and the privacy taps in
 * privacy_taps.ts.
 *
 * @module
 */
import type { ServerCard } from "../proto/mod.ts";
import { IMPORTED_KEYS_MAX_DEFAULT, SeededRandom, setImportedKeysMax } from "../crypto/mod.ts";
import { type KernelOptions, newRecoveryCode } from "../kernel/mod.ts";
import type { PairingProtocol } from "../kernel/mod.ts";
import type { PluginInput } from "../kernel/mod.ts";
import type { Weakening } from "./plugins.ts";
import {
  type Backend,
  MemoryBackend,
  type ObservedEvent,
  resolveLimits,
  ServerCore,
} from "../server/mod.ts";
import { adversaryBackend } from "./adversary.ts";
import { DeviceLife, SimDevice } from "./devices.ts";
import { corruptingBackend } from "./network.ts";
import { PrivacyTaps } from "./privacy_taps.ts";
import { emptyRecording, Recorder, type Recording } from "./recording.ts";
import { sessionsOf } from "./state.ts";
import type { Scenario } from "./scenario_types.ts";
import type { Scheduler } from "./scheduler.ts";
import { StepRunner } from "./steps.ts";
import type { StorageKind } from "./storage.ts";
import { VirtualClock } from "./virtual_clock.ts";

/**
 * Imported keys per simulated device each key cache makes room for: the
 * device's own keys and, per peer, its identity, lookup and encryption keys
 * and the peer's public ones, with room for a dozen peers.
 */
const IMPORTED_KEYS_PER_DEVICE = 32;

/** Options of {@linkcode World.create}. */
export interface WorldOptions {
  scenario: Scenario;
  seed: number;
  scheduler: Scheduler;
  /** Relay kind: `fake`, or a backend factory (Redis). */
  backend?: (name: string) => Promise<Backend>;
  /** @default "memory" */
  storage?: StorageKind;
  /** A temp folder for sqlite/kv stores. */
  folder?: string;
  /** Extra plugins per device (tests plant bugs this way). */
  extraPlugins?: (ref: string) => PluginInput[];
  /** Mechanisms switched off in every device's production plugins (tests show their worth). */
  weakening?: Weakening;
  /** The pairing protocol every device runs (tests plant a weakened one). */
  pairingProtocol?: PairingProtocol;
  /** How every device seals user messages (tests turn padding off). @default the kernel's */
  sealing?: KernelOptions["sealing"];
  /** Trace sink. */
  trace: (line: Record<string, unknown>) => void;
  /**
   * Opens relay `name` outside the process (a running server over HTTP)
   * instead of an in-process core; the stand-in answers `card()` and
   * `handle()` and calls `observe` as a core does. @default in-process cores
   */
  relay?: (name: string) => Promise<ServerCore>;
  /** The virtual clock's time at scheduler time 0. @default VIRTUAL_EPOCH_MS */
  epochMs?: number;
  /** Told what each relay saw: every unsealed request, every message stored. */
  relayObserved?: (relay: string, event: ObservedEvent) => void;
}

/** The simulated world. */
export class World {
  readonly scenario: Scenario;
  readonly scheduler: Scheduler;
  readonly clock: VirtualClock;
  readonly seedRandom: SeededRandom;
  readonly deviceRandom: SeededRandom;
  readonly networkRandom: SeededRandom;
  readonly scenarioRandom: SeededRandom;
  readonly relays = new Map<string, ServerCore>();
  readonly relaysByName = new Map<string, ServerCore>();
  readonly devices = new Map<string, SimDevice>();
  readonly recording: Recording;
  readonly storage: StorageKind;
  /** `userA|userB` → peer uid of their conversation (the latest one). */
  readonly conversations = new Map<string, string>();
  /** `userA|userB` → every conversation uid ever created between them. */
  readonly conversationsAll = new Map<string, Set<string>>();
  /** Relay → last time it stored a message (scheduler ms). */
  readonly lastStoredAt = new Map<string, number>();
  readonly #options: WorldOptions;
  #backends: Backend[] = [];
  readonly #taps: PrivacyTaps;
  readonly #recorder: Recorder;
  readonly #life: DeviceLife;
  readonly #steps: StepRunner;

  private constructor(options: WorldOptions) {
    this.#options = options;
    this.scenario = options.scenario;
    /** The expectations this run checks: the recording keeps only what they read. */
    const expects = new Set(options.scenario.expect.map((e) => e.name));
    this.scheduler = options.scheduler;
    this.storage = options.storage ?? "memory";
    this.clock = new VirtualClock(options.scheduler, { epochMs: options.epochMs });
    this.seedRandom = new SeededRandom(options.seed);
    this.deviceRandom = this.seedRandom.fork("devices");
    this.networkRandom = this.seedRandom.fork("network");
    this.scenarioRandom = this.seedRandom.fork("scenario");
    this.recording = emptyRecording();
    this.#taps = new PrivacyTaps({ expects, recording: this.recording, devices: this.devices });
    this.#recorder = new Recorder({
      recording: this.recording,
      scheduler: this.scheduler,
      relays: this.relays,
      expects,
      taps: this.#taps,
      trace: options.trace,
    });
    this.#life = new DeviceLife(this, {
      options,
      recorder: this.#recorder,
      taps: this.#taps,
    });
    this.#steps = new StepRunner(this, {
      recorder: this.#recorder,
      taps: this.#taps,
      trace: options.trace,
    });
  }

  /** Builds relays and devices; identities are created on each user's first device. */
  static async create(options: WorldOptions): Promise<World> {
    const world = new World(options);
    // One process holds every device's keys: size the key caches so none is evicted in use.
    const devices = world.scenario.users.reduce((n, user) => n + user.devices.length, 0);
    setImportedKeysMax(Math.max(IMPORTED_KEYS_MAX_DEFAULT, devices * IMPORTED_KEYS_PER_DEVICE));
    for (const name of world.scenario.servers) {
      let core: ServerCore;
      if (options.relay) core = await options.relay(name);
      else {
        const real = options.backend ? await options.backend(name) : new MemoryBackend();
        world.#backends.push(real);
        let relayUid = "";
        const limits = resolveLimits(world.scenario.limits);
        const honest = world.scenario.network.corrupt === 0 ? real : corruptingBackend(real, {
          share: world.scenario.network.corrupt,
          random: world.seedRandom.fork(`corrupt/${name}`),
          corrupted: world.recording.corrupted,
          trace: options.trace,
        });
        const backend = world.scenario.adversary.length === 0 ? honest : adversaryBackend(honest, {
          kinds: world.scenario.adversary,
          share: world.scenario.adversaryShare,
          random: world.seedRandom.fork(`adversary/${name}`),
          relayUid: () => relayUid,
          made: world.recording.adversaryKeys,
          retentionMs: limits.retentionMs,
          queueLengthMax: limits.queueLengthMax,
          trace: options.trace,
        });
        core = await ServerCore.create({
          backend,
          clock: world.clock,
          random: world.seedRandom.fork(`relay/${name}`),
          name,
          url: `sim://${name}`,
          limits: world.scenario.limits,
        });
        relayUid = core.card().uid;
      }
      core.observe = (event) => {
        if (event.kind === "stored") world.lastStoredAt.set(name, world.scheduler.now);
        world.#taps.relaySaw(name, event.kind, event.bytes);
        options.relayObserved?.(name, event);
      };
      world.relays.set(core.card().uid, core);
      world.relaysByName.set(name, core);
    }
    for (const user of world.scenario.users) {
      for (const name of user.devices) await world.#life.add(user.name, name);
      const first = world.devices.get(`${user.name}/${user.devices[0]}`)!;
      const recoveryCode = newRecoveryCode(world.seedRandom.fork(`recovery/${user.name}`));
      world.recoveryCodes.set(user.name, recoveryCode);
      await first.live().createIdentity({
        nickname: user.name,
        deviceName: first.name,
        servers: [world.home().card()],
        recoveryCode,
      });
      first.pairedAt = world.scheduler.now;
      first.live().start();
    }
    return world;
  }

  /** The home relay: the first of `servers`. */
  home(): ServerCore {
    return this.relaysByName.get(this.scenario.servers[0])!;
  }

  /** Undoes global hooks. */
  dispose(): void {
    setImportedKeysMax(undefined);
  }

  /** The user on the other side of conversation `peerUid` as `ref` knows it ("" if none). */
  contactOf(ref: string, peerUid: string): string {
    return this.#steps.contactOf(ref, peerUid);
  }

  device(ref: string): SimDevice {
    const device = this.devices.get(ref);
    if (!device) throw new Error(`no device ${ref}`);
    return device;
  }

  /** Devices of a user, in file order. */
  devicesOf(user: string): SimDevice[] {
    return [...this.devices.values()].filter((d) => d.user === user);
  }

  /** Schedules every step of the scenario, after the pairings of generated `pair: all` groups. */
  scheduleSteps(): void {
    this.#steps.scheduleSteps();
  }

  /** Sends a chat text from `from` to the conversation with `toUser`; records it when accepted. */
  send(from: SimDevice, toUser: string, text: string): Promise<void> {
    return this.#steps.send(from, toUser, text);
  }

  /** Drops the kernel and every in-memory cache at once; the store stays as a disk would. */
  crash(device: SimDevice): Promise<void> {
    return this.#life.crash(device);
  }

  /** Starts the device again from its stores. */
  restart(device: SimDevice): Promise<void> {
    if (this.recording.lost.has(device.ref)) {
      return Promise.reject(new Error(`${device.ref} is lost: it never starts again`));
    }
    return this.#life.restart(device);
  }

  /** The device is gone for good: it stops at once, its stores are destroyed, it never restarts. */
  async lose(device: SimDevice): Promise<void> {
    if (this.recording.lost.has(device.ref)) return;
    const deviceUid = device.kernel?.hasIdentity() ? device.kernel.deviceUid() : "";
    if (device.kernel) {
      this.recording.lostSessions.set(device.ref, sessionsOf(device.kernel.peers()));
    }
    await this.#life.crash(device);
    this.recording.lost.set(device.ref, this.scheduler.now);
    this.lostUids.set(device.ref, deviceUid);
  }

  /** Each user's recovery code, as the person wrote it down at init. */
  readonly recoveryCodes = new Map<string, string>();

  /** The device uid each lost device had (its stores are gone). */
  readonly lostUids = new Map<string, string>();

  /** Starts every device's loops (devices without identity start when paired). */
  startAll(): void {
    for (const device of this.devices.values()) {
      if (device.kernel?.hasIdentity()) device.kernel.start();
    }
  }

  /**
   * Quiescent: every device up, every outbox empty (nothing left to deliver), and
   * every device polled each of its relays after the relay last stored anything.
   */
  quiescent(): boolean {
    if (this.#steps.pairingsUnderWay) return false;
    for (const device of this.devices.values()) {
      const kernel = device.kernel;
      if (!kernel || !device.reachable()) return false;
      // A poll in flight is harmless: what it could bring is covered by the check below.
      if (kernel.outboxSize() > 0) return false;
      if (!kernel.hasIdentity()) continue;
      for (const server of kernel.identity().servers) {
        const relay = this.relays.get(server.uid);
        const stored = this.lastStoredAt.get(relay?.card().name ?? "") ?? -1;
        if (kernel.quietPollAt(server.uid) - this.clock.now() + this.scheduler.now <= stored) {
          return false;
        }
      }
    }
    return true;
  }

  /** Stops every kernel. */
  async stopAll(): Promise<void> {
    for (const device of this.devices.values()) await device.kernel?.stop();
  }

  /** Closes kernels, stores and relays. */
  async close(): Promise<void> {
    for (const device of this.devices.values()) {
      if (device.kernel) await device.kernel.close();
      else await device.store?.close();
    }
    for (const backend of this.#backends) await backend.close();
    this.dispose();
  }

  /** Closes downtime spans still open at the end of the run. */
  closeDowntime(): void {
    for (const device of this.devices.values()) {
      if (!device.online || device.crashed) {
        this.#recorder.down(
          device,
          this.#recorder.downSince.get(device.ref) ?? 0,
          this.scheduler.now,
        );
      }
    }
  }

  /** A serverCard by relay name. */
  card(name: string): ServerCard {
    return this.relaysByName.get(name)!.card();
  }
}

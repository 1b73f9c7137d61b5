/**
 * The world's virtual devices: a {@linkcode SimDevice} is a production kernel
 * with the production plugins over a real store, on the simulated network;
 * {@linkcode DeviceLife} creates one, boots its kernel, crashes it (dropping
 * every in-memory state at once) and restarts it from its store.
 *
 * @module
 */
import type { SeededRandom } from "../crypto/mod.ts";
import { Kernel } from "../kernel/mod.ts";
import type { PluginInput } from "../kernel/mod.ts";
import type { Store } from "../ports/mod.ts";
import { SimTransport } from "./network.ts";
import { defaultPlugins } from "./plugins.ts";
import type { PrivacyTaps } from "./privacy_taps.ts";
import type { Recorder } from "./recording.ts";
import { openStore } from "./storage.ts";
import type { World, WorldOptions } from "./world.ts";

/** A device of the world. */
export class SimDevice {
  readonly ref: string;
  readonly user: string;
  readonly name: string;
  readonly random: SeededRandom;
  incarnation = 0;
  online = true;
  crashed = false;
  partitionedUntil = 0;
  kernel: Kernel | undefined;
  store: Store | undefined;
  transport!: SimTransport;
  /** The identity root private key held here (null: none), read once for root_key_private. */
  rootKey: Uint8Array | null | undefined;
  /** Scheduler time at which this device got its identity (joined its user). */
  pairedAt: number | undefined;
  #world: World;

  constructor(world: World, user: string, name: string) {
    this.#world = world;
    this.user = user;
    this.name = name;
    this.ref = `${user}/${name}`;
    this.random = world.deviceRandom.fork(this.ref);
  }

  reachable(): boolean {
    return this.online && !this.crashed && this.#world.scheduler.now >= this.partitionedUntil;
  }

  /** The kernel, or a clear error when the device is crashed. */
  live(): Kernel {
    if (!this.kernel) throw new Error(`${this.ref} is crashed`);
    return this.kernel;
  }
}

/** What a {@linkcode DeviceLife} works with besides the world. */
export interface DeviceLifeOptions {
  /** The world's options (folder, extra plugins, pairing protocol, sealing, trace). */
  options: WorldOptions;
  recorder: Recorder;
  taps: PrivacyTaps;
}

/** Creates, boots, crashes and restarts the world's devices. */
export class DeviceLife {
  readonly #world: World;
  readonly #options: WorldOptions;
  readonly #recorder: Recorder;
  readonly #taps: PrivacyTaps;

  /** The lives of `world`'s devices. */
  constructor(world: World, options: DeviceLifeOptions) {
    this.#world = world;
    this.#options = options.options;
    this.#recorder = options.recorder;
    this.#taps = options.taps;
  }

  /** Creates device `name` of `user`, with its transport and store, and boots its kernel. */
  async add(user: string, name: string): Promise<SimDevice> {
    const world = this.#world;
    const options = this.#options;
    const device = new SimDevice(world, user, name);
    world.devices.set(device.ref, device);
    device.transport = new SimTransport({
      endpoint: device,
      relays: world.relays,
      scheduler: world.scheduler,
      network: world.scenario.network,
      random: world.networkRandom.fork(device.ref),
      tap: (ref, _server, body) => this.#taps.leftDevice(ref, body, "wire"),
      trace: options.trace,
      track: (p) => world.scheduler.track(p),
    });
    device.store = await openStore(world.storage, {
      folder: options.folder,
      ref: device.ref,
      track: (p) => world.scheduler.track(p),
    });
    await this.#boot(device);
    return device;
  }

  async #boot(device: SimDevice): Promise<void> {
    const plugins: PluginInput[] = [
      ...defaultPlugins(this.#options.weakening),
      this.#recorder.probe(device),
      ...this.#world.scenario.extraModules.map((m) => m.create()),
      ...(this.#options.extraPlugins?.(device.ref) ?? []),
    ];
    device.kernel = await Kernel.open({
      store: device.store!,
      clock: this.#world.clock,
      random: device.random,
      transport: device.transport,
      plugins,
      name: device.ref,
      pollIntervalMs: this.#world.scenario.pollIntervalsMs[device.ref] ??
        this.#world.scenario.pollIntervalMs,
      longPollMs: 0,
      observe: (o) => this.#recorder.observed(device, o),
      pairingProtocol: this.#options.pairingProtocol,
      sealing: this.#options.sealing,
    });
    if (device.kernel.hasIdentity() && device.kernel.identity().uid !== "") {
      device.pairedAt ??= this.#world.scheduler.now;
    }
  }

  /** Drops the kernel and every in-memory cache at once; the store stays as a disk would. */
  async crash(device: SimDevice): Promise<void> {
    if (device.crashed) return;
    device.kernel?.crash();
    device.kernel = undefined;
    device.crashed = true;
    device.incarnation++;
    this.#recorder.downSince.set(device.ref, this.#world.scheduler.now);
    await device.store?.close();
  }

  /** Starts the device again from its stores. */
  async restart(device: SimDevice): Promise<void> {
    if (!device.crashed) return;
    device.store = await openStore(this.#world.storage, {
      folder: this.#options.folder,
      ref: device.ref,
      reopen: device.store,
      track: (p) => this.#world.scheduler.track(p),
    });
    device.crashed = false;
    this.#recorder.down(
      device,
      this.#recorder.downSince.get(device.ref) ?? 0,
      this.#world.scheduler.now,
    );
    await this.#boot(device);
    device.kernel!.start();
  }
}

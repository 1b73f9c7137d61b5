/**
 * Test helpers: a small world of devices around one in-process relay, with a
 * manual clock. Private to tests.
 *
 * @module
 */
import { SeededRandom } from "../../crypto/mod.ts";
import { Kernel, type KernelOptions } from "../../kernel/kernel.ts";
import type { Clock, Store } from "../../ports/mod.ts";
import type { ServerCard } from "../../proto/gen/meow_pb.ts";
import type { PluginInput } from "../../kernel/plugin.ts";
import { MemoryStore } from "../../plugins/storage/mod.ts";
import { chatPlugin } from "../../plugins/chat/mod.ts";
import { dedupPlugin } from "../../plugins/dedup/mod.ts";
import {
  type Backend,
  LocalTransport,
  MemoryBackend,
  ServerCore,
  type ServerLimitsInit,
} from "../../server/mod.ts";

/** A clock the test moves by hand; sleeps never resolve on their own. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start = 1_767_225_600_000) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  sleep(_ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((_, reject) =>
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true })
    );
  }
}

/** One device in a test world. */
export interface TestDevice {
  kernel: Kernel;
  store: Store;
  /** Re-creates the kernel from its store, as after a crash. */
  restart(): Promise<Kernel>;
}

/** A relay and a clock shared by the devices of a test. */
export class TestWorld {
  readonly clock = new ManualClock();
  readonly random: SeededRandom;
  core!: ServerCore;
  transport!: LocalTransport;

  constructor(seed = 1) {
    this.random = new SeededRandom(seed);
  }

  static async create(
    seed = 1,
    options: { limits?: Partial<ServerLimitsInit>; backend?: Backend } = {},
  ): Promise<TestWorld> {
    const world = new TestWorld(seed);
    world.core = await ServerCore.create({
      backend: options.backend ?? new MemoryBackend(),
      clock: world.clock,
      random: world.random.fork("relay"),
      name: "relay",
      url: "local://relay",
      limits: options.limits,
    });
    world.transport = new LocalTransport([world.core]);
    return world;
  }

  /** A device with an identity (or without, when `nickname` is undefined). */
  async device(
    name: string,
    options: {
      nickname?: string;
      store?: Store;
      plugins?: () => PluginInput[];
      kernel?: Partial<KernelOptions>;
      reopen?: (store: Store) => Promise<Store>;
      /** The relay card the identity is created with (default: the relay's own). */
      card?: ServerCard;
      /** The recovery code the identity's root is derived from (default: none, a random root). */
      recoveryCode?: string;
    } = {},
  ): Promise<TestDevice> {
    const plugins = options.plugins ?? (() => [chatPlugin(), dedupPlugin()]);
    const random = this.random.fork(name);
    const open = (store: Store) =>
      Kernel.open({
        store,
        clock: this.clock,
        random,
        transport: this.transport,
        plugins: plugins(),
        name,
        // A pairing's mailbox waits are long polls: the relay answers on the other side's post.
        longPollMs: 25_000,
        ...options.kernel,
      });
    const device: TestDevice = {
      store: options.store ?? new MemoryStore(),
      kernel: undefined as unknown as Kernel,
      restart: async () => {
        device.kernel.crash();
        device.store = options.reopen
          ? await options.reopen(device.store)
          : (device.store as MemoryStore).reopen();
        device.kernel = await open(device.store);
        return device.kernel;
      },
    };
    device.kernel = await open(device.store);
    if (options.nickname !== undefined) {
      await device.kernel.createIdentity({
        nickname: options.nickname,
        deviceName: name,
        servers: [options.card ?? this.core.card()],
        recoveryCode: options.recoveryCode,
      });
    }
    return device;
  }

  /** Delivers everything in flight: flush every outbox, poll every device, until quiet. */
  async settle(devices: TestDevice[], roundsMax = 20): Promise<void> {
    for (let round = 0; round < roundsMax; round++) {
      let moved = 0;
      for (const d of devices) moved += await d.kernel.flushOutbox();
      this.clock.advance(10);
      for (const d of devices) moved += await d.kernel.pollOnce();
      if (moved === 0 && devices.every((d) => d.kernel.outboxSize() === 0)) return;
    }
    throw new Error(`The world did not settle in ${roundsMax} rounds`);
  }
}

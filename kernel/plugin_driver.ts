/**
 * How the kernel calls its plugins: the one place that knows each hook's
 * mode (kernel/plugin.ts).
 *
 * - `receive` — *first*: the one plugin that owns a `UserMessage.type` gets it
 *   ({@linkcode PluginDriver.route}).
 * - `outbound` — *first*: the plugins are asked in registration order; the
 *   first that returns true takes the message over ({@linkcode PluginDriver.outbound}).
 * - `primaryOf` — *first*: the first plugin that names a device decides a
 *   contact's primary; with none, it is this device ({@linkcode PluginDriver.primaryOf}).
 * - `on` — *sequential*: every plugin's hook for the event runs, one after
 *   another in registration order, over the same transaction; each sees what
 *   the previous staged ({@linkcode PluginDriver.emit}).
 * - `setup` — sequential, once, from `Kernel.open`; `run` — all at once, from
 *   `Kernel.start`.
 *
 * Errors: a failing `setup` is thrown as a {@linkcode PluginError}. An error
 * from `receive`, `outbound` or an event hook passes through unchanged — the
 * kernel classifies it by its class (a domain error rejects and quarantines a
 * message, with its code in the simulator's trace; anything else is thrown so
 * the message stays on the relay) — and is tagged: {@linkcode pluginErrorOf}
 * names the plugin and hook. A `run` task's failure ends that task only.
 *
 * @module
 */
import type { PeerRecord, UserMessage } from "../proto/mod.ts";
import { PluginError } from "./errors.ts";
import type {
  ApiKey,
  KernelEventName,
  KernelEvents,
  Plugin,
  PluginHost,
  PluginInput,
  ReceiveContext,
  Tx,
} from "./plugin.ts";

/** Which plugin hook first threw each error that passed through unchanged. */
const failures = new WeakMap<object, { plugin: string; hook: string }>();

/** Tags `error` with `plugin` and `hook` unless an inner hook tagged it first; returns it. */
function tag(error: unknown, plugin: string, hook: string): unknown {
  if (typeof error === "object" && error !== null && !failures.has(error)) {
    failures.set(error, { plugin, hook });
  }
  return error;
}

/**
 * The plugin and hook an error came from, as a {@linkcode PluginError} whose
 * `cause` is the error itself; undefined when no plugin hook threw it. For
 * an error a plugin called from another plugin's hook threw, the inner one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PluginDriver, pluginErrorOf } from "./plugin_driver.ts";
 * import { Malformed } from "./errors.ts";
 * import { create } from "@bufbuild/protobuf";
 * import { UserMessageSchema } from "../proto/mod.ts";
 * import type { ReceiveContext } from "./plugin.ts";
 * const bad = new Malformed("no uuid");
 * const driver = PluginDriver.create([{ name: "chat", types: ["chat"], receive: () => { throw bad; } }]);
 * const message = create(UserMessageSchema, { type: "chat" });
 * await assert.rejects(driver.route(message, {} as ReceiveContext), Malformed);
 * assert.equal(pluginErrorOf(bad)?.plugin, "chat");
 * assert.equal(pluginErrorOf(bad)?.hook, "receive");
 * assert.equal(pluginErrorOf(new Malformed("other")), undefined);
 * ```
 */
export function pluginErrorOf(error: unknown): PluginError | undefined {
  if (error instanceof PluginError) return error;
  const found = typeof error === "object" && error !== null ? failures.get(error) : undefined;
  return found && new PluginError(found.plugin, found.hook, error);
}

/**
 * The kernel's frozen plugin list and the rules for calling it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PluginDriver } from "./plugin_driver.ts";
 * import { apiKey } from "./plugin.ts";
 * const GREETER = apiKey<{ hello(): string }>("greeter");
 * const driver = PluginDriver.create([{ name: "greeter", api: { hello: () => "meow" } }]);
 * assert.equal(driver.api(GREETER).hello(), "meow");
 * assert.throws(() => PluginDriver.create([{ name: "a" }, { name: "a" }]), TypeError);
 * ```
 */
export class PluginDriver {
  /** The plugins, in registration order, frozen. */
  readonly plugins: readonly Plugin[];
  readonly #owners = new Map<string, Plugin>();
  readonly #kernelName: string;

  private constructor(plugins: Plugin[], kernelName: string) {
    this.plugins = Object.freeze(plugins);
    this.#kernelName = kernelName;
    for (const plugin of plugins) {
      for (const type of plugin.types ?? []) {
        const owner = this.#owners.get(type);
        if (owner) {
          throw new TypeError(
            `Cannot register plugin "${plugin.name}": type "${type}" already belongs to "${owner.name}"`,
          );
        }
        this.#owners.set(type, plugin);
      }
    }
  }

  /**
   * Makes the plugins (factories are called) and checks them: each has a
   * name, no name twice, one owner per message type.
   *
   * @throws {TypeError} for a plugin without a name, a name twice, or a type with two owners
   */
  static create(inputs: readonly PluginInput[], kernelName = "kernel"): PluginDriver {
    const plugins = inputs.map((p) => typeof p === "function" ? p() : p);
    const names = new Set<string>();
    for (const plugin of plugins) {
      if (!plugin.name) throw new TypeError("Cannot register a plugin without a name");
      if (names.has(plugin.name)) {
        throw new TypeError(`Cannot register plugin "${plugin.name}" twice`);
      }
      names.add(plugin.name);
    }
    return new PluginDriver(plugins, kernelName);
  }

  /**
   * Runs every plugin's `setup`, one after another in registration order.
   *
   * @throws {PluginError} naming the plugin whose setup failed (the failure as `cause`)
   */
  async setup(hostFor: (plugin: Plugin) => PluginHost): Promise<void> {
    for (const plugin of this.plugins) {
      try {
        await plugin.setup?.(hostFor(plugin));
      } catch (e) {
        throw new PluginError(plugin.name, "setup", e);
      }
    }
  }

  /** Starts every plugin's `run` task; each resolves when it ends, failed or not. */
  run(hostFor: (plugin: Plugin) => PluginHost, signal: AbortSignal): Promise<void>[] {
    const tasks: Promise<void>[] = [];
    for (const plugin of this.plugins) {
      if (plugin.run) tasks.push(plugin.run(hostFor(plugin), signal).catch(() => {}));
    }
    return tasks;
  }

  /**
   * *First*: hands an inbound message to the one plugin that owns its type.
   * Resolves false when no plugin does (nothing was called).
   */
  async route(message: UserMessage, context: ReceiveContext): Promise<boolean> {
    const owner = this.#owners.get(message.type);
    if (!owner?.receive) return false;
    try {
      await owner.receive(message, context);
    } catch (e) {
      throw tag(e, owner.name, "receive");
    }
    return true;
  }

  /**
   * *First*: asks each plugin with an `outbound` hook, in registration order,
   * whether it takes over `message`; resolves true once one does.
   */
  async outbound(message: UserMessage, context: ReceiveContext): Promise<boolean> {
    for (const plugin of this.plugins) {
      if (!plugin.outbound) continue;
      let taken: boolean;
      try {
        taken = await plugin.outbound(message, context);
      } catch (e) {
        throw tag(e, plugin.name, "outbound");
      }
      if (taken) return true;
    }
    return false;
  }

  /**
   * *First*: the device uid of contact `peer`'s primary as device `deviceUid`
   * sees it — the first plugin's answer, else `deviceUid` itself.
   */
  primaryOf(peer: PeerRecord, deviceUid: string): string {
    for (const plugin of this.plugins) {
      let primary: string | undefined;
      try {
        primary = plugin.primaryOf?.(peer, deviceUid);
      } catch (e) {
        throw tag(e, plugin.name, "primaryOf");
      }
      if (primary !== undefined) return primary;
    }
    return deviceUid;
  }

  /**
   * *Sequential*: runs every plugin's hook for `event`, one after another in
   * registration order, over `tx`; the first failure ends the round.
   */
  async emit<E extends KernelEventName>(
    event: E,
    payload: KernelEvents[E],
    tx: Tx,
  ): Promise<void> {
    for (const plugin of this.plugins) {
      const hook = plugin.on?.[event] as
        | ((p: KernelEvents[E], tx: Tx) => Promise<void> | void)
        | undefined;
      try {
        await hook?.(payload, tx);
      } catch (e) {
        throw tag(e, plugin.name, `on.${event}`);
      }
    }
  }

  /**
   * The api of the plugin `key` names.
   *
   * @throws {TypeError} when no plugin of that name exposes an api
   */
  api<T>(key: ApiKey<T>): T {
    const name = key.name;
    const plugin = this.plugins.find((p) => p.name === name);
    if (!plugin || plugin.api === undefined) {
      throw new TypeError(`${this.#kernelName}: no plugin named "${name}" exposes an api`);
    }
    return plugin.api as T;
  }
}

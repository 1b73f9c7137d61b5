/**
 * The agent's life cycle: one kernel over one home's store, with the
 * production plugins. The same {@linkcode Agent} serves a one-shot command
 * (it opens the store, catches up, runs one operation of `operations.ts`,
 * flushes, closes) and `run` (it stays online and serves the other commands
 * through the control endpoint), so a command behaves the same either way.
 *
 * **The store.** One store per home, every record sealed with the passphrase
 * key: Deno KV (`device.kv`) by default, or SQLite (`device.db`, chosen with
 * `init --store sqlite`). One store, not "Deno KV + SQLite": the store port
 * commits a ratchet step, the message it encrypted and the outbox entry that
 * carries it in ONE atomic batch, which two databases cannot do. A local Deno
 * KV file takes one writer process; the kernel lock (`agent.lock`) keeps the
 * store to one process per home anyway (other commands go through a running
 * agent's control endpoint).
 *
 * @module
 */
import { SystemRandom } from "../crypto/mod.ts";
import { MeowError } from "../kernel/mod.ts";
import { Kernel, type LogLevel, type RelayRequestKind } from "../kernel/mod.ts";
import type { Plugin, PluginModule } from "../kernel/mod.ts";
import { type Transport, TransportError } from "../ports/mod.ts";
import { systemClock } from "../ports/mod.ts";
import { productionPlugins } from "../plugins/mod.ts";
import { KvStore, SqliteStore, xchachaCipher } from "../plugins/storage/mod.ts";
import { HttpTransport } from "../server/mod.ts";
import { AgentError, EXIT } from "./errors.ts";
import { type HomePaths, readConfig } from "./home.ts";
import { allModules } from "./plugins.ts";
import { type IncomingView, messageView, relayName } from "./views.ts";

/** Long-poll wait asked of the relay while the agent is online, in ms. */
export const LONG_POLL_MS = 25_000;
/** How often a wait re-checks the kernel's state, in ms. */
const WAIT_STEP_MS = 100;

/** Options of {@linkcode Agent.open}. */
export interface AgentOptions {
  /**
   * The way to the relays.
   * @default {new HttpTransport()}
   */
  transport?: Transport;
  /**
   * Long-poll wait while online, in ms.
   * @default {LONG_POLL_MS}
   */
  longPollMs?: number;
  /**
   * Called after the commit of every message stored from a contact or a sibling.
   * @default {none}
   */
  onMessage?: (message: IncomingView) => void;
  /**
   * Kernel log lines.
   * @default {none}
   */
  log?: (level: LogLevel, line: string) => void;
  /**
   * Plugin modules loaded besides the built-in ones (`--plugin`, the home's `plugins`): their
   * plugins run on the device, their commands and history notes are the agent's.
   * @default {[]}
   */
  modules?: readonly PluginModule[];
  /**
   * Called when a relay's treatment of one kind of request changes (unreachable, refused, back to
   * ok) or a message it will never take fails: `run` reports relay trouble as it happens.
   * @default {none}
   */
  onRelay?: (change: RelayChange) => void;
}

/** A change of how a relay treats this device's requests ({@linkcode AgentOptions.onRelay}). */
export interface RelayChange {
  /** The relay's name (its uid prefix when unnamed). */
  relay: string;
  /** Polls, sends or pairing steps. */
  request: RelayRequestKind;
  /** The new state; `dropped`: one message failed for good. */
  state: "ok" | "refused" | "unreachable" | "dropped";
  /** What the relay or the transport said. */
  detail: string;
}

/**
 * A device agent over an open home.
 *
 * @example
 * ```ts ignore
 * import { Agent, homePaths, runOperation } from "./mod.ts";
 * const agent = await Agent.open(homePaths("/tmp/alice"), key);
 * console.log(await runOperation(agent, "contacts", {}));
 * await agent.finish();
 * ```
 */
export class Agent {
  /** The kernel. */
  readonly kernel: Kernel;
  /** The transport to the relays. */
  readonly transport: Transport;
  /** The home. */
  readonly paths: HomePaths;
  /** The plugin modules whose commands and history notes this agent offers (built-in first). */
  readonly modules: readonly PluginModule[];
  /** Whether `run` serves this agent (it stays online between commands). */
  serving = false;
  /**
   * Code exchanges under way, by pending peer (the pairing operations keep
   * them): a failure ends the wait for that peer.
   */
  readonly exchanges: Map<string, Promise<void>> = new Map();
  readonly #closing = new AbortController();
  #online = false;
  #stopRequested: (() => void) | undefined;

  private constructor(
    kernel: Kernel,
    transport: Transport,
    paths: HomePaths,
    extra: readonly PluginModule[],
  ) {
    this.kernel = kernel;
    this.transport = transport;
    this.paths = paths;
    this.modules = allModules(extra);
  }

  /**
   * An agent over a kernel opened elsewhere (the always-online device of
   * deploy/cloud_agent.ts, whose store is in Deno KV); `paths` only names it.
   */
  static wrap(kernel: Kernel, transport: Transport, paths: HomePaths): Agent {
    return new Agent(kernel, transport, paths, []);
  }

  /** Opens the home's store with `key` and a kernel with the production plugins. */
  static async open(
    paths: HomePaths,
    key: Uint8Array,
    options: AgentOptions = {},
  ): Promise<Agent> {
    const random = new SystemRandom();
    const cipher = xchachaCipher(key, random);
    const store = (await readConfig(paths))?.store === "kv"
      ? await KvStore.open(paths.kv, { cipher })
      : await SqliteStore.open(paths.db, { cipher });
    const transport = options.transport ?? new HttpTransport();
    const extra = options.modules ?? [];
    const plugins: Plugin[] = [...productionPlugins(), ...extra.map((m) => m.create())];
    if (options.onMessage) plugins.push(printerPlugin(options.onMessage));
    let kernelRef: Kernel | undefined;
    try {
      const kernel = await Kernel.open({
        store,
        clock: systemClock,
        random,
        transport,
        plugins,
        longPollMs: options.longPollMs ?? LONG_POLL_MS,
        pollIntervalMs: 250,
        retryMsMax: 10_000,
        log: options.log,
        name: "agent",
        observe: options.onRelay && ((o) => {
          if (o.kind !== "relay") return;
          const server = kernelRef?.identity().servers.find((c) => c.uid === o.serverUid);
          options.onRelay!({
            relay: relayName(server?.name ?? "", o.serverUid),
            request: o.request,
            state: o.state,
            detail: o.detail,
          });
        }),
      });
      kernelRef = kernel;
      return new Agent(kernel, transport, paths, extra);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  // ─── Life cycle ─────────────────────────────────────────────────────────────

  /** Goes online: the kernel polls (long polls) and sends until {@linkcode Agent.finish}. */
  goOnline(): void {
    if (this.#online) return;
    this.#online = true;
    this.kernel.start();
  }

  /**
   * One catch-up round for a one-shot command: poll every relay until its
   * queues are empty, send what is due. Resolves with a warning when a relay
   * could not be reached (the command goes on with what the device has).
   */
  async catchUp(): Promise<string | undefined> {
    try {
      await this.kernel.pollOnce(this.#closing.signal);
      await this.kernel.flushOutbox(this.#closing.signal);
      return undefined;
    } catch (e) {
      if (e instanceof TransportError || e instanceof MeowError) {
        return `could not reach the relay (${e.message}); showing what this device has`;
      }
      throw e;
    }
  }

  /**
   * Goes offline, sends what is due once more, closes the store. Resolves
   * with a warning when messages are left in the outbox.
   */
  async finish(): Promise<string | undefined> {
    this.interruptWaits();
    await this.kernel.stop();
    this.#online = false;
    let warning: string | undefined;
    try {
      if (this.kernel.hasIdentity()) await this.kernel.flushOutbox();
    } catch (e) {
      if (!(e instanceof TransportError || e instanceof MeowError)) throw e;
    }
    const left = this.kernel.outboxSize();
    if (left > 0) {
      warning = `${left} message(s) wait in the outbox (relay unreachable?); ` +
        "they leave with the next command or while `run` runs";
    }
    await this.kernel.close();
    return warning;
  }

  /** Ends every wait in progress (with EXIT.interrupted): the agent is about to stop. */
  interruptWaits(): void {
    this.#closing.abort(new AgentError("the agent is stopping", EXIT.interrupted));
  }

  /** Registers what {@linkcode Agent.requestStop} calls (`run` stops on it). */
  onStopRequest(fn: () => void): void {
    this.#stopRequested = fn;
  }

  /** Asks `run` to stop (soon, not before this returns); false when nothing listens. */
  requestStop(): boolean {
    const stop = this.#stopRequested;
    if (stop) queueMicrotask(stop);
    return stop !== undefined;
  }

  // ─── Waiting ────────────────────────────────────────────────────────────────

  /**
   * Goes online and waits until `done()` holds, checking every 100 ms.
   *
   * @throws {AgentError} EXIT.timeout after `timeoutMs`, EXIT.interrupted when
   *   `signal` aborts or the agent stops
   */
  async waitFor(
    done: () => boolean,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<void> {
    this.goOnline();
    const signals = [this.#closing.signal, ...(options.signal ? [options.signal] : [])];
    const signal = AbortSignal.any(signals);
    const deadline = Date.now() + options.timeoutMs;
    while (!done()) {
      if (signal.aborted) throw new AgentError("interrupted while waiting", EXIT.interrupted);
      if (Date.now() >= deadline) {
        throw new AgentError(
          `no answer within ${Math.round(options.timeoutMs / 1000)} s; the pairing stays open: ` +
            "`run` (or any later command) completes it when the answer comes",
          EXIT.timeout,
        );
      }
      await systemClock.sleep(WAIT_STEP_MS, signal).catch(() => {});
    }
  }
}

/** Observes messages stored from a contact or a sibling and reports them after their commit. */
function printerPlugin(onMessage: (message: IncomingView) => void): Plugin {
  return {
    name: "agent_printer",
    on: {
      "message.stored"({ message, origin }, tx) {
        if (origin === "local") return;
        const contact = tx.peer(message.peerUid)?.name ?? message.peerUid.slice(0, 8);
        const view: IncomingView = { ...messageView(message), contact, origin };
        tx.afterCommit(() => onMessage(view));
      },
    },
  };
}

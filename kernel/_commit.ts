/**
 * Running one transaction: a {@linkcode KernelTx} over the committed state,
 * then its batch committed to the store in one atomic write, and only then
 * the caches updated (identity, peers, outbox), open long polls restarted
 * when the pulled queues changed, and the after-commit hooks run. The caller
 * runs it on the serial queue.
 *
 * @module
 */
import type { ServerCard } from "../proto/mod.ts";
import type { Kernel } from "./kernel.ts";
import type { PluginDriver } from "./plugin_driver.ts";
import type { Random, Store } from "../ports/mod.ts";
import type { Clock } from "../ports/mod.ts";
import type { Outbox } from "./_outbox.ts";
import type { Poller } from "./_poller.ts";
import type { DeviceState } from "./_state.ts";
import { KernelTx } from "./_tx.ts";
import type { KernelObservation, LogLevel } from "./_types.ts";

/** What {@linkcode Transactions} runs on. */
export interface TransactionPorts {
  /** The kernel the transactions belong to (`KernelTx.kernel()`). */
  kernel: Kernel;
  clock: Clock;
  random: Random;
  store: Store;
  state: DeviceState;
  driver: PluginDriver;
  outbox: Outbox;
  poller: Poller;
  observe: (observation: KernelObservation) => void;
  log: (level: LogLevel, line: string) => void;
  /** The kernel's name, in log lines and errors. */
  name: string;
  sealing: { pad?: boolean; checkSize?: boolean; headerInClear?: boolean };
  /** Starts polling a relay the committed identity names (when the kernel runs). */
  startPolling(server: ServerCard): void;
}

/** Runs transactions and commits them. */
export class Transactions {
  readonly #ports: TransactionPorts;

  /** Transactions over `ports`. */
  constructor(ports: TransactionPorts) {
    this.#ports = ports;
  }

  /** Runs `fn` in a new transaction and commits what it staged; resolves with `fn`'s result. */
  async run<T>(fn: (tx: KernelTx) => Promise<T>): Promise<T> {
    const { state, outbox } = this.#ports;
    const tx = new KernelTx(this.#ports.kernel, {
      now: this.#ports.clock.now(),
      identity: state.identity,
      peer: (uid) => state.peer(uid),
      peers: () => [...state.peers.values()],
      devices: () => [...state.devices.values()],
      store: this.#ports.store,
      random: this.#ports.random,
      driver: this.#ports.driver,
      deviceUid: state.deviceUid(),
      observe: this.#ports.observe,
      sealing: this.#ports.sealing,
      nextOutboxId: (now) => outbox.nextId(now),
    });
    const result = await fn(tx);
    await this.#commit(tx);
    return result;
  }

  async #commit(tx: KernelTx): Promise<void> {
    const { state, poller, name } = this.#ports;
    const batch = tx.batch();
    if (state.closed) throw new TypeError(`${name}: the kernel is closed`);
    await this.#ports.store.commit(batch);
    const pulled = poller.pullsBeforeCommit();
    if (batch.identity) {
      state.identity = batch.identity;
      // Relays can arrive by device sync or with a new install's first identity: poll them too.
      for (const server of batch.identity.servers) this.#ports.startPolling(server);
    }
    for (const peer of batch.peers ?? []) state.cachePeer(peer);
    for (const device of batch.devices ?? []) state.cachePeer(device);
    for (const uid of batch.deleteDevices ?? []) state.dropDevice(uid);
    poller.committed(pulled);
    this.#ports.outbox.committed(batch.outboxPut ?? [], batch.outboxDelete ?? []);
    for (const fn of tx.afterCommitFns()) {
      try {
        fn();
      } catch (e) {
        this.#ports.log("error", `${name} after-commit hook failed: ${(e as Error).message}`);
      }
    }
  }
}

/**
 * The microkernel: identity, peers, the pipeline, the router, the outbox and
 * the poll loop. It knows nothing about sync; plugins do the rest.
 *
 * Every change is a transaction ({@linkcode Tx}) run on one serial queue:
 * inbound messages, local actions and plugin reactions to them are staged and
 * committed to the {@linkcode Store} in one atomic write, and only then do the
 * in-memory caches change, the outbox flush and relay acks leave. A failure
 * anywhere before the commit leaves every store, cache and ratchet unchanged.
 *
 * This file is the facade: construction, and every public method of
 * `Kernel` with its documentation, each handing over to a part in a few
 * lines (why it runs past 500 lines: the documented public API is one
 * surface, and splitting `Kernel` itself would break its importers). The
 * parts, private to kernel/:
 *
 * - `_tx.ts` the transaction; `_commit.ts` running and committing one;
 * - `_router.ts` receive, route to the plugins, quarantine;
 * - `_outbox.ts` delivery, retries, failed for good;
 * - `_poller.ts` pulled queues, pulls and acks, long polls, the poll loop;
 * - `_relay_client.ts` relay requests, mailbox steps, relay health;
 * - `_pairings.ts` invitations and pairing by link or code;
 * - `_identity.ts` identity and local peer changes;
 * - `_state.ts` the cached records and the serial queue;
 * - `_types.ts` the public types, re-exported here.
 *
 * `plugin_driver.ts` calls the plugins.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import {
  type DbMessage,
  type IdentityRecord,
  IdentityRecordSchema,
  KeyPairSchema,
  type PackedUserMessage,
  type PeerRecord,
  PeerRecordSchema,
  type QuarantineRecord,
  type ServerCard,
} from "../proto/mod.ts";
import { randomUuid } from "../crypto/mod.ts";
import { rootFromRecoveryCode, signDeviceList } from "./device_list.ts";
import { isPending } from "./invitation.ts";
import { type JoinInput, PAIRING_PROTOCOL } from "./pairing_flow.ts";
import { PluginDriver, pluginErrorOf } from "./plugin_driver.ts";
import {
  type ApiKey,
  type Plugin,
  type PluginDataReader,
  type PluginHost,
  POLL_MARK_MS_MAX,
  type Tx,
} from "./plugin.ts";
import { relayLimits } from "../envelope/mod.ts";
import type { Clock, Random, Store } from "../ports/mod.ts";
import { Transactions } from "./_commit.ts";
import { Outbox } from "./_outbox.ts";
import { Pairings } from "./_pairings.ts";
import {
  newIdentityRecord,
  stageFirstIdentity,
  stagePeerChanges,
  stageProfile,
  stageServer,
} from "./_identity.ts";
import { Poller, type PullKey } from "./_poller.ts";
import { RelayClient } from "./_relay_client.ts";
import { Router } from "./_router.ts";
import { DeviceState, SerialQueue } from "./_state.ts";
import { checkNamespace, decodeValue, type KernelTx } from "./_tx.ts";
import type {
  AcceptInvitationOptions,
  AcceptPairingOptions,
  IdentityRecordInit,
  InvitationOptions,
  InvitationTicket,
  KernelObservation,
  KernelOptions,
  KernelSealing,
  LogLevel,
  OfferPairingOptions,
  PairingAccepted,
  PairingOffer,
  ReceiveOutcome,
  RelayHealth,
} from "./_types.ts";

export type {
  AcceptInvitationOptions,
  AcceptPairingOptions,
  IdentityRecordInit,
  InvitationOptions,
  InvitationTicket,
  KernelObservation,
  KernelOptions,
  KernelSealing,
  LogLevel,
  OfferPairingOptions,
  PairingAccepted,
  PairingOffer,
  ReceiveOutcome,
  RelayHealth,
  RelayRequestKind,
} from "./_types.ts";
export { QUEUE_FULL_ATTEMPTS_MAX } from "./_outbox.ts";
export { QUARANTINE_MAX } from "./_router.ts";

/**
 * A device: its identity, peers, pipeline and plugins.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel } from "./kernel.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { MemoryStore } from "../plugins/storage/mod.ts";
 * import { LocalTransport, MemoryBackend, ServerCore } from "../server/mod.ts";
 * const clock = { now: () => 1_700_000_000_000, sleep: () => Promise.resolve() };
 * const random = new SeededRandom(1);
 * const core = await ServerCore.create({ backend: new MemoryBackend(), clock, random: random.fork("relay") });
 * const transport = new LocalTransport([core]);
 * const kernel = await Kernel.open({ store: new MemoryStore(), clock, random, transport });
 * await kernel.createIdentity({ nickname: "alice", deviceName: "phone", servers: [core.card()] });
 * assert(kernel.identity().profile?.nickname === "alice");
 * await kernel.close();
 * ```
 */
export class Kernel {
  readonly clock: Clock;
  readonly random: Random;
  readonly #store: Store;
  readonly #driver: PluginDriver;
  readonly #log: (level: LogLevel, line: string) => void;
  readonly #name: string;
  readonly #observe: (observation: KernelObservation) => void;
  readonly #sealing: KernelSealing;
  readonly #state = new DeviceState();
  readonly #serialQueue: SerialQueue;
  readonly #relay: RelayClient;
  readonly #outbox: Outbox;
  readonly #poller: Poller;
  readonly #router: Router;
  readonly #pairings: Pairings;
  readonly #transactions: Transactions;

  #running: AbortController | undefined;
  #loops: Promise<void>[] = [];

  private constructor(options: KernelOptions, driver: PluginDriver) {
    this.clock = options.clock;
    this.random = options.random;
    this.#store = options.store;
    this.#driver = driver;
    this.#log = options.log ?? (() => {});
    this.#name = options.name ?? "kernel";
    this.#observe = options.observe ?? (() => {});
    this.#sealing = { ...options.sealing };
    const pollIntervalMs = options.pollIntervalMs ?? 2000;
    const longPollMs = options.longPollMs ?? 0;
    const retryMsMax = options.retryMsMax ?? 30_000;
    const pairingProtocol = options.pairingProtocol ?? PAIRING_PROTOCOL;
    const state = this.#state;
    const common = {
      clock: this.clock,
      random: this.random,
      observe: this.#observe,
      log: this.#log,
      name: this.#name,
    };
    this.#serialQueue = new SerialQueue(state, this.#name);
    this.#relay = new RelayClient({ ...common, transport: options.transport });
    const transact = <T>(fn: (tx: KernelTx) => Promise<T>) => this.#transactions.run(fn);
    this.#outbox = new Outbox({
      ...common,
      store: this.#store,
      relay: this.#relay,
      state,
      serial: this.#serialQueue,
      transact,
      retryMsMax,
      outboxBatchMax: options.outboxBatchMax ?? 16,
    });
    this.#router = new Router({
      ...common,
      store: this.#store,
      state,
      driver,
      serial: this.#serialQueue,
      transact,
      pairingProtocol,
      sealing: this.#sealing,
    });
    this.#poller = new Poller({
      ...common,
      state,
      relay: this.#relay,
      receive: (packed) => this.receive(packed),
      polled: (nowMs) => this.#markPoll(nowMs),
      primaryOf: (peer, deviceUid) => driver.primaryOf(peer, deviceUid),
      pollIntervalMs,
      longPollMs,
      retryMsMax,
    });
    this.#pairings = new Pairings({
      ...common,
      transport: options.transport,
      state,
      relay: this.#relay,
      longPollMs,
      pairingProtocol,
      identity: () => this.identity(),
      peer: (uid) => this.peer(uid),
      transact: (fn) => this.transact(fn),
    });
    this.#transactions = new Transactions({
      ...common,
      kernel: this,
      store: this.#store,
      state,
      driver,
      outbox: this.#outbox,
      poller: this.#poller,
      sealing: this.#sealing,
      startPolling: (server) => this.#startPolling(server),
    });
  }

  /** Opens a kernel over its store: loads identity, peers and outbox, then runs plugin setup. */
  static async open(options: KernelOptions): Promise<Kernel> {
    const driver = PluginDriver.create(options.plugins ?? [], options.name ?? "kernel");
    const kernel = new Kernel(options, driver);
    await kernel.#load();
    await driver.setup((plugin) => kernel.#hostFor(plugin));
    return kernel;
  }

  async #load(): Promise<void> {
    this.#state.identity = await this.#store.loadIdentity();
    for (const peer of await this.#store.listPeers()) this.#state.cachePeer(peer);
    for (const device of await this.#store.listDevices()) this.#state.cachePeer(device);
    this.#outbox.load(await this.#store.listOutbox());
    this.#router.load(await this.#store.listQuarantine());
  }

  /** The next outbox id: ordered by queue time, then by sequence, across restarts. */
  nextOutboxId(now: number): string {
    return this.#outbox.nextId(now);
  }

  #hostFor(plugin: Plugin): PluginHost {
    return {
      clock: this.clock,
      random: this.random,
      deviceUid: () => this.#state.deviceUid(),
      identity: () => this.identity(),
      primaryOf: (peer) => this.primaryOf(peer),
      newIdentityRecord: (options) => this.newIdentityRecord(options),
      api: <T>(key: ApiKey<T>) => this.#driver.api<T>(key),
      transact: <T>(fn: (tx: Tx) => Promise<T>) => this.transact(fn),
      createInvitation: (options) => this.createInvitation(options),
      acceptInvitation: (bytes, options) => this.acceptInvitation(bytes, options),
      offerPairing: (options) => this.offerPairing(options),
      acceptPairing: (input, options) => this.acceptPairing(input, options),
      isSeen: (id) => this.#store.isSeen(id),
      data: (namespace) => this.pluginData(namespace),
      pruneSeen: (beforeMs) => this.#store.pruneSeen(beforeMs),
      log: (level, message) => this.#log(level, `${this.#name} [${plugin.name}] ${message}`),
    };
  }

  // ─── Reading ──────────────────────────────────────────────────────────────

  /**
   * The committed collection of the plugin named `namespace` (kernel/plugin.ts, "Plugin
   * storage"), read only: what a plugin's api or an application shows.
   *
   * @throws {TypeError} when no registered plugin has that name
   */
  pluginData(namespace: string): PluginDataReader {
    checkNamespace(this.#driver, namespace);
    const store = this.#store;
    return {
      get: async <T>(key: string) => {
        const bytes = await store.getPluginRecord(namespace, key);
        return bytes && decodeValue<T>(bytes);
      },
      list: async <T>(prefix?: string) =>
        (await store.listPluginRecords(namespace, prefix)).map((r) => ({
          key: r.key,
          value: decodeValue<T>(r.value),
        })),
    };
  }

  /** Whether this device has an identity yet. */
  hasIdentity(): boolean {
    return this.#state.identity !== undefined;
  }

  /** The committed identity; throws when the device has none. */
  identity(): IdentityRecord {
    if (!this.#state.identity) {
      throw new TypeError(`${this.#name}: this device has no identity yet`);
    }
    return clone(IdentityRecordSchema, this.#state.identity);
  }

  /** This device's uid ("" before an identity exists). */
  deviceUid(): string {
    return this.#state.deviceUid();
  }

  /**
   * The device uid of contact `peer`'s primary as this device sees it (its own
   * uid when it is the primary), as the plugins' `primaryOf` hooks decide.
   */
  primaryOf(peer: PeerRecord): string {
    return this.#driver.primaryOf(peer, this.deviceUid());
  }

  /** Completed contact peers. */
  peers(): PeerRecord[] {
    return [...this.#state.peers.values()].filter((p) => !isPending(p)).map((p) =>
      clone(PeerRecordSchema, p)
    );
  }

  /** Device peers (siblings). */
  devices(): PeerRecord[] {
    return [...this.#state.devices.values()].filter((p) => !isPending(p)).map((p) =>
      clone(PeerRecordSchema, p)
    );
  }

  /** Whether a contact or device peer `uid` is known (pending or not): {@linkcode peer} without its copy. */
  hasPeer(uid: string): boolean {
    return this.#state.peer(uid) !== undefined;
  }

  /** A contact or device peer by uid. */
  peer(uid: string): PeerRecord | undefined {
    const peer = this.#state.peer(uid);
    return peer && clone(PeerRecordSchema, peer);
  }

  /** The messages of one conversation, oldest first. */
  messages(peerUid: string, options?: { limit?: number }): Promise<DbMessage[]> {
    return this.#store.listMessages(peerUid, options);
  }

  /** The peer uids that have messages. */
  conversations(): Promise<string[]> {
    return this.#store.listConversations();
  }

  /** Packed messages waiting to leave. */
  outboxSize(): number {
    return this.#outbox.size();
  }

  /**
   * When the last poll round of relay `serverUid` that found nothing to take
   * and nothing to ack started, in clock ms (0: never). A relay that stored
   * nothing for this device since then holds nothing for it.
   */
  quietPollAt(serverUid: string): number {
    return this.#poller.quietPollAt(serverUid);
  }

  /** When the last poll completed, in clock ms (0: never). */
  lastPollAt(): number {
    return this.#poller.lastPollAt();
  }

  /** The plugins, in registration order. */
  plugins(): readonly Plugin[] {
    return this.#driver.plugins;
  }

  /**
   * The api of the plugin `key` names, typed by the key.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { apiKey } from "./plugin.ts";
   * import type { Kernel } from "./kernel.ts";
   * const CHAT_API = apiKey<{ send(peerUid: string, text: string): Promise<unknown> }>("chat");
   * const send = (kernel: Kernel) => kernel.api(CHAT_API).send("bob", "meow");
   * assert(typeof send === "function");
   * ```
   *
   * @throws {TypeError} when no plugin of that name exposes an api
   */
  api<T>(key: ApiKey<T>): T {
    return this.#driver.api<T>(key);
  }

  // ─── Transactions ─────────────────────────────────────────────────────────

  /** Runs `fn` in a transaction on the serial queue and commits what it staged. */
  transact<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.#serialQueue.run(() => this.#transactions.run(fn));
  }

  // ─── Identity ─────────────────────────────────────────────────────────────

  /**
   * Creates this device's identity (the first device of a user). Its root key
   * is derived from `recoveryCode` (kernel/device_list.ts `newRecoveryCode`;
   * show it to the user once, it is not stored), or random — unrecoverable —
   * without one; the device list starts as this device alone, root-signed.
   *
   * @throws {BadRecoveryCode} when `recoveryCode` is not a recovery code
   */
  createIdentity(
    options: { nickname: string; deviceName: string; servers: ServerCard[]; recoveryCode?: string },
  ): Promise<IdentityRecord> {
    return this.transact((tx) => {
      if (this.#state.identity) {
        throw new TypeError(`${this.#name}: this device already has an identity`);
      }
      const { recoveryCode, ...rest } = options;
      const identity = this.newIdentityRecord({
        uid: randomUuid(this.random),
        ...rest,
        withRoot: true,
      });
      if (recoveryCode !== undefined) {
        const root = rootFromRecoveryCode(recoveryCode);
        identity.root = create(KeyPairSchema, {
          privateKey: root.privateKey,
          publicKey: root.publicKey,
        });
      }
      identity.deviceList = signDeviceList(identity, 1, [identity.deviceUid]);
      return Promise.resolve(stageFirstIdentity(tx, identity, options.nickname));
    });
  }

  /**
   * A new identity record for this device with fresh device keys (and a fresh
   * root key when `withRoot`); not stored.
   */
  newIdentityRecord(
    options: IdentityRecordInit,
  ): IdentityRecord {
    return newIdentityRecord(this.random, this.clock.now(), options);
  }

  /** Changes the profile (nickname, status, avatars); last writer wins across devices. */
  updateProfile(
    changes: { nickname?: string; status?: string; avatars?: Uint8Array[] },
  ): Promise<IdentityRecord> {
    return this.transact((tx) => stageProfile(tx, changes));
  }

  /** Changes a contact's local settings (name, blocked, visible, notification and ack settings). */
  updatePeer(
    uid: string,
    changes: {
      name?: string;
      blocked?: boolean;
      visible?: boolean;
      settings?: PeerRecord["settings"];
    },
  ): Promise<PeerRecord> {
    return this.transact((tx) => stagePeerChanges(tx, uid, changes, this.deviceUid()));
  }

  /** Adds a relay to the identity's servers and, while running, starts polling it. */
  addServer(server: ServerCard): Promise<IdentityRecord> {
    return this.transact(async (tx) => {
      const { identity, added } = await stageServer(tx, server);
      if (added) tx.afterCommit(() => this.#startPolling(server));
      return identity;
    });
  }

  // ─── Invitations and pairing ──────────────────────────────────────────────

  /** Step 1: mints a pending peer and the card to hand to the other side. */
  createInvitation(options: InvitationOptions = {}): Promise<InvitationTicket> {
    return this.#pairings.createInvitation(options);
  }

  /**
   * Step 2: answers a card; the new peer is stored and the answer queued to
   * the initiator's relay. Resolves with the new peer's uid. `proof` (an
   * end-to-end pairing) makes the answer's transcript MAC and the safety code
   * from the serialized answer card; `type` refuses a card of another kind
   * before anything changes.
   */
  acceptInvitation(
    bytes: Uint8Array,
    options: AcceptInvitationOptions = {},
  ): Promise<string> {
    return this.#pairings.acceptInvitation(bytes, options);
  }

  /**
   * Offers a pairing (a contact invitation, or a device of this user with
   * `type: DEVICE`) through a mailbox on the home relay, end to end
   * encrypted: the relay holds only ciphertext, and only the holder of the
   * link or code can answer. See {@linkcode PairingOffer}.
   */
  offerPairing(
    options: OfferPairingOptions = {},
  ): Promise<PairingOffer> {
    return this.#pairings.offerPairing(options);
  }

  /**
   * Answers a pairing offered by link, or by code on `server`: claims its
   * mailbox (nobody else can use it after), checks it, stores the new peer
   * and queues the answer, then closes the mailbox.
   *
   * @throws {NoSuchCode} when the mailbox is unknown, used, expired or killed
   * @throws {PairingInterfered} when a confirmation fails: a wrong code, or someone interfered
   * @throws {Malformed} for a malformed link or code, or one of another kind than `type`
   */
  acceptPairing(
    input: JoinInput,
    options: AcceptPairingOptions = {},
  ): Promise<PairingAccepted> {
    return this.#pairings.acceptPairing(input, options);
  }

  // ─── Outbox, polls, receiving ─────────────────────────────────────────────

  /**
   * Sends every due outbox entry once; failures are rescheduled with
   * exponential backoff. Resolves with how many entries were delivered.
   */
  flushOutbox(signal?: AbortSignal): Promise<number> {
    return this.#outbox.flush(signal);
  }

  /** The lookup keys this device pulls: devices, pending invitations, and contacts it is primary for. */
  pullKeys(): PullKey[] {
    return this.#poller.pullKeys();
  }

  /**
   * Polls every relay of the identity once: pulls, processes, acks, until the
   * queues are empty (at most a bounded number of rounds). Resolves with how
   * many messages were accepted.
   */
  async pollOnce(signal?: AbortSignal): Promise<number> {
    let accepted = 0;
    for (const server of this.#state.identity?.servers ?? []) {
      accepted += await this.#poller.pollServer(server, { timeoutMs: 0, signal });
    }
    return accepted;
  }

  /**
   * How each relay treated this device's last requests, per kind (`poll`,
   * `send`): whether they were accepted, refused (and why) or could not reach
   * it, and since when.
   */
  relayHealth(): RelayHealth[] {
    return this.#relay.relayHealth();
  }

  /**
   * Records a successful poll in the identity's `last_poll_at` when the last
   * record is older than {@linkcode POLL_MARK_MS_MAX} (or an eighth of the
   * shortest retention of the relays), and tells the plugins in the same
   * transaction ("poll.marked"), so what they decide from the gap — a catch-up
   * request, refreshed messages — commits with the mark or not at all. A
   * plugin's failure here is logged; the poll it followed stands.
   */
  async #markPoll(nowMs: number): Promise<void> {
    const identity = this.#state.identity;
    if (!identity || this.#state.closed) return;
    const intervalMs = Math.min(
      POLL_MARK_MS_MAX,
      ...identity.servers.map((server) => relayLimits(server).retentionMs / 8),
    );
    if (nowMs - identity.lastPollAt < intervalMs) return;
    try {
      await this.transact(async (tx) => {
        const next = clone(IdentityRecordSchema, tx.identity());
        const previousMs = next.lastPollAt;
        if (nowMs - previousMs < intervalMs) return;
        next.lastPollAt = nowMs;
        tx.putIdentity(next);
        await tx.emit("poll.marked", { previousMs, nowMs });
      });
    } catch (e) {
      const tagged = pluginErrorOf(e);
      this.#log(
        "warn",
        `${this.#name}: could not record the poll: ${tagged?.message ?? String(e)}`,
      );
    }
  }

  /**
   * Processes one packed message in its own transaction: find the peer by
   * destination, verify, unseal, decrypt, route, commit. Bad input is
   * rejected with a typed error and changes nothing; other failures (a store
   * that cannot write) are thrown so the message is not acked.
   */
  receive(packed: PackedUserMessage): Promise<ReceiveOutcome> {
    return this.#router.receive(packed);
  }

  /**
   * The received messages that could not be verified or opened, oldest first
   * (at most {@linkcode QUARANTINE_MAX}): each with its delivery uuid, queue,
   * packed bytes, error and time. Kept on this device only.
   */
  quarantine(): QuarantineRecord[] {
    return this.#router.quarantine();
  }

  /** How many received messages sit in the quarantine. */
  quarantineCount(): number {
    return this.#router.quarantineCount();
  }

  // ─── Running ──────────────────────────────────────────────────────────────

  /** Starts the poll loop of every relay and the outbox loop, on the clock port. */
  start(): void {
    if (this.#running) return;
    if (this.#state.closed) throw new TypeError(`${this.#name}: the kernel is closed`);
    const controller = new AbortController();
    this.#running = controller;
    const signal = controller.signal;
    for (const server of this.#state.identity?.servers ?? []) this.#startPolling(server);
    this.#loops.push(this.#outbox.loop(signal));
    this.#loops.push(...this.#driver.run((plugin) => this.#hostFor(plugin), signal));
  }

  /** Starts the poll loop of `server` if the kernel runs and it has none yet. */
  #startPolling(server: ServerCard): void {
    const running = this.#running;
    if (!running) return;
    const loop = this.#poller.startPolling(server, running.signal);
    if (loop) this.#loops.push(loop);
  }

  /** Stops the loops and waits for them; committed state stays committed. */
  async stop(): Promise<void> {
    const running = this.#running;
    if (!running) return;
    this.#running = undefined;
    running.abort(new TypeError("stopped"));
    await Promise.allSettled(this.#loops);
    this.#loops = [];
    this.#poller.stopped();
    await this.#serialQueue.idle();
  }

  /** Stops and closes the store. */
  async close(): Promise<void> {
    await this.stop();
    await this.#serialQueue.idle();
    this.#state.closed = true;
    await this.#store.close();
  }

  /**
   * Drops this kernel at once, as a crash would: loops are aborted, nothing
   * more is committed, the store is left as it is (not closed).
   */
  crash(): void {
    this.#state.closed = true;
    this.#running?.abort(new TypeError("crashed"));
    this.#running = undefined;
  }
}

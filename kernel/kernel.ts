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
 * @module
 */
import { clone, create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type ContactCard,
  type DbMessage,
  DbMessageSchema,
  ErrorCode,
  type FromServerMessage,
  type IdentityRecord,
  IdentityRecordSchema,
  KeyPairSchema,
  type MailboxAnswer,
  type MailboxRequestSchema,
  type OutboxEntry,
  OutboxEntrySchema,
  type PackedUserMessage,
  type PeerRecord,
  PeerRecordSchema,
  PeerType,
  type PendingPairing as PendingPairingRecord,
  PendingPairingSchema,
  ProfileSchema,
  type PullToken,
  type QuarantineRecord,
  QuarantineRecordSchema,
  type ServerCard,
  type ServerError,
  ToServerMessageSchema,
  type UserMessage,
} from "../proto/mod.ts";
import { macPull, openRelayExchange, PULL_TOKEN_MARGIN_MS, signPull } from "../envelope/mod.ts";
import {
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  type KeyPair,
  randomInt,
  randomUuid,
} from "../crypto/mod.ts";
import {
  Malformed,
  MeowError,
  NoSuchCode,
  RelayRefused,
  Replay,
  UnknownDestination,
  UnknownType,
} from "./errors.ts";
import {
  answerInvitation,
  cardBytes,
  createInvitation,
  decodeCard,
  finalizeInvitation,
  HELLO_TYPE,
  isPending,
} from "./invitation.ts";
import {
  assertUsablePeer,
  FrameKind,
  myLookupKey,
  openFrame,
  pack,
  packedBytes,
  unpack,
} from "./pipeline.ts";
import { type RelayLimits, relayLimits } from "./relay_limits.ts";
import type { PairingLinkKind } from "./pairing.ts";
import {
  answerProof,
  type JoinInput,
  joinOffer,
  type MailboxPorts,
  PAIRING_PROTOCOL,
  type PairingForm,
  type PairingProtocol,
  type PendingPairing,
  startOffer,
} from "./pairing_flow.ts";
import type {
  KernelEventName,
  KernelEvents,
  Plugin,
  PluginHost,
  PluginInput,
  Tx,
} from "./plugin.ts";
import type { Batch, Clock, Random, Store, Transport } from "../ports/mod.ts";
import { TransportError } from "../ports/mod.ts";

/**
 * What the kernel reports to an observer: every plaintext user message it
 * encrypts or decrypts, and every packed message it rejects. The simulator's
 * privacy checkers read these beside the bytes on the wire.
 */
export type KernelObservation =
  | { kind: "outbound"; peerUid: string; message: UserMessage; packed: PackedUserMessage }
  | {
    kind: "inbound";
    peerUid: string;
    message: UserMessage;
    packed: PackedUserMessage;
    /** The ratchet header the message carried inside its seal. */
    header: Uint8Array;
  }
  | { kind: "rejected"; error: MeowError; packed: PackedUserMessage }
  | {
    /** Key material this device just made or learned (a new peer's private keys, a pairing's secret). */
    kind: "secret";
    bytes: Uint8Array;
    what: string;
  }
  | {
    kind: "relay";
    serverUid: string;
    request: RelayRequestKind;
    /** The new state of that kind of request, or `dropped`: the relay will never take one message. */
    state: RelayHealth["state"] | "dropped";
    detail: string;
  };

/** The kinds of relay request whose health the kernel tracks. */
export type RelayRequestKind = "poll" | "send" | "pairing";

/** How a relay treated this device's last request of one kind ({@linkcode Kernel.relayHealth}). */
export interface RelayHealth {
  /** The relay's uid. */
  serverUid: string;
  /** The relay's name from its card. */
  serverName: string;
  /** Which requests: polls (pulls and acks), sends (the outbox) or pairing mailbox steps. */
  request: RelayRequestKind;
  /** `ok`: accepted; `refused`: the relay refused it (or some of its pulls); `unreachable`: no answer. */
  state: "ok" | "refused" | "unreachable";
  /** When this state began, in clock ms. */
  since: number;
  /** What the relay or the transport said ("" when ok). */
  detail: string;
  /** Requests the relay refused so far. */
  refusals: number;
  /** Messages the relay will never take (too large, queue full past retries): failed, out of the outbox. */
  dropped: number;
  /** When a request was last accepted, in clock ms (0: never). */
  lastOkAt: number;
}

/** One request's share of a poll round: queues to pull, with the acks waiting for them. */
interface PullChunk {
  keys: { lookupKey: string; peer: PeerRecord }[];
  /** Acks it carries. */
  acks: number;
  /** Estimated request bytes. */
  bytes: number;
}

/** What one pull request did. */
interface ChunkResult {
  /** The relay answered (not refused as a whole, not unreachable). */
  answered: boolean;
  /** Every pull of it was authorised. */
  clean: boolean;
  accepted: number;
  /** Messages the answer carried. */
  messages: number;
  acksSent: number;
  /** The answer held as many messages as the relay sends at most: more may wait. */
  full: boolean;
  /** Why it did not go through. */
  error?: MeowError | TransportError;
}

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Options of {@linkcode Kernel.open}. */
export interface KernelOptions {
  /** The device's persistent state. */
  store: Store;
  /** The clock port. */
  clock: Clock;
  /** The randomness port. */
  random: Random;
  /** The way to the relays. */
  transport: Transport;
  /** Plugins, frozen once the kernel opens. */
  plugins?: PluginInput[];
  /**
   * Where log lines go.
   * @default {no logging}
   */
  log?: (level: LogLevel, line: string) => void;
  /**
   * Time between two polls of a relay while running, in ms.
   * @default {2000}
   */
  pollIntervalMs?: number;
  /**
   * Long-poll wait asked of the relay on each poll, in ms (0: short polls).
   * @default {0}
   */
  longPollMs?: number;
  /**
   * Longest wait between two attempts to deliver an outbox entry, in ms.
   * @default {30000}
   */
  retryMsMax?: number;
  /**
   * Most packed messages sent in one relay request.
   * @default {16}
   */
  outboxBatchMax?: number;
  /**
   * Name used in log lines.
   * @default {"kernel"}
   */
  name?: string;
  /**
   * Called with every observation (see {@linkcode KernelObservation}); must not throw.
   * @default {none}
   */
  observe?: (observation: KernelObservation) => void;
  /**
   * The pairing protocol's steps. Only tests set it, to plant a weakened
   * protocol and show the checks catch what it lets through.
   * @default {PAIRING_PROTOCOL}
   */
  pairingProtocol?: PairingProtocol;
  /**
   * How user messages are sealed. Only tests set it: `pad: false` seals
   * frames unpadded, `checkSize: false` drops the send-time size check and
   * `headerInClear: true` carries the ratchet header outside the seal too, to
   * show what the relay would learn, or what would be lost, without them.
   * @default {{ pad: true, checkSize: true }}
   */
  sealing?: { pad?: boolean; checkSize?: boolean; headerInClear?: boolean };
}

/** Rounds of pull-then-ack one poll makes before it yields, so a busy queue cannot hold the device. */
const POLL_ROUNDS_MAX = 8;
/** What one pull request adds to a request, in bytes at most (lookup key, time, signature, framing). */
const PULL_BYTES = 160;
/** What one ack adds to a request, in bytes at most (a delivery uuid and framing). */
const ACK_BYTES = 40;
/** Framing one packed message adds inside a request, in bytes at most. */
const MESSAGE_FRAMING_BYTES = 16;
/** What a request adds around its pulls, acks and messages, in bytes at most (envelope, sealing). */
const REQUEST_OVERHEAD_BYTES = 512;
/**
 * Times a mailbox step is tried again before giving up: after a lost request,
 * or after the relay's look-up limit (BUSY with a retry time).
 */
const MAILBOX_RETRIES_MAX = 5;
/** First retry delay of a failed delivery, in ms; doubles per attempt up to `retryMsMax`. */
const RETRY_MS_MIN = 500;
/**
 * Times the relay may answer QUEUE_FULL for one outbox entry before its message
 * fails for good (at the default 30 s retry cap, about 20 minutes of a full queue).
 */
export const QUEUE_FULL_ATTEMPTS_MAX = 40;
/** Received messages that could not be opened, kept at most; the oldest goes first. */
export const QUARANTINE_MAX = 256;

/** What {@linkcode Kernel.createInvitation} returns. */
export interface InvitationTicket {
  /** The pending peer's uid (the conversation's uid once answered). */
  peerUid: string;
  /** The card to hand over. */
  card: ContactCard;
  /** The card as bytes (for a file or a QR code). */
  bytes: Uint8Array;
}

/** What {@linkcode Kernel.offerPairing} returns: what to hand the other side, and the exchange. */
export interface PairingOffer {
  /** The pending peer's uid (the conversation's uid once answered). */
  peerUid: string;
  /** How it is handed over. */
  form: PairingForm;
  /** The relay mailbox it waits in. */
  nameplate: string;
  /** Link form: `meow:pair?…` or `meow:invite?…` ("" for a code). */
  link: string;
  /** Code form: the code to type, e.g. `K7M2-XQ4P-9R3T` ("" for a link). */
  code: string;
  /** When the mailbox expires, in clock ms. */
  expiresAt: number;
  /**
   * Resolves once this side's part is done (a link: at once; a code: once the
   * joiner's confirmation checked out and the card went); rejects with
   * `PairingInterfered` (the mailbox is killed) or `NoSuchCode` (it expired).
   * The pairing completes when the answer arrives: the peer is then no longer pending.
   */
  exchanged: Promise<void>;
}

/** What {@linkcode Kernel.acceptPairing} resolves with. */
export interface PairingAccepted {
  /** The new peer's uid. */
  peerUid: string;
  /** The six digits both sides show. */
  safetyCode: string;
  /** A contact or a sibling device. */
  type: PeerType;
}

/** The result of processing one polled or handed-in packed message. */
export type ReceiveOutcome =
  | { kind: "accepted"; peerUid: string; type: string }
  | { kind: "deferred"; reason: string }
  | {
    kind: "rejected";
    error: MeowError;
    /** Kept in the quarantine (every rejection but a replay) before it is acked. */
    quarantined: boolean;
  };

/** Thrown inside a receiving transaction to leave a message on the relay for a later poll. */
class Deferred extends Error {}

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
  readonly #transport: Transport;
  readonly #plugins: readonly Plugin[];
  readonly #owners = new Map<string, Plugin>();
  readonly #log: (level: LogLevel, line: string) => void;
  readonly #name: string;
  readonly #pollIntervalMs: number;
  readonly #longPollMs: number;
  readonly #retryMsMax: number;
  readonly #outboxBatchMax: number;
  readonly #observe: (observation: KernelObservation) => void;
  readonly #pairingProtocol: PairingProtocol;
  readonly #sealing: { pad?: boolean; checkSize?: boolean; headerInClear?: boolean };

  #identity: IdentityRecord | undefined;
  #peers = new Map<string, PeerRecord>();
  #devices = new Map<string, PeerRecord>();
  #lookup = new Map<string, string>();
  #outbox = new Map<string, OutboxEntry>();
  /** Received messages that could not be opened, oldest first, at most QUARANTINE_MAX. */
  #quarantine: QuarantineRecord[] = [];
  /** Per relay, per queue: delivery uuids committed here and not yet acked. */
  #acks = new Map<string, Map<string, string[]>>();
  /** Per relay: the most pulls per request after the relay refused a larger one. */
  readonly #pullChunkMax = new Map<string, number>();
  /** Per `relay uid` + request kind: how the relay treated the last request. */
  readonly #relayHealth = new Map<string, RelayHealth>();
  #lastPullTs = new Map<string, number>();
  /**
   * relay uid → lookup key → the pull token the relay gave for it: later pulls of the key
   * present it with a MAC instead of a signature. Kept in memory only; without one (after a
   * restart, or once it expires or is refused) the next pull is signed and brings a new one.
   */
  #pullTokens = new Map<string, Map<string, PullToken>>();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #running: AbortController | undefined;
  #loops: Promise<void>[] = [];
  #flushWake: (() => void) | undefined;
  #flushing: Promise<void> | undefined;
  #lastPollAt = 0;
  #polled = new Set<string>();
  /** Per relay, the open long poll's restart switch: the set of pulled queues changed. */
  readonly #pollRestarts = new Map<string, AbortController>();
  #quietPollAt = new Map<string, number>();
  #outboxSeq = 0;

  private constructor(options: KernelOptions, plugins: Plugin[]) {
    this.clock = options.clock;
    this.random = options.random;
    this.#store = options.store;
    this.#transport = options.transport;
    this.#plugins = Object.freeze(plugins);
    this.#log = options.log ?? (() => {});
    this.#name = options.name ?? "kernel";
    this.#pollIntervalMs = options.pollIntervalMs ?? 2000;
    this.#longPollMs = options.longPollMs ?? 0;
    this.#retryMsMax = options.retryMsMax ?? 30_000;
    this.#outboxBatchMax = options.outboxBatchMax ?? 16;
    this.#observe = options.observe ?? (() => {});
    this.#pairingProtocol = options.pairingProtocol ?? PAIRING_PROTOCOL;
    this.#sealing = { ...options.sealing };
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

  /** Opens a kernel over its store: loads identity, peers and outbox, then runs plugin setup. */
  static async open(options: KernelOptions): Promise<Kernel> {
    const plugins = (options.plugins ?? []).map((p) => typeof p === "function" ? p() : p);
    const names = new Set<string>();
    for (const plugin of plugins) {
      if (!plugin.name) throw new TypeError("Cannot register a plugin without a name");
      if (names.has(plugin.name)) {
        throw new TypeError(`Cannot register plugin "${plugin.name}" twice`);
      }
      names.add(plugin.name);
    }
    const kernel = new Kernel(options, plugins);
    await kernel.#load();
    for (const plugin of plugins) await plugin.setup?.(kernel.#hostFor(plugin));
    return kernel;
  }

  async #load(): Promise<void> {
    this.#identity = await this.#store.loadIdentity();
    for (const peer of await this.#store.listPeers()) this.#cachePeer(peer);
    for (const device of await this.#store.listDevices()) this.#cachePeer(device);
    for (const entry of await this.#store.listOutbox()) {
      this.#outbox.set(entry.id, entry);
      this.#outboxSeq = Math.max(this.#outboxSeq, outboxSeqOf(entry.id));
    }
    this.#quarantine = await this.#store.listQuarantine();
  }

  /** The next outbox id: ordered by queue time, then by sequence, across restarts. */
  nextOutboxId(now: number): string {
    this.#outboxSeq += 1;
    return `${now.toString(36).padStart(10, "0")}.${this.#outboxSeq.toString(36).padStart(8, "0")}`;
  }

  #cachePeer(peer: PeerRecord): void {
    const map = peer.type === PeerType.DEVICE ? this.#devices : this.#peers;
    const old = map.get(peer.uid);
    if (old?.myLookup) this.#lookup.delete(myLookupKey(old));
    map.set(peer.uid, peer);
    if (peer.myLookup) this.#lookup.set(myLookupKey(peer), peer.uid);
  }

  #hostFor(plugin: Plugin): PluginHost {
    return {
      clock: this.clock,
      random: this.random,
      deviceUid: () => this.#identity?.deviceUid ?? "",
      identity: () => this.identity(),
      api: <T>(name: string) => this.api<T>(name),
      transact: <T>(fn: (tx: Tx) => Promise<T>) => this.transact(fn),
      createInvitation: (options) => this.createInvitation(options),
      acceptInvitation: (bytes, options) => this.acceptInvitation(bytes, options),
      offerPairing: (options) => this.offerPairing(options),
      acceptPairing: (input, options) => this.acceptPairing(input, options),
      isSeen: (id) => this.#store.isSeen(id),
      pruneSeen: (beforeMs) => this.#store.pruneSeen(beforeMs),
      log: (level, message) => this.#log(level, `${this.#name} [${plugin.name}] ${message}`),
    };
  }

  // ─── Reading ──────────────────────────────────────────────────────────────

  /** Whether this device has an identity yet. */
  hasIdentity(): boolean {
    return this.#identity !== undefined;
  }

  /** The committed identity; throws when the device has none. */
  identity(): IdentityRecord {
    if (!this.#identity) throw new TypeError(`${this.#name}: this device has no identity yet`);
    return clone(IdentityRecordSchema, this.#identity);
  }

  /** This device's uid ("" before an identity exists). */
  deviceUid(): string {
    return this.#identity?.deviceUid ?? "";
  }

  /** Completed contact peers. */
  peers(): PeerRecord[] {
    return [...this.#peers.values()].filter((p) => !isPending(p)).map((p) =>
      clone(PeerRecordSchema, p)
    );
  }

  /** Device peers (siblings). */
  devices(): PeerRecord[] {
    return [...this.#devices.values()].filter((p) => !isPending(p)).map((p) =>
      clone(PeerRecordSchema, p)
    );
  }

  /** A contact or device peer by uid. */
  peer(uid: string): PeerRecord | undefined {
    const peer = this.#peers.get(uid) ?? this.#devices.get(uid);
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
    return this.#outbox.size;
  }

  /**
   * When the last poll round of relay `serverUid` that found nothing to take
   * and nothing to ack started, in clock ms (0: never). A relay that stored
   * nothing for this device since then holds nothing for it.
   */
  quietPollAt(serverUid: string): number {
    return this.#quietPollAt.get(serverUid) ?? 0;
  }

  /** When the last poll completed, in clock ms (0: never). */
  lastPollAt(): number {
    return this.#lastPollAt;
  }

  /** The plugins, in registration order. */
  plugins(): readonly Plugin[] {
    return this.#plugins;
  }

  /** The api a plugin exposes. */
  api<T>(name: string): T {
    const plugin = this.#plugins.find((p) => p.name === name);
    if (!plugin || plugin.api === undefined) {
      throw new TypeError(`${this.#name}: no plugin named "${name}" exposes an api`);
    }
    return plugin.api as T;
  }

  // ─── Transactions ─────────────────────────────────────────────────────────

  /** Runs `fn` on the serial queue. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#closed) throw new TypeError(`${this.#name}: the kernel is closed`);
      return fn();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Runs `fn` in a transaction on the serial queue and commits what it staged. */
  transact<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.#serial(() => this.#transact(fn));
  }

  async #transact<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const tx = new KernelTx(this, this.#txPorts());
    const result = await fn(tx);
    await this.#commit(tx);
    return result;
  }

  #txPorts(): TxPorts {
    return {
      now: this.clock.now(),
      identity: this.#identity,
      peer: (uid) => this.#peers.get(uid) ?? this.#devices.get(uid),
      peers: () => [...this.#peers.values()],
      devices: () => [...this.#devices.values()],
      store: this.#store,
      random: this.random,
      plugins: this.#plugins,
      deviceUid: this.#identity?.deviceUid ?? "",
      observe: this.#observe,
      sealing: this.#sealing,
    };
  }

  async #commit(tx: KernelTx): Promise<void> {
    const batch = tx.batch();
    if (this.#closed) throw new TypeError(`${this.#name}: the kernel is closed`);
    await this.#store.commit(batch);
    const pulled = this.#pollRestarts.size > 0 ? this.#pullSet() : undefined;
    if (batch.identity) {
      this.#identity = batch.identity;
      // Relays can arrive by device sync or with a new install's first identity: poll them too.
      for (const server of batch.identity.servers) this.#startPolling(server);
    }
    for (const peer of batch.peers ?? []) this.#cachePeer(peer);
    for (const device of batch.devices ?? []) this.#cachePeer(device);
    if (pulled !== undefined && pulled !== this.#pullSet()) {
      // An open long poll does not wait on the new queues: end it, the loop polls again at once.
      for (const restart of this.#pollRestarts.values()) restart.abort();
    }
    for (const entry of batch.outboxPut ?? []) this.#outbox.set(entry.id, entry);
    for (const id of batch.outboxDelete ?? []) this.#outbox.delete(id);
    if ((batch.outboxPut ?? []).length > 0) this.#flushWake?.();
    for (const fn of tx.afterCommitFns()) {
      try {
        fn();
      } catch (e) {
        this.#log("error", `${this.#name} after-commit hook failed: ${(e as Error).message}`);
      }
    }
  }

  // ─── Identity ─────────────────────────────────────────────────────────────

  /** Creates this device's identity (the first device of a user). */
  createIdentity(
    options: { nickname: string; deviceName: string; servers: ServerCard[] },
  ): Promise<IdentityRecord> {
    return this.transact((tx) => {
      if (this.#identity) throw new TypeError(`${this.#name}: this device already has an identity`);
      const identity = this.newIdentityRecord({
        uid: randomUuid(this.random),
        ...options,
        withRoot: true,
      });
      identity.profile = create(ProfileSchema, {
        nickname: options.nickname,
        updatedAt: tx.now,
        updatedBy: identity.deviceUid,
      });
      tx.putIdentity(identity);
      return Promise.resolve(identity);
    });
  }

  /**
   * A new identity record for this device with fresh device keys (and a fresh
   * root key when `withRoot`); not stored.
   */
  newIdentityRecord(
    options: { uid: string; deviceName: string; servers: ServerCard[]; withRoot: boolean },
  ): IdentityRecord {
    const kp = (pair: KeyPair) =>
      create(KeyPairSchema, { privateKey: pair.privateKey, publicKey: pair.publicKey });
    const deviceSigning = generateSigningKeyPair(this.random);
    const record = create(IdentityRecordSchema, {
      uid: options.uid,
      deviceEncryption: kp(generateEncryptionKeyPair(this.random)),
      deviceSigning: kp(deviceSigning),
      deviceUid: randomUuid(this.random),
      deviceName: options.deviceName,
      servers: options.servers,
      createdAt: this.clock.now(),
    });
    if (options.withRoot) record.root = kp(generateSigningKeyPair(this.random));
    return record;
  }

  /** Changes the profile (nickname, status, avatars); last writer wins across devices. */
  updateProfile(
    changes: { nickname?: string; status?: string; avatars?: Uint8Array[] },
  ): Promise<IdentityRecord> {
    return this.transact(async (tx) => {
      const identity = clone(IdentityRecordSchema, tx.identity());
      const profile = identity.profile ?? create(ProfileSchema);
      if (changes.nickname !== undefined) profile.nickname = changes.nickname;
      if (changes.status !== undefined) profile.status = changes.status;
      if (changes.avatars !== undefined) profile.avatars = changes.avatars;
      profile.updatedAt = tx.now;
      profile.updatedBy = identity.deviceUid;
      identity.profile = profile;
      tx.putIdentity(identity);
      await tx.emit("identity.updated", { identity, origin: "local" });
      return identity;
    });
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
    return this.transact(async (tx) => {
      const peer = tx.peer(uid);
      if (!peer || isPending(peer)) throw new TypeError(`Cannot update peer ${uid}: no such peer`);
      if (changes.name !== undefined) peer.name = changes.name;
      if (changes.blocked !== undefined) peer.blocked = changes.blocked;
      if (changes.visible !== undefined) peer.visible = changes.visible;
      if (changes.settings !== undefined) peer.settings = changes.settings;
      peer.updatedAt = tx.now;
      peer.updatedBy = this.deviceUid();
      tx.putPeer(peer);
      await tx.emit("peer.updated", { peer, created: false, origin: "local" });
      return peer;
    });
  }

  /** Adds a relay to the identity's servers and, while running, starts polling it. */
  addServer(server: ServerCard): Promise<IdentityRecord> {
    return this.transact(async (tx) => {
      const identity = clone(IdentityRecordSchema, tx.identity());
      if (identity.servers.some((s) => s.uid === server.uid)) return identity;
      identity.servers.push(server);
      tx.putIdentity(identity);
      await tx.emit("server.added", { server, origin: "local" });
      tx.afterCommit(() => this.#startPolling(server));
      return identity;
    });
  }

  // ─── Invitations ──────────────────────────────────────────────────────────

  /** Step 1: mints a pending peer and the card to hand to the other side. */
  createInvitation(options: { type?: PeerType; name?: string } = {}): Promise<InvitationTicket> {
    return this.transact((tx) => {
      const identity = tx.identity();
      const { pending, card } = createInvitation({
        random: this.random,
        now: tx.now,
        name: options.name ?? identity.profile?.nickname ?? "",
        servers: identity.servers,
        type: options.type ?? PeerType.CONTACT,
        deviceUid: identity.deviceUid,
      });
      tx.putPeer(pending);
      return Promise.resolve({ peerUid: pending.uid, card, bytes: cardBytes(card) });
    });
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
    options: {
      name?: string;
      deviceName?: string;
      type?: PeerType;
      proof?: (answerCard: Uint8Array) => { mac: Uint8Array; safetyCode: string };
    } = {},
  ): Promise<string> {
    return this.transact(async (tx) => {
      const card = decodeCard(bytes);
      if (options.type !== undefined && card.type !== options.type) {
        throw new Malformed(
          `Cannot accept invitation ${card.invitationId}: it pairs ${
            card.type === PeerType.DEVICE ? "a device of its owner" : "a contact"
          }, not ${options.type === PeerType.DEVICE ? "a device" : "a contact"}`,
        );
      }
      if (this.peer(card.peerUid)) {
        throw new Malformed(
          `Cannot accept invitation ${card.invitationId}: peer ${card.peerUid} exists already`,
        );
      }
      if (!this.#identity) {
        if (card.type !== PeerType.DEVICE) {
          throw new TypeError(
            `${this.#name}: create an identity or pair with a device before adding contacts`,
          );
        }
        // A new install joining its user's devices: device keys now, the identity arrives by sync.
        tx.putIdentity(this.newIdentityRecord({
          uid: "",
          deviceName: options.deviceName ?? "device",
          servers: card.pullServers,
          withRoot: false,
        }));
      }
      const identity = tx.identity();
      let safetyCode = "";
      const proof = options.proof;
      const { peer, answer } = await answerInvitation(card, {
        random: this.random,
        now: tx.now,
        name: options.name ?? identity.profile?.nickname ?? "",
        servers: identity.servers,
        type: card.type,
        deviceUid: identity.deviceUid,
        mac: proof && ((answerCard) => {
          const made = proof(answerCard);
          safetyCode = made.safetyCode;
          return made.mac;
        }),
      });
      peer.updatedBy = identity.deviceUid;
      peer.safetyCode = safetyCode;
      tx.putPeer(peer);
      tx.queuePacked(peer, answer, "");
      await tx.emit("peer.updated", { peer, created: true, origin: "local" });
      return peer.uid;
    });
  }

  /**
   * Offers a pairing (a contact invitation, or a device of this user with
   * `type: DEVICE`) through a mailbox on the home relay, end to end
   * encrypted: the relay holds only ciphertext, and only the holder of the
   * link or code can answer. See {@linkcode PairingOffer}.
   */
  async offerPairing(
    options: {
      type?: PeerType;
      form?: PairingForm;
      name?: string;
      expiresMs?: number;
      signal?: AbortSignal;
    } = {},
  ): Promise<PairingOffer> {
    const identity = this.identity();
    const server = identity.servers[0];
    if (!server) throw new TypeError(`${this.#name}: the identity has no relay to pair through`);
    const type = options.type ?? PeerType.CONTACT;
    const form = options.form ?? "link";
    const kind: PairingLinkKind = type === PeerType.DEVICE ? "pair" : "invite";
    const { pending, card } = createInvitation({
      random: this.random,
      now: this.clock.now(),
      name: options.name ?? identity.profile?.nickname ?? "",
      servers: identity.servers,
      type,
      deviceUid: identity.deviceUid,
    });
    observeSecrets(this.#observe, pending, cardBytes(card));
    const start = await startOffer(this.#mailboxPorts(), {
      server,
      form,
      kind,
      card,
      cardBytes: cardBytes(card),
      expiresMs: options.expiresMs,
    });
    if (start.pending) pending.pendingPairing = pendingRecord(start.pending);
    await this.transact((tx) => {
      tx.putPeer(pending);
      return Promise.resolve();
    });
    const exchanged = start.exchange
      ? start.exchange(
        (confirmed) =>
          this.transact((tx) => {
            const peer = tx.peer(pending.uid);
            if (!peer || !isPending(peer)) {
              throw new TypeError(`${this.#name}: invitation ${pending.uid} is no longer pending`);
            }
            peer.pendingPairing = pendingRecord(confirmed);
            tx.putPeer(peer);
            return Promise.resolve();
          }),
        options.signal,
      )
      : Promise.resolve();
    // The caller awaits it when it cares; an unawaited failure must not end the process.
    exchanged.catch(() => {});
    return {
      peerUid: pending.uid,
      form,
      nameplate: start.nameplate,
      link: start.link,
      code: start.code,
      expiresAt: start.expiresAt,
      exchanged,
    };
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
  async acceptPairing(
    input: JoinInput,
    options: { name?: string; deviceName?: string; type?: PeerType; signal?: AbortSignal } = {},
  ): Promise<PairingAccepted> {
    const joined = await joinOffer(this.#mailboxPorts(), input, {
      resolveServer: (url) => this.#resolveServer(url),
      signal: options.signal,
    });
    const type = joined.kind === "pair"
      ? PeerType.DEVICE
      : joined.kind === "invite"
      ? PeerType.CONTACT
      : options.type;
    if (options.type !== undefined && type !== options.type) {
      await joined.close();
      throw new Malformed(
        `Cannot accept this ${joined.kind === "pair" ? "device pairing" : "invitation"} link ` +
          `as ${options.type === PeerType.DEVICE ? "a device" : "a contact"}`,
      );
    }
    let safetyCode = "";
    const pending: PendingPairing = { keys: joined.keys, cardPost: joined.cardPost };
    const peerUid = await this.acceptInvitation(joined.cardBytes, {
      name: options.name,
      deviceName: options.deviceName,
      type,
      proof: (answerCard) => {
        const made = answerProof(pending, answerCard);
        safetyCode = made.safetyCode;
        return made;
      },
    });
    await joined.close();
    return { peerUid, safetyCode, type: this.peer(peerUid)!.type };
  }

  #mailboxPorts(): MailboxPorts {
    return {
      random: this.random,
      now: () => this.clock.now(),
      longPoll: this.#longPollMs > 0,
      sleep: (ms, signal) => this.clock.sleep(ms, signal),
      protocol: this.#pairingProtocol,
      secret: (bytes, what) => this.#observe({ kind: "secret", bytes, what }),
      mailbox: (server, request, options) => this.#mailbox(server, request, options),
    };
  }

  /** A relay's card by URL: one of the identity's relays, else fetched. */
  async #resolveServer(url: string): Promise<ServerCard> {
    const clean = url.replace(/\/+$/, "");
    const known = this.#identity?.servers.find((s) => s.url.replace(/\/+$/, "") === clean);
    if (known) return known;
    const card = await this.#transport.fetchCard(clean);
    if (card.url === "") card.url = clean;
    return card;
  }

  async #mailbox(
    server: ServerCard,
    init: MessageInitShape<typeof MailboxRequestSchema>,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<MailboxAnswer> {
    for (let attempt = 0;; attempt++) {
      let answer: FromServerMessage;
      try {
        answer = await this.#request(server, {
          mailbox: init,
          timeoutMs: Math.min(options.timeoutMs ?? 0, relayLimits(server).longPollMsMax),
        }, { signal: options.signal });
      } catch (e) {
        // A lost request goes again: every mailbox step is safe to repeat (a repeated post is
        // skipped by the other side, a repeated claim finds this side a member).
        if (!(e instanceof TransportError) || options.signal?.aborted) throw e;
        if (attempt >= MAILBOX_RETRIES_MAX) throw e;
        this.#health(server, "pairing", "unreachable", e.message);
        await this.clock.sleep(RETRY_MS_MIN * 2 ** attempt, options.signal);
        continue;
      }
      const error = answer.errors[0];
      if (!error) {
        if (!answer.mailbox) {
          throw new Malformed(
            `Cannot use relay ${server.name || server.uid}: it answered no mailbox`,
          );
        }
        this.#health(server, "pairing", "ok", "");
        return answer.mailbox;
      }
      // No such mailbox is the pairing's answer, not the relay refusing this device.
      if (error.code === ErrorCode.NOT_FOUND) throw new NoSuchCode();
      const refused = this.#refused(server, "pairing", error);
      // Past the relay's look-up limit: wait as long as it says, a bounded number of times.
      const busy = error.code === ErrorCode.BUSY && refused.retryAfterMs > 0;
      if (!busy || attempt >= MAILBOX_RETRIES_MAX) throw refused;
      await this.clock.sleep(refused.retryAfterMs, options.signal);
    }
  }

  // ─── Relay requests ───────────────────────────────────────────────────────

  /**
   * One request in its own relay exchange (a fresh ephemeral key): `init` is the request, or
   * builds it from the exchange's ephemeral key (pulls are signed over it).
   */
  async #request(
    server: ServerCard,
    init:
      | MessageInitShape<typeof ToServerMessageSchema>
      | ((
        ephemeralPublicKey: Uint8Array,
      ) => Promise<MessageInitShape<typeof ToServerMessageSchema>>),
    options: { signal?: AbortSignal } = {},
  ): Promise<FromServerMessage> {
    const exchange = await openRelayExchange({ server, random: this.random });
    const shape = typeof init === "function" ? await init(exchange.ephemeralPublicKey) : init;
    const request = create(ToServerMessageSchema, shape);
    request.uuid = randomUuid(this.random);
    const reply = await this.#transport.exchange(server, exchange.seal(request), options.signal);
    return exchange.open(reply);
  }

  // ─── Outbox ───────────────────────────────────────────────────────────────

  /**
   * Sends every due outbox entry once; failures are rescheduled with
   * exponential backoff. Resolves with how many entries were delivered.
   */
  flushOutbox(signal?: AbortSignal): Promise<number> {
    const run = (this.#flushing ?? Promise.resolve()).then(() => this.#flushOnce(signal));
    this.#flushing = run.then(() => {}, () => {});
    return run;
  }

  async #flushOnce(signal?: AbortSignal): Promise<number> {
    const now = this.clock.now();
    const due = [...this.#outbox.values()]
      .filter((e) => e.nextAttemptAt <= now)
      .sort((a, b) => a.queuedAt - b.queuedAt || (a.id < b.id ? -1 : 1));
    const byServer = new Map<string, OutboxEntry[]>();
    for (const entry of due) {
      const key = entry.server?.uid ?? "";
      byServer.set(key, [...(byServer.get(key) ?? []), entry]);
    }
    let delivered = 0;
    for (const entries of byServer.values()) {
      for (const batch of await this.#batches(entries)) {
        if (signal?.aborted || this.#closed) return delivered;
        delivered += await this.#deliver(batch, signal);
      }
    }
    return delivered;
  }

  /**
   * Splits one relay's due entries into requests within its card's limits
   * (messages per request, request bytes). An entry larger than the relay
   * stores can never leave: its message fails, reported and counted, not sent.
   */
  async #batches(entries: OutboxEntry[]): Promise<OutboxEntry[][]> {
    const server = entries[0].server!;
    const limits = relayLimits(server);
    const countMax = Math.min(this.#outboxBatchMax, limits.messagesPerRequestMax);
    const bytesMax = limits.requestBytesMax - REQUEST_OVERHEAD_BYTES;
    const batches: OutboxEntry[][] = [];
    const tooLarge: OutboxEntry[] = [];
    let batch: OutboxEntry[] = [];
    let bytes = 0;
    for (const entry of entries) {
      const size = packedBytes(entry.packed!);
      if (size > limits.messageBytesMax) {
        tooLarge.push(entry);
        continue;
      }
      if (batch.length >= countMax || (batch.length > 0 && bytes + size > bytesMax)) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(entry);
      bytes += size + MESSAGE_FRAMING_BYTES;
    }
    if (batch.length > 0) batches.push(batch);
    await this.#fail(
      server,
      tooLarge.map((entry) => ({
        entry,
        reason: `too large: ${
          packedBytes(entry.packed!)
        } bytes, more than the relay's messageBytesMax ${limits.messageBytesMax}`,
      })),
    );
    return batches;
  }

  /**
   * Gives up on outbox entries the relay will never take: each is reported,
   * and in one commit removed from the outbox while the message it carries is
   * marked failed with its reason (`message.status`, so device sync tells every
   * sibling).
   */
  async #fail(server: ServerCard, failures: { entry: OutboxEntry; reason: string }[]) {
    if (failures.length === 0) return;
    for (const { entry, reason } of failures) this.#dropped(server, entry, reason);
    await this.#serial(() =>
      this.#transact(async (anyTx) => {
        const tx = anyTx as KernelTx;
        for (const { entry, reason } of failures) {
          if (!this.#outbox.has(entry.id)) continue;
          tx.deleteOutbox(entry.id);
          if (entry.messageUuid === "" || entry.peerUid === "") continue;
          const row = await tx.message(entry.peerUid, entry.messageUuid);
          if (!row?.outbound || row.failedAt > 0) continue;
          row.failedReason = reason;
          row.failedAt = tx.now;
          row.pendingForward = false;
          tx.putMessage(row);
          await tx.emit("message.status", { message: row, origin: "local" });
        }
      })
    );
  }

  /** Reports an outbox entry the relay will never take (it is removed by the caller). */
  #dropped(server: ServerCard, entry: OutboxEntry, why: string): void {
    const detail = `message ${entry.messageUuid || entry.id} to ${entry.peerUid} failed: ${why}`;
    this.#log("error", `${this.#name} outbox ${server.name || server.uid}: ${detail}`);
    const key = `${server.uid} send`;
    const old = this.#relayHealth.get(key);
    const now = this.clock.now();
    this.#relayHealth.set(key, {
      serverUid: server.uid,
      serverName: server.name,
      request: "send",
      state: old?.state ?? "ok",
      since: old?.since ?? now,
      detail: old?.detail ?? "",
      refusals: old?.refusals ?? 0,
      dropped: (old?.dropped ?? 0) + 1,
      lastOkAt: old?.lastOkAt ?? 0,
    });
    this.#observe({
      kind: "relay",
      serverUid: server.uid,
      request: "send",
      state: "dropped",
      detail,
    });
  }

  async #deliver(entries: OutboxEntry[], signal?: AbortSignal): Promise<number> {
    const server = entries[0].server!;
    let answer: FromServerMessage;
    try {
      answer = await this.#request(server, { messages: entries.map((e) => e.packed!) }, { signal });
    } catch (e) {
      if (!(e instanceof TransportError || e instanceof MeowError)) throw e;
      // Stopped mid-request: not a failed attempt, the entries stay due for the next flush
      // (a copy the relay got anyway is dropped as a repeat by the receiver).
      if (signal?.aborted) return 0;
      this.#log(
        "debug",
        `${this.#name} outbox: ${server.name || server.uid} unreachable: ${e.message}`,
      );
      this.#health(server, "send", "unreachable", e.message);
      await this.#reschedule(entries);
      return 0;
    }
    const refusal = answer.errors.find((e) => e.messageIndex === 0 && e.lookupKey === "");
    if (refusal) {
      const error = this.#refused(server, "send", refusal);
      await this.#reschedule(entries, error.retryAfterMs);
      return 0;
    }
    this.#health(server, "send", "ok", "");
    const errors = new Map(answer.errors.map((e) => [e.messageIndex - 1, e]));
    const done: string[] = [];
    const retry: OutboxEntry[] = [];
    const queueFull = new Set<string>();
    const failures: { entry: OutboxEntry; reason: string }[] = [];
    entries.forEach((entry, i) => {
      const error = errors.get(i);
      if (!error) return done.push(entry.id);
      if (error.code === ErrorCode.TOO_LARGE) {
        return failures.push({ entry, reason: `too large: the relay refused it: ${error.detail}` });
      }
      if (error.code === ErrorCode.QUEUE_FULL) {
        if (entry.queueFullAttempts + 1 >= QUEUE_FULL_ATTEMPTS_MAX) {
          return failures.push({
            entry,
            reason: `queue full: the relay refused it ${QUEUE_FULL_ATTEMPTS_MAX} times ` +
              `(QUEUE_FULL_ATTEMPTS_MAX): ${error.detail}`,
          });
        }
        queueFull.add(entry.id);
      }
      retry.push(entry);
    });
    await this.#serial(() => this.#commitOutbox(done, []));
    await this.#fail(server, failures);
    if (retry.length > 0) await this.#reschedule(retry, 0, queueFull);
    return done.length;
  }

  /**
   * Retries `entries` later: exponential backoff with jitter, at least
   * `retryAfterMs`; the entries in `queueFull` count one more QUEUE_FULL answer.
   */
  #reschedule(entries: OutboxEntry[], retryAfterMs = 0, queueFull?: Set<string>): Promise<void> {
    const now = this.clock.now();
    const updated = entries.filter((e) => this.#outbox.has(e.id)).map((entry) => {
      const next = clone(OutboxEntrySchema, entry);
      next.attempts += 1;
      if (queueFull?.has(entry.id)) next.queueFullAttempts += 1;
      const backoff = Math.min(this.#retryMsMax, RETRY_MS_MIN * 2 ** Math.min(16, entry.attempts));
      next.nextAttemptAt = now + Math.max(
        retryAfterMs,
        backoff / 2 + randomInt(this.random, Math.max(1, Math.floor(backoff / 2))),
      );
      return next;
    });
    return this.#serial(() => this.#commitOutbox([], updated));
  }

  async #commitOutbox(done: string[], updated: OutboxEntry[]): Promise<void> {
    const live = done.filter((id) => this.#outbox.has(id));
    if (live.length === 0 && updated.length === 0) return;
    await this.#store.commit({ outboxDelete: live, outboxPut: updated });
    for (const id of live) this.#outbox.delete(id);
    for (const entry of updated) this.#outbox.set(entry.id, entry);
  }

  /** Earliest next attempt among outbox entries, or undefined when empty. */
  #nextDue(): number | undefined {
    let next: number | undefined;
    for (const entry of this.#outbox.values()) {
      if (next === undefined || entry.nextAttemptAt < next) next = entry.nextAttemptAt;
    }
    return next;
  }

  // ─── Receiving ────────────────────────────────────────────────────────────

  /** The lookup keys this device pulls: devices, pending invitations, and contacts it is primary for. */
  pullKeys(): { lookupKey: string; peer: PeerRecord }[] {
    const own = this.#identity?.deviceUid ?? "";
    const keys: { lookupKey: string; peer: PeerRecord }[] = [];
    for (const peer of [...this.#devices.values(), ...this.#peers.values()]) {
      if (!peer.myLookup) continue;
      if (
        peer.type === PeerType.CONTACT && peer.primaryDeviceUid !== "" &&
        peer.primaryDeviceUid !== own
      ) {
        continue; // a sibling is this contact's primary: it pulls, then syncs.
      }
      keys.push({ lookupKey: myLookupKey(peer), peer });
    }
    return keys;
  }

  /** The pulled lookup keys as one comparable string. */
  #pullSet(): string {
    return this.pullKeys().map((k) => k.lookupKey).sort().join(" ");
  }

  /**
   * Polls every relay of the identity once: pulls, processes, acks, until the
   * queues are empty (at most a bounded number of rounds). Resolves with how
   * many messages were accepted.
   */
  async pollOnce(signal?: AbortSignal): Promise<number> {
    let accepted = 0;
    for (const server of this.#identity?.servers ?? []) {
      accepted += await this.#pollServer(server, { timeoutMs: 0, signal });
    }
    return accepted;
  }

  async #pollServer(
    server: ServerCard,
    options: {
      timeoutMs: number;
      signal?: AbortSignal;
      /** Ends the request only (default `signal`); processing answers to `signal`. */
      requestSignal?: AbortSignal;
      deferAcks?: boolean;
    },
  ): Promise<number> {
    const { signal } = options;
    const limits = relayLimits(server);
    const timeoutMs = Math.min(options.timeoutMs, limits.longPollMsMax);
    let accepted = 0;
    for (let round = 0; round < POLL_ROUNDS_MAX; round++) {
      const chunks = this.#pullChunks(server, limits);
      if (chunks.length === 0) break;
      const started = this.clock.now();
      const wait = round === 0 ? timeoutMs : 0;
      // Several long polls at once, one per chunk: the first that brings anything ends the
      // others, so no queue waits behind another chunk's long poll.
      const together = wait > 0 && chunks.length > 1;
      const early = new AbortController();
      const requestSignal = options.requestSignal ?? signal;
      const poll = async (chunk: PullChunk, index: number): Promise<ChunkResult> => {
        const result = await this.#pollChunk(server, chunk, {
          // No more long polls at once than the relay takes from one client: the rest are
          // short polls, and what they bring ends the long polls early.
          timeoutMs: index < limits.longPollsPerClientMax ? wait : 0,
          signal,
          requestSignal: together
            ? (requestSignal ? AbortSignal.any([requestSignal, early.signal]) : early.signal)
            : requestSignal,
          limits,
        });
        if (together && result.messages > 0) early.abort();
        return result;
      };
      const results: ChunkResult[] = [];
      if (together) results.push(...await Promise.all(chunks.map(poll)));
      else {
        for (const chunk of chunks) {
          results.push(await poll(chunk, 0));
          if (signal?.aborted || this.#closed) return accepted;
        }
      }
      accepted += results.reduce((n, r) => n + r.accepted, 0);
      const messages = results.reduce((n, r) => n + r.messages, 0);
      const failure = results.find((r) => r.error)?.error;
      if (results.some((r) => r.answered)) this.#lastPollAt = this.clock.now();
      if (results.every((r) => r.answered && r.clean) && messages === 0) {
        const acked = results.reduce((n, r) => n + r.acksSent, 0);
        if (acked === 0) this.#quietPollAt.set(server.uid, started);
      }
      if (failure) {
        // A request too large for the relay goes again at once, in smaller chunks.
        const largest = Math.max(...chunks.map((c) => c.keys.length));
        const shrink = failure instanceof RelayRefused && failure.relayCode === "TOO_LARGE" &&
          largest > 1 && round < POLL_ROUNDS_MAX - 1;
        if (!shrink) throw failure;
        this.#pullChunkMax.set(server.uid, Math.floor(largest / 2));
        continue;
      }
      if (signal?.aborted || this.#closed) return accepted;
      if (messages === 0 && !this.#hasAcks(server.uid)) break;
      // Another round only to ack can wait for the next poll, unless an answer was full:
      // the relay may have held more back.
      if (options.deferAcks && !results.some((r) => r.full)) break;
    }
    return accepted;
  }

  /** The pulls and acks of one poll round, split to the relay's limits. */
  #pullChunks(server: ServerCard, limits: RelayLimits): PullChunk[] {
    const keys = this.pullKeys();
    const pending = this.#acks.get(server.uid);
    if (pending) {
      // Acks count only with a pull of their queue: those of queues no longer pulled go.
      const pulled = new Set(keys.map((k) => k.lookupKey));
      for (const queue of [...pending.keys()]) if (!pulled.has(queue)) pending.delete(queue);
    }
    const pullsMax = Math.min(
      limits.pullRequestsMax,
      this.#pullChunkMax.get(server.uid) ?? limits.pullRequestsMax,
    );
    const bytesMax = limits.requestBytesMax - REQUEST_OVERHEAD_BYTES;
    const chunks: PullChunk[] = [];
    let chunk: PullChunk | undefined;
    for (const key of keys) {
      const acks = pending?.get(key.lookupKey) ?? [];
      const bytes = PULL_BYTES + Math.min(acks.length, limits.acksPerRequestMax) * ACK_BYTES;
      if (
        !chunk || chunk.keys.length >= pullsMax || chunk.bytes + bytes > bytesMax ||
        (acks.length > 0 && chunk.acks >= limits.acksPerRequestMax)
      ) {
        chunk = { keys: [], acks: 0, bytes: 0 };
        chunks.push(chunk);
      }
      chunk.keys.push(key);
      chunk.bytes += bytes;
      chunk.acks += Math.min(acks.length, limits.acksPerRequestMax - chunk.acks);
    }
    return chunks;
  }

  #hasAcks(serverUid: string): boolean {
    for (const acks of this.#acks.get(serverUid)?.values() ?? []) if (acks.length > 0) return true;
    return false;
  }

  /**
   * One pull request: the chunk's queues with the acks waiting for them. Never
   * throws for the relay's sake: a transport failure or a refusal comes back
   * as the result's `error`, with the acks put back for the next request.
   */
  async #pollChunk(
    server: ServerCard,
    chunk: PullChunk,
    options: {
      timeoutMs: number;
      signal?: AbortSignal;
      requestSignal?: AbortSignal;
      limits: RelayLimits;
    },
  ): Promise<ChunkResult> {
    const { signal, limits } = options;
    const result: ChunkResult = {
      answered: false,
      clean: false,
      accepted: 0,
      messages: 0,
      acksSent: 0,
      full: false,
    };
    const now = this.clock.now();
    const pending = this.#acks.get(server.uid) ?? new Map<string, string[]>();
    this.#acks.set(server.uid, pending);
    const taken: [string, string[]][] = [];
    let budget = limits.acksPerRequestMax;
    for (const { lookupKey } of chunk.keys) {
      const acks = pending.get(lookupKey) ?? [];
      if (acks.length === 0 || budget === 0) continue;
      const sent = acks.slice(0, budget);
      budget -= sent.length;
      taken.push([lookupKey, sent]);
      if (sent.length === acks.length) pending.delete(lookupKey);
      else pending.set(lookupKey, acks.slice(sent.length));
    }
    const restore = () => {
      for (const [queue, acks] of taken) {
        pending.set(queue, [...acks, ...(pending.get(queue) ?? [])]);
      }
    };
    let tokens = this.#pullTokens.get(server.uid);
    if (tokens === undefined) this.#pullTokens.set(server.uid, tokens = new Map());
    const tokenOf = new Map<string, PullToken>();
    for (const { lookupKey } of chunk.keys) {
      const token = tokens.get(lookupKey);
      if (token === undefined) continue;
      if (token.expiresAt - PULL_TOKEN_MARGIN_MS > now) tokenOf.set(lookupKey, token);
      else tokens.delete(lookupKey);
    }
    // Each pull is signed (or MACed under its token) over this request's ephemeral key: good
    // in this request only.
    const signPulls = (ephemeralPublicKey: Uint8Array) =>
      Promise.all(chunk.keys.map(({ lookupKey, peer }) => {
        // Signatures are single-use: never sign two pulls of one key with one timestamp.
        const ts = Math.max(now, (this.#lastPullTs.get(lookupKey) ?? 0) + 1);
        this.#lastPullTs.set(lookupKey, ts);
        const token = tokenOf.get(lookupKey);
        if (token) return macPull({ server, token, now: ts, ephemeralPublicKey });
        return signPull({ server, lookup: peer.myLookup!, now: ts, ephemeralPublicKey });
      }));
    const acks = taken.flatMap(([, a]) => a);
    let answer: FromServerMessage;
    try {
      answer = await this.#request(server, async (ephemeralPublicKey) => ({
        pullRequests: await signPulls(ephemeralPublicKey),
        acks,
        timeoutMs: options.timeoutMs,
      }), { signal: options.requestSignal });
    } catch (e) {
      restore();
      if (!(e instanceof TransportError || e instanceof MeowError)) throw e;
      // Ended on purpose (stopped, or another chunk's long poll brought something): no failure.
      if (options.requestSignal?.aborted) return result;
      this.#health(server, "poll", "unreachable", e.message);
      result.error = e;
      return result;
    }
    const refusal = answer.errors.find((e) => e.messageIndex === 0 && e.lookupKey === "");
    if (refusal) {
      restore();
      result.error = this.#refused(server, "poll", refusal);
      return result;
    }
    result.answered = true;
    result.acksSent = acks.length;
    const inChunk = new Set(chunk.keys.map((k) => k.lookupKey));
    for (const token of answer.pullTokens) {
      if (inChunk.has(token.lookupKey)) tokens.set(token.lookupKey, token);
    }
    // A refused token (expired, revoked, a relay that lost its keys) costs nothing but a
    // signature: drop it and pull again at once, signed; no refusal to report.
    const tokenRefused = (e: ServerError) =>
      e.code === ErrorCode.BAD_LOOKUP_SIGNATURE && tokenOf.has(e.lookupKey);
    for (const e of answer.errors) if (tokenRefused(e)) tokens.delete(e.lookupKey);
    const retry = answer.errors.some(tokenRefused);
    const keyErrors = answer.errors.filter((e) => e.lookupKey !== "" && !tokenRefused(e));
    if (keyErrors.length > 0) {
      const detail = keyErrors.map((e) =>
        `${ErrorCode[e.code]} for queue ${e.lookupKey.slice(0, 8)}…: ${e.detail}`
      ).join("; ");
      this.#log("warn", `${this.#name} poll ${server.name || server.uid}: ${detail}`);
      this.#health(server, "poll", "refused", detail);
    } else {
      result.clean = true;
      this.#health(server, "poll", "ok", "");
    }
    result.messages = answer.chat.length;
    result.full = retry || answer.chat.length >= limits.pullMessagesMax;
    for (const packed of answer.chat) {
      if (signal?.aborted || this.#closed) return result;
      const outcome = await this.receive(packed);
      if (outcome.kind === "accepted") result.accepted++;
      if (outcome.kind === "deferred") continue;
      const queue = pending.get(packed.destination) ?? [];
      queue.push(packed.serverDeliveryUuid);
      pending.set(packed.destination, queue);
    }
    return result;
  }

  /** Records and reports a relay's refusal of a whole request; the error to surface. */
  #refused(server: ServerCard, request: RelayRequestKind, error: ServerError): RelayRefused {
    const code = ErrorCode[error.code] ?? String(error.code);
    const detail = `${code} (${error.detail})`;
    this.#log(
      "warn",
      `${this.#name} ${request} ${
        server.name || server.uid
      }: the relay refused the request: ${detail}`,
    );
    this.#health(server, request, "refused", detail);
    return new RelayRefused(
      `Relay ${server.name || server.uid} refused a ${request} request: ${detail}`,
      { relayCode: code, retryAfterMs: Number(error.retryAfterMs) },
    );
  }

  /** Moves a relay's health for one kind of request; a change is observed. */
  #health(
    server: ServerCard,
    request: RelayRequestKind,
    state: RelayHealth["state"],
    detail: string,
  ): void {
    const key = `${server.uid} ${request}`;
    const now = this.clock.now();
    const old = this.#relayHealth.get(key);
    const health: RelayHealth = {
      serverUid: server.uid,
      serverName: server.name,
      request,
      state,
      since: old?.state === state ? old.since : now,
      detail,
      refusals: (old?.refusals ?? 0) + (state === "refused" ? 1 : 0),
      dropped: old?.dropped ?? 0,
      lastOkAt: state === "ok" ? now : old?.lastOkAt ?? 0,
    };
    this.#relayHealth.set(key, health);
    if (old?.state !== state) {
      this.#observe({ kind: "relay", serverUid: server.uid, request, state, detail });
    }
  }

  /**
   * How each relay treated this device's last requests, per kind (`poll`,
   * `send`): whether they were accepted, refused (and why) or could not reach
   * it, and since when.
   */
  relayHealth(): RelayHealth[] {
    return [...this.#relayHealth.values()].map((h) => ({ ...h }));
  }

  /**
   * Processes one packed message in its own transaction: find the peer by
   * destination, verify, unseal, decrypt, route, commit. Bad input is
   * rejected with a typed error and changes nothing; other failures (a store
   * that cannot write) are thrown so the message is not acked.
   */
  receive(packed: PackedUserMessage): Promise<ReceiveOutcome> {
    return this.#serial(async () => {
      try {
        return await this.#transact(async (tx) => await this.#route(tx as KernelTx, packed));
      } catch (e) {
        if (e instanceof Deferred) return { kind: "deferred", reason: e.message };
        if (!(e instanceof MeowError)) throw e;
        this.#log(
          "info",
          `${this.#name} rejected a message for ${packed.destination.slice(0, 8)}…: ${e.message}`,
        );
        // A repeat is harmless; anything else is kept, so nothing is acked away unseen.
        const quarantined = !(e instanceof Replay);
        if (quarantined) await this.#quarantineOne(packed, e);
        this.#observe({ kind: "rejected", error: e, packed });
        return { kind: "rejected", error: e, quarantined };
      }
    });
  }

  /** Keeps a message that could not be opened (one commit), evicting the oldest past QUARANTINE_MAX. */
  async #quarantineOne(packed: PackedUserMessage, error: MeowError): Promise<void> {
    const record = create(QuarantineRecordSchema, {
      id: packed.serverDeliveryUuid || `local:${randomUuid(this.random)}`,
      queue: packed.destination,
      packed,
      errorCode: error.code,
      errorMessage: error.message,
      at: this.clock.now(),
    });
    const kept = this.#quarantine.filter((q) => q.id !== record.id);
    const evicted = kept.splice(0, Math.max(0, kept.length + 1 - QUARANTINE_MAX));
    if (this.#closed) throw new TypeError(`${this.#name}: the kernel is closed`);
    await this.#store.commit({
      quarantinePut: [record],
      quarantineDelete: evicted.map((q) => q.id),
    });
    kept.push(record);
    this.#quarantine = kept;
  }

  /**
   * The received messages that could not be verified or opened, oldest first
   * (at most {@linkcode QUARANTINE_MAX}): each with its delivery uuid, queue,
   * packed bytes, error and time. Kept on this device only.
   */
  quarantine(): QuarantineRecord[] {
    return this.#quarantine.map((q) => clone(QuarantineRecordSchema, q));
  }

  /** How many received messages sit in the quarantine. */
  quarantineCount(): number {
    return this.#quarantine.length;
  }

  async #route(tx: KernelTx, packed: PackedUserMessage): Promise<ReceiveOutcome> {
    const uid = this.#lookup.get(packed.destination);
    const peer = uid === undefined ? undefined : tx.peer(uid);
    if (!peer) {
      throw new UnknownDestination(
        `Cannot open message: no peer owns lookup key ${packed.destination.slice(0, 12)}…`,
      );
    }
    if (isPending(peer)) {
      // No identity key to check yet: the answer is verified once decoded (finalizeInvitation).
      const frame = await openFrame(peer.myEncryption!.privateKey, packed.payload);
      if (frame.kind === FrameKind.RATCHET) {
        // A ratchet message overtook the answer that completes this invitation: keep it on the relay.
        throw new Deferred(`message for invitation ${peer.uid} arrived before its answer`);
      }
      const pairing = peer.pendingPairing;
      let safetyCode = "";
      const done = await finalizeInvitation(peer, packed, {
        random: this.random,
        now: tx.now,
        // An end-to-end pairing: only the holder of the link or code can have made this MAC.
        verifyMac: pairing && ((answerCard, mac) => {
          const pending = pendingOf(pairing);
          safetyCode = answerProof(pending, answerCard).safetyCode;
          return this.#pairingProtocol.verifyAnswerMac(pending.keys, {
            cardPost: pending.cardPost,
            answerCard,
            mac,
          });
        }),
      });
      done.pendingPairing = undefined;
      done.safetyCode = safetyCode;
      done.updatedBy = this.deviceUid();
      tx.putPeer(done);
      await tx.emit("peer.updated", { peer: done, created: true, origin: "local" });
      return { kind: "accepted", peerUid: done.uid, type: "invitation" };
    }
    assertUsablePeer(peer);
    // Signature first, then the seal; a repeated invitation answer is a Replay (unpack).
    const opened = await unpack(peer, packed, {
      random: this.random,
      now: tx.now,
      headerInClear: this.#sealing.headerInClear,
    });
    const { message, ratchet, header } = opened;
    tx.afterCommit(() =>
      this.#observe({ kind: "inbound", peerUid: peer.uid, message, packed, header })
    );
    const next = clone(PeerRecordSchema, peer);
    next.ratchet = ratchet;
    tx.putPeer(next);
    if (peer.blocked) return { kind: "accepted", peerUid: peer.uid, type: "blocked" };
    if (message.type !== HELLO_TYPE) {
      const owner = this.#owners.get(message.type);
      if (!owner?.receive) {
        throw new UnknownType(
          `Cannot route message of type "${message.type}" from peer "${peer.name}": no plugin owns it`,
        );
      }
      await owner.receive(message, { tx, peer: next });
    }
    return { kind: "accepted", peerUid: peer.uid, type: message.type };
  }

  // ─── Running ──────────────────────────────────────────────────────────────

  /** Starts the poll loop of every relay and the outbox loop, on the clock port. */
  start(): void {
    if (this.#running) return;
    if (this.#closed) throw new TypeError(`${this.#name}: the kernel is closed`);
    const controller = new AbortController();
    this.#running = controller;
    const signal = controller.signal;
    for (const server of this.#identity?.servers ?? []) this.#startPolling(server);
    this.#loops.push(this.#outboxLoop(signal));
    for (const plugin of this.#plugins) {
      if (plugin.run) this.#loops.push(plugin.run(this.#hostFor(plugin), signal).catch(() => {}));
    }
  }

  /** Starts the poll loop of `server` if the kernel runs and it has none yet. */
  #startPolling(server: ServerCard): void {
    const running = this.#running;
    if (!running || this.#polled.has(server.uid)) return;
    this.#polled.add(server.uid);
    this.#loops.push(this.#pollLoop(server, running.signal));
  }

  async #pollLoop(server: ServerCard, signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      const restart = new AbortController();
      if (this.#longPollMs > 0) this.#pollRestarts.set(server.uid, restart);
      const waiting = AbortSignal.any([signal, restart.signal]);
      let retryAfterMs = 0;
      try {
        // The relay applies acks before it reads the queues: the next poll carries them.
        await this.#pollServer(server, {
          timeoutMs: this.#longPollMs,
          signal,
          requestSignal: waiting,
          deferAcks: true,
        });
        failures = 0;
      } catch (e) {
        if (signal.aborted) return;
        if (!restart.signal.aborted) {
          if (!(e instanceof TransportError || e instanceof MeowError)) {
            this.#log(
              "error",
              `${this.#name} poll ${server.name || server.uid} failed: ${(e as Error).stack}`,
            );
          }
          if (e instanceof RelayRefused) retryAfterMs = e.retryAfterMs;
          failures++;
        }
      } finally {
        this.#pollRestarts.delete(server.uid);
      }
      const backoff = failures === 0
        ? this.#pollIntervalMs
        : Math.min(this.#retryMsMax, this.#pollIntervalMs * 2 ** Math.min(8, failures - 1));
      const wait = Math.max(backoff, retryAfterMs);
      try {
        if (!restart.signal.aborted) await this.clock.sleep(wait, signal);
      } catch {
        return;
      }
    }
  }

  async #outboxLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.flushOutbox(signal);
      } catch (e) {
        if (signal.aborted) return;
        this.#log("error", `${this.#name} outbox failed: ${(e as Error).stack}`);
      }
      const due = this.#nextDue();
      const now = this.clock.now();
      const wait = due === undefined ? this.#retryMsMax : Math.max(1, due - now);
      const wake = new AbortController();
      this.#flushWake = () => wake.abort();
      try {
        // One signal for both: the kernel may have stopped while the flush ran.
        await this.clock.sleep(wait, AbortSignal.any([signal, wake.signal]));
      } catch {
        // woken: new entries were queued, or the kernel stops.
      } finally {
        this.#flushWake = undefined;
      }
    }
  }

  /** Stops the loops and waits for them; committed state stays committed. */
  async stop(): Promise<void> {
    const running = this.#running;
    if (!running) return;
    this.#running = undefined;
    running.abort(new TypeError("stopped"));
    await Promise.allSettled(this.#loops);
    this.#loops = [];
    this.#polled.clear();
    await this.#queue;
  }

  /** Stops and closes the store. */
  async close(): Promise<void> {
    await this.stop();
    await this.#queue;
    this.#closed = true;
    await this.#store.close();
  }

  /**
   * Drops this kernel at once, as a crash would: loops are aborted, nothing
   * more is committed, the store is left as it is (not closed).
   */
  crash(): void {
    this.#closed = true;
    this.#running?.abort(new TypeError("crashed"));
    this.#running = undefined;
  }
}

// ─── The transaction ────────────────────────────────────────────────────────

interface TxPorts {
  now: number;
  identity: IdentityRecord | undefined;
  peer(uid: string): PeerRecord | undefined;
  peers(): PeerRecord[];
  devices(): PeerRecord[];
  store: Store;
  random: Random;
  plugins: readonly Plugin[];
  deviceUid: string;
  observe: (observation: KernelObservation) => void;
  sealing: { pad?: boolean; checkSize?: boolean; headerInClear?: boolean };
}

/** The sequence part of an outbox id (0 for ids of another form). */
function outboxSeqOf(id: string): number {
  const seq = Number.parseInt(id.split(".")[1] ?? "", 36);
  return Number.isSafeInteger(seq) ? seq : 0;
}

/** Reports a peer record's private key material (and a card's bytes) as secrets. */
function observeSecrets(
  observe: (observation: KernelObservation) => void,
  peer: PeerRecord,
  card?: Uint8Array,
): void {
  const secret = (bytes: Uint8Array | undefined, what: string) => {
    if (bytes && bytes.length > 0) observe({ kind: "secret", bytes, what });
  };
  secret(peer.myIdentity?.privateKey, "identity private key");
  secret(peer.myEncryption?.privateKey, "encryption private key");
  secret(peer.myLookup?.privateKey, "lookup private key");
  secret(peer.mySymKey, "symmetric key");
  secret(peer.pendingCard?.drRootKey, "ratchet root key");
  secret(peer.pendingRatchetKey?.privateKey, "ratchet private key");
  secret(card, "contact card");
}

/** The stored form of a pending pairing. */
function pendingRecord(pending: PendingPairing): PendingPairingRecord {
  return create(PendingPairingSchema, {
    kind: pending.keys.kind,
    macKey: pending.keys.macKey,
    safetyKey: pending.keys.safetyKey,
    cardPost: pending.cardPost,
  });
}

/** A pending pairing from its stored form (the card key is not kept: the card is out). */
function pendingOf(record: PendingPairingRecord): PendingPairing {
  return {
    keys: {
      kind: record.kind as PendingPairing["keys"]["kind"],
      cardKey: new Uint8Array(),
      macKey: record.macKey,
      safetyKey: record.safetyKey,
    },
    cardPost: record.cardPost,
  };
}

function messageKey(peerUid: string, uuid: string): string {
  return `${peerUid}\u0000${uuid}`;
}

class KernelTx implements Tx {
  readonly now: number;
  readonly #kernel: Kernel;
  readonly #ports: TxPorts;
  #identity: IdentityRecord | undefined;
  #identityChanged = false;
  readonly #peers = new Map<string, PeerRecord>();
  readonly #messages = new Map<string, DbMessage>();
  readonly #seen = new Set<string>();
  readonly #outbox: OutboxEntry[] = [];
  readonly #outboxDelete: string[] = [];
  readonly #after: (() => void)[] = [];
  #emitDepth = 0;

  constructor(kernel: Kernel, ports: TxPorts) {
    this.#kernel = kernel;
    this.#ports = ports;
    this.now = ports.now;
    this.#identity = ports.identity;
  }

  identity(): IdentityRecord {
    if (!this.#identity) throw new TypeError("This device has no identity yet");
    return this.#identity;
  }

  putIdentity(identity: IdentityRecord): void {
    this.#identity = clone(IdentityRecordSchema, identity);
    this.#identityChanged = true;
  }

  peer(uid: string): PeerRecord | undefined {
    const peer = this.#peers.get(uid) ?? this.#ports.peer(uid);
    return peer && clone(PeerRecordSchema, peer);
  }

  #all(type: PeerType): PeerRecord[] {
    const base = type === PeerType.DEVICE ? this.#ports.devices() : this.#ports.peers();
    const merged = new Map(base.map((p) => [p.uid, p]));
    for (const [uid, peer] of this.#peers) if (peer.type === type) merged.set(uid, peer);
    return [...merged.values()].filter((p) => !isPending(p)).map((p) => clone(PeerRecordSchema, p));
  }

  peers(): PeerRecord[] {
    return this.#all(PeerType.CONTACT);
  }

  devices(): PeerRecord[] {
    return this.#all(PeerType.DEVICE);
  }

  putPeer(peer: PeerRecord): void {
    if (peer.type !== PeerType.CONTACT && peer.type !== PeerType.DEVICE) {
      throw new TypeError(`Cannot store peer ${peer.uid}: its type is neither contact nor device`);
    }
    if (!this.#peers.has(peer.uid) && !this.#ports.peer(peer.uid)) {
      observeSecrets(this.#ports.observe, peer);
    }
    this.#peers.set(peer.uid, clone(PeerRecordSchema, peer));
  }

  async message(peerUid: string, uuid: string): Promise<DbMessage | undefined> {
    const staged = this.#messages.get(messageKey(peerUid, uuid));
    if (staged) return clone(DbMessageSchema, staged);
    return await this.#ports.store.getMessage(peerUid, uuid);
  }

  async messages(peerUid: string): Promise<DbMessage[]> {
    const stored = await this.#ports.store.listMessages(peerUid);
    const merged = new Map(stored.map((m) => [m.message!.status!.uuid, m]));
    for (const m of this.#messages.values()) {
      if (m.peerUid === peerUid) merged.set(m.message!.status!.uuid, clone(DbMessageSchema, m));
    }
    return [...merged.values()].sort((a, b) =>
      a.storedAt - b.storedAt || (a.message!.status!.uuid < b.message!.status!.uuid ? -1 : 1)
    );
  }

  putMessage(message: DbMessage): void {
    const uuid = message.message?.status?.uuid;
    if (!message.peerUid || !uuid) {
      throw new TypeError("Cannot store a message without peer uid and uuid");
    }
    this.#messages.set(messageKey(message.peerUid, uuid), clone(DbMessageSchema, message));
  }

  async markSeen(id: string): Promise<boolean> {
    if (this.#seen.has(id)) return false;
    if (await this.#ports.store.isSeen(id)) return false;
    this.#seen.add(id);
    return true;
  }

  async send(peerUid: string, message: UserMessage): Promise<void> {
    const peer = this.peer(peerUid);
    if (!peer) throw new TypeError(`Cannot send: no peer with uid ${peerUid}`);
    for (const plugin of this.#ports.plugins) {
      if (plugin.outbound && await plugin.outbound(message, { tx: this, peer })) return;
    }
    await this.sendDirect(peerUid, message);
  }

  async sendDirect(peerUid: string, message: UserMessage): Promise<void> {
    const peer = this.peer(peerUid);
    if (!peer) throw new TypeError(`Cannot send: no peer with uid ${peerUid}`);
    assertUsablePeer(peer);
    const { packed, ratchet } = await pack(peer, message, {
      random: this.#ports.random,
      now: this.now,
      ...this.#ports.sealing,
    });
    this.afterCommit(() => this.#ports.observe({ kind: "outbound", peerUid, message, packed }));
    peer.ratchet = ratchet;
    this.putPeer(peer);
    this.queuePacked(peer, packed, message.status?.uuid ?? "");
  }

  /** Queues an already packed message to the peer's home relay. */
  queuePacked(peer: PeerRecord, packed: PackedUserMessage, messageUuid: string): void {
    const server = peer.contact?.pullServers[0];
    if (!server) throw new Malformed(`Cannot send to peer "${peer.name}": its card names no relay`);
    this.#outbox.push(create(OutboxEntrySchema, {
      id: this.#kernel.nextOutboxId(this.now),
      server,
      packed,
      attempts: 0,
      nextAttemptAt: this.now,
      queuedAt: this.now,
      messageUuid,
      peerUid: peer.uid,
    }));
  }

  /** Stages the removal of an outbox entry (a message the relay will never take). */
  deleteOutbox(id: string): void {
    this.#outboxDelete.push(id);
  }

  async emit<E extends KernelEventName>(event: E, payload: KernelEvents[E]): Promise<void> {
    if (++this.#emitDepth > 8) {
      throw new RangeError(`Event "${event}" re-emitted more than 8 levels deep`);
    }
    try {
      for (const plugin of this.#ports.plugins) {
        const hook = plugin.on?.[event] as
          | ((p: KernelEvents[E], tx: Tx) => Promise<void> | void)
          | undefined;
        await hook?.(payload, this);
      }
    } finally {
      this.#emitDepth--;
    }
  }

  afterCommit(fn: () => void): void {
    this.#after.push(fn);
  }

  afterCommitFns(): (() => void)[] {
    return this.#after;
  }

  batch(): Batch {
    const peers = [...this.#peers.values()];
    return {
      identity: this.#identityChanged ? this.#identity : undefined,
      peers: peers.filter((p) => p.type === PeerType.CONTACT),
      devices: peers.filter((p) => p.type === PeerType.DEVICE),
      messages: [...this.#messages.values()],
      outboxPut: this.#outbox,
      outboxDelete: this.#outboxDelete,
      seen: [...this.#seen].map((id) => ({ id, at: this.now })),
    };
  }

  /** The kernel this transaction belongs to (for plugins' internal helpers). */
  kernel(): Kernel {
    return this.#kernel;
  }
}

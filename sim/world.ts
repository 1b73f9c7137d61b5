/**
 * A simulated world: relays (the production server core), devices (production
 * kernels with production plugins over real stores), the network between
 * them, and the scenario's steps, all on one virtual clock and one seed.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { decode, encode } from "../proto/codec.ts";
import {
  DeviceSyncPayloadSchema,
  PackedUserMessageSchema,
  type PeerRecord,
  PeerType,
  type ServerCard,
  UserMessageSchema,
} from "../proto/gen/meow_pb.ts";
import {
  IMPORTED_KEYS_MAX_DEFAULT,
  randomFloat,
  randomInt,
  SeededRandom,
  setImportedKeysMax,
} from "../kernel/crypto/mod.ts";
import {
  Kernel,
  type KernelObservation,
  type KernelOptions,
  type PairingOffer,
} from "../kernel/kernel.ts";
import type { JoinInput, PairingProtocol } from "../kernel/pairing_flow.ts";
import type { Plugin, PluginInput } from "../kernel/plugin.ts";
import type { Store } from "../kernel/ports.ts";
import { CHAT_API } from "../plugins/chat/mod.ts";
import {
  type Backend,
  MemoryBackend,
  type ObservedEvent,
  resolveLimits,
  ServerCore,
} from "../server/mod.ts";
import { adversaryBackend } from "./adversary.ts";
import { corruptingBackend, SimTransport } from "./network.ts";
import { defaultPlugins, DEVICE_SYNC_API } from "./plugins.ts";
import type { PairingVia, Scenario, Step } from "./scenario.ts";
import type { Scheduler } from "./scheduler.ts";
import { openStore, type StorageKind } from "./storage.ts";
import { VirtualClock } from "./virtual_clock.ts";
import { hex } from "./state.ts";

/**
 * Imported keys per simulated device each key cache makes room for: the
 * device's own keys and, per peer, its identity, lookup and encryption keys
 * and the peer's public ones, with room for a dozen peers.
 */
const IMPORTED_KEYS_PER_DEVICE = 32;
/** How long a pairing step waits for its `from` device to finish joining, in virtual ms. */
const PAIR_READY_WAIT_MS_MAX = 120_000;

/** One message a device accepted for sending. */
export interface SentRecord {
  uuid: string;
  /** `user/device` that sent it. */
  from: string;
  fromUser: string;
  toUser: string;
  peerUid: string;
  text: string;
  /** Virtual ms (scheduler time) when it was accepted. */
  at: number;
  /** Whether the sending device was the contact's primary. */
  fromPrimary: boolean;
}

/** One arrival of a message in a device's store. */
export interface Arrival {
  device: string;
  uuid: string;
  at: number;
}

/** What happened on the wire and in the pipelines, for the checkers. */
export interface Recording {
  sent: Map<string, SentRecord>;
  /** uuid → device → first time it was stored there. */
  arrivals: Map<string, Map<string, number>>;
  /**
   * Rejections other than repeats, by device: whether the kernel quarantined
   * it, and whether it was a copy the network corrupted on purpose.
   */
  rejections: {
    device: string;
    code: string;
    detail: string;
    quarantined: boolean;
    deliberate: boolean;
  }[];
  /** Delivery uuids of the copies the network corrupted on purpose (`network: { corrupt }`). */
  corrupted: Set<string>;
  /** Message uuid → hex of the signatures of its packed copies (to find one in a quarantine). */
  packedSignatures: Map<string, Set<string>>;
  /** Root private keys found in bytes that left their device. */
  rootLeaks: { device: string; where: string }[];
  /** Sent texts found in bytes a relay saw or stored. */
  serverLeaks: { text: string; relay: string }[];
  /** Packed messages a contact accepted: receiving device, peer uid, signer identity key (hex). */
  contactInbound: { device: string; peerUid: string; identityKey: string; ratchetKeys: string }[];
  /** Times each device was offline, crashed or partitioned: [from, to). */
  downtime: Map<string, [number, number][]>;
  /** Sync payloads sent, forwards sent. */
  counters: { syncPayloads: number; forwards: number; chat: number };
  /** Steps (and chatter sends) the devices refused, e.g. a send before a pairing completed. */
  refused: { at: number; step: string; error: string }[];
  /**
   * Relay refusals as the kernels reported them: every change of a device's
   * state with a relay, per request kind, and every message a relay will never take.
   */
  relayEvents: RelayEvent[];
  /** Every public key a hostile relay made (hex): no device may end up holding one. */
  adversaryKeys: Set<string>;
  /** traffic_blind: what the relays stored, and what the devices know of each stored message. */
  traffic: TrafficRecording;
}

/** What traffic_blind reads: stored messages, joined to the devices' observations by signature. */
export interface TrafficRecording {
  /** Every packed message a relay stored, as it stored it. */
  stored: { relay: string; destination: string; payload: Uint8Array; signature: string }[];
  /** Signature (hex) → whether it was packed for a sibling device or for a contact. */
  kindOf: Map<string, "device" | "contact">;
  /** Signature (hex) → its ratchet session: destination and the sending ratchet key (hex). */
  sessionOf: Map<string, string>;
}

/** One relay health change a device reported (see `KernelObservation` kind `relay`). */
export interface RelayEvent {
  at: number;
  device: string;
  relay: string;
  request: string;
  state: string;
  detail: string;
}

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

const HEX = hex;

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
  /** Conversation uid → its `userA|userB` (the index {@linkcode World.contactOf} reads). */
  readonly #conversationOf = new Map<string, string>();
  /** Relay → last time it stored a message (scheduler ms). */
  readonly lastStoredAt = new Map<string, number>();
  readonly #options: WorldOptions;
  #backends: Backend[] = [];
  #textIndex = new Map<number, { text: string; encoded: Uint8Array }[]>();
  /** First two bytes of every watched text, as a 64 Ki bitmap. */
  #textPairs = new Uint8Array(65536);
  /** The expectations this run checks: the recording keeps only what they read. */
  readonly #expects: Set<string>;

  private constructor(options: WorldOptions) {
    this.#options = options;
    this.scenario = options.scenario;
    this.#expects = new Set(options.scenario.expect.map((e) => e.name));
    this.scheduler = options.scheduler;
    this.storage = options.storage ?? "memory";
    this.clock = new VirtualClock(options.scheduler, { epochMs: options.epochMs });
    this.seedRandom = new SeededRandom(options.seed);
    this.deviceRandom = this.seedRandom.fork("devices");
    this.networkRandom = this.seedRandom.fork("network");
    this.scenarioRandom = this.seedRandom.fork("scenario");
    this.recording = {
      sent: new Map(),
      arrivals: new Map(),
      rejections: [],
      corrupted: new Set(),
      packedSignatures: new Map(),
      rootLeaks: [],
      serverLeaks: [],
      contactInbound: [],
      downtime: new Map(),
      counters: { syncPayloads: 0, forwards: 0, chat: 0 },
      refused: [],
      relayEvents: [],
      adversaryKeys: new Set(),
      traffic: { stored: [], kindOf: new Map(), sessionOf: new Map() },
    };
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
        world.#relaySaw(name, event.kind, event.bytes);
        options.relayObserved?.(name, event);
      };
      world.relays.set(core.card().uid, core);
      world.relaysByName.set(name, core);
    }
    for (const user of world.scenario.users) {
      for (const name of user.devices) {
        const device = new SimDevice(world, user.name, name);
        world.devices.set(device.ref, device);
        device.transport = new SimTransport({
          endpoint: device,
          relays: world.relays,
          scheduler: world.scheduler,
          network: world.scenario.network,
          random: world.networkRandom.fork(device.ref),
          tap: (ref, _server, body) => world.#leftDevice(ref, body, "wire"),
          trace: options.trace,
          track: (p) => world.scheduler.track(p),
        });
        device.store = await openStore(world.storage, {
          folder: options.folder,
          ref: device.ref,
          track: (p) => world.scheduler.track(p),
        });
        await world.#boot(device);
      }
      const first = world.devices.get(`${user.name}/${user.devices[0]}`)!;
      await first.live().createIdentity({
        nickname: user.name,
        deviceName: first.name,
        servers: [world.home().card()],
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

  async #boot(device: SimDevice): Promise<void> {
    const plugins: PluginInput[] = [
      ...defaultPlugins(),
      this.#probe(device),
      ...(this.#options.extraPlugins?.(device.ref) ?? []),
    ];
    device.kernel = await Kernel.open({
      store: device.store!,
      clock: this.clock,
      random: device.random,
      transport: device.transport,
      plugins,
      name: device.ref,
      pollIntervalMs: this.scenario.pollIntervalMs,
      longPollMs: 0,
      observe: (o) => this.#observed(device, o),
      pairingProtocol: this.#options.pairingProtocol,
      sealing: this.#options.sealing,
    });
    if (device.kernel.hasIdentity() && device.kernel.identity().uid !== "") {
      device.pairedAt ??= this.scheduler.now;
    }
  }

  /** The sim's own instrument: records when each message lands in each device's store. */
  #probe(device: SimDevice): Plugin {
    return {
      name: "sim_probe",
      on: {
        "message.stored": ({ message }, tx) => {
          const uuid = message.message?.status?.uuid ?? "";
          tx.afterCommit(() => {
            const at = this.scheduler.now;
            let byDevice = this.recording.arrivals.get(uuid);
            if (!byDevice) this.recording.arrivals.set(uuid, byDevice = new Map());
            if (!byDevice.has(device.ref)) byDevice.set(device.ref, at);
          });
        },
        "identity.updated": (_p, tx) => {
          tx.afterCommit(() => {
            if (device.kernel?.identity().uid) device.pairedAt ??= this.scheduler.now;
          });
        },
      },
    };
  }

  /** A trace line for a user message entering or leaving a device's pipeline. */
  #traceMessage(
    device: SimDevice,
    o: Exclude<KernelObservation, { kind: "relay" | "secret" }>,
  ): void {
    if (o.kind === "rejected") {
      this.#options.trace({ kind: "msg.rejected", device: device.ref, code: o.error.code });
      return;
    }
    let kind = o.message.type;
    if (kind === "device_sync") {
      try {
        kind = `sync:${decode(DeviceSyncPayloadSchema, o.message.appdata).syncType}`;
      } catch {
        kind = "sync:?";
      }
    }
    this.#options.trace({
      kind: o.kind === "outbound" ? "msg.out" : "msg.in",
      device: device.ref,
      peer: o.peerUid,
      type: kind,
      uuid: o.message.status?.uuid ?? "",
      queue: o.packed.destination.slice(0, 12),
    });
  }

  #observed(device: SimDevice, o: KernelObservation): void {
    if (o.kind === "relay") {
      const relay = this.relays.get(o.serverUid)?.card().name ?? o.serverUid;
      this.recording.relayEvents.push({
        at: this.scheduler.now,
        device: device.ref,
        relay,
        request: o.request,
        state: o.state,
        detail: o.detail,
      });
      this.#options.trace({
        kind: "relay.health",
        device: device.ref,
        relay,
        request: o.request,
        state: o.state,
      });
      return;
    }
    if (o.kind === "secret") {
      // server_blind: key material must never appear in what a relay saw or stored either.
      this.#watchBytes(o.bytes, `${o.what} of ${device.ref}`);
      return;
    }
    this.#traceMessage(device, o);
    if (o.kind === "rejected") {
      if (o.error.code !== "Replay") {
        const from = device.kernel?.pullKeys().find((k) => k.lookupKey === o.packed.destination)
          ?.peer;
        const peer = from
          ? ` (from ${from.type === PeerType.DEVICE ? "device" : "contact"} "${from.name}", ` +
            `conversation ${from.uid})`
          : "";
        this.recording.rejections.push({
          device: device.ref,
          code: o.error.code,
          detail: `${o.error.message}${peer}`,
          quarantined: true,
          deliberate: this.recording.corrupted.has(o.packed.serverDeliveryUuid),
        });
      }
      return;
    }
    if (o.kind === "outbound" && this.#expects.has("traffic_blind")) {
      const peer = device.kernel?.peer(o.peerUid);
      const kind = peer?.type === PeerType.DEVICE ? "device" : "contact";
      this.recording.traffic.kindOf.set(HEX(o.packed.signature), kind);
    }
    if (o.kind === "inbound" && this.#expects.has("traffic_blind")) {
      const session = `${o.packed.destination}|${HEX(o.header.subarray(1, 33))}`;
      this.recording.traffic.sessionOf.set(HEX(o.packed.signature), session);
    }
    if (o.kind === "outbound") {
      if (o.message.type === "device_sync") this.recording.counters.syncPayloads++;
      if (o.message.type === "chat") this.recording.counters.chat++;
      const uuid = o.message.status?.uuid ?? "";
      const signatures = this.recording.packedSignatures.get(uuid) ?? new Set<string>();
      signatures.add(HEX(o.packed.signature));
      this.recording.packedSignatures.set(uuid, signatures);
      if (this.#expects.has("root_key_private")) {
        this.#leftDevice(device.ref, encode(UserMessageSchema, o.message), "plaintext");
      }
      return;
    }
    // inbound: what a contact accepted from which identity key and ratchet.
    if (!this.#expects.has("contacts_blind")) return;
    const peer = device.kernel?.peer(o.peerUid);
    if (peer?.type === PeerType.CONTACT && peer.contact) {
      this.recording.contactInbound.push({
        device: device.ref,
        peerUid: o.peerUid,
        identityKey: HEX(peer.contact.identityPublicKey),
        ratchetKeys: HEX(o.header.subarray(1, 33)),
      });
    }
  }

  /** root_key_private: the sending device's root private key must never be in what it sends. */
  #leftDevice(ref: string, bytes: Uint8Array, where: string): void {
    if (!this.#expects.has("root_key_private")) return;
    const device = this.devices.get(ref);
    if (!device) return;
    // The root key never changes on a device: read it once (identity() copies the record).
    if (device.rootKey === undefined && device.kernel?.hasIdentity()) {
      device.rootKey = device.kernel.identity().root?.privateKey ?? null;
    }
    const root = device.rootKey;
    if (root && root.length === 32 && indexOf(bytes, root) >= 0) {
      this.recording.rootLeaks.push({ device: ref, where });
    }
  }

  /** server_blind: no sent text in any byte a relay saw or stored. */
  #relaySaw(relay: string, kind: string, bytes: Uint8Array): void {
    if (kind === "stored") this.lastStoredAt.set(relay, this.scheduler.now);
    if (kind === "stored" && bytes.length > 0 && this.#expects.has("traffic_blind")) {
      const { destination, payload, signature } = decode(PackedUserMessageSchema, bytes);
      this.recording.traffic.stored.push({
        relay,
        destination,
        payload,
        signature: HEX(signature),
      });
    }
    if (this.#textIndex.size === 0 || bytes.length < 4) return;
    const pairs = this.#textPairs;
    for (let i = 0; i + 4 <= bytes.length; i++) {
      // Most positions fail on their first two bytes: an array lookup, before any map lookup.
      if (pairs[(bytes[i] << 8) | bytes[i + 1]] === 0) continue;
      const word =
        ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0;
      const texts = this.#textIndex.get(word);
      if (!texts) continue;
      for (const { text, encoded } of texts) {
        if (indexOf(bytes.subarray(i, i + encoded.length), encoded) === 0) {
          this.recording.serverLeaks.push({ text, relay });
        }
      }
    }
  }

  /** Registers a sent text for the server_blind scan (texts under 4 bytes match by chance). */
  #watchText(text: string): void {
    this.#watchBytes(new TextEncoder().encode(text), text);
  }

  /** Registers bytes (a text, a key, a card) the relay must never see, under `label`. */
  #watchBytes(encoded: Uint8Array, label: string): void {
    if (!this.#expects.has("server_blind")) return;
    if (encoded.length < 4) return;
    this.#textPairs[(encoded[0] << 8) | encoded[1]] = 1;
    const key = ((encoded[0] << 24) | (encoded[1] << 16) | (encoded[2] << 8) | encoded[3]) >>> 0;
    const list = this.#textIndex.get(key) ?? [];
    if (!list.some((t) => t.text === label)) list.push({ text: label, encoded: encoded.slice() });
    this.#textIndex.set(key, list);
  }

  #contacts: Map<string, string[]> | undefined;
  #contactsFor = -1;

  /** The users `user` has a conversation with, sorted (recomputed when a conversation is added). */
  #contactsOf(user: string): string[] {
    if (!this.#contacts || this.#contactsFor !== this.conversations.size) {
      this.#contacts = new Map();
      for (const key of this.conversations.keys()) {
        const [a, b] = key.split("|");
        this.#contacts.set(a, [...(this.#contacts.get(a) ?? []), b]);
        this.#contacts.set(b, [...(this.#contacts.get(b) ?? []), a]);
      }
      for (const list of this.#contacts.values()) list.sort();
      this.#contactsFor = this.conversations.size;
    }
    return this.#contacts.get(user) ?? [];
  }

  /** The user on the other side of conversation `peerUid` as `ref` knows it ("" if none). */
  contactOf(ref: string, peerUid: string): string {
    const key = this.#conversationOf.get(peerUid);
    if (key === undefined) return "";
    const [a, b] = key.split("|");
    const user = ref.split("/")[0];
    return a === user ? b : a;
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

  #down(device: SimDevice, from: number, to: number): void {
    const list = this.recording.downtime.get(device.ref) ?? [];
    list.push([from, to]);
    this.recording.downtime.set(device.ref, list);
  }

  #downSince = new Map<string, number>();

  // ─── Steps ────────────────────────────────────────────────────────────────

  /** Schedules every step of the scenario, after the pairings of generated `pair: all` groups. */
  scheduleSteps(): void {
    for (const user of this.scenario.users) {
      if (!user.generated?.pairAll) continue;
      const first = this.device(`${user.name}/${user.devices[0]}`);
      for (const other of user.devices.slice(1)) {
        const device = this.device(`${user.name}/${other}`);
        const step: Step = {
          kind: "pair",
          user: user.name,
          from: first.name,
          to: device.name,
          via: "link",
          atMs: 0,
          index: -1,
        };
        this.scheduler.schedule(
          0,
          () => this.#track(this.#pair(first, device, "link"), step),
          `pair ${device.ref}`,
        );
      }
    }
    for (const step of this.scenario.steps) {
      this.scheduler.schedule(
        step.atMs,
        () => this.#track(this.#run(step), step),
        `step ${step.index} ${step.kind}`,
      );
    }
  }

  /**
   * Follows a step's work: its failure is recorded as a refused step. A
   * pairing waits on the network (later events), which the scheduler must
   * not wait for within one event: it is counted instead, and the run is not
   * quiescent while one is under way.
   */
  #track(work: Promise<void>, step: Step): Promise<void> {
    const waitsOnNetwork = step.kind === "pair" || step.kind === "invite" ||
      step.kind === "invite_group";
    if (waitsOnNetwork) {
      this.#pairings++;
      work = work.finally(() => this.#pairings--);
    }
    const followed = work.catch((e) => {
      this.recording.refused.push({
        at: this.scheduler.now,
        step: `steps[${step.index}] ${step.kind}`,
        error: String((e as Error).message),
      });
      this.#options.trace({
        kind: "step.error",
        step: step.index,
        error: String((e as Error).message),
      });
    });
    return waitsOnNetwork ? followed : this.scheduler.track(followed);
  }

  /** Pairing steps under way (they wait on the network). */
  #pairings = 0;

  async #run(step: Step): Promise<void> {
    this.#options.trace({ kind: "step", step: step.index, action: step.kind });
    switch (step.kind) {
      case "invite":
        return await this.#invite(this.device(step.from), this.device(step.to), step.via);
      case "invite_group":
        return await this.#inviteGroup(step.from, step.to, step.peers, step.via);
      case "pair":
        return await this.#pair(
          this.device(`${step.user}/${step.from}`),
          this.device(`${step.user}/${step.to}`),
          step.via,
        );
      case "offline": {
        const d = this.device(step.device);
        if (d.online) this.#downSince.set(d.ref, this.scheduler.now);
        d.online = false;
        return;
      }
      case "online": {
        const d = this.device(step.device);
        if (!d.online) this.#down(d, this.#downSince.get(d.ref) ?? 0, this.scheduler.now);
        d.online = true;
        return;
      }
      case "crash":
        return await this.crash(this.device(step.device));
      case "restart":
        return await this.restart(this.device(step.device));
      case "send":
        for (let k = 0; k < step.count; k++) {
          const text = step.count > 1 ? `${step.text} #${k + 1}` : step.text;
          const at = step.atMs + k * step.everyMs;
          if (k === 0) await this.send(this.device(step.from), step.to, text);
          else {
            this.scheduler.schedule(
              at,
              () => this.#track(this.send(this.device(step.from), step.to, text), step),
              `send ${step.from}`,
            );
          }
        }
        return;
      case "profile":
        await this.device(step.device).live().updateProfile({
          nickname: step.nickname,
          status: step.status,
        });
        return;
      case "rename": {
        const d = this.device(step.device);
        await d.live().updatePeer(this.#peerUid(d.user, step.peer), { name: step.name });
        return;
      }
      case "read": {
        const d = this.device(step.device);
        await d.live().api(CHAT_API).markRead(this.#peerUid(d.user, step.peer));
        return;
      }
      case "partition":
        for (const ref of step.devices) {
          const d = this.device(ref);
          d.partitionedUntil = this.scheduler.now + step.forMs;
          this.#down(d, this.scheduler.now, d.partitionedUntil);
        }
        return;
      case "add_server": {
        const core = this.relaysByName.get(step.server)!;
        await this.device(step.device).live().addServer(core.card());
        return;
      }
      case "chatter":
        return this.#chatter(step.users, step.messages, step.overMs, step.atMs);
    }
  }

  #peerUid(user: string, other: string): string {
    const uid = this.conversations.get(pairKey(user, other));
    if (!uid) throw new Error(`${user} and ${other} are not contacts`);
    return uid;
  }

  /**
   * `from` invites `to` through a relay mailbox, the way two people would:
   * the code (or link) goes from one to the other out of band, both run
   * their side of the exchange at once.
   */
  async #invite(from: SimDevice, to: SimDevice, via: PairingVia): Promise<void> {
    const offer = await from.live().offerPairing({ form: via });
    const [, accepted] = await Promise.all([
      offer.exchanged,
      to.live().acceptPairing(this.#joinInput(from, offer), { type: PeerType.CONTACT }),
    ]);
    const uid = accepted.peerUid;
    const key = pairKey(from.user, to.user);
    this.conversations.set(key, uid);
    this.conversationsAll.set(key, (this.conversationsAll.get(key) ?? new Set()).add(uid));
    if (!this.#conversationOf.has(uid)) this.#conversationOf.set(uid, key);
  }

  /** What the joining side is handed: the link, or the code and the relay it is on. */
  #joinInput(from: SimDevice, offer: PairingOffer): JoinInput {
    return offer.link !== ""
      ? { link: offer.link }
      : { code: offer.code, server: from.live().identity().servers[0] };
  }

  async #inviteGroup(
    fromGroup: string,
    toGroup: string,
    peers: number,
    via: PairingVia,
  ): Promise<void> {
    const members = (group: string) =>
      this.scenario.users.filter((u) => u.generated?.group === group || u.name === group).map((u) =>
        u.name
      );
    const from = members(fromGroup);
    const to = members(toGroup);
    const invitations: Promise<void>[] = [];
    const chosen = new Set<string>();
    for (const user of from) {
      const candidates = to.filter((u) =>
        u !== user && !this.conversations.has(pairKey(user, u)) && !chosen.has(pairKey(user, u))
      );
      for (let i = 0; i < peers && candidates.length > 0; i++) {
        const other = candidates.splice(randomInt(this.scenarioRandom, candidates.length), 1)[0];
        chosen.add(pairKey(user, other));
        invitations.push(this.#invite(this.devicesOf(user)[0], this.devicesOf(other)[0], via));
      }
    }
    // All at once, as people would; one that fails is reported and the others go on.
    const results = await Promise.allSettled(invitations);
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      throw new Error(
        `${failed.length} of ${results.length} invitations failed; first: ${
          (failed[0] as PromiseRejectedResult).reason?.message
        }`,
      );
    }
  }

  async #pair(from: SimDevice, to: SimDevice, via: PairingVia): Promise<void> {
    // A person pairing from a device that is still joining waits until it has joined.
    for (let waited = 0; !this.#hasJoined(from) && waited < PAIR_READY_WAIT_MS_MAX;) {
      await this.clock.sleep(this.scenario.pollIntervalMs);
      waited += this.scenario.pollIntervalMs;
    }
    const offer = await from.live().api(DEVICE_SYNC_API).offerDevicePairing({
      form: via,
    });
    await Promise.all([
      offer.exchanged,
      to.live().api(DEVICE_SYNC_API).joinDevices(this.#joinInput(from, offer), {
        deviceName: to.name,
      }),
    ]);
    to.live().start();
  }

  #hasJoined(device: SimDevice): boolean {
    const kernel = device.kernel;
    return kernel !== undefined && kernel.hasIdentity() && kernel.identity().uid !== "";
  }

  /** Sends a chat text from `from` to the conversation with `toUser`; records it when accepted. */
  async send(from: SimDevice, toUser: string, text: string): Promise<void> {
    const kernel = from.live();
    const peerUid = this.#peerUid(from.user, toUser);
    const peer: PeerRecord | undefined = kernel.peer(peerUid);
    if (!peer) throw new Error(`${from.ref} does not know ${toUser} (yet)`);
    this.#watchText(text);
    const at = this.scheduler.now;
    const stored = await kernel.api(CHAT_API).send(peerUid, text);
    const uuid = stored.message!.status!.uuid;
    this.recording.sent.set(uuid, {
      uuid,
      from: from.ref,
      fromUser: from.user,
      toUser,
      peerUid,
      text,
      at,
      fromPrimary: peer.primaryDeviceUid === "" || peer.primaryDeviceUid === kernel.deviceUid(),
    });
    if (!(peer.primaryDeviceUid === "" || peer.primaryDeviceUid === kernel.deviceUid())) {
      this.recording.counters.forwards++;
    }
  }

  #chatter(group: string, messages: number, overMs: number, atMs: number): void {
    const users = this.scenario.users.filter((u) =>
      u.generated?.group === group || u.name === group
    );
    for (let i = 0; i < messages; i++) {
      const at = atMs + Math.floor((i * overMs) / messages);
      const user = users[randomInt(this.scenarioRandom, users.length)];
      const device = user.devices[randomInt(this.scenarioRandom, user.devices.length)];
      const text = `chatter ${i} ${randomFloat(this.scenarioRandom).toString(36).slice(2, 10)}`;
      this.scheduler.schedule(at, () => {
        const contacts = this.#contactsOf(user.name);
        if (contacts.length === 0) return;
        const to = contacts[randomInt(this.scenarioRandom, contacts.length)];
        return this.scheduler.track(
          this.send(this.device(`${user.name}/${device}`), to, text).catch((e) => {
            this.recording.refused.push({
              at: this.scheduler.now,
              step: `chatter ${user.name}/${device}`,
              error: String(e.message),
            });
            this.#options.trace({
              kind: "chatter.skip",
              device: `${user.name}/${device}`,
              error: String(e.message),
            });
          }),
        );
      }, `chatter ${user.name}`);
    }
  }

  /** Drops the kernel and every in-memory cache at once; the store stays as a disk would. */
  async crash(device: SimDevice): Promise<void> {
    if (device.crashed) return;
    device.kernel?.crash();
    device.kernel = undefined;
    device.crashed = true;
    device.incarnation++;
    this.#downSince.set(device.ref, this.scheduler.now);
    await device.store?.close();
  }

  /** Starts the device again from its stores. */
  async restart(device: SimDevice): Promise<void> {
    if (!device.crashed) return;
    device.store = await openStore(this.storage, {
      folder: this.#options.folder,
      ref: device.ref,
      reopen: device.store,
      track: (p) => this.scheduler.track(p),
    });
    device.crashed = false;
    this.#down(device, this.#downSince.get(device.ref) ?? 0, this.scheduler.now);
    await this.#boot(device);
    device.kernel!.start();
  }

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
    if (this.#pairings > 0) return false;
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
        this.#down(device, this.#downSince.get(device.ref) ?? 0, this.scheduler.now);
      }
    }
  }

  /** A serverCard by relay name. */
  card(name: string): ServerCard {
    return this.relaysByName.get(name)!.card();
  }
}

/** The conversation key of two users. */
export function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

/** Index of `needle` in `haystack`, or -1. */
export function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  if (needle.length === 0) return 0;
  const first = needle[0];
  outer: for (
    let i = haystack.indexOf(first);
    i >= 0 && i + needle.length <= haystack.length;
    i = haystack.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

void create;

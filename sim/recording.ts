/**
 * What a run records for the checkers: the {@linkcode Recording} (messages
 * sent and where they arrived, rejections, downtime, relay health, counters)
 * and the {@linkcode Recorder} that fills it from the devices' kernel
 * observations and the sim's own probe plugin, tracing each message as it
 * enters or leaves a device's pipeline.
 *
 * @module
 */
import { decode, encode } from "../proto/mod.ts";
import { DeviceSyncPayloadSchema, PeerType, UserMessageSchema } from "../proto/mod.ts";
import type { KernelObservation } from "../kernel/mod.ts";
import type { Plugin } from "../kernel/mod.ts";
import { lastActivityMs } from "../plugins/device_sync/mod.ts";
import type { ServerCore } from "../server/mod.ts";
import type { SimDevice } from "./devices.ts";
import type { PrivacyTaps } from "./privacy_taps.ts";
import type { Scheduler } from "./scheduler.ts";
import { hex, type SessionKeys } from "./state.ts";

const HEX = hex;

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
  /**
   * Steps (and chatter sends) the devices refused, e.g. a send before a pairing completed;
   * `mayFail`: the step said `may_fail: true`.
   */
  refused: { at: number; step: string; error: string; mayFail?: boolean }[];
  /**
   * Relay refusals as the kernels reported them: every change of a device's
   * state with a relay, per request kind, and every message a relay will never take.
   */
  relayEvents: RelayEvent[];
  /** Every public key a hostile relay made (hex): no device may end up holding one. */
  adversaryKeys: Set<string>;
  /** traffic_blind: what the relays stored, and what the devices know of each stored message. */
  traffic: TrafficRecording;
  /**
   * history: per device pairing, keyed by the newcomer's peer uid on the
   * pairing device — the window the step asked for, the newcomer, and what
   * the pairing device held (per conversation: uuid and last activity, oldest
   * first) in the transaction that welcomed the newcomer.
   */
  pairings: Map<string, PairingRecord>;
  /** Devices that left their user's devices (`retire`, `remove`): when, and their device uid. */
  removals: Map<string, { atMs: number; deviceUid: string }>;
  /** Removed device uid → device → when that device applied the removal (a device_remove came in). */
  removalSeen: Map<string, Map<string, number>>;
  /** Devices gone for good (`lose`): when. */
  lost: Map<string, number>;
  /** The keys each lost device held for its conversations when it was lost (its stores are gone). */
  lostSessions: Map<string, Map<string, SessionKeys>>;
  /** Device → the times it removed a sibling itself (a remove step's `by`). */
  removers: Map<string, number[]>;
}

/** One device pairing, as `history`, `converged` and `no_loss` read it. */
export interface PairingRecord {
  /** The new device (`user/device`). */
  newcomer: string;
  /** The device that paired it. */
  by: string;
  /** The window asked for: how far back in ms (undefined: any age), and how many per conversation. */
  window: { windowMs: number | undefined; messagesMax: number };
  /** Clock ms of the welcoming transaction (undefined until it ran). */
  atMs?: number;
  /** Conversation uid → what the pairing device held then: uuid and last activity (ms), oldest first. */
  held?: Map<string, { uuid: string; activeMs: number }[]>;
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

/** A recording with nothing in it yet. */
export function emptyRecording(): Recording {
  return {
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
    pairings: new Map(),
    removals: new Map(),
    removalSeen: new Map(),
    removers: new Map(),
    lost: new Map(),
    lostSessions: new Map(),
  };
}

/** What a {@linkcode Recorder} writes to and reads from. */
export interface RecorderOptions {
  recording: Recording;
  scheduler: Scheduler;
  /** The relays by uid (to name the relay of a health change). */
  relays: Map<string, ServerCore>;
  /** The expectations this run checks: the recording keeps only what they read. */
  expects: ReadonlySet<string>;
  /** The privacy taps, told of secrets and of what leaves a device. */
  taps: PrivacyTaps;
  /** Trace sink. */
  trace: (line: Record<string, unknown>) => void;
}

/** Fills a {@linkcode Recording} from what the devices report. */
export class Recorder {
  readonly #recording: Recording;
  readonly #scheduler: Scheduler;
  readonly #relays: Map<string, ServerCore>;
  readonly #expects: ReadonlySet<string>;
  readonly #taps: PrivacyTaps;
  readonly #trace: (line: Record<string, unknown>) => void;
  /** Device ref → scheduler time it went offline or crashed (its open downtime span). */
  readonly downSince: Map<string, number> = new Map<string, number>();

  /** A recorder filling `options.recording`. */
  constructor(options: RecorderOptions) {
    this.#recording = options.recording;
    this.#scheduler = options.scheduler;
    this.#relays = options.relays;
    this.#expects = options.expects;
    this.#taps = options.taps;
    this.#trace = options.trace;
  }

  /** The sim's own instrument: records when each message lands in each device's store. */
  probe(device: SimDevice): Plugin {
    return {
      name: "sim_probe",
      on: {
        "message.stored": ({ message }, tx) => {
          const uuid = message.message?.status?.uuid ?? "";
          tx.afterCommit(() => {
            const at = this.#scheduler.now;
            let byDevice = this.#recording.arrivals.get(uuid);
            if (!byDevice) this.#recording.arrivals.set(uuid, byDevice = new Map());
            if (!byDevice.has(device.ref)) byDevice.set(device.ref, at);
          });
        },
        "identity.updated": (_p, tx) => {
          tx.afterCommit(() => {
            if (device.kernel?.identity().uid) device.pairedAt ??= this.#scheduler.now;
          });
        },
        // The transaction in which this device welcomes a newcomer it paired: what it holds now
        // is what the newcomer's history is drawn from.
        "peer.updated": async ({ peer, created, origin }, tx) => {
          const pairing = this.#recording.pairings.get(peer.uid);
          if (!pairing || !created || origin !== "local" || peer.type !== PeerType.DEVICE) return;
          const hidden = new Set(tx.identity().hiddenPeers);
          const held = new Map<string, { uuid: string; activeMs: number }[]>();
          for (const contact of tx.peers()) {
            if (hidden.has(contact.uid)) continue;
            held.set(
              contact.uid,
              (await tx.messages(contact.uid)).map((row) => ({
                uuid: row.message?.status?.uuid ?? "",
                activeMs: lastActivityMs(row),
              })),
            );
          }
          const atMs = tx.now;
          tx.afterCommit(() => {
            pairing.atMs = atMs;
            pairing.held = held;
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
      this.#trace({ kind: "msg.rejected", device: device.ref, code: o.error.code });
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
    this.#trace({
      kind: o.kind === "outbound" ? "msg.out" : "msg.in",
      device: device.ref,
      peer: o.peerUid,
      type: kind,
      uuid: o.message.status?.uuid ?? "",
      queue: o.packed.destination.slice(0, 12),
    });
  }

  /** Records one kernel observation of `device`. */
  observed(device: SimDevice, o: KernelObservation): void {
    if (o.kind === "relay") {
      const relay = this.#relays.get(o.serverUid)?.card().name ?? o.serverUid;
      this.#recording.relayEvents.push({
        at: this.#scheduler.now,
        device: device.ref,
        relay,
        request: o.request,
        state: o.state,
        detail: o.detail,
      });
      this.#trace({
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
      this.#taps.watchBytes(o.bytes, `${o.what} of ${device.ref}`);
      return;
    }
    this.#traceMessage(device, o);
    if (o.kind === "inbound" && o.message.type === "device_sync") {
      try {
        const payload = decode(DeviceSyncPayloadSchema, o.message.appdata);
        if (payload.syncType === "device_remove") {
          let seen = this.#recording.removalSeen.get(payload.deviceUid);
          if (!seen) this.#recording.removalSeen.set(payload.deviceUid, seen = new Map());
          if (!seen.has(device.ref)) seen.set(device.ref, this.#scheduler.now);
        }
      } catch {
        // Not a payload this device could read: the kernel rejects it.
      }
    }
    if (o.kind === "rejected") {
      if (o.error.code !== "Replay") {
        const from = device.kernel?.pullKeys().find((k) => k.lookupKey === o.packed.destination)
          ?.peer;
        const peer = from
          ? ` (from ${from.type === PeerType.DEVICE ? "device" : "contact"} "${from.name}", ` +
            `conversation ${from.uid})`
          : "";
        this.#recording.rejections.push({
          device: device.ref,
          code: o.error.code,
          detail: `${o.error.message}${peer}`,
          quarantined: true,
          deliberate: this.#recording.corrupted.has(o.packed.serverDeliveryUuid),
        });
      }
      return;
    }
    if (o.kind === "outbound" && this.#expects.has("traffic_blind")) {
      const peer = device.kernel?.peer(o.peerUid);
      const kind = peer?.type === PeerType.DEVICE ? "device" : "contact";
      this.#recording.traffic.kindOf.set(HEX(o.packed.signature), kind);
    }
    if (o.kind === "inbound" && this.#expects.has("traffic_blind")) {
      const session = `${o.packed.destination}|${HEX(o.header.subarray(1, 33))}`;
      this.#recording.traffic.sessionOf.set(HEX(o.packed.signature), session);
    }
    if (o.kind === "outbound") {
      if (o.message.type === "device_sync") this.#recording.counters.syncPayloads++;
      if (o.message.type === "chat") this.#recording.counters.chat++;
      const uuid = o.message.status?.uuid ?? "";
      const signatures = this.#recording.packedSignatures.get(uuid) ?? new Set<string>();
      signatures.add(HEX(o.packed.signature));
      this.#recording.packedSignatures.set(uuid, signatures);
      if (this.#expects.has("root_key_private")) {
        this.#taps.leftDevice(device.ref, encode(UserMessageSchema, o.message), "plaintext");
      }
      return;
    }
    // inbound: what a contact accepted from which identity key and ratchet.
    if (!this.#expects.has("contacts_blind")) return;
    const peer = device.kernel?.peer(o.peerUid);
    if (peer?.type === PeerType.CONTACT && peer.contact) {
      this.#recording.contactInbound.push({
        device: device.ref,
        peerUid: o.peerUid,
        identityKey: HEX(peer.contact.identityPublicKey),
        ratchetKeys: HEX(o.header.subarray(1, 33)),
      });
    }
  }

  /** Records that `device` was down over [from, to). */
  down(device: SimDevice, from: number, to: number): void {
    const list = this.#recording.downtime.get(device.ref) ?? [];
    list.push([from, to]);
    this.#recording.downtime.set(device.ref, list);
  }
}

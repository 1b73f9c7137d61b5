/**
 * The kernel's public types: its options, what it reports to an observer,
 * relay health and the results of its pairing and receive steps. Re-exported
 * by kernel/kernel.ts and kernel/mod.ts; import them from there.
 *
 * @module
 */
import type {
  ContactCard,
  IdentityRecord,
  PackedUserMessage,
  PeerType,
  ServerCard,
  UserMessage,
} from "../proto/mod.ts";
import type { MeowError } from "./errors.ts";
import type { PairingForm, PairingProtocol } from "./pairing_flow.ts";
import type { PluginInput } from "./plugin.ts";
import type { Clock, Random, Store, Transport } from "../ports/mod.ts";

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
   * show what the relay would learn, or what would be lost, without them;
   * `acceptRetiredResets: true` takes a session reset signed with a retired
   * key, to show what a removed device could do without the check.
   * @default {{ pad: true, checkSize: true }}
   */
  sealing?: KernelSealing;
}

/** How user messages are sealed and opened ({@linkcode KernelOptions.sealing}); only tests weaken it. */
export interface KernelSealing {
  pad?: boolean;
  checkSize?: boolean;
  headerInClear?: boolean;
  acceptRetiredResets?: boolean;
}

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

/** What `Kernel.newIdentityRecord` makes a record of. */
export interface IdentityRecordInit {
  /** The user's uid. */
  uid: string;
  /** This device's name. */
  deviceName: string;
  /** The user's relays. */
  servers: ServerCard[];
  /** Whether to make a fresh root key too (a new user, not a joining device). */
  withRoot: boolean;
}

/** Options of `Kernel.createInvitation`. */
export interface InvitationOptions {
  /** CONTACT (the default) or DEVICE. */
  type?: PeerType;
  /** The name the new peer is stored under. */
  name?: string;
}

/** Options of `Kernel.acceptInvitation`. */
export interface AcceptInvitationOptions {
  /** The name the new peer is stored under. */
  name?: string;
  /** This device's name, as the card tells the peer. */
  deviceName?: string;
  /** Refuse a card of another kind before anything changes. */
  type?: PeerType;
  /** An end-to-end pairing's transcript MAC and safety code over the serialized answer card. */
  proof?: (answerCard: Uint8Array) => { mac: Uint8Array; safetyCode: string };
  /**
   * The identity to stage, in the same transaction, when this device has none
   * yet — a new install joining its user's devices (device_sync's policy: it
   * throws for a card that is not a device's). Without it, a device with no
   * identity cannot accept a card.
   */
  newIdentity?: (card: ContactCard) => IdentityRecord;
}

/** Options of `Kernel.offerPairing`. */
export interface OfferPairingOptions {
  /** CONTACT (the default) or DEVICE. */
  type?: PeerType;
  /** By link or by code. */
  form?: PairingForm;
  /** The name the new peer is stored under. */
  name?: string;
  /** How long the mailbox waits for the other side, in ms. */
  expiresMs?: number;
  /** Ends the wait. */
  signal?: AbortSignal;
}

/** Options of `Kernel.acceptPairing`. */
export interface AcceptPairingOptions {
  /** The name the new peer is stored under. */
  name?: string;
  /** This device's name, as the card tells the peer. */
  deviceName?: string;
  /** Refuse a link or code of another kind. */
  type?: PeerType;
  /** Ends the wait. */
  signal?: AbortSignal;
  /** As in {@linkcode AcceptInvitationOptions.newIdentity}. */
  newIdentity?: (card: ContactCard) => IdentityRecord;
}

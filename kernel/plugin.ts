/**
 * The plugin model: a plugin is a factory's result `{ name, ...hooks }`.
 * Each hook says how it runs:
 *
 * - `types` + `receive` — *first*: one owner per `UserMessage.type`; the
 *   kernel routes every decrypted message of that type to it.
 * - `outbound` — *first*: the first plugin that returns `true` takes over an
 *   outgoing message (the primary-device relay uses it); otherwise the kernel
 *   encrypts it for the peer.
 * - `primaryOf` — *first*: the first plugin that names a device decides which
 *   of the user's devices is a contact's primary — the one that holds its
 *   ratchet and pulls its queue (forward_relay owns this rule); when no plugin
 *   answers, every device is primary for every contact it holds.
 * - `on` — *sequential*: every plugin's hook for an event runs, one after
 *   another in registration order, over the same transaction: a hook sees
 *   what the hooks before it staged, and the first failure ends the round.
 * - `api` — what the plugin offers other plugins and applications, reached
 *   through {@linkcode PluginHost.api} with a typed key ({@linkcode apiKey}),
 *   never by importing internals.
 *
 * kernel/plugin_driver.ts calls the hooks by these rules.
 *
 * Hooks that run inside a {@linkcode Tx} add their effects to the same atomic
 * commit as the change that triggered them.
 *
 * **Plugin storage.** Each plugin has a collection of its own, named by the plugin's name:
 * `tx.data(name)` reads and stages JSON values by string key in the transaction (so a plugin's
 * state commits atomically with the message that caused it), `host.data(name)` reads what is
 * committed. Values are sealed at rest like every record; keys stay in the clear (they order and
 * index), so a key must not carry contents — use uuids and uids.
 *
 * @module
 */
import type {
  DbMessage,
  IdentityRecord,
  PackedUserMessage,
  PeerRecord,
  PeerType,
  ServerCard,
  UserMessage,
} from "../proto/mod.ts";
import type { InvitationTicket, PairingAccepted, PairingOffer } from "./kernel.ts";
import type {
  AcceptInvitationOptions,
  AcceptPairingOptions,
  IdentityRecordInit,
} from "./_types.ts";
import type { JoinInput, PairingForm } from "./pairing_flow.ts";
import type { Clock, Random } from "../ports/mod.ts";

/** The events of the kernel, each observed by every plugin (a *sequential* hook). */
export interface KernelEvents {
  /** A message was stored in a conversation (sent, received, or arrived by sync). */
  "message.stored": { message: DbMessage; origin: "local" | "peer" | "sync" };
  /** A stored message's status (sent / received / processed) advanced. */
  "message.status": { message: DbMessage; origin: "local" | "peer" | "sync" };
  /** A peer was created or changed (renamed, blocked, settings). */
  "peer.updated": { peer: PeerRecord; created: boolean; origin: "local" | "peer" | "sync" };
  /** The profile (nickname, avatars, status) changed. */
  "identity.updated": { identity: IdentityRecord; origin: "local" | "sync" };
  /** A relay was added to the identity's servers. */
  "server.added": { server: ServerCard; origin: "local" | "sync" };
  /**
   * A contact's conversation got new keys from the contact (kernel/rekey.ts): `reset` — a
   * session reset, the old session is gone and what it carried without a delivery
   * acknowledgement is to be sent again; `rekey` — new keys inside the live session.
   */
  "session.renewed": { peer: PeerRecord; kind: "reset" | "rekey" };
  /**
   * A device left the user's devices (removed here, or told by a sibling): `primaryFor` are the
   * contacts it was primary for, as this device saw it just before.
   */
  "device.removed": { deviceUid: string; origin: "local" | "sync"; primaryFor: string[] };
  /**
   * A relay answered a poll, and the kernel records it (in the identity's
   * `last_poll_at`, at most every {@linkcode POLL_MARK_MS_MAX} or an eighth of
   * the shortest retention): `previousMs` is the mark before this one, 0 on
   * the first poll ever — how long the device was away (catch-up, refresh).
   */
  "poll.marked": { previousMs: number; nowMs: number };
}

/** The longest time between two records of a successful poll, in ms (five minutes). */
export const POLL_MARK_MS_MAX = 5 * 60_000;

/** The name of a kernel event. */
export type KernelEventName = keyof KernelEvents;

/** A plugin's collection as committed (read only): {@linkcode PluginHost.data}. */
export interface PluginDataReader {
  /** The value under `key`, or undefined. */
  get<T = unknown>(key: string): Promise<T | undefined>;
  /** The records whose keys start with `prefix` (all by default), in key order. */
  list<T = unknown>(prefix?: string): Promise<{ key: string; value: T }[]>;
}

/** A plugin's collection inside a transaction: reads see what it staged. */
export interface PluginData extends PluginDataReader {
  /**
   * Stages `value` (anything `JSON.stringify` takes) under `key`.
   *
   * @throws {TypeError} for an empty key or a value JSON cannot hold
   */
  put(key: string, value: unknown): void;
  /** Stages the deletion of `key` (nothing happens when there is none). */
  delete(key: string): void;
}

/**
 * A unit of change: everything staged here is committed atomically, then the
 * kernel's caches are updated and the outbox flushed. Reads see staged writes.
 */
export interface Tx {
  /** The kernel's clock time when the transaction started. */
  readonly now: number;
  /** The identity, with staged changes. */
  identity(): IdentityRecord;
  /** Stages a new identity record. */
  putIdentity(identity: IdentityRecord): void;
  /** A contact or device peer by uid, with staged changes. */
  peer(uid: string): PeerRecord | undefined;
  /** Every complete contact peer (pending invitations excluded), with staged changes. */
  peers(): PeerRecord[];
  /** Every device peer (sibling), with staged changes. */
  devices(): PeerRecord[];
  /** Stages a contact peer (type CONTACT) or a device peer (type DEVICE) into its store. */
  putPeer(peer: PeerRecord): void;
  /** Stages the deletion of a device peer (a sibling removed from the user's devices). */
  deleteDevice(uid: string): void;
  /** A stored message, with staged changes. */
  message(peerUid: string, uuid: string): Promise<DbMessage | undefined>;
  /** The stored messages of a conversation, with staged changes, oldest first. */
  messages(peerUid: string): Promise<DbMessage[]>;
  /** Stages a stored message (upsert by peer and uuid). */
  putMessage(message: DbMessage): void;
  /**
   * Atomic check-and-mark of a dedup id: true when it was not seen before (and
   * is now marked, in this transaction), false for a repeat.
   */
  markSeen(id: string): Promise<boolean>;
  /**
   * Sends a user message to a peer: routed through the `outbound` hooks, else
   * encrypted with the peer's ratchet and queued in the outbox.
   */
  send(peerUid: string, message: UserMessage): Promise<void>;
  /**
   * Encrypts and queues a user message for a peer directly, bypassing the
   * `outbound` hooks (for the plugin that took the message over).
   */
  sendDirect(peerUid: string, message: UserMessage): Promise<void>;
  /**
   * Session reset (kernel/rekey.ts): for a contact this device holds the keys of but no ratchet,
   * stages new keys and a fresh session and queues the reset to the contact. Resolves with the
   * staged record.
   *
   * @throws {TypeError} when `peerUid` names no completed contact
   */
  resetSession(peerUid: string): Promise<PeerRecord>;
  /**
   * Rekey (kernel/rekey.ts): sends contact `peerUid`, inside the live session, new identity,
   * encryption and lookup keys and switches to them, keeping the previous encryption and lookup
   * keys `keepMs`. Resolves with the staged record.
   *
   * @throws {TypeError | Malformed} when this device holds no session with that contact
   */
  rekey(peerUid: string, keepMs: number): Promise<PeerRecord>;
  /** Queues an already packed message (an invitation answer) to the peer's home relay. */
  queuePacked(peer: PeerRecord, packed: PackedUserMessage, messageUuid: string): void;
  /**
   * The collection of the plugin named `namespace` (its own name), staged in this transaction.
   *
   * @throws {TypeError} when no registered plugin has that name
   */
  data(namespace: string): PluginData;
  /** Emits a kernel event to every plugin, inside this transaction. */
  emit<E extends KernelEventName>(event: E, payload: KernelEvents[E]): Promise<void>;
  /** Runs `fn` after the commit succeeded (never when it fails). */
  afterCommit(fn: () => void): void;
}

/** What a plugin sees of the kernel. */
export interface PluginHost {
  /** The clock port. */
  readonly clock: Clock;
  /** The randomness port. */
  readonly random: Random;
  /** This device's uid. */
  deviceUid(): string;
  /** The identity as committed. */
  identity(): IdentityRecord;
  /**
   * The device uid of a contact's primary as this device sees it (this
   * device's own uid when it is the primary), decided by the `primaryOf` hooks.
   */
  primaryOf(peer: PeerRecord): string;
  /** Fresh device keys and uid for an identity record (`Kernel.newIdentityRecord`); stages nothing. */
  newIdentityRecord(options: IdentityRecordInit): IdentityRecord;
  /** The api of the plugin `key` names, typed by the key; throws when there is none. */
  api<T>(key: ApiKey<T>): T;
  /** Runs `fn` in a transaction on the kernel's serial queue and commits it. */
  transact<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Step 1 of a pairing: a pending peer and the card to hand over (`Kernel.createInvitation`). */
  createInvitation(options?: { type?: PeerType; name?: string }): Promise<InvitationTicket>;
  /**
   * Step 2 of a pairing: answers a card (`Kernel.acceptInvitation`); on a
   * device with no identity yet, `newIdentity` gives the one to stage.
   */
  acceptInvitation(bytes: Uint8Array, options?: AcceptInvitationOptions): Promise<string>;
  /** Offers a pairing through a relay mailbox, end to end encrypted (`Kernel.offerPairing`). */
  offerPairing(options?: {
    type?: PeerType;
    form?: PairingForm;
    name?: string;
    expiresMs?: number;
    signal?: AbortSignal;
  }): Promise<PairingOffer>;
  /** Answers a pairing offered by link or code (`Kernel.acceptPairing`). */
  acceptPairing(input: JoinInput, options?: AcceptPairingOptions): Promise<PairingAccepted>;
  /** Whether a dedup id is in the committed seen table. */
  isSeen(id: string): Promise<boolean>;
  /**
   * The committed collection of the plugin named `namespace` (read only; write through `tx.data`).
   *
   * @throws {TypeError} when no registered plugin has that name
   */
  data(namespace: string): PluginDataReader;
  /** Deletes seen-table rows first seen before `beforeMs`; resolves with how many went. */
  pruneSeen(beforeMs: number): Promise<number>;
  /** Logs a line, prefixed with the plugin's name. */
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
}

declare const API: unique symbol;

/**
 * A typed name for a plugin's api: `kernel.api(key)` returns the api as `T`,
 * with no cast at the call site. The plugin that offers the api exports it.
 */
export interface ApiKey<T> {
  /** The name of the plugin that offers the api. */
  readonly name: string;
  /** Carries `T`; never set. */
  readonly [API]?: T;
}

/**
 * Makes the typed key of the api the plugin `name` offers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { apiKey } from "./plugin.ts";
 * interface ReactionApi { react(uid: string, emoji: string): Promise<void> }
 * const REACTION_API = apiKey<ReactionApi>("reaction");
 * assert.equal(REACTION_API.name, "reaction");
 * ```
 */
export function apiKey<T>(name: string): ApiKey<T> {
  return Object.freeze({ name });
}

/** Context of a routed inbound message. */
export interface ReceiveContext {
  /** The transaction the message is processed in. */
  tx: Tx;
  /** The peer it came from (contact or device), as staged. */
  peer: PeerRecord;
}

/** Event hooks: each optional, each observing one kernel event. */
export type EventHooks = {
  [E in KernelEventName]?: (payload: KernelEvents[E], tx: Tx) => Promise<void> | void;
};

/**
 * A kernel plugin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Plugin } from "./plugin.ts";
 * const reactions: Plugin = {
 *   name: "reaction",
 *   types: ["reaction"],
 *   receive: (message, { tx, peer }) => {
 *     tx.afterCommit(() => console.log(`${peer.name} reacted ${message.data}`));
 *   },
 * };
 * assert(reactions.types?.[0] === "reaction");
 * ```
 */
export interface Plugin {
  /** Appears in every error and log line the plugin causes. */
  name: string;
  /** `UserMessage.type`s this plugin owns (routing: *first*, one owner per type). */
  types?: string[];
  /** Handles an inbound message of an owned type inside the receiving transaction. */
  receive?(message: UserMessage, context: ReceiveContext): Promise<void> | void;
  /**
   * *First*: return true to take over an outgoing message to `peer` (the
   * kernel then does not encrypt it for the peer).
   */
  outbound?(message: UserMessage, context: ReceiveContext): Promise<boolean> | boolean;
  /**
   * *First*: the device uid of contact `peer`'s primary as device `deviceUid`
   * sees it, or undefined to leave the decision to the next plugin. Synchronous:
   * the kernel asks it when it chooses which queues to pull.
   */
  primaryOf?(peer: PeerRecord, deviceUid: string): string | undefined;
  /** *Sequential* event hooks, run in registration order over the shared transaction. */
  on?: EventHooks;
  /** Called once when the kernel opens, after every plugin is registered. */
  setup?(host: PluginHost): Promise<void> | void;
  /**
   * A background task started by `Kernel.start()` on the clock port; it must
   * return when `signal` aborts.
   */
  run?(host: PluginHost, signal: AbortSignal): Promise<void>;
  /** What this plugin offers others, reached by `host.api(key)` with an {@linkcode apiKey} of its name. */
  api?: unknown;
}

/** A plugin factory or a plugin. */
export type PluginInput = Plugin | (() => Plugin);

/**
 * The kernel's transaction ({@linkcode Tx}): reads see what it staged, writes
 * are staged until the kernel commits its {@linkcode KernelTx.batch} in one
 * atomic store write. Sending encrypts here (the ratchet step is staged with
 * the outbox entry); the plugin hooks it reaches go through the driver.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import {
  type DbMessage,
  DbMessageSchema,
  type IdentityRecord,
  IdentityRecordSchema,
  type OutboxEntry,
  OutboxEntrySchema,
  type PackedUserMessage,
  type PeerRecord,
  PeerRecordSchema,
  PeerType,
  type UserMessage,
} from "../proto/mod.ts";
import { Malformed } from "./errors.ts";
import { isPending } from "./invitation.ts";
import { assertUsablePeer, pack } from "./pipeline.ts";
import { createRekey, createReset } from "./rekey.ts";
import type { Kernel } from "./kernel.ts";
import type { KernelObservation, KernelSealing } from "./_types.ts";
import type { PluginDriver } from "./plugin_driver.ts";
import type { KernelEventName, KernelEvents, PluginData, Tx } from "./plugin.ts";
import type { Batch, PluginRecord, Random, Store } from "../ports/mod.ts";

/** What a transaction reads the committed state through, and the ports it uses. */
export interface TxPorts {
  now: number;
  identity: IdentityRecord | undefined;
  peer(uid: string): PeerRecord | undefined;
  peers(): PeerRecord[];
  devices(): PeerRecord[];
  store: Store;
  random: Random;
  driver: PluginDriver;
  deviceUid: string;
  observe: (observation: KernelObservation) => void;
  sealing: KernelSealing;
  /** The next outbox id (ordered by queue time, then by sequence). */
  nextOutboxId(now: number): string;
}

/** Reports a peer record's private key material (and a card's bytes) as secrets. */
export function observeSecrets(
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

/** Throws unless a registered plugin is named `namespace`. */
export function checkNamespace(driver: PluginDriver, namespace: string): void {
  if (!driver.plugins.some((p) => p.name === namespace)) {
    throw new TypeError(
      `Cannot open the collection "${namespace}": no plugin of that name is registered`,
    );
  }
}

/** A plugin record's JSON value. */
export function decodeValue<T>(bytes: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(bytes)) as T;
}

/** Orders strings by code point (as UTF-8 bytes sort, as the stores list keys). */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i].codePointAt(0)! - y[i].codePointAt(0)!;
  }
  return x.length - y.length;
}

function messageKey(peerUid: string, uuid: string): string {
  return `${peerUid}\u0000${uuid}`;
}

/** A transaction of the kernel: staged reads and writes, committed by the kernel as one batch. */
export class KernelTx implements Tx {
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
  readonly #deletedDevices = new Set<string>();
  readonly #after: (() => void)[] = [];
  /** `JSON.stringify([namespace, key])` → the staged record, or null for a deletion. */
  readonly #pluginData = new Map<string, PluginRecord | null>();
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
    const peer = this.#peer(uid);
    return peer && clone(PeerRecordSchema, peer);
  }

  /** The peer as staged or stored, not copied: only to read, never handed out. */
  #peer(uid: string): PeerRecord | undefined {
    if (this.#deletedDevices.has(uid)) return undefined;
    return this.#peers.get(uid) ?? this.#ports.peer(uid);
  }

  #all(type: PeerType): PeerRecord[] {
    const base = type === PeerType.DEVICE ? this.#ports.devices() : this.#ports.peers();
    const merged = new Map(base.map((p) => [p.uid, p]));
    for (const [uid, peer] of this.#peers) if (peer.type === type) merged.set(uid, peer);
    for (const uid of this.#deletedDevices) merged.delete(uid);
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
    this.#stagePeer(clone(PeerRecordSchema, peer));
  }

  /** Stages `peer` itself: a copy this transaction made and hands to nobody else. */
  #stagePeer(peer: PeerRecord): void {
    const before = this.#peer(peer.uid);
    if (!before || before.keysVersion !== peer.keysVersion) {
      observeSecrets(this.#ports.observe, peer); // a new peer, or new keys (a reset or rekey)
    }
    this.#peers.set(peer.uid, peer);
    this.#deletedDevices.delete(peer.uid);
  }

  deleteDevice(uid: string): void {
    const peer = this.peer(uid);
    if (!peer || peer.type !== PeerType.DEVICE) {
      throw new TypeError(`Cannot delete device peer ${uid}: no such device`);
    }
    this.#peers.delete(uid);
    this.#deletedDevices.add(uid);
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
    if (await this.#ports.driver.outbound(message, { tx: this, peer })) return;
    await this.sendDirect(peerUid, message);
  }

  sendDirect(peerUid: string, message: UserMessage): Promise<void> {
    return this.#sendDirect(peerUid, message, false);
  }

  async #sendDirect(peerUid: string, message: UserMessage, barrier: boolean): Promise<void> {
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
    // `peer` is this call's own copy, read below but kept nowhere else: staged as it is.
    this.#stagePeer(peer);
    this.queuePacked(peer, packed, message.status?.uuid ?? "", { barrier });
  }

  async resetSession(peerUid: string): Promise<PeerRecord> {
    const peer = this.peer(peerUid);
    if (!peer || peer.type !== PeerType.CONTACT || !peer.contact || isPending(peer)) {
      throw new TypeError(`Cannot reset a session: no contact with uid ${peerUid}`);
    }
    const { peer: next, packed } = await createReset(peer, {
      random: this.#ports.random,
      now: this.now,
      servers: this.identity().servers,
    });
    this.putPeer(next);
    this.queuePacked(next, packed, "", { barrier: true });
    return next;
  }

  async rekey(peerUid: string, keepMs: number): Promise<PeerRecord> {
    const peer = this.peer(peerUid);
    if (!peer || peer.type !== PeerType.CONTACT) {
      throw new TypeError(`Cannot rekey: no contact with uid ${peerUid}`);
    }
    assertUsablePeer(peer);
    const { message, switchKeys } = createRekey(peer, {
      random: this.#ports.random,
      now: this.now,
      servers: this.identity().servers,
      keepMs,
    });
    // Sent with the keys the contact knows, then this side switches.
    await this.#sendDirect(peerUid, message, true);
    const next = switchKeys(this.peer(peerUid)!);
    this.putPeer(next);
    return next;
  }

  /** Queues an already packed message to the peer's home relay. */
  queuePacked(
    peer: PeerRecord,
    packed: PackedUserMessage,
    messageUuid: string,
    options: { barrier?: boolean } = {},
  ): void {
    const server = peer.contact?.pullServers[0];
    if (!server) throw new Malformed(`Cannot send to peer "${peer.name}": its card names no relay`);
    this.#outbox.push(create(OutboxEntrySchema, {
      id: this.#ports.nextOutboxId(this.now),
      server,
      packed,
      attempts: 0,
      nextAttemptAt: this.now,
      queuedAt: this.now,
      messageUuid,
      peerUid: peer.uid,
      barrier: options.barrier ?? false,
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
      await this.#ports.driver.emit(event, payload, this);
    } finally {
      this.#emitDepth--;
    }
  }

  afterCommit(fn: () => void): void {
    this.#after.push(fn);
  }

  data(namespace: string): PluginData {
    checkNamespace(this.#ports.driver, namespace);
    const store = this.#ports.store;
    const staged = this.#pluginData;
    const id = (key: string) => JSON.stringify([namespace, key]);
    return {
      get: async <T>(key: string): Promise<T | undefined> => {
        const s = staged.get(id(key));
        if (s === null) return undefined;
        const bytes = s ? s.value : await store.getPluginRecord(namespace, key);
        return bytes && decodeValue<T>(bytes);
      },
      list: async <T>(prefix = ""): Promise<{ key: string; value: T }[]> => {
        const merged = new Map<string, Uint8Array>();
        for (const r of await store.listPluginRecords(namespace, prefix)) {
          merged.set(r.key, r.value);
        }
        for (const [k, r] of staged) {
          const [ns, key] = JSON.parse(k) as [string, string];
          if (ns !== namespace || !key.startsWith(prefix)) continue;
          if (r === null) merged.delete(key);
          else merged.set(key, r.value);
        }
        return [...merged].sort(([a], [b]) => compareCodePoints(a, b))
          .map(([key, bytes]) => ({ key, value: decodeValue<T>(bytes) }));
      },
      put: (key: string, value: unknown): void => {
        if (typeof key !== "string" || key === "") {
          throw new TypeError(`Cannot store a record of "${namespace}": its key is empty`);
        }
        let text: string | undefined;
        try {
          text = JSON.stringify(value);
        } catch (cause) {
          throw new TypeError(
            `Cannot store record "${key}" of "${namespace}": ${(cause as Error).message}`,
            { cause },
          );
        }
        if (text === undefined) {
          throw new TypeError(`Cannot store record "${key}" of "${namespace}": not a JSON value`);
        }
        staged.set(id(key), { namespace, key, value: new TextEncoder().encode(text) });
      },
      delete: (key: string): void => {
        staged.set(id(key), null);
      },
    };
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
      deleteDevices: [...this.#deletedDevices],
      messages: [...this.#messages.values()],
      outboxPut: this.#outbox,
      outboxDelete: this.#outboxDelete,
      seen: [...this.#seen].map((id) => ({ id, at: this.now })),
      pluginPut: [...this.#pluginData.values()].filter((r) => r !== null),
      pluginDelete: [...this.#pluginData].filter(([, r]) => r === null).map(([k]) => {
        const [namespace, key] = JSON.parse(k) as [string, string];
        return { namespace, key };
      }),
    };
  }

  /** The kernel this transaction belongs to (for plugins' internal helpers). */
  kernel(): Kernel {
    return this.#kernel;
  }
}

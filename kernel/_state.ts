/**
 * What the kernel's parts share: the committed identity and peer records
 * (with the lookup-key index the router finds peers by), whether the kernel
 * is closed, and the serial queue every change runs on.
 *
 * @module
 */
import { type IdentityRecord, type PeerRecord, PeerType } from "../proto/mod.ts";
import { lookupKeyOf, myLookupKey } from "./pipeline.ts";

/** The committed identity and peers of a device, as cached in memory. */
export class DeviceState {
  /** The committed identity (undefined before one exists). */
  identity: IdentityRecord | undefined;
  /** Contact peers (pending invitations included) by uid. */
  readonly peers = new Map<string, PeerRecord>();
  /** Device peers (siblings) by uid. */
  readonly devices = new Map<string, PeerRecord>();
  /** Lookup key this device pulls → the uid of the peer that owns it. */
  readonly lookup = new Map<string, string>();
  /** Set by `close()` and `crash()`: nothing more is committed. */
  closed = false;

  /** This device's uid ("" before an identity exists). */
  deviceUid(): string {
    return this.identity?.deviceUid ?? "";
  }

  /** A contact or device peer by uid, as committed (not a copy). */
  peer(uid: string): PeerRecord | undefined {
    return this.peers.get(uid) ?? this.devices.get(uid);
  }

  /** Caches a committed peer record and indexes its lookup key. */
  cachePeer(peer: PeerRecord): void {
    const map = peer.type === PeerType.DEVICE ? this.devices : this.peers;
    const old = map.get(peer.uid);
    for (const key of queuesOf(old)) this.lookup.delete(key);
    map.set(peer.uid, peer);
    for (const key of queuesOf(peer)) this.lookup.set(key, peer.uid);
  }

  /** Forgets a deleted device peer and its lookup key. */
  dropDevice(uid: string): void {
    const old = this.devices.get(uid);
    for (const key of queuesOf(old)) this.lookup.delete(key);
    this.devices.delete(uid);
  }
}

/** The queues a peer's messages reach this device on: its lookup key, and the previous one after a rekey. */
function queuesOf(peer: PeerRecord | undefined): string[] {
  const keys: string[] = [];
  if (peer?.myLookup) keys.push(myLookupKey(peer));
  if (peer?.previousKeys?.lookup) keys.push(lookupKeyOf(peer.previousKeys.lookup.publicKey));
  return keys;
}

/** One queue: each function runs after the previous settled, never once the kernel closed. */
export class SerialQueue {
  #queue: Promise<unknown> = Promise.resolve();
  readonly #state: DeviceState;
  readonly #name: string;

  /** A queue that refuses work once `state.closed`; `name` is the kernel's, for the error. */
  constructor(state: DeviceState, name: string) {
    this.#state = state;
    this.#name = name;
  }

  /** Runs `fn` on the queue. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#state.closed) throw new TypeError(`${this.#name}: the kernel is closed`);
      return fn();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Settles when what is queued now has run. */
  idle(): Promise<unknown> {
    return this.#queue;
  }
}

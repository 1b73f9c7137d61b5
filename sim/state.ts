/**
 * A device's final state in a canonical form: what the checkers compare and
 * what the run's `digest` hashes. Read from the device's store (its "disk"),
 * so a device that is down at the end is read as it would restart.
 *
 * @module
 */
import { type PeerRecord, PeerType } from "../proto/mod.ts";
import type { Store } from "../ports/mod.ts";

/** One stored message, as compared across devices. */
export interface MessageState {
  uuid: string;
  outbound: boolean;
  text: string;
  type: string;
  sent: number;
  received: number;
  processed: number;
  pendingForward: boolean;
  /** Why a relay refused it for good ("" unless failed). */
  failedReason: string;
}

/** One message in a device's quarantine (received, could not be opened). */
export interface QuarantinedState {
  /** The relay's delivery uuid. */
  id: string;
  errorCode: string;
  /** Hex of the packed message's signature: which sent message it was a copy of. */
  signature: string;
}

/** One contact, as compared across devices. */
export interface ContactState {
  uid: string;
  name: string;
  blocked: boolean;
  visible: boolean;
  settings: string;
}

/** A device's state. */
export interface DeviceState {
  ref: string;
  user: string;
  /** Has an identity of its user (created here or received by pairing). */
  paired: boolean;
  identityUid: string;
  profile: { nickname: string; status: string; avatars: number };
  servers: string[];
  contacts: ContactState[];
  /** Sibling device peers held. */
  deviceCount: number;
  /** peer uid → messages in stored order (duplicates kept, to be found). */
  conversations: Map<string, MessageState[]>;
  /** Its quarantine, oldest first (not in the digest: a corrupted copy is the network's doing). */
  quarantine: QuarantinedState[];
  /** Hex of every public key in the cards of its contacts and devices (not in the digest). */
  peerKeys: string[];
  /** This device's uid, and each contact's primary device uid as it sees it (not in the digest). */
  deviceUid: string;
  primaries: Map<string, string>;
  /** Each contact conversation's keys as this device holds them (not in the digest). */
  sessions: Map<string, SessionKeys>;
}

/** The keys of one contact conversation on one device, as hex. */
export interface SessionKeys {
  /** This device holds the conversation's ratchet. */
  ratchet: boolean;
  /** This side's identity and lookup public keys. */
  myIdentity: string;
  myLookup: string;
  /** The contact's identity and lookup public keys, from its card. */
  contactIdentity: string;
  contactLookup: string;
}

/** The keys of each contact conversation in `peers`. */
export function sessionsOf(peers: PeerRecord[]): Map<string, SessionKeys> {
  return new Map(
    peers.filter((p) => p.type === PeerType.CONTACT && p.contact && p.myIdentity && p.myLookup)
      .map((p) => [p.uid, {
        ratchet: p.ratchet.length > 0,
        myIdentity: hex(p.myIdentity!.publicKey),
        myLookup: hex(p.myLookup!.publicKey),
        contactIdentity: hex(p.contact!.identityPublicKey),
        contactLookup: hex(p.contact!.lookupPublicKey),
      }]),
  );
}

/** Reads a device's state from its store. */
export async function readState(ref: string, store: Store): Promise<DeviceState> {
  const identity = await store.loadIdentity();
  const contacts = (await store.listPeers())
    .filter((p) => p.type === PeerType.CONTACT && p.contact !== undefined)
    .map((p) => ({
      uid: p.uid,
      name: p.name,
      blocked: p.blocked,
      visible: p.visible,
      settings: JSON.stringify({
        n: p.settings?.notifications,
        d: p.settings?.deliveryAck,
        p: p.settings?.processingAck,
        c: p.settings?.calls,
      }),
    }))
    .sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  const conversations = new Map<string, MessageState[]>();
  for (const uid of await store.listConversations()) {
    conversations.set(
      uid,
      (await store.listMessages(uid)).map((m) => ({
        uuid: m.message?.status?.uuid ?? "",
        outbound: m.outbound,
        text: m.message?.data ?? "",
        type: m.message?.type ?? "",
        sent: m.message?.status?.sent ?? 0,
        received: m.message?.status?.received ?? 0,
        processed: m.message?.status?.processed ?? 0,
        pendingForward: m.pendingForward,
        failedReason: m.failedReason,
      })),
    );
  }
  return {
    ref,
    user: ref.split("/")[0],
    paired: (identity?.uid ?? "") !== "",
    identityUid: identity?.uid ?? "",
    profile: {
      nickname: identity?.profile?.nickname ?? "",
      status: identity?.profile?.status ?? "",
      avatars: identity?.profile?.avatars.length ?? 0,
    },
    servers: (identity?.servers ?? []).map((s) => s.name).sort(),
    contacts,
    deviceCount: (await store.listDevices()).filter((d) => d.contact !== undefined).length,
    conversations,
    quarantine: (await store.listQuarantine()).map((q) => ({
      id: q.id,
      errorCode: q.errorCode,
      signature: hex(q.packed?.signature ?? new Uint8Array()),
    })),
    deviceUid: identity?.deviceUid ?? "",
    primaries: new Map(
      (await store.listPeers())
        .filter((p) => p.type === PeerType.CONTACT && p.contact !== undefined)
        .map((p) => [p.uid, p.primaryDeviceUid || (identity?.deviceUid ?? "")]),
    ),
    sessions: sessionsOf(await store.listPeers()),
    peerKeys: [...await store.listPeers(), ...await store.listDevices()].flatMap((p) =>
      p.contact
        ? [p.contact.identityPublicKey, p.contact.encryptionPublicKey, p.contact.lookupPublicKey]
          .map(hex)
        : []
    ),
  };
}

/** Lowercase hex of `bytes`. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The canonical JSON of a device's state, relative to the virtual epoch, in a
 * fixed order: the input of the run's digest.
 */
export function canonical(state: DeviceState, epochMs: number): string {
  const rel = (t: number) => (t === 0 ? 0 : t - epochMs);
  const conversations = [...state.conversations.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([uid, messages]) => [
      uid,
      [...messages]
        .sort((a, b) => (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0))
        .map((
          m,
        ) => [
          m.uuid,
          m.outbound,
          m.type,
          m.text,
          rel(m.sent),
          rel(m.received),
          rel(m.processed),
          m.pendingForward,
          // Only when failed, so the digest of a run without failures is what it always was.
          ...(m.failedReason === "" ? [] : [m.failedReason]),
        ]),
    ]);
  return JSON.stringify([
    state.ref,
    state.paired,
    state.identityUid,
    state.profile,
    state.servers,
    state.contacts,
    state.deviceCount,
    conversations,
  ]);
}

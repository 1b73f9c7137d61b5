/**
 * Applying the built-in sync types on the receiving device. Each handler
 * runs inside the transaction that decrypted the payload (ratchet step, seen
 * mark and every change here commit together), emits the kernel event of
 * what it changed with origin "sync" (never re-broadcast), and throws
 * {@linkcode Malformed} for a payload it cannot use, which aborts the
 * transaction and changes nothing.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { decode } from "../../proto/mod.ts";
import {
  type ConversationStatus,
  type DbMessage,
  DbMessageSchema,
  DeviceIntroductionSchema,
  type DeviceSyncPayload,
  IdentityRecordSchema,
  KeyPairSchema,
  type PeerRecord,
  PeerRecordSchema,
  PeerType,
  ProfileSchema,
  ServerCardSchema,
} from "../../proto/mod.ts";
import { assertDeviceList, Deferred, Malformed } from "../../kernel/mod.ts";
import type { PluginHost, Tx } from "../../kernel/mod.ts";
import { SYNC_TYPES, wins } from "./payload.ts";

/** What a sync type handler is given besides the payload. */
export interface SyncContext {
  /** The transaction the payload is applied in. */
  tx: Tx;
  /** The sibling device peer it came from. */
  from: PeerRecord;
  /** The receiving device's host. */
  host: PluginHost;
}

/** Applies one decoded, not-yet-seen payload of a sync type. */
export type SyncHandler = (
  payload: DeviceSyncPayload,
  context: SyncContext,
) => Promise<void> | void;

const NAME = "device_sync";

/**
 * msg and status: one row per (conversation, uuid). A new uuid is stored as
 * synced; a known one merges: every status time moves to the earliest known
 * non-zero value (never back to "not reached", and the same on every device
 * whatever the arrival order), a failure (failed_reason, failed_at) keeps the
 * first one, and pending_forward only ever goes from true to false.
 */
async function applyMessage(payload: DeviceSyncPayload, { tx }: SyncContext): Promise<void> {
  const incoming = payload.dbMessage;
  const status = incoming?.message?.status;
  if (!incoming || !status?.uuid || !incoming.peerUid) {
    throw new Malformed(
      `${NAME}: cannot apply "${payload.syncType}": it carries no message uuid or peer uid`,
    );
  }
  if (payload.peerUid !== "" && payload.peerUid !== incoming.peerUid) {
    throw new Malformed(
      `${NAME}: cannot apply "${payload.syncType}": peer uid ${payload.peerUid} ≠ message peer uid ${incoming.peerUid}`,
    );
  }
  await storeSynced(tx, incoming, payload.syncType);
}

/**
 * Stores one synced row, or merges it into the stored one (see
 * {@linkcode applyMessage}); emits `message.stored` or `message.status` with
 * origin "sync". Resolves true when the row was new here.
 *
 * @throws {Malformed} for a row without uuid or peer uid, or in a device's conversation
 */
export async function storeSynced(tx: Tx, incoming: DbMessage, syncType: string): Promise<boolean> {
  const status = incoming.message?.status;
  if (!status?.uuid || !incoming.peerUid) {
    throw new Malformed(
      `${NAME}: cannot apply "${syncType}": it carries no message uuid or peer uid`,
    );
  }
  const existing = tx.peer(incoming.peerUid);
  if (existing && existing.type !== PeerType.CONTACT) {
    throw new Malformed(
      `${NAME}: cannot store a message in conversation ${incoming.peerUid}: it is a device`,
    );
  }
  const stored = await tx.message(incoming.peerUid, status.uuid);
  if (!stored) {
    const row = clone(DbMessageSchema, incoming);
    row.synced = true;
    row.filePaths = [];
    row.storedAt = tx.now;
    row.refreshCount = 0;
    row.refreshedAt = 0;
    tx.putMessage(row);
    await tx.emit("message.stored", { message: row, origin: "sync" });
    return true;
  }
  let changed = mergeStatus(stored.message!.status!, status);
  if (mergeFailure(stored, incoming)) changed = true;
  if (stored.pendingForward && !incoming.pendingForward) {
    stored.pendingForward = false;
    changed = true;
  }
  if (!changed) return false;
  tx.putMessage(stored);
  await tx.emit("message.status", { message: stored, origin: "sync" });
  return false;
}

/**
 * A relay refused the message for good: the first failure (earliest failed_at, then the smaller
 * reason) wins, so every device ends with the same reason whatever the arrival order.
 */
function mergeFailure(local: DbMessage, remote: DbMessage): boolean {
  if (remote.failedAt <= 0) return false;
  const earlier = local.failedAt <= 0 || remote.failedAt < local.failedAt ||
    (remote.failedAt === local.failedAt && remote.failedReason < local.failedReason);
  if (!earlier) return false;
  local.failedAt = remote.failedAt;
  local.failedReason = remote.failedReason;
  return true;
}

/** Moves each reached state to its earliest known time; returns whether anything changed. */
function mergeStatus(local: ConversationStatus, remote: ConversationStatus): boolean {
  let changed = false;
  for (const field of ["sent", "received", "processed"] as const) {
    const value = remote[field];
    if (value > 0 && (local[field] === 0 || value < local[field])) {
      local[field] = value;
      changed = true;
    }
  }
  return changed;
}

/**
 * Copies the keys of `from` — this side's key pairs, the contact's card, the
 * previous and retired keys and their version — onto `to` (a reset or rekey
 * made them on the contact's primary).
 */
export function adoptKeys(to: PeerRecord, from: PeerRecord): void {
  to.myIdentity = from.myIdentity;
  to.myEncryption = from.myEncryption;
  to.myLookup = from.myLookup;
  to.mySymKey = from.mySymKey;
  to.myPullServers = from.myPullServers;
  to.contact = from.contact;
  to.previousKeys = from.previousKeys;
  to.retiredIdentityKeys = from.retiredIdentityKeys;
  to.keysVersion = from.keysVersion;
}

/**
 * peer_update: last-writer-wins on (updated_at, updated_by) of the record.
 *
 * A newer record moves the fields a user edits — name, avatar, visible,
 * blocked, settings. The keys and the card move only with a higher keys
 * version (a session reset or rekey, kernel/rekey.ts), never onto the device
 * that holds the ratchet (which made them). The primary designation moves only with a higher
 * primary epoch (a planned handover), and a record can never take the
 * primary role away from the device that holds the ratchet, nor hand a
 * ratchet to one that does not: two devices pulling one contact queue would
 * each ack half of it.
 */
export function applyPeerRecord(
  payload: DeviceSyncPayload,
  { tx, host, from }: SyncContext,
): Promise<void> {
  const record = decode(PeerRecordSchema, payload.peerData);
  if (
    record.type !== PeerType.CONTACT || record.uid === "" || !record.contact || !record.myLookup
  ) {
    throw new Malformed(
      `${NAME}: cannot apply peer_update: not a complete contact record (uid "${record.uid}")`,
    );
  }
  if (payload.peerUid !== "" && payload.peerUid !== record.uid) {
    throw new Malformed(
      `${NAME}: cannot apply peer_update: peer uid ${payload.peerUid} ≠ record uid ${record.uid}`,
    );
  }
  record.ratchet = new Uint8Array();
  record.handoverRatchet = new Uint8Array();
  record.handoverAt = 0;
  record.pendingCard = undefined;
  record.pendingRatchetKey = undefined;
  const incoming = {
    at: record.updatedAt || payload.timestamp,
    by: record.updatedBy || payload.originDevice,
  };
  record.updatedAt = incoming.at;
  record.updatedBy = incoming.by;
  const me = host.deviceUid();
  const claimed = record.primaryDeviceUid || payload.originDevice;
  const local = tx.peer(record.uid);
  if (local && local.type !== PeerType.CONTACT) {
    throw new Malformed(`${NAME}: cannot apply peer_update: uid ${record.uid} is a device here`);
  }
  if (!local) {
    if (claimed === me) {
      throw new Malformed(
        `${NAME}: cannot apply peer_update for ${record.uid} from "${from.name}": it names this device primary, ` +
          `but this device never paired with that contact`,
      );
    }
    record.primaryDeviceUid = claimed;
    tx.putPeer(record);
    return tx.emit("peer.updated", { peer: record, created: true, origin: "sync" });
  }
  let next: PeerRecord | undefined;
  // The primary designation follows the highest primary epoch, whatever the timestamps (a planned
  // handover raised it); only the handover itself, which carries the ratchet, makes this device
  // primary, and a device that holds the ratchet keeps it.
  if (record.primaryEpoch > local.primaryEpoch && claimed !== me && local.ratchet.length === 0) {
    next = clone(PeerRecordSchema, local);
    next.primaryDeviceUid = claimed;
    next.primaryEpoch = record.primaryEpoch;
  } else if (record.primaryEpoch === local.primaryEpoch && claimed !== host.primaryOf(local)) {
    host.log(
      "warn",
      `peer_update for ${record.uid} names primary ${claimed}, kept ${host.primaryOf(local)}`,
    );
  }
  if (record.keysVersion > local.keysVersion && local.ratchet.length === 0) {
    next ??= clone(PeerRecordSchema, local);
    adoptKeys(next, record);
  }
  if (wins(incoming, { at: local.updatedAt, by: local.updatedBy })) {
    next ??= clone(PeerRecordSchema, local);
    next.name = record.name;
    next.avatar = record.avatar;
    next.visible = record.visible;
    next.blocked = record.blocked;
    next.settings = record.settings;
    next.updatedAt = incoming.at;
    next.updatedBy = incoming.by;
  }
  if (!next) return Promise.resolve();
  tx.putPeer(next);
  return tx.emit("peer.updated", { peer: next, created: false, origin: "sync" });
}

/**
 * identity_update: the profile, last-writer-wins on (updated_at, updated_by);
 * and, for a new install that joined through pairing, the identity uid and
 * root public key it did not have yet. A private key in the payload is
 * ignored; an identity uid that differs from a known one is refused.
 */
async function applyIdentity(payload: DeviceSyncPayload, { tx }: SyncContext): Promise<void> {
  const profile = decode(ProfileSchema, payload.identityData);
  const shared = payload.pluginData.length > 0
    ? decode(IdentityRecordSchema, payload.pluginData)
    : undefined;
  const identity = clone(IdentityRecordSchema, tx.identity());
  let changed = false;
  if (shared?.uid) {
    if (identity.uid === "") {
      identity.uid = shared.uid;
      changed = true;
    } else if (identity.uid !== shared.uid) {
      throw new Malformed(
        `${NAME}: cannot apply identity_update for identity ${shared.uid}: this device belongs to ${identity.uid}`,
      );
    }
  }
  const rootPublic = shared?.root?.publicKey;
  if (rootPublic?.length === 32 && !identity.root?.publicKey.length) {
    identity.root = create(KeyPairSchema, { publicKey: rootPublic });
    changed = true;
  }
  const list = shared?.deviceList;
  if (list && list.version > (identity.deviceList?.version ?? 0)) {
    identity.deviceList = assertDeviceList(identity, list, "the device list of an identity_update");
    changed = true;
  }
  const local = identity.profile;
  const incoming = {
    at: profile.updatedAt || payload.timestamp,
    by: profile.updatedBy || payload.originDevice,
  };
  if (!local || wins(incoming, { at: local.updatedAt, by: local.updatedBy })) {
    identity.profile = create(ProfileSchema, {
      nickname: profile.nickname,
      avatars: profile.avatars,
      status: profile.status,
      updatedAt: incoming.at,
      updatedBy: incoming.by,
    });
    changed = true;
  }
  if (!changed) return;
  tx.putIdentity(identity);
  await tx.emit("identity.updated", { identity, origin: "sync" });
}

/** server_add: the relay joins the identity's servers (once per relay uid). */
async function applyServer(payload: DeviceSyncPayload, { tx }: SyncContext): Promise<void> {
  const server = decode(ServerCardSchema, payload.pluginData);
  if (server.uid === "" || server.encryptionPublicKey.length !== 32) {
    throw new Malformed(
      `${NAME}: cannot apply server_add: the relay card has no uid or no 32-byte key`,
    );
  }
  const identity = clone(IdentityRecordSchema, tx.identity());
  if (identity.servers.some((s) => s.uid === server.uid)) return;
  identity.servers.push(server);
  tx.putIdentity(identity);
  await tx.emit("server.added", { server, origin: "sync" });
}

/**
 * device_introduce: stores the sibling device peer minted for this device by
 * the device that paired the newcomer. An introduction to a sibling already
 * known (by peer uid or device uid) is ignored: its live ratchet stays.
 */
async function applyIntroductionWith(
  payload: DeviceSyncPayload,
  { tx, host }: SyncContext,
  options: { unsignedList: boolean },
): Promise<void> {
  const intro = decode(DeviceIntroductionSchema, payload.pluginData);
  const peer = intro.peer;
  if (
    !peer || peer.type !== PeerType.DEVICE || !peer.contact || !peer.myLookup || !peer.myIdentity ||
    peer.ratchet.length === 0 || intro.deviceUid === "" || peer.deviceUid !== intro.deviceUid
  ) {
    throw new Malformed(`${NAME}: cannot apply device_introduce: the device record is incomplete`);
  }
  if (tx.identity().removedDevices.includes(intro.deviceUid)) {
    throw new Malformed(
      `${NAME}: cannot apply device_introduce: device ${intro.deviceUid} was removed`,
    );
  }
  if (intro.deviceUid === host.deviceUid()) {
    throw new Malformed(
      `${NAME}: cannot apply device_introduce: it introduces this device to itself`,
    );
  }
  const identity = tx.identity();
  if (!options.unsignedList) {
    if (!identity.root?.publicKey.length) {
      // A newcomer learns the root from its pairing device's identity_update, sent first.
      throw new Deferred(`device_introduce before this device learned its identity root`);
    }
    const list = assertDeviceList(identity, intro.list, "device_introduce");
    if (!list.deviceUids.includes(intro.deviceUid)) {
      throw new Malformed(
        `${NAME}: cannot apply device_introduce: the root-signed list does not name ${intro.deviceUid}`,
      );
    }
    if (list.version > (identity.deviceList?.version ?? 0)) {
      const next = clone(IdentityRecordSchema, identity);
      next.deviceList = list;
      tx.putIdentity(next);
    }
  }
  if (tx.peer(peer.uid) || tx.devices().some((d) => d.deviceUid === intro.deviceUid)) {
    host.log(
      "info",
      `device ${intro.deviceName} (${intro.deviceUid}) is already a sibling; introduction ignored`,
    );
    return;
  }
  const device = clone(PeerRecordSchema, peer);
  device.name = intro.deviceName || device.name;
  device.updatedAt = tx.now;
  device.updatedBy = host.deviceUid();
  tx.putPeer(device);
  await tx.emit("peer.updated", { peer: device, created: true, origin: "sync" });
}

/** The handlers of the built-in sync types, by sync type. */
export function builtInHandlers(
  options: { unsignedList: boolean },
): Map<string, SyncHandler> {
  const applyIntroduction = (payload: DeviceSyncPayload, context: SyncContext) =>
    applyIntroductionWith(payload, context, options);
  return new Map<string, SyncHandler>([
    [SYNC_TYPES.msg, applyMessage],
    [SYNC_TYPES.status, applyMessage],
    [SYNC_TYPES.peerUpdate, applyPeerRecord],
    [SYNC_TYPES.identityUpdate, applyIdentity],
    [SYNC_TYPES.serverAdd, applyServer],
    [SYNC_TYPES.deviceIntroduce, applyIntroduction],
  ]);
}

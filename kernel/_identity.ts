/**
 * The identity and local peer changes a `Kernel` method stages in its
 * transaction: a new identity record with fresh keys, the profile (last
 * writer wins across devices), a contact's local settings, another relay.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import {
  type IdentityRecord,
  IdentityRecordSchema,
  KeyPairSchema,
  type PeerRecord,
  ProfileSchema,
  type ServerCard,
} from "../proto/mod.ts";
import {
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  type KeyPair,
  randomUuid,
} from "../crypto/mod.ts";
import { isPending } from "./invitation.ts";
import type { Tx } from "./plugin.ts";
import type { IdentityRecordInit } from "./_types.ts";
import type { Random } from "../ports/mod.ts";

/** See `Kernel.newIdentityRecord`; `createdAt` is the clock's time, in ms. */
export function newIdentityRecord(
  random: Random,
  createdAt: number,
  options: IdentityRecordInit,
): IdentityRecord {
  const kp = (pair: KeyPair) =>
    create(KeyPairSchema, { privateKey: pair.privateKey, publicKey: pair.publicKey });
  const deviceSigning = generateSigningKeyPair(random);
  const record = create(IdentityRecordSchema, {
    uid: options.uid,
    deviceEncryption: kp(generateEncryptionKeyPair(random)),
    deviceSigning: kp(deviceSigning),
    deviceUid: randomUuid(random),
    deviceName: options.deviceName,
    servers: options.servers,
    createdAt,
  });
  if (options.withRoot) record.root = kp(generateSigningKeyPair(random));
  return record;
}

/** Stages the first identity of a user, with its profile. */
export function stageFirstIdentity(
  tx: Tx,
  identity: IdentityRecord,
  nickname: string,
): IdentityRecord {
  identity.profile = create(ProfileSchema, {
    nickname,
    updatedAt: tx.now,
    updatedBy: identity.deviceUid,
  });
  tx.putIdentity(identity);
  return identity;
}

/** See `Kernel.updateProfile`. */
export async function stageProfile(
  tx: Tx,
  changes: { nickname?: string; status?: string; avatars?: Uint8Array[] },
): Promise<IdentityRecord> {
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
}

/** See `Kernel.updatePeer`; `deviceUid` is this device's, the change's author. */
export async function stagePeerChanges(
  tx: Tx,
  uid: string,
  changes: {
    name?: string;
    blocked?: boolean;
    visible?: boolean;
    settings?: PeerRecord["settings"];
  },
  deviceUid: string,
): Promise<PeerRecord> {
  const peer = tx.peer(uid);
  if (!peer || isPending(peer)) throw new TypeError(`Cannot update peer ${uid}: no such peer`);
  if (changes.name !== undefined) peer.name = changes.name;
  if (changes.blocked !== undefined) peer.blocked = changes.blocked;
  if (changes.visible !== undefined) peer.visible = changes.visible;
  if (changes.settings !== undefined) peer.settings = changes.settings;
  peer.updatedAt = tx.now;
  peer.updatedBy = deviceUid;
  tx.putPeer(peer);
  await tx.emit("peer.updated", { peer, created: false, origin: "local" });
  return peer;
}

/** See `Kernel.addServer`; `added` is false when the identity had the relay already. */
export async function stageServer(
  tx: Tx,
  server: ServerCard,
): Promise<{ identity: IdentityRecord; added: boolean }> {
  const identity = clone(IdentityRecordSchema, tx.identity());
  if (identity.servers.some((s) => s.uid === server.uid)) return { identity, added: false };
  identity.servers.push(server);
  tx.putIdentity(identity);
  await tx.emit("server.added", { server, origin: "local" });
  return { identity, added: true };
}

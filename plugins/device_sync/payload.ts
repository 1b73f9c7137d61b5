/**
 * The device sync payload (PROTOCOL.md, "The device sync payload"): the
 * built-in sync types, the dedup ids of message payloads, and the functions
 * that strip what must never leave a device before a record is synced.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { decode, encode } from "../../proto/mod.ts";
import {
  type DbMessage,
  DbMessageSchema,
  DeviceListSchema,
  type DeviceSyncPayload,
  DeviceSyncPayloadSchema,
  type IdentityRecord,
  IdentityRecordSchema,
  KeyPairSchema,
  type PeerRecord,
  PeerRecordSchema,
  type Profile,
  ProfileSchema,
} from "../../proto/mod.ts";
import { Malformed } from "../../kernel/mod.ts";

/** The `UserMessage.type` that carries a {@linkcode DeviceSyncPayload} in `appdata`. */
export const DEVICE_SYNC_TYPE = "device_sync";

/** The sync types device_sync itself handles; plugins register others. */
export const SYNC_TYPES = {
  /** A message stored in a conversation (sent, received, or confirmed by the primary). */
  msg: "msg",
  /** A stored message's status advanced. */
  status: "status",
  /** A contact was created or changed. */
  peerUpdate: "peer_update",
  /** The profile changed. */
  identityUpdate: "identity_update",
  /** A relay was added. */
  serverAdd: "server_add",
  /** The pairing material for a new sibling pair. */
  deviceIntroduce: "device_introduce",
  /** Stored messages of one conversation, for a new sibling or a catch-up. */
  history: "history",
  /** A sibling back from a long absence asks for everything since a time. */
  catchUp: "catch_up",
  /** A device leaves the user's devices for good. */
  deviceRemove: "device_remove",
} as const;

/** The name of a built-in sync type. */
export type BuiltInSyncType = typeof SYNC_TYPES[keyof typeof SYNC_TYPES];

/** The largest payload a sibling may send, in bytes (the user message limit bounds it too). */
export const SYNC_PAYLOAD_BYTES_MAX = 256 * 1024;

/**
 * Serializes a sync payload for `UserMessage.appdata`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DeviceSyncPayloadSchema } from "../../proto/gen/meow_pb.ts";
 * import { decodeSyncPayload, encodeSyncPayload } from "./payload.ts";
 * const bytes = encodeSyncPayload(create(DeviceSyncPayloadSchema, { syncType: "msg", dedupId: "d" }));
 * assert(decodeSyncPayload(bytes).dedupId === "d");
 * ```
 */
export function encodeSyncPayload(payload: DeviceSyncPayload): Uint8Array {
  return encode(DeviceSyncPayloadSchema, payload);
}

/**
 * Decodes a sync payload from `UserMessage.appdata` and checks what every
 * payload must carry.
 *
 * @throws {Malformed} for bytes that do not decode, or a payload without type or dedup id
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSyncPayload } from "./payload.ts";
 * let malformed = false;
 * try {
 *   decodeSyncPayload(new Uint8Array([0xff, 0xff]));
 * } catch (e) {
 *   malformed = (e as Error).name === "Malformed";
 * }
 * assert(malformed);
 * ```
 */
export function decodeSyncPayload(bytes: Uint8Array): DeviceSyncPayload {
  const payload = decode(DeviceSyncPayloadSchema, bytes, { bytesMax: SYNC_PAYLOAD_BYTES_MAX });
  if (payload.syncType === "" || payload.dedupId === "") {
    throw new Malformed(
      `device_sync: cannot use a sync payload without sync_type or dedup_id ` +
        `(type "${payload.syncType}", dedup id "${payload.dedupId}")`,
    );
  }
  return payload;
}

/**
 * The dedup id of a `msg` or `status` payload: the message uuid plus the state
 * it carries, so a later state of the same message (a confirmed forward, a
 * read receipt, a failure) is a new payload while a repeat of one state is dropped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DbMessageSchema } from "../../proto/gen/meow_pb.ts";
 * import { messageDedupId } from "./payload.ts";
 * const m = create(DbMessageSchema, { peerUid: "p", message: { status: { uuid: "u", sent: 5 } } });
 * assert(messageDedupId("msg", m) === "msg:u:00:5:0:0");
 * ```
 */
export function messageDedupId(syncType: string, message: DbMessage): string {
  const status = message.message?.status;
  if (!status?.uuid) throw new TypeError(`device_sync: cannot sync a message without a uuid`);
  const flags = `${message.outbound ? 1 : 0}${message.pendingForward ? 1 : 0}`;
  const id =
    `${syncType}:${status.uuid}:${flags}:${status.sent}:${status.received}:${status.processed}`;
  // A failure is news: its sync must not be taken for a repeat of the state before it.
  return message.failedAt > 0 ? `${id}:failed:${message.failedAt}` : id;
}

/**
 * The copy of a stored message that travels: local file paths stay behind
 * (files are never copied, their metadata travels in `message.files`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DbMessageSchema } from "../../proto/gen/meow_pb.ts";
 * import { messageForSync } from "./payload.ts";
 * const m = create(DbMessageSchema, { peerUid: "p", filePaths: ["/home/a/cat.png"] });
 * assert(messageForSync(m).filePaths.length === 0);
 * ```
 */
export function messageForSync(message: DbMessage): DbMessage {
  const copy = clone(DbMessageSchema, message);
  copy.filePaths = [];
  copy.synced = false;
  return copy;
}

/**
 * The contact record that travels in `peer_update`: everything but the
 * ratchet (only the primary holds it) and any pending-invitation material,
 * with `primary_device_uid` naming the primary for the receiver (this
 * device's uid when it is the primary itself).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { PeerRecordSchema } from "../../proto/gen/meow_pb.ts";
 * import { peerForSync } from "./payload.ts";
 * const peer = create(PeerRecordSchema, { uid: "p", ratchet: new Uint8Array([1, 2]) });
 * const sent = peerForSync(peer, "phone");
 * assert(sent.ratchet.length === 0 && sent.primaryDeviceUid === "phone");
 * ```
 */
export function peerForSync(peer: PeerRecord, deviceUid: string): PeerRecord {
  const copy = clone(PeerRecordSchema, peer);
  copy.ratchet = new Uint8Array();
  copy.pendingCard = undefined;
  copy.pendingRatchetKey = undefined;
  copy.handoverRatchet = new Uint8Array();
  copy.handoverAt = 0;
  if (copy.primaryDeviceUid === "") copy.primaryDeviceUid = deviceUid;
  return copy;
}

/**
 * The profile that travels in `identity_update`: nickname, avatars, status and
 * their last-writer-wins version; never a key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { ProfileSchema } from "../../proto/gen/meow_pb.ts";
 * import { profileForSync } from "./payload.ts";
 * assert(profileForSync(create(ProfileSchema, { nickname: "al" })).nickname === "al");
 * ```
 */
export function profileForSync(profile: Profile | undefined): Profile {
  return create(ProfileSchema, {
    nickname: profile?.nickname ?? "",
    avatars: profile?.avatars ?? [],
    status: profile?.status ?? "",
    updatedAt: profile?.updatedAt ?? 0,
    updatedBy: profile?.updatedBy ?? "",
  });
}

/**
 * The public part of an identity a new sibling needs: the identity uid and
 * the root *public* key. Built field by field, so no private key, device key
 * or hidden peer can ride along.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { IdentityRecordSchema } from "../../proto/gen/meow_pb.ts";
 * import { publicIdentity } from "./payload.ts";
 * const full = create(IdentityRecordSchema, {
 *   uid: "me",
 *   root: { privateKey: new Uint8Array(32).fill(7), publicKey: new Uint8Array(32).fill(9) },
 *   hiddenPeers: ["secret"],
 * });
 * const shared = publicIdentity(full);
 * assert(shared.root?.privateKey.length === 0 && shared.hiddenPeers.length === 0);
 * ```
 */
export function publicIdentity(identity: IdentityRecord): IdentityRecord {
  const shared = create(IdentityRecordSchema, { uid: identity.uid });
  if (identity.root?.publicKey.length) {
    shared.root = create(KeyPairSchema, { publicKey: identity.root.publicKey });
  }
  if (identity.deviceList) shared.deviceList = clone(DeviceListSchema, identity.deviceList);
  return shared;
}

/** A last-writer-wins version: the change's time, then the device that made it. */
export interface Version {
  /** When the record last changed, in ms. */
  at: number;
  /** The device uid that changed it (the tie-break). */
  by: string;
}

/**
 * Whether version `a` wins over `b`: later time, or the same time and the
 * greater device uid. Equal versions do not win (applying is idempotent).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wins } from "./payload.ts";
 * assert(wins({ at: 2, by: "a" }, { at: 1, by: "z" }));
 * assert(wins({ at: 1, by: "b" }, { at: 1, by: "a" }));
 * assert(!wins({ at: 1, by: "a" }, { at: 1, by: "a" }));
 * ```
 */
export function wins(a: Version, b: Version): boolean {
  return a.at > b.at || (a.at === b.at && a.by > b.by);
}

export { containsBytes } from "../../crypto/mod.ts";

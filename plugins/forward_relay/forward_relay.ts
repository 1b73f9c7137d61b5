/**
 * The forward_relay plugin (DESIGN.md, "Primary relay"): only a contact's
 * primary device — the one that completed the invitation with it — holds the
 * contact's ratchet and pulls its queue. Any other device of the user hands
 * what it sends to that contact (chat messages, acks, read receipts, any
 * plugin's message) to the primary as a `forward` sync; the primary encrypts
 * it with its own ratchet and syncs the stored message back to every sibling.
 * The contact sees one identity key, one ratchet and one lookup key, whichever
 * device wrote.
 *
 * While the primary is gone there is no handover: forwards wait in the
 * primary's device queue on the relay (the relay keeps them for its
 * retention), and the sender's copy stays `pending_forward`. When the primary
 * polls again it sends each forward exactly once: the send, the stored
 * message, the seen mark of the forward and the sync back to the siblings are
 * one transaction, and a forward pulled twice (a crash before the relay ack)
 * is dropped by the ratchet and by its dedup id.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { decode, encode } from "../../proto/mod.ts";
import {
  type DbMessage,
  DbMessageSchema,
  type DeviceSyncPayload,
  IdentityRecordSchema,
  type PeerRecord,
  PeerRecordSchema,
  PeerType,
  type UserMessage,
  UserMessageSchema,
} from "../../proto/mod.ts";
import { randomUuid } from "../../crypto/mod.ts";
import { Deferred, Malformed } from "../../kernel/mod.ts";
import { assertFits, relayLimits, USER_MESSAGE_BYTES_MAX } from "../../kernel/mod.ts";
import { apiKey, type Plugin, type PluginHost, type Tx } from "../../kernel/mod.ts";
import { addressed, CHAT_TYPE, REFRESH_ATTEMPTS_MAX, refreshDue } from "../chat/mod.ts";
import { DEVICE_SYNC_API, type SyncContext } from "../device_sync/mod.ts";
import { adoptKeys, messageForSync, SYNC_TYPES } from "../device_sync/mod.ts";

const NAME = "forward_relay";

/** Options of {@linkcode forwardRelayPlugin}. */
export interface ForwardRelayOptions {
  /**
   * Send a forward again when its confirmation has not come back within half
   * the retention. Only a test build that shows the mechanism's worth turns it off.
   * @default {true}
   */
  refresh?: boolean;
  /**
   * Pass a forward that reaches an old primary on to the new one, and have a
   * new primary send what is still pending for its contact. Only a test build
   * that shows the mechanism's worth turns it off.
   * @default {true}
   */
  reforward?: boolean;
  /**
   * When a device that was primary for contacts is removed, the remover takes them over with a
   * session reset. Only a test build that shows the mechanism's worth turns it off.
   * @default {true}
   */
  takeover?: boolean;
  /**
   * When a device is removed, every contact's primary sends it new keys (a rekey). Only a test
   * build that shows the mechanism's worth turns it off.
   * @default {true}
   */
  rekey?: boolean;
}

/** The sync type of a message a sibling hands to the contact's primary. */
export const FORWARD_SYNC_TYPE = "forward";
/** The sync type that hands a contact's live ratchet to the next primary. */
export const HANDOVER_SYNC_TYPE = "handover";
/** The sync type by which a new primary confirms it installed a handover. */
export const HANDOVER_ACK_SYNC_TYPE = "handover_ack";

/**
 * The typed key of the forward_relay plugin's api: `kernel.api(FORWARD_RELAY_API)`
 * is a {@linkcode ForwardRelayApi}.
 */
export const FORWARD_RELAY_API = apiKey<ForwardRelayApi>(NAME);

/** What the forward_relay plugin offers, under {@linkcode FORWARD_RELAY_API}. */
export interface ForwardRelayApi {
  /**
   * The device uid of a contact's primary: this device's own uid when it is
   * the primary, undefined for an unknown peer or a device peer; read in `tx`.
   */
  primaryOf(tx: Tx, peerUid: string): string | undefined;
  /**
   * Planned handover: makes sibling `toDeviceUid` the primary of contact
   * `peerUid`. In one transaction this device stops (it clears its copy of
   * the ratchet, names the new primary with the next primary epoch), sends the
   * new primary the live ratchet (`handover`) and every sibling the new
   * designation (`peer_update`). The contact sees nothing change. Resolves
   * with the new epoch.
   *
   * @throws {TypeError} when this device is not the contact's primary or `toDeviceUid` is not a sibling
   */
  handover(peerUid: string, toDeviceUid: string): Promise<number>;
  /** The contacts this device is primary for (uids), read in `tx`. */
  primaryFor(tx: Tx): string[];
  /**
   * Retires this device: hands every contact it is primary for over to
   * sibling `toDeviceUid` (default: its first sibling), then leaves the
   * user's devices (device_sync `removeDevice` of itself). Resolves with the
   * contacts handed over. Run again after a crash, it goes on where it stopped.
   *
   * @throws {TypeError} when this device has no sibling to hand over to
   */
  retire(toDeviceUid?: string): Promise<string[]>;
}

/**
 * The device uid of a contact's primary as the device `deviceUid` sees it:
 * the device the record names, else `deviceUid` itself (a record that names
 * none was paired here and not synced yet).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { PeerRecordSchema } from "../../proto/gen/meow_pb.ts";
 * import { primaryDeviceOf } from "./forward_relay.ts";
 * assert.equal(primaryDeviceOf(create(PeerRecordSchema, {}), "laptop"), "laptop");
 * assert.equal(primaryDeviceOf(create(PeerRecordSchema, { primaryDeviceUid: "phone" }), "laptop"), "phone");
 * ```
 */
export function primaryDeviceOf(peer: PeerRecord, deviceUid: string): string {
  return peer.primaryDeviceUid || deviceUid;
}

/**
 * Creates the forward_relay plugin; register it after `device_sync`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatPlugin } from "../chat/mod.ts";
 * import { dedupPlugin } from "../dedup/mod.ts";
 * import { deviceSyncPlugin } from "../device_sync/mod.ts";
 * import { forwardRelayPlugin } from "./mod.ts";
 * const plugins = [chatPlugin(), dedupPlugin(), deviceSyncPlugin(), forwardRelayPlugin()];
 * assert(plugins[3].name === "forward_relay");
 * ```
 */
export function forwardRelayPlugin(options: ForwardRelayOptions = {}): Plugin {
  const refresh = options.refresh ?? true;
  const reforward = options.reforward ?? true;
  const takeover = options.takeover ?? true;
  const rekey = options.rekey ?? true;
  let host: PluginHost | undefined;

  function h(): PluginHost {
    if (!host) {
      throw new TypeError(`${NAME}: the plugin is not set up (open a kernel with it first)`);
    }
    return host;
  }

  /** On the primary: send the forwarded message with the contact's ratchet, store it, sync it back. */
  async function applyForward(
    payload: DeviceSyncPayload,
    { tx, from }: SyncContext,
  ): Promise<void> {
    const peer = tx.peer(payload.forwardPeerUid);
    if (!peer || peer.type !== PeerType.CONTACT) {
      throw new Malformed(
        `${NAME}: cannot forward for "${from.name}": no contact ${payload.forwardPeerUid} on this device`,
      );
    }
    const own = h().deviceUid();
    const primary = primaryDeviceOf(peer, own);
    if (primary !== own && payload.primaryEpoch > peer.primaryEpoch) {
      // The sender knows a newer primary epoch: most likely this device is the new primary and
      // the handover has not been installed yet. Kept on the relay until it is.
      throw new Deferred(
        `forward for "${peer.name}" at epoch ${payload.primaryEpoch}, this device is at ` +
          `${peer.primaryEpoch}: the handover comes first`,
      );
    }
    if (primary !== own && peer.primaryEpoch > 0 && reforward) {
      // Handed over: a forward that still reaches an old primary goes on to the one it knows.
      await h().api(DEVICE_SYNC_API).dispatch(tx, {
        syncType: FORWARD_SYNC_TYPE,
        peerUid: peer.uid,
        forwardPeerUid: peer.uid,
        forwardPayload: payload.forwardPayload,
        primaryEpoch: peer.primaryEpoch,
        dedupId: `${payload.dedupId}:e${peer.primaryEpoch}`,
      }, { to: [primary] });
      return;
    }
    if (primary !== own || peer.ratchet.length === 0) {
      throw new Malformed(
        `${NAME}: cannot forward to "${peer.name}" for "${from.name}": this device is not its primary ` +
          `(primary ${peer.primaryDeviceUid || "unknown"})`,
      );
    }
    // Addressed with the keys the sender knew; a reset or rekey since changed them.
    const message = addressed(
      peer,
      decode(UserMessageSchema, payload.forwardPayload, { bytesMax: USER_MESSAGE_BYTES_MAX }),
    );
    const uuid = message.status?.uuid ?? "";
    const known = message.type === CHAT_TYPE && uuid !== ""
      ? await tx.message(peer.uid, uuid)
      : undefined;
    if (known?.outbound && !known.pendingForward) {
      // A forward sent again (its confirmation had not come back in time): sent once already,
      // so only the confirmation goes again.
      await h().api(DEVICE_SYNC_API).dispatch(tx, {
        syncType: SYNC_TYPES.msg,
        peerUid: peer.uid,
        dbMessage: messageForSync(known),
      }, { to: [from.deviceUid] });
      return;
    }
    await sendAsPrimary(tx, peer, message, known);
  }

  /**
   * On the primary: sends `message` to the contact with its ratchet and, for a chat message,
   * stores it as sent (`known`: the row this device holds already, pending_forward) and syncs the
   * row to every sibling, which turns their pending copies into sent.
   */
  async function sendAsPrimary(
    tx: Tx,
    peer: PeerRecord,
    message: UserMessage,
    known: DbMessage | undefined,
  ): Promise<void> {
    const uuid = message.status?.uuid ?? "";
    await tx.sendDirect(peer.uid, addressed(peer, message));
    if (message.type !== CHAT_TYPE || uuid === "") return; // acks and receipts just go out
    let row = known;
    if (row) {
      row.pendingForward = false;
      tx.putMessage(row);
      await tx.emit("message.status", { message: row, origin: "sync" });
    } else {
      row = create(DbMessageSchema, {
        peerUid: peer.uid,
        outbound: true,
        message,
        synced: true,
        pendingForward: false,
        storedAt: tx.now,
      });
      tx.putMessage(row);
      await tx.emit("message.stored", { message: row, origin: "sync" });
    }
    await h().api(DEVICE_SYNC_API).dispatch(tx, {
      syncType: SYNC_TYPES.msg,
      peerUid: peer.uid,
      dbMessage: messageForSync(row),
    });
  }

  /**
   * handover, on the new primary: installs the live ratchet the old primary
   * sent, with its epoch. Refused (Malformed, nothing changes) unless it comes
   * from the device this one takes for the contact's primary, names this
   * device, carries a ratchet and a higher epoch; a repeat is ignored.
   */
  async function applyHandover(
    payload: DeviceSyncPayload,
    { tx, from }: SyncContext,
  ): Promise<void> {
    const record = decode(PeerRecordSchema, payload.peerData);
    const own = h().deviceUid();
    const local = tx.peer(record.uid);
    if (!local || local.type !== PeerType.CONTACT || record.uid !== payload.peerUid) {
      throw new Malformed(
        `${NAME}: refused a handover from "${from.name}": no contact ${record.uid} here`,
      );
    }
    if (local.ratchet.length > 0 && local.primaryEpoch >= record.primaryEpoch) {
      await ackHandover(tx, local, from); // installed already: a repeat; its ack may have expired
      return;
    }
    if (record.ratchet.length === 0 || record.primaryDeviceUid !== own) {
      throw new Malformed(
        `${NAME}: refused a handover of "${local.name}" from "${from.name}": it hands no ratchet to this device`,
      );
    }
    if (
      primaryDeviceOf(local, own) !== from.deviceUid || record.primaryEpoch <= local.primaryEpoch
    ) {
      throw new Malformed(
        `${NAME}: refused a handover of "${local.name}" from "${from.name}": ` +
          `it is not that contact's primary here (epoch ${local.primaryEpoch}, offered ${record.primaryEpoch})`,
      );
    }
    const next = clone(PeerRecordSchema, local);
    if (record.keysVersion > local.keysVersion) adoptKeys(next, record); // rekeyed since
    next.ratchet = record.ratchet;
    next.primaryDeviceUid = "";
    next.primaryEpoch = record.primaryEpoch;
    tx.putPeer(next);
    await tx.emit("peer.updated", { peer: next, created: false, origin: "sync" });
    h().log("info", `now primary for "${local.name}" (epoch ${record.primaryEpoch})`);
    await ackHandover(tx, next, from);
    // What is still pending_forward here went to the old primary, which may be gone by now
    // (retired): the new primary sends it itself. A copy the old one sent as well is stored
    // once by the contact (one row per uuid).
    if (reforward) await sendPending(tx, next);
  }

  /** On a new primary: sends what is still pending_forward in `peer`'s conversation itself. */
  async function sendPending(tx: Tx, peer: PeerRecord): Promise<void> {
    for (const row of await tx.messages(peer.uid)) {
      if (!row.outbound || !row.pendingForward || row.failedAt > 0 || !row.message) continue;
      await sendAsPrimary(tx, tx.peer(peer.uid)!, clone(UserMessageSchema, row.message), row);
    }
  }

  /**
   * A device left (docs/DESIGN.md "Device lifecycle"). On the remover, the contacts it was
   * primary for move here: a session reset (new keys, a fresh session) with the next epoch, then
   * what waits for them goes. On every remaining device, each contact it is primary for gets new
   * keys inside the live session (a rekey), so nothing the removed device holds reads, pulls or
   * forges that conversation.
   */
  async function onDeviceRemoved(
    { deviceUid, origin, primaryFor }: { deviceUid: string; origin: string; primaryFor: string[] },
    tx: Tx,
  ): Promise<void> {
    const own = h().deviceUid();
    if (deviceUid === own) return; // this device left, or was removed: nothing more to do
    const reset = new Set<string>();
    for (const uid of origin === "local" && takeover ? primaryFor : []) {
      const peer = tx.peer(uid);
      if (!peer?.contact || peer.ratchet.length > 0) continue;
      const next = await tx.resetSession(uid);
      next.primaryDeviceUid = "";
      next.primaryEpoch = peer.primaryEpoch + 1;
      next.handoverRatchet = new Uint8Array();
      next.handoverAt = 0;
      tx.putPeer(next);
      reset.add(uid);
      h().log("info", `took over "${peer.name}" from removed device ${deviceUid} (session reset)`);
      await tx.emit("peer.updated", { peer: next, created: false, origin: "local" });
      await sendPending(tx, next);
    }
    if (!rekey) return;
    const servers = tx.identity().servers;
    const keepMs = servers.length === 0
      ? 0
      : Math.min(...servers.map((s) => relayLimits(s).retentionMs));
    for (const peer of tx.peers()) {
      if (reset.has(peer.uid) || primaryDeviceOf(peer, own) !== own) continue;
      if (!peer.contact || peer.ratchet.length === 0) continue;
      const next = await tx.rekey(peer.uid, keepMs);
      await tx.emit("peer.updated", { peer: next, created: false, origin: "local" });
    }
  }

  /** Tells the old primary its handover of `peer` is installed here. */
  async function ackHandover(tx: Tx, peer: PeerRecord, to: PeerRecord): Promise<void> {
    await h().api(DEVICE_SYNC_API).dispatch(tx, {
      syncType: HANDOVER_ACK_SYNC_TYPE,
      peerUid: peer.uid,
      primaryEpoch: peer.primaryEpoch,
    }, { to: [to.deviceUid] });
  }

  /**
   * handover_ack, on the old primary: the new one installed the handover of that epoch; the
   * copy of the ratchet kept to send again goes. A retiring device leaves once every handover
   * it made is confirmed.
   */
  async function applyHandoverAck(payload: DeviceSyncPayload, { tx }: SyncContext): Promise<void> {
    const local = tx.peer(payload.peerUid);
    if (!local || local.type !== PeerType.CONTACT) {
      throw new Malformed(`${NAME}: refused a handover_ack: no contact ${payload.peerUid} here`);
    }
    if (local.handoverRatchet.length === 0 || payload.primaryEpoch !== local.primaryEpoch) return;
    const next = clone(PeerRecordSchema, local);
    next.handoverRatchet = new Uint8Array();
    next.handoverAt = 0;
    tx.putPeer(next);
    const own = h().deviceUid();
    const retiring = tx.identity().removedDevices.includes(own) && tx.devices().length > 0;
    if (retiring && tx.peers().every((p) => p.handoverRatchet.length === 0)) {
      await h().api(DEVICE_SYNC_API).removeDeviceInTx(tx, own);
    }
  }

  /**
   * Sends the new primary the handover of `stopped` — this device's record after it handed the
   * contact over, the session kept in `handover_ratchet` — as the record with the live ratchet.
   */
  async function sendHandover(tx: Tx, stopped: PeerRecord): Promise<void> {
    const transfer = clone(PeerRecordSchema, stopped);
    transfer.ratchet = stopped.handoverRatchet;
    transfer.handoverRatchet = new Uint8Array();
    transfer.handoverAt = 0;
    transfer.pendingCard = undefined;
    transfer.pendingRatchetKey = undefined;
    await h().api(DEVICE_SYNC_API).dispatch(tx, {
      syncType: HANDOVER_SYNC_TYPE,
      peerUid: stopped.uid,
      peerData: encode(PeerRecordSchema, transfer),
    }, { to: [stopped.primaryDeviceUid] });
  }

  /** Sends the handover of `peer` (not confirmed yet) to its new primary again. */
  async function resendHandover(tx: Tx, peer: PeerRecord, nowMs: number): Promise<void> {
    const next = clone(PeerRecordSchema, peer);
    next.handoverAt = nowMs;
    tx.putPeer(next);
    await sendHandover(tx, next);
  }

  const api: ForwardRelayApi = {
    primaryOf(tx, peerUid) {
      const peer = tx.peer(peerUid);
      if (!peer || peer.type !== PeerType.CONTACT) return undefined;
      return primaryDeviceOf(peer, h().deviceUid());
    },

    primaryFor(tx) {
      const own = h().deviceUid();
      return tx.peers().filter((p) => primaryDeviceOf(p, own) === own && p.ratchet.length > 0)
        .map((p) => p.uid);
    },

    async retire(toDeviceUid) {
      const { contacts, successor } = await h().transact((tx) => {
        const sibling = toDeviceUid ?? tx.devices()[0]?.deviceUid;
        return Promise.resolve({ contacts: api.primaryFor(tx), successor: sibling });
      });
      if (contacts.length > 0 && successor === undefined) {
        throw new TypeError(
          `${NAME}: cannot retire this device: it has no sibling to hand over to`,
        );
      }
      for (const uid of contacts) await api.handover(uid, successor!);
      if (contacts.length === 0) {
        await h().api(DEVICE_SYNC_API).removeDevice(h().deviceUid());
        return contacts;
      }
      // Leaving waits for the new primary's confirmation of every handover (handover_ack): until
      // then this device sends them again, so none is lost on the relay. Marked as leaving now.
      await h().transact((tx) => {
        const identity = clone(IdentityRecordSchema, tx.identity());
        if (!identity.removedDevices.includes(h().deviceUid())) {
          identity.removedDevices.push(h().deviceUid());
        }
        tx.putIdentity(identity);
        return Promise.resolve();
      });
      return contacts;
    },

    handover(peerUid, toDeviceUid) {
      return h().transact(async (tx) => {
        const own = h().deviceUid();
        const peer = tx.peer(peerUid);
        if (!peer || peer.type !== PeerType.CONTACT) {
          throw new TypeError(`${NAME}: cannot hand over ${peerUid}: no such contact`);
        }
        if (primaryDeviceOf(peer, own) !== own || peer.ratchet.length === 0) {
          throw new TypeError(
            `${NAME}: cannot hand over "${peer.name}": this device is not its primary ` +
              `(${peer.primaryDeviceUid || "unknown"} is)`,
          );
        }
        const to = tx.devices().find((d) => d.deviceUid === toDeviceUid);
        if (!to || toDeviceUid === own) {
          throw new TypeError(
            `${NAME}: cannot hand over "${peer.name}" to ${toDeviceUid}: not a sibling of this device`,
          );
        }
        const epoch = peer.primaryEpoch + 1;
        const stopped = clone(PeerRecordSchema, peer);
        // Kept until the new primary confirms, to send again; never used to send.
        stopped.handoverRatchet = peer.ratchet;
        stopped.handoverAt = tx.now;
        stopped.ratchet = new Uint8Array();
        stopped.primaryDeviceUid = toDeviceUid;
        stopped.primaryEpoch = epoch;
        tx.putPeer(stopped);
        await sendHandover(tx, stopped);
        // Every sibling (the new primary too) learns the designation; the highest epoch wins.
        await tx.emit("peer.updated", { peer: stopped, created: false, origin: "local" });
        return epoch;
      });
    },
  };

  return {
    name: NAME,
    api,
    setup(hostIn) {
      host = hostIn;
      hostIn.api(DEVICE_SYNC_API).registerSyncType(FORWARD_SYNC_TYPE, applyForward);
      hostIn.api(DEVICE_SYNC_API).registerSyncType(HANDOVER_SYNC_TYPE, applyHandover);
      hostIn.api(DEVICE_SYNC_API).registerSyncType(HANDOVER_ACK_SYNC_TYPE, applyHandoverAck);
    },

    // The one place the primary-device rule is decided; the kernel (which queues
    // to pull), device_sync and relays (who sends what) ask it through the host.
    primaryOf(peer, deviceUid) {
      return peer.type === PeerType.CONTACT ? primaryDeviceOf(peer, deviceUid) : undefined;
    },

    on: {
      "device.removed": onDeviceRemoved,

      /**
       * Refresh before expiry: a forward whose confirmation has not come back
       * within half the retention of this user's relays (where it waits for
       * the primary) goes again, same uuid, at most REFRESH_ATTEMPTS_MAX times.
       */
      async "poll.marked"({ nowMs }, tx) {
        if (!refresh) return;
        const own = h().deviceUid();
        const servers = tx.identity().servers;
        if (servers.length === 0) return;
        const retentionMs = Math.min(...servers.map((s) => relayLimits(s).retentionMs));
        for (const peer of tx.peers()) {
          const primary = primaryDeviceOf(peer, own);
          if (
            peer.handoverRatchet.length > 0 && nowMs - peer.handoverAt >= retentionMs / 2 &&
            tx.devices().some((d) => d.deviceUid === primary)
          ) {
            await resendHandover(tx, peer, nowMs);
          }
          if (primary === own) continue;
          for (const row of await tx.messages(peer.uid)) {
            if (!row.pendingForward || !row.message || row.failedAt > 0) continue;
            if (!refreshDue(row, nowMs, retentionMs)) {
              const lastMs = Math.max(row.refreshedAt, row.storedAt);
              if (row.refreshCount < REFRESH_ATTEMPTS_MAX || nowMs - lastMs < retentionMs / 2) {
                continue;
              }
              // Sent again as often as allowed and still not confirmed: failed, on every device.
              row.failedAt = nowMs;
              row.failedReason =
                `not confirmed by the primary after ${REFRESH_ATTEMPTS_MAX} resends`;
              tx.putMessage(row);
              await tx.emit("message.status", { message: row, origin: "local" });
              continue;
            }
            row.refreshCount++;
            row.refreshedAt = nowMs;
            tx.putMessage(row);
            await h().api(DEVICE_SYNC_API).dispatch(tx, {
              syncType: FORWARD_SYNC_TYPE,
              peerUid: peer.uid,
              forwardPeerUid: peer.uid,
              forwardPayload: encode(UserMessageSchema, row.message),
              primaryEpoch: peer.primaryEpoch,
              dedupId: `forward:${row.message.status?.uuid ?? ""}:${row.refreshCount}`,
            }, { to: [primary] });
          }
        }
      },
    },

    async outbound(message, { tx, peer }) {
      if (peer.type !== PeerType.CONTACT) return false;
      const own = h().deviceUid();
      const primary = primaryDeviceOf(peer, own);
      if (primary === own) return false;
      // Refused here, where it is sent, not dropped on the primary: the contact's relay decides.
      assertFits(peer, message);
      const uuid = message.status?.uuid ?? "";
      const stored = uuid === "" ? undefined : await tx.message(peer.uid, uuid);
      if (stored?.outbound && !stored.pendingForward) {
        // Shown in the conversation at once; the primary's sync back turns it into sent.
        stored.pendingForward = true;
        tx.putMessage(stored);
      }
      await h().api(DEVICE_SYNC_API).dispatch(tx, {
        syncType: FORWARD_SYNC_TYPE,
        peerUid: peer.uid,
        forwardPeerUid: peer.uid,
        forwardPayload: encode(UserMessageSchema, message),
        primaryEpoch: peer.primaryEpoch,
        dedupId: `forward:${uuid || randomUuid(h().random)}`,
      }, { to: [primary] });
      return true;
    },
  };
}

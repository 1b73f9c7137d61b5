/**
 * The device_sync plugin (DESIGN.md, "The sync model"): pairing of a user's
 * devices into a full mesh, dispatch of every local change to every sibling
 * as a `DeviceSyncPayload` inside a `device_sync` user message, and consume
 * of those payloads (dedup, then apply by sync type).
 *
 * Dispatch runs in the event hooks, inside the transaction of the change, so
 * the change and its sync messages to every sibling commit together: a crash
 * loses both or neither. Consume runs inside the transaction that decrypted
 * the payload, with the seen mark: a repeat is dropped, a payload is never
 * marked seen without being applied.
 *
 * Longer than most files: pairing, dispatch and consume share the plugin's state; the payload
 * codec and the consume rules are in payload.ts and _consume.ts.
 *
 * @module
 */
import { clone, create, type MessageInitShape } from "@bufbuild/protobuf";
import { encode } from "../../proto/mod.ts";
import {
  type ContactCard,
  DeviceIntroductionSchema,
  type DeviceList,
  type DeviceSyncPayload,
  DeviceSyncPayloadSchema,
  type IdentityRecord,
  IdentityRecordSchema,
  KeyPairSchema,
  type PeerRecord,
  PeerRecordSchema,
  PeerType,
  ProfileSchema,
  ServerCardSchema,
  UserMessageSchema,
} from "../../proto/mod.ts";
import { equalBytes, randomUuid } from "../../crypto/mod.ts";
import { Malformed, UnknownType } from "../../kernel/mod.ts";
import {
  assertDeviceList,
  BadRecoveryCode,
  holdsRoot,
  rootFromRecoveryCode,
  signDeviceList,
} from "../../kernel/mod.ts";
import type { InvitationTicket, PairingAccepted, PairingOffer } from "../../kernel/mod.ts";
import type { JoinInput, PairingForm } from "../../kernel/mod.ts";
import { answerInvitation, createInvitation, finalizeInvitation } from "../../kernel/mod.ts";
import { contactLookupKey, myLookupKey, relayLimits } from "../../kernel/mod.ts";
import { PAD_BUCKETS_BYTES, RATCHET_FRAME_OVERHEAD_BYTES } from "../../kernel/mod.ts";
import { userMessageBytesMax } from "../../kernel/mod.ts";
import { apiKey, type Plugin, type PluginHost, type Tx } from "../../kernel/mod.ts";
import {
  applyPeerRecord,
  builtInHandlers,
  storeSynced,
  type SyncContext,
  type SyncHandler,
} from "./_consume.ts";
import {
  CATCH_UP_MARGIN_MS,
  HISTORY_DEFAULT,
  HISTORY_MESSAGES_PER_CONVERSATION_MAX,
  HISTORY_MESSAGES_TOTAL_MAX,
  HISTORY_PAYLOAD_MESSAGES_MAX,
  historyBucketBytes,
  type HistoryWindow,
  packHistory,
  rowForHistory,
  selectHistory,
} from "./_history.ts";
import {
  containsBytes,
  decodeSyncPayload,
  DEVICE_SYNC_TYPE,
  encodeSyncPayload,
  messageDedupId,
  messageForSync,
  peerForSync,
  profileForSync,
  publicIdentity,
  SYNC_TYPES,
} from "./payload.ts";

const NAME = "device_sync";

/** Options of {@linkcode DeviceSyncApi.dispatch}. */
export interface DispatchOptions {
  /**
   * Device uids of the siblings to send to; each must be a known sibling.
   * @default {every sibling}
   */
  to?: string[];
}

/**
 * The typed key of the device_sync plugin's api: `kernel.api(DEVICE_SYNC_API)`
 * is a {@linkcode DeviceSyncApi}.
 */
export const DEVICE_SYNC_API = apiKey<DeviceSyncApi>(NAME);

/**
 * Options of {@linkcode deviceSyncPlugin}. Only a test build that shows a
 * mechanism's worth turns one off.
 */
export interface DeviceSyncOptions {
  /** Send a new sibling its history when it pairs. @default {true} */
  history?: boolean;
  /** Ask the siblings to catch up after an absence past half the retention. @default {true} */
  catchUp?: boolean;
  /** Drop a removed device everywhere. @default {true} */
  dropRemoved?: boolean;
  /**
   * Take a device list change (an introduction, a removal of another device) without the
   * root's signature. Only a test build that shows the signature's worth turns it on.
   * @default {false}
   */
  unsignedList?: boolean;
}

/** A catch-up this device asked its siblings for (docs/PROTOCOL.md "History and catch-up"). */
export interface CatchUpReport {
  /** When it asked, in ms. */
  askedAt: number;
  /** What it asked for: everything that changed since then, in ms. */
  sinceMs: number;
  /** History messages the answers brought that this device did not hold. */
  messages: number;
  /** History payloads answering it that arrived. */
  answers: number;
}

/** What the device_sync plugin offers, under {@linkcode DEVICE_SYNC_API}. */
export interface DeviceSyncApi {
  /**
   * Pairing, step 1, on a device that has an identity: a device invitation to
   * hand to the new install. When the answer arrives the kernel finalizes it
   * and this plugin sends the newcomer the profile, relays and contacts, and
   * introduces it to every other sibling.
   */
  initDevicePairing(options?: { history?: HistoryWindow }): Promise<InvitationTicket>;
  /**
   * Pairing, step 2, on a new install (no identity yet): answers the card;
   * resolves with the sibling's peer uid. The identity arrives by sync.
   */
  answerDevicePairing(bytes: Uint8Array, options: { deviceName: string }): Promise<string>;
  /**
   * Step 1 through a relay mailbox, end to end encrypted: a link (QR code) or
   * a short code to hand to the new install (`Kernel.offerPairing`).
   */
  offerDevicePairing(
    options?: {
      form?: PairingForm;
      expiresMs?: number;
      signal?: AbortSignal;
      /** The history the newcomer gets once paired (default {@linkcode HISTORY_DEFAULT}). */
      history?: HistoryWindow;
    },
  ): Promise<PairingOffer>;
  /**
   * Step 2 on a new install (no identity yet), through the mailbox of a link
   * or a code (`Kernel.acceptPairing`); the identity arrives by sync.
   */
  joinDevices(
    input: JoinInput,
    options: { deviceName: string; signal?: AbortSignal },
  ): Promise<PairingAccepted>;
  /**
   * Registers the handler of a new sync type; payloads of that type get
   * dispatch, encryption, dedup and persistence from this plugin. Register in
   * a plugin's `setup`: once a payload was dispatched or consumed, the set of
   * types is frozen.
   */
  registerSyncType(type: string, handler: SyncHandler): void;
  /**
   * The last catch-up this device asked for since it started (undefined:
   * none): when, from when, how many history messages the answers brought
   * that it did not hold, and how many answers came.
   */
  catchUp(): CatchUpReport | undefined;
  /**
   * Removes sibling `deviceUid` from the user's devices, for good: this
   * device drops it and tells every other sibling (`device_remove`); none of
   * them accepts that device uid again. Given this device's own uid, it
   * leaves: it tells every sibling, then drops them all (`devices retire`,
   * after handing its contacts over).
   *
   * Removing another device changes the device list, which only the device
   * holding the identity root signs; the device removed was primary for
   * contacts, this device takes them over (forward_relay, on `device.removed`).
   *
   * @throws {TypeError} for an unknown device, for another device when this one does not hold the root, or for this device while it is primary for a contact (retire it)
   */
  removeDevice(deviceUid: string): Promise<void>;
  /**
   * Re-derives the identity root from the recovery code printed at `init`
   * and keeps it on this device, which can then change the device list (the
   * root's device was lost). Resolves once it is stored.
   *
   * @throws {BadRecoveryCode} when the code is malformed or is not this identity's
   */
  recoverRoot(code: string): Promise<void>;
  /** Whether this device holds the identity root (it can pair and remove devices). */
  holdsRoot(): boolean;
  /** {@linkcode DeviceSyncApi.removeDevice} inside `tx` (for a plugin that decides it there). */
  removeDeviceInTx(tx: Tx, deviceUid: string): Promise<void>;
  /**
   * Sends `payload` to every sibling (or `options.to`) inside `tx`; fills in
   * `origin_device`, `timestamp` (tx.now when 0) and `dedup_id` (the message
   * uuid and state for msg/status, a fresh uuid otherwise). Resolves with how
   * many siblings it went to.
   */
  dispatch(
    tx: Tx,
    payload: MessageInitShape<typeof DeviceSyncPayloadSchema>,
    options?: DispatchOptions,
  ): Promise<number>;
}

/**
 * Creates the device_sync plugin. Register it after `chat` and `dedup`, and
 * before plugins that register sync types (`forward_relay`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deviceSyncPlugin } from "./mod.ts";
 * const plugin = deviceSyncPlugin();
 * assert(plugin.name === "device_sync" && plugin.types?.[0] === "device_sync");
 * ```
 */
export function deviceSyncPlugin(options: DeviceSyncOptions = {}): Plugin {
  const historyOn = options.history ?? true;
  const catchUpOn = options.catchUp ?? true;
  const dropRemoved = options.dropRemoved ?? true;
  const unsignedList = options.unsignedList ?? false;
  let host: PluginHost | undefined;
  const handlers = builtInHandlers({ unsignedList });
  handlers.set(SYNC_TYPES.history, (payload, context) => applyHistory(payload, context));
  handlers.set(SYNC_TYPES.catchUp, (payload, context) => answerCatchUp(payload, context));
  handlers.set(SYNC_TYPES.deviceRemove, (payload, context) => applyRemove(payload, context));
  let frozen = false;
  /** The history each pending device pairing gives its newcomer, by pending peer uid (memory only). */
  const histories = new Map<string, HistoryWindow>();
  let catchUp: CatchUpReport | undefined;

  function h(): PluginHost {
    if (!host) {
      throw new TypeError(`${NAME}: the plugin is not set up (open a kernel with it first)`);
    }
    return host;
  }
  /**
   * The identity a new install joining its user's devices starts with: its
   * own device keys and uid, the relays of the card, no user uid and no root —
   * those arrive by sync from the sibling it pairs with.
   */
  function joiningIdentity(card: ContactCard, deviceName: string): IdentityRecord {
    if (card.type !== PeerType.DEVICE) {
      throw new TypeError(
        `${NAME}: create an identity or pair with a device before adding contacts`,
      );
    }
    return h().newIdentityRecord({
      uid: "",
      deviceName,
      servers: card.pullServers,
      withRoot: false,
    });
  }

  function hidden(tx: Tx, peerUid: string): boolean {
    return tx.identity().hiddenPeers.includes(peerUid);
  }

  /** Refuses to let any private key of the identity leave in `bytes` (an invariant). */
  function assertNoSecrets(tx: Tx, bytes: Uint8Array, syncType: string): void {
    const identity = tx.identity();
    const secrets = [
      identity.root?.privateKey,
      identity.deviceEncryption?.privateKey,
      identity.deviceSigning?.privateKey,
    ];
    for (const secret of secrets) {
      if (secret && secret.length > 0 && containsBytes(bytes, secret)) {
        throw new RangeError(
          `${NAME}: refused to send a "${syncType}" payload that holds a private key of this device`,
        );
      }
    }
  }

  async function sendTo(
    tx: Tx,
    { to: devices, payload }: { to: PeerRecord[]; payload: DeviceSyncPayload },
  ): Promise<number> {
    if (devices.length === 0) return 0;
    const appdata = encodeSyncPayload(payload);
    assertNoSecrets(tx, appdata, payload.syncType);
    for (const device of devices) {
      const message = create(UserMessageSchema, {
        destination: contactLookupKey(device),
        from: myLookupKey(device),
        type: DEVICE_SYNC_TYPE,
        appdata,
        status: { uuid: randomUuid(h().random), sent: tx.now },
      });
      await tx.send(device.uid, message);
    }
    return devices.length;
  }

  function build(
    tx: Tx,
    init: MessageInitShape<typeof DeviceSyncPayloadSchema>,
  ): DeviceSyncPayload {
    const payload = create(DeviceSyncPayloadSchema, init);
    if (!handlers.has(payload.syncType)) {
      throw new TypeError(
        `${NAME}: cannot dispatch sync type "${payload.syncType}": it is not registered`,
      );
    }
    frozen = true;
    payload.originDevice = h().deviceUid();
    if (payload.timestamp === 0) payload.timestamp = tx.now;
    if (payload.dedupId === "") {
      const isMessage = payload.syncType === SYNC_TYPES.msg ||
        payload.syncType === SYNC_TYPES.status;
      payload.dedupId = isMessage && payload.dbMessage
        ? messageDedupId(payload.syncType, payload.dbMessage)
        : randomUuid(h().random);
    }
    return payload;
  }

  function siblings(tx: Tx, to?: string[]): PeerRecord[] {
    const devices = tx.devices();
    if (to === undefined) return devices;
    return to.map((deviceUid) => {
      const device = devices.find((d) => d.deviceUid === deviceUid);
      if (!device) {
        throw new TypeError(`${NAME}: cannot dispatch to device ${deviceUid}: it is not a sibling`);
      }
      return device;
    });
  }

  /** The devices of the current list: the signed one, else (a home from before lists) all known. */
  function listedDevices(tx: Tx): string[] {
    const list = tx.identity().deviceList?.deviceUids;
    const known = [h().deviceUid(), ...tx.devices().map((d) => d.deviceUid)];
    return [...new Set([...(list ?? []), ...known])]
      .filter((uid) => !tx.identity().removedDevices.includes(uid));
  }

  /** Refuses a change of the device list on a device that cannot sign it. */
  function assertHoldsRoot(identity: IdentityRecord, what: string): void {
    if (holdsRoot(identity)) return;
    throw new TypeError(
      `${NAME}: cannot ${what} from this device: only the device holding the identity root ` +
        `changes the device list (the device that ran init, or one that ran \`devices recover\` ` +
        `with the recovery code)`,
    );
  }

  const api: DeviceSyncApi = {
    async initDevicePairing(options = {}) {
      const identity = h().identity();
      if (identity.uid === "") {
        throw new TypeError(
          `${NAME}: cannot pair a device before this device has learned its identity`,
        );
      }
      assertHoldsRoot(identity, "pair a device");
      const ticket = await h().createInvitation({
        type: PeerType.DEVICE,
        name: identity.deviceName,
      });
      if (options.history) histories.set(ticket.peerUid, options.history);
      return ticket;
    },

    async answerDevicePairing(bytes, options) {
      if (h().deviceUid() !== "" && h().identity().uid !== "") {
        throw new TypeError(
          `${NAME}: cannot join another device: this device already has an identity`,
        );
      }
      return await h().acceptInvitation(bytes, {
        deviceName: options.deviceName,
        name: options.deviceName,
        newIdentity: (card) => joiningIdentity(card, options.deviceName),
      });
    },

    async offerDevicePairing(options = {}) {
      const identity = h().identity();
      if (identity.uid === "") {
        throw new TypeError(
          `${NAME}: cannot pair a device before this device has learned its identity`,
        );
      }
      assertHoldsRoot(identity, "pair a device");
      const { history, ...rest } = options;
      const offer = await h().offerPairing({
        ...rest,
        type: PeerType.DEVICE,
        name: identity.deviceName,
      });
      if (history) histories.set(offer.peerUid, history);
      return offer;
    },

    async joinDevices(input, options) {
      if (h().deviceUid() !== "" && h().identity().uid !== "") {
        throw new TypeError(
          `${NAME}: cannot join another device: this device already has an identity`,
        );
      }
      return await h().acceptPairing(input, {
        deviceName: options.deviceName,
        name: options.deviceName,
        type: PeerType.DEVICE,
        signal: options.signal,
        newIdentity: (card) => joiningIdentity(card, options.deviceName),
      });
    },

    registerSyncType(type, handler) {
      if (frozen) {
        throw new TypeError(
          `${NAME}: cannot register sync type "${type}": sync has started; register in setup`,
        );
      }
      if (type === "" || handlers.has(type)) {
        throw new TypeError(
          `${NAME}: cannot register sync type "${type}": empty or already registered`,
        );
      }
      handlers.set(type, handler);
    },

    dispatch(tx, init, options = {}) {
      return sendTo(tx, { to: siblings(tx, options.to), payload: build(tx, init) });
    },

    catchUp() {
      return catchUp && { ...catchUp };
    },

    removeDevice(deviceUid) {
      return h().transact((tx) => api.removeDeviceInTx(tx, deviceUid));
    },

    recoverRoot(code) {
      return h().transact((tx) => {
        const root = rootFromRecoveryCode(code);
        const identity = clone(IdentityRecordSchema, tx.identity());
        if (!identity.root || !equalBytes(identity.root.publicKey, root.publicKey)) {
          throw new BadRecoveryCode("That recovery code is not this identity's");
        }
        identity.root = create(KeyPairSchema, {
          privateKey: root.privateKey,
          publicKey: root.publicKey,
        });
        tx.putIdentity(identity);
        h().log("info", "the identity root is on this device now (recovered from the code)");
        return Promise.resolve();
      });
    },

    holdsRoot() {
      return holdsRoot(h().identity());
    },

    async removeDeviceInTx(tx, deviceUid) {
      const own = h().deviceUid();
      const identity = clone(IdentityRecordSchema, tx.identity());
      const device = tx.devices().find((d) => d.deviceUid === deviceUid);
      if (deviceUid !== own && !device) {
        throw new TypeError(
          `${NAME}: cannot remove device ${deviceUid}: not a sibling of this device`,
        );
      }
      const primaryFor = tx.peers().filter((p) => h().primaryOf(p) === deviceUid && p.contact);
      if (primaryFor.length > 0 && deviceUid === own) {
        throw new TypeError(
          `${NAME}: cannot remove this device: it is primary for ` +
            `${primaryFor.map((p) => `"${p.name}"`).join(", ")}; ` +
            `hand ${primaryFor.length === 1 ? "it" : "them"} over first (or retire it)`,
        );
      }
      // Removing another device is a change of the device list: the root signs it. A device
      // leaving by itself needs no signature (it can only remove itself).
      let deviceList: DeviceList | undefined;
      if (deviceUid !== own && !(unsignedList && !holdsRoot(identity))) {
        assertHoldsRoot(identity, `remove "${device!.name}"`);
        deviceList = signDeviceList(
          identity,
          (identity.deviceList?.version ?? 0) + 1,
          listedDevices(tx).filter((uid) => uid !== deviceUid),
        );
        identity.deviceList = deviceList;
      }
      if (!identity.removedDevices.includes(deviceUid)) identity.removedDevices.push(deviceUid);
      tx.putIdentity(identity);
      if (device && dropRemoved) tx.deleteDevice(device.uid);
      await api.dispatch(tx, { syncType: SYNC_TYPES.deviceRemove, deviceUid, deviceList });
      // Leaving: nothing more goes to the siblings, nothing more comes from them.
      if (deviceUid === own) { for (const sibling of tx.devices()) tx.deleteDevice(sibling.uid); }
      // Its contacts move to this device and every conversation gets new keys (forward_relay).
      await tx.emit("device.removed", {
        deviceUid,
        origin: "local",
        primaryFor: primaryFor.map((p) => p.uid),
      });
    },
  };

  /**
   * device_remove: a sibling removed device `device_uid` (or left): it is
   * dropped here and never accepted again. Naming this device, every sibling
   * is dropped: this device was removed.
   */
  async function applyRemove(
    payload: DeviceSyncPayload,
    { tx, from }: SyncContext,
  ): Promise<void> {
    const removed = payload.deviceUid;
    if (removed === "") {
      throw new Malformed(
        `${NAME}: refused a device_remove from "${from.name}": it names no device`,
      );
    }
    const identity = clone(IdentityRecordSchema, tx.identity());
    if (identity.removedDevices.includes(removed)) return;
    if (removed !== from.deviceUid && !unsignedList) {
      // Another device removed: only with the root's signature over a list without it.
      const list = assertDeviceList(
        identity,
        payload.deviceList,
        `a device_remove from "${from.name}"`,
      );
      if (list.deviceUids.includes(removed)) {
        throw new Malformed(
          `${NAME}: refused a device_remove from "${from.name}": its signed list still names ${removed}`,
        );
      }
      if (list.version > (identity.deviceList?.version ?? 0)) identity.deviceList = list;
    }
    identity.removedDevices.push(removed);
    tx.putIdentity(identity);
    const primaryFor = tx.peers().filter((p) => h().primaryOf(p) === removed && p.contact)
      .map((p) => p.uid);
    const gone = removed === h().deviceUid()
      ? tx.devices()
      : tx.devices().filter((d) => d.deviceUid === removed);
    if (dropRemoved) { for (const device of gone) tx.deleteDevice(device.uid); }
    h().log("info", `device ${removed} removed (told by "${from.name}")`);
    await tx.emit("device.removed", { deviceUid: removed, origin: "sync", primaryFor });
  }

  /**
   * Sends `to` the messages of every synced conversation active since
   * `sinceMs` (the newest `messagesMax` of each, at most
   * {@linkcode HISTORY_MESSAGES_TOTAL_MAX} in all), oldest first, in
   * `history` payloads that each fit `to`'s relay; each payload carries its
   * conversation's record too. `answering` is the catch-up's `since`, 0 for
   * a pairing. Resolves with how many messages went.
   */
  async function sendHistory(
    tx: Tx,
    to: PeerRecord,
    { sinceMs, messagesMax, answering }: {
      sinceMs: number;
      messagesMax: number;
      answering: number;
    },
  ): Promise<number> {
    let sent = 0;
    let skipped = 0;
    const largeBytes = userMessageBytesMax(to);
    for (const peer of tx.peers()) {
      if (hidden(tx, peer.uid) || sent >= HISTORY_MESSAGES_TOTAL_MAX) continue;
      const rows = selectHistory(await tx.messages(peer.uid), sinceMs, messagesMax)
        .slice(0, HISTORY_MESSAGES_TOTAL_MAX - sent)
        .map(rowForHistory);
      if (rows.length === 0) continue;
      const peerData = encode(PeerRecordSchema, peerForSync(peer, h().deviceUid()));
      const packed = packHistory(rows, {
        smallBytes: historyBucketBytes(
          peerData.length,
          largeBytes,
          PAD_BUCKETS_BYTES,
          RATCHET_FRAME_OVERHEAD_BYTES,
        ),
        largeBytes,
        fixedBytes: peerData.length,
      });
      skipped += packed.skipped;
      for (const history of packed.groups) {
        await sendTo(tx, {
          to: [to],
          payload: build(tx, {
            syncType: SYNC_TYPES.history,
            peerUid: peer.uid,
            // Every payload brings the conversation's record: the relay keeps no order
            // between messages queued together, so each must stand on its own.
            peerData,
            timestamp: peer.updatedAt,
            history,
            since: answering,
          }),
        });
        sent += history.length;
      }
    }
    if (skipped > 0) {
      h().log("warn", `${skipped} message(s) too large to send as history to "${to.name}"`);
    }
    return sent;
  }

  /**
   * history: the messages of one conversation, stored as synced (statuses
   * merged, never re-broadcast); the conversation's record, which rides in
   * the payload, is applied first (last writer wins), so the payload stands
   * on its own.
   */
  async function applyHistory(payload: DeviceSyncPayload, context: SyncContext): Promise<void> {
    const { tx } = context;
    if (payload.history.length > HISTORY_PAYLOAD_MESSAGES_MAX) {
      throw new Malformed(
        `${NAME}: refused a history payload of ${payload.history.length} messages ` +
          `(at most ${HISTORY_PAYLOAD_MESSAGES_MAX})`,
      );
    }
    for (const row of payload.history) {
      if (row.peerUid !== payload.peerUid) {
        throw new Malformed(
          `${NAME}: refused a history payload for conversation ${payload.peerUid}: ` +
            `it holds a message of conversation ${row.peerUid || "(none)"}`,
        );
      }
    }
    if (payload.peerData.length > 0) await applyPeerRecord(payload, context);
    const conversation = tx.peer(payload.peerUid);
    if (conversation && conversation.type !== PeerType.CONTACT) {
      throw new Malformed(
        `${NAME}: refused a history payload for conversation ${payload.peerUid}: it is a device`,
      );
    }
    if (!conversation) {
      throw new Malformed(
        `${NAME}: refused a history payload for conversation ${payload.peerUid || "(none)"}: ` +
          `no such contact here, and no record of it in the payload`,
      );
    }
    let added = 0;
    for (const row of payload.history) {
      if (await storeSynced(tx, row, payload.syncType)) added++;
    }
    const report = catchUp;
    if (payload.since > 0 && report && payload.since === report.sinceMs) {
      tx.afterCommit(() => {
        report.messages += added;
        report.answers++;
      });
    }
  }

  /** catch_up: a sibling back from an absence asks for everything since `since`. */
  async function answerCatchUp(
    payload: DeviceSyncPayload,
    { tx, from }: SyncContext,
  ): Promise<void> {
    if (!Number.isFinite(payload.since) || payload.since <= 0 || payload.since > tx.now) {
      throw new Malformed(
        `${NAME}: refused a catch_up from "${from.name}": since ${payload.since} is not a past time`,
      );
    }
    await share(tx, from);
    await sendHistory(tx, from, {
      sinceMs: payload.since,
      messagesMax: HISTORY_MESSAGES_PER_CONVERSATION_MAX,
      answering: payload.since,
    });
  }

  /** After an absence longer than half the shortest retention: ask every sibling to catch up. */
  async function askCatchUp(tx: Tx, previousMs: number, nowMs: number): Promise<void> {
    const identity = tx.identity();
    if (!catchUpOn || previousMs === 0 || identity.uid === "" || tx.devices().length === 0) return;
    const retentionMs = Math.min(...identity.servers.map((s) => relayLimits(s).retentionMs));
    if (nowMs - previousMs <= retentionMs / 2) return;
    const sinceMs = Math.max(1, previousMs - CATCH_UP_MARGIN_MS);
    const asked = await api.dispatch(tx, { syncType: SYNC_TYPES.catchUp, since: sinceMs });
    h().log(
      "info",
      `away ${Math.round((nowMs - previousMs) / 60_000)} min (past half the relay's retention): ` +
        `asked ${asked} sibling(s) for everything since ${sinceMs}`,
    );
    tx.afterCommit(() => {
      catchUp = { askedAt: nowMs, sinceMs, messages: 0, answers: 0 };
    });
  }

  /**
   * The pairing device's part once a new sibling is finalized: bring it up to
   * date (profile and identity uid, relays, contacts) and introduce it to
   * every other sibling, minting each pair's material with the pure handshake.
   */
  async function welcome(tx: Tx, newcomer: PeerRecord, history: HistoryWindow): Promise<void> {
    // The newcomer joins the root-signed device list first: every introduction carries it.
    const identity = clone(IdentityRecordSchema, tx.identity());
    identity.deviceList = signDeviceList(
      identity,
      (identity.deviceList?.version ?? 0) + 1,
      [...listedDevices(tx), newcomer.deviceUid],
    );
    tx.putIdentity(identity);
    const to = [newcomer];
    await sendTo(tx, {
      to,
      payload: build(tx, {
        syncType: SYNC_TYPES.identityUpdate,
        identityData: encode(ProfileSchema, profileForSync(identity.profile)),
        pluginData: encode(IdentityRecordSchema, publicIdentity(identity)),
        timestamp: identity.profile?.updatedAt ?? 0,
      }),
    });
    for (const server of identity.servers) {
      const pluginData = encode(ServerCardSchema, server);
      await sendTo(tx, { to, payload: build(tx, { syncType: SYNC_TYPES.serverAdd, pluginData }) });
    }
    for (const peer of tx.peers()) {
      if (hidden(tx, peer.uid)) continue;
      await sendTo(tx, { to, payload: peerUpdate(tx, peer) });
    }
    for (const sibling of tx.devices()) {
      if (sibling.uid === newcomer.uid) continue;
      await introduce(tx, { newcomer, sibling });
    }
    if (!historyOn) return;
    const sent = await sendHistory(tx, newcomer, {
      sinceMs: history.windowMs === undefined ? 0 : tx.now - history.windowMs,
      messagesMax: history.messagesMax,
      answering: 0,
    });
    if (sent > 0) h().log("info", `sent ${sent} message(s) of history to "${newcomer.name}"`);
  }

  /**
   * Sends a sibling this device was just introduced to its current profile,
   * relays and contacts (last writer wins merges them there), so nothing this
   * device changed before the two knew each other is missed.
   */
  async function share(tx: Tx, sibling: PeerRecord): Promise<void> {
    const identity = tx.identity();
    if (identity.uid === "") return; // still joining: the pairing device brings it up to date
    const to = [sibling];
    await sendTo(tx, {
      to,
      payload: build(tx, {
        syncType: SYNC_TYPES.identityUpdate,
        identityData: encode(ProfileSchema, profileForSync(identity.profile)),
        pluginData: encode(IdentityRecordSchema, publicIdentity(identity)),
        timestamp: identity.profile?.updatedAt ?? 0,
      }),
    });
    for (const server of identity.servers) {
      const pluginData = encode(ServerCardSchema, server);
      await sendTo(tx, { to, payload: build(tx, { syncType: SYNC_TYPES.serverAdd, pluginData }) });
    }
    for (const peer of tx.peers()) {
      if (hidden(tx, peer.uid)) continue;
      await sendTo(tx, { to, payload: peerUpdate(tx, peer) });
    }
  }

  /** Mints the pairwise records of `a` and `b` and sends each its half. */
  async function introduce(
    tx: Tx,
    { newcomer: a, sibling: b }: { newcomer: PeerRecord; sibling: PeerRecord },
  ): Promise<void> {
    const random = h().random;
    // b initiates, a answers, b finalizes: both records leave complete, ratchets started.
    const { pending, card } = createInvitation({
      random,
      now: tx.now,
      name: b.name,
      servers: b.contact!.pullServers,
      type: PeerType.DEVICE,
      deviceUid: b.deviceUid,
    });
    const answered = await answerInvitation(card, {
      random,
      now: tx.now,
      name: a.name,
      servers: a.contact!.pullServers,
      type: PeerType.DEVICE,
      deviceUid: a.deviceUid,
    });
    const finalized = await finalizeInvitation(pending, answered.answer, { random, now: tx.now });
    const halves: [PeerRecord, PeerRecord, PeerRecord][] = [
      [b, finalized, a], // b receives its record of a
      [a, answered.peer, b], // a receives its record of b
    ];
    for (const [recipient, record, other] of halves) {
      record.updatedBy = h().deviceUid();
      const intro = create(DeviceIntroductionSchema, {
        deviceUid: other.deviceUid,
        deviceName: other.name,
        peer: record,
        list: tx.identity().deviceList,
      });
      await sendTo(tx, {
        to: [recipient],
        payload: build(tx, {
          syncType: SYNC_TYPES.deviceIntroduce,
          peerUid: record.uid,
          pluginData: encode(DeviceIntroductionSchema, intro),
        }),
      });
    }
  }

  function peerUpdate(tx: Tx, peer: PeerRecord): DeviceSyncPayload {
    return build(tx, {
      syncType: SYNC_TYPES.peerUpdate,
      peerUid: peer.uid,
      peerData: encode(PeerRecordSchema, peerForSync(peer, h().deviceUid())),
      timestamp: peer.updatedAt,
    });
  }

  /** A contact conversation this device syncs (not a device, not hidden here). */
  function syncedContact(tx: Tx, peerUid: string): PeerRecord | undefined {
    const peer = tx.peer(peerUid);
    if (!peer || peer.type !== PeerType.CONTACT || hidden(tx, peerUid)) return undefined;
    return peer;
  }

  return {
    name: NAME,
    types: [DEVICE_SYNC_TYPE],
    api,
    setup(hostIn) {
      host = hostIn;
    },

    async receive(message, { tx, peer }) {
      if (peer.type !== PeerType.DEVICE) {
        throw new Malformed(
          `${NAME}: refused a sync message from "${peer.name}" (uid ${peer.uid}): not a sibling device`,
        );
      }
      const payload = decodeSyncPayload(message.appdata);
      if (payload.originDevice !== peer.deviceUid) {
        throw new Malformed(
          `${NAME}: refused a "${payload.syncType}" payload from sibling "${peer.name}": ` +
            `origin device ${payload.originDevice} ≠ ${peer.deviceUid}`,
        );
      }
      const handler = handlers.get(payload.syncType);
      if (!handler) {
        throw new UnknownType(
          `${NAME}: cannot apply sync type "${payload.syncType}" from "${peer.name}": not registered`,
        );
      }
      frozen = true;
      if (!await tx.markSeen(payload.dedupId)) return; // a repeat: applied once already
      await handler(payload, { tx, from: peer, host: h() });
    },

    on: {
      async "message.stored"({ message, origin }, tx) {
        if (origin === "sync" || tx.devices().length === 0) return;
        const peer = syncedContact(tx, message.peerUid);
        if (!peer) return;
        const copy = messageForSync(message);
        // Sent from here to a contact another device is primary for: not sent until that primary confirms.
        if (
          message.outbound && origin === "local" && h().primaryOf(peer) !== h().deviceUid()
        ) {
          copy.pendingForward = true;
        }
        await api.dispatch(tx, { syncType: SYNC_TYPES.msg, peerUid: peer.uid, dbMessage: copy });
      },

      async "message.status"({ message, origin }, tx) {
        if (origin === "sync" || tx.devices().length === 0) return;
        const peer = syncedContact(tx, message.peerUid);
        if (!peer) return;
        await api.dispatch(tx, {
          syncType: SYNC_TYPES.status,
          peerUid: peer.uid,
          dbMessage: messageForSync(message),
        });
      },

      async "peer.updated"({ peer, created, origin }, tx) {
        if (origin === "sync") {
          // Introduced to a new sibling: what changed here before it was known must reach it too.
          if (peer.type === PeerType.DEVICE && created) await share(tx, peer);
          return;
        }
        if (peer.type === PeerType.DEVICE) {
          // The inviter finalizes a device pairing (the card it received carries no ratchet root).
          const inviter = peer.contact !== undefined && peer.contact.drRootKey.length === 0;
          if (created && origin === "local" && inviter) {
            await welcome(tx, peer, histories.get(peer.uid) ?? HISTORY_DEFAULT);
            tx.afterCommit(() => histories.delete(peer.uid));
          }
          return;
        }
        if (tx.devices().length === 0 || !syncedContact(tx, peer.uid)) return;
        await sendTo(tx, { to: tx.devices(), payload: peerUpdate(tx, peer) });
      },

      "poll.marked"({ previousMs, nowMs }, tx) {
        return askCatchUp(tx, previousMs, nowMs);
      },

      async "identity.updated"({ identity, origin }, tx) {
        if (origin === "sync" || tx.devices().length === 0) return;
        await api.dispatch(tx, {
          syncType: SYNC_TYPES.identityUpdate,
          identityData: encode(ProfileSchema, profileForSync(identity.profile)),
          pluginData: encode(IdentityRecordSchema, publicIdentity(identity)),
          timestamp: identity.profile?.updatedAt ?? 0,
        });
      },

      async "server.added"({ server, origin }, tx) {
        if (origin === "sync" || tx.devices().length === 0) return;
        await api.dispatch(tx, {
          syncType: SYNC_TYPES.serverAdd,
          pluginData: encode(ServerCardSchema, server),
        });
      },
    },
  };
}

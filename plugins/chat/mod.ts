/**
 * The chat plugin: text messages between contacts, with delivery and read
 * acks that advance each message's `ConversationStatus`.
 *
 * - `chat`: stored once per uuid, then acked as received when the peer's
 *   settings ask for delivery acks; a repeat (a message sent again before
 *   the relay's retention ran out) is not stored again, only acked again.
 * - Refresh before expiry: on the contact's primary, an outbound message with
 *   no delivery acknowledgement after half the contact's relay retention is
 *   sent again in the current session, same uuid, at most
 *   {@linkcode REFRESH_ATTEMPTS_MAX} times (on each "poll.marked").
 * - `ack`: advances sent / received / processed of a stored outbound message,
 *   never backwards, and emits `message.status`.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { decode, encode } from "../../proto/mod.ts";
import {
  AckPayloadSchema,
  ConversationStatusSchema,
  type DbMessage,
  DbMessageSchema,
  type PeerRecord,
  PeerType,
  ServerCardSchema,
  type UserMessage,
  UserMessageSchema,
} from "../../proto/mod.ts";
import { randomUuid } from "../../crypto/mod.ts";
import { Malformed } from "../../kernel/mod.ts";
import { assertFits, contactLookupKey, myLookupKey, relayLimits } from "../../kernel/mod.ts";
import { apiKey, type Plugin, type PluginHost, type Tx } from "../../kernel/mod.ts";

/** The user message type of a text message. */
export const CHAT_TYPE = "chat";
/** The user message type of a delivery or read acknowledgement. */
export const ACK_TYPE = "ack";

/** The most times a message without acknowledgement (or a forward without confirmation) is sent again. */
export const REFRESH_ATTEMPTS_MAX = 4;

/**
 * Whether a stored outbound row is due to be sent again at `nowMs`: half of
 * `retentionMs` passed since it was sent (or last sent again), fewer than
 * {@linkcode REFRESH_ATTEMPTS_MAX} times so far, not failed for good.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DbMessageSchema } from "../../proto/gen/meow_pb.ts";
 * import { refreshDue } from "./mod.ts";
 * const row = create(DbMessageSchema, { outbound: true, storedAt: 1000, message: { status: { sent: 1000 } } });
 * assert.equal(refreshDue(row, 1000 + 49, 100), false);
 * assert.equal(refreshDue(row, 1000 + 50, 100), true);
 * row.refreshCount = 4;
 * assert.equal(refreshDue(row, 10_000, 100), false);
 * ```
 */
export function refreshDue(row: DbMessage, nowMs: number, retentionMs: number): boolean {
  if (!row.outbound || row.failedAt > 0 || row.refreshCount >= REFRESH_ATTEMPTS_MAX) return false;
  const since = Math.max(row.message?.status?.sent ?? 0, row.storedAt, row.refreshedAt);
  return since > 0 && nowMs - since >= retentionMs / 2;
}

/**
 * `message` addressed with `peer`'s current keys (`destination`: the
 * contact's queue, `from`: this side's): what was stored or forwarded before
 * a session reset or rekey goes out under the new ones.
 */
export function addressed(peer: PeerRecord, message: UserMessage): UserMessage {
  const copy = clone(UserMessageSchema, message);
  copy.destination = contactLookupKey(peer);
  copy.from = myLookupKey(peer);
  return copy;
}

/** Options of {@linkcode chatPlugin}. */
export interface ChatOptions {
  /**
   * Send again what has no delivery acknowledgement after half the retention.
   * Only a test build that shows the mechanism's worth turns it off.
   * @default {true}
   */
  refresh?: boolean;
}

/** The typed key of the chat plugin's api: `kernel.api(CHAT_API)` is a {@linkcode ChatApi}. */
export const CHAT_API = apiKey<ChatApi>("chat");

/** What the chat plugin offers, under {@linkcode CHAT_API}. */
export interface ChatApi {
  /**
   * Sends `text` to a contact; resolves with the stored message.
   *
   * @throws {MessageTooLarge} at once, storing nothing, when the message exceeds what the
   *   contact's relay takes (kernel/pipeline.ts `userMessageBytesMax`)
   */
  send(peerUid: string, text: string, options?: { replyTo?: string }): Promise<DbMessage>;
  /** Marks every unread inbound message of a conversation read; resolves with how many. */
  markRead(peerUid: string): Promise<number>;
  /** Stages a chat message to `peer` in `tx` (for plugins composing a bigger change). */
  sendInTx(
    tx: Tx,
    peer: PeerRecord,
    text: string,
    options?: { replyTo?: string },
  ): Promise<DbMessage>;
}

/** A new user message of `type` from this device to `peer`. */
export function newUserMessage(
  tx: Tx,
  peer: PeerRecord,
  type: string,
  random: { bytes(n: number): Uint8Array },
): UserMessage {
  return create(UserMessageSchema, {
    destination: contactLookupKey(peer),
    from: myLookupKey(peer),
    type,
    status: create(ConversationStatusSchema, { uuid: randomUuid(random), sent: tx.now }),
  });
}

/**
 * Whether a stored message counts as unread: a chat message from the contact not yet read. Only
 * chat messages count — what other plugins store in a conversation (a reaction, an edit) never
 * adds to the unread count or brings a read receipt.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DbMessageSchema } from "../../proto/gen/meow_pb.ts";
 * import { isUnread } from "./mod.ts";
 * const row = (type: string) => create(DbMessageSchema, { message: { type, status: { uuid: "u" } } });
 * assert.equal(isUnread(row("chat")), true);
 * assert.equal(isUnread(row("reaction")), false);
 * ```
 */
export function isUnread(m: DbMessage): boolean {
  return !m.outbound && m.message?.type === CHAT_TYPE && (m.message.status?.processed ?? 0) === 0;
}

/** Sets each state of `stored`'s status that `update` reaches first; returns whether it changed. */
export function advanceStatus(
  stored: DbMessage,
  update: { received?: number; processed?: number; sent?: number },
): boolean {
  const status = stored.message!.status!;
  let changed = false;
  for (const field of ["sent", "received", "processed"] as const) {
    // Keep the first time a state was reached, so every device ends on the same value.
    const value = update[field] ?? 0;
    if (value > 0 && status[field] === 0) {
      status[field] = value;
      changed = true;
    }
  }
  return changed;
}

/**
 * Creates the chat plugin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatPlugin } from "./mod.ts";
 * assert(chatPlugin().types?.includes("chat"));
 * ```
 */
export function chatPlugin(options: ChatOptions = {}): Plugin {
  const refresh = options.refresh ?? true;
  let host: PluginHost | undefined;

  async function sendAck(
    tx: Tx,
    peer: PeerRecord,
    ack: { uuid: string; received?: number; processed?: number },
  ) {
    const message = newUserMessage(tx, peer, ACK_TYPE, host!.random);
    message.appdata = encode(AckPayloadSchema, create(AckPayloadSchema, ack));
    await tx.send(peer.uid, message);
  }

  function contact(tx: Tx, peerUid: string): PeerRecord {
    const peer = tx.peer(peerUid);
    if (!peer || peer.type !== PeerType.CONTACT || !peer.contact) {
      throw new TypeError(`Cannot chat with ${peerUid}: no such contact`);
    }
    return peer;
  }

  const api: ChatApi = {
    send: (peerUid, text, options) =>
      host!.transact((tx) => api.sendInTx(tx, contact(tx, peerUid), text, options)),

    async sendInTx(tx, peer, text, options = {}) {
      const message = newUserMessage(tx, peer, CHAT_TYPE, host!.random);
      message.data = text;
      message.status!.replyToUuid = options.replyTo ?? "";
      // The one size limit: what the contact's relay stores once packed and padded.
      assertFits(peer, message);
      const stored = create(DbMessageSchema, {
        peerUid: peer.uid,
        outbound: true,
        message,
        storedAt: tx.now,
      });
      tx.putMessage(stored);
      await tx.emit("message.stored", { message: stored, origin: "local" });
      await tx.send(peer.uid, message);
      return (await tx.message(peer.uid, message.status!.uuid)) ?? stored;
    },

    markRead: (peerUid) =>
      host!.transact(async (tx) => {
        const peer = contact(tx, peerUid);
        const unread = (await tx.messages(peerUid)).filter(isUnread);
        for (const message of unread) {
          if (!advanceStatus(message, { processed: tx.now })) continue;
          tx.putMessage(message);
          await tx.emit("message.status", { message, origin: "local" });
          if (peer.settings?.processingAck) {
            await sendAck(tx, peer, { uuid: message.message!.status!.uuid, processed: tx.now });
          }
        }
        return unread.length;
      }),
  };

  return {
    name: "chat",
    types: [CHAT_TYPE, ACK_TYPE],
    api,
    setup(h) {
      host = h;
    },
    on: {
      async "poll.marked"({ nowMs }, tx) {
        if (!refresh) return;
        const own = host!.deviceUid();
        for (const peer of tx.peers()) {
          if (!peer.contact || peer.ratchet.length === 0 || host!.primaryOf(peer) !== own) continue;
          const retentionMs = relayLimits(
            peer.contact.pullServers[0] ?? create(ServerCardSchema),
          ).retentionMs;
          for (const row of await tx.messages(peer.uid)) {
            const type = row.message?.type;
            if (type !== CHAT_TYPE || row.pendingForward || !refreshDue(row, nowMs, retentionMs)) {
              continue;
            }
            if ((row.message?.status?.received ?? 0) > 0) continue;
            row.refreshCount++;
            row.refreshedAt = nowMs;
            tx.putMessage(row);
            await tx.send(peer.uid, addressed(peer, row.message!));
          }
        }
      },

      /**
       * After a session reset the old session is gone, and with it whatever it carried that the
       * contact never confirmed: every chat message of this conversation with no delivery
       * acknowledgement goes again in the new one (the contact stores it once).
       */
      async "session.renewed"({ peer, kind }, tx) {
        if (kind !== "reset" || !refresh) return;
        for (const row of await tx.messages(peer.uid)) {
          if (!row.outbound || row.pendingForward || row.failedAt > 0) continue;
          if (row.message?.type !== CHAT_TYPE || (row.message.status?.received ?? 0) > 0) continue;
          await tx.send(peer.uid, addressed(tx.peer(peer.uid)!, row.message));
        }
      },
    },
    async receive(message, { tx, peer }) {
      if (message.type === ACK_TYPE) {
        const ack = decode(AckPayloadSchema, message.appdata);
        const stored = await tx.message(peer.uid, ack.uuid);
        if (!stored || !stored.outbound) return;
        if (!advanceStatus(stored, { received: ack.received, processed: ack.processed })) return;
        tx.putMessage(stored);
        await tx.emit("message.status", { message: stored, origin: "peer" });
        return;
      }
      const uuid = message.status?.uuid;
      if (!uuid) {
        throw new Malformed(`Cannot store chat message from "${peer.name}": it has no uuid`);
      }
      const known = await tx.message(peer.uid, uuid);
      if (known) {
        // A repeat, sent again because no acknowledgement came: stored once, acked again.
        const received = known.message?.status?.received ?? 0;
        if (!known.outbound && received > 0 && peer.settings?.deliveryAck) {
          await sendAck(tx, peer, { uuid, received });
        }
        return;
      }
      const received = clone(UserMessageSchema, message);
      received.status!.received = tx.now;
      const stored = create(DbMessageSchema, {
        peerUid: peer.uid,
        outbound: false,
        message: received,
        storedAt: tx.now,
      });
      tx.putMessage(stored);
      await tx.emit("message.stored", { message: stored, origin: "peer" });
      if (peer.settings?.deliveryAck) await sendAck(tx, peer, { uuid, received: tx.now });
    },
  };
}

/**
 * The relays plugin: moves a contact's traffic onto a relay the user adds.
 *
 * When a relay joins the identity's servers (`server.added`, added on this
 * device or synced from a sibling), the device that is primary for a contact
 * sends that contact a `relays` message: a contact card carrying only
 * `pull_servers`, the new relay first, stamped with `created_at`. The contact
 * replaces the card's pull servers (last writer wins on `created_at`) and from
 * then on queues its messages on the new relay, which every device of the user
 * already polls. Siblings need no copy: they never send to a contact directly.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { decode, encode } from "../../proto/mod.ts";
import { ContactCardSchema, PeerRecordSchema, type ServerCard } from "../../proto/mod.ts";
import { Malformed } from "../../kernel/mod.ts";
import type { Plugin, PluginHost } from "../../kernel/mod.ts";
import { newUserMessage } from "../chat/mod.ts";

/** The user message type announcing a new list of relays to a contact. */
export const RELAYS_TYPE = "relays";
/** Most relays one announcement may list. */
export const RELAYS_MAX = 16;

function usable(server: ServerCard): boolean {
  return server.uid !== "" && server.encryptionPublicKey.length === 32 &&
    server.signingPublicKey.length === 32;
}

/**
 * Creates the relays plugin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { relaysPlugin } from "./mod.ts";
 * assert(relaysPlugin().types?.includes("relays"));
 * ```
 */
export function relaysPlugin(): Plugin {
  let host: PluginHost | undefined;
  return {
    name: "relays",
    types: [RELAYS_TYPE],
    setup(h) {
      host = h;
    },
    on: {
      "server.added": async ({ server }, tx) => {
        const identity = tx.identity();
        const servers = [server, ...identity.servers.filter((s) => s.uid !== server.uid)]
          .slice(0, RELAYS_MAX);
        for (const peer of tx.peers()) {
          const primary = host!.primaryOf(peer) === identity.deviceUid;
          if (!peer.contact || !primary || peer.ratchet.length === 0) continue;
          const message = newUserMessage(tx, peer, RELAYS_TYPE, host!.random);
          message.appdata = encode(
            ContactCardSchema,
            create(ContactCardSchema, { pullServers: servers, createdAt: tx.now }),
          );
          const updated = clone(PeerRecordSchema, peer);
          updated.myPullServers = servers;
          tx.putPeer(updated);
          await tx.send(peer.uid, message);
        }
      },
    },
    receive(message, { tx, peer }) {
      const card = decode(ContactCardSchema, message.appdata);
      const servers = card.pullServers;
      if (servers.length === 0 || servers.length > RELAYS_MAX || !servers.every(usable)) {
        throw new Malformed(
          `relays: cannot use the relay list from "${peer.name}": ${servers.length} relays, ` +
            `each needs a uid and 32-byte keys`,
        );
      }
      const contact = peer.contact!;
      if (card.createdAt <= contact.createdAt) return; // an older announcement
      const updated = clone(PeerRecordSchema, peer);
      updated.contact!.pullServers = servers;
      updated.contact!.createdAt = card.createdAt;
      tx.putPeer(updated);
    },
  };
}

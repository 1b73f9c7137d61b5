/**
 * Pairing as the kernel runs it: the invitation steps on cards in bytes
 * (`Kernel.createInvitation`, `Kernel.acceptInvitation`) and the end-to-end
 * pairing through a relay mailbox (`Kernel.offerPairing`,
 * `Kernel.acceptPairing`), whose protocol steps are kernel/pairing_flow.ts's;
 * this part mints the pending peer, keeps the pairing's keys with it, and
 * completes through `acceptInvitation`.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type IdentityRecord,
  type PeerRecord,
  PeerType,
  type PendingPairing as PendingPairingRecord,
  PendingPairingSchema,
  type ServerCard,
} from "../proto/mod.ts";
import { Malformed } from "./errors.ts";
import {
  answerInvitation,
  cardBytes,
  createInvitation,
  decodeCard,
  isPending,
} from "./invitation.ts";
import type { PairingLinkKind } from "./pairing.ts";
import {
  answerProof,
  type JoinInput,
  joinOffer,
  type MailboxPorts,
  type PairingProtocol,
  type PendingPairing,
  startOffer,
} from "./pairing_flow.ts";
import type { RelayClient } from "./_relay_client.ts";
import type { DeviceState } from "./_state.ts";
import { observeSecrets } from "./_tx.ts";
import type {
  AcceptInvitationOptions,
  AcceptPairingOptions,
  InvitationOptions,
  InvitationTicket,
  KernelObservation,
  OfferPairingOptions,
  PairingAccepted,
  PairingOffer,
} from "./_types.ts";
import type { Tx } from "./plugin.ts";
import type { Clock, Random, Transport } from "../ports/mod.ts";

/** What {@linkcode Pairings} runs on: ports, and the kernel's own steps it builds on. */
export interface PairingPorts {
  clock: Clock;
  random: Random;
  transport: Transport;
  state: DeviceState;
  relay: RelayClient;
  observe: (observation: KernelObservation) => void;
  /** The kernel's name, in error messages. */
  name: string;
  /** Long-poll wait the kernel asks of relays, in ms (0: short polls). */
  longPollMs: number;
  pairingProtocol: PairingProtocol;
  /** The committed identity (a copy); throws when there is none. */
  identity(): IdentityRecord;
  /** A contact or device peer by uid (a copy). */
  peer(uid: string): PeerRecord | undefined;
  /** `Kernel.transact`. */
  transact<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
}

/** The kernel's invitations and pairings. */
export class Pairings {
  readonly #ports: PairingPorts;

  /** Pairings over `ports`. */
  constructor(ports: PairingPorts) {
    this.#ports = ports;
  }

  /** See `Kernel.createInvitation`. */
  createInvitation(options: InvitationOptions = {}): Promise<InvitationTicket> {
    return this.#ports.transact((tx) => {
      const identity = tx.identity();
      const { pending, card } = createInvitation({
        random: this.#ports.random,
        now: tx.now,
        name: options.name ?? identity.profile?.nickname ?? "",
        servers: identity.servers,
        type: options.type ?? PeerType.CONTACT,
        deviceUid: identity.deviceUid,
      });
      tx.putPeer(pending);
      return Promise.resolve({ peerUid: pending.uid, card, bytes: cardBytes(card) });
    });
  }

  /** See `Kernel.acceptInvitation`. */
  acceptInvitation(
    bytes: Uint8Array,
    options: AcceptInvitationOptions = {},
  ): Promise<string> {
    return this.#ports.transact(async (tx) => {
      const card = decodeCard(bytes);
      if (options.type !== undefined && card.type !== options.type) {
        throw new Malformed(
          `Cannot accept invitation ${card.invitationId}: it pairs ${
            card.type === PeerType.DEVICE ? "a device of its owner" : "a contact"
          }, not ${options.type === PeerType.DEVICE ? "a device" : "a contact"}`,
        );
      }
      if (this.#ports.peer(card.peerUid)) {
        throw new Malformed(
          `Cannot accept invitation ${card.invitationId}: peer ${card.peerUid} exists already`,
        );
      }
      if (!this.#ports.state.identity) {
        if (!options.newIdentity) {
          throw new TypeError(
            `${this.#ports.name}: create an identity or pair with a device before adding contacts`,
          );
        }
        tx.putIdentity(options.newIdentity(card));
      }
      const identity = tx.identity();
      let safetyCode = "";
      const proof = options.proof;
      const { peer, answer } = await answerInvitation(card, {
        random: this.#ports.random,
        now: tx.now,
        name: options.name ?? identity.profile?.nickname ?? "",
        servers: identity.servers,
        type: card.type,
        deviceUid: identity.deviceUid,
        mac: proof && ((answerCard) => {
          const made = proof(answerCard);
          safetyCode = made.safetyCode;
          return made.mac;
        }),
      });
      peer.updatedBy = identity.deviceUid;
      peer.safetyCode = safetyCode;
      tx.putPeer(peer);
      tx.queuePacked(peer, answer, "");
      await tx.emit("peer.updated", { peer, created: true, origin: "local" });
      return peer.uid;
    });
  }

  /** See `Kernel.offerPairing`. */
  async offerPairing(
    options: OfferPairingOptions = {},
  ): Promise<PairingOffer> {
    const identity = this.#ports.identity();
    const server = identity.servers[0];
    if (!server) {
      throw new TypeError(`${this.#ports.name}: the identity has no relay to pair through`);
    }
    const type = options.type ?? PeerType.CONTACT;
    const form = options.form ?? "link";
    const kind: PairingLinkKind = type === PeerType.DEVICE ? "pair" : "invite";
    const { pending, card } = createInvitation({
      random: this.#ports.random,
      now: this.#ports.clock.now(),
      name: options.name ?? identity.profile?.nickname ?? "",
      servers: identity.servers,
      type,
      deviceUid: identity.deviceUid,
    });
    observeSecrets(this.#ports.observe, pending, cardBytes(card));
    const start = await startOffer(this.#mailboxPorts(), {
      server,
      form,
      kind,
      card,
      cardBytes: cardBytes(card),
      expiresMs: options.expiresMs,
    });
    if (start.pending) pending.pendingPairing = pendingRecord(start.pending);
    await this.#ports.transact((tx) => {
      tx.putPeer(pending);
      return Promise.resolve();
    });
    const exchanged = start.exchange
      ? start.exchange(
        (confirmed) =>
          this.#ports.transact((tx) => {
            const peer = tx.peer(pending.uid);
            if (!peer || !isPending(peer)) {
              throw new TypeError(
                `${this.#ports.name}: invitation ${pending.uid} is no longer pending`,
              );
            }
            peer.pendingPairing = pendingRecord(confirmed);
            tx.putPeer(peer);
            return Promise.resolve();
          }),
        options.signal,
      )
      : Promise.resolve();
    // The caller awaits it when it cares; an unawaited failure must not end the process.
    exchanged.catch(() => {});
    return {
      peerUid: pending.uid,
      form,
      nameplate: start.nameplate,
      link: start.link,
      code: start.code,
      expiresAt: start.expiresAt,
      exchanged,
    };
  }

  /** See `Kernel.acceptPairing`. */
  async acceptPairing(
    input: JoinInput,
    options: AcceptPairingOptions = {},
  ): Promise<PairingAccepted> {
    const joined = await joinOffer(this.#mailboxPorts(), input, {
      resolveServer: (url) => this.#resolveServer(url),
      signal: options.signal,
    });
    const type = joined.kind === "pair"
      ? PeerType.DEVICE
      : joined.kind === "invite"
      ? PeerType.CONTACT
      : options.type;
    if (options.type !== undefined && type !== options.type) {
      await joined.close();
      throw new Malformed(
        `Cannot accept this ${joined.kind === "pair" ? "device pairing" : "invitation"} link ` +
          `as ${options.type === PeerType.DEVICE ? "a device" : "a contact"}`,
      );
    }
    let safetyCode = "";
    const pending: PendingPairing = { keys: joined.keys, cardPost: joined.cardPost };
    const peerUid = await this.acceptInvitation(joined.cardBytes, {
      name: options.name,
      deviceName: options.deviceName,
      type,
      newIdentity: options.newIdentity,
      proof: (answerCard) => {
        const made = answerProof(pending, answerCard);
        safetyCode = made.safetyCode;
        return made;
      },
    });
    await joined.close();
    return { peerUid, safetyCode, type: this.#ports.peer(peerUid)!.type };
  }

  #mailboxPorts(): MailboxPorts {
    return {
      random: this.#ports.random,
      now: () => this.#ports.clock.now(),
      longPoll: this.#ports.longPollMs > 0,
      sleep: (ms, signal) => this.#ports.clock.sleep(ms, signal),
      protocol: this.#ports.pairingProtocol,
      secret: (bytes, what) => this.#ports.observe({ kind: "secret", bytes, what }),
      mailbox: (server, request, options) => this.#ports.relay.mailbox(server, request, options),
    };
  }

  /** A relay's card by URL: one of the identity's relays, else fetched. */
  async #resolveServer(url: string): Promise<ServerCard> {
    const clean = url.replace(/\/+$/, "");
    const known = this.#ports.state.identity?.servers.find((s) =>
      s.url.replace(/\/+$/, "") === clean
    );
    if (known) return known;
    const card = await this.#ports.transport.fetchCard(clean);
    if (card.url === "") card.url = clean;
    return card;
  }
}

/** The stored form of a pending pairing. */
export function pendingRecord(pending: PendingPairing): PendingPairingRecord {
  return create(PendingPairingSchema, {
    kind: pending.keys.kind,
    macKey: pending.keys.macKey,
    safetyKey: pending.keys.safetyKey,
    cardPost: pending.cardPost,
  });
}

/**
 * The router: one packed message in, in its own transaction — find the peer
 * by destination, complete a pending invitation or verify, unseal and
 * decrypt, then hand the `UserMessage` to the plugin that owns its type
 * (through the plugin driver) and commit. A message that cannot be opened is
 * kept in the bounded quarantine before it is acked.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import {
  type PackedUserMessage,
  PeerType,
  type PendingPairing as PendingPairingRecord,
  type QuarantineRecord,
  QuarantineRecordSchema,
} from "../proto/mod.ts";
import { randomUuid } from "../crypto/mod.ts";
import {
  Deferred,
  Malformed,
  MeowError,
  Replay,
  UnknownDestination,
  UnknownType,
} from "./errors.ts";
import { finalizeInvitation, HELLO_TYPE, isPending } from "./invitation.ts";
import { answerProof, type PairingProtocol, type PendingPairing } from "./pairing_flow.ts";
import { assertUsablePeer, FrameKind, openFrame, openPacked, unpackFrame } from "./pipeline.ts";
import { acceptRekey, acceptReset, REKEY_TYPE, RESET_TYPE } from "./rekey.ts";
import type { PluginDriver } from "./plugin_driver.ts";
import type { DeviceState, SerialQueue } from "./_state.ts";
import type { KernelTx } from "./_tx.ts";
import type { KernelObservation, KernelSealing, LogLevel, ReceiveOutcome } from "./_types.ts";
import type { Clock, Random, Store } from "../ports/mod.ts";

/** Received messages that could not be opened, kept at most; the oldest goes first. */
export const QUARANTINE_MAX = 256;

/** What the {@linkcode Router} runs on. */
export interface RouterPorts {
  clock: Clock;
  random: Random;
  store: Store;
  state: DeviceState;
  driver: PluginDriver;
  serial: SerialQueue;
  /** Runs `fn` in a transaction and commits it (the caller is on the serial queue). */
  transact<T>(fn: (tx: KernelTx) => Promise<T>): Promise<T>;
  observe: (observation: KernelObservation) => void;
  log: (level: LogLevel, line: string) => void;
  /** The kernel's name, in log lines. */
  name: string;
  pairingProtocol: PairingProtocol;
  sealing: KernelSealing;
}

/** Receives packed messages, and keeps those that could not be opened. */
export class Router {
  readonly #ports: RouterPorts;
  /** Received messages that could not be opened, oldest first, at most QUARANTINE_MAX. */
  #quarantine: QuarantineRecord[] = [];

  /** A router over `ports`, with an empty quarantine. */
  constructor(ports: RouterPorts) {
    this.#ports = ports;
  }

  /** Caches the quarantine loaded from the store. */
  load(quarantine: QuarantineRecord[]): void {
    this.#quarantine = quarantine;
  }

  /**
   * Processes one packed message in its own transaction: find the peer by
   * destination, verify, unseal, decrypt, route, commit. Bad input is
   * rejected with a typed error and changes nothing; other failures (a store
   * that cannot write) are thrown so the message is not acked.
   */
  receive(packed: PackedUserMessage): Promise<ReceiveOutcome> {
    return this.#ports.serial.run(async () => {
      try {
        return await this.#ports.transact(async (tx) => await this.#route(tx, packed));
      } catch (e) {
        if (e instanceof Deferred) return { kind: "deferred", reason: e.message };
        if (!(e instanceof MeowError)) throw e;
        this.#ports.log(
          "info",
          `${this.#ports.name} rejected a message for ${
            packed.destination.slice(0, 8)
          }…: ${e.message}`,
        );
        // A repeat is harmless; anything else is kept, so nothing is acked away unseen.
        const quarantined = !(e instanceof Replay);
        if (quarantined) await this.#quarantineOne(packed, e);
        this.#ports.observe({ kind: "rejected", error: e, packed });
        return { kind: "rejected", error: e, quarantined };
      }
    });
  }

  /** Keeps a message that could not be opened (one commit), evicting the oldest past QUARANTINE_MAX. */
  async #quarantineOne(packed: PackedUserMessage, error: MeowError): Promise<void> {
    const record = create(QuarantineRecordSchema, {
      id: packed.serverDeliveryUuid || `local:${randomUuid(this.#ports.random)}`,
      queue: packed.destination,
      packed,
      errorCode: error.code,
      errorMessage: error.message,
      at: this.#ports.clock.now(),
    });
    const kept = this.#quarantine.filter((q) => q.id !== record.id);
    const evicted = kept.splice(0, Math.max(0, kept.length + 1 - QUARANTINE_MAX));
    if (this.#ports.state.closed) throw new TypeError(`${this.#ports.name}: the kernel is closed`);
    await this.#ports.store.commit({
      quarantinePut: [record],
      quarantineDelete: evicted.map((q) => q.id),
    });
    kept.push(record);
    this.#quarantine = kept;
  }

  /**
   * The received messages that could not be verified or opened, oldest first
   * (at most {@linkcode QUARANTINE_MAX}): each with its delivery uuid, queue,
   * packed bytes, error and time. Kept on this device only.
   */
  quarantine(): QuarantineRecord[] {
    return this.#quarantine.map((q) => clone(QuarantineRecordSchema, q));
  }

  /** How many received messages sit in the quarantine. */
  quarantineCount(): number {
    return this.#quarantine.length;
  }

  async #route(tx: KernelTx, packed: PackedUserMessage): Promise<ReceiveOutcome> {
    const uid = this.#ports.state.lookup.get(packed.destination);
    const peer = uid === undefined ? undefined : tx.peer(uid);
    if (!peer) {
      throw new UnknownDestination(
        `Cannot open message: no peer owns lookup key ${packed.destination.slice(0, 12)}…`,
      );
    }
    if (isPending(peer)) {
      // No identity key to check yet: the answer is verified once decoded (finalizeInvitation).
      const frame = await openFrame(peer.myEncryption!.privateKey, packed.payload);
      if (frame.kind === FrameKind.RATCHET) {
        // A ratchet message overtook the answer that completes this invitation: keep it on the relay.
        throw new Deferred(`message for invitation ${peer.uid} arrived before its answer`);
      }
      const pairing = peer.pendingPairing;
      let safetyCode = "";
      const done = await finalizeInvitation(peer, packed, {
        random: this.#ports.random,
        now: tx.now,
        // An end-to-end pairing: only the holder of the link or code can have made this MAC.
        verifyMac: pairing && ((answerCard, mac) => {
          const pending = pendingOf(pairing);
          safetyCode = answerProof(pending, answerCard).safetyCode;
          return this.#ports.pairingProtocol.verifyAnswerMac(pending.keys, {
            cardPost: pending.cardPost,
            answerCard,
            mac,
          });
        }),
      });
      done.pendingPairing = undefined;
      done.safetyCode = safetyCode;
      done.updatedBy = this.#ports.state.deviceUid();
      tx.putPeer(done);
      await tx.emit("peer.updated", { peer: done, created: true, origin: "local" });
      return { kind: "accepted", peerUid: done.uid, type: "invitation" };
    }
    const own = this.#ports.state.deviceUid();
    if (
      peer.type === PeerType.CONTACT && peer.ratchet.length === 0 &&
      this.#ports.driver.primaryOf(peer, own) !== own
    ) {
      // Pulled just before this device handed the contact over: left for the new primary.
      throw new Deferred(`message from "${peer.name}" is for its primary, another device now`);
    }
    assertUsablePeer(peer);
    const options = {
      random: this.#ports.random,
      now: tx.now,
      headerInClear: this.#ports.sealing.headerInClear,
    };
    // Signature first, then the seal; a repeated invitation answer is a Replay (unpackFrame).
    const { frame, signedByRetired } = await openPacked(peer, packed, options);
    if (frame.kind === FrameKind.RESET) {
      if (peer.type !== PeerType.CONTACT) {
        throw new Malformed(
          `Refused a session reset from device "${peer.name}": only contacts reset`,
        );
      }
      const next = acceptReset(peer, frame, {
        ...options,
        signedByRetired,
        acceptRetired: this.#ports.sealing.acceptRetiredResets,
      });
      next.updatedBy = this.#ports.state.deviceUid();
      tx.putPeer(next);
      this.#ports.log("info", `${this.#ports.name}: "${peer.name}" reset the session`);
      await tx.emit("peer.updated", { peer: next, created: false, origin: "peer" });
      await tx.emit("session.renewed", { peer: next, kind: "reset" });
      return { kind: "accepted", peerUid: peer.uid, type: RESET_TYPE };
    }
    // A ratchet frame may still carry a retired signature (sent just before a rekey): the live
    // session, which a removed device never held, authenticates it.
    const opened = unpackFrame(peer, frame, options);
    const { message, ratchet, header } = opened;
    tx.afterCommit(() =>
      this.#ports.observe({ kind: "inbound", peerUid: peer.uid, message, packed, header })
    );
    // `peer` is the transaction's copy, this call's own: it becomes the next state.
    let next = peer;
    next.ratchet = ratchet;
    if (message.type === REKEY_TYPE) {
      if (peer.type !== PeerType.CONTACT) {
        throw new Malformed(`Refused a rekey from device "${peer.name}": only contacts rekey`);
      }
      next = acceptRekey(next, message, tx.now);
      next.updatedBy = this.#ports.state.deviceUid();
      tx.putPeer(next);
      await tx.emit("peer.updated", { peer: next, created: false, origin: "peer" });
      await tx.emit("session.renewed", { peer: next, kind: "rekey" });
      return { kind: "accepted", peerUid: peer.uid, type: REKEY_TYPE };
    }
    tx.putPeer(next);
    if (peer.blocked) return { kind: "accepted", peerUid: peer.uid, type: "blocked" };
    if (message.type !== HELLO_TYPE) {
      if (!await this.#ports.driver.route(message, { tx, peer: next })) {
        throw new UnknownType(
          `Cannot route message of type "${message.type}" from peer "${peer.name}": no plugin owns it`,
        );
      }
    }
    return { kind: "accepted", peerUid: peer.uid, type: message.type };
  }
}

/** A pending pairing from its stored form (the card key is not kept: the card is out). */
function pendingOf(record: PendingPairingRecord): PendingPairing {
  return {
    keys: {
      kind: record.kind as PendingPairing["keys"]["kind"],
      cardKey: new Uint8Array(),
      macKey: record.macKey,
      safetyKey: record.safetyKey,
    },
    cardPost: record.cardPost,
  };
}

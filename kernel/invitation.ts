/**
 * The invitation handshake, meow style, in three steps:
 *
 * 1. the initiator mints per-peer keys and issues a {@linkcode ContactCard}
 *    carrying its public keys, pull servers, a fresh ratchet root key and a
 *    ratchet public key; it keeps a *pending* peer record;
 * 2. the invitee mints its own per-peer keys, starts the Double Ratchet toward
 *    the card's ratchet key, and answers with its card plus the ratchet's
 *    first message, in a padded answer frame sealed to the initiator;
 * 3. the initiator finalizes: it completes the pending record and decrypts
 *    that first message, so both sides can send at once.
 *
 * The card travels out of band (bytes, base64 for a QR code or a file) or
 * through a relay short code. Every function here is pure over its inputs.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { decode, encode } from "../proto/mod.ts";
import {
  type ContactCard,
  ContactCardSchema,
  InvitationAnswerSchema,
  KeyPairSchema,
  type PackedUserMessage,
  PackedUserMessageSchema,
  type PeerRecord,
  PeerRecordSchema,
  PeerSettingsSchema,
  PeerType,
  type ServerCard,
  UserMessageSchema,
} from "../proto/mod.ts";
import {
  decodeRatchetHeader,
  generateEncryptionKeyPair,
  generateLookupKeyPair,
  generateSigningKeyPair,
  initRatchetInitiator,
  initRatchetResponder,
  type KeyPair,
  randomUuid,
  ratchetDecrypt,
  ratchetEncrypt,
  serializeRatchet,
  sign,
  verify,
} from "../crypto/mod.ts";
import { BadSignature, Malformed, PairingInterfered } from "./errors.ts";
import {
  FrameKind,
  lookupKeyOf,
  openFrame,
  ratchetAd,
  sealFrame,
  signedBytes,
} from "./pipeline.ts";
import type { Random } from "../ports/mod.ts";

/** The user message type of the ratchet's first message, carried in an answer. */
export const HELLO_TYPE = "hello";

/** The largest contact card the kernel decodes, in bytes. */
export const CARD_BYTES_MAX = 16 * 1024;

function keyPair(pair: KeyPair) {
  return create(KeyPairSchema, { privateKey: pair.privateKey, publicKey: pair.publicKey });
}

/** Options shared by the handshake steps. */
export interface HandshakeOptions {
  /** The randomness port. */
  random: Random;
  /** The clock time, in ms. */
  now: number;
  /** The nickname to put in this side's card. */
  name: string;
  /** The relays this side pulls from (home first). */
  servers: ServerCard[];
  /**
   * Contact or device pairing.
   * @default {PeerType.CONTACT}
   */
  type?: PeerType;
  /**
   * This device's uid, carried in device pairing cards.
   * @default {""}
   */
  deviceUid?: string;
}

/** Default settings of a new peer. */
export function defaultSettings(): PeerRecord["settings"] {
  return create(PeerSettingsSchema, {
    notifications: true,
    deliveryAck: true,
    processingAck: true,
    calls: true,
  });
}

/**
 * Step 1: the initiator's pending peer record and the card to hand over.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { createInvitation } from "./invitation.ts";
 * const { pending, card } = createInvitation({ random: new SeededRandom(1), now: 0, name: "alice", servers: [] });
 * assert(pending.contact === undefined && card.drRootKey.length === 32);
 * ```
 */
export function createInvitation(
  options: HandshakeOptions,
): { pending: PeerRecord; card: ContactCard } {
  const { random, now } = options;
  const identity = generateSigningKeyPair(random);
  const encryption = generateEncryptionKeyPair(random);
  const lookup = generateLookupKeyPair(random);
  const ratchetKey = generateEncryptionKeyPair(random);
  const symKey = random.bytes(32);
  const peerUid = randomUuid(random);
  const card = create(ContactCardSchema, {
    name: options.name,
    identityPublicKey: identity.publicKey,
    encryptionPublicKey: encryption.publicKey,
    lookupPublicKey: lookup.publicKey,
    pullServers: options.servers,
    drRootKey: random.bytes(32),
    drPublicKey: ratchetKey.publicKey,
    symKey,
    invitationId: randomUuid(random),
    type: options.type ?? PeerType.CONTACT,
    deviceUid: options.deviceUid ?? "",
    peerUid,
    createdAt: now,
  });
  const pending = create(PeerRecordSchema, {
    uid: peerUid,
    type: card.type,
    name: "",
    visible: false,
    settings: defaultSettings(),
    myIdentity: keyPair(identity),
    myEncryption: keyPair(encryption),
    myLookup: keyPair(lookup),
    mySymKey: symKey,
    myPullServers: options.servers,
    pendingRatchetKey: keyPair(ratchetKey),
    pendingCard: card,
    createdAt: now,
    updatedAt: now,
  });
  return { pending, card };
}

/** Decodes a card from bytes (a file, a QR code's payload, a relay's invitation). */
export function decodeCard(bytes: Uint8Array): ContactCard {
  const card = decode(ContactCardSchema, bytes, { bytesMax: CARD_BYTES_MAX });
  const sizes = [
    card.identityPublicKey,
    card.encryptionPublicKey,
    card.lookupPublicKey,
    card.drRootKey,
    card.drPublicKey,
    card.symKey,
  ];
  if (sizes.some((key) => key.length !== 32) || card.peerUid === "" || card.invitationId === "") {
    throw new Malformed("Cannot use contact card: a key is not 32 bytes or an id is missing");
  }
  return card;
}

/** Options of {@linkcode answerInvitation}. */
export interface AnswerOptions extends HandshakeOptions {
  /**
   * For an end-to-end encrypted pairing: the transcript MAC over this side's
   * serialized answer card (kernel/pairing.ts `answerMac`), carried in the
   * answer's `transcript_mac`.
   * @default {undefined} (`transcript_mac` stays empty)
   */
  mac?: (answerCardBytes: Uint8Array) => Uint8Array;
}

/**
 * Step 2: the invitee's complete peer record and the answer to send to the
 * initiator's queue.
 *
 * @throws {Malformed} when the card is unusable
 */
export async function answerInvitation(
  card: ContactCard,
  options: AnswerOptions,
): Promise<{ peer: PeerRecord; answer: PackedUserMessage }> {
  const { random, now } = options;
  const identity = generateSigningKeyPair(random);
  const encryption = generateEncryptionKeyPair(random);
  const lookup = generateLookupKeyPair(random);
  const symKey = random.bytes(32);
  const answerCard = create(ContactCardSchema, {
    name: options.name,
    identityPublicKey: identity.publicKey,
    encryptionPublicKey: encryption.publicKey,
    lookupPublicKey: lookup.publicKey,
    pullServers: options.servers,
    symKey,
    invitationId: card.invitationId,
    type: card.type,
    deviceUid: options.deviceUid ?? "",
    peerUid: card.peerUid,
    createdAt: now,
  });
  const peer = create(PeerRecordSchema, {
    uid: card.peerUid,
    type: card.type,
    name: card.name,
    visible: true,
    settings: defaultSettings(),
    myIdentity: keyPair(identity),
    myEncryption: keyPair(encryption),
    myLookup: keyPair(lookup),
    mySymKey: symKey,
    contact: card,
    myPullServers: options.servers,
    deviceUid: card.deviceUid,
    createdAt: now,
    updatedAt: now,
  });
  const state = initRatchetInitiator({
    rootKey: card.drRootKey,
    remotePublicKey: card.drPublicKey,
    ad: ratchetAd(peer),
    random,
  });
  const hello = create(UserMessageSchema, {
    type: HELLO_TYPE,
    destination: lookupKeyOf(card.lookupPublicKey),
    from: lookupKeyOf(lookup.publicKey),
  });
  const first = ratchetEncrypt(state, encode(UserMessageSchema, hello), { random, now });
  peer.ratchet = serializeRatchet(first.state);
  const answerBytes = encode(
    InvitationAnswerSchema,
    create(InvitationAnswerSchema, {
      card: answerCard,
      drHeader: first.header,
      drCiphertext: first.ciphertext,
      transcriptMac: options.mac?.(cardBytes(answerCard)) ?? new Uint8Array(),
    }),
  );
  const destination = lookupKeyOf(card.lookupPublicKey);
  const payload = await sealFrame(card.encryptionPublicKey, FrameKind.ANSWER, answerBytes, {
    random,
  });
  const signature = await sign(identity.privateKey, signedBytes(destination, payload));
  const answer = create(PackedUserMessageSchema, { destination, payload, signature });
  return { peer, answer };
}

/** Options of {@linkcode finalizeInvitation}. */
export interface FinalizeOptions {
  /** The randomness port. */
  random: Random;
  /** The clock time, in ms. */
  now: number;
  /**
   * For an end-to-end encrypted pairing: whether `mac` (the answer's
   * `transcript_mac`) is right for the serialized answer card
   * (kernel/pairing.ts `verifyAnswerMac`); false rejects the answer.
   * @default {undefined} (the MAC is not checked)
   */
  verifyMac?: (answerCardBytes: Uint8Array, mac: Uint8Array) => boolean;
}

/**
 * Step 3: the initiator completes its pending record from the answer. With
 * `verifyMac`, the answer's transcript MAC is checked first, before any of
 * the answer is looked at.
 *
 * @throws {PairingInterfered} when `verifyMac` rejects the answer's MAC (or it has no card)
 * @throws {BadCiphertext | BadSignature | Malformed} for an answer that does not belong to `pending`
 */
export async function finalizeInvitation(
  pending: PeerRecord,
  answer: PackedUserMessage,
  options: FinalizeOptions,
): Promise<PeerRecord> {
  const issued = pending.pendingCard;
  const ratchetKey = pending.pendingRatchetKey;
  if (!issued || !ratchetKey || !pending.myEncryption) {
    throw new TypeError(`Peer ${pending.uid} is not a pending invitation`);
  }
  const frame = await openFrame(pending.myEncryption.privateKey, answer.payload);
  if (frame.kind !== FrameKind.ANSWER) {
    throw new Malformed(
      `Cannot finalize invitation ${issued.invitationId}: the message is not an invitation answer`,
    );
  }
  const body = decode(InvitationAnswerSchema, frame.body, { bytesMax: CARD_BYTES_MAX * 2 });
  const card = body.card;
  // The card is re-serialized: protobuf-es writes a decoded message's fields
  // (unknown ones last) exactly as the answering side's encoder did.
  if (options.verifyMac && (!card || !options.verifyMac(cardBytes(card), body.transcriptMac))) {
    throw new PairingInterfered();
  }
  if (!card || card.invitationId !== issued.invitationId || card.peerUid !== pending.uid) {
    throw new Malformed(
      `Cannot finalize invitation ${issued.invitationId}: the answer is for another invitation`,
    );
  }
  if (
    card.identityPublicKey.length !== 32 || card.encryptionPublicKey.length !== 32 ||
    card.symKey.length !== 32
  ) {
    throw new Malformed(
      `Cannot finalize invitation ${issued.invitationId}: a key in the answer is not 32 bytes`,
    );
  }
  const ok = await verify(
    card.identityPublicKey,
    signedBytes(answer.destination, answer.payload),
    answer.signature,
  );
  if (!ok) {
    throw new BadSignature(
      `Cannot finalize invitation ${issued.invitationId}: the answer's signature does not match its card`,
    );
  }
  decodeRatchetHeader(body.drHeader);
  const peer = create(PeerRecordSchema, {
    ...pending,
    name: card.name,
    visible: true,
    contact: card,
    deviceUid: card.deviceUid,
    pendingCard: undefined,
    pendingRatchetKey: undefined,
    updatedAt: options.now,
  });
  const state = initRatchetResponder({
    rootKey: issued.drRootKey,
    ownKeyPair: { privateKey: ratchetKey.privateKey, publicKey: ratchetKey.publicKey },
    ad: ratchetAd(peer),
  });
  const first = ratchetDecrypt(state, body.drHeader, body.drCiphertext, options);
  const hello = decode(UserMessageSchema, first.plaintext);
  if (hello.type !== HELLO_TYPE) {
    throw new Malformed(
      `Cannot finalize invitation ${issued.invitationId}: the first message is "${hello.type}", not "${HELLO_TYPE}"`,
    );
  }
  peer.ratchet = serializeRatchet(first.state);
  return peer;
}

/** True when `peer` is a pending invitation awaiting its answer. */
export function isPending(peer: PeerRecord): boolean {
  return peer.contact === undefined && peer.pendingCard !== undefined;
}

/** The card bytes of a pending invitation, to hand over out of band. */
export function cardBytes(card: ContactCard): Uint8Array {
  return encode(ContactCardSchema, card);
}

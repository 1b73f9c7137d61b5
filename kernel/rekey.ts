/**
 * Session reset and rekey (docs/PROTOCOL.md "Session reset and rekey"): how a
 * contact's conversation gets new keys when a device of the user is removed.
 *
 * - A **reset** is made by a device that holds a contact's keys but no ratchet
 *   (the contact's primary was lost): new identity, encryption, lookup and
 *   symmetric keys, and a fresh ratchet started toward the contact's
 *   encryption key, in a reset frame sealed to that key and signed with the
 *   identity key the contact knows. The contact replaces the card, retires the
 *   old identity key and answers in the new session.
 * - A **rekey** is sent by a primary inside the live session: a `rekey` user
 *   message carrying new identity, encryption and lookup keys and the pull
 *   servers (the symmetric key stays, so what was queued before still opens). The contact switches; the sender keeps
 *   its previous encryption and lookup keys (and pulls the old queue) for one
 *   retention, for what the contact sent before it switched.
 *
 * A contact refuses a reset signed with a key it retired ({@linkcode RetiredKey}):
 * the device that was removed holds exactly those keys. Every function here
 * is pure over its inputs.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { decode, encode } from "../proto/mod.ts";
import {
  type ContactCard,
  ContactCardSchema,
  KeyPairSchema,
  type PackedUserMessage,
  PackedUserMessageSchema,
  type PeerRecord,
  PeerRecordSchema,
  PreviousKeysSchema,
  type ServerCard,
  SessionResetSchema,
  type UserMessage,
  UserMessageSchema,
} from "../proto/mod.ts";
import {
  decodeRatchetHeader,
  equalBytes,
  generateEncryptionKeyPair,
  generateLookupKeyPair,
  generateSigningKeyPair,
  initRatchetInitiator,
  initRatchetResponder,
  type KeyPair,
  ratchetDecrypt,
  ratchetEncrypt,
  serializeRatchet,
  sign,
} from "../crypto/mod.ts";
import { Malformed, Replay, RetiredKey } from "./errors.ts";
import { CARD_BYTES_MAX } from "./invitation.ts";
import {
  contactLookupKey,
  type Frame,
  FrameKind,
  lookupKeyOf,
  ratchetAd,
  sealFrame,
  signedBytes,
} from "./pipeline.ts";
import type { Random } from "../ports/mod.ts";

/** The user message type of a reset's first ratchet message. */
export const RESET_TYPE = "reset";
/** The user message type that carries new keys inside a live session. */
export const REKEY_TYPE = "rekey";
/** Retired identity keys a peer record keeps, at most; the oldest goes first. */
export const RETIRED_KEYS_MAX = 16;

function keyPair(pair: KeyPair) {
  return create(KeyPairSchema, { privateKey: pair.privateKey, publicKey: pair.publicKey });
}

function freshKeys(random: Random) {
  return {
    identity: generateSigningKeyPair(random),
    encryption: generateEncryptionKeyPair(random),
    lookup: generateLookupKeyPair(random),
    symKey: random.bytes(32),
  };
}

function retire(list: Uint8Array[], key: Uint8Array): Uint8Array[] {
  const kept = list.filter((k) => !equalBytes(k, key));
  kept.push(key.slice());
  return kept.slice(-RETIRED_KEYS_MAX);
}

/** Whether `key` is one of `peer`'s retired contact identity keys. */
export function isRetired(peer: PeerRecord, key: Uint8Array): boolean {
  return peer.retiredIdentityKeys.some((k) => equalBytes(k, key));
}

/** Options of {@linkcode createReset}. */
export interface ResetOptions {
  /** The randomness port. */
  random: Random;
  /** The clock time, in ms. */
  now: number;
  /** The relays this side pulls from (home first), carried in the new card. */
  servers: ServerCard[];
}

/**
 * Makes a session reset for contact `peer` on a device that holds its keys
 * but no ratchet: resolves with the record to store (new keys, the new
 * session, keys version + 1) and the packed reset to queue to the contact.
 *
 * @throws {Malformed} when the record holds no contact card or identity key
 */
export async function createReset(
  peer: PeerRecord,
  options: ResetOptions,
): Promise<{ peer: PeerRecord; packed: PackedUserMessage }> {
  const { random, now } = options;
  if (!peer.contact || !peer.myIdentity) {
    throw new Malformed(`Cannot reset the session with "${peer.name}": no completed pairing`);
  }
  const keys = freshKeys(random);
  const rootKey = random.bytes(32);
  const next = clone(PeerRecordSchema, peer);
  next.myIdentity = keyPair(keys.identity);
  next.myEncryption = keyPair(keys.encryption);
  next.myLookup = keyPair(keys.lookup);
  next.mySymKey = keys.symKey;
  next.myPullServers = options.servers;
  next.previousKeys = undefined;
  next.keysVersion = peer.keysVersion + 1;
  next.updatedAt = now;
  const state = initRatchetInitiator({
    rootKey,
    remotePublicKey: peer.contact.encryptionPublicKey,
    ad: ratchetAd(next),
    random,
  });
  const first = ratchetEncrypt(
    state,
    encode(
      UserMessageSchema,
      create(UserMessageSchema, {
        type: RESET_TYPE,
        destination: contactLookupKey(peer),
        from: lookupKeyOf(keys.lookup.publicKey),
      }),
    ),
    { random, now },
  );
  next.ratchet = serializeRatchet(first.state);
  const card = create(ContactCardSchema, {
    identityPublicKey: keys.identity.publicKey,
    encryptionPublicKey: keys.encryption.publicKey,
    lookupPublicKey: keys.lookup.publicKey,
    pullServers: options.servers,
    drRootKey: rootKey,
    symKey: keys.symKey,
    peerUid: peer.uid,
    createdAt: now,
  });
  const body = encode(
    SessionResetSchema,
    create(SessionResetSchema, {
      card,
      drHeader: first.header,
      drCiphertext: first.ciphertext,
    }),
  );
  const destination = contactLookupKey(peer);
  const payload = await sealFrame(peer.contact.encryptionPublicKey, FrameKind.RESET, body, {
    random,
  });
  // Signed with the identity key the contact knows: only a device of this user holds it.
  const signature = await sign(peer.myIdentity.privateKey, signedBytes(destination, payload));
  return {
    peer: next,
    packed: create(PackedUserMessageSchema, { destination, payload, signature }),
  };
}

function assertKeys(card: ContactCard | undefined, what: string): ContactCard {
  if (
    !card || card.identityPublicKey.length !== 32 || card.encryptionPublicKey.length !== 32 ||
    card.lookupPublicKey.length !== 32 || card.symKey.length !== 32
  ) {
    throw new Malformed(`Cannot apply ${what}: a key in it is not 32 bytes`);
  }
  return card;
}

/**
 * On the contact: applies a reset frame from `peer` whose signature was
 * checked (`signedByRetired`: it matched a retired key, not the current one).
 * Resolves with the record to store: the new card, the old identity key
 * retired, the new session (after the reset's first message), keys version + 1.
 *
 * @throws {RetiredKey} for a reset signed with a retired key (a duplicate of the reset that was applied is a {@linkcode Replay})
 * @throws {Malformed | BadCiphertext} for a reset that does not open or belong to `peer`
 */
export function acceptReset(
  peer: PeerRecord,
  frame: Frame,
  options: { random: Random; now: number; signedByRetired: boolean; acceptRetired?: boolean },
): PeerRecord {
  const body = decode(SessionResetSchema, frame.body, { bytesMax: CARD_BYTES_MAX * 2 });
  const card = assertKeys(body.card, `the session reset from "${peer.name}"`);
  if (options.signedByRetired) {
    if (equalBytes(card.identityPublicKey, peer.contact!.identityPublicKey)) {
      throw new Replay(`Dropped a repeated session reset from "${peer.name}" (uid ${peer.uid})`);
    }
    if (!options.acceptRetired) {
      throw new RetiredKey(
        `Refused a session reset for "${peer.name}" (uid ${peer.uid}): it is signed with an ` +
          `identity key this conversation retired`,
      );
    }
  }
  if (card.peerUid !== peer.uid || card.drRootKey.length !== 32) {
    throw new Malformed(
      `Cannot apply the session reset from "${peer.name}": it is for another conversation`,
    );
  }
  if (isRetired(peer, card.identityPublicKey) && !options.acceptRetired) {
    throw new RetiredKey(
      `Refused a session reset for "${peer.name}" (uid ${peer.uid}): it brings back a retired key`,
    );
  }
  decodeRatchetHeader(body.drHeader);
  const next = switchCard(peer, card, options.now);
  const state = initRatchetResponder({
    rootKey: card.drRootKey,
    ownKeyPair: {
      privateKey: peer.myEncryption!.privateKey,
      publicKey: peer.myEncryption!.publicKey,
    },
    ad: ratchetAd(next),
  });
  const first = ratchetDecrypt(state, body.drHeader, body.drCiphertext, options);
  const hello = decode(UserMessageSchema, first.plaintext);
  if (hello.type !== RESET_TYPE) {
    throw new Malformed(
      `Cannot apply the session reset from "${peer.name}": its first message is "${hello.type}"`,
    );
  }
  next.ratchet = serializeRatchet(first.state);
  return next;
}

/** `peer` with the contact's new keys (and pull servers, when the card names any). */
function switchCard(peer: PeerRecord, card: ContactCard, now: number): PeerRecord {
  const next = clone(PeerRecordSchema, peer);
  const contact = next.contact!;
  next.retiredIdentityKeys = retire(peer.retiredIdentityKeys, contact.identityPublicKey);
  contact.identityPublicKey = card.identityPublicKey;
  contact.encryptionPublicKey = card.encryptionPublicKey;
  contact.lookupPublicKey = card.lookupPublicKey;
  contact.symKey = card.symKey;
  if (card.pullServers.length > 0) contact.pullServers = card.pullServers;
  next.keysVersion = peer.keysVersion + 1;
  next.updatedAt = now;
  return next;
}

/**
 * Makes a rekey for contact `peer`: the `rekey` message to send inside the
 * live session (before the switch) and `switchKeys`, which turns the record
 * as staged after sending into the one to store — new keys, the previous
 * encryption and lookup keys kept until `now + keepMs`, keys version + 1.
 */
export function createRekey(
  peer: PeerRecord,
  options: { random: Random; now: number; servers: ServerCard[]; keepMs: number },
): { message: UserMessage; switchKeys: (sent: PeerRecord) => PeerRecord } {
  const keys = freshKeys(options.random);
  const card = create(ContactCardSchema, {
    identityPublicKey: keys.identity.publicKey,
    encryptionPublicKey: keys.encryption.publicKey,
    lookupPublicKey: keys.lookup.publicKey,
    pullServers: options.servers,
    // The symmetric key stays: what was queued before the rekey still opens after it.
    symKey: peer.mySymKey,
    peerUid: peer.uid,
    createdAt: options.now,
  });
  const message = create(UserMessageSchema, {
    type: REKEY_TYPE,
    destination: contactLookupKey(peer),
    from: lookupKeyOf(peer.myLookup!.publicKey),
    appdata: encode(ContactCardSchema, card),
  });
  const switchKeys = (sent: PeerRecord): PeerRecord => {
    const next = clone(PeerRecordSchema, sent);
    next.previousKeys = create(PreviousKeysSchema, {
      encryption: sent.myEncryption,
      lookup: sent.myLookup,
      untilMs: options.now + options.keepMs,
    });
    next.myIdentity = keyPair(keys.identity);
    next.myEncryption = keyPair(keys.encryption);
    next.myLookup = keyPair(keys.lookup);
    next.myPullServers = options.servers;
    next.keysVersion = sent.keysVersion + 1;
    next.updatedAt = options.now;
    return next;
  };
  return { message, switchKeys };
}

/**
 * On the contact: applies a `rekey` that arrived inside the live session
 * from `peer`. Resolves with the record to store: the new card, the old
 * identity key retired, keys version + 1.
 *
 * @throws {Malformed} when the card's keys are not 32 bytes or it is for another conversation
 */
export function acceptRekey(peer: PeerRecord, message: UserMessage, now: number): PeerRecord {
  const card = assertKeys(
    decode(ContactCardSchema, message.appdata, { bytesMax: CARD_BYTES_MAX }),
    `the rekey from "${peer.name}"`,
  );
  if (card.peerUid !== peer.uid) {
    throw new Malformed(
      `Cannot apply the rekey from "${peer.name}": it is for another conversation`,
    );
  }
  if (isRetired(peer, card.identityPublicKey)) {
    throw new RetiredKey(
      `Refused a rekey for "${peer.name}" (uid ${peer.uid}): it brings back a retired key`,
    );
  }
  return switchCard(peer, card, now);
}

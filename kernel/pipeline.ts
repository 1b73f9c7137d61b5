/**
 * The message pipeline (PROTOCOL.md, "Sealing a user message"): a
 * `UserMessage` goes through the ratchet, the symmetric layer, the seal to the
 * peer's encryption key and a signature; inbound is the exact reverse, with
 * the signature checked first. Both directions are pure: they return the
 * peer's next ratchet state instead of changing it, so a failure leaves every
 * stored state as it was.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { decode, encode } from "../proto/codec.ts";
import {
  type PackedUserMessage,
  PackedUserMessageSchema,
  type PeerRecord,
  type UserMessage,
  UserMessageSchema,
} from "../proto/gen/meow_pb.ts";
import {
  concatBytes,
  deserializeRatchet,
  open,
  ratchetDecrypt,
  ratchetEncrypt,
  seal,
  serializeRatchet,
  sign,
  symDecrypt,
  symEncrypt,
  toBase64Url,
  verify,
} from "./crypto/mod.ts";
import { BadSignature, Malformed } from "./errors.ts";
import type { Random } from "./ports.ts";

/** The largest serialized user message the pipeline accepts, in bytes. */
export const USER_MESSAGE_BYTES_MAX = 256 * 1024;

const encoder = new TextEncoder();

/** The queue name of a lookup public key: its base64url. */
export function lookupKeyOf(publicKey: Uint8Array): string {
  return toBase64Url(publicKey);
}

/** The queue this device reads a peer's messages from. */
export function myLookupKey(peer: PeerRecord): string {
  return lookupKeyOf(peer.myLookup!.publicKey);
}

/** The queue a peer reads this device's messages from. */
export function contactLookupKey(peer: PeerRecord): string {
  return lookupKeyOf(peer.contact!.lookupPublicKey);
}

/**
 * The ratchet's associated data: both identity public keys, in byte order so
 * both sides compute the same bytes without knowing who initiated.
 */
export function ratchetAd(peer: PeerRecord): Uint8Array {
  const mine = peer.myIdentity!.publicKey;
  const theirs = peer.contact!.identityPublicKey;
  return compareBytes(mine, theirs) <= 0 ? concatBytes(mine, theirs) : concatBytes(theirs, mine);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/** What the signature of a packed user message covers. */
export function signedBytes(
  destination: string,
  payload: Uint8Array,
  header: Uint8Array,
): Uint8Array {
  return concatBytes(encoder.encode(destination), payload, header);
}

/** The result of packing: the message to queue and the peer's next ratchet. */
export interface Packed {
  /** Ready for the outbox. */
  packed: PackedUserMessage;
  /** The serialized ratchet after this message; commit it before the message leaves. */
  ratchet: Uint8Array;
}

/**
 * Encrypts a user message for `peer`: ratchet → symmetric → seal → sign.
 *
 * @throws {RangeError} when the message exceeds {@linkcode USER_MESSAGE_BYTES_MAX}
 */
export async function pack(
  peer: PeerRecord,
  message: UserMessage,
  options: { random: Random; now: number },
): Promise<Packed> {
  const plaintext = encode(UserMessageSchema, message);
  if (plaintext.length > USER_MESSAGE_BYTES_MAX) {
    throw new RangeError(
      `Cannot send to peer "${peer.name}" (uid ${peer.uid}): the message has ${plaintext.length} bytes, ` +
        `more than ${USER_MESSAGE_BYTES_MAX}`,
    );
  }
  const state = deserializeRatchet(peer.ratchet);
  const step = ratchetEncrypt(state, plaintext, options);
  const symmetric = symEncrypt(peer.mySymKey, step.ciphertext, options.random);
  const payload = await seal(peer.contact!.encryptionPublicKey, symmetric, options.random);
  const destination = contactLookupKey(peer);
  const signature = await sign(
    peer.myIdentity!.privateKey,
    signedBytes(destination, payload, step.header),
  );
  const packed = create(PackedUserMessageSchema, {
    destination,
    payload,
    signature,
    drHeader: step.header,
  });
  return { packed, ratchet: serializeRatchet(step.state) };
}

/** The result of unpacking: the message and the peer's next ratchet. */
export interface Unpacked {
  /** The decrypted message. */
  message: UserMessage;
  /** The serialized ratchet after this message; commit it with the message's effects. */
  ratchet: Uint8Array;
}

/**
 * Verifies and decrypts a packed message from `peer`: verify → unseal →
 * symmetric → ratchet.
 *
 * @throws {BadSignature | BadCiphertext | Replay | TooManySkipped | Malformed}
 */
export async function unpack(
  peer: PeerRecord,
  packed: PackedUserMessage,
  options: { random: Random; now: number },
): Promise<Unpacked> {
  const verified = await verify(
    peer.contact!.identityPublicKey,
    signedBytes(packed.destination, packed.payload, packed.drHeader),
    packed.signature,
  );
  if (!verified) {
    throw new BadSignature(
      `Cannot open message: signature does not match peer "${peer.name}" (uid ${peer.uid})`,
    );
  }
  const symmetric = await open(peer.myEncryption!.privateKey, packed.payload);
  const ciphertext = symDecrypt(peer.contact!.symKey, symmetric);
  const state = deserializeRatchet(peer.ratchet);
  const step = ratchetDecrypt(state, packed.drHeader, ciphertext, options);
  const message = decode(UserMessageSchema, step.plaintext, { bytesMax: USER_MESSAGE_BYTES_MAX });
  return { message, ratchet: serializeRatchet(step.state) };
}

/** Serialized size of a packed message, as the relay counts it. */
export function packedBytes(packed: PackedUserMessage): number {
  return encode(PackedUserMessageSchema, packed).length;
}

/** Asserts a peer record is complete enough to send or receive. */
export function assertUsablePeer(peer: PeerRecord): void {
  if (!peer.contact || !peer.myIdentity || !peer.myEncryption || !peer.myLookup) {
    throw new Malformed(`Peer "${peer.name}" (uid ${peer.uid}) has no completed pairing yet`);
  }
  if (peer.ratchet.length === 0) {
    throw new Malformed(`Peer "${peer.name}" (uid ${peer.uid}) holds no ratchet on this device`);
  }
}

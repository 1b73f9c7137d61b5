/**
 * The message pipeline (PROTOCOL.md, "Sealing a user message"): a
 * `UserMessage` goes through the ratchet, the symmetric layer, a frame
 * padded to a bucket, the seal to the peer's encryption key and a signature;
 * inbound is the exact reverse, with the signature checked first. The relay
 * sees the destination, a bucket-sized sealed payload and a signature. Both directions are pure: they return the
 * peer's next ratchet state instead of changing it, so a failure leaves every
 * stored state as it was.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { decode, encode } from "../proto/mod.ts";
import {
  type PackedUserMessage,
  PackedUserMessageSchema,
  type PeerRecord,
  ServerCardSchema,
  type UserMessage,
  UserMessageSchema,
} from "../proto/mod.ts";
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
} from "../crypto/mod.ts";
import { BadSignature, Malformed, MessageTooLarge, Replay } from "./errors.ts";
import { relayLimits } from "../envelope/mod.ts";
import type { Random } from "../ports/mod.ts";

/** The largest serialized user message the pipeline accepts from any relay, in bytes. */
export const USER_MESSAGE_BYTES_MAX = 256 * 1024;

/** The seal's overhead: ephemeral public key (32), nonce (24), tag (16), in bytes. */
export const SEAL_OVERHEAD_BYTES = 72;
/** An Ed25519 signature, in bytes. */
const SIGNATURE_BYTES = 64;

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

/** What the signature of a packed user message covers: destination ‖ sealed payload. */
export function signedBytes(destination: string, payload: Uint8Array): Uint8Array {
  return concatBytes(encoder.encode(destination), payload);
}

/**
 * The sizes a sealed frame is padded to, in bytes: every packed message, of
 * every type, carries one of them (plus the seal's overhead), so the relay
 * learns only the bucket. The first bucket holds every routine message: chat
 * texts up to about 1.5 KB together with their device-sync copies, acks, and
 * the sync records that carry keys (a contact's record, ~1.4 KB; a sibling
 * introduction, ~1.7 KB), which a 1 KiB bucket would single out.
 */
export const PAD_BUCKETS_BYTES: readonly number[] = Object.freeze([
  2048,
  4096,
  8192,
  16384,
  32768,
  65536,
  131072,
  262144,
]);

/** What a sealed frame carries, named by its kind byte. */
export const FrameKind = Object.freeze({
  /** A ratchet message: header and symmetric-encrypted ratchet ciphertext. */
  RATCHET: 1,
  /** An invitation answer (kernel/invitation.ts), sealed without the symmetric layer. */
  ANSWER: 2,
  /** A session reset (kernel/rekey.ts), sealed without the symmetric layer. */
  RESET: 3,
});

/** The kind byte of a sealed frame. */
export type FrameKind = typeof FrameKind[keyof typeof FrameKind];

const FRAME_VERSION = 1;
/** version (1) ‖ kind (1) ‖ body length (4, big-endian). */
const FRAME_HEAD_BYTES = 6;
/** The symmetric layer's nonce (24) and tag (16). */
const SYM_OVERHEAD_BYTES = 40;
/** The ratchet header's length prefix (2, big-endian) and the header (41). */
const RATCHET_HEADER_FIELD_BYTES = 2 + 41;
/** The ratchet ciphertext's tag. */
const RATCHET_TAG_BYTES = 16;
/** Everything a ratchet frame adds around the serialized user message, in bytes. */
export const RATCHET_FRAME_OVERHEAD_BYTES = FRAME_HEAD_BYTES + SYM_OVERHEAD_BYTES +
  RATCHET_HEADER_FIELD_BYTES + RATCHET_TAG_BYTES;

/** A sealed frame, opened. */
export interface Frame {
  /** What the body is. */
  kind: FrameKind;
  /** The body, without the padding. */
  body: Uint8Array;
}

/** Options of the sealing functions. */
export interface SealOptions {
  /** The randomness port. */
  random: Random;
  /**
   * Pad the frame to a bucket of {@linkcode PAD_BUCKETS_BYTES}. Only tests
   * turn it off, to show what the relay would learn without it.
   * @default {true}
   */
  pad?: boolean;
  /**
   * Also carry the ratchet header in clear after the signature, as before it
   * moved inside the seal. Only tests set it, to show that `traffic_blind`
   * sees what repeats within a session.
   * @default {false}
   */
  headerInClear?: boolean;
}

/** The bucket a frame of `bytes` is padded to, or undefined when none is big enough. */
export function padBucket(bytes: number): number | undefined {
  return PAD_BUCKETS_BYTES.find((bucket) => bucket >= bytes);
}

/**
 * Frames `body` (version, kind, length), zero-fills it to its bucket and
 * seals it to `recipient`: the padding sits inside the seal's AEAD.
 *
 * @throws {RangeError} when the frame is larger than the largest bucket
 */
export function sealFrame(
  recipient: Uint8Array,
  kind: FrameKind,
  body: Uint8Array,
  options: SealOptions,
): Promise<Uint8Array> {
  const bytes = FRAME_HEAD_BYTES + body.length;
  const size = options.pad === false ? bytes : padBucket(bytes);
  if (size === undefined) {
    throw new RangeError(
      `Cannot pad a frame of ${bytes} bytes: the largest bucket is ${PAD_BUCKETS_BYTES.at(-1)}`,
    );
  }
  const frame = new Uint8Array(size);
  frame[0] = FRAME_VERSION;
  frame[1] = kind;
  new DataView(frame.buffer).setUint32(2, body.length);
  frame.set(body, FRAME_HEAD_BYTES);
  // A promise, as callers (and the order of a simulated run) expect of sealing a frame.
  return Promise.try(() => seal(recipient, frame, options.random));
}

/**
 * Opens a sealed frame with `privateKey` and strips its padding.
 *
 * @throws {BadCiphertext} when it does not open
 * @throws {Malformed} when the frame's version, kind, length or zero fill is wrong
 */
export async function openFrame(privateKey: Uint8Array, payload: Uint8Array): Promise<Frame> {
  const frame = await open(privateKey, payload);
  if (frame.length < FRAME_HEAD_BYTES || frame[0] !== FRAME_VERSION) {
    throw new Malformed(
      `Cannot open message: the sealed frame (${frame.length} bytes) has no version ${FRAME_VERSION} head`,
    );
  }
  const kind = frame[1];
  if (kind !== FrameKind.RATCHET && kind !== FrameKind.ANSWER && kind !== FrameKind.RESET) {
    throw new Malformed(`Cannot open message: unknown frame kind ${kind}`);
  }
  const length = new DataView(frame.buffer, frame.byteOffset).getUint32(2);
  const end = FRAME_HEAD_BYTES + length;
  if (end > frame.length || frame.subarray(end).some((b) => b !== 0)) {
    throw new Malformed(
      `Cannot open message: a body of ${length} bytes does not fit a ${frame.length}-byte frame with zero fill`,
    );
  }
  return { kind, body: frame.slice(FRAME_HEAD_BYTES, end) };
}

/**
 * The largest serialized user message `peer`'s home relay takes once packed
 * and padded, in bytes: the largest bucket whose packed message still fits
 * the relay card's `messageBytesMax` (envelope/limits.ts), less the
 * frame's overhead; 0 when no bucket fits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { PeerRecordSchema } from "../proto/gen/meow_pb.ts";
 * import { userMessageBytesMax } from "./pipeline.ts";
 * const peer = create(PeerRecordSchema, {
 *   contact: { lookupPublicKey: new Uint8Array(32), pullServers: [{ limits: { messageBytesMax: 32 * 1024 } }] },
 * });
 * assert.equal(userMessageBytesMax(peer), 16384 - 105);
 * ```
 */
export function userMessageBytesMax(peer: PeerRecord): number {
  const limit =
    relayLimits(peer.contact?.pullServers[0] ?? create(ServerCardSchema)).messageBytesMax;
  const destination = lookupKeyOf(peer.contact?.lookupPublicKey ?? new Uint8Array(32));
  // A packed message's size depends on the lengths of its fields alone (the destination is
  // base64url: one byte a character), so the answer is one per limit and destination length,
  // worked out once rather than by encoding every bucket's worth of bytes at every send.
  const key = `${limit}/${destination.length}`;
  let bytesMax = bytesMaxByLimit.get(key);
  if (bytesMax === undefined) {
    bytesMax = bytesMaxFor(limit, destination);
    if (bytesMaxByLimit.size >= BYTES_MAX_CACHED) bytesMaxByLimit.clear();
    bytesMaxByLimit.set(key, bytesMax);
  }
  return bytesMax;
}

/** At most this many (limit, destination length) answers of userMessageBytesMax are kept. */
const BYTES_MAX_CACHED = 64;
const bytesMaxByLimit = new Map<string, number>();

function bytesMaxFor(limit: number, destination: string): number {
  const fits = PAD_BUCKETS_BYTES.filter((bucket) =>
    packedBytes(create(PackedUserMessageSchema, {
      destination,
      payload: new Uint8Array(bucket + SEAL_OVERHEAD_BYTES),
      signature: new Uint8Array(SIGNATURE_BYTES),
    })) <= limit
  );
  const bucket = fits.at(-1);
  return bucket === undefined
    ? 0
    : Math.min(USER_MESSAGE_BYTES_MAX, bucket - RATCHET_FRAME_OVERHEAD_BYTES);
}

/**
 * Checks that `message` fits {@linkcode userMessageBytesMax} of `peer`, as
 * chat and forwarding do before anything is stored; returns its bytes.
 *
 * @throws {MessageTooLarge} when it does not fit
 */
export function assertFits(peer: PeerRecord, message: UserMessage): Uint8Array {
  const bytes = encode(UserMessageSchema, message);
  const bytesMax = userMessageBytesMax(peer);
  if (bytes.length > bytesMax) throw new MessageTooLarge(bytes.length, bytesMax);
  return bytes;
}

/** The result of packing: the message to queue and the peer's next ratchet. */
export interface Packed {
  /** Ready for the outbox. */
  packed: PackedUserMessage;
  /** The serialized ratchet after this message; commit it before the message leaves. */
  ratchet: Uint8Array;
}

/** Options of {@linkcode pack}. */
export interface PackOptions extends SealOptions {
  /** The clock time, in ms. */
  now: number;
  /**
   * Check the message against {@linkcode userMessageBytesMax}. Only a test
   * build that shows the check's worth turns it off.
   * @default {true}
   */
  checkSize?: boolean;
}

/**
 * Encrypts a user message for `peer`: ratchet → frame (kind, header,
 * symmetric layer) → pad → seal → sign over destination ‖ sealed payload.
 * Pure: the peer's ratchet moves only when the caller commits the result.
 *
 * @throws {MessageTooLarge} when the message exceeds {@linkcode userMessageBytesMax} of `peer`
 */
export async function pack(
  peer: PeerRecord,
  message: UserMessage,
  options: PackOptions,
): Promise<Packed> {
  const plaintext = options.checkSize === false
    ? encode(UserMessageSchema, message)
    : assertFits(peer, message);
  if (plaintext.length > USER_MESSAGE_BYTES_MAX) {
    throw new MessageTooLarge(plaintext.length, USER_MESSAGE_BYTES_MAX);
  }
  const state = deserializeRatchet(peer.ratchet);
  const step = ratchetEncrypt(state, plaintext, options);
  const inner = new Uint8Array(2 + step.header.length + step.ciphertext.length);
  new DataView(inner.buffer).setUint16(0, step.header.length);
  inner.set(step.header, 2);
  inner.set(step.ciphertext, 2 + step.header.length);
  const body = symEncrypt(peer.mySymKey, inner, options.random);
  const payload = await sealFrame(
    peer.contact!.encryptionPublicKey,
    FrameKind.RATCHET,
    body,
    options,
  );
  const destination = contactLookupKey(peer);
  const signature = await sign(peer.myIdentity!.privateKey, signedBytes(destination, payload));
  const packed = create(PackedUserMessageSchema, {
    destination,
    payload,
    signature: options.headerInClear ? concatBytes(signature, step.header) : signature,
  });
  return { packed, ratchet: serializeRatchet(step.state) };
}

/** The result of unpacking: the message and the peer's next ratchet. */
export interface Unpacked {
  /** The decrypted message. */
  message: UserMessage;
  /** The serialized ratchet after this message; commit it with the message's effects. */
  ratchet: Uint8Array;
  /** The ratchet header the message carried inside its seal. */
  header: Uint8Array;
}

/** Options of {@linkcode unpack} and {@linkcode openPacked}. */
export interface UnpackOptions {
  /** The randomness port. */
  random: Random;
  /** The clock time, in ms. */
  now: number;
  /** The ratchet header also follows the signature (a test build only). */
  headerInClear?: boolean;
}

/** A packed message whose signature checked out, its frame opened. */
export interface OpenedPacked {
  /** The frame, without its padding. */
  frame: Frame;
  /** The signature matched one of the peer's retired identity keys, not its current one. */
  signedByRetired: boolean;
}

/**
 * Verifies a packed message from `peer` and opens its frame: the signature
 * against the contact's identity key (else one it retired, which only a
 * ratchet frame, authenticated by the live session, or a repeat may carry),
 * then the seal with the private key of the queue it came to — this side's
 * current encryption key, or the previous one kept after a rekey.
 *
 * @throws {BadSignature | BadCiphertext | Malformed}
 */
export async function openPacked(
  peer: PeerRecord,
  packed: PackedUserMessage,
  options: UnpackOptions,
): Promise<OpenedPacked> {
  const signed = signedBytes(packed.destination, packed.payload);
  const signature = options.headerInClear
    ? packed.signature.subarray(0, SIGNATURE_BYTES)
    : packed.signature;
  let signedByRetired = false;
  if (!await verify(peer.contact!.identityPublicKey, signed, signature)) {
    for (const key of peer.retiredIdentityKeys) {
      if (await verify(key, signed, signature)) {
        signedByRetired = true;
        break;
      }
    }
    if (!signedByRetired) {
      throw new BadSignature(
        `Cannot open message: signature does not match peer "${peer.name}" (uid ${peer.uid})`,
      );
    }
  }
  const previous = peer.previousKeys;
  const privateKey = previous?.lookup && previous.encryption &&
      packed.destination === lookupKeyOf(previous.lookup.publicKey)
    ? previous.encryption.privateKey
    : peer.myEncryption!.privateKey;
  return { frame: await openFrame(privateKey, packed.payload), signedByRetired };
}

/**
 * Decrypts an opened ratchet frame from `peer`: symmetric layer, then the
 * ratchet. An answer frame from a completed peer is a {@linkcode Replay}.
 *
 * @throws {BadCiphertext | Replay | TooManySkipped | Malformed}
 */
export function unpackFrame(peer: PeerRecord, frame: Frame, options: UnpackOptions): Unpacked {
  if (frame.kind === FrameKind.ANSWER) {
    // Delivery is at least once: a second copy of the answer that completed this peer.
    throw new Replay(
      `Dropped a repeated invitation answer from peer "${peer.name}" (uid ${peer.uid})`,
    );
  }
  if (frame.kind !== FrameKind.RATCHET) {
    throw new Malformed(`Cannot open message: a frame of kind ${frame.kind} carries no ratchet`);
  }
  const inner = symDecrypt(peer.contact!.symKey, frame.body);
  const headerBytes = inner.length < 2
    ? -1
    : new DataView(inner.buffer, inner.byteOffset).getUint16(0);
  if (headerBytes < 0 || 2 + headerBytes > inner.length) {
    throw new Malformed(
      `Cannot open message: the ratchet frame (${inner.length} bytes) is truncated`,
    );
  }
  const header = inner.slice(2, 2 + headerBytes);
  const state = deserializeRatchet(peer.ratchet);
  const step = ratchetDecrypt(state, header, inner.subarray(2 + headerBytes), options);
  const message = decode(UserMessageSchema, step.plaintext, { bytesMax: USER_MESSAGE_BYTES_MAX });
  return { message, ratchet: serializeRatchet(step.state), header };
}

/**
 * Verifies and decrypts a packed message from `peer`: verify → unseal →
 * frame kind → symmetric → ratchet ({@linkcode openPacked}, then
 * {@linkcode unpackFrame}). A repeated invitation answer (an answer frame
 * from a completed peer, signed by it) is a {@linkcode Replay}.
 *
 * @throws {BadSignature | BadCiphertext | Replay | TooManySkipped | Malformed}
 */
export async function unpack(
  peer: PeerRecord,
  packed: PackedUserMessage,
  options: UnpackOptions,
): Promise<Unpacked> {
  const { frame } = await openPacked(peer, packed, options);
  return unpackFrame(peer, frame, options);
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

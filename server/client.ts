/**
 * The client side of the relay protocol, used by the device kernel: seal a
 * request to a relay, open and verify its answer, sign a pull request.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  concatBytes,
  type KeyPair,
  open,
  type Random,
  seal,
  sign,
  toBase64Url,
  verify,
} from "../kernel/crypto/mod.ts";
import { BadSignature, Malformed } from "../kernel/errors.ts";
import { decode, encode, MESSAGE_BYTES_MAX } from "../proto/codec.ts";
import {
  type ConversationRequest,
  ConversationRequestSchema,
  type FromServerMessage,
  FromServerMessageSchema,
  PackedServerMessageSchema,
  type ServerCard,
  type ToServerMessage,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";

const encoder = new TextEncoder();
/** Largest relay answer a client reads, in bytes (a full pull plus envelope and sealing). */
export const ANSWER_BYTES_MAX: number = 2 * MESSAGE_BYTES_MAX;

/** Options for {@linkcode sealRequest}. */
export interface SealRequestOptions {
  /** The relay's card: its X25519 key is what the request is sealed to. */
  server: ServerCard;
  /** What to ask. */
  request: ToServerMessage;
  /** The device's X25519 key: the answer is sealed to its public half. */
  deviceEncryption: KeyPair;
  /** The device's Ed25519 key: signs from ‖ payload. */
  deviceSigning: KeyPair;
  /** Sealing randomness. */
  random: Random;
}

/**
 * Seals `request` to the relay: the body of a `POST /` (or of
 * `Transport.exchange`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { sealRequest } from "./client.ts";
 * import { ServerCore } from "./core.ts";
 * import { MemoryBackend } from "./memory.ts";
 * import { generateEncryptionKeyPair, generateSigningKeyPair, SeededRandom } from "../kernel/crypto/mod.ts";
 * import { ToServerMessageSchema } from "../proto/gen/meow_pb.ts";
 * const random = new SeededRandom(2);
 * const core = await ServerCore.create({
 *   backend: new MemoryBackend(), random, clock: { now: () => 0, sleep: () => Promise.resolve() },
 * });
 * const body = await sealRequest({
 *   server: core.card(),
 *   request: create(ToServerMessageSchema, { uuid: "r" }),
 *   deviceEncryption: generateEncryptionKeyPair(random),
 *   deviceSigning: generateSigningKeyPair(random),
 *   random,
 * });
 * assert(body.length > 0);
 * ```
 */
export async function sealRequest(options: SealRequestOptions): Promise<Uint8Array> {
  const { server, request, deviceEncryption, deviceSigning, random } = options;
  const payload = await seal(
    server.encryptionPublicKey,
    encode(ToServerMessageSchema, request),
    random,
  );
  const from = deviceEncryption.publicKey;
  const signature = await sign(deviceSigning.privateKey, concatBytes(from, payload));
  return encode(
    PackedServerMessageSchema,
    create(PackedServerMessageSchema, {
      from,
      payload,
      signature,
      fromSigning: deviceSigning.publicKey,
    }),
  );
}

/** Options for {@linkcode openAnswer}. */
export interface OpenAnswerOptions {
  /** The card of the relay the request went to: its signing key must have signed the answer. */
  server: ServerCard;
  /** The answer's bytes. */
  body: Uint8Array;
  /** The device's X25519 key the answer is sealed to. */
  deviceEncryption: KeyPair;
}

/**
 * Verifies and opens a relay's answer.
 *
 * @throws {Malformed} when the body is empty (the relay could not read the request's
 *   envelope) or does not decode
 * @throws {BadSignature} when the answer is not signed by the card's signing key
 * @throws {BadCiphertext} when the payload is not sealed to `deviceEncryption`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openAnswer } from "./client.ts";
 * import { Malformed } from "../kernel/errors.ts";
 * import { create } from "@bufbuild/protobuf";
 * import { ServerCardSchema } from "../proto/gen/meow_pb.ts";
 * import { generateEncryptionKeyPair, SeededRandom } from "../kernel/crypto/mod.ts";
 * const deviceEncryption = generateEncryptionKeyPair(new SeededRandom(3));
 * const server = create(ServerCardSchema, {});
 * await openAnswer({ server, body: new Uint8Array(0), deviceEncryption }).then(
 *   () => assert(false),
 *   (e) => assert(e instanceof Malformed),
 * );
 * ```
 */
export async function openAnswer(options: OpenAnswerOptions): Promise<FromServerMessage> {
  const { server, body, deviceEncryption } = options;
  if (body.length === 0) {
    throw new Malformed(
      `Cannot open the answer of relay ${server.uid}: it is empty (the relay could not read the request envelope)`,
    );
  }
  const envelope = decode(PackedServerMessageSchema, body, { bytesMax: ANSWER_BYTES_MAX });
  const signed = concatBytes(envelope.from, envelope.payload);
  if (
    !equalBytes(envelope.fromSigning, server.signingPublicKey) ||
    !(await verify(server.signingPublicKey, signed, envelope.signature))
  ) {
    throw new BadSignature(
      `Cannot open the answer of relay ${server.uid}: it is not signed by the card's signing key`,
    );
  }
  const plaintext = await open(deviceEncryption.privateKey, envelope.payload);
  return decode(FromServerMessageSchema, plaintext, { bytesMax: ANSWER_BYTES_MAX });
}

/** Options for {@linkcode signPull}. */
export interface SignPullOptions {
  /** The relay the pull goes to: its uid is signed, so the proof is good there only. */
  server: ServerCard;
  /** The lookup key pair whose public half names the queue. */
  lookup: KeyPair;
  /** The client's clock, in ms; the relay accepts it within 5 minutes of its own. */
  now: number;
}

/**
 * A pull request for the queue of `lookup` on `server`. Each signature is
 * accepted once: Ed25519 is deterministic, so sign each pull of one queue at
 * a different `now` (two pulls of one queue signed in the same millisecond
 * are one signature, and the second is refused as a replay).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { signPull } from "./client.ts";
 * import { generateLookupKeyPair, SeededRandom, toBase64Url } from "../kernel/crypto/mod.ts";
 * import { ServerCardSchema } from "../proto/gen/meow_pb.ts";
 * const lookup = generateLookupKeyPair(new SeededRandom(4));
 * const pull = await signPull({ server: create(ServerCardSchema, { uid: "ab" }), lookup, now: 5 });
 * assert(pull.lookupKey === toBase64Url(lookup.publicKey) && pull.sendTimestamp === 5);
 * ```
 */
export async function signPull(options: SignPullOptions): Promise<ConversationRequest> {
  const { server, lookup } = options;
  const now = Math.trunc(options.now);
  const lookupKey = toBase64Url(lookup.publicKey);
  const signed = concatBytes(
    encoder.encode(server.uid),
    encoder.encode(lookupKey),
    encoder.encode(String(now)),
  );
  return create(ConversationRequestSchema, {
    lookupKey,
    sendTimestamp: now,
    lookupSignature: await sign(lookup.privateKey, signed),
  });
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

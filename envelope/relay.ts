/**
 * The relay half of the relay envelope: derive the request's keys from its
 * ephemeral `from` and the relay's X25519 key, open the request, seal the
 * answer under the answer key.
 *
 * @module
 */
import {
  type KeyPair,
  type Random,
  symBoxBytes,
  symDecrypt,
  symEncrypt,
  x25519SharedSecret,
} from "../crypto/mod.ts";
import { Malformed, type MeowError } from "../crypto/mod.ts";
import { decode, encodeWithElements, fieldHeader } from "../proto/mod.ts";
import {
  type FromServerMessage,
  FromServerMessageSchema,
  PackedServerMessageSchema,
  type ToServerMessage,
  ToServerMessageSchema,
} from "../proto/mod.ts";
import { envelopeKeys, PUBLIC_KEY_BYTES } from "./_keys.ts";
import { type RelaySessions, SessionUnknown } from "./session.ts";

/** Options for {@linkcode openRelayRequest}. */
export interface OpenRelayRequestOptions {
  /** The relay's keys: the X25519 pair named in its card. */
  keys: { encryption: KeyPair };
  /** The request body. */
  body: Uint8Array;
  /** The sessions this relay holds, for a request that names one. */
  sessions?: RelaySessions;
  /** The relay's clock, in ms (session expiry). */
  nowMs?: number;
}

/** A request whose envelope the relay could read: there is a key to answer under. */
export interface RelayRequest {
  /**
   * What the request's pulls are bound to: its ephemeral X25519 public key (the envelope's
   * `from`), or in a session its handle.
   */
  binding: Uint8Array;
  /** The key the answer is sealed under ({@linkcode sealRelayAnswer}). */
  answerKey: Uint8Array;
  /** In a session: the answer's associated data (the handle). */
  answerAd?: Uint8Array;
  /** The ToServerMessage bytes, when the payload opened under the request key. */
  plaintext?: Uint8Array;
  /** The request, when the payload opened and decoded. */
  request?: ToServerMessage;
  /** Why there is no request: BadCiphertext (does not open) or Malformed (does not decode). */
  error?: MeowError;
}

/**
 * Reads a request's envelope: derives its keys (one X25519 agreement) and opens its payload;
 * or, for a request in a session, takes its handle from `sessions` (one AEAD). A payload that
 * does not open or decode is reported in `error`, to be answered under `answerKey`.
 *
 * @throws {SessionUnknown} when the request names a session and no session it holds opens it
 *   (answer `SESSION_UNKNOWN_ANSWER`); nothing changed
 * @throws {Malformed} when the body is not a PackedServerMessage, or its `from` is not a usable
 *   32-byte X25519 key: then nobody can be answered
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { openRelayExchange, openRelayRequest, sealRelayAnswer } from "./mod.ts";
 * import { generateEncryptionKeyPair, SeededRandom } from "../crypto/mod.ts";
 * import { FromServerMessageSchema, ServerCardSchema, ToServerMessageSchema } from "../proto/gen/meow_pb.ts";
 * const random = new SeededRandom(5);
 * const encryption = generateEncryptionKeyPair(random);
 * const server = create(ServerCardSchema, { uid: "r", encryptionPublicKey: encryption.publicKey });
 * const exchange = await openRelayExchange({ server, random });
 * const body = exchange.seal(create(ToServerMessageSchema, { uuid: "q", timeoutMs: 7 }));
 * const opened = await openRelayRequest({ keys: { encryption }, body });
 * assert.equal(opened.request?.timeoutMs, 7);
 * const answer = create(FromServerMessageSchema, { uuidAck: opened.request!.uuid, stored: 1 });
 * const reply = sealRelayAnswer({ answerKey: opened.answerKey, answer, random });
 * assert.equal(exchange.open(reply).stored, 1);
 * ```
 */
export async function openRelayRequest(
  options: OpenRelayRequestOptions,
): Promise<RelayRequest> {
  const { keys, body } = options;
  const envelope = decode(PackedServerMessageSchema, body, { bytesMax: body.length });
  if (envelope.session.length > 0) {
    const taken = options.sessions?.take(envelope, options.nowMs ?? 0);
    if (taken === undefined) {
      throw new SessionUnknown(
        "Cannot open a session request: no session this relay holds opens it",
      );
    }
    const { handle, answerKey, plaintext } = taken;
    const opened: RelayRequest = { binding: handle, answerKey, answerAd: handle, plaintext };
    try {
      opened.request = decode(ToServerMessageSchema, plaintext);
    } catch (e) {
      opened.error = e as MeowError;
    }
    return opened;
  }
  const from = envelope.from;
  if (from.length !== PUBLIC_KEY_BYTES) {
    throw new Malformed(
      `Cannot read a request envelope: from is ${from.length} bytes, expected ${PUBLIC_KEY_BYTES}`,
    );
  }
  const shared = await x25519SharedSecret(keys.encryption.privateKey, from);
  const { requestKey, answerKey } = envelopeKeys(shared, from, keys.encryption.publicKey);
  const opened: RelayRequest = { binding: from, answerKey };
  try {
    opened.plaintext = symDecrypt(requestKey, envelope.payload);
    opened.request = decode(ToServerMessageSchema, opened.plaintext);
  } catch (e) {
    opened.error = e as MeowError;
  }
  return opened;
}

/** Options for {@linkcode sealRelayAnswer}. */
export interface SealRelayAnswerOptions {
  /** The request's answer key ({@linkcode RelayRequest.answerKey}). */
  answerKey: Uint8Array;
  /** The answer; its `uuid_ack` names the request. */
  answer: FromServerMessage;
  /** The nonce's randomness. */
  random: Random;
  /** The answer's associated data ({@linkcode RelayRequest.answerAd}). */
  ad?: Uint8Array;
  /**
   * Messages for the answer's `chat`, as stored (encoded PackedUserMessages), appended after
   * `answer.chat` without being decoded again.
   */
  chat?: readonly Uint8Array[];
}

/**
 * The answer body: a PackedServerMessage whose payload is `answer` under the answer key (no
 * `from`, no signature: only the relay and the requester can derive the key).
 */
export function sealRelayAnswer(options: SealRelayAnswerOptions): Uint8Array {
  const { answerKey, answer, random, chat = [], ad } = options;
  const plaintext = encodeWithElements(FromServerMessageSchema, answer, "chat", chat);
  // The envelope's only field is the payload: its tag and length, then the box, written at once
  // (encoding the envelope would copy the box again).
  const header = fieldHeader(PackedServerMessageSchema, "payload", symBoxBytes(plaintext.length));
  return symEncrypt(answerKey, plaintext, random, ad, header);
}

/**
 * The device half of the relay envelope: a fresh ephemeral X25519 key per
 * request seals the request under the request key and opens the answer under
 * the answer key, and checks that the answer names the request.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Random, symDecrypt, symEncrypt, x25519EphemeralAgreement } from "../crypto/mod.ts";
import { Malformed, Replay } from "../crypto/mod.ts";
import { decode, encode, MESSAGE_BYTES_MAX } from "../proto/mod.ts";
import {
  ErrorCode,
  type FromServerMessage,
  FromServerMessageSchema,
  PackedServerMessageSchema,
  type ServerCard,
  type ToServerMessage,
  ToServerMessageSchema,
} from "../proto/mod.ts";
import { envelopeKeys } from "./_keys.ts";
import { type ClientSession, sealSessionRequest, SessionUnknown } from "./session.ts";

/** Largest relay answer a client reads, in bytes (a full pull plus envelope and sealing). */
export const ANSWER_BYTES_MAX: number = 2 * MESSAGE_BYTES_MAX;

/** Options for {@linkcode openRelayExchange}. */
export interface RelayExchangeOptions {
  /** The relay's card: its X25519 key is what the ephemeral key agrees with. */
  server: ServerCard;
  /** Where the ephemeral key and the nonce come from. */
  random: Random;
  /**
   * A session with this relay to send in (envelope/session.ts): the exchange then costs no
   * public-key operation. Without one, the v2 envelope (a fresh ephemeral key).
   */
  session?: ClientSession;
}

/**
 * One request to one relay and its answer, under keys no other request shares.
 * {@linkcode RelayExchange.seal} once, send the bytes, {@linkcode RelayExchange.open} the answer.
 */
export interface RelayExchange {
  /** The relay the exchange is with. */
  readonly server: ServerCard;
  /**
   * What the request's pulls sign or MAC, unique to this request: its ephemeral X25519 public
   * key (the envelope's `from`) in v2, its handle in a session.
   */
  readonly binding: Uint8Array;
  /** Whether the exchange goes in a session. */
  readonly inSession: boolean;
  /**
   * The request body: a PackedServerMessage whose `from` is the ephemeral key and whose payload
   * is `request` under the request key.
   *
   * @throws {TypeError} when the exchange sealed a request already, or `request.uuid` is empty
   */
  seal(request: ToServerMessage): Uint8Array;
  /**
   * The relay's answer to the sealed request.
   *
   * @throws {TypeError} when nothing was sealed yet
   * @throws {Malformed} when the body is empty (the relay could not read the envelope), does
   *   not decode, or says the relay could not read the request
   * @throws {BadCiphertext} when the answer does not open under this exchange's answer key (an
   *   answer to any other request, or tampered)
   * @throws {Replay} when the answer opens but names another request
   * @throws {SessionUnknown} when the exchange is in a session the relay no longer holds
   *   (nothing was done: send the request again in a new exchange without it)
   */
  open(body: Uint8Array): FromServerMessage;
}

/**
 * Starts one request to `server`: in `session` when given (its next handle), otherwise a fresh
 * ephemeral X25519 key (one key generation, one agreement) and the request and answer keys
 * derived from it.
 *
 * @throws {Malformed} when the card's encryption key is not a usable X25519 key
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { openRelayExchange } from "./mod.ts";
 * import { ServerCore } from "../server/core.ts";
 * import { MemoryBackend } from "../server/memory.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { ToServerMessageSchema } from "../proto/gen/meow_pb.ts";
 * const random = new SeededRandom(2);
 * const core = await ServerCore.create({
 *   backend: new MemoryBackend(), random, clock: { now: () => 0, sleep: () => Promise.resolve() },
 * });
 * const exchange = await openRelayExchange({ server: core.card(), random });
 * const body = exchange.seal(create(ToServerMessageSchema, { uuid: "r" }));
 * const answer = exchange.open(await core.handle(body));
 * assert.equal(answer.uuidAck, "r");
 * ```
 */
export async function openRelayExchange(options: RelayExchangeOptions): Promise<RelayExchange> {
  const { server, random, session } = options;
  if (session) {
    const handle = session.nextHandle();
    return new Exchange(server, random, handle, session.keys, true);
  }
  const relayKey = server.encryptionPublicKey;
  const { publicKey, sharedSecret } = await x25519EphemeralAgreement(relayKey, random);
  const keys = envelopeKeys(sharedSecret, publicKey, relayKey);
  return new Exchange(server, random, publicKey, keys, false);
}

class Exchange implements RelayExchange {
  #uuid: string | undefined;

  constructor(
    readonly server: ServerCard,
    readonly random: Random,
    readonly binding: Uint8Array,
    readonly keys: { requestKey: Uint8Array; answerKey: Uint8Array },
    readonly inSession: boolean,
  ) {}

  seal(request: ToServerMessage): Uint8Array {
    if (this.#uuid !== undefined) {
      throw new TypeError(
        `Cannot seal request "${request.uuid}": this exchange sealed "${this.#uuid}" already`,
      );
    }
    if (!request.uuid) throw new TypeError("Cannot seal a request without a uuid");
    this.#uuid = request.uuid;
    const plaintext = encode(ToServerMessageSchema, request);
    if (this.inSession) {
      return sealSessionRequest(this.keys.requestKey, this.binding, plaintext, this.random);
    }
    const payload = symEncrypt(this.keys.requestKey, plaintext, this.random);
    return encode(
      PackedServerMessageSchema,
      create(PackedServerMessageSchema, { from: this.binding, payload }),
    );
  }

  open(body: Uint8Array): FromServerMessage {
    const uuid = this.#uuid;
    if (uuid === undefined) throw new TypeError("Cannot open an answer: nothing was sealed");
    const relay = this.server.uid;
    if (body.length === 0) {
      throw new Malformed(
        `Cannot open the answer of relay ${relay}: it is empty (the relay could not read the request envelope)`,
      );
    }
    const envelope = decode(PackedServerMessageSchema, body, { bytesMax: ANSWER_BYTES_MAX });
    if (this.inSession && envelope.sessionUnknown) {
      throw new SessionUnknown(
        `Relay ${relay} holds no session for request "${uuid}" (unknown, used or expired): nothing was done; open a new session`,
      );
    }
    const ad = this.inSession ? this.binding : undefined;
    const plaintext = symDecrypt(this.keys.answerKey, envelope.payload, ad);
    const answer = decode(FromServerMessageSchema, plaintext, { bytesMax: ANSWER_BYTES_MAX });
    if (answer.uuidAck === uuid) return answer;
    const refusal = answer.errors[0];
    if (answer.uuidAck === "" && refusal) {
      throw new Malformed(
        `Relay ${relay} could not read request "${uuid}": ${
          ErrorCode[refusal.code]
        } (${refusal.detail})`,
      );
    }
    throw new Replay(
      `Cannot accept the answer of relay ${relay}: it answers request "${answer.uuidAck}", not "${uuid}"`,
    );
  }
}

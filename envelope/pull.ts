/**
 * Pull signatures: the proof that a request may read one queue, bound to the
 * relay, the queue, a time and the request's ephemeral key.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  concatBytes,
  fromBase64Url,
  type KeyPair,
  sign,
  toBase64Url,
  verify,
} from "../crypto/mod.ts";
import {
  type ConversationRequest,
  ConversationRequestSchema,
  type ServerCard,
} from "../proto/mod.ts";

const encoder = new TextEncoder();

/**
 * What a pull signature covers: relay uid ‖ lookup key ‖ timestamp (decimal) ‖ the request's
 * ephemeral public key (raw 32 bytes, last, so the concatenation is unambiguous).
 */
export function pullSignedBytes(
  serverUid: string,
  lookupKey: string,
  timestamp: number,
  ephemeralPublicKey: Uint8Array,
): Uint8Array {
  return concatBytes(
    encoder.encode(serverUid),
    encoder.encode(lookupKey),
    encoder.encode(String(timestamp)),
    ephemeralPublicKey,
  );
}

/** Options for {@linkcode signPull}. */
export interface SignPullOptions {
  /** The relay the pull goes to: its uid is signed, so the proof is good there only. */
  server: ServerCard;
  /** The lookup key pair whose public half names the queue. */
  lookup: KeyPair;
  /** The client's clock, in ms; the relay accepts it within 5 minutes of its own. */
  now: number;
  /** The ephemeral key of the request the pull goes in ({@linkcode RelayExchange}). */
  ephemeralPublicKey: Uint8Array;
}

/**
 * A pull request for the queue of `lookup` on `server`, good in the one request whose
 * ephemeral key it names. Each signature is accepted once: Ed25519 is deterministic, so sign
 * pulls of one queue at different `now` (the ephemeral key differs per request anyway).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { signPull, verifyPull } from "./mod.ts";
 * import { generateLookupKeyPair, SeededRandom, toBase64Url } from "../crypto/mod.ts";
 * import { ServerCardSchema } from "../proto/gen/meow_pb.ts";
 * const random = new SeededRandom(4);
 * const lookup = generateLookupKeyPair(random);
 * const ephemeralPublicKey = random.bytes(32);
 * const server = create(ServerCardSchema, { uid: "ab" });
 * const pull = await signPull({ server, lookup, now: 5, ephemeralPublicKey });
 * assert(pull.lookupKey === toBase64Url(lookup.publicKey) && pull.sendTimestamp === 5);
 * assert(await verifyPull({ serverUid: "ab", pull, ephemeralPublicKey }));
 * assert(!(await verifyPull({ serverUid: "ab", pull, ephemeralPublicKey: random.bytes(32) })));
 * ```
 */
export async function signPull(options: SignPullOptions): Promise<ConversationRequest> {
  const { server, lookup, ephemeralPublicKey } = options;
  const now = Math.trunc(options.now);
  const lookupKey = toBase64Url(lookup.publicKey);
  const signed = pullSignedBytes(server.uid, lookupKey, now, ephemeralPublicKey);
  return create(ConversationRequestSchema, {
    lookupKey,
    sendTimestamp: now,
    lookupSignature: await sign(lookup.privateKey, signed),
  });
}

/** Options for {@linkcode verifyPull}. */
export interface VerifyPullOptions {
  /** The verifying relay's uid. */
  serverUid: string;
  /** The pull as the request carries it. */
  pull: ConversationRequest;
  /** The ephemeral key of the request that carries it (its envelope's `from`). */
  ephemeralPublicKey: Uint8Array;
}

/**
 * Whether `pull`'s signature is the lookup key's over this relay, its queue, its timestamp and
 * this request's ephemeral key. Never throws; freshness and single use are the relay's checks.
 */
export function verifyPull(options: VerifyPullOptions): Promise<boolean> {
  const { serverUid, pull, ephemeralPublicKey } = options;
  let lookupPublicKey: Uint8Array;
  try {
    lookupPublicKey = fromBase64Url(pull.lookupKey);
  } catch {
    return Promise.resolve(false);
  }
  const signed = pullSignedBytes(serverUid, pull.lookupKey, pull.sendTimestamp, ephemeralPublicKey);
  // A promise, as callers (and the order of a simulated run) expect of a pull check.
  return Promise.resolve(verify(lookupPublicKey, signed, pull.lookupSignature));
}

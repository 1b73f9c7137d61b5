/**
 * Pull tokens: after one signed pull of a lookup key, later pulls of it at the same relay
 * authorise with a MAC instead of an Ed25519 signature, until the token expires or is revoked.
 *
 * The relay answers a verified signed pull with a {@linkcode PullToken}: a fresh 32-byte
 * secret, and the token proper — the lookup key, issue and expiry times and that secret, sealed
 * under a key only the relay derives (from its encryption key), so the relay stores nothing
 * per token. A later pull presents the token and HMAC-SHA-256 under the secret over exactly
 * the bytes a signature would cover (relay uid ‖ lookup key ‖ timestamp ‖ the request's
 * ephemeral key); the relay opens the token, checks it names the queue and has not expired,
 * checks the MAC and records it as used, as it records signatures. The token and its secret
 * travel only inside sealed answers and requests, so only the key's holder — the one who
 * signed — can use them; a MAC bound to one request's ephemeral key is good in that request
 * only, and once.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { deriveKey, mac, type Random, symDecrypt, symEncrypt, verifyMac } from "../crypto/mod.ts";
import { decode, encode } from "../proto/mod.ts";
import {
  type ConversationRequest,
  ConversationRequestSchema,
  type PullToken,
  type PullTokenBody,
  PullTokenBodySchema,
  PullTokenSchema,
  type ServerCard,
} from "../proto/mod.ts";
import { pullSignedBytes } from "./pull.ts";

/** How long a pull token is good for after it is issued, in ms. */
export const PULL_TOKEN_LIFETIME_MS = 60 * 60 * 1000;
/** A client stops presenting a token this long before it expires, in ms (clocks differ). */
export const PULL_TOKEN_MARGIN_MS = 60 * 1000;
/** Length of a pull token's secret, in bytes. */
const TOKEN_SECRET_BYTES = 32;
/** The HKDF label of the relay's token key. */
const TOKEN_KEY_INFO = "meowsync/pull-token/v1";

/** The key a relay seals its pull tokens under, derived from its encryption private key. */
export function pullTokenKey(relayEncryptionPrivateKey: Uint8Array): Uint8Array {
  return deriveKey(relayEncryptionPrivateKey, TOKEN_KEY_INFO);
}

/** Options for {@linkcode issuePullToken}. */
export interface IssuePullTokenOptions {
  /** The relay's {@linkcode pullTokenKey}. */
  tokenKey: Uint8Array;
  /** The queue the token is for. */
  lookupKey: string;
  /** The relay's clock, in ms. */
  nowMs: number;
  /** The secret's and the seal's randomness. */
  random: Random;
  /** @default {PULL_TOKEN_LIFETIME_MS} */
  lifetimeMs?: number;
}

/** A new pull token for `lookupKey`, for the answer to the pull that proved it. */
export function issuePullToken(options: IssuePullTokenOptions): PullToken {
  const { tokenKey, lookupKey, nowMs, random } = options;
  const expiresMs = nowMs + (options.lifetimeMs ?? PULL_TOKEN_LIFETIME_MS);
  const secret = random.bytes(TOKEN_SECRET_BYTES);
  const body = create(PullTokenBodySchema, { lookupKey, issuedMs: nowMs, expiresMs, secret });
  const token = symEncrypt(tokenKey, encode(PullTokenBodySchema, body), random);
  return create(PullTokenSchema, { lookupKey, token, secret, expiresAt: expiresMs });
}

/** Options for {@linkcode macPull}. */
export interface MacPullOptions {
  /** The relay that issued the token. */
  server: ServerCard;
  /** The token, as the relay's answer gave it. */
  token: PullToken;
  /** The client's clock, in ms. */
  now: number;
  /** The ephemeral key of the request the pull goes in. */
  ephemeralPublicKey: Uint8Array;
}

/**
 * A pull of the token's queue, good in the one request whose ephemeral key it names: the
 * token and a MAC instead of a signature (no public-key operation).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { issuePullToken, macPull, openTokenPull, pullTokenKey } from "./mod.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { ServerCardSchema } from "../proto/gen/meow_pb.ts";
 * const random = new SeededRandom(3);
 * const tokenKey = pullTokenKey(random.bytes(32));
 * const server = create(ServerCardSchema, { uid: "r" });
 * const token = issuePullToken({ tokenKey, lookupKey: "q", nowMs: 1000, random });
 * const ephemeralPublicKey = random.bytes(32);
 * const pull = macPull({ server, token, now: 2000, ephemeralPublicKey });
 * assert.equal(pull.lookupSignature.length, 0);
 * const opened = openTokenPull({ serverUid: "r", tokenKey, pull, ephemeralPublicKey });
 * assert.equal(opened?.issuedMs, 1000);
 * assert.equal(openTokenPull({ serverUid: "r", tokenKey, pull, ephemeralPublicKey: random.bytes(32) }), undefined);
 * ```
 */
export function macPull(options: MacPullOptions): ConversationRequest {
  const { server, token, ephemeralPublicKey } = options;
  const now = Math.trunc(options.now);
  const signed = pullSignedBytes(server.uid, token.lookupKey, now, ephemeralPublicKey);
  return create(ConversationRequestSchema, {
    lookupKey: token.lookupKey,
    sendTimestamp: now,
    pullToken: token.token,
    tokenMac: mac(token.secret, signed),
  });
}

/** Options for {@linkcode openTokenPull}. */
export interface OpenTokenPullOptions {
  /** The verifying relay's uid. */
  serverUid: string;
  /** The relay's {@linkcode pullTokenKey}. */
  tokenKey: Uint8Array;
  /** The pull as the request carries it (with `pull_token` set). */
  pull: ConversationRequest;
  /** The ephemeral key of the request that carries it. */
  ephemeralPublicKey: Uint8Array;
}

/**
 * The token's body when `pull`'s token is one this relay sealed, for this pull's queue, and its
 * MAC covers this relay, queue, timestamp and request; `undefined` otherwise. Never throws.
 * Expiry, revocation, freshness and single use are the relay's checks.
 */
export function openTokenPull(options: OpenTokenPullOptions): PullTokenBody | undefined {
  const { serverUid, tokenKey, pull, ephemeralPublicKey } = options;
  let body: PullTokenBody;
  try {
    body = decode(PullTokenBodySchema, symDecrypt(tokenKey, pull.pullToken));
  } catch {
    return undefined;
  }
  if (body.lookupKey !== pull.lookupKey) return undefined;
  const signed = pullSignedBytes(serverUid, pull.lookupKey, pull.sendTimestamp, ephemeralPublicKey);
  return verifyMac(body.secret, signed, pull.tokenMac) ? body : undefined;
}

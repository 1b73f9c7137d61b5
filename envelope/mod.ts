/**
 * The relay envelope (transport v2), both halves: a device seals each request
 * under keys from a fresh ephemeral X25519 key and the relay's key (or, in a relay session,
 * under the session's keys and a single-use handle), the relay answers under the request's
 * answer key, and pulls are signed over the request's binding (its ephemeral key or handle).
 * See docs/PROTOCOL.md, "Talking to a relay server".
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { openRelayExchange, signPull } from "./mod.ts";
 * import { LocalTransport, MemoryBackend, ServerCore } from "../server/mod.ts";
 * import { generateLookupKeyPair, SeededRandom } from "../crypto/mod.ts";
 * import { ToServerMessageSchema } from "../proto/gen/meow_pb.ts";
 *
 * const random = new SeededRandom(9);
 * const clock = { now: () => 1_000_000, sleep: () => Promise.resolve() };
 * const core = await ServerCore.create({ backend: new MemoryBackend(), clock, random });
 * const transport = new LocalTransport([core]);
 * const server = core.card();
 * const lookup = generateLookupKeyPair(random);
 * const exchange = await openRelayExchange({ server, random });
 * const pull = await signPull({ server, lookup, now: clock.now(), ephemeralPublicKey: exchange.binding });
 * const body = exchange.seal(create(ToServerMessageSchema, { uuid: "r", pullRequests: [pull] }));
 * const answer = exchange.open(await transport.exchange(server, body));
 * assert.deepEqual(answer.errors, []);
 * assert.deepEqual(answer.chat, []);
 * ```
 *
 * @module
 */
export {
  ANSWER_BYTES_MAX,
  openRelayExchange,
  type RelayExchange,
  type RelayExchangeOptions,
} from "./request.ts";
export {
  openRelayRequest,
  type OpenRelayRequestOptions,
  type RelayRequest,
  sealRelayAnswer,
  type SealRelayAnswerOptions,
} from "./relay.ts";
export {
  pullSignedBytes,
  signPull,
  type SignPullOptions,
  verifyPull,
  type VerifyPullOptions,
} from "./pull.ts";
export {
  issuePullToken,
  type IssuePullTokenOptions,
  macPull,
  type MacPullOptions,
  openTokenPull,
  type OpenTokenPullOptions,
  PULL_TOKEN_LIFETIME_MS,
  PULL_TOKEN_MARGIN_MS,
  pullTokenKey,
} from "./token.ts";
export {
  ClientSession,
  RelaySessions,
  type RelaySessionsOptions,
  SESSION_LIFETIME_MS,
  SESSION_MARGIN_MS,
  SESSION_UNKNOWN_ANSWER,
  SESSION_WINDOW,
  SESSIONS_MAX_DEFAULT,
  SessionUnknown,
} from "./session.ts";
export { ASSUMED_LIMITS, type RelayLimits, relayLimits } from "./limits.ts";

/**
 * The meowsync relay server: the core (request bytes in, answer bytes out),
 * its backends (memory, Deno KV, Redis), the transports and the HTTP entry;
 * the device half of the relay envelope (envelope/) is re-exported for clients.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { LocalTransport, MemoryBackend, openRelayExchange, ServerCore, signPull } from "./mod.ts";
 * import { generateLookupKeyPair, SeededRandom } from "../crypto/mod.ts";
 * import { ToServerMessageSchema } from "../proto/gen/meow_pb.ts";
 *
 * const random = new SeededRandom(9);
 * const clock = { now: () => 1_000_000, sleep: () => Promise.resolve() };
 * const core = await ServerCore.create({ backend: new MemoryBackend(), clock, random });
 * const transport = new LocalTransport([core]);
 * const lookup = generateLookupKeyPair(random);
 * const server = core.card();
 * const exchange = await openRelayExchange({ server, random });
 * const pull = await signPull({ server, lookup, now: clock.now(), ephemeralPublicKey: exchange.binding });
 * const body = exchange.seal(create(ToServerMessageSchema, { uuid: "r", pullRequests: [pull] }));
 * const answer = exchange.open(await transport.exchange(server, body));
 * assert(answer.errors.length === 0 && answer.chat.length === 0);
 * ```
 *
 * @module
 */
export type {
  Backend,
  MailboxPostRecord,
  QueueWatch,
  ReadOptions,
  ServerKeys,
  StoredMessage,
  StoreOptions,
} from "./backend.ts";
export {
  type ObservedEvent,
  ServerCore,
  type ServerCoreOptions,
  type ServerStats,
} from "./core.ts";
export {
  DEFAULT_LIMITS,
  PULL_FRESHNESS_MS,
  resolveLimits,
  type ServerLimitsInit,
} from "./limits.ts";
export {
  ANSWER_BYTES_MAX,
  openRelayExchange,
  type RelayExchange,
  type RelayExchangeOptions,
  signPull,
  type SignPullOptions,
} from "../envelope/mod.ts";
export { MemoryBackend, type MemoryBackendOptions, MemoryData } from "./memory.ts";
export { LocalTransport } from "./local_transport.ts";
export { KvBackend, type KvBackendOptions } from "./kv.ts";
export { RedisBackend, type RedisBackendOptions, redisClusterNodes } from "./redis.ts";
export { createHandler, type HandlerOptions, type LogLevel, type LogSink } from "./http.ts";
export { type ChoresOptions, startChores } from "./http_summary.ts";
export { HttpTransport, type HttpTransportOptions } from "./http_transport.ts";
export { startRedis, startRedisCluster } from "./redis_process.ts";

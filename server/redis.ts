/**
 * The Redis backend.
 *
 * Layout (every key starts with the configured prefix; a queue's keys share
 * the hash tag `{<lookup key>}` so they live in one Cluster slot):
 * - `msg:{q}` — a sorted set per queue: score = receive ms, member = delivery uuid;
 * - `body:{q}` — a hash per queue: delivery uuid → the serialized PackedUserMessage;
 *   (a member uuid plus a hash, rather than uuid ‖ bytes as the member, lets an ack
 *   remove a message by uuid alone);
 * - `notify:{q}` — the pub/sub channel a store publishes on; long polls subscribe
 *   on a second connection (no polling);
 * - `sig:<id>` — used pull signatures (value: expiry ms, with a matching TTL);
 * - `tokmac:{q}:<mac>` — used pull-token MACs, likewise; `revoked:{q}` — the ms at or before
 *   which the queue's pull tokens were issued to be refused (with a TTL to their expiry);
 * - `mbx:{<nameplate>}` — a mailbox, one hash under its own hash tag: `expires`, `side0`,
 *   `side1` (the members), `count`, and per post `post<i>` (the ciphertext) and `by<i>` (0 or 1,
 *   the member that posted it); with a TTL to its expiry. Each mailbox operation is one script;
 * - `mbxnotify:{<nameplate>}` — the pub/sub channel a post publishes on;
 * - `keys` — the relay's keys.
 *
 * Each queue's part of an operation is one Lua script, so it is atomic; the
 * parts of a multi-queue store or ack are sent in one MULTI/EXEC transaction,
 * so a crash never applies half a request on one Redis.
 *
 * Redis Cluster (`RedisBackend.connect({ cluster: [...] })`, or `--backend
 * redis-cluster://h:p,h:p`): every script's KEYS share one hash tag, so each
 * script runs on one slot. A transaction cannot span slots, so there a
 * multi-queue store or ack runs one MULTI/EXEC per slot (the queues whose keys
 * share a slot together), the slots concurrently: each queue's part stays
 * atomic, but a crash can apply a request to some queues and not others — a
 * weaker guarantee than on one Redis. Sweeps SCAN every master. Wake-ups use
 * classic PUBLISH/SUBSCRIBE, which the Cluster broadcasts to every node, so a
 * watch is woken by a store whose keys live on any master.
 *
 * The client needs `--allow-env=REDIS_DEBUG_MAINTENANCE` (without it its
 * `connect()` never resolves) and network access to the server.
 *
 * Longer than most files: the Lua scripts are the backend's logic and stay beside the calls that
 * run them, one per Backend method.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import calculateSlot from "cluster-key-slot";
import { createClient, createCluster, RESP_TYPES } from "redis";
import {
  type Backend,
  compareStored,
  type IssuedToken,
  type MailboxInit,
  type MailboxPostRecord,
  type MailboxStep,
  type MailboxStepResult,
  type QueueWatch,
  type ReadOptions,
  type ServerKeys,
  type StoredMessage,
  type StoreOptions,
  type TokenUse,
} from "./backend.ts";

/** What the node-redis client and Cluster client share, of what this backend uses. */
interface RedisConnection {
  readonly isOpen: boolean;
  connect(): Promise<unknown>;
  on(event: "error", listener: (error: unknown) => void): unknown;
  subscribe(channels: string[], listener: () => void): Promise<void>;
  unsubscribe(channels: string[], listener: () => void): Promise<void>;
  destroy(): void;
}

/** The part of the node-redis client this backend uses (its generic types do not compose). */
interface RedisClient extends RedisConnection {
  sendCommand<T = unknown>(args: (string | Buffer)[], options?: object): Promise<T>;
  multi(): { addCommand(args: (string | Buffer)[]): unknown; exec(): Promise<unknown> };
  duplicate(): RedisClient;
}

/** The part of the node-redis Cluster client this backend uses. */
interface RedisClusterClient extends RedisConnection {
  readonly masters: unknown[];
  sendCommand<T = unknown>(
    firstKey: string | Buffer | undefined,
    isReadonly: boolean | undefined,
    args: (string | Buffer)[],
    options?: object,
  ): Promise<T>;
  multi(routing?: string | Buffer): {
    addCommand(
      firstKey: string | Buffer | undefined,
      isReadonly: boolean | undefined,
      args: (string | Buffer)[],
    ): unknown;
    exec(): Promise<unknown>;
  };
  nodeClient(node: unknown): Promise<RedisClient>;
  duplicate(): RedisClusterClient;
}

/** The key a command is routed by on a Cluster: EVAL/EVALSHA's first key, else args[1]. */
function routingKey(args: (string | Buffer)[]): string | Buffer | undefined {
  const name = String(args[0]).toUpperCase();
  if (name === "EVAL" || name === "EVALSHA") {
    return Number(String(args[2])) > 0 ? args[3] : undefined;
  }
  return args[1];
}

/** A {@linkcode RedisClient} over a Cluster: each command goes to the master of its key's slot. */
class ClusterAdapter implements RedisClient {
  readonly cluster: RedisClusterClient;
  constructor(cluster: RedisClusterClient) {
    this.cluster = cluster;
  }
  get isOpen(): boolean {
    return this.cluster.isOpen;
  }
  sendCommand<T = unknown>(args: (string | Buffer)[], options?: object): Promise<T> {
    return this.cluster.sendCommand<T>(routingKey(args), false, args, options);
  }
  multi(): { addCommand(args: (string | Buffer)[]): unknown; exec(): Promise<unknown> } {
    throw new Error("a Cluster transaction needs a routing key: use multiOn");
  }
  /** A MULTI/EXEC on the master of `key`'s slot (every command must hash to that slot). */
  multiOn(
    key: string | Buffer,
  ): { addCommand(args: (string | Buffer)[]): unknown; exec(): Promise<unknown> } {
    const multi = this.cluster.multi(key);
    return {
      addCommand: (args) => multi.addCommand(routingKey(args), false, args),
      exec: () => multi.exec(),
    };
  }
  /** A client per master (SCAN visits one node's keys). */
  async masters(): Promise<RedisClient[]> {
    return await Promise.all(this.cluster.masters.map((node) => this.cluster.nodeClient(node)));
  }
  duplicate(): RedisClient {
    return new ClusterAdapter(this.cluster.duplicate());
  }
  connect(): Promise<unknown> {
    return this.cluster.connect();
  }
  on(event: "error", listener: (error: unknown) => void): unknown {
    return this.cluster.on(event, listener);
  }
  subscribe(channels: string[], listener: () => void): Promise<void> {
    return this.cluster.subscribe(channels, listener);
  }
  unsubscribe(channels: string[], listener: () => void): Promise<void> {
    return this.cluster.unsubscribe(channels, listener);
  }
  destroy(): void {
    this.cluster.destroy();
  }
}

/** Every bulk string as bytes: message bodies are binary. */
const BINARY = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };
/** Most keys one sweep visits. */
const SWEEP_KEYS_MAX = 100_000;
/** Keys one SCAN step asks for. */
const SCAN_COUNT = 200;

const PURGE = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for i = 1, #expired do redis.call('HDEL', KEYS[2], expired[i]) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1]) end
`;

/**
 * KEYS: msg, body. ARGV: cutoff, queueLengthMax, ttlMs, channel, then (uuid, ms, bytes)*.
 * The messages that fit go in with one ZADD and one HSET (per thousand arguments: Lua's
 * `unpack` has a bound).
 */
const STORE_SCRIPT = `${PURGE}
local count = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[2])
local results = {}
local scores = {}
local fields = {}
for i = 5, #ARGV, 3 do
  if count < max then
    scores[#scores + 1] = ARGV[i + 1]
    scores[#scores + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 2]
    count = count + 1
    results[#results + 1] = 1
  else
    results[#results + 1] = 0
  end
end
if #scores > 0 then
  for i = 1, #scores, 1000 do
    redis.call('ZADD', KEYS[1], unpack(scores, i, math.min(i + 999, #scores)))
    redis.call('HSET', KEYS[2], unpack(fields, i, math.min(i + 999, #fields)))
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('PUBLISH', ARGV[4], '1')
end
return results
`;

/** KEYS: msg, body. ARGV: cutoff, max. Returns (uuid, ms, bytes)*. */
const READ_SCRIPT = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {} end
local uuids = {}
for i = 1, #ids, 2 do uuids[#uuids + 1] = ids[i] end
local bodies = redis.call('HMGET', KEYS[2], unpack(uuids))
local out = {}
for i = 1, #uuids do
  if bodies[i] then
    out[#out + 1] = uuids[i]
    out[#out + 1] = ids[2 * i]
    out[#out + 1] = bodies[i]
  end
end
return out
`;

/** KEYS: msg, body. ARGV: uuids. Returns how many were removed. */
const ACK_SCRIPT = `
local removed = 0
for i = 1, #ARGV, 1000 do
  local last = math.min(i + 999, #ARGV)
  removed = removed + redis.call('ZREM', KEYS[1], unpack(ARGV, i, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, last))
end
return removed
`;

/** KEYS: msg, body. ARGV: cutoff. Returns how many were dropped. */
const SWEEP_SCRIPT = `${PURGE}
return #expired
`;

/** KEYS: revoked. ARGV: now, ttl. Moves the mark to now (never back), keeps the longer TTL. */
const REVOKE_SCRIPT = `
local previous = redis.call('GET', KEYS[1])
if previous and tonumber(previous) >= tonumber(ARGV[1]) then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then ttl = tonumber(ARGV[2]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
`;

/** KEYS: sig. ARGV: now, expires, ttl. Returns 1 when recorded, 0 when live already. */
const SIGNATURE_SCRIPT = `
local previous = redis.call('GET', KEYS[1])
if previous and tonumber(previous) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`;

/**
 * KEYS: tokmac, revoked (one hash tag: the lookup key). ARGV: now, expires, ttl, issued.
 * Returns 1 when recorded, 0 when live already, 2 when the key's tokens are revoked: the
 * revocation check, then {@linkcode SIGNATURE_SCRIPT} on the MAC.
 */
const TOKEN_MAC_SCRIPT = `
local revoked = redis.call('GET', KEYS[2])
if revoked and tonumber(revoked) >= tonumber(ARGV[4]) then return 2 end
${SIGNATURE_SCRIPT}`;

/** KEYS: mbx. ARGV: now, side, expires, ttl, has post (1/0), post, channel. Returns 1 when made. */
const CREATE_MAILBOX_SCRIPT = `
local previous = redis.call('HGET', KEYS[1], 'expires')
if previous and tonumber(previous) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'expires', ARGV[3], 'side0', ARGV[2], 'count', '0')
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'post0', ARGV[6], 'by0', '0', 'count', '1')
  redis.call('PUBLISH', ARGV[7], '1')
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`;

/**
 * KEYS: mbx. ARGV: now, side, after, postsMax, has post (1/0), post, channel.
 * Returns nil (no usable mailbox) or member, full, expires, then (index, side, body)*.
 */
const STEP_MAILBOX_SCRIPT = `
local head = redis.call('HMGET', KEYS[1], 'expires', 'side0', 'side1', 'count')
if not head[1] or tonumber(head[1]) <= tonumber(ARGV[1]) then return false end
local me
local member = 1
if head[2] == ARGV[2] then me = 0
elseif head[3] == ARGV[2] then me = 1
elseif not head[3] then
  me = 1
  member = 0
  redis.call('HSET', KEYS[1], 'side1', ARGV[2])
else return false end
local sides = {head[2], head[3] or ARGV[2]}
local count = tonumber(head[4])
local full = 0
if ARGV[5] == '1' then
  if count >= tonumber(ARGV[4]) then full = 1 else
    redis.call('HSET', KEYS[1], 'post' .. count, ARGV[6], 'by' .. count, me, 'count', count + 1)
    count = count + 1
    redis.call('PUBLISH', ARGV[7], '1')
  end
end
local out = {member, full, head[1]}
for i = tonumber(ARGV[3]), count - 1 do
  local by = tonumber(redis.call('HGET', KEYS[1], 'by' .. i))
  if by ~= me then
    out[#out + 1] = i
    out[#out + 1] = sides[by + 1]
    out[#out + 1] = redis.call('HGET', KEYS[1], 'post' .. i)
  end
end
return out
`;

/** KEYS: mbx. ARGV: now, side. Returns 1 when a live mailbox of which side is a member went. */
const CLOSE_MAILBOX_SCRIPT = `
local head = redis.call('HMGET', KEYS[1], 'expires', 'side0', 'side1')
if not head[1] or tonumber(head[1]) <= tonumber(ARGV[1]) then return 0 end
if head[2] ~= ARGV[2] and head[3] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`;

/** KEYS: mbx. ARGV: now. Deletes the mailbox when it expired; returns 1 then. */
const SWEEP_MAILBOX_SCRIPT = `
local expires = redis.call('HGET', KEYS[1], 'expires')
if expires and tonumber(expires) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
`;

/**
 * The node URLs (`redis://host:port`) of a `redis-cluster://h:p,h:p,…` spec (`--backend` of the
 * relay, `--server` of the simulator); undefined when one
 * is not a host:port.
 */
export function redisClusterNodes(spec: string): string[] | undefined {
  const nodes = spec.slice("redis-cluster://".length).split(",").map((node) => node.trim());
  if (nodes.some((node) => !/^[^\s/:,]+:\d+$/.test(node))) return undefined;
  return nodes.map((node) => `redis://${node}`);
}

/** Options for {@linkcode RedisBackend.connect}: `url` for one Redis, or `cluster`. */
export interface RedisBackendOptions {
  /** `redis://host:port` (credentials and database number as the client accepts them). */
  url?: string;
  /**
   * Redis Cluster nodes to discover the Cluster from, each `redis://host:port` (a few masters;
   * the rest are found). Either this or `url`.
   */
  cluster?: string[];
  /**
   * Prepended to every key and channel (so tests, or two relays, can share one Redis).
   * @default {""}
   */
  prefix?: string;
}

/**
 * A relay backend over Redis sorted sets.
 *
 * @example
 * ```ts ignore
 * import { RedisBackend } from "./redis.ts";
 * const backend = await RedisBackend.connect({ url: "redis://127.0.0.1:6379" });
 * await backend.close();
 * ```
 */
export class RedisBackend implements Backend {
  /** Always "redis". */
  readonly kind = "redis";
  readonly #client: RedisClient;
  readonly #prefix: string;
  #subscriber: Promise<RedisClient> | undefined;
  readonly #watches = new Set<() => void>();
  #closed = false;

  private constructor(client: RedisClient, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  /** Connects to the Redis at `options.url`, or to the Redis Cluster of `options.cluster`. */
  static async connect(options: RedisBackendOptions): Promise<RedisBackend> {
    if ((options.url === undefined) === (options.cluster === undefined)) {
      throw new TypeError("RedisBackend.connect needs exactly one of url and cluster");
    }
    // A command while the connection is down fails at once (the relay answers BUSY) instead of
    // waiting in node-redis's offline queue for a Redis that may not come back soon.
    const client = options.cluster !== undefined
      ? new ClusterAdapter(
        createCluster({
          rootNodes: options.cluster.map((url) => ({ url })),
          defaults: { disableOfflineQueue: true },
        }) as unknown as RedisClusterClient,
      )
      : createClient({ url: options.url, disableOfflineQueue: true }) as unknown as RedisClient;
    // Without a listener a connection error would be an uncaught exception; commands reject.
    client.on("error", () => {});
    await client.connect();
    return new RedisBackend(client, options.prefix ?? "");
  }

  /** Accepts any limits: a Redis value holds up to 512 MB. */
  checkLimits(_limits: { messageBytesMax: number; messagesPerRequestMax: number }): void {}

  /** Stores `candidate` unless keys exist; resolves with the stored keys. */
  async loadOrStoreKeys(candidate: ServerKeys): Promise<ServerKeys> {
    const key = `${this.#prefix}keys`;
    const packed = Buffer.concat([
      candidate.encryption.privateKey,
      candidate.encryption.publicKey,
      candidate.signing.privateKey,
      candidate.signing.publicKey,
    ]);
    await this.#client.sendCommand(["SET", key, packed, "NX"]);
    const stored = await this.#client.sendCommand<Buffer>(["GET", key], BINARY);
    const part = (i: number) => new Uint8Array(stored.subarray(i * 32, i * 32 + 32));
    return {
      encryption: { privateKey: part(0), publicKey: part(1) },
      signing: { privateKey: part(2), publicKey: part(3) },
    };
  }

  /** Stores the batch: one script per queue, all in one MULTI/EXEC. */
  async storeMessages(batch: StoredMessage[], options: StoreOptions): Promise<boolean[]> {
    const byQueue = groupBy(batch.map((m, i) => ({ m, i })), (x) => x.m.queue);
    const cutoff = String(options.nowMs - options.retentionMs);
    const commands: (string | Buffer)[][] = [];
    for (const [queue, items] of byQueue) {
      const args: (string | Buffer)[] = [
        cutoff,
        String(options.queueLengthMax),
        String(Math.max(1, options.retentionMs)),
        this.#key("notify", queue),
      ];
      for (const { m } of items) args.push(m.deliveryUuid, String(m.receivedMs), toBuffer(m.bytes));
      commands.push(this.#eval(STORE_SCRIPT, queue, args));
    }
    const replies = await this.#atomically<number[]>(commands);
    const results = new Array<boolean>(batch.length);
    [...byQueue.values()].forEach((items, q) => {
      items.forEach(({ i }, j) => (results[i] = Number(replies[q][j]) === 1));
    });
    return results;
  }

  /** The live messages of `queues`, oldest first. */
  async readQueues(queues: string[], options: ReadOptions): Promise<StoredMessage[]> {
    const cutoff = String(options.nowMs - options.retentionMs);
    const perQueue = await Promise.all([...new Set(queues)].map(async (queue) => {
      const reply = await this.#script<Buffer[]>(
        this.#eval(READ_SCRIPT, queue, [cutoff, String(options.messagesMax)]),
        BINARY,
      );
      const out: StoredMessage[] = [];
      for (let i = 0; i + 2 < reply.length; i += 3) {
        out.push({
          queue,
          deliveryUuid: reply[i].toString(),
          receivedMs: Number(reply[i + 1].toString()),
          bytes: new Uint8Array(reply[i + 2]),
        });
      }
      return out;
    }));
    return perQueue.flat().sort(compareStored).slice(0, options.messagesMax);
  }

  /** Removes those uuids from those queues: one script per queue, all in one MULTI/EXEC. */
  async ackMessages(queues: string[], deliveryUuids: string[]): Promise<number> {
    const names = [...new Set(queues)];
    const uuids = [...new Set(deliveryUuids)];
    if (names.length === 0 || uuids.length === 0) return 0;
    const replies = await this.#atomically<number>(
      names.map((queue) => this.#eval(ACK_SCRIPT, queue, uuids)),
    );
    return replies.reduce((sum, n) => sum + Number(n), 0);
  }

  /** Records a signature id atomically (a script), with a TTL to its expiry. */
  async useSignature(id: string, expiresMs: number, nowMs: number): Promise<boolean> {
    const reply = await this.#script([
      "EVAL",
      SIGNATURE_SCRIPT,
      "1",
      `${this.#prefix}sig:${id}`,
      String(nowMs),
      String(expiresMs),
      String(ttl(expiresMs, nowMs)),
    ]);
    return Number(reply) === 1;
  }

  /** Records a token pull's MAC and checks the key's revocation in one script. */
  async useTokenMac(
    id: string,
    expiresMs: number,
    nowMs: number,
    token: IssuedToken,
  ): Promise<TokenUse> {
    const reply = Number(
      await this.#script([
        "EVAL",
        TOKEN_MAC_SCRIPT,
        "2",
        `${this.#key("tokmac", token.lookupKey)}:${id}`,
        this.#key("revoked", token.lookupKey),
        String(nowMs),
        String(expiresMs),
        String(ttl(expiresMs, nowMs)),
        String(token.issuedMs),
      ]),
    );
    return reply === 1 ? "ok" : reply === 2 ? "revoked" : "used";
  }

  /** Moves the key's revocation mark to `nowMs` (one script). */
  async revokePullTokens(lookupKey: string, nowMs: number, untilMs: number): Promise<void> {
    await this.#script([
      "EVAL",
      REVOKE_SCRIPT,
      "1",
      this.#key("revoked", lookupKey),
      String(nowMs),
      String(ttl(untilMs, nowMs)),
    ]);
  }

  /** Subscribes to each queue's notify channel on the second connection. */
  watchQueues(queues: string[]): Promise<QueueWatch> {
    return this.#watch([...new Set(queues)].map((q) => this.#key("notify", q)));
  }

  /** Creates a mailbox unless a live one holds the nameplate (one script). */
  async createMailbox(nameplate: string, init: MailboxInit, nowMs: number): Promise<boolean> {
    const reply = await this.#script([
      "EVAL",
      CREATE_MAILBOX_SCRIPT,
      "1",
      this.#mailboxKey("mbx", nameplate),
      String(nowMs),
      toBuffer(init.side),
      String(init.expiresMs),
      String(ttl(init.expiresMs, nowMs)),
      init.post ? "1" : "0",
      toBuffer(init.post ?? new Uint8Array(0)),
      this.#mailboxKey("mbxnotify", nameplate),
    ]);
    return Number(reply) === 1;
  }

  /** One atomic mailbox step (one script). */
  async stepMailbox(
    nameplate: string,
    step: MailboxStep,
    nowMs: number,
  ): Promise<MailboxStepResult | undefined> {
    const reply = await this.#script<(number | Buffer)[] | null>([
      "EVAL",
      STEP_MAILBOX_SCRIPT,
      "1",
      this.#mailboxKey("mbx", nameplate),
      String(nowMs),
      toBuffer(step.side),
      String(Math.max(0, step.after)),
      String(step.postsMax),
      step.post ? "1" : "0",
      toBuffer(step.post ?? new Uint8Array(0)),
      this.#mailboxKey("mbxnotify", nameplate),
    ], BINARY);
    if (reply === null) return undefined;
    const posts: MailboxPostRecord[] = [];
    for (let i = 3; i + 2 < reply.length; i += 3) {
      posts.push({
        index: Number(reply[i]),
        side: new Uint8Array(reply[i + 1] as Buffer),
        body: new Uint8Array(reply[i + 2] as Buffer),
      });
    }
    return {
      member: Number(reply[0]) === 1,
      full: Number(reply[1]) === 1,
      posts,
      expiresMs: Number(reply[2].toString()),
    };
  }

  /** Deletes the mailbox when `side` is a member (one script). */
  async closeMailbox(nameplate: string, side: Uint8Array, nowMs: number): Promise<boolean> {
    const reply = await this.#script([
      "EVAL",
      CLOSE_MAILBOX_SCRIPT,
      "1",
      this.#mailboxKey("mbx", nameplate),
      String(nowMs),
      toBuffer(side),
    ]);
    if (Number(reply) !== 1) return false;
    // A member waiting on the mailbox learns at once that it is gone.
    await this.#client.sendCommand(["PUBLISH", this.#mailboxKey("mbxnotify", nameplate), "1"]);
    return true;
  }

  /** Subscribes to the mailbox's notify channel on the second connection. */
  watchMailbox(nameplate: string): Promise<QueueWatch> {
    return this.#watch([this.#mailboxKey("mbxnotify", nameplate)]);
  }

  /** A watch that fires on the first publish on one of `channels`. */
  async #watch(channels: string[]): Promise<QueueWatch> {
    const subscriber = await this.#subscriberConnection();
    let fire!: () => void;
    const changed = new Promise<void>((resolve) => (fire = resolve));
    let closed = false;
    const listener = () => {
      close();
      fire();
    };
    const close = () => {
      if (closed) return;
      closed = true;
      this.#watches.delete(close);
      if (subscriber.isOpen) subscriber.unsubscribe(channels, listener).catch(() => {});
    };
    this.#watches.add(close);
    // SUBSCRIBE resolves when Redis confirms it: from then on no publish is missed.
    await subscriber.subscribe(channels, listener);
    return { changed, close };
  }

  /** Drops expired messages of every queue (SCAN over `msg:*`) and expired mailboxes. */
  async sweep(nowMs: number, retentionMs: number): Promise<number> {
    const cutoff = String(nowMs - retentionMs);
    let dropped = 0;
    await this.#scan(`${this.#prefix}msg:{*}`, async (key) => {
      const queue = key.slice(key.indexOf("{") + 1, key.lastIndexOf("}"));
      dropped += Number(await this.#script(this.#eval(SWEEP_SCRIPT, queue, [cutoff])));
    });
    await this.#scan(`${this.#prefix}mbx:{*}`, async (key) => {
      await this.#script(["EVAL", SWEEP_MAILBOX_SCRIPT, "1", key, String(nowMs)]);
    });
    return dropped;
  }

  /** Calls `visit` for each key matching `pattern`, at most {@linkcode SWEEP_KEYS_MAX}. */
  async #scan(pattern: string, visit: (key: string) => Promise<void>): Promise<void> {
    // On a Cluster each master holds its own keys: SCAN them one after another.
    const nodes = this.#client instanceof ClusterAdapter
      ? await this.#client.masters()
      : [this.#client];
    let visited = 0;
    for (const node of nodes) {
      if (visited >= SWEEP_KEYS_MAX) break;
      visited += await scanNode(node, pattern, visit, SWEEP_KEYS_MAX - visited);
    }
  }

  /** Ends every watch and closes both connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const close of [...this.#watches]) close();
    const subscriber = await this.#subscriber?.catch(() => undefined);
    if (subscriber?.isOpen) subscriber.destroy();
    if (this.#client.isOpen) this.#client.destroy();
  }

  #subscriberConnection(): Promise<RedisClient> {
    this.#subscriber ??= (async () => {
      const subscriber = this.#client.duplicate();
      subscriber.on("error", () => {});
      await subscriber.connect();
      return subscriber;
    })();
    return this.#subscriber;
  }

  #key(kind: "msg" | "body" | "notify" | "tokmac" | "revoked", queue: string): string {
    return `${this.#prefix}${kind}:{${queue}}`;
  }

  #mailboxKey(kind: "mbx" | "mbxnotify", nameplate: string): string {
    return `${this.#prefix}${kind}:{${nameplate}}`;
  }

  /**
   * Runs one `EVAL …` command as `EVALSHA` (the script's text is sent once, not with every
   * call), falling back to the `EVAL` when Redis does not hold the script yet: a NOSCRIPT
   * reply means nothing ran.
   */
  async #script<T = unknown>(command: (string | Buffer)[], options?: object): Promise<T> {
    const [, script, ...rest] = command;
    try {
      return await this.#client.sendCommand<T>(
        ["EVALSHA", scriptSha(script as string), ...rest],
        options,
      );
    } catch (e) {
      if (!String((e as Error)?.message ?? e).startsWith("NOSCRIPT")) throw e;
      return await this.#client.sendCommand<T>(command, options);
    }
  }

  /**
   * Runs `EVAL` commands so that a crash applies all or none: one alone as it is (a script is
   * atomic), several in one MULTI/EXEC (as `EVAL`, so no command in it can fail for a script
   * Redis has not loaded).
   */
  async #atomically<T>(commands: (string | Buffer)[][]): Promise<T[]> {
    if (commands.length === 1) return [await this.#script<T>(commands[0])];
    const client = this.#client;
    if (!(client instanceof ClusterAdapter)) {
      const multi = client.multi();
      for (const command of commands) multi.addCommand(command);
      return (await multi.exec()) as unknown as T[];
    }
    // A Cluster transaction cannot span slots: one MULTI/EXEC per slot, the slots concurrently.
    // Each slot's part is all or none; the request as a whole is not (see the module comment).
    const bySlot = groupBy(
      commands.map((command, i) => ({ command, i })),
      ({ command }) => String(keySlot(String(command[3]))),
    );
    const replies = new Array<T>(commands.length);
    await Promise.all([...bySlot.values()].map(async (items) => {
      if (items.length === 1) {
        replies[items[0].i] = await this.#script<T>(items[0].command);
        return;
      }
      const multi = client.multiOn(items[0].command[3]);
      for (const { command } of items) multi.addCommand(command);
      const out = (await multi.exec()) as unknown as T[];
      items.forEach(({ i }, j) => (replies[i] = out[j]));
    }));
    return replies;
  }

  #eval(script: string, queue: string, args: (string | Buffer)[]): (string | Buffer)[] {
    return ["EVAL", script, "2", this.#key("msg", queue), this.#key("body", queue), ...args];
  }
}

/**
 * Runs SCAN over one node's keys matching `pattern`, calling `visit` for each, until the scan
 * ends or `max` keys were visited. Returns how many were.
 */
async function scanNode(
  node: RedisClient,
  pattern: string,
  visit: (key: string) => Promise<void>,
  max: number,
): Promise<number> {
  let cursor = "0";
  let visited = 0;
  do {
    const [next, keys] = await node.sendCommand<[string, string[]]>([
      "SCAN",
      cursor,
      "MATCH",
      pattern,
      "COUNT",
      String(SCAN_COUNT),
    ]);
    cursor = String(next);
    for (const key of keys) await visit(String(key));
    visited += keys.length;
  } while (cursor !== "0" && visited < max);
  return visited;
}

/**
 * The Redis Cluster slot of `key` (CRC16 of its hash tag, or of the whole key, mod 16384), as
 * node-redis computes it.
 */
export function keySlot(key: string): number {
  return calculateSlot(key);
}

const SCRIPT_SHAS = new Map<string, string>();
/** The SHA-1 by which Redis names a script (EVALSHA). */
function scriptSha(script: string): string {
  let sha = SCRIPT_SHAS.get(script);
  if (sha === undefined) {
    sha = createHash("sha1").update(script).digest("hex");
    SCRIPT_SHAS.set(script, sha);
  }
  return sha;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

/** A TTL for a key that must live until `expiresMs` (at least 1 ms). */
function ttl(expiresMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil(expiresMs - nowMs));
}

/**
 * The network model between one device and the relays: a {@linkcode Transport}
 * whose requests travel in virtual time with per-delivery latency, some held
 * back behind later ones (reordering), some delivered twice (duplication) and
 * some lost (the client times out and retries). A device that is offline,
 * crashed or partitioned cannot reach anything.
 *
 * Every byte that leaves the device passes the `tap`, so the privacy checkers
 * read the wire rather than trusting the code under test.
 *
 * Corruption (`network: { corrupt }`) is modelled where the packed message is
 * still in the clear, between the relay's storage and its answer
 * ({@linkcode corruptingBackend}): answers are sealed end to end, so a byte
 * flipped after sealing would only make the whole answer fail to open.
 *
 * @module
 */
import { PackedUserMessageSchema, type ServerCard } from "../proto/mod.ts";
import { decode, encode } from "../proto/mod.ts";
import { randomFloat, randomInt, randomUuid, type SeededRandom } from "../crypto/mod.ts";
import { type Transport, TransportError } from "../ports/mod.ts";
import type { Backend, ServerCore, StoredMessage } from "../server/mod.ts";
import type { Scheduler } from "./scheduler.ts";
import type { NetworkSpec } from "./scenario_types.ts";

/** How long a client waits for a lost request before it gives up, in virtual ms. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** What the network asks of the device it serves. */
export interface Endpoint {
  /** `user/device`, for traces. */
  readonly ref: string;
  /** Whether the device can reach the network now. */
  reachable(): boolean;
  /** Bumped at every crash: answers to an earlier incarnation are never delivered. */
  readonly incarnation: number;
}

/** Options of {@linkcode SimTransport}. */
export interface SimTransportOptions {
  /** The device. */
  endpoint: Endpoint;
  /** The relays by uid. */
  relays: Map<string, ServerCore>;
  /** Virtual time. */
  scheduler: Scheduler;
  /** Latency, reordering, duplication and loss. */
  network: NetworkSpec;
  /** This device's network stream (forked from the seed by device name). */
  random: SeededRandom;
  /** Sees every request body that leaves the device. */
  tap?: (ref: string, server: ServerCard, body: Uint8Array) => void;
  /** Sees every delivery, for the trace. */
  trace?: (line: Record<string, unknown>) => void;
  /** Wraps work that runs outside virtual time (relay handling), so the scheduler waits for it. */
  track: <T>(promise: Promise<T>) => Promise<T>;
}

/** Counters of one device's traffic. */
export interface TrafficStats {
  /** Requests sent. */
  requests: number;
  /** Bytes of requests sent. */
  bytesToServer: number;
  /** Bytes of answers received. */
  bytesFromServer: number;
  /** Requests lost by the network. */
  dropped: number;
  /** Requests delivered twice. */
  duplicated: number;
}

/**
 * A device's view of the network.
 *
 * @example
 * ```ts ignore
 * const transport = new SimTransport({ endpoint, relays, scheduler, network, random, track });
 * ```
 */
export class SimTransport implements Transport {
  readonly stats: TrafficStats = {
    requests: 0,
    bytesToServer: 0,
    bytesFromServer: 0,
    dropped: 0,
    duplicated: 0,
  };
  readonly #o: SimTransportOptions;
  #inFlight = 0;

  /** Creates the transport of one device. */
  constructor(options: SimTransportOptions) {
    this.#o = options;
  }

  /** Requests in flight (sent, not yet answered or failed). */
  get inFlight(): number {
    return this.#inFlight;
  }

  #latency(): number {
    const { min, max } = this.#o.network.latencyMs;
    return min + Math.floor(randomFloat(this.#o.random) * (max - min + 1));
  }

  /** Sends `body` to the relay of `server` through the modelled network. */
  exchange(server: ServerCard, body: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const { endpoint, scheduler, network, random } = this.#o;
    if (!endpoint.reachable()) {
      return Promise.reject(new TransportError(`${endpoint.ref} is offline`));
    }
    const core = this.#o.relays.get(server.uid);
    if (!core) {
      return Promise.reject(new TransportError(`no relay ${server.uid} in this simulation`));
    }
    this.#o.tap?.(endpoint.ref, server, body);
    this.stats.requests++;
    this.stats.bytesToServer += body.length;
    const incarnation = endpoint.incarnation;
    // Draw every random choice up front, in a fixed order, so the stream never depends on timing.
    const lost = randomFloat(random) < network.drop;
    const heldBack = randomFloat(random) < network.reorder;
    const twice = randomFloat(random) < network.duplicate;
    let there = this.#latency();
    if (heldBack) there += network.latencyMs.max + this.#latency();
    const back = this.#latency();
    this.#inFlight++;
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const onAbort = () => finish(() => reject(signal!.reason));
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        this.#inFlight--;
        // The signal may outlive the request (a kernel's run): a listener left on it would
        // keep this request, its body and a dependent signal alive for the rest of the run.
        signal?.removeEventListener("abort", onAbort);
        fn();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (lost) {
        this.stats.dropped++;
        this.#o.trace?.({ kind: "net.drop", device: endpoint.ref, relay: server.name });
        scheduler.schedule(
          scheduler.now + REQUEST_TIMEOUT_MS,
          () => finish(() => reject(new TransportError(`request from ${endpoint.ref} was lost`))),
          `timeout ${endpoint.ref}`,
        );
        return;
      }
      scheduler.schedule(scheduler.now + there, async () => {
        this.#o.trace?.({
          kind: "net.deliver",
          device: endpoint.ref,
          relay: server.name,
          bytes: body.length,
        });
        const client = endpoint.ref;
        const answer = await this.#o.track(core.handle(body, { client }));
        if (twice) {
          this.stats.duplicated++;
          await this.#o.track(core.handle(body, { client })); // the repeat's answer is lost on the way
        }
        scheduler.schedule(scheduler.now + back, () => {
          if (!endpoint.reachable() || endpoint.incarnation !== incarnation) {
            finish(() => reject(new TransportError(`${endpoint.ref} lost the connection`)));
            return;
          }
          this.stats.bytesFromServer += answer.length;
          finish(() => resolve(answer));
        }, `answer ${endpoint.ref}`);
      }, `request ${endpoint.ref}`);
    });
  }

  /** Cards are known to the simulation; fetching one by URL is not modelled. */
  fetchCard(url: string): Promise<ServerCard> {
    for (const core of this.#o.relays.values()) {
      if (core.card().url === url) return Promise.resolve(core.card());
    }
    return Promise.reject(new TransportError(`no relay at ${url} in this simulation`));
  }
}

/** Options of {@linkcode corruptingBackend}. */
export interface CorruptOptions {
  /** Share of reads (pull answers with messages) whose one message is corrupted, in [0, 1]. */
  share: number;
  /** The corruption's own stream (forked from the seed by relay name). */
  random: SeededRandom;
  /** Receives the delivery uuid of every corrupted copy, for `decrypt_clean`. */
  corrupted: Set<string>;
  trace?: (line: Record<string, unknown>) => void;
}

/**
 * A relay's storage whose reads, with probability `share`, hand out one
 * message with a payload byte flipped, as a damaged delivery would. The copy
 * carries a delivery uuid of its own, so the receiver's ack of it removes
 * nothing: the original stays queued and is delivered again by a later pull.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { MemoryBackend } from "../server/mod.ts";
 * import { corruptingBackend } from "./network.ts";
 * const corrupted = new Set<string>();
 * const backend = corruptingBackend(new MemoryBackend(), {
 *   share: 1,
 *   random: new SeededRandom(1),
 *   corrupted,
 * });
 * assert.deepEqual(await backend.readQueues(["q"], { nowMs: 0, retentionMs: 1, messagesMax: 1 }), []);
 * assert.equal(corrupted.size, 0);
 * ```
 */
export function corruptingBackend(inner: Backend, options: CorruptOptions): Backend {
  const { random, share, corrupted } = options;
  const readQueues: Backend["readQueues"] = async (queues, readOptions) => {
    const messages = await inner.readQueues(queues, readOptions);
    if (messages.length === 0 || randomFloat(random) >= share) return messages;
    const i = randomInt(random, messages.length);
    const original = messages[i];
    const packed = decode(PackedUserMessageSchema, original.bytes);
    if (packed.payload.length === 0) return messages;
    const at = randomInt(random, packed.payload.length);
    const payload = packed.payload.slice();
    payload[at] ^= 1 << randomInt(random, 8);
    packed.payload = payload;
    packed.serverDeliveryUuid = randomUuid(random);
    corrupted.add(packed.serverDeliveryUuid);
    options.trace?.({ kind: "net.corrupt", queue: original.queue.slice(0, 12), byte: at });
    const copy: StoredMessage = {
      ...original,
      deliveryUuid: packed.serverDeliveryUuid,
      bytes: encode(PackedUserMessageSchema, packed),
    };
    return messages.map((m, j) => (j === i ? copy : m));
  };
  return new Proxy(inner, {
    get(target, property, receiver) {
      if (property === "readQueues") return readQueues;
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

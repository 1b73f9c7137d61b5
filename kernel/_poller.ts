/**
 * The poller: which queues this device pulls, and the poll of each relay —
 * rounds of pull-then-ack split into requests within the relay's limits,
 * pulls signed or MACed under the relay's pull tokens, long polls (one per
 * chunk, the first that brings anything ends the others), and the poll loop
 * with its backoff. What a poll brings goes to the router one message at a
 * time; its delivery uuid is acked on the next request once it is committed.
 *
 * @module
 */
import {
  ErrorCode,
  type FromServerMessage,
  type KeyPair,
  type PackedUserMessage,
  type PeerRecord,
  PeerType,
  type PullToken,
  type ServerCard,
  type ServerError,
} from "../proto/mod.ts";
import { macPull, PULL_TOKEN_MARGIN_MS, signPull } from "../envelope/mod.ts";
import { MeowError, RelayRefused } from "./errors.ts";
import { lookupKeyOf, myLookupKey } from "./pipeline.ts";
import { type RelayLimits, relayLimits } from "../envelope/mod.ts";
import { pluginErrorOf } from "./plugin_driver.ts";
import { type RelayClient, REQUEST_OVERHEAD_BYTES } from "./_relay_client.ts";
import type { DeviceState } from "./_state.ts";
import type { LogLevel, ReceiveOutcome } from "./_types.ts";
import type { Clock } from "../ports/mod.ts";
import { TransportError } from "../ports/mod.ts";

/** Rounds of pull-then-ack one poll makes before it yields, so a busy queue cannot hold the device. */
const POLL_ROUNDS_MAX = 8;
/** What one pull request adds to a request, in bytes at most (lookup key, time, signature, framing). */
const PULL_BYTES = 160;
/** What one ack adds to a request, in bytes at most (a delivery uuid and framing). */
const ACK_BYTES = 40;

/** A queue this device pulls: its name, the peer whose messages reach it, the key that signs its pulls. */
export interface PullKey {
  lookupKey: string;
  peer: PeerRecord;
  lookup: KeyPair;
}

/** One request's share of a poll round: queues to pull, with the acks waiting for them. */
interface PullChunk {
  keys: PullKey[];
  /** Acks it carries. */
  acks: number;
  /** Estimated request bytes. */
  bytes: number;
}

/** What one pull request did. */
interface ChunkResult {
  /** The relay answered (not refused as a whole, not unreachable). */
  answered: boolean;
  /** Every pull of it was authorised. */
  clean: boolean;
  accepted: number;
  /** Messages the answer carried. */
  messages: number;
  acksSent: number;
  /** The answer held as many messages as the relay sends at most: more may wait. */
  full: boolean;
  /** Why it did not go through. */
  error?: MeowError | TransportError;
}

/** What the {@linkcode Poller} runs on. */
export interface PollerPorts {
  clock: Clock;
  state: DeviceState;
  relay: RelayClient;
  /** The device uid of a contact's primary as device `deviceUid` sees it (the plugin driver's rule). */
  primaryOf(peer: PeerRecord, deviceUid: string): string;
  /** A relay answered a poll at `nowMs` (the kernel records it now and then: `Kernel.lastPollAt`). */
  polled(nowMs: number): Promise<void>;
  /** Processes one pulled message (the router, on the serial queue). */
  receive(packed: PackedUserMessage): Promise<ReceiveOutcome>;
  log: (level: LogLevel, line: string) => void;
  /** The kernel's name, in log lines. */
  name: string;
  /** Time between two polls of a relay while running, in ms. */
  pollIntervalMs: number;
  /** Long-poll wait asked of the relay on each poll, in ms (0: short polls). */
  longPollMs: number;
  /** Longest wait between two polls after failures, in ms. */
  retryMsMax: number;
}

/** The polls of every relay, and what they keep between requests (acks, tokens, health). */
export class Poller {
  readonly #ports: PollerPorts;
  /** Per relay, per queue: delivery uuids committed here and not yet acked. */
  #acks = new Map<string, Map<string, string[]>>();
  /** Per relay: the most pulls per request after the relay refused a larger one. */
  readonly #pullChunkMax = new Map<string, number>();
  #lastPullTs = new Map<string, number>();
  /**
   * relay uid → lookup key → the pull token the relay gave for it: later pulls of the key
   * present it with a MAC instead of a signature. Kept in memory only; without one (after a
   * restart, or once it expires or is refused) the next pull is signed and brings a new one.
   */
  #pullTokens = new Map<string, Map<string, PullToken>>();
  #lastPollAt = 0;
  #polled = new Set<string>();
  /** Per relay, the open long poll's restart switch: the set of pulled queues changed. */
  readonly #pollRestarts = new Map<string, AbortController>();
  #quietPollAt = new Map<string, number>();

  /** A poller over `ports`, polling nothing yet. */
  constructor(ports: PollerPorts) {
    this.#ports = ports;
  }

  /** See `Kernel.quietPollAt`. */
  quietPollAt(serverUid: string): number {
    return this.#quietPollAt.get(serverUid) ?? 0;
  }

  /** When the last poll completed, in clock ms (0: never). */
  lastPollAt(): number {
    return this.#lastPollAt;
  }

  /**
   * The pulled set before a commit, when a long poll is open (else undefined):
   * hand it to {@linkcode Poller.committed} after the commit.
   */
  pullsBeforeCommit(): string | undefined {
    return this.#pollRestarts.size > 0 ? this.#pullSet() : undefined;
  }

  /** After a commit: when the pulled set changed, ends the open long polls (they poll again at once). */
  committed(before: string | undefined): void {
    if (before !== undefined && before !== this.#pullSet()) {
      // An open long poll does not wait on the new queues: end it, the loop polls again at once.
      for (const restart of this.#pollRestarts.values()) restart.abort();
    }
  }

  /**
   * Starts the poll loop of `server` unless it has one: resolves when
   * `signal` aborts. Undefined when the relay is polled already.
   */
  startPolling(server: ServerCard, signal: AbortSignal): Promise<void> | undefined {
    if (this.#polled.has(server.uid)) return undefined;
    this.#polled.add(server.uid);
    return this.#pollLoop(server, signal);
  }

  /** Forgets which relays have a loop (the loops ended). */
  stopped(): void {
    this.#polled.clear();
  }

  /** The lookup keys this device pulls: devices, pending invitations, and contacts it is primary for. */
  pullKeys(): PullKey[] {
    const own = this.#ports.state.identity?.deviceUid ?? "";
    const now = this.#ports.clock.now();
    const keys: PullKey[] = [];
    for (
      const peer of [...this.#ports.state.devices.values(), ...this.#ports.state.peers.values()]
    ) {
      if (!peer.myLookup) continue;
      if (peer.type === PeerType.CONTACT && this.#ports.primaryOf(peer, own) !== own) {
        continue; // a sibling is this contact's primary: it pulls, then syncs.
      }
      keys.push({ lookupKey: myLookupKey(peer), peer, lookup: peer.myLookup });
      const previous = peer.previousKeys;
      if (previous?.lookup && previous.untilMs > now) {
        // After a rekey: what the contact sent before it switched still comes here for a while.
        keys.push({
          lookupKey: lookupKeyOf(previous.lookup.publicKey),
          peer,
          lookup: previous.lookup,
        });
      }
    }
    return keys;
  }

  /** The pulled lookup keys as one comparable string. */
  #pullSet(): string {
    return this.pullKeys().map((k) => k.lookupKey).sort().join(" ");
  }

  /**
   * Polls every relay of the identity once: pulls, processes, acks, until the
   * queues are empty (at most a bounded number of rounds). Resolves with how
   * many messages were accepted.
   */
  async pollOnce(signal?: AbortSignal): Promise<number> {
    let accepted = 0;
    for (const server of this.#ports.state.identity?.servers ?? []) {
      accepted += await this.pollServer(server, { timeoutMs: 0, signal });
    }
    return accepted;
  }

  async pollServer(
    server: ServerCard,
    options: {
      timeoutMs: number;
      signal?: AbortSignal;
      /** Ends the request only (default `signal`); processing answers to `signal`. */
      requestSignal?: AbortSignal;
      deferAcks?: boolean;
    },
  ): Promise<number> {
    const { signal } = options;
    const limits = relayLimits(server);
    const timeoutMs = Math.min(options.timeoutMs, limits.longPollMsMax);
    let accepted = 0;
    for (let round = 0; round < POLL_ROUNDS_MAX; round++) {
      const chunks = this.#pullChunks(server, limits);
      if (chunks.length === 0) break;
      const started = this.#ports.clock.now();
      const wait = round === 0 ? timeoutMs : 0;
      // Several long polls at once, one per chunk: the first that brings anything ends the
      // others, so no queue waits behind another chunk's long poll.
      const together = wait > 0 && chunks.length > 1;
      const early = new AbortController();
      const requestSignal = options.requestSignal ?? signal;
      const poll = async (chunk: PullChunk, index: number): Promise<ChunkResult> => {
        const result = await this.#pollChunk(server, chunk, {
          // No more long polls at once than the relay takes from one client: the rest are
          // short polls, and what they bring ends the long polls early.
          timeoutMs: index < limits.longPollsPerClientMax ? wait : 0,
          signal,
          requestSignal: together
            ? (requestSignal ? AbortSignal.any([requestSignal, early.signal]) : early.signal)
            : requestSignal,
          limits,
        });
        if (together && result.messages > 0) early.abort();
        return result;
      };
      const results: ChunkResult[] = [];
      if (together) results.push(...await Promise.all(chunks.map(poll)));
      else {
        for (const chunk of chunks) {
          results.push(await poll(chunk, 0));
          if (signal?.aborted || this.#ports.state.closed) return accepted;
        }
      }
      accepted += results.reduce((n, r) => n + r.accepted, 0);
      const messages = results.reduce((n, r) => n + r.messages, 0);
      const failure = results.find((r) => r.error)?.error;
      if (results.some((r) => r.answered)) {
        this.#lastPollAt = this.#ports.clock.now();
        await this.#ports.polled(this.#lastPollAt);
      }
      if (results.every((r) => r.answered && r.clean) && messages === 0) {
        const acked = results.reduce((n, r) => n + r.acksSent, 0);
        if (acked === 0) this.#quietPollAt.set(server.uid, started);
      }
      if (failure) {
        // A request too large for the relay goes again at once, in smaller chunks.
        const largest = Math.max(...chunks.map((c) => c.keys.length));
        const shrink = failure instanceof RelayRefused && failure.relayCode === "TOO_LARGE" &&
          largest > 1 && round < POLL_ROUNDS_MAX - 1;
        if (!shrink) throw failure;
        this.#pullChunkMax.set(server.uid, Math.floor(largest / 2));
        continue;
      }
      if (signal?.aborted || this.#ports.state.closed) return accepted;
      if (messages === 0 && !this.#hasAcks(server.uid)) break;
      // Another round only to ack can wait for the next poll, unless an answer was full:
      // the relay may have held more back.
      if (options.deferAcks && !results.some((r) => r.full)) break;
    }
    return accepted;
  }

  /** The pulls and acks of one poll round, split to the relay's limits. */
  #pullChunks(server: ServerCard, limits: RelayLimits): PullChunk[] {
    const keys = this.pullKeys();
    const pending = this.#acks.get(server.uid);
    if (pending) {
      // Acks count only with a pull of their queue: those of queues no longer pulled go.
      const pulled = new Set(keys.map((k) => k.lookupKey));
      for (const queue of [...pending.keys()]) if (!pulled.has(queue)) pending.delete(queue);
    }
    const pullsMax = Math.min(
      limits.pullRequestsMax,
      this.#pullChunkMax.get(server.uid) ?? limits.pullRequestsMax,
    );
    const bytesMax = limits.requestBytesMax - REQUEST_OVERHEAD_BYTES;
    const chunks: PullChunk[] = [];
    let chunk: PullChunk | undefined;
    for (const key of keys) {
      const acks = pending?.get(key.lookupKey) ?? [];
      const bytes = PULL_BYTES + Math.min(acks.length, limits.acksPerRequestMax) * ACK_BYTES;
      if (
        !chunk || chunk.keys.length >= pullsMax || chunk.bytes + bytes > bytesMax ||
        (acks.length > 0 && chunk.acks >= limits.acksPerRequestMax)
      ) {
        chunk = { keys: [], acks: 0, bytes: 0 };
        chunks.push(chunk);
      }
      chunk.keys.push(key);
      chunk.bytes += bytes;
      chunk.acks += Math.min(acks.length, limits.acksPerRequestMax - chunk.acks);
    }
    return chunks;
  }

  #hasAcks(serverUid: string): boolean {
    for (const acks of this.#acks.get(serverUid)?.values() ?? []) if (acks.length > 0) return true;
    return false;
  }

  /**
   * One pull request: the chunk's queues with the acks waiting for them. Never
   * throws for the relay's sake: a transport failure or a refusal comes back
   * as the result's `error`, with the acks put back for the next request.
   */
  async #pollChunk(
    server: ServerCard,
    chunk: PullChunk,
    options: {
      timeoutMs: number;
      signal?: AbortSignal;
      requestSignal?: AbortSignal;
      limits: RelayLimits;
    },
  ): Promise<ChunkResult> {
    const { signal, limits } = options;
    const result: ChunkResult = {
      answered: false,
      clean: false,
      accepted: 0,
      messages: 0,
      acksSent: 0,
      full: false,
    };
    const now = this.#ports.clock.now();
    const pending = this.#acks.get(server.uid) ?? new Map<string, string[]>();
    this.#acks.set(server.uid, pending);
    const taken: [string, string[]][] = [];
    let budget = limits.acksPerRequestMax;
    for (const { lookupKey } of chunk.keys) {
      const acks = pending.get(lookupKey) ?? [];
      if (acks.length === 0 || budget === 0) continue;
      const sent = acks.slice(0, budget);
      budget -= sent.length;
      taken.push([lookupKey, sent]);
      if (sent.length === acks.length) pending.delete(lookupKey);
      else pending.set(lookupKey, acks.slice(sent.length));
    }
    const restore = () => {
      for (const [queue, acks] of taken) {
        pending.set(queue, [...acks, ...(pending.get(queue) ?? [])]);
      }
    };
    let tokens = this.#pullTokens.get(server.uid);
    if (tokens === undefined) this.#pullTokens.set(server.uid, tokens = new Map());
    const tokenOf = new Map<string, PullToken>();
    for (const { lookupKey } of chunk.keys) {
      const token = tokens.get(lookupKey);
      if (token === undefined) continue;
      if (token.expiresAt - PULL_TOKEN_MARGIN_MS > now) tokenOf.set(lookupKey, token);
      else tokens.delete(lookupKey);
    }
    // Each pull is signed (or MACed under its token) over this request's binding (its
    // ephemeral key, or its handle in the chunk's relay session): good in this request only.
    const signPulls = (ephemeralPublicKey: Uint8Array) =>
      Promise.all(chunk.keys.map(({ lookupKey, lookup }) => {
        // Signatures are single-use: never sign two pulls of one key with one timestamp.
        const ts = Math.max(now, (this.#lastPullTs.get(lookupKey) ?? 0) + 1);
        this.#lastPullTs.set(lookupKey, ts);
        const token = tokenOf.get(lookupKey);
        if (token) return macPull({ server, token, now: ts, ephemeralPublicKey });
        return signPull({ server, lookup, now: ts, ephemeralPublicKey });
      }));
    const acks = taken.flatMap(([, a]) => a);
    let answer: FromServerMessage;
    try {
      // The chunk's polls name its lookup keys, which link them anyway: they share a session.
      answer = await this.#ports.relay.request(server, async (binding) => ({
        pullRequests: await signPulls(binding),
        acks,
        timeoutMs: options.timeoutMs,
      }), {
        signal: options.requestSignal,
        session: chunk.keys.map((k) => k.lookupKey).join(","),
      });
    } catch (e) {
      restore();
      if (!(e instanceof TransportError || e instanceof MeowError)) throw e;
      // Ended on purpose (stopped, or another chunk's long poll brought something): no failure.
      if (options.requestSignal?.aborted) return result;
      this.#ports.relay.health(server, "poll", "unreachable", e.message);
      result.error = e;
      return result;
    }
    const refusal = answer.errors.find((e) => e.messageIndex === 0 && e.lookupKey === "");
    if (refusal) {
      restore();
      result.error = this.#ports.relay.refused(server, "poll", refusal);
      return result;
    }
    result.answered = true;
    result.acksSent = acks.length;
    const inChunk = new Set(chunk.keys.map((k) => k.lookupKey));
    for (const token of answer.pullTokens) {
      if (inChunk.has(token.lookupKey)) tokens.set(token.lookupKey, token);
    }
    // A refused token (expired, revoked, a relay that lost its keys) costs nothing but a
    // signature: drop it and pull again at once, signed; no refusal to report.
    const tokenRefused = (e: ServerError) =>
      e.code === ErrorCode.BAD_LOOKUP_SIGNATURE && tokenOf.has(e.lookupKey);
    for (const e of answer.errors) if (tokenRefused(e)) tokens.delete(e.lookupKey);
    const retry = answer.errors.some(tokenRefused);
    const keyErrors = answer.errors.filter((e) => e.lookupKey !== "" && !tokenRefused(e));
    if (keyErrors.length > 0) {
      const detail = keyErrors.map((e) =>
        `${ErrorCode[e.code]} for queue ${e.lookupKey.slice(0, 8)}…: ${e.detail}`
      ).join("; ");
      this.#ports.log("warn", `${this.#ports.name} poll ${server.name || server.uid}: ${detail}`);
      this.#ports.relay.health(server, "poll", "refused", detail);
    } else {
      result.clean = true;
      this.#ports.relay.health(server, "poll", "ok", "");
    }
    result.messages = answer.chat.length;
    result.full = retry || answer.chat.length >= limits.pullMessagesMax;
    const pulled = new Set(chunk.keys.map((k) => k.lookupKey));
    for (const packed of answer.chat) {
      if (signal?.aborted || this.#ports.state.closed) return result;
      if (pulled.has(packed.destination) && !this.#ports.state.lookup.has(packed.destination)) {
        // A queue this device stopped owning while the pull was out (a sibling removed since):
        // nothing here can read it any more. Not quarantined; left on the relay, where nobody
        // pulls it any more and it expires (acks wait only for queues still pulled).
        continue;
      }
      const outcome = await this.#ports.receive(packed);
      if (outcome.kind === "accepted") result.accepted++;
      if (outcome.kind === "deferred") continue;
      const queue = pending.get(packed.destination) ?? [];
      queue.push(packed.serverDeliveryUuid);
      pending.set(packed.destination, queue);
    }
    return result;
  }

  async #pollLoop(server: ServerCard, signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      const started = this.#ports.clock.now();
      const restart = new AbortController();
      if (this.#ports.longPollMs > 0) this.#pollRestarts.set(server.uid, restart);
      const waiting = AbortSignal.any([signal, restart.signal]);
      let retryAfterMs = 0;
      try {
        // The relay applies acks before it reads the queues: the next poll carries them.
        await this.pollServer(server, {
          timeoutMs: this.#ports.longPollMs,
          signal,
          requestSignal: waiting,
          deferAcks: true,
        });
        failures = 0;
      } catch (e) {
        if (signal.aborted) return;
        if (!restart.signal.aborted) {
          if (!(e instanceof TransportError || e instanceof MeowError)) {
            // A programmer error, most likely in a plugin's hook: name it.
            const from = pluginErrorOf(e);
            const where = from ? ` in plugin "${from.plugin}" (${from.hook})` : "";
            this.#ports.log(
              "error",
              `${this.#ports.name} poll ${server.name || server.uid} failed${where}: ${
                (e as Error).stack
              }`,
            );
          }
          if (e instanceof RelayRefused) retryAfterMs = e.retryAfterMs;
          failures++;
        }
      } finally {
        this.#pollRestarts.delete(server.uid);
      }
      // Polls start one interval apart: the time a poll took (its round trips, what it brought)
      // counts toward the interval, so the device polls as often as it says whatever the network.
      // After failures the backoff runs from the failure.
      const backoff = failures === 0
        ? Math.max(0, started + this.#ports.pollIntervalMs - this.#ports.clock.now())
        : Math.min(
          this.#ports.retryMsMax,
          this.#ports.pollIntervalMs * 2 ** Math.min(8, failures - 1),
        );
      const wait = Math.max(backoff, retryAfterMs);
      try {
        if (!restart.signal.aborted) await this.#ports.clock.sleep(wait, signal);
      } catch {
        return;
      }
    }
  }
}

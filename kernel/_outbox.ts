/**
 * The outbox: packed messages waiting to leave, delivered to their relays in
 * batches within each relay's limits (several requests at once, and what is
 * queued during a delivery beside it), retried with exponential backoff and
 * jitter, and failed for good — removed in the commit that marks their
 * message failed — when a relay will never take them.
 *
 * @module
 */
import { clone } from "@bufbuild/protobuf";
import {
  ErrorCode,
  type FromServerMessage,
  type OutboxEntry,
  OutboxEntrySchema,
  type ServerCard,
} from "../proto/mod.ts";
import { randomInt } from "../crypto/mod.ts";
import { MeowError } from "./errors.ts";
import { packedBytes } from "./pipeline.ts";
import { relayLimits } from "../envelope/mod.ts";
import { type RelayClient, REQUEST_OVERHEAD_BYTES, RETRY_MS_MIN } from "./_relay_client.ts";
import type { DeviceState, SerialQueue } from "./_state.ts";
import type { KernelTx } from "./_tx.ts";
import type { LogLevel } from "./_types.ts";
import type { Clock, Random, Store } from "../ports/mod.ts";
import { TransportError } from "../ports/mod.ts";

/** Framing one packed message adds inside a request, in bytes at most. */
const MESSAGE_FRAMING_BYTES = 16;
/**
 * Times the relay may answer QUEUE_FULL for one outbox entry before its message
 * fails for good (at the default 30 s retry cap, about 20 minutes of a full queue).
 */
export const QUEUE_FULL_ATTEMPTS_MAX = 40;
/** Send requests one flush has in flight to one relay at once (each up to the relay's batch). */
export const OUTBOX_REQUESTS_AT_ONCE = 4;

/** What the {@linkcode Outbox} runs on. */
export interface OutboxPorts {
  clock: Clock;
  random: Random;
  store: Store;
  relay: RelayClient;
  state: DeviceState;
  serial: SerialQueue;
  /** Runs `fn` in a transaction and commits it (the caller is on the serial queue). */
  transact<T>(fn: (tx: KernelTx) => Promise<T>): Promise<T>;
  log: (level: LogLevel, line: string) => void;
  /** The kernel's name, in log lines. */
  name: string;
  /** Longest wait between two attempts to deliver an entry, in ms. */
  retryMsMax: number;
  /** Most packed messages sent in one relay request. */
  outboxBatchMax: number;
}

/** The outbox entries as committed, and their delivery. */
export class Outbox {
  readonly #ports: OutboxPorts;
  readonly #outbox = new Map<string, OutboxEntry>();
  #outboxSeq = 0;
  #flushWake: (() => void) | undefined;
  #flushing: Promise<void> | undefined;
  /** Ids of the entries a flush has in flight: no other flush sends them meanwhile. */
  readonly #sending = new Set<string>();

  /** An empty outbox over `ports`. */
  constructor(ports: OutboxPorts) {
    this.#ports = ports;
  }

  /** Caches the entries loaded from the store; ids made later sort after theirs. */
  load(entries: OutboxEntry[]): void {
    for (const entry of entries) {
      this.#outbox.set(entry.id, entry);
      this.#outboxSeq = Math.max(this.#outboxSeq, outboxSeqOf(entry.id));
    }
  }

  /** The next outbox id: ordered by queue time, then by sequence, across restarts. */
  nextId(now: number): string {
    this.#outboxSeq += 1;
    return `${now.toString(36).padStart(10, "0")}.${this.#outboxSeq.toString(36).padStart(8, "0")}`;
  }

  /** Packed messages waiting to leave. */
  size(): number {
    return this.#outbox.size;
  }

  /** Applies a commit's outbox changes to the cache; new entries wake the outbox loop. */
  committed(put: OutboxEntry[], deleted: string[]): void {
    for (const entry of put) this.#outbox.set(entry.id, entry);
    for (const id of deleted) this.#outbox.delete(id);
    if (put.length > 0) this.#flushWake?.();
  }

  /**
   * Sends every due outbox entry once; failures are rescheduled with
   * exponential backoff. Resolves with how many entries were delivered.
   */
  flush(signal?: AbortSignal): Promise<number> {
    const run = (this.#flushing ?? Promise.resolve()).then(() =>
      this.#send(this.#pick(this.#ports.clock.now()).due, signal)
    );
    this.#flushing = run.then(() => {}, () => {});
    return run;
  }

  /**
   * The entries due at `now` that no flush has in flight, in queue order, and
   * when the earliest of the others not in flight falls due. Behind a barrier
   * (a session reset or rekey) not stored yet — waiting for its retry, or in
   * flight — its queue waits.
   */
  #pick(now: number): { due: OutboxEntry[]; next: number | undefined } {
    const order = (a: OutboxEntry, b: OutboxEntry) =>
      a.queuedAt - b.queuedAt || (a.id < b.id ? -1 : 1);
    const blocked = new Set<string>();
    const due: OutboxEntry[] = [];
    let next: number | undefined;
    for (const entry of [...this.#outbox.values()].sort(order)) {
      const queue = entry.packed?.destination ?? "";
      if (blocked.has(queue)) continue;
      if (this.#sending.has(entry.id)) {
        if (entry.barrier) blocked.add(queue);
      } else if (entry.nextAttemptAt <= now) due.push(entry);
      else {
        if (next === undefined || entry.nextAttemptAt < next) next = entry.nextAttemptAt;
        if (entry.barrier) blocked.add(queue);
      }
    }
    return { due, next };
  }

  /** Sends `due` (from {@linkcode Outbox.#pick}), marked in flight until it is through. */
  async #send(due: OutboxEntry[], signal?: AbortSignal): Promise<number> {
    for (const entry of due) this.#sending.add(entry.id);
    try {
      return await this.#sendBatches(due, signal);
    } finally {
      for (const entry of due) this.#sending.delete(entry.id);
    }
  }

  async #sendBatches(due: OutboxEntry[], signal?: AbortSignal): Promise<number> {
    const byServer = new Map<string, OutboxEntry[]>();
    for (const entry of due) {
      const key = entry.server?.uid ?? "";
      byServer.set(key, [...(byServer.get(key) ?? []), entry]);
    }
    let delivered = 0;
    for (const entries of byServer.values()) {
      const failedBarriers = new Set<string>();
      for (const wave of waves(await this.#batches(entries))) {
        if (signal?.aborted || this.#ports.state.closed) return delivered;
        const batches = wave
          .map((all) => all.filter((e) => !failedBarriers.has(e.packed?.destination ?? "")))
          .filter((batch) => batch.length > 0);
        // The batches of one wave go out at once: a backlog of n batches costs one round trip,
        // not n, and one slow or lost request holds back only its own batch.
        // All of them settle before a failure surfaces: none is left in flight unmarked.
        const results = await Promise.allSettled(batches.map((b) => this.#deliver(b, signal)));
        for (const result of results) {
          if (result.status === "rejected") throw result.reason;
          delivered += result.value;
        }
        for (const e of batches.flat()) {
          if (e.barrier && this.#outbox.has(e.id)) failedBarriers.add(e.packed?.destination ?? "");
        }
      }
    }
    return delivered;
  }

  /**
   * Splits one relay's due entries into requests within its card's limits
   * (messages per request, request bytes). An entry larger than the relay
   * stores can never leave: its message fails, reported and counted, not sent.
   */
  async #batches(entries: OutboxEntry[]): Promise<OutboxEntry[][]> {
    const server = entries[0].server!;
    const limits = relayLimits(server);
    const countMax = Math.min(this.#ports.outboxBatchMax, limits.messagesPerRequestMax);
    const bytesMax = limits.requestBytesMax - REQUEST_OVERHEAD_BYTES;
    const batches: OutboxEntry[][] = [];
    const tooLarge: OutboxEntry[] = [];
    let batch: OutboxEntry[] = [];
    let bytes = 0;
    for (const entry of entries) {
      const size = packedBytes(entry.packed!);
      if (size > limits.messageBytesMax) {
        tooLarge.push(entry);
        continue;
      }
      if (batch.length >= countMax || (batch.length > 0 && bytes + size > bytesMax)) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(entry);
      bytes += size + MESSAGE_FRAMING_BYTES;
    }
    if (batch.length > 0) batches.push(batch);
    await this.#fail(
      server,
      tooLarge.map((entry) => ({
        entry,
        reason: `too large: ${
          packedBytes(entry.packed!)
        } bytes, more than the relay's messageBytesMax ${limits.messageBytesMax}`,
      })),
    );
    return batches;
  }

  /**
   * Gives up on outbox entries the relay will never take: each is reported,
   * and in one commit removed from the outbox while the message it carries is
   * marked failed with its reason (`message.status`, so device sync tells every
   * sibling).
   */
  async #fail(server: ServerCard, failures: { entry: OutboxEntry; reason: string }[]) {
    if (failures.length === 0) return;
    for (const { entry, reason } of failures) this.#ports.relay.dropped(server, entry, reason);
    await this.#ports.serial.run(() =>
      this.#ports.transact(async (tx) => {
        for (const { entry, reason } of failures) {
          if (!this.#outbox.has(entry.id)) continue;
          tx.deleteOutbox(entry.id);
          if (entry.messageUuid === "" || entry.peerUid === "") continue;
          const row = await tx.message(entry.peerUid, entry.messageUuid);
          if (!row?.outbound || row.failedAt > 0) continue;
          row.failedReason = reason;
          row.failedAt = tx.now;
          row.pendingForward = false;
          tx.putMessage(row);
          await tx.emit("message.status", { message: row, origin: "local" });
        }
      })
    );
  }

  async #deliver(entries: OutboxEntry[], signal?: AbortSignal): Promise<number> {
    const server = entries[0].server!;
    let answer: FromServerMessage;
    try {
      answer = await this.#ports.relay.request(
        server,
        { messages: entries.map((e) => e.packed!) },
        { signal },
      );
    } catch (e) {
      if (!(e instanceof TransportError || e instanceof MeowError)) throw e;
      // Stopped mid-request: not a failed attempt, the entries stay due for the next flush
      // (a copy the relay got anyway is dropped as a repeat by the receiver).
      if (signal?.aborted) return 0;
      this.#ports.log(
        "debug",
        `${this.#ports.name} outbox: ${server.name || server.uid} unreachable: ${e.message}`,
      );
      this.#ports.relay.health(server, "send", "unreachable", e.message);
      await this.#reschedule(entries);
      return 0;
    }
    const refusal = answer.errors.find((e) => e.messageIndex === 0 && e.lookupKey === "");
    if (refusal) {
      const error = this.#ports.relay.refused(server, "send", refusal);
      await this.#reschedule(entries, error.retryAfterMs);
      return 0;
    }
    this.#ports.relay.health(server, "send", "ok", "");
    const errors = new Map(answer.errors.map((e) => [e.messageIndex - 1, e]));
    const done: string[] = [];
    const retry: OutboxEntry[] = [];
    const queueFull = new Set<string>();
    const failures: { entry: OutboxEntry; reason: string }[] = [];
    entries.forEach((entry, i) => {
      const error = errors.get(i);
      if (!error) return done.push(entry.id);
      if (error.code === ErrorCode.TOO_LARGE) {
        return failures.push({ entry, reason: `too large: the relay refused it: ${error.detail}` });
      }
      if (error.code === ErrorCode.QUEUE_FULL) {
        if (entry.queueFullAttempts + 1 >= QUEUE_FULL_ATTEMPTS_MAX) {
          return failures.push({
            entry,
            reason: `queue full: the relay refused it ${QUEUE_FULL_ATTEMPTS_MAX} times ` +
              `(QUEUE_FULL_ATTEMPTS_MAX): ${error.detail}`,
          });
        }
        queueFull.add(entry.id);
      }
      retry.push(entry);
    });
    await this.#ports.serial.run(() => this.#commitOutbox(done, []));
    await this.#fail(server, failures);
    if (retry.length > 0) await this.#reschedule(retry, 0, queueFull);
    return done.length;
  }

  /**
   * Retries `entries` later: exponential backoff with jitter, at least
   * `retryAfterMs`; the entries in `queueFull` count one more QUEUE_FULL answer.
   */
  #reschedule(entries: OutboxEntry[], retryAfterMs = 0, queueFull?: Set<string>): Promise<void> {
    const now = this.#ports.clock.now();
    const updated = entries.filter((e) => this.#outbox.has(e.id)).map((entry) => {
      const next = clone(OutboxEntrySchema, entry);
      next.attempts += 1;
      if (queueFull?.has(entry.id)) next.queueFullAttempts += 1;
      const backoff = Math.min(
        this.#ports.retryMsMax,
        RETRY_MS_MIN * 2 ** Math.min(16, entry.attempts),
      );
      next.nextAttemptAt = now + Math.max(
        retryAfterMs,
        backoff / 2 + randomInt(this.#ports.random, Math.max(1, Math.floor(backoff / 2))),
      );
      return next;
    });
    return this.#ports.serial.run(() => this.#commitOutbox([], updated));
  }

  async #commitOutbox(done: string[], updated: OutboxEntry[]): Promise<void> {
    const live = done.filter((id) => this.#outbox.has(id));
    if (live.length === 0 && updated.length === 0) return;
    await this.#ports.store.commit({ outboxDelete: live, outboxPut: updated });
    for (const id of live) this.#outbox.delete(id);
    for (const entry of updated) this.#outbox.set(entry.id, entry);
  }

  /**
   * Flushes due entries until `signal` aborts: what is committed meanwhile goes
   * out at once, beside the requests still in flight, rather than after the
   * slowest of them; between flushes it sleeps until the next entry is due, one
   * is queued, or a flush ends (what it failed is due again later).
   */
  async loop(signal: AbortSignal): Promise<void> {
    const running = new Set<Promise<void>>();
    try {
      while (!signal.aborted && !this.#ports.state.closed) {
        const wake = new AbortController();
        // Set before picking: a commit or a flush ending from here on ends the sleep below.
        this.#flushWake = () => wake.abort();
        const now = this.#ports.clock.now();
        const { due } = this.#pick(now);
        if (due.length > 0) {
          const run: Promise<void> = this.#send(due, signal).then(
            () => {},
            (e) => {
              if (!signal.aborted) {
                this.#ports.log(
                  "error",
                  `${this.#ports.name} outbox failed: ${(e as Error).stack}`,
                );
              }
            },
          ).finally(() => {
            running.delete(run);
            this.#flushWake?.();
          });
          running.add(run);
        }
        const { next } = this.#pick(now);
        const wait = next === undefined ? this.#ports.retryMsMax : Math.max(1, next - now);
        try {
          // One signal for both: the kernel may have stopped while the flush ran.
          await this.#ports.clock.sleep(wait, AbortSignal.any([signal, wake.signal]));
        } catch {
          // woken: new entries were queued, a flush ended, or the kernel stops.
        }
      }
    } finally {
      this.#flushWake = undefined;
      await Promise.allSettled(running);
    }
  }
}

/**
 * Groups one relay's batches, in order, into waves sent at once: at most
 * {@linkcode OUTBOX_REQUESTS_AT_ONCE} batches each, and a batch carrying a
 * message for a queue behind a barrier (a session reset or rekey) of an
 * earlier batch starts a new wave, so it leaves only once the barrier is stored.
 */
export function waves(batches: OutboxEntry[][]): OutboxEntry[][][] {
  const result: OutboxEntry[][][] = [];
  let wave: OutboxEntry[][] = [];
  let barriers = new Set<string>();
  for (const batch of batches) {
    const queues = batch.map((e) => e.packed?.destination ?? "");
    if (
      wave.length >= OUTBOX_REQUESTS_AT_ONCE || queues.some((queue) => barriers.has(queue))
    ) {
      result.push(wave);
      wave = [];
      barriers = new Set();
    }
    wave.push(batch);
    batch.forEach((e, i) => {
      if (e.barrier) barriers.add(queues[i]);
    });
  }
  if (wave.length > 0) result.push(wave);
  return result;
}

/** The sequence part of an outbox id (0 for ids of another form). */
function outboxSeqOf(id: string): number {
  const seq = Number.parseInt(id.split(".")[1] ?? "", 36);
  return Number.isSafeInteger(seq) ? seq : 0;
}

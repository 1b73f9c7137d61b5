/**
 * The Deno KV backend: one code path for a local SQLite-backed KV file and
 * for Deno Deploy's KV.
 *
 * Keys:
 * - `["msg", queue, receivedMs, deliveryUuid]` → the stored message bytes (PROTOCOL.md);
 * - `["idx", deliveryUuid]` → `[queue, receivedMs]`, so an ack finds its message;
 * - `["count", queue]` → how many messages the queue holds (the length limit; every
 *   write to a queue checks its versionstamp, so concurrent writers retry, never overshoot);
 * - `["notify", queue]` → bumped by every store; long polls `kv.watch` it;
 * - `["sig", id]` → expiry ms of a used pull signature; `["keys"]` → the relay's keys;
 * - `["mbx", nameplate]` → a mailbox's members, post count and expiry (every change to a
 *   mailbox checks its versionstamp); `["mbxpost", nameplate, index]` → one post (a value holds
 *   at most 64 KiB, so posts are entries of their own); `["mbxnotify", nameplate]` → bumped by
 *   every post, watched by long polls. All of them carry a TTL to the mailbox's expiry.
 *
 * Longer than most files: one method per Backend operation over one key layout, each an atomic
 * retry loop.
 *
 * @module
 */
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
import { equalBytes } from "../crypto/mod.ts";

/** Largest Deno KV value, in bytes. */
const KV_VALUE_BYTES_MAX = 65_536;
/** Largest total size of one atomic operation Deno KV accepts, in bytes. */
const KV_ATOMIC_BYTES_MAX = 800 * 1024;
/** Most mutations one atomic operation Deno KV accepts (closing a mailbox deletes every post). */
const KV_MUTATIONS_MAX = 1000;
/** Most expired messages one store removes from one queue (the sweep takes the rest). */
const PURGE_PER_STORE_MAX = 64;
/** Most retries of an atomic operation that lost a race to another writer. */
const ATOMIC_ATTEMPTS_MAX = 32;
/** Most keys one `kv.watch` or `kv.getMany` call accepts. */
const KV_KEYS_PER_CALL_MAX = 10;
/** Most expired messages one sweep removes per queue per round. */
const SWEEP_BATCH_MAX = 200;

/** A mailbox's head entry `["mbx", nameplate]`. */
interface KvMailbox {
  sides: Uint8Array[];
  count: number;
  expiresMs: number;
}

/** One post entry `["mbxpost", nameplate, index]`: which member posted it, and the ciphertext. */
interface KvMailboxPost {
  side: number;
  body: Uint8Array;
}

/** Options for {@linkcode KvBackend.open}. */
export interface KvBackendOptions {
  /**
   * Path of the KV database file; `undefined` opens the default database (on Deno Deploy: the
   * project's KV).
   * @default {undefined}
   */
  path?: string;
}

/**
 * A relay backend over Deno KV.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KvBackend } from "./kv.ts";
 * const backend = await KvBackend.open({ path: ":memory:" });
 * await backend.storeMessages(
 *   [{ queue: "q", deliveryUuid: "u", receivedMs: 5, bytes: new Uint8Array([7]) }],
 *   { nowMs: 5, retentionMs: 1000, queueLengthMax: 10 },
 * );
 * const [m] = await backend.readQueues(["q"], { nowMs: 6, retentionMs: 1000, messagesMax: 10 });
 * assert(m.bytes[0] === 7);
 * await backend.close();
 * ```
 */
export class KvBackend implements Backend {
  /** Always "kv". */
  readonly kind = "kv";
  readonly #kv: Deno.Kv;
  readonly #watches = new Set<() => void>();
  #closed = false;

  private constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /** Opens the KV database at `options.path` (or the default one). */
  static async open(options: KvBackendOptions = {}): Promise<KvBackend> {
    return new KvBackend(await Deno.openKv(options.path));
  }

  /** Wraps an open `Deno.Kv` (which {@linkcode KvBackend.close} then closes). */
  static over(kv: Deno.Kv): KvBackend {
    return new KvBackend(kv);
  }

  /** Refuses limits beyond a KV value or a KV atomic operation. */
  checkLimits(
    limits: { messageBytesMax: number; messagesPerRequestMax: number; mailboxPostsMax: number },
  ): void {
    if (limits.mailboxPostsMax + 1 > KV_MUTATIONS_MAX) {
      throw new RangeError(
        `Cannot run over Deno KV with mailboxPostsMax ${limits.mailboxPostsMax}: one KV atomic operation makes at most ${KV_MUTATIONS_MAX} changes`,
      );
    }
    // Room for the key, the index entry and the counters of each message.
    const perMessage = limits.messageBytesMax + 512;
    if (limits.messageBytesMax > KV_VALUE_BYTES_MAX - 1024) {
      throw new RangeError(
        `Cannot run over Deno KV with messageBytesMax ${limits.messageBytesMax}: a KV value holds at most ${KV_VALUE_BYTES_MAX} bytes`,
      );
    }
    if (perMessage * limits.messagesPerRequestMax > KV_ATOMIC_BYTES_MAX) {
      throw new RangeError(
        `Cannot run over Deno KV with messagesPerRequestMax ${limits.messagesPerRequestMax} × messageBytesMax ${limits.messageBytesMax}: one KV atomic operation holds at most ${KV_ATOMIC_BYTES_MAX} bytes`,
      );
    }
  }

  /** Stores `candidate` unless keys exist; resolves with the stored keys. */
  async loadOrStoreKeys(candidate: ServerKeys): Promise<ServerKeys> {
    const result = await this.#kv.atomic().check({ key: ["keys"], versionstamp: null })
      .set(["keys"], candidate).commit();
    if (result.ok) return structuredClone(candidate);
    const stored = await this.#kv.get<ServerKeys>(["keys"]);
    return stored.value!;
  }

  /** Stores the batch in one atomic operation. */
  async storeMessages(batch: StoredMessage[], options: StoreOptions): Promise<boolean[]> {
    const queues = [...new Set(batch.map((m) => m.queue))];
    const cutoff = options.nowMs - options.retentionMs;
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const counts = await this.#getMany<number>(queues.map((q) => ["count", q]));
      const op = this.#kv.atomic();
      const length = new Map<string, number>();
      for (const [i, queue] of queues.entries()) {
        op.check(counts[i]);
        let count = counts[i].value ?? 0;
        // Expired messages of this queue go first, so they do not count.
        const expired = this.#kv.list<Uint8Array>(
          { prefix: ["msg", queue], end: ["msg", queue, cutoff] },
          { limit: PURGE_PER_STORE_MAX },
        );
        for await (const entry of expired) {
          op.delete(entry.key).delete(["idx", entry.key[3] as string]);
          count--;
        }
        length.set(queue, count);
      }
      const results = batch.map((m) => {
        const count = length.get(m.queue)!;
        if (count >= options.queueLengthMax) return false;
        length.set(m.queue, count + 1);
        op.set(["msg", m.queue, m.receivedMs, m.deliveryUuid], m.bytes)
          .set(["idx", m.deliveryUuid], [m.queue, m.receivedMs]);
        return true;
      });
      const grown = new Set(batch.filter((_, i) => results[i]).map((m) => m.queue));
      for (const [i, queue] of queues.entries()) {
        const count = length.get(queue)!;
        if (count === (counts[i].value ?? 0)) continue;
        if (count > 0) op.set(["count", queue], count);
        else op.delete(["count", queue]);
      }
      for (const queue of grown) op.set(["notify", queue], options.nowMs);
      if ((await op.commit()).ok) return results;
    }
    throw new Error(`Cannot store in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost a race`);
  }

  /** The live messages of `queues`, oldest first. */
  async readQueues(queues: string[], options: ReadOptions): Promise<StoredMessage[]> {
    const cutoff = options.nowMs - options.retentionMs;
    const out: StoredMessage[] = [];
    for (const queue of new Set(queues)) {
      const entries = this.#kv.list<Uint8Array>(
        { prefix: ["msg", queue], start: ["msg", queue, cutoff] },
        { limit: options.messagesMax },
      );
      for await (const entry of entries) {
        out.push({
          queue,
          receivedMs: entry.key[2] as number,
          deliveryUuid: entry.key[3] as string,
          bytes: entry.value,
        });
      }
    }
    return out.sort(compareStored).slice(0, options.messagesMax);
  }

  /** Removes those delivery uuids from those queues only, atomically. */
  async ackMessages(queues: string[], deliveryUuids: string[]): Promise<number> {
    const allowed = new Set(queues);
    const uuids = [...new Set(deliveryUuids)];
    if (allowed.size === 0 || uuids.length === 0) return 0;
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const index = await this.#getMany<[string, number]>(uuids.map((u) => ["idx", u]));
      const found = index.filter((e) => e.value !== null && allowed.has(e.value[0]));
      if (found.length === 0) return 0;
      const touched = [...new Set(found.map((e) => e.value![0]))];
      const counts = await this.#getMany<number>(touched.map((q) => ["count", q]));
      const op = this.#kv.atomic();
      const removed = new Map<string, number>();
      for (const entry of found) {
        const [queue, receivedMs] = entry.value!;
        op.check(entry).delete(entry.key).delete([
          "msg",
          queue,
          receivedMs,
          entry.key[1] as string,
        ]);
        removed.set(queue, (removed.get(queue) ?? 0) + 1);
      }
      for (const [i, queue] of touched.entries()) {
        op.check(counts[i]);
        const count = (counts[i].value ?? 0) - removed.get(queue)!;
        if (count > 0) op.set(["count", queue], count);
        else op.delete(["count", queue]);
      }
      if ((await op.commit()).ok) return found.length;
    }
    throw new Error(`Cannot ack in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost a race`);
  }

  /** Records a signature id atomically; `false` when it is recorded and not expired. */
  async useSignature(id: string, expiresMs: number, nowMs: number): Promise<boolean> {
    const key = ["sig", id];
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const previous = await this.#kv.get<number>(key);
      if (previous.value !== null && previous.value > nowMs) return false;
      const result = await this.#kv.atomic().check(previous)
        .set(key, expiresMs, { expireIn: ttl(expiresMs, nowMs) }).commit();
      if (result.ok) return true;
    }
    throw new Error(`Cannot record a signature in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost`);
  }

  /** Records a token pull's MAC atomically with a check of the key's revocation. */
  async useTokenMac(
    id: string,
    expiresMs: number,
    nowMs: number,
    token: IssuedToken,
  ): Promise<TokenUse> {
    const key = ["sig", id];
    const revokedKey = ["revoked", token.lookupKey];
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const [previous, revoked] = await this.#kv.getMany<[number, Revocation]>([key, revokedKey]);
      const mark = revoked.value;
      if (mark && mark.untilMs > nowMs && mark.atMs >= token.issuedMs) return "revoked";
      if (previous.value !== null && previous.value > nowMs) return "used";
      const result = await this.#kv.atomic().check(previous, revoked)
        .set(key, expiresMs, { expireIn: ttl(expiresMs, nowMs) }).commit();
      if (result.ok) return "ok";
    }
    throw new Error(`Cannot record a token MAC in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost`);
  }

  /** Moves the key's revocation mark to `nowMs` (never back). */
  async revokePullTokens(lookupKey: string, nowMs: number, untilMs: number): Promise<void> {
    const key = ["revoked", lookupKey];
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const previous = await this.#kv.get<Revocation>(key);
      const live = previous.value && previous.value.untilMs > nowMs ? previous.value : undefined;
      const mark: Revocation = {
        atMs: Math.max(live?.atMs ?? nowMs, nowMs),
        untilMs: Math.max(live?.untilMs ?? untilMs, untilMs),
      };
      const result = await this.#kv.atomic().check(previous)
        .set(key, mark, { expireIn: ttl(mark.untilMs, nowMs) }).commit();
      if (result.ok) return;
    }
    throw new Error(`Cannot revoke pull tokens in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost`);
  }

  /** Watches `["notify", queue]` of each queue (in groups of ten keys per `kv.watch`). */
  watchQueues(queues: string[]): Promise<QueueWatch> {
    return this.#watch([...new Set(queues)].map((q) => ["notify", q]));
  }

  /** Creates a mailbox unless a live one holds the nameplate (an expired one's posts go). */
  async createMailbox(nameplate: string, init: MailboxInit, nowMs: number): Promise<boolean> {
    const key = ["mbx", nameplate];
    const expireIn = ttl(init.expiresMs, nowMs);
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const previous = await this.#kv.get<KvMailbox>(key);
      if (previous.value !== null && previous.value.expiresMs > nowMs) return false;
      const op = this.#kv.atomic().check(previous);
      for await (const old of this.#kv.list({ prefix: ["mbxpost", nameplate] })) {
        op.delete(old.key);
      }
      const head: KvMailbox = { sides: [init.side], count: 0, expiresMs: init.expiresMs };
      if (init.post) {
        op.set(["mbxpost", nameplate, 0], { side: 0, body: init.post }, { expireIn })
          .set(["mbxnotify", nameplate], nowMs, { expireIn });
        head.count = 1;
      }
      op.set(key, head, { expireIn });
      if ((await op.commit()).ok) return true;
    }
    throw new Error(`Cannot create a mailbox in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost`);
  }

  /** One atomic mailbox step: a check of the mailbox's versionstamp guards every change. */
  async stepMailbox(
    nameplate: string,
    step: MailboxStep,
    nowMs: number,
  ): Promise<MailboxStepResult | undefined> {
    const key = ["mbx", nameplate];
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const entry = await this.#kv.get<KvMailbox>(key);
      const head = entry.value;
      if (head === null || head.expiresMs <= nowMs) return undefined;
      const sides = [...head.sides];
      let me = sides.findIndex((side) => equalBytes(side, step.side));
      const member = me >= 0;
      if (!member) {
        if (sides.length >= 2) return undefined;
        me = sides.push(step.side) - 1;
      }
      const full = step.post !== undefined && head.count >= step.postsMax;
      const posting = step.post !== undefined && !full;
      // Posts below `count` never change while the versionstamp stands: read, then check it.
      const posts: MailboxPostRecord[] = [];
      const list = this.#kv.list<KvMailboxPost>({
        start: ["mbxpost", nameplate, Math.max(0, step.after)],
        end: ["mbxpost", nameplate, head.count],
      });
      for await (const post of list) {
        if (post.value.side === me) continue;
        posts.push({
          index: post.key[2] as number,
          side: sides[post.value.side],
          body: post.value.body,
        });
      }
      const result = { member, full, posts, expiresMs: head.expiresMs };
      if (member && !posting) {
        const still = await this.#kv.get<KvMailbox>(key);
        if (still.versionstamp === entry.versionstamp) return result;
        continue;
      }
      const expireIn = ttl(head.expiresMs, nowMs);
      const op = this.#kv.atomic().check(entry);
      if (posting) {
        op.set(["mbxpost", nameplate, head.count], { side: me, body: step.post }, { expireIn })
          .set(["mbxnotify", nameplate], nowMs, { expireIn });
      }
      op.set(key, { sides, count: head.count + (posting ? 1 : 0), expiresMs: head.expiresMs }, {
        expireIn,
      });
      if ((await op.commit()).ok) return result;
    }
    throw new Error(`Cannot step a mailbox in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost`);
  }

  /** Deletes the mailbox and its posts when `side` is a member. */
  async closeMailbox(nameplate: string, side: Uint8Array, nowMs: number): Promise<boolean> {
    for (let attempt = 0; attempt < ATOMIC_ATTEMPTS_MAX; attempt++) {
      const entry = await this.#kv.get<KvMailbox>(["mbx", nameplate]);
      const head = entry.value;
      if (head === null || head.expiresMs <= nowMs) return false;
      if (!head.sides.some((s) => equalBytes(s, side))) return false;
      if (await this.#dropMailbox(entry)) {
        // A member waiting on the mailbox learns at once that it is gone.
        await this.#kv.set(["mbxnotify", nameplate], nowMs, { expireIn: 60_000 });
        return true;
      }
    }
    throw new Error(`Cannot close a mailbox in Deno KV: ${ATOMIC_ATTEMPTS_MAX} attempts lost`);
  }

  /** Watches `["mbxnotify", nameplate]`. */
  watchMailbox(nameplate: string): Promise<QueueWatch> {
    return this.#watch([["mbxnotify", nameplate]]);
  }

  /**
   * Drops expired messages of every queue and expired mailboxes; signatures expire by TTL.
   */
  async sweep(nowMs: number, retentionMs: number): Promise<number> {
    const cutoff = nowMs - retentionMs;
    let dropped = 0;
    for await (const counter of this.#kv.list<number>({ prefix: ["count"] })) {
      const queue = counter.key[1] as string;
      for (let round = 0; round < ATOMIC_ATTEMPTS_MAX; round++) {
        const expired = [];
        const list = this.#kv.list<Uint8Array>(
          { prefix: ["msg", queue], end: ["msg", queue, cutoff] },
          { limit: SWEEP_BATCH_MAX },
        );
        for await (const entry of list) expired.push(entry);
        if (expired.length === 0) break;
        const count = await this.#kv.get<number>(["count", queue]);
        const op = this.#kv.atomic().check(count);
        for (const entry of expired) {
          op.check(entry).delete(entry.key).delete(["idx", entry.key[3] as string]);
        }
        const left = (count.value ?? 0) - expired.length;
        if (left > 0) op.set(["count", queue], left);
        else op.delete(["count", queue]);
        if ((await op.commit()).ok) dropped += expired.length;
      }
    }
    for await (const mailbox of this.#kv.list<KvMailbox>({ prefix: ["mbx"] })) {
      // A lost race means the mailbox changed: the next sweep looks again.
      if (mailbox.value.expiresMs <= nowMs) await this.#dropMailbox(mailbox);
    }
    return dropped;
  }

  /** Ends every watch and closes the database. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const close of [...this.#watches]) close();
    this.#kv.close();
    return Promise.resolve();
  }

  /** Fires on the first change of any of `keys` after the watch is live (when this resolves). */
  async #watch(keys: Deno.KvKey[]): Promise<QueueWatch> {
    let fire!: () => void;
    const changed = new Promise<void>((resolve) => (fire = resolve));
    const readers: ReadableStreamDefaultReader<Deno.KvEntryMaybe<unknown>[]>[] = [];
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      this.#watches.delete(close);
      for (const reader of readers) reader.cancel().catch(() => {});
    };
    this.#watches.add(close);
    const ready: Promise<void>[] = [];
    for (let i = 0; i < keys.length; i += KV_KEYS_PER_CALL_MAX) {
      const reader = this.#kv.watch(keys.slice(i, i + KV_KEYS_PER_CALL_MAX)).getReader();
      readers.push(reader);
      // The first emission is the current state: from then on the watch is live.
      ready.push(
        reader.read().then(() => {
          (async () => {
            while (!closed) {
              const next = await reader.read().catch(() => ({ done: true as const }));
              if (next.done) return;
              if (!closed) {
                close();
                fire();
              }
            }
          })();
        }),
      );
    }
    await Promise.all(ready);
    return { changed, close };
  }

  /** Deletes a mailbox head and its posts, checked against the head's versionstamp. */
  async #dropMailbox(entry: Deno.KvEntry<KvMailbox>): Promise<boolean> {
    const nameplate = entry.key[1] as string;
    const op = this.#kv.atomic().check(entry).delete(entry.key);
    for await (const post of this.#kv.list({ prefix: ["mbxpost", nameplate] })) op.delete(post.key);
    return (await op.commit()).ok;
  }

  async #getMany<T>(keys: Deno.KvKey[]): Promise<Deno.KvEntryMaybe<T>[]> {
    const out: Deno.KvEntryMaybe<T>[] = [];
    for (let i = 0; i < keys.length; i += KV_KEYS_PER_CALL_MAX) {
      out.push(...await this.#kv.getMany<T[]>(keys.slice(i, i + KV_KEYS_PER_CALL_MAX)));
    }
    return out;
  }
}

/** A KV `expireIn` for an entry that must live until `expiresMs` (at least 1 ms). */
/** A key's pull-token revocation: tokens issued at or before `atMs` are refused until `untilMs`. */
interface Revocation {
  atMs: number;
  untilMs: number;
}

function ttl(expiresMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil(expiresMs - nowMs));
}

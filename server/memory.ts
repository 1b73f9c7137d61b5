/**
 * The memory backend: Maps and promise notification, for the simulator and
 * unit tests. It passes the same conformance suite as Deno KV and Redis.
 *
 * @module
 */
import {
  type Backend,
  compareStored,
  type IssuedToken,
  type MailboxInit,
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

/**
 * The state of a memory relay. Two {@linkcode MemoryBackend}s over one
 * `MemoryData` behave like two processes over one database: the simulator
 * "restarts" a relay by opening a new backend over the old data.
 */
export class MemoryData {
  /** @internal queue → delivery uuid → message, kept in queue order */
  readonly queues: Map<string, Map<string, StoredMessage>> = new Map();
  /** @internal signature id → expiry ms */
  readonly signatures: Map<string, number> = new Map();
  /** lookup key → tokens issued at or before `atMs` are revoked, remembered until `untilMs`. */
  readonly revocations: Map<string, { atMs: number; untilMs: number }> = new Map();
  /** @internal nameplate → mailbox */
  readonly mailboxes: Map<string, MemoryMailbox> = new Map();
  /** @internal queue → callbacks to run on the next store */
  readonly watchers: Map<string, Set<() => void>> = new Map();
  /** @internal nameplate → callbacks to run on the next post */
  readonly mailboxWatchers: Map<string, Set<() => void>> = new Map();
  /** @internal */
  keys: ServerKeys | undefined;
}

/** @internal One mailbox of a {@linkcode MemoryData}. */
export interface MemoryMailbox {
  /** Its members, one or two. */
  sides: Uint8Array[];
  /** Its posts; a post's index is its place here. */
  posts: { side: number; body: Uint8Array }[];
  /** When it expires, in ms. */
  expiresMs: number;
}

/** Options for {@linkcode MemoryBackend}. */
export interface MemoryBackendOptions {
  /**
   * The state to run over; pass another backend's `data` to "reopen" it.
   * @default {a fresh, empty MemoryData}
   */
  data?: MemoryData;
}

/**
 * A relay backend in memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBackend } from "./memory.ts";
 * const backend = new MemoryBackend();
 * const stored = await backend.storeMessages(
 *   [{ queue: "q", deliveryUuid: "u1", receivedMs: 1, bytes: new Uint8Array([1]) }],
 *   { nowMs: 1, retentionMs: 1000, queueLengthMax: 10 },
 * );
 * assert(stored[0] === true);
 * const read = await backend.readQueues(["q"], { nowMs: 2, retentionMs: 1000, messagesMax: 10 });
 * assert(read.length === 1);
 * await backend.close();
 * ```
 */
export class MemoryBackend implements Backend {
  /** Always "memory". */
  readonly kind = "memory";
  /** The state this backend runs over. */
  readonly data: MemoryData;
  #closed = false;

  /** @param options see {@linkcode MemoryBackendOptions} */
  constructor(options: MemoryBackendOptions = {}) {
    this.data = options.data ?? new MemoryData();
  }

  /** Accepts any limits: memory has no value size ceiling. */
  checkLimits(_limits: { messageBytesMax: number; messagesPerRequestMax: number }): void {}

  /** Stores `candidate` unless keys exist; resolves with the stored keys. */
  loadOrStoreKeys(candidate: ServerKeys): Promise<ServerKeys> {
    this.#open();
    this.data.keys ??= structuredClone(candidate);
    return Promise.resolve(structuredClone(this.data.keys));
  }

  /** Stores the batch atomically; `false` where the queue was full. */
  storeMessages(batch: StoredMessage[], options: StoreOptions): Promise<boolean[]> {
    this.#open();
    const touched = new Set<string>();
    const results = batch.map((message) => {
      const queue = this.#queue(message.queue, options.nowMs, options.retentionMs, true)!;
      if (queue.size >= options.queueLengthMax) return false;
      queue.set(message.deliveryUuid, { ...message, bytes: message.bytes.slice() });
      touched.add(message.queue);
      return true;
    });
    for (const name of touched) this.#sortQueue(name);
    for (const name of touched) this.#notify(name);
    return Promise.resolve(results);
  }

  /** The live messages of `queues`, oldest first. */
  readQueues(queues: string[], options: ReadOptions): Promise<StoredMessage[]> {
    this.#open();
    const out: StoredMessage[] = [];
    for (const name of new Set(queues)) {
      const queue = this.#queue(name, options.nowMs, options.retentionMs, false);
      for (const message of queue?.values() ?? []) {
        out.push({ ...message, bytes: message.bytes.slice() });
      }
    }
    out.sort(compareStored);
    return Promise.resolve(out.slice(0, options.messagesMax));
  }

  /** Removes those delivery uuids from those queues only. */
  ackMessages(queues: string[], deliveryUuids: string[]): Promise<number> {
    this.#open();
    let removed = 0;
    for (const name of new Set(queues)) {
      const queue = this.data.queues.get(name);
      if (!queue) continue;
      for (const uuid of deliveryUuids) if (queue.delete(uuid)) removed++;
      if (queue.size === 0) this.data.queues.delete(name);
    }
    return Promise.resolve(removed);
  }

  /** Records a signature id; `false` when it was recorded before and is not expired. */
  useSignature(id: string, expiresMs: number, nowMs: number): Promise<boolean> {
    this.#open();
    const previous = this.data.signatures.get(id);
    if (previous !== undefined && previous > nowMs) return Promise.resolve(false);
    this.data.signatures.set(id, expiresMs);
    return Promise.resolve(true);
  }

  useTokenMac(
    id: string,
    expiresMs: number,
    nowMs: number,
    token: IssuedToken,
  ): Promise<TokenUse> {
    this.#open();
    const revoked = this.data.revocations.get(token.lookupKey);
    if (revoked && revoked.untilMs > nowMs && revoked.atMs >= token.issuedMs) {
      return Promise.resolve("revoked");
    }
    // A MAC is recorded as a signature is (one map, one rule); nothing awaits in between.
    return this.useSignature(id, expiresMs, nowMs).then((fresh) => fresh ? "ok" : "used");
  }

  revokePullTokens(lookupKey: string, nowMs: number, untilMs: number): Promise<void> {
    this.#open();
    const previous = this.data.revocations.get(lookupKey);
    const live = previous && previous.untilMs > nowMs ? previous : undefined;
    this.data.revocations.set(lookupKey, {
      atMs: Math.max(live?.atMs ?? nowMs, nowMs),
      untilMs: Math.max(live?.untilMs ?? untilMs, untilMs),
    });
    return Promise.resolve();
  }

  /** Watches `queues`; active as soon as it resolves. */
  watchQueues(queues: string[]): Promise<QueueWatch> {
    this.#open();
    return Promise.resolve(watch(this.data.watchers, queues));
  }

  /** Creates a mailbox unless a live one holds the nameplate. */
  createMailbox(nameplate: string, init: MailboxInit, nowMs: number): Promise<boolean> {
    this.#open();
    if (this.#mailbox(nameplate, nowMs)) return Promise.resolve(false);
    const posts = init.post ? [{ side: 0, body: init.post.slice() }] : [];
    this.data.mailboxes.set(nameplate, {
      sides: [init.side.slice()],
      posts,
      expiresMs: init.expiresMs,
    });
    if (posts.length > 0) notify(this.data.mailboxWatchers, nameplate);
    return Promise.resolve(true);
  }

  /** One atomic mailbox step (see {@linkcode Backend.stepMailbox}). */
  stepMailbox(
    nameplate: string,
    step: MailboxStep,
    nowMs: number,
  ): Promise<MailboxStepResult | undefined> {
    this.#open();
    const mailbox = this.#mailbox(nameplate, nowMs);
    if (!mailbox) return Promise.resolve(undefined);
    let me = mailbox.sides.findIndex((side) => equalBytes(side, step.side));
    const member = me >= 0;
    if (!member) {
      if (mailbox.sides.length >= 2) return Promise.resolve(undefined);
      me = mailbox.sides.push(step.side.slice()) - 1;
    }
    let full = false;
    if (step.post) {
      full = mailbox.posts.length >= step.postsMax;
      if (!full) {
        mailbox.posts.push({ side: me, body: step.post.slice() });
        notify(this.data.mailboxWatchers, nameplate);
      }
    }
    const posts = [];
    for (let index = Math.max(0, step.after); index < mailbox.posts.length; index++) {
      const post = mailbox.posts[index];
      if (post.side === me) continue;
      posts.push({ index, side: mailbox.sides[post.side].slice(), body: post.body.slice() });
    }
    return Promise.resolve({ member, full, posts, expiresMs: mailbox.expiresMs });
  }

  /** Deletes the mailbox when `side` is a member. */
  closeMailbox(nameplate: string, side: Uint8Array, nowMs: number): Promise<boolean> {
    this.#open();
    const mailbox = this.#mailbox(nameplate, nowMs);
    if (!mailbox || !mailbox.sides.some((s) => equalBytes(s, side))) return Promise.resolve(false);
    this.data.mailboxes.delete(nameplate);
    // A member waiting on the mailbox learns at once that it is gone.
    notify(this.data.mailboxWatchers, nameplate);
    return Promise.resolve(true);
  }

  /** Watches the mailbox for posts; active as soon as it resolves. */
  watchMailbox(nameplate: string): Promise<QueueWatch> {
    this.#open();
    return Promise.resolve(watch(this.data.mailboxWatchers, [nameplate]));
  }

  /** Drops expired messages, signatures and mailboxes. */
  sweep(nowMs: number, retentionMs: number): Promise<number> {
    this.#open();
    let dropped = 0;
    for (const [name, queue] of this.data.queues) {
      const before = queue.size;
      this.#queue(name, nowMs, retentionMs, false);
      if (queue.size === 0) this.data.queues.delete(name);
      dropped += before - queue.size;
    }
    for (const [key, revoked] of this.data.revocations) {
      if (revoked.untilMs <= nowMs) this.data.revocations.delete(key);
    }
    for (const [id, expires] of this.data.signatures) {
      if (expires <= nowMs) this.data.signatures.delete(id);
    }
    for (const [nameplate, mailbox] of this.data.mailboxes) {
      if (mailbox.expiresMs <= nowMs) this.data.mailboxes.delete(nameplate);
    }
    return Promise.resolve(dropped);
  }

  /** Marks this backend closed; the data stays for another backend to reopen. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #open(): void {
    if (this.#closed) throw new TypeError("Cannot use the memory backend: it is closed");
  }

  /** The queue `name` with its expired messages dropped (created when missing). */
  #queue(
    name: string,
    nowMs: number,
    retentionMs: number,
    create: boolean,
  ): Map<string, StoredMessage> | undefined {
    let queue = this.data.queues.get(name);
    if (!queue) {
      if (!create) return undefined;
      queue = new Map();
      this.data.queues.set(name, queue);
      return queue;
    }
    const cutoff = nowMs - retentionMs;
    for (const [uuid, message] of queue) {
      // Queue order is receive order, so the first live message ends the scan.
      if (message.receivedMs >= cutoff) break;
      queue.delete(uuid);
    }
    return queue;
  }

  #sortQueue(name: string): void {
    const queue = this.data.queues.get(name)!;
    let previous: StoredMessage | undefined;
    let ordered = true;
    for (const message of queue.values()) {
      if (previous && compareStored(previous, message) > 0) ordered = false;
      previous = message;
    }
    if (ordered) return;
    const sorted = [...queue.values()].sort(compareStored);
    queue.clear();
    for (const message of sorted) queue.set(message.deliveryUuid, message);
  }

  #notify(name: string): void {
    notify(this.data.watchers, name);
  }

  /** The live mailbox under `nameplate` (an expired one is dropped on the way). */
  #mailbox(nameplate: string, nowMs: number): MemoryMailbox | undefined {
    const mailbox = this.data.mailboxes.get(nameplate);
    if (mailbox && mailbox.expiresMs <= nowMs) {
      this.data.mailboxes.delete(nameplate);
      return undefined;
    }
    return mailbox;
  }
}

/** A watch on `names` in `watchers`: fires on the first {@linkcode notify} of one of them. */
function watch(watchers: Map<string, Set<() => void>>, names: string[]): QueueWatch {
  const unique = [...new Set(names)];
  let fire!: () => void;
  const changed = new Promise<void>((resolve) => (fire = resolve));
  const close = () => {
    for (const name of unique) {
      const set = watchers.get(name);
      set?.delete(onStore);
      if (set?.size === 0) watchers.delete(name);
    }
  };
  const onStore = () => {
    close();
    fire();
  };
  for (const name of unique) {
    let set = watchers.get(name);
    if (!set) watchers.set(name, set = new Set());
    set.add(onStore);
  }
  return { changed, close };
}

function notify(watchers: Map<string, Set<() => void>>, name: string): void {
  const set = watchers.get(name);
  if (!set) return;
  for (const callback of [...set]) callback();
}

/**
 * The storage a relay core runs over. Three implementations pass one
 * conformance suite (`backend_conformance.ts`): memory (simulator, unit
 * tests), Deno KV (single process, Deno Deploy) and Redis (sorted sets).
 *
 * Every operation is atomic: a crash never leaves half of it behind. A
 * backend never reads a clock: the core passes `nowMs` in, so a virtual clock
 * drives expiry exactly like the real one.
 *
 * Queue order is `(receivedMs, deliveryUuid)` ascending everywhere: the
 * ordering of a Redis sorted set (score, then member) and of Deno KV keys
 * `["msg", queue, receivedMs, deliveryUuid]`.
 *
 * @module
 */

/** One packed user message as a relay stores it. */
export interface StoredMessage {
  /** The queue: the destination lookup key (base64url of an Ed25519 public key). */
  queue: string;
  /** The relay-assigned delivery uuid the recipient acks with. */
  deliveryUuid: string;
  /** When the relay stored it, in ms (the core's clock). */
  receivedMs: number;
  /** The serialized `PackedUserMessage`, delivery uuid and receive time included. */
  bytes: Uint8Array;
}

/** A relay's long-lived keys, raw 32-byte halves. */
export interface ServerKeys {
  /** X25519: requests are sealed to its public half. */
  encryption: { privateKey: Uint8Array; publicKey: Uint8Array };
  /** Ed25519: answers are signed with its private half. */
  signing: { privateKey: Uint8Array; publicKey: Uint8Array };
}

/** One post in a mailbox, as {@linkcode Backend.stepMailbox} answers it. */
export interface MailboxPostRecord {
  /** Its place in the mailbox's one numbering, from 0 in the order the relay received posts. */
  index: number;
  /** The member that posted it (16 bytes). */
  side: Uint8Array;
  /** The ciphertext as posted. */
  body: Uint8Array;
}

/** What {@linkcode Backend.createMailbox} starts a mailbox with. */
export interface MailboxInit {
  /** The first member (16 bytes). */
  side: Uint8Array;
  /** Its first post (index 0), if any. */
  post?: Uint8Array;
  /** When the mailbox expires, in ms. */
  expiresMs: number;
}

/** One step of a side in a mailbox, for {@linkcode Backend.stepMailbox}. */
export interface MailboxStep {
  /** The stepping side (16 bytes): a member, or a newcomer claiming the free place. */
  side: Uint8Array;
  /** A post to append, if any. */
  post?: Uint8Array;
  /** Answer the other side's posts with an index of at least this. */
  after: number;
  /** A mailbox holding this many posts refuses more. */
  postsMax: number;
}

/** The outcome of a {@linkcode Backend.stepMailbox} on a live mailbox. */
export interface MailboxStepResult {
  /** Whether the side was a member before this step (`false`: it just took the second place). */
  member: boolean;
  /** Whether the step's post was refused because the mailbox holds `postsMax` posts. */
  full: boolean;
  /** The other side's posts with index >= `after`, oldest first. */
  posts: MailboxPostRecord[];
  /** When the mailbox expires, in ms. */
  expiresMs: number;
}

/** What {@linkcode Backend.useTokenMac} found. */
export type TokenUse = "ok" | "used" | "revoked";

/** The pull token a MAC was made under: its queue and when it was issued. */
export interface IssuedToken {
  lookupKey: string;
  issuedMs: number;
}

/** Options for {@linkcode Backend.storeMessages}. */
export interface StoreOptions {
  /** The core's current time, in ms. */
  nowMs: number;
  /** Messages older than this many ms are expired (and do not count towards the length). */
  retentionMs: number;
  /** A queue holding this many live messages refuses more. */
  queueLengthMax: number;
}

/** Options for {@linkcode Backend.readQueues}. */
export interface ReadOptions {
  /** The core's current time, in ms. */
  nowMs: number;
  /** Messages older than this many ms are not returned. */
  retentionMs: number;
  /** Return at most this many messages in total, the oldest ones. */
  messagesMax: number;
}

/**
 * A live subscription to "a message was stored in one of these queues",
 * created by {@linkcode Backend.watchQueues}. It is active when the promise
 * that made it resolves, so a read after that and a wait on `changed` never
 * miss a store in between.
 */
export interface QueueWatch {
  /** Resolves the first time any watched queue receives a message after the watch began. */
  readonly changed: Promise<void>;
  /** Stops watching; `changed` then never resolves. Idempotent. */
  close(): void;
}

/**
 * The relay's storage. See the module doc for the guarantees every
 * implementation gives.
 */
export interface Backend {
  /** A short name for logs and the card ("memory", "kv", "redis"). */
  readonly kind: string;
  /**
   * Throws a `RangeError` when the backend cannot honour these limits (for
   * example a message larger than a Deno KV value). Called once by the core.
   */
  checkLimits(
    limits: { messageBytesMax: number; messagesPerRequestMax: number; mailboxPostsMax: number },
  ): void;
  /** Stores `candidate` unless keys exist already; resolves with the stored keys. */
  loadOrStoreKeys(candidate: ServerKeys): Promise<ServerKeys>;
  /**
   * Stores the batch in one atomic step; the result says, per message, whether
   * it was stored (`false`: its queue was full). Expired messages of the
   * touched queues are dropped on the way.
   */
  storeMessages(batch: StoredMessage[], options: StoreOptions): Promise<boolean[]>;
  /** The live messages of `queues`, oldest first, at most `messagesMax`. */
  readQueues(queues: string[], options: ReadOptions): Promise<StoredMessage[]>;
  /**
   * Removes the messages with these delivery uuids from these queues (and from
   * no other queue), atomically; unknown uuids are ignored. Resolves with how
   * many were removed.
   */
  ackMessages(queues: string[], deliveryUuids: string[]): Promise<number>;
  /**
   * Atomically records `id` (a pull signature) until `expiresMs`. Resolves
   * `true` the first time, `false` when it is recorded and not expired.
   */
  useSignature(id: string, expiresMs: number, nowMs: number): Promise<boolean>;
  /**
   * Atomically records `id` (the MAC of a token pull of `token.lookupKey`) until `expiresMs`,
   * as {@linkcode useSignature} does, unless that key's pull tokens issued at or before
   * `token.issuedMs` are revoked. Resolves `"ok"` the first time, `"used"` when it is recorded
   * and not expired, `"revoked"` (recording nothing) when the token is revoked.
   */
  useTokenMac(id: string, expiresMs: number, nowMs: number, token: IssuedToken): Promise<TokenUse>;
  /**
   * Revokes the pull tokens of `lookupKey` issued at or before `nowMs` (a later revocation
   * moves the mark on, never back); remembered until `untilMs`, when all of them have expired.
   */
  revokePullTokens(lookupKey: string, nowMs: number, untilMs: number): Promise<void>;
  /** Starts watching `queues` for stores; see {@linkcode QueueWatch}. */
  watchQueues(queues: string[]): Promise<QueueWatch>;
  /**
   * Creates a mailbox with one member unless a live one holds `nameplate`;
   * resolves `false` on conflict. An expired one under the name is replaced.
   */
  createMailbox(nameplate: string, init: MailboxInit, nowMs: number): Promise<boolean>;
  /**
   * One atomic step: joins `step.side` as the second member when it is new
   * and a place is free, appends `step.post` unless `postsMax` posts are
   * there, and answers the other side's posts. Resolves `undefined` when
   * there is no live mailbox this side may use: unknown, expired, closed, or
   * both places taken by others (the caller cannot tell which).
   */
  stepMailbox(
    nameplate: string,
    step: MailboxStep,
    nowMs: number,
  ): Promise<MailboxStepResult | undefined>;
  /**
   * Deletes the mailbox when `side` is one of its members; resolves `true`
   * when a live mailbox went. A closed mailbox is gone for everyone.
   */
  closeMailbox(nameplate: string, side: Uint8Array, nowMs: number): Promise<boolean>;
  /** Starts watching the mailbox for posts; `changed` fires on the next one. */
  watchMailbox(nameplate: string): Promise<QueueWatch>;
  /**
   * Drops expired messages, signatures and mailboxes; resolves
   * with how many messages went.
   */
  sweep(nowMs: number, retentionMs: number): Promise<number>;
  /** Releases connections and handles; the backend is unusable afterwards. */
  close(): Promise<void>;
}

/** Orders stored messages oldest first: by receive time, then by delivery uuid. */
export function compareStored(a: StoredMessage, b: StoredMessage): number {
  if (a.receivedMs !== b.receivedMs) return a.receivedMs - b.receivedMs;
  return a.deliveryUuid < b.deliveryUuid ? -1 : a.deliveryUuid > b.deliveryUuid ? 1 : 0;
}

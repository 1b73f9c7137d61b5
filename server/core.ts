/**
 * The relay server core: pure logic from request bytes to answer bytes over
 * a {@linkcode Backend}, a {@linkcode Clock} and a {@linkcode Random}. The
 * HTTP entry, the in-process transport and the simulator all drive this one
 * class.
 *
 * Longer than most files: one request's path — open, check the limits, store, authorise each pull
 * (signature or token), ack, read or long-poll, answer — and the mailbox steps it dispatches read
 * as one sequence; the backends, the envelope and the limits live elsewhere.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { sha256 } from "@noble/hashes/sha2.js";
import type { Clock } from "../ports/mod.ts";
import {
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  type Random,
  randomUuids,
  toBase64Url,
} from "../crypto/mod.ts";
import {
  issuePullToken,
  openRelayRequest,
  openTokenPull,
  PULL_TOKEN_LIFETIME_MS,
  pullTokenKey,
  type RelayRequest,
  RelaySessions,
  sealRelayAnswer,
  SESSION_UNKNOWN_ANSWER,
  SessionUnknown,
  verifyPull,
} from "../envelope/mod.ts";
import { encodedElements, withFields } from "../proto/mod.ts";
import {
  type ConversationRequest,
  ErrorCode,
  type FromServerMessage,
  FromServerMessageSchema,
  MailboxAction,
  MailboxAnswerSchema,
  MailboxPostSchema,
  type MailboxRequest,
  type PackedUserMessage,
  PackedUserMessageSchema,
  type ServerCard,
  ServerCardSchema,
  type ServerError,
  ServerErrorSchema,
  ServerLimitsSchema,
  type ToServerMessage,
  ToServerMessageSchema,
} from "../proto/mod.ts";
import type {
  Backend,
  MailboxStepResult,
  QueueWatch,
  ServerKeys,
  StoredMessage,
} from "./backend.ts";
import { WindowLimiter } from "./client_limits.ts";
import { PULL_FRESHNESS_MS, resolveLimits, type ServerLimitsInit } from "./limits.ts";

/** The answer to a request whose envelope cannot be read: no key to answer under. */
const EMPTY_ANSWER = new Uint8Array(0);
/** The alphabet of nameplates: Crockford's base32 (no I, L, O, U). */
const NAMEPLATE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** How many characters a nameplate has. */
const NAMEPLATE_LENGTH = 4;
/** A normalised nameplate. */
const NAMEPLATE = new RegExp(`^[${NAMEPLATE_ALPHABET}]{${NAMEPLATE_LENGTH}}$`);
/** How many random nameplates an ALLOCATE tries before it answers BUSY. */
const NAMEPLATE_ATTEMPTS_MAX = 16;
/** How many bytes a mailbox side is. */
const SIDE_BYTES = 16;
/** The window of the per-client mailbox look-up count, in ms. */
const LOOKUP_WINDOW_MS = 60_000;
/** Most client addresses whose mailbox look-ups are counted at once (least recently seen go). */
const LOOKUP_CLIENTS_MAX = 100_000;
/** The window of the per-client request count, in ms. */
const REQUEST_WINDOW_MS = 1_000;
/** Most client addresses whose requests are counted at once (least recently seen go). */
const REQUEST_CLIENTS_MAX = 100_000;
/** When a client refused a long poll (no slot left, for it or for all) should retry, in ms. */
const BUSY_RETRY_MS = 5_000;
/** The one answer to a mailbox that is unknown, expired, closed or taken by two other sides. */
const NO_SUCH_MAILBOX = "no such mailbox";

/** What {@linkcode ServerCore.observe} is told. */
export interface ObservedEvent {
  /**
   * `request`: an unsealed ToServerMessage; `stored`: a PackedUserMessage as stored; `mailbox`: a
   * mailbox post as stored.
   */
  kind: "request" | "stored" | "mailbox";
  /** The bytes the relay saw. */
  bytes: Uint8Array;
  /** For a `request`: whether it came in a relay session (no X25519 to open it). */
  session?: boolean;
}

/** Options for {@linkcode ServerCore.handle}. */
export interface HandleOptions {
  /** Ends a long poll early (the client went away). */
  signal?: AbortSignal;
  /**
   * Who sent the request, for per-client limits (the remote address over HTTP). Requests without
   * one (in process, or a Unix socket) share one mailbox look-up count and are not held to
   * `requestsPerSecondPerClientMax` nor `longPollsPerClientMax`.
   * @default {""}
   */
  client?: string;
}

/** Options for {@linkcode ServerCore.create}. */
export interface ServerCoreOptions {
  /** Where messages, keys, used signatures and mailboxes live. */
  backend: Backend;
  /** All time (receive times, freshness, expiry, long-poll waits). */
  clock: Clock;
  /** All randomness (keys on first start, delivery uuids, sealing nonces). */
  random: Random;
  /**
   * Human-readable name in the card.
   * @default {"meowsync relay"}
   */
  name?: string;
  /**
   * The base URL clients reach the relay at, published in the card.
   * @default {""}
   */
  url?: string;
  /**
   * Overrides of the default limits.
   * @default {DEFAULT_LIMITS}
   */
  limits?: Partial<ServerLimitsInit>;
  /**
   * Where the relay sessions live (in this process's memory).
   * @default {new RelaySessions()}
   */
  sessions?: RelaySessions;
}

/** Counters a running core keeps for the periodic log summary. */
export interface ServerStats {
  /** Requests handled. */
  requests: number;
  /** Requests answered with a request-wide error or the empty answer. */
  rejected: number;
  /** Messages stored. */
  stored: number;
  /** Messages delivered in answers (a redelivery counts again). */
  delivered: number;
  /** Messages acked away. */
  acked: number;
  /** Long polls open right now. */
  longPollsOpen: number;
  /** Pulls that came with a signature (each costs an Ed25519 check). */
  signedPulls: number;
  /** Pulls authorised by a pull token and its MAC (no public-key operation). */
  tokenPulls: number;
  /** Requests that came in a relay session (no public-key operation for the envelope). */
  sessionRequests: number;
}

/**
 * The relay: request bytes in, answer bytes out.
 *
 * A request is a serialized `PackedServerMessage` (transport v2, see
 * envelope/): `from` is the request's ephemeral X25519 key, the payload a
 * `ToServerMessage` under the request key; the answer is a
 * `PackedServerMessage` whose payload is a `FromServerMessage` under the
 * request's answer key, naming the request in `uuid_ack`. A payload that does
 * not open is answered MALFORMED under the answer key. When the request's
 * envelope cannot be read at all (not a `PackedServerMessage`, `from` not a
 * usable X25519 key, larger than twice `requestBytesMax`) there is no key to
 * answer under: {@linkcode ServerCore.handle} then returns an empty array
 * (HTTP: 400). A request in a relay session (`session` instead of `from`, see
 * envelope/session.ts) that no session this process holds opens is answered
 * `SESSION_UNKNOWN_ANSWER`, in clear, with nothing done; a request with
 * `open_session` gets a new session in its answer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { ServerCore } from "./core.ts";
 * import { MemoryBackend } from "./memory.ts";
 * import { openRelayExchange } from "../envelope/mod.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { ToServerMessageSchema } from "../proto/gen/meow_pb.ts";
 *
 * const random = new SeededRandom(1);
 * const clock = { now: () => 1_000_000, sleep: () => Promise.resolve() };
 * const core = await ServerCore.create({ backend: new MemoryBackend(), clock, random });
 * const exchange = await openRelayExchange({ server: core.card(), random });
 * const body = exchange.seal(create(ToServerMessageSchema, { uuid: "r1" }));
 * const answer = exchange.open(await core.handle(body));
 * assert(answer.uuidAck === "r1" && answer.errors.length === 0);
 * ```
 */
export class ServerCore {
  /** Optional tap for the simulator's "the relay is blind" check. */
  observe?: (event: ObservedEvent) => void;
  /** The limits in force. */
  readonly limits: Readonly<ServerLimitsInit>;
  /** The backend this core runs over. */
  readonly backend: Backend;
  readonly #clock: Clock;
  readonly #random: Random;
  /** The millisecond of the last stored message, and how many were stored in it. */
  #storedMs = -1;
  #storedInMs = 0;
  readonly #keys: ServerKeys;
  /** Seals this relay's pull tokens (derived from its encryption key). */
  readonly #tokenKey: Uint8Array;
  readonly #card: ServerCard;
  readonly #lookups: WindowLimiter;
  readonly #requests: WindowLimiter;
  /** client → its open long polls; only clients with one or more (so at most longPollsOpenMax). */
  readonly #clientPolls = new Map<string, number>();
  readonly #stats: ServerStats = {
    requests: 0,
    rejected: 0,
    stored: 0,
    delivered: 0,
    acked: 0,
    longPollsOpen: 0,
    signedPulls: 0,
    tokenPulls: 0,
    sessionRequests: 0,
  };
  /** The relay sessions this process holds (envelope/session.ts). */
  readonly sessions: RelaySessions;

  private constructor(
    options: ServerCoreOptions,
    limits: ServerLimitsInit,
    keys: ServerKeys,
  ) {
    this.backend = options.backend;
    this.#clock = options.clock;
    this.#random = options.random;
    this.#keys = keys;
    this.#tokenKey = pullTokenKey(keys.encryption.privateKey);
    this.sessions = options.sessions ?? new RelaySessions();
    this.limits = Object.freeze(limits);
    this.#lookups = new WindowLimiter({
      takesMax: limits.mailboxLookupsPerMinuteMax,
      windowMs: LOOKUP_WINDOW_MS,
      clientsMax: LOOKUP_CLIENTS_MAX,
    });
    this.#requests = new WindowLimiter({
      takesMax: limits.requestsPerSecondPerClientMax,
      windowMs: REQUEST_WINDOW_MS,
      clientsMax: REQUEST_CLIENTS_MAX,
    });
    const uid = toHex(sha256(keys.signing.publicKey).subarray(0, 16));
    this.#card = create(ServerCardSchema, {
      uid,
      name: options.name ?? "meowsync relay",
      url: options.url ?? "",
      encryptionPublicKey: keys.encryption.publicKey,
      signingPublicKey: keys.signing.publicKey,
      limits: create(ServerLimitsSchema, {
        messageBytesMax: limits.messageBytesMax,
        messagesPerRequestMax: limits.messagesPerRequestMax,
        queueLengthMax: limits.queueLengthMax,
        retentionMs: limits.retentionMs,
        longPollMsMax: limits.longPollMsMax,
        longPollsOpenMax: limits.longPollsOpenMax,
        pullRequestsMax: limits.pullRequestsMax,
        requestBytesMax: limits.requestBytesMax,
        acksPerRequestMax: limits.acksPerRequestMax,
        pullMessagesMax: limits.pullMessagesMax,
        mailboxMsMax: limits.mailboxMsMax,
        mailboxPostsMax: limits.mailboxPostsMax,
        mailboxLookupsPerMinuteMax: limits.mailboxLookupsPerMinuteMax,
        longPollsPerClientMax: limits.longPollsPerClientMax,
        requestsPerSecondPerClientMax: limits.requestsPerSecondPerClientMax,
      }),
    });
  }

  /**
   * Opens a relay over `backend`: loads its keys, or creates and persists
   * them on first start (so the uid and card survive restarts).
   *
   * @throws {RangeError} when a limit is invalid or the backend cannot honour it
   */
  static async create(options: ServerCoreOptions): Promise<ServerCore> {
    const limits = resolveLimits(options.limits);
    options.backend.checkLimits(limits);
    const encryption = generateEncryptionKeyPair(options.random);
    const signing = generateSigningKeyPair(options.random);
    const keys = await options.backend.loadOrStoreKeys({ encryption, signing });
    return new ServerCore(options, limits, keys);
  }

  /** The relay's public card (a fresh copy each call). */
  card(): ServerCard {
    return create(ServerCardSchema, {
      ...this.#card,
      limits: create(ServerLimitsSchema, { ...this.#card.limits! }),
    });
  }

  /** A snapshot of the counters since start. */
  stats(): ServerStats {
    return { ...this.#stats };
  }

  /**
   * Answers one request. Never throws: bad input gets a typed error in a
   * sealed answer, or the empty answer when nobody can be answered (see the
   * class doc). See {@linkcode HandleOptions} for `signal` and `client`.
   */
  async handle(body: Uint8Array, options: HandleOptions = {}): Promise<Uint8Array> {
    this.#stats.requests++;
    try {
      return await this.#handle(body, options);
    } catch {
      // Only a failure outside the answered steps gets here: nothing to answer under.
      this.#stats.rejected++;
      return EMPTY_ANSWER;
    }
  }

  /**
   * Drops expired messages, signatures and mailboxes; resolves with how many
   * messages went.
   */
  sweep(): Promise<number> {
    return this.backend.sweep(this.#clock.now(), this.limits.retentionMs);
  }

  async #handle(body: Uint8Array, options: HandleOptions): Promise<Uint8Array> {
    const { signal, client = "" } = options;
    if (!(body instanceof Uint8Array) || body.length > 2 * this.limits.requestBytesMax) {
      this.#stats.rejected++;
      return EMPTY_ANSWER;
    }
    // Every request counts, even one nobody can be answered on.
    const rate = client === "" ? undefined : this.#requests.take(client, this.#clock.now());
    let opened: RelayRequest;
    try {
      opened = await openRelayRequest({
        keys: this.#keys,
        body,
        sessions: this.sessions,
        nowMs: this.#clock.now(),
      });
    } catch (e) {
      this.#stats.rejected++;
      // Unknown, used, expired, forgotten or not authentic: the same clear answer, nothing done.
      if (e instanceof SessionUnknown) return SESSION_UNKNOWN_ANSWER;
      // Not an envelope, or `from` is not a usable X25519 key: no key to answer under.
      return EMPTY_ANSWER;
    }
    if (opened.answerAd) this.#stats.sessionRequests++;
    const answer = create(FromServerMessageSchema, {});
    const { answerKey, answerAd, binding } = opened;
    const reject = (code: ErrorCode, detail: string, retryAfterMs = 0) => {
      this.#stats.rejected++;
      answer.errors.push(error(code, detail, { retryAfterMs }));
      return this.#seal(answerKey, answerAd, answer);
    };
    const request = opened.request;
    const seal = (chat?: Uint8Array[]) => this.#seal(answerKey, answerAd, answer, chat);
    try {
      if (rate && !rate.ok) {
        // Before any other work: the answer key and the seal are all a client past its rate costs.
        if (request) answer.uuidAck = request.uuid;
        return await reject(
          ErrorCode.BUSY,
          `requestsPerSecondPerClientMax ${this.limits.requestsPerSecondPerClientMax} requests used; retry later`,
          rate.retryAfterMs,
        );
      }
      if (opened.plaintext) {
        this.observe?.({
          kind: "request",
          bytes: opened.plaintext,
          session: opened.answerAd !== undefined,
        });
      }
      if (!request) {
        return reject(ErrorCode.MALFORMED, `cannot open the request: ${opened.error?.message}`);
      }
      answer.uuidAck = request.uuid;
      if (body.length > this.limits.requestBytesMax) {
        return reject(
          ErrorCode.TOO_LARGE,
          `request of ${body.length} bytes exceeds requestBytesMax ${this.limits.requestBytesMax}`,
        );
      }
      const tooLarge = this.#requestTooLarge(request);
      if (tooLarge) return reject(ErrorCode.TOO_LARGE, tooLarge);
      const mailbox = request.mailbox && request.mailbox.action !== MailboxAction.UNSPECIFIED
        ? request.mailbox
        : undefined;
      if (
        mailbox && (request.messages.length > 0 || request.pullRequests.length > 0 ||
          request.acks.length > 0 || request.openSession)
      ) {
        // A mailbox step's errors are the request's: beside other parts, a client could not tell
        // from a refused step whether those were applied.
        return reject(
          ErrorCode.MALFORMED,
          "a mailbox step travels alone: this request also carries messages, pulls, acks or a " +
            "session request",
        );
      }
      if (request.openSession) {
        answer.session = this.sessions.issue(this.#clock.now(), this.#random);
      }

      if (mailbox) {
        await this.#mailbox(mailbox, { client, timeoutMs: request.timeoutMs, signal }, answer);
        return seal();
      }
      if (request.messages.length > 0) {
        const packed = encodedElements(ToServerMessageSchema, opened.plaintext!, "messages");
        await this.#store(request.messages, packed, answer);
      }
      const queues = await this.#authorise(request.pullRequests, binding, answer);
      if (queues.length > 0 && request.acks.length > 0) {
        // Awaited first: `x += await …` would read the count before other requests add to it.
        const acked = await this.backend.ackMessages(queues, request.acks);
        this.#stats.acked += acked;
      }
      if (queues.length > 0) {
        let messages = await this.#read(queues);
        // A request that stores is answered at once: a long poll would hold back the answer that
        // says its messages are stored, and one refused (BUSY) would read as a refusal of them.
        if (messages.length === 0 && request.timeoutMs > 0 && request.messages.length === 0) {
          messages = await this.#longPoll(
            {
              initial: messages,
              watch: () => this.backend.watchQueues(queues),
              read: () => this.#read(queues),
              done: (read) => read.length > 0,
            },
            { timeoutMs: request.timeoutMs, client, signal },
            answer,
          );
        }
        this.#stats.delivered += messages.length;
        // As stored: each is a PackedUserMessage the relay encoded itself.
        return seal(messages.map((m) => m.bytes));
      }
      return seal();
    } catch (e) {
      // A failing backend: tell the client to retry (stores are idempotent for the receiver).
      answer.chat = [];
      answer.mailbox = undefined;
      answer.session = undefined;
      const detail = `relay storage failed: ${describeFailure(e)}`;
      if (answer.stored === 0) return reject(ErrorCode.BUSY, detail);
      // Messages are stored: not a refusal of the whole request (which applies nothing), but of
      // its pulls, so the client does not send them again.
      for (const pull of request!.pullRequests) {
        answer.errors.push(error(ErrorCode.BUSY, detail, { lookupKey: pull.lookupKey }));
      }
      return seal();
    }
  }

  #requestTooLarge(request: ToServerMessage): string | undefined {
    const l = this.limits;
    if (request.messages.length > l.messagesPerRequestMax) {
      return `${request.messages.length} messages exceed messagesPerRequestMax ${l.messagesPerRequestMax}`;
    }
    if (request.pullRequests.length > l.pullRequestsMax) {
      return `${request.pullRequests.length} pull requests exceed pullRequestsMax ${l.pullRequestsMax}`;
    }
    if (request.acks.length > l.acksPerRequestMax) {
      return `${request.acks.length} acks exceed acksPerRequestMax ${l.acksPerRequestMax}`;
    }
    return undefined;
  }

  /** One mailbox step; its outcome goes into `answer.mailbox` or one request-scoped error. */
  async #mailbox(
    request: MailboxRequest,
    context: { client: string; timeoutMs: number; signal?: AbortSignal },
    answer: FromServerMessage,
  ): Promise<void> {
    const fail = (code: ErrorCode, detail: string, retryAfterMs = 0) =>
      void answer.errors.push(create(ServerErrorSchema, { code, detail, retryAfterMs }));
    const { action, side, post } = request;
    if (
      action !== MailboxAction.ALLOCATE && action !== MailboxAction.EXCHANGE &&
      action !== MailboxAction.CLOSE
    ) {
      return fail(ErrorCode.MALFORMED, `unknown mailbox action ${action}`);
    }
    if (side.length !== SIDE_BYTES) {
      return fail(ErrorCode.MALFORMED, `mailbox side must be ${SIDE_BYTES} bytes`);
    }
    if (post.length > this.limits.messageBytesMax) {
      return fail(
        ErrorCode.TOO_LARGE,
        `mailbox post of ${post.length} bytes exceeds messageBytesMax ${this.limits.messageBytesMax}`,
      );
    }
    if (action === MailboxAction.ALLOCATE) return await this.#allocate(request, answer);
    const nameplate = normaliseNameplate(request.nameplate);
    if (!NAMEPLATE.test(nameplate)) {
      return fail(
        ErrorCode.MALFORMED,
        `nameplate must be ${NAMEPLATE_LENGTH} characters of Crockford base32`,
      );
    }
    // Every step counts until the backend says it came from a member; then it is given back.
    const take = this.#lookups.take(context.client, this.#clock.now());
    if (!take.ok) {
      return fail(
        ErrorCode.BUSY,
        `mailboxLookupsPerMinuteMax ${this.limits.mailboxLookupsPerMinuteMax} mailbox look-ups used; retry later`,
        take.retryAfterMs,
      );
    }
    const now = this.#clock.now();
    if (action === MailboxAction.CLOSE) {
      if (!(await this.backend.closeMailbox(nameplate, side, now))) {
        return fail(ErrorCode.NOT_FOUND, NO_SUCH_MAILBOX);
      }
      this.#lookups.refund(context.client, take.window);
      answer.mailbox = create(MailboxAnswerSchema, { nameplate });
      return;
    }
    const postsMax = this.limits.mailboxPostsMax;
    const posting = post.length > 0 ? post : undefined;
    let result = await this.backend.stepMailbox(
      nameplate,
      { side, post: posting, after: request.after, postsMax },
      now,
    );
    if (!result) return fail(ErrorCode.NOT_FOUND, NO_SUCH_MAILBOX);
    if (result.member) this.#lookups.refund(context.client, take.window);
    if (result.full) {
      fail(ErrorCode.QUEUE_FULL, `mailbox holds mailboxPostsMax ${postsMax} posts`);
    } else if (posting) {
      this.observe?.({ kind: "mailbox", bytes: posting });
    }
    if (result.posts.length === 0 && context.timeoutMs > 0) {
      // This side is a member now: the poll's reads are member steps, never look-ups.
      const read = () =>
        this.backend.stepMailbox(
          nameplate,
          { side, after: request.after, postsMax },
          this.#clock.now(),
        );
      const polled: MailboxStepResult | undefined = await this.#longPoll(
        {
          initial: result,
          watch: () => this.backend.watchMailbox(nameplate),
          read,
          done: (r: MailboxStepResult | undefined) => r === undefined || r.posts.length > 0,
        },
        context,
        answer,
      );
      // Closed by the other member during the wait.
      if (!polled) return fail(ErrorCode.NOT_FOUND, NO_SUCH_MAILBOX);
      result = polled;
    }
    answer.mailbox = create(MailboxAnswerSchema, {
      nameplate,
      posts: result.posts.map((p) => create(MailboxPostSchema, { index: p.index, body: p.body })),
      expiresAt: result.expiresMs,
    });
  }

  /** ALLOCATE: a free random nameplate for a new mailbox with `side` as its first member. */
  async #allocate(request: MailboxRequest, answer: FromServerMessage): Promise<void> {
    const now = this.#clock.now();
    const max = this.limits.mailboxMsMax;
    const asked = request.expiresMs > 0 ? Math.min(request.expiresMs, max) : max;
    const expiresMs = now + Math.max(1, Math.floor(asked));
    const post = request.post.length > 0 ? request.post : undefined;
    for (let attempt = 0; attempt < NAMEPLATE_ATTEMPTS_MAX; attempt++) {
      const nameplate = Array.from(
        this.#random.bytes(NAMEPLATE_LENGTH),
        (b) => NAMEPLATE_ALPHABET[b % NAMEPLATE_ALPHABET.length],
      ).join("");
      if (
        !(await this.backend.createMailbox(nameplate, { side: request.side, post, expiresMs }, now))
      ) {
        continue;
      }
      if (post) this.observe?.({ kind: "mailbox", bytes: post });
      answer.mailbox = create(MailboxAnswerSchema, { nameplate, expiresAt: expiresMs });
      return;
    }
    answer.errors.push(error(
      ErrorCode.BUSY,
      `no free nameplate in ${NAMEPLATE_ATTEMPTS_MAX} attempts; retry later`,
    ));
  }

  /**
   * Delivery uuids for `count` messages stored at `nowMs`. A queue is read in (received ms,
   * delivery uuid) order, so the uuids of one millisecond rise with the order of storing — their
   * first eight hex digits count the messages stored in that millisecond, the rest is random —
   * and a queue is first in, first out, across requests too (a handover before the removal that
   * follows it; a conversation's record before its history). One relay process keeps that order;
   * several processes over one backend keep it per process.
   */
  #deliveryUuids(nowMs: number, count: number): string[] {
    if (nowMs !== this.#storedMs) {
      this.#storedMs = nowMs;
      this.#storedInMs = 0;
    }
    return randomUuids(this.#random, count).map((uuid) =>
      (this.#storedInMs++ >>> 0).toString(16).padStart(8, "0") + uuid.slice(8)
    );
  }

  /**
   * Stores the request's messages; `packed` holds each as its sender encoded it (the same
   * order), so the relay neither re-encodes them nor loses a byte of them.
   */
  async #store(
    messages: PackedUserMessage[],
    packed: Uint8Array[],
    answer: FromServerMessage,
  ): Promise<void> {
    const now = this.#clock.now();
    const uuids = this.#deliveryUuids(now, messages.length);
    const indexes: number[] = [];
    messages.forEach((message, i) => {
      if (!isLookupKey(message.destination)) {
        answer.errors.push(error(ErrorCode.MALFORMED, "destination is not a lookup key", {
          messageIndex: i + 1,
        }));
        return;
      }
      // The limit counts the message as its sender packed it, before the relay's own fields.
      const sent = packed[i].length;
      if (sent > this.limits.messageBytesMax) {
        answer.errors.push(error(
          ErrorCode.TOO_LARGE,
          `message of ${sent} bytes exceeds messageBytesMax ${this.limits.messageBytesMax}`,
          { messageIndex: i + 1, lookupKey: message.destination },
        ));
        return;
      }
      indexes.push(i);
    });
    if (indexes.length === 0) return;
    // The relay's fields appended to the sender's encoding: protobuf reads the two as one
    // message, and for a field set twice the last (the relay's) wins.
    const stored = withFields(
      PackedUserMessageSchema,
      indexes.map((i) => packed[i]),
      indexes.map((i) => ({ serverDeliveryUuid: uuids[i], serverReceivedMs: now })),
    );
    const batch: StoredMessage[] = indexes.map((i, j) => ({
      queue: messages[i].destination,
      deliveryUuid: uuids[i],
      receivedMs: now,
      bytes: stored[j],
    }));
    const results = await this.backend.storeMessages(batch, {
      nowMs: now,
      retentionMs: this.limits.retentionMs,
      queueLengthMax: this.limits.queueLengthMax,
    });
    results.forEach((ok, j) => {
      if (ok) {
        answer.stored++;
        this.observe?.({ kind: "stored", bytes: batch[j].bytes });
      } else {
        answer.errors.push(error(
          ErrorCode.QUEUE_FULL,
          `queue holds queueLengthMax ${this.limits.queueLengthMax} messages`,
          { messageIndex: indexes[j] + 1, lookupKey: batch[j].queue },
        ));
      }
    });
    this.#stats.stored += answer.stored;
  }

  /**
   * The queues this request proved it may read; an error for each pull that failed. A pull
   * proves its queue with a signature (an Ed25519 check; the answer then carries a pull token
   * for the queue, unless the pull revokes the queue's tokens) or with a token and its MAC (no
   * public-key operation). Either proof is good once.
   */
  async #authorise(
    pulls: ConversationRequest[],
    binding: Uint8Array,
    answer: FromServerMessage,
  ): Promise<string[]> {
    const queues: string[] = [];
    for (const pull of pulls) {
      const refuse = (code: ErrorCode, detail: string) =>
        answer.errors.push(error(code, detail, { lookupKey: pull.lookupKey }));
      const now = this.#clock.now();
      if (!isLookupKey(pull.lookupKey)) {
        refuse(ErrorCode.BAD_LOOKUP_SIGNATURE, "lookup key is not base64url of 32 bytes");
        continue;
      }
      const sentMs = Number(pull.sendTimestamp);
      if (!(Math.abs(now - sentMs) <= PULL_FRESHNESS_MS)) {
        refuse(ErrorCode.STALE, `send_timestamp is ${now - sentMs} ms from relay time`);
        continue;
      }
      // Verified first, so nobody can burn someone else's proof.
      const expiresMs = sentMs + PULL_FRESHNESS_MS + 1;
      if (pull.pullToken.length > 0) {
        const token = openTokenPull({
          serverUid: this.#card.uid,
          tokenKey: this.#tokenKey,
          pull,
          ephemeralPublicKey: binding,
        });
        if (token === undefined) {
          refuse(
            ErrorCode.BAD_LOOKUP_SIGNATURE,
            "pull token is not this relay's for this queue, or its MAC does not verify for this relay, queue, time and request",
          );
          continue;
        }
        if (token.expiresMs <= now) {
          refuse(ErrorCode.BAD_LOOKUP_SIGNATURE, "pull token has expired; sign the pull");
          continue;
        }
        const use = await this.backend.useTokenMac(toBase64Url(pull.tokenMac), expiresMs, now, {
          lookupKey: pull.lookupKey,
          issuedMs: token.issuedMs,
        });
        if (use !== "ok") {
          refuse(
            ErrorCode.BAD_LOOKUP_SIGNATURE,
            use === "revoked"
              ? "pull token was revoked; sign the pull"
              : "pull MAC was used before",
          );
          continue;
        }
        this.#stats.tokenPulls++;
      } else {
        this.#stats.signedPulls++;
        if (!(await verifyPull({ serverUid: this.#card.uid, pull, ephemeralPublicKey: binding }))) {
          refuse(
            ErrorCode.BAD_LOOKUP_SIGNATURE,
            "lookup signature does not verify for this relay, queue, time and request",
          );
          continue;
        }
        const id = toBase64Url(pull.lookupSignature);
        if (!(await this.backend.useSignature(id, expiresMs, now))) {
          refuse(ErrorCode.BAD_LOOKUP_SIGNATURE, "lookup signature was used before");
          continue;
        }
        if (pull.revokeTokens) {
          await this.backend.revokePullTokens(pull.lookupKey, now, now + PULL_TOKEN_LIFETIME_MS);
        } else {
          answer.pullTokens.push(issuePullToken({
            tokenKey: this.#tokenKey,
            lookupKey: pull.lookupKey,
            nowMs: now,
            random: this.#random,
          }));
        }
      }
      if (!queues.includes(pull.lookupKey)) queues.push(pull.lookupKey);
    }
    return queues;
  }

  #read(queues: string[]): Promise<StoredMessage[]> {
    return this.backend.readQueues(queues, {
      nowMs: this.#clock.now(),
      retentionMs: this.limits.retentionMs,
      messagesMax: this.limits.pullMessagesMax,
    });
  }

  /**
   * Waits until `read()` is `done` or the wait ends (min(timeoutMs, longPollMsMax), or `signal`):
   * watch first, then read, so nothing stored in between is missed. Resolves with the last read,
   * or `initial` when no long poll may open (BUSY: `client` holds longPollsPerClientMax, or all
   * clients longPollsOpenMax) or the signal ended it already.
   */
  async #longPoll<T>(
    poll: {
      initial: T;
      watch: () => Promise<QueueWatch>;
      read: () => Promise<T>;
      done: (read: T) => boolean;
    },
    context: { timeoutMs: number; client: string; signal?: AbortSignal },
    answer: FromServerMessage,
  ): Promise<T> {
    const { timeoutMs, client, signal } = context;
    if (signal?.aborted) return poll.initial;
    // In-process callers (no address) are held to the global count alone.
    const held = client === "" ? 0 : this.#clientPolls.get(client) ?? 0;
    if (held >= this.limits.longPollsPerClientMax) {
      answer.errors.push(error(
        ErrorCode.BUSY,
        `longPollsPerClientMax ${this.limits.longPollsPerClientMax} long polls are open from this address; retry later`,
        { retryAfterMs: BUSY_RETRY_MS },
      ));
      return poll.initial;
    }
    if (this.#stats.longPollsOpen >= this.limits.longPollsOpenMax) {
      answer.errors.push(error(
        ErrorCode.BUSY,
        `longPollsOpenMax ${this.limits.longPollsOpenMax} long polls are open; retry later`,
        { retryAfterMs: BUSY_RETRY_MS },
      ));
      return poll.initial;
    }
    this.#stats.longPollsOpen++;
    if (client !== "") this.#clientPolls.set(client, held + 1);
    const release = () => {
      this.#stats.longPollsOpen--;
      if (client === "") return;
      const left = this.#clientPolls.get(client)! - 1;
      if (left > 0) this.#clientPolls.set(client, left);
      else this.#clientPolls.delete(client);
    };
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const watch = await poll.watch().catch((e) => {
      release();
      signal?.removeEventListener("abort", onAbort);
      throw e;
    });
    try {
      // The watch is live: a store from here on fires it, so this read misses nothing.
      const first = await poll.read();
      if (poll.done(first)) return first;
      const waitMs = Math.min(timeoutMs, this.limits.longPollMsMax);
      const aborted = new Promise<void>((resolve) =>
        stop.signal.addEventListener("abort", () => resolve(), { once: true })
      );
      await Promise.race([
        watch.changed,
        this.#clock.sleep(waitMs, stop.signal).catch(() => {}),
        aborted,
      ]);
      return await poll.read();
    } finally {
      stop.abort();
      watch.close();
      signal?.removeEventListener("abort", onAbort);
      release();
    }
  }

  #seal(
    answerKey: Uint8Array,
    ad: Uint8Array | undefined,
    answer: FromServerMessage,
    chat?: Uint8Array[],
  ): Uint8Array {
    answer.serverTime = this.#clock.now();
    return sealRelayAnswer({ answerKey, answer, random: this.#random, chat, ad });
  }
}

function error(
  code: ErrorCode,
  detail: string,
  scope: { lookupKey?: string; messageIndex?: number; retryAfterMs?: number } = {},
): ServerError {
  return create(ServerErrorSchema, { code, detail, ...scope });
}

/**
 * The canonical unpadded base64url of 32 bytes: 42 characters, then one whose low two bits
 * are zero (the last character carries 4 bits of the key).
 */
const LOOKUP_KEY = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** Whether `text` is the canonical base64url of a 32-byte key. */
function isLookupKey(text: string): boolean {
  return LOOKUP_KEY.test(text);
}

/** A typed nameplate as the relay stores it: trimmed, upper case, Crockford's look-alikes mapped. */
function normaliseNameplate(text: string): string {
  return text.trim().toUpperCase().replace(/O/g, "0").replace(/[IL]/g, "1");
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What a backend's failure says: its message, else its name, else the value itself. */
function describeFailure(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

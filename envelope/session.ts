/**
 * Relay sessions: after one request in the v2 envelope (a fresh ephemeral X25519 key), later
 * requests of the same scope cost the relay one AEAD and one HMAC instead of an X25519
 * agreement, and the device no key generation.
 *
 * A v2 request with `open_session` gets a {@linkcode RelaySession} in its sealed answer: 32
 * fresh random bytes the relay drew and a lifetime. Both sides derive three keys from them
 * (HKDF-SHA-256, one label each): the request key, the answer key and the handle key. The
 * session's n-th request (n = 1, 2, …) carries, instead of `from`, its handle
 * HMAC-SHA-256(handle key, n as 4 bytes big endian) — 32 bytes nobody without the secret can
 * compute or link to another handle — and its payload under the request key with the handle as
 * associated data; the answer is under the answer key with the same associated data, so it opens
 * for that one request. The handle is also what the request's pulls sign or MAC (its binding, as
 * the ephemeral key is in v2).
 *
 * The relay keeps each session in its process's memory with the handles it will accept: the
 * {@linkcode SESSION_WINDOW} counters after the highest it took, and the skipped ones up to
 * {@linkcode SESSION_WINDOW} below it (requests of one session may arrive out of order). It takes
 * a handle only once the payload authenticates under the session's request key, then retires it:
 * the same request again, a handle it never issued, a session past its lifetime or one it forgot
 * (another process, a restart, more than `sessionsMax` sessions) all get the same clear answer,
 * `session_unknown`, with nothing done; the client then opens a new session through v2.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { deriveKey, mac, MeowError, type Random, symDecrypt, symEncrypt } from "../crypto/mod.ts";
import {
  encode,
  type PackedServerMessage,
  PackedServerMessageSchema,
  type RelaySession,
  RelaySessionSchema,
} from "../proto/mod.ts";

/** How long a relay keeps a session after issuing it, in ms. */
export const SESSION_LIFETIME_MS = 10 * 60 * 1000;
/** A client stops using a session this long before the relay would drop it, in ms. */
export const SESSION_MARGIN_MS = 60 * 1000;
/** How many counters past the highest it took (and skipped ones below it) a relay accepts. */
export const SESSION_WINDOW = 8;
/** Most sessions one relay process keeps by default; the oldest go first. */
export const SESSIONS_MAX_DEFAULT = 20_000;
/** Length of a session's secret, in bytes. */
const SESSION_SECRET_BYTES = 32;
/** Length of a request's handle (an HMAC-SHA-256 output), in bytes. */
export const SESSION_HANDLE_BYTES = 32;

/** The relay holds no session the request opens under: open a new one (nothing was done). */
export class SessionUnknown extends MeowError {
  /** @param message which relay, and what the client does next */
  constructor(message: string) {
    super("SessionUnknown", message);
  }
}

/** The three keys of one session. */
export interface SessionKeys {
  /** Seals the session's requests. */
  requestKey: Uint8Array;
  /** Seals the relay's answers to them. */
  answerKey: Uint8Array;
  /** Makes each request's handle. */
  handleKey: Uint8Array;
}

/** The keys both sides derive from a session's secret. */
export function sessionKeys(secret: Uint8Array): SessionKeys {
  return {
    requestKey: deriveKey(secret, "meowsync/relay-session/v1 request"),
    answerKey: deriveKey(secret, "meowsync/relay-session/v1 answer"),
    handleKey: deriveKey(secret, "meowsync/relay-session/v1 handle"),
  };
}

/** The handle of a session's `counter`-th request: HMAC-SHA-256(handle key, counter as u32 BE). */
export function sessionHandle(handleKey: Uint8Array, counter: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, counter);
  return mac(handleKey, bytes);
}

// ─── The device's half ───────────────────────────────────────────────────────

/**
 * A session as a device holds it: its keys, the next counter and when the device stops using
 * it (its own clock). Kept in memory only.
 */
export class ClientSession {
  #counter = 0;

  private constructor(readonly keys: SessionKeys, readonly usableUntil: number) {}

  /** The session a relay's answer carried, received at `now` (the device's clock). */
  static fromAnswer(session: RelaySession, now: number): ClientSession | undefined {
    if (session.secret.length !== SESSION_SECRET_BYTES || !(session.lifetimeMs > 0)) {
      return undefined;
    }
    return new ClientSession(
      sessionKeys(session.secret),
      now + session.lifetimeMs - SESSION_MARGIN_MS,
    );
  }

  /** Whether the device may still send in it at `now`. */
  usable(now: number): boolean {
    return now < this.usableUntil && this.#counter < 0xffff_ffff;
  }

  /** The next request's handle (the counter moves on). */
  nextHandle(): Uint8Array {
    return sessionHandle(this.keys.handleKey, ++this.#counter);
  }
}

/** The request body of a session request: the handle and the payload under the request key. */
export function sealSessionRequest(
  requestKey: Uint8Array,
  handle: Uint8Array,
  plaintext: Uint8Array,
  random: Random,
): Uint8Array {
  const payload = symEncrypt(requestKey, plaintext, random, handle);
  return encode(
    PackedServerMessageSchema,
    create(PackedServerMessageSchema, { session: handle, payload }),
  );
}

// ─── The relay's half ────────────────────────────────────────────────────────

/** One session the relay holds. */
export interface SessionEntry {
  /** The session's keys. */
  keys: SessionKeys;
  /** When the relay drops it, in its ms. */
  expiresMs: number;
  /** The highest counter taken so far (0: none). */
  highest: number;
  /** The highest counter whose handle is computed. */
  top: number;
  /** The counters whose handles are accepted, each with its handle's key in the index. */
  pending: Map<number, string>;
}

/** A request the relay could take in a session: what its answer is sealed under. */
export interface SessionRequest {
  /** The request's handle: its binding, and the associated data of both payloads. */
  handle: Uint8Array;
  /** Seals the answer (with `handle` as associated data). */
  answerKey: Uint8Array;
  /** The ToServerMessage bytes. */
  plaintext: Uint8Array;
}

/** Options for {@linkcode RelaySessions}. */
export interface RelaySessionsOptions {
  /** @default {SESSION_LIFETIME_MS} */
  lifetimeMs?: number;
  /** @default {SESSIONS_MAX_DEFAULT} */
  sessionsMax?: number;
}

/**
 * The sessions one relay process holds, in memory: issues them, and takes each request's
 * handle once. Its checks are methods a test may override to weaken one
 * (envelope/session_test.ts): {@linkcode RelaySessions.expired},
 * {@linkcode RelaySessions.keysOf}, {@linkcode RelaySessions.authenticate} and
 * {@linkcode RelaySessions.retire}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClientSession, RelaySessions, sealSessionRequest } from "./session.ts";
 * import { decode } from "../proto/mod.ts";
 * import { PackedServerMessageSchema } from "../proto/gen/meow_pb.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * const random = new SeededRandom(1);
 * const sessions = new RelaySessions();
 * const client = ClientSession.fromAnswer(sessions.issue(0, random), 0)!;
 * const handle = client.nextHandle();
 * const body = sealSessionRequest(client.keys.requestKey, handle, new Uint8Array([7]), random);
 * const envelope = decode(PackedServerMessageSchema, body);
 * assert.deepEqual(sessions.take(envelope, 1)?.plaintext, new Uint8Array([7]));
 * assert.equal(sessions.take(envelope, 2), undefined, "a handle is good once");
 * ```
 */
export class RelaySessions {
  readonly lifetimeMs: number;
  readonly sessionsMax: number;
  /** Sessions in the order they were issued (so the oldest expire and go first). */
  readonly #sessions = new Set<SessionEntry>();
  /** Accepted handles (as latin-1 strings) → their session and counter. */
  readonly #handles = new Map<string, { entry: SessionEntry; counter: number }>();

  constructor(options: RelaySessionsOptions = {}) {
    this.lifetimeMs = options.lifetimeMs ?? SESSION_LIFETIME_MS;
    this.sessionsMax = options.sessionsMax ?? SESSIONS_MAX_DEFAULT;
    if (!(this.lifetimeMs > 0) || !Number.isSafeInteger(this.sessionsMax) || this.sessionsMax < 1) {
      throw new RangeError(
        `Cannot hold relay sessions for ${this.lifetimeMs} ms, at most ${this.sessionsMax}`,
      );
    }
  }

  /** How many sessions are held. */
  get size(): number {
    return this.#sessions.size;
  }

  /** A new session at `nowMs`, for the sealed answer of the request that asked for it. */
  issue(nowMs: number, random: Random): RelaySession {
    this.#forgetExpired(nowMs);
    while (this.#sessions.size >= this.sessionsMax) {
      this.#drop(this.#sessions.values().next().value!);
    }
    const secret = random.bytes(SESSION_SECRET_BYTES);
    const entry: SessionEntry = {
      keys: sessionKeys(secret),
      expiresMs: nowMs + this.lifetimeMs,
      highest: 0,
      top: 0,
      pending: new Map(),
    };
    this.#sessions.add(entry);
    this.#extend(entry);
    return create(RelaySessionSchema, { secret, lifetimeMs: this.lifetimeMs });
  }

  /**
   * The request in `envelope` (its `session` set) when it opens under a session this relay holds
   * and its handle is one the relay accepts; the handle is then retired. `undefined` otherwise,
   * with nothing changed. Never throws.
   */
  take(envelope: PackedServerMessage, nowMs: number): SessionRequest | undefined {
    const handle = envelope.session;
    if (handle.length !== SESSION_HANDLE_BYTES) return undefined;
    const key = latin1(handle);
    const found = this.#handles.get(key);
    if (found === undefined) return undefined;
    const { entry, counter } = found;
    if (this.expired(entry, nowMs)) {
      this.#drop(entry);
      return undefined;
    }
    const keys = this.keysOf(entry);
    // Authenticated first, so nobody who saw the handle on the wire can burn it.
    const plaintext = this.authenticate(keys, envelope);
    if (plaintext === undefined) return undefined;
    this.retire(entry, counter, key);
    return { handle, answerKey: keys.answerKey, plaintext };
  }

  /** The payload opened under the session's request key, with its handle as associated data. */
  authenticate(keys: SessionKeys, envelope: PackedServerMessage): Uint8Array | undefined {
    try {
      return symDecrypt(keys.requestKey, envelope.payload, envelope.session);
    } catch {
      return undefined;
    }
  }

  /** Whether `entry` is past its lifetime at `nowMs`. */
  expired(entry: SessionEntry, nowMs: number): boolean {
    return nowMs >= entry.expiresMs;
  }

  /** The keys `entry`'s requests open under. */
  keysOf(entry: SessionEntry): SessionKeys {
    return entry.keys;
  }

  /** Takes `counter` (its handle `key`): retires it, moves the window on. */
  retire(entry: SessionEntry, counter: number, key: string): void {
    this.#handles.delete(key);
    entry.pending.delete(counter);
    if (counter > entry.highest) entry.highest = counter;
    for (const [old, oldKey] of entry.pending) {
      if (old > entry.highest - SESSION_WINDOW) continue;
      entry.pending.delete(old);
      this.#handles.delete(oldKey);
    }
    this.#extend(entry);
  }

  /** Computes the handles up to {@linkcode SESSION_WINDOW} past the highest counter taken. */
  #extend(entry: SessionEntry): void {
    while (entry.top < entry.highest + SESSION_WINDOW && entry.top < 0xffff_ffff) {
      const counter = ++entry.top;
      const key = latin1(sessionHandle(entry.keys.handleKey, counter));
      entry.pending.set(counter, key);
      this.#handles.set(key, { entry, counter });
    }
  }

  #drop(entry: SessionEntry): void {
    for (const key of entry.pending.values()) this.#handles.delete(key);
    this.#sessions.delete(entry);
  }

  /** Drops expired sessions from the oldest on (all live as long, so they expire in order). */
  #forgetExpired(nowMs: number): void {
    for (const entry of this.#sessions) {
      if (!this.expired(entry, nowMs)) return;
      this.#drop(entry);
    }
  }
}

/** The clear answer to a request no session opens (`session_unknown`). */
export const SESSION_UNKNOWN_ANSWER: Uint8Array = encode(
  PackedServerMessageSchema,
  create(PackedServerMessageSchema, { sessionUnknown: true }),
);

function latin1(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

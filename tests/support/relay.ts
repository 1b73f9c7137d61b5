/**
 * Test helpers private to server/: a clock whose time and sleeps the test
 * drives, and a device that talks to a core.
 *
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { Clock } from "../../ports/mod.ts";
import {
  generateLookupKeyPair,
  type KeyPair,
  type Random,
  randomUuid,
  toBase64Url,
} from "../../crypto/mod.ts";
import {
  type ConversationRequest,
  ErrorCode,
  type FromServerMessage,
  type PackedUserMessage,
  PackedUserMessageSchema,
  type PullToken,
  type ServerCard,
  ToServerMessageSchema,
} from "../../proto/gen/meow_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientSession,
  macPull,
  openRelayExchange,
  type RelayExchange,
  SessionUnknown,
  signPull,
} from "../../envelope/mod.ts";

interface Sleeper {
  at: number;
  resolve: () => void;
}

/** A clock that moves only when the test calls `advance`; sleeps end then. */
export class ManualClock implements Clock {
  #now: number;
  #sleepers: Sleeper[] = [];
  #onSleep: (() => void)[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  /** How many sleeps are pending. */
  get sleeping(): number {
    return this.#sleepers.length;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const sleeper: Sleeper = { at: this.#now + ms, resolve };
      this.#sleepers.push(sleeper);
      for (const wake of this.#onSleep.splice(0)) wake();
      signal?.addEventListener("abort", () => {
        this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
        reject(signal.reason);
      }, { once: true });
    });
  }

  /** Resolves when `count` sleeps are pending (at once if they are). */
  async sleepers(count = 1): Promise<void> {
    while (this.#sleepers.length < count) {
      await new Promise<void>((resolve) => this.#onSleep.push(resolve));
    }
  }

  /** Moves time forward and ends every sleep that is due. */
  advance(ms: number): void {
    this.#now += ms;
    const due = this.#sleepers.filter((s) => s.at <= this.#now);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.#now);
    for (const s of due) s.resolve();
  }
}

/**
 * A device with one lookup key, talking to one relay through `send`. Each request is one
 * {@linkcode RelayExchange}: {@linkcode TestDevice.pull} signs for the exchange of the device's
 * next request (opened on first need), which {@linkcode TestDevice.seal} or
 * {@linkcode TestDevice.request} then uses up. With `useSessions`, as the kernel's polls do, a
 * request that pulls goes in the device's relay session (the first one asks for it).
 */
export class TestDevice {
  readonly lookup: KeyPair;
  readonly queue: string;
  #stamp = 0;
  #next: Promise<RelayExchange> | undefined;
  #session: ClientSession | undefined;
  /** Whether requests that pull go in a relay session. */
  useSessions = false;

  constructor(
    readonly random: Random,
    readonly server: ServerCard,
    readonly send: (body: Uint8Array) => Promise<Uint8Array>,
    readonly now: () => number,
  ) {
    this.lookup = generateLookupKeyPair(random);
    this.queue = toBase64Url(this.lookup.publicKey);
  }

  /** The exchange the next request goes in (one that pulls, unless `pulls` is false). */
  next(pulls = true): Promise<RelayExchange> {
    if (this.#session && !this.#session.usable(this.now())) this.#session = undefined;
    const session = pulls && this.useSessions ? this.#session : undefined;
    this.#next ??= openRelayExchange({ server: this.server, random: this.random, session });
    return this.#next;
  }

  /** Forgets the device's relay session (the next request that pulls opens a new one). */
  dropSession(): void {
    this.#session = undefined;
  }

  /**
   * Seals a request (without sending it) in the next exchange, which is then used up; a
   * request without a uuid gets a random one.
   */
  async seal(
    init: MessageInitShape<typeof ToServerMessageSchema>,
  ): Promise<{ body: Uint8Array; exchange: RelayExchange }> {
    const pulls = (init.pullRequests?.length ?? 0) > 0;
    const exchange = await this.next(pulls);
    this.#next = undefined;
    const request = create(ToServerMessageSchema, init);
    request.uuid ||= randomUuid(this.random);
    if (pulls && this.useSessions && !exchange.inSession) request.openSession = true;
    return { body: exchange.seal(request), exchange };
  }

  /**
   * Sends a request and opens the answer (keeping any pull tokens and session it carries). A
   * session the relay no longer holds is dropped (the error is thrown: its pulls were bound to
   * that request).
   */
  async request(init: MessageInitShape<typeof ToServerMessageSchema>): Promise<FromServerMessage> {
    const { body, exchange } = await this.seal(init);
    try {
      return this.keepTokens(exchange.open(await this.send(body)));
    } catch (e) {
      if (e instanceof SessionUnknown) this.#session = undefined;
      throw e;
    }
  }

  /**
   * Keeps the answer's pull tokens for {@linkcode TestDevice.pull} with `useTokens`, and its
   * session for requests with `useSessions`.
   */
  keepTokens(answer: FromServerMessage): FromServerMessage {
    for (const token of answer.pullTokens) this.tokens.set(token.lookupKey, token);
    if (answer.session) this.#session = ClientSession.fromAnswer(answer.session, this.now());
    return answer;
  }

  /** Pull tokens the relay gave this device, by lookup key. */
  readonly tokens = new Map<string, PullToken>();
  /** Whether {@linkcode TestDevice.pull} presents a kept token instead of signing. */
  useTokens = false;

  /**
   * A fresh pull proof for `lookup`'s queue in the next request (a distinct timestamp each
   * call unless `now` is given): a signature, or with `useTokens` a kept token and its MAC.
   */
  async pull(lookup: KeyPair = this.lookup, now?: number): Promise<ConversationRequest> {
    const { binding: ephemeralPublicKey } = await this.next();
    // Distinct timestamps: Ed25519 is deterministic, and a signature is good once.
    const at = now ?? this.now() - 1000 + this.#stamp++;
    const token = this.useTokens ? this.tokens.get(toBase64Url(lookup.publicKey)) : undefined;
    if (token) return macPull({ server: this.server, token, now: at, ephemeralPublicKey });
    return signPull({ server: this.server, lookup, now: at, ephemeralPublicKey });
  }

  /** A packed user message for `destination` carrying `text`. */
  message(destination: string, text: string): PackedUserMessage {
    return create(PackedUserMessageSchema, {
      destination,
      payload: new TextEncoder().encode(text),
      signature: new Uint8Array(64),
    });
  }
}

/** The text of a packed message made by {@linkcode TestDevice.message}. */
export function text(message: PackedUserMessage): string {
  return new TextDecoder().decode(message.payload);
}

/**
 * `request`'s first answer that is not a refusal, asking again while it is BUSY: a relay reconnects
 * to its backend by itself, with a backoff, and until then refuses.
 */
export async function whileBusy(
  request: () => Promise<FromServerMessage>,
): Promise<FromServerMessage> {
  for (let attempt = 0;; attempt++) {
    const answer = await request();
    if (answer.errors.length === 0) return answer;
    assert.equal(answer.errors[0].code, ErrorCode.BUSY, answer.errors[0].detail);
    assert(attempt < 100, `the relay did not reconnect: ${answer.errors[0].detail}`);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the reconnection's backoff
  }
}

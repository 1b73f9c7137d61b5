/**
 * The kernel's requests to relays: one sealed exchange per request (a fresh
 * ephemeral key), the mailbox steps of a pairing with their bounded retries,
 * and each relay's health per kind of request, as reported to the observer.
 *
 * @module
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ErrorCode,
  type FromServerMessage,
  type MailboxAnswer,
  type MailboxRequestSchema,
  type OutboxEntry,
  type ServerCard,
  type ServerError,
  ToServerMessageSchema,
} from "../proto/mod.ts";
import { ClientSession, openRelayExchange, SessionUnknown } from "../envelope/mod.ts";
import { randomUuid } from "../crypto/mod.ts";
import { Malformed, NoSuchCode, RelayRefused } from "./errors.ts";
import { relayLimits } from "../envelope/mod.ts";
import type { KernelObservation, LogLevel, RelayHealth, RelayRequestKind } from "./_types.ts";
import type { Clock, Random, Transport } from "../ports/mod.ts";
import { TransportError } from "../ports/mod.ts";

/** What a request adds around its pulls, acks and messages, in bytes at most (envelope, sealing). */
export const REQUEST_OVERHEAD_BYTES = 512;
/**
 * Times a mailbox step is tried again before giving up: after a lost request,
 * or after the relay's look-up limit (BUSY with a retry time).
 */
const MAILBOX_RETRIES_MAX = 5;
/** First retry delay of a failed delivery, in ms; doubles per attempt up to `retryMsMax`. */
export const RETRY_MS_MIN = 500;
/** Most relay sessions a client keeps (one per relay and scope); the oldest go first. */
const SESSIONS_KEPT_MAX = 64;

/** The ports and settings a {@linkcode RelayClient} runs on. */
export interface RelayClientPorts {
  clock: Clock;
  random: Random;
  transport: Transport;
  observe: (observation: KernelObservation) => void;
  log: (level: LogLevel, line: string) => void;
  /** The kernel's name, in log lines. */
  name: string;
}

/** Requests to relays, and how each relay treated the last of each kind. */
export class RelayClient {
  readonly #ports: RelayClientPorts;
  /** Per `relay uid` + request kind: how the relay treated the last request. */
  readonly #relayHealth = new Map<string, RelayHealth>();
  /** Per `relay uid` + scope: the relay session requests of that scope go in (memory only). */
  readonly #sessions = new Map<string, ClientSession>();

  /** A client over `ports`. */
  constructor(ports: RelayClientPorts) {
    this.#ports = ports;
  }

  /**
   * One mailbox step of a pairing; a lost request, or the relay's look-up
   * limit, is retried a bounded number of times.
   *
   * @throws {NoSuchCode} when the relay has no such mailbox
   */
  async mailbox(
    server: ServerCard,
    init: MessageInitShape<typeof MailboxRequestSchema>,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<MailboxAnswer> {
    for (let attempt = 0;; attempt++) {
      let answer: FromServerMessage;
      try {
        answer = await this.request(server, {
          mailbox: init,
          timeoutMs: Math.min(options.timeoutMs ?? 0, relayLimits(server).longPollMsMax),
        }, { signal: options.signal });
      } catch (e) {
        // A lost request goes again: every mailbox step is safe to repeat (a repeated post is
        // skipped by the other side, a repeated claim finds this side a member).
        if (!(e instanceof TransportError) || options.signal?.aborted) throw e;
        if (attempt >= MAILBOX_RETRIES_MAX) throw e;
        this.health(server, "pairing", "unreachable", e.message);
        await this.#ports.clock.sleep(RETRY_MS_MIN * 2 ** attempt, options.signal);
        continue;
      }
      const error = answer.errors[0];
      if (!error) {
        if (!answer.mailbox) {
          throw new Malformed(
            `Cannot use relay ${server.name || server.uid}: it answered no mailbox`,
          );
        }
        this.health(server, "pairing", "ok", "");
        return answer.mailbox;
      }
      // No such mailbox is the pairing's answer, not the relay refusing this device.
      if (error.code === ErrorCode.NOT_FOUND) throw new NoSuchCode();
      const refused = this.refused(server, "pairing", error);
      // Past the relay's look-up limit: wait as long as it says, a bounded number of times.
      const busy = error.code === ErrorCode.BUSY && refused.retryAfterMs > 0;
      if (!busy || attempt >= MAILBOX_RETRIES_MAX) throw refused;
      await this.#ports.clock.sleep(refused.retryAfterMs, options.signal);
    }
  }

  /**
   * One request in its own relay exchange: `init` is the request, or builds it from the
   * exchange's binding (pulls are signed over it). Without `session`, a fresh ephemeral key
   * (v2). With `session` (a scope: requests whose content links them anyway, such as the polls
   * of one set of lookup keys), the relay session of that scope, opened by the scope's first
   * request; when the relay no longer holds it, the request goes again at once, in v2, opening
   * a new one.
   */
  async request(
    server: ServerCard,
    init:
      | MessageInitShape<typeof ToServerMessageSchema>
      | ((binding: Uint8Array) => Promise<MessageInitShape<typeof ToServerMessageSchema>>),
    options: { signal?: AbortSignal; session?: string } = {},
  ): Promise<FromServerMessage> {
    const scope = options.session === undefined ? undefined : `${server.uid} ${options.session}`;
    const now = this.#ports.clock.now();
    let session = scope === undefined ? undefined : this.#sessions.get(scope);
    if (session && !session.usable(now)) {
      this.#sessions.delete(scope!);
      session = undefined;
    }
    const exchange = await openRelayExchange({ server, random: this.#ports.random, session });
    const shape = typeof init === "function" ? await init(exchange.binding) : init;
    const request = create(ToServerMessageSchema, shape);
    request.uuid = randomUuid(this.#ports.random);
    if (scope !== undefined && !session) request.openSession = true;
    const reply = await this.#ports.transport.exchange(
      server,
      exchange.seal(request),
      options.signal,
    );
    let answer: FromServerMessage;
    try {
      answer = exchange.open(reply);
    } catch (e) {
      if (!(e instanceof SessionUnknown)) throw e;
      // Nothing was done: the same request again, in v2 (the session is gone, so no loop).
      this.#sessions.delete(scope!);
      return this.request(server, init, options);
    }
    if (scope !== undefined && answer.session) {
      const opened = ClientSession.fromAnswer(answer.session, this.#ports.clock.now());
      this.#sessions.delete(scope);
      if (opened) this.#sessions.set(scope, opened);
      if (this.#sessions.size > SESSIONS_KEPT_MAX) {
        this.#sessions.delete(this.#sessions.keys().next().value!);
      }
    }
    return answer;
  }

  /** Reports an outbox entry the relay will never take (it is removed by the caller). */
  dropped(server: ServerCard, entry: OutboxEntry, why: string): void {
    const detail = `message ${entry.messageUuid || entry.id} to ${entry.peerUid} failed: ${why}`;
    this.#ports.log("error", `${this.#ports.name} outbox ${server.name || server.uid}: ${detail}`);
    const key = `${server.uid} send`;
    const old = this.#relayHealth.get(key);
    const now = this.#ports.clock.now();
    this.#relayHealth.set(key, {
      serverUid: server.uid,
      serverName: server.name,
      request: "send",
      state: old?.state ?? "ok",
      since: old?.since ?? now,
      detail: old?.detail ?? "",
      refusals: old?.refusals ?? 0,
      dropped: (old?.dropped ?? 0) + 1,
      lastOkAt: old?.lastOkAt ?? 0,
    });
    this.#ports.observe({
      kind: "relay",
      serverUid: server.uid,
      request: "send",
      state: "dropped",
      detail,
    });
  }

  /** Records and reports a relay's refusal of a whole request; the error to surface. */
  refused(server: ServerCard, request: RelayRequestKind, error: ServerError): RelayRefused {
    const code = ErrorCode[error.code] ?? String(error.code);
    const detail = `${code} (${error.detail})`;
    this.#ports.log(
      "warn",
      `${this.#ports.name} ${request} ${
        server.name || server.uid
      }: the relay refused the request: ${detail}`,
    );
    this.health(server, request, "refused", detail);
    return new RelayRefused(
      `Relay ${server.name || server.uid} refused a ${request} request: ${detail}`,
      { relayCode: code, retryAfterMs: Number(error.retryAfterMs) },
    );
  }

  /** Moves a relay's health for one kind of request; a change is observed. */
  health(
    server: ServerCard,
    request: RelayRequestKind,
    state: RelayHealth["state"],
    detail: string,
  ): void {
    const key = `${server.uid} ${request}`;
    const now = this.#ports.clock.now();
    const old = this.#relayHealth.get(key);
    const health: RelayHealth = {
      serverUid: server.uid,
      serverName: server.name,
      request,
      state,
      since: old?.state === state ? old.since : now,
      detail,
      refusals: (old?.refusals ?? 0) + (state === "refused" ? 1 : 0),
      dropped: old?.dropped ?? 0,
      lastOkAt: state === "ok" ? now : old?.lastOkAt ?? 0,
    };
    this.#relayHealth.set(key, health);
    if (old?.state !== state) {
      this.#ports.observe({ kind: "relay", serverUid: server.uid, request, state, detail });
    }
  }

  /**
   * How each relay treated this device's last requests, per kind (`poll`,
   * `send`): whether they were accepted, refused (and why) or could not reach
   * it, and since when.
   */
  relayHealth(): RelayHealth[] {
    return [...this.#relayHealth.values()].map((h) => ({ ...h }));
  }
}

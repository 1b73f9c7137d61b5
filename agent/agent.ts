/**
 * The agent: one kernel over one home's store, with the production plugins,
 * and the operations the CLI offers. The same {@linkcode Agent} serves a
 * one-shot command (it opens the store, acts, flushes, closes) and `run`
 * (it stays online and serves the other commands through the control
 * endpoint), so a command behaves the same either way.
 *
 * **The store.** One store per home, every record sealed with the passphrase
 * key: Deno KV (`device.kv`) by default, or SQLite (`device.db`, chosen with
 * `init --store sqlite`). One store, not "Deno KV + SQLite": the store port
 * commits a ratchet step, the message it encrypted and the outbox entry that
 * carries it in ONE atomic batch, which two databases cannot do. A local Deno
 * KV file takes one writer process; the kernel lock (`agent.lock`) keeps the
 * store to one process per home anyway (other commands go through a running
 * agent's control endpoint).
 *
 * @module
 */
import { SystemRandom } from "../crypto/mod.ts";
import {
  MeowError,
  MessageTooLarge,
  NoSuchCode,
  PairingInterfered,
  RelayRefused,
} from "../kernel/mod.ts";
import { parsePairingCode, parsePairingLink } from "../kernel/mod.ts";
import type { JoinInput, PairingForm } from "../kernel/mod.ts";
import { Kernel, type LogLevel, type PairingOffer, type RelayHealth } from "../kernel/mod.ts";
import type { Plugin } from "../kernel/mod.ts";
import { type Transport, TransportError } from "../ports/mod.ts";
import { systemClock } from "../ports/mod.ts";
import { type DbMessage, type PeerRecord, PeerType, type ServerCard } from "../proto/mod.ts";
import { CHAT_API, chatPlugin } from "../plugins/chat/mod.ts";
import { dedupPlugin } from "../plugins/dedup/mod.ts";
import { DEVICE_SYNC_API, deviceSyncPlugin } from "../plugins/device_sync/mod.ts";
import { forwardRelayPlugin } from "../plugins/forward_relay/mod.ts";
import { relaysPlugin } from "../plugins/relays/mod.ts";
import { KvStore, SqliteStore, xchachaCipher } from "../plugins/storage/mod.ts";
import { HttpTransport } from "../server/mod.ts";
import { AgentError, EXIT } from "./errors.ts";
import { type HomePaths, readConfig } from "./home.ts";

/** Long-poll wait asked of the relay while the agent is online, in ms. */
export const LONG_POLL_MS = 25_000;
/** How often a wait re-checks the kernel's state, in ms. */
const WAIT_STEP_MS = 100;
/** Shortest uid prefix that names a contact (shorter ones would match by accident). */
const UID_PREFIX_CHARS_MIN = 4;

/** A message as the CLI shows it. */
export interface MessageView {
  /** The message uuid, the same on every device. */
  uuid: string;
  /** "out": this user sent it (from any of their devices); "in": the contact did. */
  direction: "in" | "out";
  /** The text. */
  text: string;
  /** When the sender sent it, in ms. */
  sentAt: number;
  /**
   * out: "forwarding" (waiting for the contact's primary device), "sent",
   * "delivered", "read", or "failed" (a relay refused it for good: see
   * `reason`); in: "unread", "read".
   */
  state: "forwarding" | "sent" | "delivered" | "read" | "unread" | "failed";
  /** Why it failed ("too large: …", "queue full: …"); only with state "failed". */
  reason?: string;
}

/** A contact as the CLI shows it. */
export interface ContactView {
  /** The conversation uid, the same on every device. */
  uid: string;
  /** The local name. */
  name: string;
  /** The device that holds the contact's ratchet ("this device" or a sibling's name). */
  primary: string;
  /** Inbound messages not marked read. */
  unread: number;
}

/** A device of this user. */
export interface DeviceView {
  /** The device's name. */
  name: string;
  /** The device uid. */
  deviceUid: string;
  /** Whether it is this device. */
  self: boolean;
}

/** What `status` shows. */
export interface StatusView {
  /** The home directory. */
  home: string;
  /** The nickname ("" until a joining device learns it). */
  nickname: string;
  /** The status line. */
  status: string;
  /** The identity uid ("" while a join is incomplete). */
  identityUid: string;
  /** This device. */
  device: DeviceView;
  /** The relays, home first. */
  servers: { name: string; url: string; uid: string }[];
  /** Every device of this user, this one first. */
  devices: DeviceView[];
  /** How many contacts. */
  contacts: number;
  /** Packed messages waiting to leave. */
  outbox: number;
  /** When the last poll completed, in ms (0: not since this process started). */
  lastPollAt: number;
  /** How each relay treated this device's polls and sends since this process started. */
  relayHealth: RelayHealth[];
  /** Sent messages a relay refused for good (marked failed on every device of this user). */
  failed: number;
  /** Received messages that could not be opened, kept in the local quarantine. */
  quarantine: {
    count: number;
    /** The newest one: when, its error and the queue it came from. */
    latest?: { at: number; errorCode: string; errorMessage: string; queue: string };
  };
  /** Whether `run` serves this home. */
  running: boolean;
}

/** A conversation, or a part of it. */
export interface ConversationView {
  /** The contact. */
  contact: ContactView;
  /** Messages, oldest first. */
  messages: MessageView[];
}

/** A pairing or invitation in progress. */
export interface TicketView {
  /** The pending peer's uid: pass it to {@linkcode Agent.waitPeer}. */
  peerUid: string;
  /** `code`: a short code to type; `link`: a `meow:` link (and a QR code). */
  form: PairingForm;
  /** The short code ("" for a link). */
  code: string;
  /** The link ("" for a code). */
  link: string;
  /** The home relay's URL (where the mailbox is). */
  server: string;
  /** When the code or link expires, in ms. */
  expiresAt: number;
}

/** A pairing or invitation that completed. */
export interface PairedView {
  uid: string;
  name: string;
  kind: "device" | "contact";
  /** The six digits both sides show, to compare. */
  safetyCode: string;
}

/** A message the running agent just stored from elsewhere. */
export interface IncomingView extends MessageView {
  /** The contact's name. */
  contact: string;
  /** "peer": from the contact; "sync": from a sibling device. */
  origin: "peer" | "sync";
}

/** Options of {@linkcode Agent.open}. */
export interface AgentOptions {
  /**
   * The way to the relays.
   * @default {new HttpTransport()}
   */
  transport?: Transport;
  /**
   * Long-poll wait while online, in ms.
   * @default {LONG_POLL_MS}
   */
  longPollMs?: number;
  /**
   * Called after the commit of every message stored from a contact or a sibling.
   * @default {none}
   */
  onMessage?: (message: IncomingView) => void;
  /**
   * Kernel log lines.
   * @default {none}
   */
  log?: (level: LogLevel, line: string) => void;
}

/**
 * A device agent over an open home.
 *
 * @example
 * ```ts ignore
 * import { Agent, homePaths } from "./mod.ts";
 * const agent = await Agent.open(homePaths("/tmp/alice"), key);
 * console.log(await agent.contacts());
 * await agent.finish();
 * ```
 */
export class Agent {
  /** The kernel. */
  readonly kernel: Kernel;
  /** The transport to the relays. */
  readonly transport: Transport;
  /** The home. */
  readonly paths: HomePaths;
  /** Whether `run` serves this agent (it stays online between commands). */
  serving = false;
  readonly #closing = new AbortController();
  /** Code exchanges under way, by pending peer: a failure ends the wait for that peer. */
  readonly #exchanges = new Map<string, Promise<void>>();
  #online = false;
  #stopRequested: (() => void) | undefined;

  private constructor(kernel: Kernel, transport: Transport, paths: HomePaths) {
    this.kernel = kernel;
    this.transport = transport;
    this.paths = paths;
  }

  /** Opens the home's store with `key` and a kernel with the production plugins. */
  static async open(
    paths: HomePaths,
    key: Uint8Array,
    options: AgentOptions = {},
  ): Promise<Agent> {
    const random = new SystemRandom();
    const cipher = xchachaCipher(key, random);
    const store = (await readConfig(paths))?.store === "kv"
      ? await KvStore.open(paths.kv, { cipher })
      : await SqliteStore.open(paths.db, { cipher });
    const transport = options.transport ?? new HttpTransport();
    const plugins: Plugin[] = [
      chatPlugin(),
      dedupPlugin(),
      deviceSyncPlugin(),
      forwardRelayPlugin(),
      relaysPlugin(),
    ];
    if (options.onMessage) plugins.push(printerPlugin(options.onMessage));
    try {
      const kernel = await Kernel.open({
        store,
        clock: systemClock,
        random,
        transport,
        plugins,
        longPollMs: options.longPollMs ?? LONG_POLL_MS,
        pollIntervalMs: 250,
        retryMsMax: 10_000,
        log: options.log,
        name: "agent",
      });
      return new Agent(kernel, transport, paths);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  // ─── Life cycle ─────────────────────────────────────────────────────────────

  /** Goes online: the kernel polls (long polls) and sends until {@linkcode Agent.finish}. */
  goOnline(): void {
    if (this.#online) return;
    this.#online = true;
    this.kernel.start();
  }

  /**
   * One catch-up round for a one-shot command: poll every relay until its
   * queues are empty, send what is due. Resolves with a warning when a relay
   * could not be reached (the command goes on with what the device has).
   */
  async catchUp(): Promise<string | undefined> {
    try {
      await this.kernel.pollOnce(this.#closing.signal);
      await this.kernel.flushOutbox(this.#closing.signal);
      return undefined;
    } catch (e) {
      if (e instanceof TransportError || e instanceof MeowError) {
        return `could not reach the relay (${e.message}); showing what this device has`;
      }
      throw e;
    }
  }

  /**
   * Goes offline, sends what is due once more, closes the store. Resolves
   * with a warning when messages are left in the outbox.
   */
  async finish(): Promise<string | undefined> {
    this.interruptWaits();
    await this.kernel.stop();
    this.#online = false;
    let warning: string | undefined;
    try {
      if (this.kernel.hasIdentity()) await this.kernel.flushOutbox();
    } catch (e) {
      if (!(e instanceof TransportError || e instanceof MeowError)) throw e;
    }
    const left = this.kernel.outboxSize();
    if (left > 0) {
      warning = `${left} message(s) wait in the outbox (relay unreachable?); ` +
        "they leave with the next command or while `run` runs";
    }
    await this.kernel.close();
    return warning;
  }

  /** Ends every wait in progress (with EXIT.interrupted): the agent is about to stop. */
  interruptWaits(): void {
    this.#closing.abort(new AgentError("the agent is stopping", EXIT.interrupted));
  }

  /** Registers what {@linkcode Agent.stop} calls (`run` stops on it). */
  onStopRequest(fn: () => void): void {
    this.#stopRequested = fn;
  }

  // ─── Operations (each also reachable through the control endpoint) ─────────

  /** Servers, devices, contacts, outbox and last poll. */
  async status(): Promise<StatusView> {
    const identity = this.#identity({ complete: false });
    let failed = 0;
    for (const peer of this.kernel.peers()) {
      for (const m of await this.kernel.messages(peer.uid)) {
        if (m.outbound && m.failedAt > 0) failed++;
      }
    }
    const quarantine = this.kernel.quarantine();
    const latest = quarantine.at(-1);
    const self: DeviceView = {
      name: identity.deviceName,
      deviceUid: identity.deviceUid,
      self: true,
    };
    return {
      home: this.paths.dir,
      nickname: identity.profile?.nickname ?? "",
      status: identity.profile?.status ?? "",
      identityUid: identity.uid,
      device: self,
      servers: identity.servers.map((s) => ({ name: s.name, url: s.url, uid: s.uid })),
      devices: [self, ...this.#siblings()],
      contacts: this.kernel.peers().length,
      outbox: this.kernel.outboxSize(),
      lastPollAt: this.kernel.lastPollAt(),
      relayHealth: this.kernel.relayHealth(),
      failed,
      quarantine: {
        count: quarantine.length,
        latest: latest && {
          at: latest.at,
          errorCode: latest.errorCode,
          errorMessage: latest.errorMessage,
          queue: latest.queue,
        },
      },
      running: this.serving,
    };
  }

  /** Every contact, by name. */
  async contacts(): Promise<ContactView[]> {
    this.#identity();
    const out: ContactView[] = [];
    for (const peer of this.kernel.peers()) out.push(await this.#contactView(peer));
    return out.sort((a, b) => a.name.localeCompare(b.name) || (a.uid < b.uid ? -1 : 1));
  }

  /** This device and its siblings. */
  devices(): Promise<DeviceView[]> {
    const identity = this.#identity({ complete: false });
    return Promise.resolve([
      { name: identity.deviceName, deviceUid: identity.deviceUid, self: true },
      ...this.#siblings(),
    ]);
  }

  /** The newest `limit` messages (all when undefined) of a conversation, oldest first. */
  async history(args: { contact: string; limit?: number }): Promise<ConversationView> {
    const peer = this.#contact(args.contact);
    const messages = await this.kernel.messages(peer.uid, { limit: args.limit });
    return { contact: await this.#contactView(peer), messages: messages.map(messageView) };
  }

  /** Marks a conversation read; resolves with the messages that were unread. */
  async read(args: { contact: string }): Promise<ConversationView> {
    const peer = this.#contact(args.contact);
    const unread = (await this.kernel.messages(peer.uid))
      .filter((m) => !m.outbound && (m.message?.status?.processed ?? 0) === 0)
      .map(messageView);
    await this.kernel.api(CHAT_API).markRead(peer.uid);
    return { contact: await this.#contactView(peer), messages: unread };
  }

  /** Sends a text to a contact; a text too large for its relay is a usage error (exit 2). */
  async send(
    args: { contact: string; text: string },
  ): Promise<{ contact: ContactView; message: MessageView }> {
    const peer = this.#contact(args.contact);
    if (args.text.trim() === "") throw new AgentError("the text is empty", EXIT.usage);
    let stored: DbMessage;
    try {
      stored = await this.kernel.api(CHAT_API).send(peer.uid, args.text);
    } catch (e) {
      if (e instanceof RangeError) throw new AgentError(e.message, EXIT.usage);
      // "message too large: N bytes, at most M": the contact's relay could never take it.
      if (e instanceof MessageTooLarge) throw new AgentError(e.message, EXIT.usage);
      throw e;
    }
    return { contact: await this.#contactView(peer), message: messageView(stored) };
  }

  /** Changes the nickname and/or status line (synced to every device). */
  async profileSet(
    args: { nickname?: string; status?: string },
  ): Promise<{ nickname: string; status: string }> {
    this.#identity();
    if (args.nickname === undefined && args.status === undefined) {
      throw new AgentError("give --nickname and/or --status", EXIT.usage);
    }
    if (args.nickname !== undefined && args.nickname.trim() === "") {
      throw new AgentError("the nickname must not be empty", EXIT.usage);
    }
    const identity = await this.kernel.updateProfile(args);
    return { nickname: identity.profile?.nickname ?? "", status: identity.profile?.status ?? "" };
  }

  /** Renames a contact (synced to every device). */
  async rename(args: { contact: string; name: string }): Promise<ContactView> {
    const peer = this.#contact(args.contact);
    if (args.name.trim() === "") throw new AgentError("the new name is empty", EXIT.usage);
    const updated = await this.kernel.updatePeer(peer.uid, { name: args.name.trim() });
    return await this.#contactView(updated);
  }

  /** Pairing, step 1: a device pairing through a mailbox on the home relay, by code or link. */
  async pairStart(args: { form: PairingForm }): Promise<TicketView> {
    this.#identity();
    return await this.#offer(
      () => this.kernel.api(DEVICE_SYNC_API).offerDevicePairing({ form: args.form }),
    );
  }

  /** Invitation, step 1: a contact invitation through a mailbox on the home relay. */
  async invite(args: { form: PairingForm }): Promise<TicketView> {
    this.#identity();
    return await this.#offer(() =>
      this.kernel.offerPairing({ type: PeerType.CONTACT, form: args.form })
    );
  }

  async #offer(start: () => Promise<PairingOffer>): Promise<TicketView> {
    const offer = await pairingErrors(start, this.kernel.identity().servers[0]?.url ?? "");
    this.#exchanges.set(offer.peerUid, offer.exchanged);
    return {
      peerUid: offer.peerUid,
      form: offer.form,
      code: offer.code,
      link: offer.link,
      server: this.kernel.identity().servers[0]?.url ?? "",
      expiresAt: offer.expiresAt,
    };
  }

  /**
   * Waits until the pending peer `peerUid` (from {@linkcode Agent.pairStart}
   * or {@linkcode Agent.invite}) is complete, polling meanwhile; a code's
   * exchange that fails (a wrong code, someone interfering, expiry) ends the
   * wait with that error.
   */
  async waitPeer(
    args: { peerUid: string; timeoutMs: number },
    signal?: AbortSignal,
  ): Promise<PairedView> {
    const done = () => this.kernel.peer(args.peerUid)?.contact !== undefined;
    const exchange = this.#exchanges.get(args.peerUid);
    const failed = exchange
      ? pairingErrors(() => exchange, "").then(() => new Promise<never>(() => {}))
      : new Promise<never>(() => {});
    await Promise.race([this.waitFor(done, { timeoutMs: args.timeoutMs, signal }), failed]);
    this.#exchanges.delete(args.peerUid);
    const peer = this.kernel.peer(args.peerUid)!;
    return {
      uid: peer.uid,
      name: peer.name,
      kind: peer.type === PeerType.DEVICE ? "device" : "contact",
      safetyCode: peer.safetyCode,
    };
  }

  /**
   * Invitation, step 2: answers a contact's invitation, given as a link or as
   * a short code on `server` (default this device's home relay).
   */
  async accept(
    args: { invitation: string; server?: string; name?: string },
  ): Promise<ContactView & { safetyCode: string }> {
    const identity = this.#identity();
    const input = await pairingInput(
      args.invitation,
      async () =>
        args.server === undefined
          ? identity.servers[0]
          : await fetchServerCard(this.transport, args.server),
    );
    const accepted = await pairingErrors(
      () =>
        this.kernel.acceptPairing(input, {
          name: identity.profile?.nickname,
          type: PeerType.CONTACT,
        }),
      "server" in input ? input.server.url : "",
    );
    if (args.name) await this.kernel.updatePeer(accepted.peerUid, { name: args.name });
    return {
      ...await this.#contactView(this.kernel.peer(accepted.peerUid)!),
      safetyCode: accepted.safetyCode,
    };
  }

  /** Asks `run` to stop (through the control endpoint). */
  stop(): Promise<{ stopping: boolean }> {
    const stop = this.#stopRequested;
    if (stop) queueMicrotask(stop);
    return Promise.resolve({ stopping: stop !== undefined });
  }

  // ─── Waiting ────────────────────────────────────────────────────────────────

  /**
   * Goes online and waits until `done()` holds, checking every 100 ms.
   *
   * @throws {AgentError} EXIT.timeout after `timeoutMs`, EXIT.interrupted when
   *   `signal` aborts or the agent stops
   */
  async waitFor(
    done: () => boolean,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<void> {
    this.goOnline();
    const signals = [this.#closing.signal, ...(options.signal ? [options.signal] : [])];
    const signal = AbortSignal.any(signals);
    const deadline = Date.now() + options.timeoutMs;
    while (!done()) {
      if (signal.aborted) throw new AgentError("interrupted while waiting", EXIT.interrupted);
      if (Date.now() >= deadline) {
        throw new AgentError(
          `no answer within ${Math.round(options.timeoutMs / 1000)} s; the pairing stays open: ` +
            "`run` (or any later command) completes it when the answer comes",
          EXIT.timeout,
        );
      }
      await systemClock.sleep(WAIT_STEP_MS, signal).catch(() => {});
    }
  }

  // ─── Helpers ────────────────────────────────────────────────────────────────

  #identity(options: { complete?: boolean } = {}) {
    if (!this.kernel.hasIdentity()) {
      throw new AgentError(
        `no identity in ${this.paths.dir} yet: run \`init\` or \`pair join\` first`,
        EXIT.noIdentity,
      );
    }
    const identity = this.kernel.identity();
    if ((options.complete ?? true) && identity.uid === "") {
      throw new AgentError(
        "this device has not finished pairing: it learns its identity when its sibling " +
          "answers (keep `run` running, or run `pair join` again later)",
        EXIT.noIdentity,
      );
    }
    return identity;
  }

  #siblings(): DeviceView[] {
    return this.kernel.devices()
      .map((d) => ({ name: d.name, deviceUid: d.deviceUid, self: false }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The contact `query` names: a name (any case), or a uid prefix of 4+ characters. */
  #contact(query: string): PeerRecord {
    this.#identity();
    const peers = this.kernel.peers();
    const q = query.trim().toLowerCase();
    let found = peers.filter((p) => p.name.toLowerCase() === q);
    if (found.length === 0 && q.length >= UID_PREFIX_CHARS_MIN) {
      found = peers.filter((p) => p.uid.toLowerCase().startsWith(q));
    }
    if (found.length === 1) return found[0];
    if (found.length > 1) {
      throw new AgentError(
        `"${query}" matches ${found.length} contacts (${
          found.map((p) => `${p.name} ${p.uid.slice(0, 8)}`).join(", ")
        }): give a longer uid prefix`,
        EXIT.unknownContact,
      );
    }
    const names = peers.map((p) => p.name).sort().join(", ");
    throw new AgentError(
      `no contact matches "${query}" (contacts: ${names || "none yet; see `invite`"})`,
      EXIT.unknownContact,
    );
  }

  async #contactView(peer: PeerRecord): Promise<ContactView> {
    const messages = await this.kernel.messages(peer.uid);
    const primaryUid = peer.primaryDeviceUid;
    const primary = primaryUid === "" || primaryUid === this.kernel.deviceUid()
      ? "this device"
      : this.kernel.devices().find((d) => d.deviceUid === primaryUid)?.name ?? primaryUid;
    return {
      uid: peer.uid,
      name: peer.name,
      primary,
      unread: messages.filter((m) => !m.outbound && (m.message?.status?.processed ?? 0) === 0)
        .length,
    };
  }
}

/** The relay card at `url`; an unreachable relay is an {@linkcode AgentError}. */
export async function fetchServerCard(transport: Transport, url: string): Promise<ServerCard> {
  if (!/^https?:\/\/[^/\s]+/.test(url)) {
    throw new AgentError(
      `the relay URL must start with http:// or https://, got "${url}"`,
      EXIT.usage,
    );
  }
  try {
    const card = await transport.fetchCard(url);
    // A relay that does not know its public URL (deploy/main.ts without MEOW_URL) publishes
    // none; the URL that just answered is the one to use.
    if (card.url === "") card.url = url.replace(/\/+$/, "");
    return card;
  } catch (e) {
    if (e instanceof TransportError) {
      throw new AgentError(`cannot reach the relay at ${url}: ${e.message}`, EXIT.unreachable);
    }
    throw e;
  }
}

/**
 * What a user typed or pasted to join a pairing: a `meow:` link, or a short
 * code on the relay `server()` names. A malformed one is an
 * {@linkcode AgentError} (exit 6) that names what is wrong.
 */
export async function pairingInput(
  text: string,
  server: () => Promise<ServerCard | undefined>,
): Promise<JoinInput> {
  const clean = text.trim();
  try {
    if (clean.toLowerCase().startsWith("meow:")) {
      parsePairingLink(clean);
      return { link: clean };
    }
    parsePairingCode(clean);
  } catch (e) {
    if (e instanceof MeowError) throw new AgentError(e.message, EXIT.badCode);
    throw e;
  }
  const relay = await server();
  if (!relay) throw new AgentError("a code needs --server <url>: the relay it is on", EXIT.usage);
  return { code: clean, server: relay };
}

/**
 * Runs a pairing step, turning its failures into one clear line: a used,
 * expired or mistyped code and a failed confirmation exit 6, an unreachable
 * relay exits 5.
 */
export async function pairingErrors<T>(step: () => Promise<T>, relayUrl: string): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (e instanceof TransportError) {
      throw new AgentError(
        `cannot reach the relay${relayUrl ? ` at ${relayUrl}` : ""}: ${e.message}`,
        EXIT.unreachable,
      );
    }
    if (e instanceof NoSuchCode || e instanceof PairingInterfered) {
      throw new AgentError(e.message, EXIT.badCode);
    }
    if (e instanceof RelayRefused) throw new AgentError(e.message, EXIT.unreachable);
    if (e instanceof MeowError) throw new AgentError(`cannot pair: ${e.message}`, EXIT.badCode);
    throw e;
  }
}

/**
 * A stored message as the CLI shows it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DbMessageSchema } from "../proto/gen/meow_pb.ts";
 * import { messageView } from "./agent.ts";
 * const m = create(DbMessageSchema, { outbound: true, message: { data: "hi", status: { uuid: "u", sent: 5, received: 6 } } });
 * assert(messageView(m).state === "delivered");
 * ```
 */
export function messageView(m: DbMessage): MessageView {
  const status = m.message?.status;
  const read = (status?.processed ?? 0) > 0;
  const state: MessageView["state"] = m.outbound
    ? m.failedAt > 0
      ? "failed"
      : m.pendingForward
      ? "forwarding"
      : read
      ? "read"
      : (status?.received ?? 0) > 0
      ? "delivered"
      : "sent"
    : read
    ? "read"
    : "unread";
  return {
    uuid: status?.uuid ?? "",
    direction: m.outbound ? "out" : "in",
    text: m.message?.data ?? "",
    sentAt: status?.sent ?? 0,
    state,
    ...(m.failedAt > 0 ? { reason: m.failedReason } : {}),
  };
}

/** Observes messages stored from a contact or a sibling and reports them after their commit. */
function printerPlugin(onMessage: (message: IncomingView) => void): Plugin {
  return {
    name: "agent_printer",
    on: {
      "message.stored"({ message, origin }, tx) {
        if (origin === "local") return;
        const contact = tx.peer(message.peerUid)?.name ?? message.peerUid.slice(0, 8);
        const view: IncomingView = { ...messageView(message), contact, origin };
        tx.afterCommit(() => onMessage(view));
      },
    },
  };
}

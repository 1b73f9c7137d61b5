/**
 * The views: what the agent shows of the kernel's records — the shapes every
 * operation resolves with (and `--json` prints as they are), how kernel
 * records become them, and their lines for text output.
 *
 * @module
 */
import type { Kernel, RelayHealth, RelayRequestKind } from "../kernel/mod.ts";
import type { PairingForm } from "../kernel/mod.ts";
import type { DbMessage, PeerRecord } from "../proto/mod.ts";
import type { CatchUpReport } from "../plugins/device_sync/mod.ts";
import { isUnread } from "../plugins/chat/mod.ts";

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
  /** What plugins say of it ("edited", "👍 them"); absent when nothing. */
  notes?: string[];
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
  /** The last catch-up this process asked the siblings for (null: none since it started). */
  catchUp: CatchUpReport | null;
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
  /** The pending peer's uid: pass it to the `waitPeer` operation. */
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

// ─── From kernel records ──────────────────────────────────────────────────────

/**
 * A stored message as the CLI shows it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DbMessageSchema } from "../proto/gen/meow_pb.ts";
 * import { messageView } from "./views.ts";
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

/** A contact as the CLI shows it: its primary device by name, its unread count. */
export async function contactView(kernel: Kernel, peer: PeerRecord): Promise<ContactView> {
  const messages = await kernel.messages(peer.uid);
  const primaryUid = kernel.primaryOf(peer);
  const primary = primaryUid === kernel.deviceUid()
    ? "this device"
    : kernel.devices().find((d) => d.deviceUid === primaryUid)?.name ?? primaryUid;
  return {
    uid: peer.uid,
    name: peer.name,
    primary,
    unread: messages.filter(isUnread).length,
  };
}

/** This device's siblings, by name. */
export function siblingViews(kernel: Kernel): DeviceView[] {
  return kernel.devices()
    .map((d) => ({ name: d.name, deviceUid: d.deviceUid, self: false }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

// ─── Text lines ───────────────────────────────────────────────────────────────

/** A time in ms as local "YYYY-MM-DD HH:MM:SS"; "-" for 0 (never). */
export function time(ms: number): string {
  return ms > 0 ? new Date(ms).toLocaleString("sv-SE") : "-";
}

/**
 * One message as a line: time, who, text and (unless `options.state` is
 * false) its state for an outbound or unread one.
 */
export function messageLine(
  contact: string,
  m: MessageView,
  options: { state: boolean } = { state: true },
): string {
  const who = m.direction === "out" ? `me → ${contact}` : contact;
  const shown = options.state && (m.direction === "out" || m.state === "unread");
  const state = !shown ? "" : m.state === "failed" ? ` [failed: ${m.reason}]` : ` [${m.state}]`;
  const notes = m.notes && m.notes.length > 0 ? `  (${m.notes.join(", ")})` : "";
  return `${time(m.sentAt)}  ${who}: ${m.text}${notes}${state}`;
}

/** What `history` prints. */
export function historyLines(view: ConversationView): string | string[] {
  return view.messages.length === 0
    ? `no messages with ${view.contact.name} yet`
    : view.messages.map((m) => messageLine(view.contact.name, m));
}

/** What `read` prints: the messages that were unread, shown read. */
export function readLines(view: ConversationView): string | string[] {
  return view.messages.length === 0
    ? `no unread messages from ${view.contact.name}`
    : view.messages.map((m) => messageLine(view.contact.name, { ...m, state: "read" }));
}

/** What `contacts` prints. */
export function contactsLines(contacts: ContactView[]): string | string[] {
  return contacts.length === 0
    ? "no contacts yet (see `invite` and `accept`)"
    : contacts.map((c) =>
      `${c.name}  ${c.uid.slice(0, 8)}  ${c.unread} unread  primary: ${c.primary}`
    );
}

/** What `devices` prints. */
export function devicesLines(devices: DeviceView[]): string[] {
  return devices.map((d) =>
    `${d.name}  ${d.deviceUid.slice(0, 8)}${d.self ? "  (this device)" : ""}`
  );
}

/** What `profile set` prints. */
export function profileLine(profile: { nickname: string; status: string }): string {
  return `profile: ${profile.nickname}${profile.status ? ` — ${profile.status}` : ""}`;
}

/** What `status` prints. */
export function statusLines(s: StatusView): string[] {
  return [
    `${s.nickname || "(identity not learned yet)"}${s.status ? ` — ${s.status}` : ""}`,
    `home:     ${s.home}${s.running ? " (agent running)" : ""}`,
    `device:   ${s.device.name} ${s.device.deviceUid.slice(0, 8)}`,
    `devices:  ${s.devices.map((d) => d.name).join(", ")}`,
    `relays:   ${s.servers.map((r) => `${r.name || "relay"} ${r.url}`).join(", ") || "none"}`,
    `contacts: ${s.contacts}`,
    `outbox:   ${s.outbox} waiting`,
    `last poll: ${time(s.lastPollAt)}`,
    ...(s.catchUp
      ? [
        `catch-up: asked ${time(s.catchUp.askedAt)} for everything since ${
          time(s.catchUp.sinceMs)
        }; ${s.catchUp.messages} message(s) from ${s.catchUp.answers} answer(s)`,
      ]
      : []),
    ...(s.failed > 0 ? [`failed:   ${s.failed} sent message(s) a relay refused for good`] : []),
    ...quarantineLine(s),
    ...relayTrouble(s),
  ];
}

/** The quarantine, when it holds anything: how many, and the newest one's error. */
function quarantineLine(s: StatusView): string[] {
  const { count, latest } = s.quarantine;
  if (count === 0 || !latest) return [];
  return [
    `quarantine: ${count} message(s) that could not be opened; latest: ${time(latest.at)} ` +
    `${latest.errorCode}: ${latest.errorMessage}`,
  ];
}

/** How lines name a relay: its name from its card, else its uid's first 8 characters. */
export function relayName(name: string, uid: string): string {
  return name || uid.slice(0, 8);
}

/** How lines name one kind of relay request, in the plural: polls, sends, pairings. */
export function requestsWord(kind: RelayRequestKind): string {
  return kind === "poll" ? "polls" : kind === "send" ? "sends" : "pairings";
}

/** One line per relay that refuses this device's requests, cannot be reached, or dropped messages. */
function relayTrouble(s: StatusView): string[] {
  const lines: string[] = [];
  for (const h of s.relayHealth) {
    const relay = relayName(h.serverName, h.serverUid);
    const what = requestsWord(h.request);
    if (h.state === "refused") {
      lines.push(`relay ${relay}: ${what} refused since ${time(h.since)}: ${h.detail}`);
    } else if (h.state === "unreachable") {
      lines.push(`relay ${relay}: unreachable since ${time(h.since)} (${what}): ${h.detail}`);
    }
    if (h.dropped > 0) {
      lines.push(`relay ${relay}: ${h.dropped} message(s) it will never take failed`);
    }
  }
  return lines;
}

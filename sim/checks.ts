/**
 * The invariant checkers: every expectation of SCENARIOS.md, each a pure
 * function of the recording and the devices' final states. A failing
 * expectation's detail names the device, the conversation and the message
 * uuid that break it.
 *
 * Longer than most files: one pure function per expectation of SCENARIOS.md, side by side so that
 * a reader compares their rules.
 *
 * @module
 */
import { concatBytes } from "../crypto/mod.ts";
import { PAD_BUCKETS_BYTES, SEAL_OVERHEAD_BYTES } from "../kernel/mod.ts";
import type { Expectation } from "./scenario_types.ts";
import type { DeviceState, MessageState } from "./state.ts";
import type { Recording, SentRecord } from "./recording.ts";

/** The result of one expectation. */
export interface ExpectationResult {
  name: string;
  ok: boolean;
  detail: string;
}

/** What the checkers read. */
export interface CheckInput {
  recording: Recording;
  states: DeviceState[];
  /** `user/device` → scheduler ms it joined its user (undefined: never). */
  pairedAt: Map<string, number | undefined>;
  /** User pair key → every conversation uid ever created between them. */
  conversationUids: Map<string, Set<string>>;
  /** Scheduler ms at the end. */
  endMs: number;
}

/** Percentiles of delivery latency over the messages `delivered_within` counts. */
export interface Latency {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

const shortUuid = (uuid: string) => uuid.slice(0, 8);

function find(state: DeviceState, peerUid: string, uuid: string): MessageState[] {
  return (state.conversations.get(peerUid) ?? []).filter((m) => m.uuid === uuid);
}

/**
 * Devices that must hold `sent`: the sender's and the recipient's, paired
 * before it was sent, or paired later with it in their history window.
 */
export function mustHold(input: CheckInput, sent: SentRecord): DeviceState[] {
  const { byUser, position } = indexOf(input);
  const from = byUser.get(sent.fromUser) ?? [];
  const to = sent.toUser === sent.fromUser ? [] : byUser.get(sent.toUser) ?? [];
  // Only the two users' devices can hold it; merged back into the order of `input.states`.
  const candidates = to.length === 0
    ? from
    : from.length === 0
    ? to
    : [...from, ...to].sort((a, b) => position.get(a)! - position.get(b)!);
  return candidates.filter((s) => holds(input, s, sent));
}

/** The states of `input` indexed (built once per input: a crowd has 10,000 devices). */
interface StateIndex {
  /** User → its devices' states, in the order of `input.states`. */
  byUser: Map<string, DeviceState[]>;
  /** Ref → state. */
  byRef: Map<string, DeviceState>;
  /** State → its position in `input.states`. */
  position: Map<DeviceState, number>;
  /** Conversation uid → the states that name a primary for it, in the order of `input.states`. */
  byConversation: Map<string, DeviceState[]>;
  /** User → the sent messages from or to it, in the order of `recording.sent`. */
  sentByUser: Map<string, SentRecord[]>;
}

const indexCache = new WeakMap<CheckInput, StateIndex>();

/** The {@linkcode StateIndex} of `input`. */
function indexOf(input: CheckInput): StateIndex {
  const cached = indexCache.get(input);
  if (cached) return cached;
  const index: StateIndex = {
    byUser: new Map(),
    byRef: new Map(),
    position: new Map(),
    byConversation: new Map(),
    sentByUser: new Map(),
  };
  const add = <K, V>(map: Map<K, V[]>, key: K, value: V) => {
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  };
  input.states.forEach((s, i) => {
    add(index.byUser, s.user, s);
    if (!index.byRef.has(s.ref)) index.byRef.set(s.ref, s);
    index.position.set(s, i);
    for (const conversation of s.primaries.keys()) add(index.byConversation, conversation, s);
  });
  for (const sent of input.recording.sent.values()) {
    add(index.sentByUser, sent.fromUser, sent);
    if (sent.toUser !== sent.fromUser) add(index.sentByUser, sent.toUser, sent);
  }
  indexCache.set(input, index);
  return index;
}

/** The states of `user`'s devices, in the order of `input.states`. */
function statesOf(input: CheckInput, user: string): DeviceState[] {
  return indexOf(input).byUser.get(user) ?? [];
}

/** Whether device `s` must hold `sent` (see {@linkcode mustHold}). */
function holds(input: CheckInput, s: DeviceState, sent: SentRecord): boolean {
  if (s.user !== sent.fromUser && s.user !== sent.toUser) return false;
  if (input.recording.removals.has(s.ref)) return false; // removed_blind looks after it
  const at = input.pairedAt.get(s.ref);
  if (at !== undefined && at <= sent.at) return true;
  return historyExpected(input).get(s.ref)?.has(sent.uuid) ?? false;
}

const expectedCache = new WeakMap<CheckInput, Map<string, Map<string, string>>>();

/**
 * Per device paired with history: message uuid → conversation uid of every
 * message its pairing device held within the window when they paired (per
 * conversation, active since the window's start, the newest `messagesMax`).
 * Worked out from the pairing device's rows alone, not from what was sent.
 */
export function historyExpected(input: CheckInput): Map<string, Map<string, string>> {
  const cached = expectedCache.get(input);
  if (cached) return cached;
  const expected = new Map<string, Map<string, string>>();
  for (const pairing of input.recording.pairings.values()) {
    if (!pairing.held || pairing.atMs === undefined) continue;
    const { windowMs, messagesMax } = pairing.window;
    const since = windowMs === undefined ? -Infinity : pairing.atMs - windowMs;
    const mine = expected.get(pairing.newcomer) ?? new Map<string, string>();
    for (const [conversation, rows] of pairing.held) {
      const recent = rows.filter((row) => row.uuid !== "" && row.activeMs >= since);
      for (const row of messagesMax > 0 ? recent.slice(-messagesMax) : []) {
        mine.set(row.uuid, conversation);
      }
    }
    expected.set(pairing.newcomer, mine);
  }
  expectedCache.set(input, expected);
  return expected;
}

/**
 * removed_blind: a device removed from its user's devices stores nothing
 * sent after its removal completed — once every remaining sibling applied
 * it (the remover at once, the others when its `device_remove` came in).
 */
function removedBlind(input: CheckInput): ExpectationResult {
  const { removals, removalSeen, sent } = input.recording;
  for (const [ref, removal] of removals) {
    const user = ref.slice(0, ref.indexOf("/"));
    const seen = removalSeen.get(removal.deviceUid) ?? new Map<string, number>();
    let completedAt = removal.atMs;
    for (const s of input.states) {
      if (s.user !== user || s.ref === ref || removals.has(s.ref) || !s.paired) continue;
      const at = seen.get(s.ref);
      // The remover applied it in the step itself; a retiring device told everyone.
      if (at === undefined && !isRemover(input, s.ref, removal.atMs)) {
        return fail("removed_blind", `${s.ref} never applied the removal of ${ref}`);
      }
      completedAt = Math.max(completedAt, at ?? removal.atMs);
    }
    const state = input.states.find((s) => s.ref === ref);
    const arrivals = input.recording.arrivals;
    for (const record of sent.values()) {
      if (record.at < completedAt || (record.fromUser !== user && record.toUser !== user)) continue;
      if (record.from === ref) continue;
      const at = arrivals.get(record.uuid)?.get(ref);
      if (at !== undefined || (state && find(state, record.peerUid, record.uuid).length > 0)) {
        return fail(
          "removed_blind",
          `${ref}, removed at ${removal.atMs} ms (completed at ${completedAt} ms), holds message ` +
            `${record.uuid} sent by ${record.from} at ${record.at} ms`,
        );
      }
    }
  }
  // Its keys are worth nothing to a contact: every conversation it held moved to new keys.
  for (const ref of removals.keys()) {
    const user = ref.slice(0, ref.indexOf("/"));
    const held = input.states.find((s) => s.ref === ref && !input.recording.lost.has(ref))
      ?.sessions ?? input.recording.lostSessions.get(ref) ?? new Map();
    for (const [conversation, keys] of held) {
      for (const t of input.states) {
        if (t.user === user || removals.has(t.ref) || input.recording.lost.has(t.ref)) continue;
        if (t.sessions.get(conversation)?.contactIdentity === keys.myIdentity) {
          return fail(
            "removed_blind",
            `${t.ref} still accepts the identity key ${
              keys.myIdentity.slice(0, 8)
            }… that removed ${ref} holds for conversation ${conversation}`,
          );
        }
      }
    }
  }
  return pass("removed_blind", `${removals.size} device(s) removed`);
}

/**
 * reachable: at the end, every contact of every user has its primary among
 * the user's remaining devices (not lost, not removed), as each of them sees it.
 */
function reachable(input: CheckInput): ExpectationResult {
  const { removals, lost } = input.recording;
  let contacts = 0;
  for (const s of input.states) {
    if (!s.paired || removals.has(s.ref) || lost.has(s.ref)) continue;
    const remaining = new Map(
      statesOf(input, s.user).filter((t) => t.paired && !removals.has(t.ref) && !lost.has(t.ref))
        .map((t) => [t.deviceUid, t.ref]),
    );
    for (const [contact, primary] of s.primaries) {
      contacts++;
      if (!remaining.has(primary)) {
        return fail(
          "reachable",
          `${s.ref} takes device ${
            primary.slice(0, 8)
          } for the primary of conversation ${contact}, ` +
            `which is not among ${s.user}'s remaining devices (${
              [...remaining.values()].join(", ")
            })`,
        );
      }
    }
  }
  // And a message sent now would reach the contact: the primary holds the session, and the
  // contact's primary holds the same keys for it as it holds for the contact.
  const gone = (ref: string) => removals.has(ref) || lost.has(ref);
  for (const p of input.states) {
    if (!p.paired || gone(p.ref)) continue;
    for (const [conversation, primary] of p.primaries) {
      if (primary !== p.deviceUid) continue;
      const mine = p.sessions.get(conversation);
      if (!mine?.ratchet) {
        return fail(
          "reachable",
          `${p.ref} is primary of conversation ${conversation} but holds no session`,
        );
      }
      const other = (indexOf(input).byConversation.get(conversation) ?? []).find((q) =>
        q.user !== p.user && !gone(q.ref) && q.primaries.get(conversation) === q.deviceUid &&
        q.sessions.has(conversation)
      );
      const theirs = other?.sessions.get(conversation);
      if (
        other && theirs &&
        (theirs.contactIdentity !== mine.myIdentity || theirs.contactLookup !== mine.myLookup ||
          mine.contactLookup !== theirs.myLookup)
      ) {
        return fail(
          "reachable",
          `${p.ref} and ${other.ref} hold different keys for conversation ${conversation}: ` +
            `what one sends the other cannot open`,
        );
      }
    }
  }
  return pass("reachable", `${contacts} contact record(s) with a remaining primary`);
}

/** Whether `ref` removed a device at `atMs` itself (a remove step's `by`, recorded by the step). */
function isRemover(input: CheckInput, ref: string, atMs: number): boolean {
  return input.recording.removers.get(ref)?.includes(atMs) ?? false;
}

/**
 * history: every device paired with history holds, per conversation, the
 * messages its pairing device held within the window when they paired.
 */
function history(input: CheckInput): ExpectationResult {
  const expected = historyExpected(input);
  let count = 0;
  for (const [ref, uuids] of expected) {
    const state = indexOf(input).byRef.get(ref);
    if (!state) continue;
    for (const [uuid, conversation] of uuids) {
      count++;
      if (find(state, conversation, uuid).length === 0) {
        return fail(
          "history",
          `${ref} lacks message ${uuid} of conversation ${conversation} from its history window`,
        );
      }
    }
  }
  const paired = [...input.recording.pairings.values()].filter((p) => p.held).length;
  return pass("history", `${count} message(s) of history on ${paired} paired device(s)`);
}

function fail(name: string, detail: string): ExpectationResult {
  return { name, ok: false, detail };
}

function pass(name: string, detail = ""): ExpectationResult {
  return { name, ok: true, detail };
}

function converged(input: CheckInput): ExpectationResult {
  const byUser = new Map<string, DeviceState[]>();
  for (const s of input.states) {
    if (s.paired && !input.recording.removals.has(s.ref)) {
      byUser.set(s.user, [...(byUser.get(s.user) ?? []), s]);
    }
  }
  for (const [user, states] of byUser) {
    for (let i = 1; i < states.length; i++) {
      const a = states[0];
      const b = states[i];
      if (JSON.stringify(a.contacts) !== JSON.stringify(b.contacts)) {
        const diff = a.contacts.find((c) =>
          JSON.stringify(c) !== JSON.stringify(b.contacts.find((d) =>
            d.uid === c.uid
          ))
        ) ??
          b.contacts.find((c) => !a.contacts.some((d) => d.uid === c.uid));
        return fail(
          "converged",
          `${user}: ${a.ref} and ${b.ref} hold different contacts (conversation ${
            diff?.uid ?? "?"
          }: ${JSON.stringify(a.contacts.find((c) => c.uid === diff?.uid))} vs ${
            JSON.stringify(b.contacts.find((c) => c.uid === diff?.uid))
          })`,
        );
      }
      if (JSON.stringify(a.profile) !== JSON.stringify(b.profile)) {
        return fail(
          "converged",
          `${user}: ${a.ref} and ${b.ref} show different profiles (${
            JSON.stringify(a.profile)
          } vs ${JSON.stringify(b.profile)})`,
        );
      }
      if (a.servers.join() !== b.servers.join()) {
        return fail(
          "converged",
          `${user}: ${a.ref} and ${b.ref} list different relays (${a.servers} vs ${b.servers})`,
        );
      }
      for (const sent of indexOf(input).sentByUser.get(user) ?? []) {
        if (!holds(input, a, sent) || !holds(input, b, sent)) continue;
        const x = find(a, sent.peerUid, sent.uuid)[0];
        const y = find(b, sent.peerUid, sent.uuid)[0];
        const where = `conversation ${sent.peerUid}, message ${sent.uuid}`;
        if (!x || !y) {
          return fail(
            "converged",
            `${user}: ${x ? b.ref : a.ref} lacks ${where} that ${x ? a.ref : b.ref} holds${
              !x && !y ? " (neither holds it)" : ""
            }`,
          );
        }
        const show = (m: MessageState) =>
          JSON.stringify([
            m.outbound,
            m.text,
            m.sent,
            m.received,
            m.processed,
            m.pendingForward,
            m.failedReason,
          ]);
        if (show(x) !== show(y)) {
          return fail(
            "converged",
            `${user}: ${where} differs: ${a.ref} ${show(x)} vs ${b.ref} ${show(y)}`,
          );
        }
      }
    }
  }
  return pass("converged");
}

function noDuplicates(input: CheckInput): ExpectationResult {
  const textsByConversation = new Map<string, Map<string, string>>();
  for (const sent of input.recording.sent.values()) {
    const texts = textsByConversation.get(sent.peerUid) ?? new Map<string, string>();
    texts.set(`${sent.fromUser}\u0000${sent.text}`, sent.uuid);
    textsByConversation.set(sent.peerUid, texts);
  }
  for (const s of input.states) {
    for (const [peerUid, messages] of s.conversations) {
      const seen = new Set<string>();
      for (const m of messages) {
        if (seen.has(m.uuid)) {
          return fail(
            "no_duplicates",
            `${s.ref} holds message ${m.uuid} twice in conversation ${peerUid}`,
          );
        }
        seen.add(m.uuid);
        if (m.type !== "chat" || input.recording.sent.has(m.uuid)) continue;
        const author = m.outbound ? s.user : otherUser(input, peerUid, s.user);
        const original = textsByConversation.get(peerUid)?.get(`${author}\u0000${m.text}`);
        if (original) {
          return fail(
            "no_duplicates",
            `${s.ref} holds a second copy (uuid ${m.uuid}) of message ${original} in conversation ${peerUid}`,
          );
        }
      }
    }
  }
  return pass("no_duplicates");
}

function otherUser(input: CheckInput, peerUid: string, user: string): string {
  for (const [key, uids] of input.conversationUids) {
    if (!uids.has(peerUid)) continue;
    const [a, b] = key.split("|");
    return a === user ? b : a;
  }
  return "";
}

/**
 * no_loss: every device that must hold a sent message holds it, unless it
 * failed for good (a relay refused it) on every device of its sender that
 * holds it: accounted for, not lost (relay_clean reports it).
 */
function noLoss(input: CheckInput): ExpectationResult {
  let failed = 0;
  for (const sent of input.recording.sent.values()) {
    const holders = mustHold(input, sent);
    const senders = holders.filter((s) => s.user === sent.fromUser);
    const copies = senders.map((s) => find(s, sent.peerUid, sent.uuid)[0]);
    if (copies.length > 0 && copies.every((m) => m !== undefined && m.failedReason !== "")) {
      failed++;
      continue;
    }
    for (const s of holders) {
      if (find(s, sent.peerUid, sent.uuid).length === 0) {
        return fail(
          "no_loss",
          `${s.ref} lacks message ${sent.uuid} ("${sent.text}") sent by ${sent.from} in conversation ${sent.peerUid}${
            quarantinedCopy(input, sent.uuid)
          }`,
        );
      }
    }
  }
  return pass(
    "no_loss",
    failed > 0 ? `${failed} message(s) failed for good, on every device of their sender` : "",
  );
}

/** Where a copy of message `uuid` sits in a quarantine, as a clause of a detail ("" if nowhere). */
function quarantinedCopy(input: CheckInput, uuid: string): string {
  const signatures = input.recording.packedSignatures.get(uuid);
  if (!signatures) return "";
  for (const s of input.states) {
    const q = s.quarantine.find((q) => signatures.has(q.signature));
    if (q) return `; a copy sits in the quarantine of ${s.ref} (${q.errorCode}, delivery ${q.id})`;
  }
  return "";
}

function contactsBlind(input: CheckInput): ExpectationResult {
  for (const [key, uids] of input.conversationUids) {
    if (uids.size > 1) {
      return fail(
        "contacts_blind",
        `users ${key.replace("|", " and ")} hold ${uids.size} conversations with each other (${
          [...uids].map(shortUuid).join(", ")
        }): one per device shows`,
      );
    }
  }
  // New keys come only with a removal (a reset or rekey): a contact sees one identity key per
  // conversation, plus one for each device the other side removed — never one per device.
  const removed = new Map<string, number>();
  for (const ref of input.recording.removals.keys()) {
    const user = ref.slice(0, ref.indexOf("/"));
    removed.set(user, (removed.get(user) ?? 0) + 1);
  }
  const otherUser = new Map<string, string[]>();
  for (const [key, uids] of input.conversationUids) {
    for (const uid of uids) otherUser.set(uid, key.split("|"));
  }
  const keys = new Map<string, Set<string>>();
  for (const inbound of input.recording.contactInbound) {
    const receiver = inbound.device.split("/")[0];
    const id = `${receiver}\u0000${inbound.peerUid}`;
    const set = keys.get(id) ?? new Set<string>();
    set.add(inbound.identityKey);
    keys.set(id, set);
    const other = (otherUser.get(inbound.peerUid) ?? []).find((u) => u !== receiver) ?? "";
    const allowed = 1 + (removed.get(other) ?? 0);
    if (set.size > allowed) {
      return fail(
        "contacts_blind",
        `${inbound.device} received conversation ${inbound.peerUid} under ${set.size} identity keys` +
          ` (${other || "its contact"} removed ${allowed - 1} device(s))`,
      );
    }
  }
  for (const s of input.states) {
    const ownDevices = statesOf(input, s.user).filter((t) => t.paired).length;
    if (s.paired && s.deviceCount > Math.max(0, ownDevices - 1)) {
      return fail(
        "contacts_blind",
        `${s.ref} holds ${s.deviceCount} device records but its user has ${ownDevices} devices`,
      );
    }
  }
  return pass("contacts_blind");
}

/** The largest total variation distance traffic_blind allows between sync and contact sizes. */
const TRAFFIC_TVD_MAX = 0.02;
/** The window traffic_blind compares at each offset of one session's payloads, in bytes. */
const TRAFFIC_WINDOW_BYTES = 8;

/**
 * traffic_blind: every stored payload has a bucket size; device-sync and
 * contact messages have the same bucket distribution; and nothing in one
 * ratchet session's stored messages is constant but their destination.
 */
function trafficBlind(input: CheckInput): ExpectationResult {
  const { stored, kindOf, sessionOf } = input.recording.traffic;
  const counts = { device: new Map<number, number>(), contact: new Map<number, number>() };
  const sessions = new Map<string, Map<string, Uint8Array>>();
  for (const message of stored) {
    const bucket = message.payload.length - SEAL_OVERHEAD_BYTES;
    if (!PAD_BUCKETS_BYTES.includes(bucket)) {
      return fail(
        "traffic_blind",
        `relay ${message.relay} stored a ${message.payload.length}-byte payload: ${bucket} bytes sealed is no bucket size`,
      );
    }
    const kind = kindOf.get(message.signature);
    if (kind) counts[kind].set(bucket, (counts[kind].get(bucket) ?? 0) + 1);
    const session = sessionOf.get(message.signature);
    if (session === undefined) continue;
    const messages = sessions.get(session) ?? new Map<string, Uint8Array>();
    // A message stored twice (a retried send) is one message: keyed by its signature.
    messages.set(message.signature, concatBytes(fromHex(message.signature), message.payload));
    sessions.set(session, messages);
  }
  const total = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  const [devices, contacts] = [total(counts.device), total(counts.contact)];
  if (devices > 0 && contacts > 0) {
    let tvd = 0;
    for (const bucket of PAD_BUCKETS_BYTES) {
      tvd += Math.abs(
        (counts.device.get(bucket) ?? 0) / devices - (counts.contact.get(bucket) ?? 0) / contacts,
      );
    }
    tvd /= 2;
    if (tvd > TRAFFIC_TVD_MAX) {
      return fail(
        "traffic_blind",
        `device-sync and contact sizes differ: total variation distance ${
          tvd.toFixed(3)
        } > ${TRAFFIC_TVD_MAX} ` +
          `over ${devices} sync and ${contacts} contact messages`,
      );
    }
  }
  for (const [session, messages] of sessions) {
    const offset = constantWindow([...messages.values()]);
    if (offset >= 0) {
      return fail(
        "traffic_blind",
        `the ${messages.size} stored messages of ratchet session ${session.slice(0, 12)}… repeat ` +
          `${TRAFFIC_WINDOW_BYTES} bytes at offset ${offset} of signature ‖ payload`,
      );
    }
  }
  return pass("traffic_blind");
}

/** The first offset where every one of `all` (2 or more) holds the same window of bytes, or -1. */
function constantWindow(all: Uint8Array[]): number {
  if (all.length < 2) return -1;
  const length = Math.min(...all.map((b) => b.length));
  for (let offset = 0; offset + TRAFFIC_WINDOW_BYTES <= length; offset++) {
    const first = all[0];
    const same = all.every((b) => {
      for (let i = offset; i < offset + TRAFFIC_WINDOW_BYTES; i++) {
        if (b[i] !== first[i]) return false;
      }
      return true;
    });
    if (same) return offset;
  }
  return -1;
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => Number.parseInt(h, 16));
}

function forwarded(input: CheckInput): ExpectationResult {
  for (const sent of input.recording.sent.values()) {
    if (sent.fromPrimary) continue;
    const recipients = statesOf(input, sent.toUser);
    const holders = recipients.filter((s) => find(s, sent.peerUid, sent.uuid).length > 0);
    if (holders.length === 0) {
      return fail(
        "forwarded",
        `message ${sent.uuid} sent from non-primary ${sent.from} never reached ${sent.toUser}`,
      );
    }
    for (
      const s of statesOf(input, sent.fromUser).filter((t) =>
        t.paired && !input.recording.removals.has(t.ref)
      )
    ) {
      const copies = find(s, sent.peerUid, sent.uuid);
      if (copies.length !== 1) {
        return fail(
          "forwarded",
          `${s.ref} holds ${copies.length} copies of forwarded message ${sent.uuid} in conversation ${sent.peerUid}`,
        );
      }
      if (copies[0].pendingForward) {
        return fail(
          "forwarded",
          `${s.ref} still shows message ${sent.uuid} (conversation ${sent.peerUid}) as pending_forward, not sent`,
        );
      }
    }
  }
  return pass("forwarded");
}

/**
 * decrypt_clean: no device rejected a message that was not deliberately
 * tampered with (a copy the network corrupted on purpose is expected to be
 * rejected and quarantined). The detail says how many were quarantined where.
 */
function decryptClean(input: CheckInput): ExpectationResult {
  const all = input.recording.rejections;
  // A session reset signed with a key a removal retired: a removed device trying its old keys,
  // refused as it must be (removed_blind looks after the keys themselves).
  const refusedRemoved = (r: { code: string }) =>
    r.code === "RetiredKey" && input.recording.removals.size > 0;
  const retired = all.filter(refusedRemoved).length;
  const real = all.filter((r) => !r.deliberate && !refusedRemoved(r));
  const byDevice = new Map<string, number>();
  for (const r of all) if (r.quarantined) byDevice.set(r.device, (byDevice.get(r.device) ?? 0) + 1);
  const where = [...byDevice].map(([device, n]) => `${device} ${n}`).join(", ");
  const deliberate = all.filter((r) => r.deliberate).length;
  const quarantined = byDevice.size === 0
    ? "none quarantined"
    : `quarantined: ${where}` + (deliberate > 0 ? ` (${deliberate} deliberately corrupted)` : "");
  const first = real[0];
  if (first) {
    return fail(
      "decrypt_clean",
      `${real.length} rejected message(s) not deliberately tampered with; first on ${first.device}: ${first.code}: ${first.detail}; ${quarantined}`,
    );
  }
  const refusedNote = retired > 0
    ? `${retired} reset(s) signed with a removed device's retired key refused; `
    : "";
  return pass("decrypt_clean", byDevice.size === 0 ? "" : refusedNote + quarantined);
}

/**
 * relay_clean: no device ended the run refused by a relay (every refusal was
 * followed by an accepted request of the same kind), and no relay refused a
 * message for good.
 */
function relayClean(input: CheckInput): ExpectationResult {
  const last = new Map<string, { state: string; detail: string; at: number }>();
  let dropped: { device: string; relay: string; detail: string } | undefined;
  for (const e of input.recording.relayEvents) {
    if (e.state === "dropped") {
      dropped ??= e;
      continue;
    }
    last.set(`${e.device} ${e.relay} ${e.request}`, e);
  }
  if (dropped) {
    return fail(
      "relay_clean",
      `relay ${dropped.relay} refused for good: ${dropped.device}: ${dropped.detail}`,
    );
  }
  for (const [key, e] of last) {
    if (e.state !== "refused") continue;
    const [device, relay, request] = key.split(" ");
    return fail(
      "relay_clean",
      `${device} was still refused by relay ${relay} at the end (${request} requests, since ${e.at} ms): ${e.detail}`,
    );
  }
  return pass("relay_clean");
}

/**
 * pairings_authentic: no device holds a peer whose card carries a key a
 * hostile relay made: every pairing completed between the real parties (or
 * failed, visibly, as a refused step).
 */
function pairingsAuthentic(input: CheckInput): ExpectationResult {
  const made = input.recording.adversaryKeys;
  for (const state of input.states) {
    const key = state.peerKeys.find((k) => made.has(k));
    if (key) {
      return fail(
        "pairings_authentic",
        `${state.ref} holds a peer with a key the relay made (${
          key.slice(0, 16)
        }…): it paired with the relay`,
      );
    }
  }
  return pass("pairings_authentic");
}

/** Delivery latency of each message delivered while every device involved was up. */
export function latency(input: CheckInput, to: "all" | "online" = "all"): Latency {
  const samples: number[] = [];
  const downWithin = (ref: string, from: number, until: number) =>
    (input.recording.downtime.get(ref) ?? []).some(([a, b]) => a < until && b > from);
  for (const sent of input.recording.sent.values()) {
    const arrivals = input.recording.arrivals.get(sent.uuid);
    // Delivery latency: the devices paired when it was sent; a copy that came as history is not a delivery.
    let holders = mustHold(input, sent).filter((s) => {
      const at = input.pairedAt.get(s.ref);
      return at !== undefined && at <= sent.at;
    });
    if (!arrivals) continue;
    if (to === "online") {
      // Only the devices that stayed online from the send to its arrival there (or to the end);
      // it counts once one of them is the recipient's.
      holders = holders.filter((s) =>
        !downWithin(s.ref, sent.at, arrivals.get(s.ref) ?? input.endMs)
      );
      if (!holders.some((s) => s.ref.slice(0, s.ref.indexOf("/")) === sent.toUser)) continue;
    }
    if (holders.length === 0) continue;
    let last = sent.at;
    let complete = true;
    for (const s of holders) {
      const at = arrivals.get(s.ref);
      if (at === undefined) complete = false;
      else last = Math.max(last, at);
    }
    if (!complete) continue;
    const down = holders.some((s) =>
      (input.recording.downtime.get(s.ref) ?? []).some(([from, to]) => from < last && to > sent.at)
    );
    if (!down) samples.push(last - sent.at);
  }
  samples.sort((a, b) => a - b);
  const pick = (p: number) =>
    samples.length === 0
      ? 0
      : samples[Math.min(samples.length - 1, Math.ceil(p * samples.length) - 1)];
  return { p50: pick(0.5), p99: pick(0.99), max: samples.at(-1) ?? 0, count: samples.length };
}

/** Runs one expectation. */
export function check(expectation: Expectation, input: CheckInput): ExpectationResult {
  switch (expectation.name) {
    case "converged":
      return converged(input);
    case "no_duplicates":
      return noDuplicates(input);
    case "no_loss":
      return noLoss(input);
    case "history":
      return history(input);
    case "removed_blind":
      return removedBlind(input);
    case "reachable":
      return reachable(input);
    case "contacts_blind":
      return contactsBlind(input);
    case "root_key_private": {
      const leak = input.recording.rootLeaks[0];
      return leak
        ? fail(
          "root_key_private",
          `${leak.device} sent its identity root private key (${leak.where}); ${input.recording.rootLeaks.length} time(s)`,
        )
        : pass("root_key_private");
    }
    case "server_blind": {
      const leak = input.recording.serverLeaks[0];
      return leak
        ? fail(
          "server_blind",
          `relay ${leak.relay} saw the text "${leak.text}" in the clear; ${input.recording.serverLeaks.length} time(s)`,
        )
        : pass("server_blind");
    }
    case "forwarded":
      return forwarded(input);
    case "decrypt_clean":
      return decryptClean(input);
    case "relay_clean":
      return relayClean(input);
    case "pairings_authentic":
      return pairingsAuthentic(input);
    case "traffic_blind":
      return trafficBlind(input);
    case "delivered_within": {
      const l = latency(input, expectation.to);
      const name = "delivered_within";
      if (expectation.p50Ms !== undefined && l.p50 > expectation.p50Ms) {
        return fail(
          name,
          `p50 latency ${l.p50} ms exceeds ${expectation.p50Ms} ms over ${l.count} messages`,
        );
      }
      if (expectation.p99Ms !== undefined && l.p99 > expectation.p99Ms) {
        return fail(
          name,
          `p99 latency ${l.p99} ms exceeds ${expectation.p99Ms} ms over ${l.count} messages`,
        );
      }
      return pass(name, `p50 ${l.p50} ms, p99 ${l.p99} ms over ${l.count} messages`);
    }
    case "plugin":
      throw new TypeError(
        `${expectation.expectation} is a plugin's expectation: runScenario checks it over the stores`,
      );
    case "refused":
      return refused(input, expectation.steps);
    case "count": {
      const n = input.recording.sent.size;
      return n === expectation.messages
        ? pass("count")
        : fail("count", `${n} distinct messages were sent, expected ${expectation.messages}`);
    }
  }
}

/**
 * refused: the devices refused exactly `steps` of the steps without `may_fail` (chatter sends
 * included) — none unless the scenario says `{ refused: N }`, so a step that did nothing (a send
 * before its pairing, from a crashed device) cannot pass unseen.
 */
function refused(input: CheckInput, steps: number): ExpectationResult {
  const all = input.recording.refused;
  const counted = all.filter((r) => !r.mayFail);
  const allowed = all.length - counted.length;
  const note = allowed > 0 ? `; ${allowed} more with may_fail` : "";
  if (counted.length === steps) {
    return pass("refused", counted.length === 0 && allowed === 0 ? "" : `${counted.length}${note}`);
  }
  const listed = counted.slice(0, 3).map((r) =>
    `${r.step} at ${(r.at / 1000).toFixed(1)} s: ${r.error}`
  ).join("; ");
  return fail(
    "refused",
    `${counted.length} step(s) refused, expected ${steps}${note}${listed ? `: ${listed}` : ""}` +
      (counted.length > 3 ? "; …" : "") +
      (steps === 0 ? " (mark a step may_fail: true, or expect { refused: N })" : ""),
  );
}

/**
 * The operation table: every operation the CLI offers on an open home — its
 * name, its typed input, its typed result and its implementation against the
 * kernel — defined once. A one-shot command runs it in-process on the agent
 * it opened; while `run` holds the home, the command sends the same name and
 * input to the control endpoint (`control.ts`), which runs it through the
 * same table. So a command behaves the same either way.
 *
 * @module
 */
import { BadRecoveryCode, type CommandContext, Malformed, MessageTooLarge } from "../kernel/mod.ts";
import type { PairingOffer } from "../kernel/mod.ts";
import type { PairingForm } from "../kernel/mod.ts";
import { type DbMessage, type PeerRecord, PeerType } from "../proto/mod.ts";
import { CHAT_API, isUnread } from "../plugins/chat/mod.ts";
import {
  DEVICE_SYNC_API,
  type HistoryWindow,
  parseHistoryWindow,
} from "../plugins/device_sync/mod.ts";
import { FORWARD_RELAY_API } from "../plugins/forward_relay/mod.ts";
import type { Agent } from "./agent.ts";
import { AgentError, EXIT } from "./errors.ts";
import { fetchServerCard, pairingErrors, pairingInput } from "./pairing.ts";
import {
  type ContactView,
  contactView,
  type ConversationView,
  type DeviceView,
  type MessageView,
  messageView,
  type PairedView,
  relayName,
  siblingViews,
  type StatusView,
  type TicketView,
  time,
} from "./views.ts";

/** Shortest uid prefix that names a contact (shorter ones would match by accident). */
const UID_PREFIX_CHARS_MIN = 4;

/** The input of an operation that takes none. */
export type NoInput = Record<never, never>;

/** One operation: its typed input `I`, its typed result `R`, and how it runs on an agent. */
export interface Operation<I, R> {
  /**
   * Runs it on `agent`; `signal` (the CLI's interrupt, in-process only) ends
   * a wait early.
   */
  run(agent: Agent, input: I, signal?: AbortSignal): Promise<R>;
}

/** An entry of {@linkcode OPERATIONS}, its types fixed by `run`'s. */
function operation<I, R>(run: Operation<I, R>["run"]): Operation<I, R> {
  return { run };
}

/**
 * Every operation, by name (the order is the one the control endpoint lists).
 * Inputs and results are plain JSON values, so the control endpoint carries
 * them unchanged.
 */
export const OPERATIONS = {
  /** Servers, devices, contacts, outbox and last poll. */
  status: operation<NoInput, StatusView>(status),
  /** Every contact, by name. */
  contacts: operation<NoInput, ContactView[]>(contacts),
  /** This device and its siblings. */
  devices: operation<NoInput, DeviceView[]>(devices),
  /** The newest `limit` messages (all when undefined) of a conversation, oldest first. */
  history: operation<{ contact: string; limit?: number }, ConversationView>(history),
  /** Marks a conversation read; resolves with the messages that were unread. */
  read: operation<{ contact: string }, ConversationView>(read),
  /**
   * Sends a text to a contact; a text too large for its relay is a usage error (exit 2). `queued`
   * says why it waits in the outbox when a relay is unreachable or refuses sends right now.
   */
  send: operation<
    { contact: string; text: string },
    { contact: ContactView; message: MessageView; queued?: string }
  >(
    send,
  ),
  /** The nickname and status line. */
  profile: operation<NoInput, { nickname: string; status: string }>(profile),
  /** Changes the nickname and/or status line (synced to every device). */
  profileSet: operation<
    { nickname?: string; status?: string },
    { nickname: string; status: string }
  >(profileSet),
  /** Renames a contact (synced to every device). */
  rename: operation<{ contact: string; name: string }, ContactView & { previous: string }>(
    rename,
  ),
  /** Pairing, step 1: a device pairing through a mailbox on the home relay, by code or link. */
  pairStart: operation<{ form: PairingForm; history?: string }, TicketView>(pairStart),
  /** Invitation, step 1: a contact invitation through a mailbox on the home relay. */
  invite: operation<{ form: PairingForm }, TicketView>(invite),
  /** Waits until a pending peer (from `pairStart` or `invite`) is complete. */
  waitPeer: operation<{ peerUid: string; timeoutMs: number }, PairedView>(waitPeer),
  /** Invitation, step 2: answers a contact's invitation, by link or by code. */
  accept: operation<
    { invitation: string; server?: string; name?: string },
    ContactView & { safetyCode: string }
  >(accept),
  /** Planned handover: this device, the contact's primary, hands it to a sibling. */
  handover: operation<{ contact: string; to: string }, ContactView>(handover),
  /** Retires this device: hands every contact it is primary for to a sibling, then leaves. */
  retire: operation<{ device: string; to?: string }, { handedOver: ContactView[] }>(retire),
  /** Removes a sibling from this user's devices, for good. */
  removeDevice: operation<{ device: string }, DeviceView>(removeDevice),
  /** Re-derives the identity root on this device from the recovery code. */
  recover: operation<{ code: string }, { root: boolean }>(recover),
  /** Asks `run` to stop (through the control endpoint). */
  stop: operation<NoInput, { stopping: boolean }>(stop),
  /** Runs the command `name` of a plugin module this agent loaded, with its words. */
  command: operation<{ name: string; args: string[] }, { lines: string[]; value: unknown }>(
    command,
  ),
};

/** The name of an operation. */
export type OpName = keyof typeof OPERATIONS;
/** The input of operation `N`. */
export type OpInput<N extends OpName> = Parameters<typeof OPERATIONS[N]["run"]>[1];
/** The result of operation `N`. */
export type OpResult<N extends OpName> = Awaited<ReturnType<typeof OPERATIONS[N]["run"]>>;

/** Every operation name, in the table's order. */
export const OP_NAMES: readonly OpName[] = Object.keys(OPERATIONS) as OpName[];

/** Whether `name` names an operation. */
export function isOpName(name: string): name is OpName {
  return (OP_NAMES as readonly string[]).includes(name);
}

/**
 * Runs operation `name` on `agent`.
 *
 * @example
 * ```ts ignore
 * const contacts = await runOperation(agent, "contacts", {});
 * ```
 */
export function runOperation<N extends OpName>(
  agent: Agent,
  name: N,
  input: OpInput<N>,
  signal?: AbortSignal,
): Promise<OpResult<N>> {
  const entry = OPERATIONS[name] as unknown as Operation<OpInput<N>, OpResult<N>>;
  return entry.run(agent, input, signal);
}

// ─── The implementations ──────────────────────────────────────────────────────

async function status(agent: Agent): Promise<StatusView> {
  const kernel = agent.kernel;
  const identity = requireIdentity(agent, { complete: false });
  let failed = 0;
  for (const peer of kernel.peers()) {
    for (const m of await kernel.messages(peer.uid)) {
      if (m.outbound && m.failedAt > 0) failed++;
    }
  }
  const quarantine = kernel.quarantine();
  const latest = quarantine.at(-1);
  const self: DeviceView = {
    name: identity.deviceName,
    deviceUid: identity.deviceUid,
    self: true,
  };
  return {
    home: agent.paths.dir,
    nickname: identity.profile?.nickname ?? "",
    status: identity.profile?.status ?? "",
    identityUid: identity.uid,
    device: self,
    servers: identity.servers.map((s) => ({ name: s.name, url: s.url, uid: s.uid })),
    devices: [self, ...siblingViews(kernel)],
    contacts: kernel.peers().length,
    outbox: kernel.outboxSize(),
    lastPollAt: kernel.lastPollAt(),
    relayHealth: kernel.relayHealth(),
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
    running: agent.serving,
    catchUp: agent.kernel.api(DEVICE_SYNC_API).catchUp() ?? null,
  };
}

async function contacts(agent: Agent): Promise<ContactView[]> {
  requireIdentity(agent);
  const out: ContactView[] = [];
  for (const peer of agent.kernel.peers()) out.push(await contactView(agent.kernel, peer));
  return out.sort((a, b) => a.name.localeCompare(b.name) || (a.uid < b.uid ? -1 : 1));
}

function devices(agent: Agent): Promise<DeviceView[]> {
  const identity = requireIdentity(agent, { complete: false });
  return Promise.resolve([
    { name: identity.deviceName, deviceUid: identity.deviceUid, self: true },
    ...siblingViews(agent.kernel),
  ]);
}

async function history(
  agent: Agent,
  args: { contact: string; limit?: number },
): Promise<ConversationView> {
  const peer = findContact(agent, args.contact);
  // One total order on every device: the sender's send time, then the uuid (arrival order differs
  // between devices; the newest `limit` are taken in that order too).
  const ordered = (await agent.kernel.messages(peer.uid)).sort(byTimeThenUuid);
  const messages = args.limit === undefined ? ordered : ordered.slice(-args.limit);
  return {
    contact: await contactView(agent.kernel, peer),
    messages: await annotated(agent, peer.uid, messages),
  };
}

/** The order `history` and `read` show: the sender's send time, then the uuid. */
function byTimeThenUuid(a: DbMessage, b: DbMessage): number {
  const at = Number(a.message?.status?.sent ?? 0) - Number(b.message?.status?.sent ?? 0);
  if (at !== 0) return at;
  const [ua, ub] = [a.message?.status?.uuid ?? "", b.message?.status?.uuid ?? ""];
  return ua < ub ? -1 : ua > ub ? 1 : 0;
}

async function read(agent: Agent, args: { contact: string }): Promise<ConversationView> {
  const peer = findContact(agent, args.contact);
  const unread = (await agent.kernel.messages(peer.uid)).filter(isUnread).sort(byTimeThenUuid);
  const views = await annotated(agent, peer.uid, unread);
  await agent.kernel.api(CHAT_API).markRead(peer.uid);
  return { contact: await contactView(agent.kernel, peer), messages: views };
}

/**
 * The views of `messages` of conversation `peerUid` with what the agent's plugin modules say of
 * them (an edit's text, a deletion, reactions): a later module's text replaces an earlier one's,
 * notes add up.
 */
async function annotated(
  agent: Agent,
  peerUid: string,
  messages: DbMessage[],
): Promise<MessageView[]> {
  const views = messages.map(messageView);
  const byUuid = new Map(views.map((v) => [v.uuid, v]));
  for (const module of agent.modules) {
    if (!module.annotate) continue;
    for (const [uuid, note] of await module.annotate(agent.kernel, peerUid)) {
      const view = byUuid.get(uuid);
      if (!view) continue;
      if (note.text !== undefined) view.text = note.text;
      if (note.notes && note.notes.length > 0) view.notes = [...view.notes ?? [], ...note.notes];
    }
  }
  return views;
}

async function command(
  agent: Agent,
  args: { name: string; args: string[] },
): Promise<{ lines: string[]; value: unknown }> {
  const found = agent.modules.find((m) => m.commands?.[args.name] !== undefined);
  const extension = found?.commands?.[args.name];
  if (!extension) {
    throw new AgentError(
      `this agent has no command "${args.name}" (a running agent takes its plugins when ` +
        "`run` starts: give it the same --plugin)",
      EXIT.usage,
    );
  }
  const context: CommandContext = {
    kernel: agent.kernel,
    contact: (name) => findContact(agent, name).uid,
    message: (peerUid, ref) => findMessage(agent, peerUid, ref),
  };
  try {
    return await extension.run(context, args.args);
  } catch (e) {
    // A plugin's refusal of its input (not a text, not a message it takes, …) is a usage error.
    if (e instanceof TypeError || e instanceof RangeError || e instanceof Malformed) {
      throw new AgentError(`${args.name}: ${e.message}`, EXIT.usage);
    }
    throw e;
  }
}

/** The uuid of the message of `peerUid` that `ref` names: a uuid prefix (4+), else its text. */
async function findMessage(agent: Agent, peerUid: string, ref: string): Promise<string> {
  const uuids = (await agent.kernel.messages(peerUid)).map((m) => ({
    uuid: m.message?.status?.uuid ?? "",
    text: m.message?.data ?? "",
  }));
  const q = ref.trim().toLowerCase();
  let found = q.length >= UID_PREFIX_CHARS_MIN
    ? uuids.filter((m) => m.uuid.toLowerCase().startsWith(q))
    : [];
  if (found.length === 0) found = uuids.filter((m) => m.text === ref);
  if (found.length === 1) return found[0].uuid;
  throw new AgentError(
    found.length === 0
      ? `no message of this conversation is "${ref}" (give its text, or a uuid prefix from ` +
        "`history --json`)"
      : `"${ref}" is ${found.length} messages: give a uuid prefix from \`history --json\``,
    EXIT.usage,
  );
}

async function send(
  agent: Agent,
  args: { contact: string; text: string },
): Promise<{ contact: ContactView; message: MessageView; queued?: string }> {
  const peer = findContact(agent, args.contact);
  if (args.text.trim() === "") throw new AgentError("the text is empty", EXIT.usage);
  let stored: DbMessage;
  try {
    stored = await agent.kernel.api(CHAT_API).send(peer.uid, args.text);
  } catch (e) {
    if (e instanceof RangeError) throw new AgentError(e.message, EXIT.usage);
    // "message too large: N bytes, at most M": the contact's relay could never take it.
    if (e instanceof MessageTooLarge) throw new AgentError(e.message, EXIT.usage);
    throw e;
  }
  const view = { contact: await contactView(agent.kernel, peer), message: messageView(stored) };
  const queued = relayDown(agent);
  return queued ? { ...view, queued } : view;
}

/**
 * Why a message just sent waits in the outbox, when a relay this device talks to is unreachable
 * or refuses its sends right now ("relay home unreachable since …"); undefined when none is.
 */
function relayDown(agent: Agent): string | undefined {
  const down = agent.kernel.relayHealth().find((h) =>
    h.state === "unreachable" || (h.state === "refused" && h.request === "send")
  );
  if (!down) return undefined;
  const relay = relayName(down.serverName, down.serverUid);
  return down.state === "unreachable"
    ? `relay ${relay} unreachable since ${time(down.since)}`
    : `relay ${relay} refuses sends since ${time(down.since)}: ${down.detail}`;
}

function profile(agent: Agent): Promise<{ nickname: string; status: string }> {
  return Promise.resolve(profileOf(requireIdentity(agent)));
}

/** The nickname and status line of `identity` ("" for either when unset). */
function profileOf(identity: { profile?: { nickname: string; status: string } }): {
  nickname: string;
  status: string;
} {
  return { nickname: identity.profile?.nickname ?? "", status: identity.profile?.status ?? "" };
}

async function profileSet(
  agent: Agent,
  args: { nickname?: string; status?: string },
): Promise<{ nickname: string; status: string }> {
  requireIdentity(agent);
  if (args.nickname === undefined && args.status === undefined) {
    throw new AgentError("give --nickname and/or --status", EXIT.usage);
  }
  if (args.nickname !== undefined && args.nickname.trim() === "") {
    throw new AgentError("the nickname must not be empty", EXIT.usage);
  }
  return profileOf(await agent.kernel.updateProfile(args));
}

async function rename(
  agent: Agent,
  args: { contact: string; name: string },
): Promise<ContactView & { previous: string }> {
  const peer = findContact(agent, args.contact);
  const name = args.name.trim();
  if (name === "") throw new AgentError("the new name is empty", EXIT.usage);
  const taken = agent.kernel.peers().find((p) =>
    p.uid !== peer.uid && p.name.toLowerCase() === name.toLowerCase()
  );
  if (taken) {
    throw new AgentError(
      `another contact is named "${taken.name}" already: choose another name`,
      EXIT.usage,
    );
  }
  const updated = await agent.kernel.updatePeer(peer.uid, { name });
  return { ...await contactView(agent.kernel, updated), previous: peer.name };
}

async function pairStart(
  agent: Agent,
  args: { form: PairingForm; history?: string },
): Promise<TicketView> {
  requireIdentity(agent);
  const history = args.history === undefined ? undefined : historyWindow(args.history);
  if (!agent.kernel.api(DEVICE_SYNC_API).holdsRoot()) {
    throw new AgentError(
      "only the device holding the identity root pairs new devices: run `pair start` on the " +
        "device you ran `init` on (or, if it is lost, `devices recover` here first)",
      EXIT.usage,
    );
  }
  return await offer(
    agent,
    () => agent.kernel.api(DEVICE_SYNC_API).offerDevicePairing({ form: args.form, history }),
  );
}

/** `--history`'s value as a window; a bad one is a usage error. */
export function historyWindow(text: string): HistoryWindow {
  try {
    return parseHistoryWindow(text);
  } catch (e) {
    if (e instanceof RangeError) {
      throw new AgentError(`--${e.message.replace(/^history /, "history ")}`, EXIT.usage);
    }
    throw e;
  }
}

async function handover(
  agent: Agent,
  args: { contact: string; to: string },
): Promise<ContactView> {
  const peer = findContact(agent, args.contact);
  const to = findSibling(agent, args.to);
  const primary = agent.kernel.primaryOf(peer);
  if (primary !== agent.kernel.deviceUid()) {
    const name = agent.kernel.devices().find((d) => d.deviceUid === primary)?.name ?? primary;
    throw new AgentError(
      `this device is not ${peer.name}'s primary (${name} is): run \`contacts handover\` there`,
      EXIT.usage,
    );
  }
  await agent.kernel.api(FORWARD_RELAY_API).handover(peer.uid, to.deviceUid);
  return await contactView(agent.kernel, agent.kernel.peer(peer.uid)!);
}

async function retire(
  agent: Agent,
  args: { device: string; to?: string },
): Promise<{ handedOver: ContactView[] }> {
  const identity = requireIdentity(agent);
  if (args.device.trim().toLowerCase() !== identity.deviceName.toLowerCase()) {
    throw new AgentError(
      `"${args.device}" is not this device (${identity.deviceName}): a device retires itself, ` +
        `since only it holds its contacts' sessions; run \`devices retire\` on it, or ` +
        `\`devices remove\` here for one that is gone`,
      EXIT.usage,
    );
  }
  const to = args.to === undefined ? undefined : findSibling(agent, args.to).deviceUid;
  if (agent.kernel.devices().length === 0) {
    throw new AgentError("this device has no sibling to hand its contacts to", EXIT.usage);
  }
  const uids = await agent.kernel.api(FORWARD_RELAY_API).retire(to);
  const handedOver: ContactView[] = [];
  for (const uid of uids) handedOver.push(await contactView(agent.kernel, agent.kernel.peer(uid)!));
  return { handedOver };
}

async function removeDevice(agent: Agent, args: { device: string }): Promise<DeviceView> {
  const device = findSibling(agent, args.device);
  try {
    await agent.kernel.api(DEVICE_SYNC_API).removeDevice(device.deviceUid);
  } catch (e) {
    if (e instanceof TypeError) throw new AgentError((e as Error).message, EXIT.usage);
    throw e;
  }
  return { name: device.name, deviceUid: device.deviceUid, self: false };
}

async function recover(agent: Agent, args: { code: string }): Promise<{ root: boolean }> {
  requireIdentity(agent);
  try {
    await agent.kernel.api(DEVICE_SYNC_API).recoverRoot(String(args.code ?? ""));
  } catch (e) {
    if (e instanceof BadRecoveryCode) throw new AgentError(e.message, EXIT.usage);
    throw e;
  }
  return { root: true };
}

/** The sibling `query` names: a device name (any case), or a device uid prefix of 4+ characters. */
function findSibling(agent: Agent, query: string): PeerRecord {
  requireIdentity(agent);
  const devices = agent.kernel.devices();
  const found = matching(devices, query, (d) => d.deviceUid);
  if (found.length === 1) return found[0];
  const names = devices.map((d) => d.name).sort().join(", ");
  throw new AgentError(
    found.length > 1
      ? `"${query}" matches ${found.length} devices: give a device uid prefix`
      : `no sibling device matches "${query}" (siblings: ${names || "none yet; see `pair start`"})`,
    EXIT.usage,
  );
}

async function invite(agent: Agent, args: { form: PairingForm }): Promise<TicketView> {
  requireIdentity(agent);
  return await offer(
    agent,
    () => agent.kernel.offerPairing({ type: PeerType.CONTACT, form: args.form }),
  );
}

async function offer(agent: Agent, start: () => Promise<PairingOffer>): Promise<TicketView> {
  const offered = await pairingErrors(start, agent.kernel.identity().servers[0]?.url ?? "");
  agent.exchanges.set(offered.peerUid, offered.exchanged);
  return {
    peerUid: offered.peerUid,
    form: offered.form,
    code: offered.code,
    link: offered.link,
    server: agent.kernel.identity().servers[0]?.url ?? "",
    expiresAt: offered.expiresAt,
  };
}

/**
 * Waits until the pending peer is complete, polling meanwhile; a code's
 * exchange that fails (a wrong code, someone interfering, expiry) ends the
 * wait with that error.
 */
async function waitPeer(
  agent: Agent,
  args: { peerUid: string; timeoutMs: number },
  signal?: AbortSignal,
): Promise<PairedView> {
  const done = () => agent.kernel.peer(args.peerUid)?.contact !== undefined;
  const exchange = agent.exchanges.get(args.peerUid);
  const failed = exchange
    ? pairingErrors(() => exchange, "").then(() => new Promise<never>(() => {}))
    : new Promise<never>(() => {});
  await Promise.race([agent.waitFor(done, { timeoutMs: args.timeoutMs, signal }), failed]);
  agent.exchanges.delete(args.peerUid);
  const peer = agent.kernel.peer(args.peerUid)!;
  return {
    uid: peer.uid,
    name: peer.name,
    kind: peer.type === PeerType.DEVICE ? "device" : "contact",
    safetyCode: peer.safetyCode,
  };
}

/** Answers a contact's invitation, a link or a short code on `server` (default the home relay). */
async function accept(
  agent: Agent,
  args: { invitation: string; server?: string; name?: string },
): Promise<ContactView & { safetyCode: string }> {
  const identity = requireIdentity(agent);
  const input = await pairingInput(
    args.invitation,
    async () =>
      args.server === undefined
        ? identity.servers[0]
        : await fetchServerCard(agent.transport, args.server),
  );
  const accepted = await pairingErrors(
    () =>
      agent.kernel.acceptPairing(input, {
        name: identity.profile?.nickname,
        type: PeerType.CONTACT,
      }),
    "server" in input ? input.server.url : "",
  );
  if (args.name) await agent.kernel.updatePeer(accepted.peerUid, { name: args.name });
  return {
    ...await contactView(agent.kernel, agent.kernel.peer(accepted.peerUid)!),
    safetyCode: accepted.safetyCode,
  };
}

function stop(agent: Agent): Promise<{ stopping: boolean }> {
  return Promise.resolve({ stopping: agent.requestStop() });
}

// ─── Lookups ──────────────────────────────────────────────────────────────────

/** The identity; without one (or, when `complete`, before a join completes) an exit-4 error. */
function requireIdentity(agent: Agent, options: { complete?: boolean } = {}) {
  if (!agent.kernel.hasIdentity()) {
    throw new AgentError(
      `no identity in ${agent.paths.dir} yet: run \`init\` or \`pair join\` first`,
      EXIT.noIdentity,
    );
  }
  const identity = agent.kernel.identity();
  if ((options.complete ?? true) && identity.uid === "") {
    throw new AgentError(
      "this device has not finished pairing: it learns its identity when its sibling " +
        "answers (keep `run` running, or run `pair join` again later)",
      EXIT.noIdentity,
    );
  }
  return identity;
}

/**
 * The records `query` names, the first rule that matches any: the name (any case); else a name
 * prefix (any case); else a prefix of 4+ characters of `uidOf`.
 */
function matching(
  records: PeerRecord[],
  query: string,
  uidOf: (record: PeerRecord) => string,
): PeerRecord[] {
  const q = query.trim().toLowerCase();
  if (q === "") return [];
  const named = records.filter((r) => r.name.toLowerCase() === q);
  if (named.length > 0) return named;
  const prefixed = records.filter((r) => r.name.toLowerCase().startsWith(q));
  if (prefixed.length > 0 || q.length < UID_PREFIX_CHARS_MIN) return prefixed;
  return records.filter((r) => uidOf(r).toLowerCase().startsWith(q));
}

/** The contact `query` names: a name or a unique name prefix (any case), or a uid prefix of 4+. */
function findContact(agent: Agent, query: string): PeerRecord {
  requireIdentity(agent);
  const peers = agent.kernel.peers();
  const found = matching(peers, query, (p) => p.uid);
  if (found.length === 1) return found[0];
  if (found.length > 1) {
    throw new AgentError(
      `"${query}" matches ${found.length} contacts (${
        found.map((p) => `${p.name} ${p.uid.slice(0, 8)}`).join(", ")
      }): give more of the name, or a uid prefix`,
      EXIT.unknownContact,
    );
  }
  const names = peers.map((p) => p.name).sort().join(", ");
  throw new AgentError(
    `no contact matches "${query}" (contacts: ${names || "none yet; see `invite`"})`,
    EXIT.unknownContact,
  );
}

/**
 * Marks on messages: what reactions, edits and deletions have in common, built only on the public
 * plugin API (docs/PLUGINS.md). A mark is a value one side of a conversation puts on one message —
 * an emoji, a new text, a tombstone — kept per (conversation, message, side) in the plugin's own
 * collection, where the last writer wins on the mark's time, then its device uid, so every device
 * ends on the same mark whatever order the copies arrive in, and a repeat changes nothing.
 *
 * - Set on a device: stored, synced to every sibling (a sync type of its own), and — when it is for
 *   the contact — sent to the contact (forward_relay passes it to the primary when this device is
 *   not it).
 * - From the contact: only the primary receives it; it stores it and passes it on to every sibling
 *   (the rule every plugin that talks to contacts follows).
 * - Keys: `peerUid/messageUuid/side` (side: `self` — this user, `peer` — the contact); nothing of a
 *   mark's content is in a key.
 *
 * @module
 */
import { DEVICE_SYNC_API } from "../device_sync/mod.ts";
import { newUserMessage } from "../chat/mod.ts";
import {
  type CheckContext,
  type CheckOutcome,
  Malformed,
  type Plugin,
  type PluginHost,
  type Tx,
} from "../../kernel/mod.ts";
import { PeerType } from "../../proto/mod.ts";

/** Which side of the conversation put a mark, as the device that holds it sees it. */
export type Side = "self" | "peer";

/** One mark as stored. */
export interface Mark<V> {
  /** The conversation uid on this device. */
  peerUid: string;
  /** The message it is on. */
  target: string;
  side: Side;
  value: V;
  /** When it was set, in ms (the setting device's clock). */
  at: number;
  /** The device that set it. */
  device: string;
  /** Whether it went to the contact too (false: this user's devices only). */
  shared: boolean;
}

/** What travels: to the contact (side implied: the sender's) and to siblings. */
interface WireMark {
  target: string;
  side?: Side;
  value: unknown;
  at: number;
  device: string;
  shared: boolean;
  peerUid?: string;
}

/** Options of {@linkcode marksPlugin}. */
export interface MarksOptions<V> {
  /** The plugin's name: its collection, its message type, its sync type (`<name>_sync`). */
  name: string;
  /** Checks a value from the wire; throws {@linkcode Malformed} when it is not one. */
  parse(value: unknown): V;
  /**
   * Whether `a` replaces `b` (default: later time, then the greater device uid). A plugin may rank
   * values first (a deletion for everyone over one for this user's devices only).
   */
  wins?(a: Mark<V>, b: Mark<V>): boolean;
  /** Test builds only: the last copy to arrive wins, whatever its time. */
  lastArrivalWins?: boolean;
  /** Test builds only: the primary keeps the contact's marks to itself. */
  noPassOn?: boolean;
}

/** The default order: later time, then the greater device uid. */
export function later<V>(a: Mark<V>, b: Mark<V>): boolean {
  return a.at !== b.at ? a.at > b.at : a.device > b.device;
}

/** What a marks plugin offers (each wrapper exposes its own typed api on top). */
export interface MarksApi<V> {
  /**
   * Sets this user's mark on message `target` of conversation `peerUid` and sends it (to the
   * siblings; and to the contact when `shared`). Resolves with the mark that holds afterwards.
   */
  set(peerUid: string, target: string, value: V, options: { shared: boolean }): Promise<Mark<V>>;
  /** Stages the same inside `tx`. */
  setInTx(
    tx: Tx,
    peerUid: string,
    target: string,
    value: V,
    options: { shared: boolean },
  ): Promise<Mark<V>>;
  /** The committed marks of conversation `peerUid` (of one message with `target`). */
  list(peerUid: string, target?: string): Promise<Mark<V>[]>;
}

const keyOf = (peerUid: string, target: string, side: Side) => `${peerUid}/${target}/${side}`;

/** A marks plugin named `options.name`, and the api it offers (also its `api`). */
export function marksPlugin<V>(options: MarksOptions<V>): Plugin & { api: MarksApi<V> } {
  const name = options.name;
  const syncType = `${name}_sync`;
  const wins = options.wins ?? later;
  let host: PluginHost | undefined;
  const h = () => {
    if (!host) throw new TypeError(`${name}: used before the kernel opened`);
    return host;
  };

  /** Stores `mark` unless the stored one wins over it; resolves with the one that holds. */
  async function merge(tx: Tx, mark: Mark<V>): Promise<Mark<V>> {
    const data = tx.data(name);
    const key = keyOf(mark.peerUid, mark.target, mark.side);
    const before = await data.get<Mark<V>>(key);
    if (before && !options.lastArrivalWins && !wins(mark, before)) return before;
    data.put(key, mark);
    return mark;
  }

  function wire(raw: Uint8Array | string, from: string): WireMark {
    let parsed: WireMark;
    try {
      parsed = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
    } catch {
      throw new Malformed(`${name}: a mark from "${from}" is not JSON`);
    }
    const ok = typeof parsed === "object" && parsed !== null &&
      typeof parsed.target === "string" && parsed.target !== "" &&
      Number.isSafeInteger(parsed.at) && typeof parsed.device === "string" &&
      typeof parsed.shared === "boolean";
    if (!ok) throw new Malformed(`${name}: a malformed mark from "${from}"`);
    return parsed;
  }

  async function sendToSiblings(tx: Tx, mark: Mark<V>): Promise<void> {
    const body: WireMark = { ...mark, peerUid: mark.peerUid };
    await h().api(DEVICE_SYNC_API).dispatch(tx, {
      syncType,
      peerUid: mark.peerUid,
      pluginData: new TextEncoder().encode(JSON.stringify(body)),
    });
  }

  const api: MarksApi<V> = {
    set: (peerUid, target, value, o) =>
      h().transact((tx) => api.setInTx(tx, peerUid, target, value, o)),
    async setInTx(tx, peerUid, target, value, o) {
      const peer = tx.peer(peerUid);
      if (!peer || peer.type !== PeerType.CONTACT || !peer.contact) {
        throw new TypeError(`${name}: no contact with uid ${peerUid}`);
      }
      options.parse(value);
      const mark: Mark<V> = {
        peerUid,
        target,
        side: "self",
        value,
        at: tx.now,
        device: h().deviceUid(),
        shared: o.shared,
      };
      const held = await merge(tx, mark);
      await sendToSiblings(tx, mark);
      if (o.shared) {
        const message = newUserMessage(tx, peer, name, h().random);
        const body: WireMark = {
          target,
          value,
          at: mark.at,
          device: mark.device,
          shared: true,
        };
        message.appdata = new TextEncoder().encode(JSON.stringify(body));
        await tx.send(peerUid, message);
      }
      return held;
    },
    async list(peerUid, target) {
      const prefix = target === undefined ? `${peerUid}/` : `${peerUid}/${target}/`;
      return (await h().data(name).list<Mark<V>>(prefix)).map((r) => r.value);
    },
  };

  return {
    name,
    types: [name],
    api,
    setup(hst) {
      host = hst;
      hst.api(DEVICE_SYNC_API).registerSyncType(syncType, async (payload, { tx, from }) => {
        const m = wire(payload.pluginData, from.name);
        if (!m.side || (m.side !== "self" && m.side !== "peer") || !m.peerUid) {
          throw new Malformed(`${name}: a synced mark from "${from.name}" names no side`);
        }
        const local = tx.peer(m.peerUid);
        if (!local || local.type !== PeerType.CONTACT) {
          throw new Malformed(`${name}: a synced mark for an unknown conversation ${m.peerUid}`);
        }
        await merge(tx, {
          peerUid: m.peerUid,
          target: m.target,
          side: m.side,
          value: options.parse(m.value),
          at: m.at,
          device: m.device,
          shared: m.shared,
        });
      });
    },
    async receive(message, { tx, peer }) {
      if (peer.type !== PeerType.CONTACT) {
        throw new Malformed(`${name}: a mark comes from a contact, not from device "${peer.name}"`);
      }
      const m = wire(message.appdata, peer.name);
      const mark: Mark<V> = {
        peerUid: peer.uid,
        target: m.target,
        side: "peer",
        value: options.parse(m.value),
        at: m.at,
        device: m.device,
        shared: true,
      };
      await merge(tx, mark);
      // Only the primary receives from a contact: the siblings learn it from here.
      if (!options.noPassOn) await sendToSiblings(tx, mark);
    },
  };
}

/**
 * The expectation every marks plugin offers: at the end, every device shows the same marks — a
 * shared mark the same on every device of both users, a mark kept to one user's devices the same on
 * each of them.
 */
export async function marksConverged(
  namespace: string,
  context: CheckContext,
): Promise<CheckOutcome> {
  // conversation (user pair) → device → its normalised marks
  const views = new Map<string, Map<string, Set<string>>>();
  const own = new Map<string, Map<string, Set<string>>>();
  let count = 0;
  for (const d of context.devices) {
    let records: { key: string; value: Mark<unknown> }[];
    try {
      records = await d.data(namespace).list<Mark<unknown>>();
    } catch {
      continue; // no such plugin on this device
    }
    for (const { value: m } of records) {
      const other = d.contactOf(m.peerUid);
      if (other === "") continue;
      const author = m.side === "self" ? d.user : other;
      const line = `${m.target} by ${author}: ${JSON.stringify(m.value)}`;
      const pair = [d.user, other].sort().join("|");
      const into = m.shared ? views : own;
      const scope = m.shared ? pair : `${pair}|${author}`;
      if (!m.shared && author !== d.user) continue; // a device never holds the contact's own marks
      let byDevice = into.get(scope);
      if (!byDevice) into.set(scope, byDevice = new Map());
      let set = byDevice.get(d.ref);
      if (!set) byDevice.set(d.ref, set = new Set());
      set.add(line);
      count++;
    }
  }
  // Every device of the scope's users must appear, with the same set.
  for (const [scopes, shared] of [[views, true], [own, false]] as const) {
    for (const [scope, byDevice] of scopes) {
      const users = scope.split("|");
      const holders = context.devices.filter((d) =>
        shared ? users.slice(0, 2).includes(d.user) : d.user === users[2]
      );
      const expected = [...(byDevice.values().next().value ?? [])].sort();
      for (const d of holders) {
        const got = [...(byDevice.get(d.ref) ?? [])].sort();
        const missing = expected.filter((l) => !got.includes(l));
        const extra = got.filter((l) => !expected.includes(l));
        if (missing.length > 0 || extra.length > 0) {
          const first = [...byDevice.keys()][0];
          return {
            ok: false,
            detail: `${d.ref} and ${first} show different ${namespace}: ` +
              `${d.ref} lacks ${JSON.stringify(missing.slice(0, 2))}, has ` +
              `${JSON.stringify(extra.slice(0, 2))} besides`,
          };
        }
      }
    }
  }
  return { ok: true, detail: `${count} ${namespace} record(s), the same on every device` };
}

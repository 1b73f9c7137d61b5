/**
 * Executing the scenario's steps in a {@linkcode World}: scheduling each at
 * its time, running it (pairings, invitations, sends, profile and contact
 * changes, going offline, crashes, partitions, relays added, chatter), and
 * recording a step a device refused. Pairings and invitations run the way two
 * people would, both sides at once.
 *
 * @module
 */
import { type PeerRecord, PeerType } from "../proto/mod.ts";
import { randomFloat, randomInt } from "../crypto/mod.ts";
import type { PairingOffer } from "../kernel/mod.ts";
import type { JoinInput } from "../kernel/mod.ts";
import { CHAT_API } from "../plugins/chat/mod.ts";
import { HISTORY_DEFAULT, type HistoryWindow } from "../plugins/device_sync/mod.ts";
import { FORWARD_RELAY_API } from "../plugins/forward_relay/mod.ts";
import type { SimDevice } from "./devices.ts";
import { DEVICE_SYNC_API } from "./plugins.ts";
import type { PrivacyTaps } from "./privacy_taps.ts";
import type { Recorder } from "./recording.ts";
import type { PairingVia, PluginStep, Step } from "./scenario_types.ts";
import type { StepContext } from "../kernel/mod.ts";
import type { World } from "./world.ts";

/** How many random draws `chatter` makes for a device that can send before looking at all. */
const CHATTER_DRAWS_MAX = 32;

/** How long a pairing step waits for its `from` device to finish joining, in virtual ms. */
const PAIR_READY_WAIT_MS_MAX = 120_000;

/** What a {@linkcode StepRunner} works with besides the world. */
export interface StepRunnerOptions {
  recorder: Recorder;
  taps: PrivacyTaps;
  /** Trace sink. */
  trace: (line: Record<string, unknown>) => void;
}

/** Runs the scenario's steps against a world's devices. */
export class StepRunner {
  readonly #world: World;
  readonly #recorder: Recorder;
  readonly #taps: PrivacyTaps;
  readonly #trace: (line: Record<string, unknown>) => void;
  /** Conversation uid → its `userA|userB` (the index {@linkcode StepRunner.contactOf} reads). */
  readonly #conversationOf = new Map<string, string>();

  /** A runner of `world`'s scenario. */
  constructor(world: World, options: StepRunnerOptions) {
    this.#world = world;
    this.#recorder = options.recorder;
    this.#taps = options.taps;
    this.#trace = options.trace;
  }

  /** Whether a pairing or invitation is under way (the run is not quiescent then). */
  get pairingsUnderWay(): boolean {
    return this.#pairings > 0;
  }

  /** Schedules every step of the scenario, after the pairings of generated `pair: all` groups. */
  scheduleSteps(): void {
    // Against a relay that attacks pairings, a generated pairing may fail (visibly): the scenario
    // cannot mark it may_fail itself, and pairings_authentic checks what did complete.
    const attacked = this.#world.scenario.adversary.length > 0;
    for (const user of this.#world.scenario.users) {
      if (!user.generated?.pairAll) continue;
      const first = this.#world.device(`${user.name}/${user.devices[0]}`);
      for (const other of user.devices.slice(1)) {
        const device = this.#world.device(`${user.name}/${other}`);
        const step: Step = {
          kind: "pair",
          user: user.name,
          from: first.name,
          to: device.name,
          via: "link",
          history: { ...HISTORY_DEFAULT },
          atMs: 0,
          index: -1,
          ...(attacked ? { mayFail: true } : {}),
        };
        this.#world.scheduler.schedule(
          0,
          () => this.#track(this.#pair(first, device, "link", step.history), step),
          `pair ${device.ref}`,
        );
      }
    }
    for (const step of this.#world.scenario.steps) {
      this.#world.scheduler.schedule(
        step.atMs,
        () => this.#track(this.#run(step), step),
        `step ${step.index} ${step.kind}`,
      );
    }
  }

  /**
   * Follows a step's work: its failure is recorded as a refused step. A
   * pairing waits on the network (later events), which the scheduler must
   * not wait for within one event: it is counted instead, and the run is not
   * quiescent while one is under way.
   */
  #track(work: Promise<void>, step: Step): Promise<void> {
    const waitsOnNetwork = step.kind === "pair" || step.kind === "invite" ||
      step.kind === "invite_group";
    if (waitsOnNetwork) {
      this.#pairings++;
      work = work.finally(() => this.#pairings--);
    }
    const followed = work.catch((e) => {
      this.#refuse(
        `steps[${step.index}] ${step.kind === "plugin" ? step.step : step.kind}`,
        String((e as Error).message),
        step.mayFail,
      );
      this.#trace({
        kind: "step.error",
        step: step.index,
        error: String((e as Error).message),
      });
    });
    return waitsOnNetwork ? followed : this.#world.scheduler.track(followed);
  }

  /** Records that the devices refused `step` now, for the `refused` check and the report. */
  #refuse(step: string, error: string, mayFail?: boolean): void {
    this.#world.recording.refused.push({
      at: this.#world.scheduler.now,
      step,
      error,
      ...(mayFail ? { mayFail: true } : {}),
    });
  }

  /** Pairing steps under way (they wait on the network). */
  #pairings = 0;

  async #run(step: Step): Promise<void> {
    this.#trace({
      kind: "step",
      step: step.index,
      action: step.kind === "plugin" ? step.step : step.kind,
    });
    switch (step.kind) {
      case "plugin":
        return await this.#pluginStep(step);
      case "invite":
        return await this.#invite(
          this.#world.device(step.from),
          this.#world.device(step.to),
          step.via,
        );
      case "invite_group":
        return await this.#inviteGroup(step.from, step.to, step.peers, step.via);
      case "pair":
        return await this.#pair(
          this.#world.device(`${step.user}/${step.from}`),
          this.#world.device(`${step.user}/${step.to}`),
          step.via,
          step.history,
        );
      case "offline": {
        const d = this.#world.device(step.device);
        if (d.online) this.#recorder.downSince.set(d.ref, this.#world.scheduler.now);
        d.online = false;
        return;
      }
      case "online": {
        const d = this.#world.device(step.device);
        if (!d.online) {
          this.#recorder.down(
            d,
            this.#recorder.downSince.get(d.ref) ?? 0,
            this.#world.scheduler.now,
          );
        }
        d.online = true;
        return;
      }
      case "crash":
        return await this.#world.crash(this.#world.device(step.device));
      case "handover":
        return await this.#handover(step.user, step.peer, step.to);
      case "lose":
        return await this.#world.lose(this.#world.device(step.device));
      case "recover": {
        const code = this.#world.recoveryCodes.get(step.user);
        if (!code) throw new Error(`${step.user} has no recovery code`);
        const d = this.#world.device(`${step.user}/${step.device}`);
        return await d.live().api(DEVICE_SYNC_API).recoverRoot(code);
      }
      case "retire": {
        const d = this.#world.device(step.device);
        await d.live().api(FORWARD_RELAY_API).retire();
        this.#removed(d);
        return;
      }
      case "remove": {
        const d = this.#world.device(step.device);
        const by = this.#world.device(step.by);
        const uid = this.#deviceUid(d);
        if (!uid) throw new Error(`${d.ref} has no identity to remove`);
        await by.live().api(DEVICE_SYNC_API).removeDevice(uid);
        const removers = this.#world.recording.removers;
        removers.set(by.ref, [...(removers.get(by.ref) ?? []), this.#world.scheduler.now]);
        // Removed by a device that was removed itself: nobody else listens to it any more.
        if (!this.#world.recording.removals.has(by.ref)) this.#removed(d);
        return;
      }
      case "restart":
        return await this.#world.restart(this.#world.device(step.device));
      case "send":
        for (let k = 0; k < step.count; k++) {
          const text = step.count > 1 ? `${step.text} #${k + 1}` : step.text;
          const at = step.atMs + k * step.everyMs;
          if (k === 0) await this.send(this.#world.device(step.from), step.to, text);
          else {
            this.#world.scheduler.schedule(
              at,
              () => this.#track(this.send(this.#world.device(step.from), step.to, text), step),
              `send ${step.from}`,
            );
          }
        }
        return;
      case "profile":
        await this.#world.device(step.device).live().updateProfile({
          nickname: step.nickname,
          status: step.status,
        });
        return;
      case "rename": {
        const d = this.#world.device(step.device);
        await d.live().updatePeer(this.#peerUid(d.user, step.peer), { name: step.name });
        return;
      }
      case "read": {
        const d = this.#world.device(step.device);
        await d.live().api(CHAT_API).markRead(this.#peerUid(d.user, step.peer));
        return;
      }
      case "partition":
        for (const ref of step.devices) {
          const d = this.#world.device(ref);
          d.partitionedUntil = this.#world.scheduler.now + step.forMs;
          this.#recorder.down(d, this.#world.scheduler.now, d.partitionedUntil);
        }
        return;
      case "add_server": {
        const core = this.#world.relaysByName.get(step.server)!;
        await this.#world.device(step.device).live().addServer(core.card());
        return;
      }
      case "chatter":
        return this.#chatter(step.users, step.messages, step.overMs, step.atMs);
    }
  }

  /** Runs a step a plugin module added, with the context of docs/PLUGINS.md. */
  async #pluginStep(step: PluginStep): Promise<void> {
    const module = this.#world.scenario.modules.find((m) => m.name === step.module);
    const extension = module?.steps?.[step.step];
    if (!extension) throw new Error(`no module adds step ${step.step}`);
    const world = this.#world;
    const context: StepContext = {
      now: world.scheduler.now,
      kernel: (ref) => world.device(ref).live(),
      conversation: (ref, user) => this.#peerUid(world.device(ref).user, user),
      messageUuid: async (ref, user, text) => {
        const d = world.device(ref);
        const peerUid = this.#peerUid(d.user, user);
        const found = (await d.live().messages(peerUid)).find((m) => m.message?.data === text);
        if (!found) throw new Error(`${ref} holds no message "${text}" with ${user}`);
        return found.message!.status!.uuid;
      },
    };
    await extension.run(step.args, context);
  }

  #peerUid(user: string, other: string): string {
    const uid = this.#world.conversations.get(pairKey(user, other));
    if (!uid) throw new Error(`${user} and ${other} are not contacts`);
    return uid;
  }

  /**
   * `from` invites `to` through a relay mailbox, the way two people would:
   * the code (or link) goes from one to the other out of band, both run
   * their side of the exchange at once.
   */
  async #invite(from: SimDevice, to: SimDevice, via: PairingVia): Promise<void> {
    const offer = await from.live().offerPairing({ form: via });
    const [, accepted] = await Promise.all([
      offer.exchanged,
      to.live().acceptPairing(this.#joinInput(from, offer), { type: PeerType.CONTACT }),
    ]);
    const uid = accepted.peerUid;
    const key = pairKey(from.user, to.user);
    this.#world.conversations.set(key, uid);
    this.#world.conversationsAll.set(
      key,
      (this.#world.conversationsAll.get(key) ?? new Set()).add(uid),
    );
    if (!this.#conversationOf.has(uid)) this.#conversationOf.set(uid, key);
  }

  /** What the joining side is handed: the link, or the code and the relay it is on. */
  #joinInput(from: SimDevice, offer: PairingOffer): JoinInput {
    return offer.link !== ""
      ? { link: offer.link }
      : { code: offer.code, server: from.live().identity().servers[0] };
  }

  async #inviteGroup(
    fromGroup: string,
    toGroup: string,
    peers: number,
    via: PairingVia,
  ): Promise<void> {
    const members = (group: string) =>
      this.#world.scenario.users.filter((u) => u.generated?.group === group || u.name === group)
        .map((u) => u.name);
    const from = members(fromGroup);
    const to = members(toGroup);
    const invitations: Promise<void>[] = [];
    // Each user's partners: in a conversation already, or chosen by this step (a crowd has
    // thousands of users: a set per user, not a key per pair looked up for every candidate).
    const partners = new Map<string, Set<string>>();
    const partnersOf = (user: string) => {
      let set = partners.get(user);
      if (!set) partners.set(user, set = new Set());
      return set;
    };
    for (const key of this.#world.conversations.keys()) {
      const [a, b] = key.split("|");
      partnersOf(a).add(b);
      partnersOf(b).add(a);
    }
    const firstDevice = new Map<string, SimDevice>();
    for (const device of this.#world.devices.values()) {
      if (!firstDevice.has(device.user)) firstDevice.set(device.user, device);
    }
    for (const user of from) {
      const mine = partnersOf(user);
      const candidates = to.filter((u) => u !== user && !mine.has(u));
      for (let i = 0; i < peers && candidates.length > 0; i++) {
        const other =
          candidates.splice(randomInt(this.#world.scenarioRandom, candidates.length), 1)[0];
        mine.add(other);
        partnersOf(other).add(user);
        invitations.push(this.#invite(firstDevice.get(user)!, firstDevice.get(other)!, via));
      }
    }
    // All at once, as people would; one that fails is reported and the others go on.
    const results = await Promise.allSettled(invitations);
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      throw new Error(
        `${failed.length} of ${results.length} invitations failed; first: ${
          (failed[0] as PromiseRejectedResult).reason?.message
        }`,
      );
    }
  }

  async #pair(
    from: SimDevice,
    to: SimDevice,
    via: PairingVia,
    history: HistoryWindow,
  ): Promise<void> {
    // A person pairing from a device that is still joining waits until it has joined.
    for (let waited = 0; !this.#hasJoined(from) && waited < PAIR_READY_WAIT_MS_MAX;) {
      await this.#world.clock.sleep(this.#world.scenario.pollIntervalMs);
      waited += this.#world.scenario.pollIntervalMs;
    }
    const offer = await from.live().api(DEVICE_SYNC_API).offerDevicePairing({
      form: via,
      history,
    });
    // The welcome (and the history it draws from) runs when the newcomer's answer arrives.
    this.#world.recording.pairings.set(offer.peerUid, {
      newcomer: to.ref,
      by: from.ref,
      window: history,
    });
    await Promise.all([
      offer.exchanged,
      to.live().api(DEVICE_SYNC_API).joinDevices(this.#joinInput(from, offer), {
        deviceName: to.name,
      }),
    ]);
    to.live().start();
  }

  /** `user`'s current primary for `peer` hands the contact to `user/to`. */
  async #handover(user: string, peer: string, to: string): Promise<void> {
    const peerUid = this.#peerUid(user, peer);
    const target = this.#world.device(`${user}/${to}`);
    const primary = [...this.#world.devices.values()].find((d) => {
      const record = d.user === user && d.kernel ? d.kernel.peer(peerUid) : undefined;
      return record !== undefined && record.ratchet.length > 0 &&
        d.kernel!.primaryOf(record) === d.kernel!.deviceUid();
    });
    if (!primary) throw new Error(`no device of ${user} is primary for ${peer} (crashed?)`);
    if (primary === target) throw new Error(`${target.ref} is ${peer}'s primary already`);
    // The target may be down (crashed): the primary knows it by its name among its siblings.
    const sibling = primary.live().devices().find((d) => d.name === target.name);
    if (!sibling) throw new Error(`${primary.ref} does not know ${target.ref} (yet)`);
    await primary.live().api(FORWARD_RELAY_API).handover(peerUid, sibling.deviceUid);
  }

  /** The device uid of `device`, alive or lost ("" before it has an identity). */
  #deviceUid(device: SimDevice): string {
    if (device.kernel?.hasIdentity()) return device.kernel.deviceUid();
    return this.#world.lostUids.get(device.ref) ?? "";
  }

  /** Records that `device` left its user's devices now (checks leave it out from then on). */
  #removed(device: SimDevice): void {
    const deviceUid = this.#deviceUid(device);
    this.#world.recording.removals.set(device.ref, { atMs: this.#world.scheduler.now, deviceUid });
  }

  #hasJoined(device: SimDevice): boolean {
    const kernel = device.kernel;
    return kernel !== undefined && kernel.hasIdentity() && kernel.identity().uid !== "";
  }

  /** Sends a chat text from `from` to the conversation with `toUser`; records it when accepted. */
  async send(from: SimDevice, toUser: string, text: string): Promise<void> {
    const kernel = from.live();
    const peerUid = this.#peerUid(from.user, toUser);
    const peer: PeerRecord | undefined = kernel.peer(peerUid);
    if (!peer) throw new Error(`${from.ref} does not know ${toUser} (yet)`);
    this.#taps.watchText(text);
    const at = this.#world.scheduler.now;
    const fromPrimary = kernel.primaryOf(peer) === kernel.deviceUid();
    const stored = await kernel.api(CHAT_API).send(peerUid, text);
    const uuid = stored.message!.status!.uuid;
    this.#world.recording.sent.set(uuid, {
      uuid,
      from: from.ref,
      fromUser: from.user,
      toUser,
      peerUid,
      text,
      at,
      fromPrimary,
    });
    if (!fromPrimary) {
      this.#world.recording.counters.forwards++;
    }
  }

  /**
   * `messages` chat texts spread over `overMs` from `atMs`, each from a device drawn (when it is
   * due) among the group's devices that can send then — up, joined, not removed, knowing at least
   * one contact — to a contact it knows; a message no device can send is a refused step.
   */
  #chatter(group: string, messages: number, overMs: number, atMs: number): void {
    // The group's devices, in file order (a draw's index picks one).
    const devices = this.#world.scenario.users
      .filter((u) => u.generated?.group === group || u.name === group)
      .flatMap((u) => u.devices.map((d) => this.#world.device(`${u.name}/${d}`)));
    for (let i = 0; i < messages; i++) {
      const at = atMs + Math.floor((i * overMs) / messages);
      const text = `chatter ${i} ${
        randomFloat(this.#world.scenarioRandom).toString(36).slice(2, 10)
      }`;
      this.#world.scheduler.schedule(at, () => {
        const sender = this.#chatterSender(devices);
        if (!sender) {
          this.#refuse(
            `chatter ${group}`,
            `no device of ${group} can send (none is up and knows a contact)`,
          );
          return;
        }
        const { device, contacts } = sender;
        const to = contacts[randomInt(this.#world.scenarioRandom, contacts.length)];
        return this.#world.scheduler.track(
          this.send(device, to, text).catch((e) => {
            this.#refuse(`chatter ${device.ref}`, String(e.message));
            this.#trace({ kind: "chatter.skip", device: device.ref, error: String(e.message) });
          }),
        );
      }, `chatter ${group}`);
    }
  }

  /**
   * One of `devices` drawn uniformly among those that can send now, with the contacts it knows
   * (sorted); undefined when none can. Draws until one can (a crowd has thousands of devices),
   * then, after {@linkcode CHATTER_DRAWS_MAX} misses, looks at every device once.
   */
  #chatterSender(devices: SimDevice[]): { device: SimDevice; contacts: string[] } | undefined {
    const random = this.#world.scenarioRandom;
    if (devices.length === 0) return undefined;
    for (let draw = 0; draw < CHATTER_DRAWS_MAX; draw++) {
      const sender = this.#canSend(devices[randomInt(random, devices.length)]);
      if (sender) return sender;
    }
    const all = devices.map((d) => this.#canSend(d)).filter((s) => s !== undefined);
    return all.length === 0 ? undefined : all[randomInt(random, all.length)];
  }

  /** `device` with the contacts it knows, when it can send now (up, joined, not removed). */
  #canSend(device: SimDevice): { device: SimDevice; contacts: string[] } | undefined {
    if (device.crashed || !this.#hasJoined(device)) return undefined;
    if (this.#world.recording.removals.has(device.ref)) return undefined;
    const kernel = device.kernel!;
    const contacts = this.#contactsOf(device.user).filter((c) =>
      kernel.hasPeer(this.#peerUid(device.user, c))
    );
    return contacts.length === 0 ? undefined : { device, contacts };
  }

  #contacts: Map<string, string[]> | undefined;
  #contactsFor = -1;

  /** The users `user` has a conversation with, sorted (recomputed when a conversation is added). */
  #contactsOf(user: string): string[] {
    if (!this.#contacts || this.#contactsFor !== this.#world.conversations.size) {
      this.#contacts = new Map();
      for (const key of this.#world.conversations.keys()) {
        const [a, b] = key.split("|");
        this.#contacts.set(a, [...(this.#contacts.get(a) ?? []), b]);
        this.#contacts.set(b, [...(this.#contacts.get(b) ?? []), a]);
      }
      for (const list of this.#contacts.values()) list.sort();
      this.#contactsFor = this.#world.conversations.size;
    }
    return this.#contacts.get(user) ?? [];
  }

  /** The user on the other side of conversation `peerUid` as `ref` knows it ("" if none). */
  contactOf(ref: string, peerUid: string): string {
    const key = this.#conversationOf.get(peerUid);
    if (key === undefined) return "";
    const [a, b] = key.split("|");
    const user = ref.split("/")[0];
    return a === user ? b : a;
  }
}

/** The conversation key of two users. */
export function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

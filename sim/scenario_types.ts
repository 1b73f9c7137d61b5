/**
 * The scenario's TypeScript types (docs/SCENARIOS.md): the normalised
 * {@linkcode Scenario} the reader returns (durations in ms, defaults filled in,
 * generated groups expanded) and the {@linkcode ScenarioInput} a file writes.
 *
 * @module
 */
import type { PluginModule } from "../kernel/mod.ts";
import type { AdversaryKind } from "./adversary.ts";
import type { HistoryWindow } from "../plugins/device_sync/mod.ts";

// ---------------------------------------------------------------------------
// Normalised output

/** A device, written `user/device` (`alice/phone`, `crowd7/d2`). */
export type DeviceRef = `${string}/${string}`;

/** The network between every device and every relay. */
export interface NetworkSpec {
  /** Delay of each delivery, uniform in `[min, max]` ms. */
  latencyMs: { min: number; max: number };
  /** Share of deliveries held back behind later ones, in [0, 1]. */
  reorder: number;
  /** Share of requests/responses delivered twice, in [0, 1]. */
  duplicate: number;
  /** Share of requests lost (the client retries), in [0, 1]. */
  drop: number;
  /**
   * Share of pull answers whose one packed message has a byte flipped on the
   * way, in [0, 1]: the receiver cannot verify that copy (it is quarantined and
   * acked); the relay still holds the original and delivers it again.
   */
  corrupt: number;
}

/** One user: an identity and its devices (the identity is created on the first). */
export interface UserSpec {
  /** The user's name, unique in the scenario. */
  name: string;
  /** Device names, in file order; the first holds the identity. */
  devices: string[];
  /** Set on users expanded from a generated group (`count:` in the file). */
  generated?: {
    /** The group's name as written in the file (`crowd` for `crowd1`..`crowd100`). */
    group: string;
    /** `pair: all`: the group's devices are paired at time 0. */
    pairAll: boolean;
  };
}

/** Pair `to` (a new install) with `from` (an already paired device) of one user. */
export interface PairStep {
  kind: "pair";
  /** The user both devices belong to. */
  user: string;
  /** Device name (without the user) that already holds the identity. */
  from: string;
  /** Device name (without the user) to be paired. */
  to: string;
  /** How the pairing is handed over: a typed short code (CPace) or a link. @default "code" */
  via: PairingVia;
  /** What the new device gets of the old messages. @default the last 30 days, 1,000 per conversation */
  history: HistoryWindow;
}

/** How a pairing or invitation step hands the offer over. */
export type PairingVia = "code" | "link";

/** `from` invites `to`; they become each other's contacts. */
export interface InviteStep {
  kind: "invite";
  /** The inviting device. */
  from: DeviceRef;
  /** The invited device; `to: bob` in the file means bob's first device, where his identity lives. */
  to: DeviceRef;
  /** How the invitation is handed over. @default "code" */
  via: PairingVia;
}

/** Every user of generated group `from` gets `peers` random contacts among group `to`. */
export interface InviteGroupStep {
  kind: "invite_group";
  /** Generated group name. */
  from: string;
  /** Generated group name (may equal `from`). */
  to: string;
  /** Contacts per user. */
  peers: number;
  /** How each invitation is handed over. @default "code" */
  via: PairingVia;
}

/**
 * A device goes offline, comes online, crashes (drops all in-memory state), restarts from its
 * stores, or retires (hands every contact it is primary for to a sibling, then leaves its user's
 * devices).
 */
export interface DeviceStep {
  kind: "offline" | "online" | "crash" | "restart" | "retire" | "lose";
  /** The device. */
  device: DeviceRef;
}

/** A planned handover: `user`'s primary for `peer` hands that contact to device `to`. */
export interface HandoverStep {
  kind: "handover";
  /** The user whose device hands the contact over. */
  user: string;
  /** The contact (a user name). */
  peer: string;
  /** The device (without the user) that becomes primary. */
  to: string;
}

/** The identity root moves to `user`'s device `device`, re-derived from the recovery code. */
export interface RecoverStep {
  kind: "recover";
  /** The user. */
  user: string;
  /** The device (without the user) that recovers the root. */
  device: string;
}

/** Device `by` removes its sibling `device` from their user's devices. */
export interface RemoveStep {
  kind: "remove";
  /** The removed device. */
  device: DeviceRef;
  /** The sibling that removes it. */
  by: DeviceRef;
}

/** `count` messages from a device to the conversation with a user, `everyMs` apart. */
export interface SendStep {
  kind: "send";
  /** The sending device. */
  from: DeviceRef;
  /** The user whose conversation receives the messages. */
  to: string;
  /** The message text. */
  text: string;
  /** How many messages. */
  count: number;
  /** Time between two messages. */
  everyMs: number;
}

/** A device changes its user's profile. */
export interface ProfileStep {
  kind: "profile";
  /** The device making the change. */
  device: DeviceRef;
  /** The new nickname, if it changes. */
  nickname?: string;
  /** The new status, if it changes. */
  status?: string;
}

/** A device renames a contact (the local name of the conversation with `peer`). */
export interface RenameStep {
  kind: "rename";
  /** The device making the change. */
  device: DeviceRef;
  /** The user whose contact is renamed. */
  peer: string;
  /** The new name. */
  name: string;
}

/** A device sends read receipts for everything unread in the conversation with `peer`. */
export interface ReadStep {
  kind: "read";
  /** The reading device. */
  device: DeviceRef;
  /** The user whose conversation is read. */
  peer: string;
}

/** The devices cannot reach any relay for `forMs`. */
export interface PartitionStep {
  kind: "partition";
  /** The cut-off devices. */
  devices: DeviceRef[];
  /** How long the partition lasts. */
  forMs: number;
}

/** A device adds a relay (one of the scenario's `servers`) to its user's relay list. */
export interface AddServerStep {
  kind: "add_server";
  /** The device making the change. */
  device: DeviceRef;
  /** A relay name from `servers`. */
  server: string;
}

/** Random traffic in a generated group: random sender device, random contact of that user. */
export interface ChatterStep {
  kind: "chatter";
  /** Generated group name. */
  users: string;
  /** How many messages in all. */
  messages: number;
  /** Spread over this long. */
  overMs: number;
}

/** A step kind a plugin module added (`react:`, `edit:`, …): its validated fields. */
export interface PluginStep {
  kind: "plugin";
  /** The step's name as written. */
  step: string;
  /** The module that added it. */
  module: string;
  args: Record<string, unknown>;
}

/** What a step does (a {@linkcode Step} without its time and position). */
export type StepAction =
  | PluginStep
  | PairStep
  | InviteStep
  | InviteGroupStep
  | DeviceStep
  | HandoverStep
  | RecoverStep
  | RemoveStep
  | SendStep
  | ProfileStep
  | RenameStep
  | ReadStep
  | PartitionStep
  | AddServerStep
  | ChatterStep;

/**
 * One step: when it runs (`atMs` from the start), where it was in the file (`index`), what it
 * does, and whether a device may refuse it (`may_fail: true`; otherwise a refusal fails the run
 * unless the scenario expects it with `{ refused: N }`).
 */
export type Step = { atMs: number; index: number; mayFail?: boolean } & StepAction;

/** Names of the expectations that take no parameters. */
export type SimpleExpectationName =
  | "converged"
  | "no_duplicates"
  | "no_loss"
  | "contacts_blind"
  | "root_key_private"
  | "server_blind"
  | "forwarded"
  | "decrypt_clean"
  | "relay_clean"
  | "pairings_authentic"
  | "traffic_blind"
  | "history"
  | "removed_blind"
  | "reachable";

/** One expectation checked at the end of a run (docs/SCENARIOS.md, "Expectations"). */
export type Expectation =
  | { name: SimpleExpectationName }
  | {
    name: "delivered_within";
    p50Ms?: number;
    p99Ms?: number;
    /**
     * `all`: over messages delivered while every device that must hold them was online; `online`:
     * over every message, to the last device among those that stayed online until it arrived
     * there, once one of them is the recipient's. @default {"all"}
     */
    to?: "all" | "online";
  }
  | { name: "count"; messages: number }
  | {
    /**
     * Exactly `steps` refusals of steps without `may_fail` (and of chatter sends); absent, the run
     * expects none.
     */
    name: "refused";
    steps: number;
  }
  | {
    /** An expectation a plugin module added. */
    name: "plugin";
    /** Its name as written (and in the report). */
    expectation: string;
    /** The module that added it. */
    module: string;
    args: Record<string, unknown>;
  };

/** A scenario, validated and normalised: durations in ms, defaults filled in, groups expanded. */
export interface Scenario {
  /** The scenario's name (required in the file). */
  name: string;
  /** Free text; `""` when absent. */
  description: string;
  /** The file's seed, if it has one (the cli's `--seed` wins, else 1). */
  seed?: number;
  /** Virtual time the scenario may run. @default 600000 (10m) */
  durationMs: number;
  /** The file's relay kind (`fake`, `redis`, `redis://h:p`, `http://h:p`), if it names one. */
  server?: string;
  /** Relay names; the first is every identity's home relay. @default ["relay"] */
  servers: string[];
  /** @default latency 20..100 ms, no reordering, duplicates or drops */
  network: NetworkSpec;
  /** How often an online device polls its relays. @default 2000 */
  pollIntervalMs: number;
  /**
   * Devices that poll at their own interval (`poll.devices`), by `user/device`: an always-online
   * device run by a scheduler, such as deploy/agent.ts under `Deno.cron`, polls once a period.
   */
  pollIntervalsMs: Readonly<Record<string, number>>;
  /** Plugin files as the file lists them (`plugins:`, relative to it). */
  pluginFiles: readonly string[];
  /**
   * The plugin modules whose steps and expectations the scenario may use: meowsync's own message
   * plugins (plugins/mod.ts `BUILTIN_MODULES`), then those loaded for it (`plugins:`, `--plugin`).
   */
  modules: readonly PluginModule[];
  /** The loaded ones alone: their plugins run on every device besides the production set. */
  extraModules: readonly PluginModule[];
  /** Relay limits the file sets (every relay of the run gets them); the rest are the relay's defaults. */
  limits: ScenarioLimits;
  /** What a hostile relay does (every relay of the run): `relay: { adversary: [...] }`. */
  adversary: AdversaryKind[];
  /** Share of pairing mailboxes the hostile relay attacks. @default 0.5 */
  adversaryShare: number;
  /** Users in file order, generated groups expanded in place. */
  users: UserSpec[];
  /** Steps stably sorted by `atMs` (file order for equal times). */
  steps: Step[];
  /** Expectations in file order. */
  expect: Expectation[];
  /** Where the scenario came from (the file path), for messages. */
  source: string;
}

/** Relay limits a scenario may set, in the relay's units (ms, bytes, counts). */
export interface ScenarioLimits {
  retentionMs?: number;
  longPollMsMax?: number;
  messageBytesMax?: number;
  messagesPerRequestMax?: number;
  queueLengthMax?: number;
  longPollsOpenMax?: number;
  pullRequestsMax?: number;
  requestBytesMax?: number;
  pullMessagesMax?: number;
  acksPerRequestMax?: number;
  mailboxMsMax?: number;
  mailboxPostsMax?: number;
  mailboxLookupsPerMinuteMax?: number;
  longPollsPerClientMax?: number;
  requestsPerSecondPerClientMax?: number;
}

/** A scenario file's `limits:` keys: durations, and counts or bytes. */
export const LIMIT_DURATIONS = {
  retention: "retentionMs",
  long_poll_max: "longPollMsMax",
} as const;
export const LIMIT_COUNTS = {
  message_bytes_max: "messageBytesMax",
  messages_per_request_max: "messagesPerRequestMax",
  queue_length_max: "queueLengthMax",
  long_polls_open_max: "longPollsOpenMax",
  pull_requests_max: "pullRequestsMax",
  request_bytes_max: "requestBytesMax",
  pull_messages_max: "pullMessagesMax",
  acks_per_request_max: "acksPerRequestMax",
  mailbox_posts_max: "mailboxPostsMax",
  mailbox_lookups_per_minute_max: "mailboxLookupsPerMinuteMax",
  long_polls_per_client_max: "longPollsPerClientMax",
  requests_per_second_per_client_max: "requestsPerSecondPerClientMax",
} as const;

// ---------------------------------------------------------------------------
// Input, for scenario modules written in TypeScript

/** A duration as a file writes it: ms, or a string like `250ms`, `10s`, `5m`, `1h`. */
export type DurationInput = number | string;

/** A user or a generated group, as a file writes it. */
export type UserInput =
  | { name: string; devices: string[] }
  | { name: string; count: number; devices: number; pair?: "all" };

/** One step as a file writes it: `at` and exactly one action. */
export interface StepInput {
  at: DurationInput;
  /** A device may refuse this step without failing the run. */
  may_fail?: boolean;
  pair?: {
    user: string;
    from: string;
    to: string;
    via?: PairingVia;
    history?: number | DurationInput;
  };
  invite?: { from: string; to: string; peers?: number; via?: PairingVia };
  offline?: string;
  online?: string;
  crash?: string;
  restart?: string;
  retire?: string;
  lose?: string;
  handover?: { user: string; peer: string; to: string };
  remove?: { device: string; by: string };
  recover?: { user: string; device: string };
  send?: { from: string; to: string; text: string; count?: number; every?: DurationInput };
  profile?: { device: string; nickname?: string; status?: string };
  rename?: { device: string; peer: string; name: string };
  read?: { device: string; peer: string };
  partition?: { devices: string[] | string; for: DurationInput };
  add_server?: { device: string; server: string };
  chatter?: { users: string; messages: number; over: DurationInput };
  /** A step a plugin module adds (`react: { … }`). */
  [pluginStep: string]: unknown;
}

/** One expectation as a file writes it. */
export type ExpectationInput =
  | SimpleExpectationName
  | string
  | Record<string, Record<string, unknown>>
  | { delivered_within: { p50?: DurationInput; p99?: DurationInput; to?: "all" | "online" } }
  | { count: { messages: number } }
  | { refused: number };

/**
 * A scenario as a file writes it; a `.ts` scenario's default export
 * `satisfies ScenarioInput`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseScenario, type ScenarioInput } from "./scenario.ts";
 * const input = {
 *   name: "hello",
 *   users: [{ name: "alice", devices: ["phone"] }, { name: "bob", devices: ["phone"] }],
 *   steps: [{ at: "1s", send: { from: "alice/phone", to: "bob", text: "hi" } }],
 * } satisfies ScenarioInput;
 * assert(parseScenario(input, "hello.ts").steps[0].atMs === 1000);
 * ```
 */
export interface ScenarioInput {
  name: string;
  description?: string;
  seed?: number;
  duration?: DurationInput;
  server?: string;
  servers?: string[];
  network?: {
    latency?: { min?: DurationInput; max?: DurationInput } | DurationInput;
    reorder?: number;
    duplicate?: number;
    drop?: number;
    corrupt?: number;
  };
  poll?: { interval?: DurationInput; devices?: Record<string, DurationInput> };
  plugins?: string[];
  relay?: { adversary?: AdversaryKind[]; share?: number };
  limits?:
    & { -readonly [K in keyof typeof LIMIT_DURATIONS]?: DurationInput }
    & {
      -readonly [K in keyof typeof LIMIT_COUNTS]?: number;
    };
  users?: UserInput[];
  steps?: StepInput[];
  expect?: ExpectationInput[];
}

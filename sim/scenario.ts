/**
 * Scenario files (docs/SCENARIOS.md): read a YAML, JSON or TypeScript file,
 * check every field against the contract, and normalise it into a
 * {@linkcode Scenario} where every duration is whole milliseconds, every
 * default is filled in, generated groups are expanded into users and steps are
 * in the order they run. Bad input is a {@linkcode ScenarioError} naming the
 * field, what was seen and what was expected (the cli exits 2 on it).
 *
 * @module
 */
import { extname } from "node:path";
import { pathToFileURL } from "node:url";
import YAML from "yaml";
import { DURATION_EXPECTED, parseDuration } from "./duration.ts";

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

/** A device goes offline, comes online, crashes (drops all in-memory state) or restarts from its stores. */
export interface DeviceStep {
  kind: "offline" | "online" | "crash" | "restart";
  /** The device. */
  device: DeviceRef;
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

/** What a step does (a {@linkcode Step} without its time and position). */
export type StepAction =
  | PairStep
  | InviteStep
  | InviteGroupStep
  | DeviceStep
  | SendStep
  | ProfileStep
  | RenameStep
  | ReadStep
  | PartitionStep
  | AddServerStep
  | ChatterStep;

/** One step: when it runs (`atMs` from the start), where it was in the file (`index`), and what it does. */
export type Step = { atMs: number; index: number } & StepAction;

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
  | "traffic_blind";

/** One expectation checked at the end of a run (docs/SCENARIOS.md, "Expectations"). */
export type Expectation =
  | { name: SimpleExpectationName }
  | { name: "delivered_within"; p50Ms?: number; p99Ms?: number }
  | { name: "count"; messages: number };

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
/** The largest count limit a file may set (the card's fields are 32-bit). */
const limitCountMax = 0xffffffff;

import { ADVERSARY_KINDS, type AdversaryKind } from "./adversary.ts";

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
  pair?: { user: string; from: string; to: string; via?: PairingVia };
  invite?: { from: string; to: string; peers?: number; via?: PairingVia };
  offline?: string;
  online?: string;
  crash?: string;
  restart?: string;
  send?: { from: string; to: string; text: string; count?: number; every?: DurationInput };
  profile?: { device: string; nickname?: string; status?: string };
  rename?: { device: string; peer: string; name: string };
  read?: { device: string; peer: string };
  partition?: { devices: string[] | string; for: DurationInput };
  add_server?: { device: string; server: string };
  chatter?: { users: string; messages: number; over: DurationInput };
}

/** One expectation as a file writes it. */
export type ExpectationInput =
  | SimpleExpectationName
  | { delivered_within: { p50?: DurationInput; p99?: DurationInput } }
  | { count: { messages: number } };

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
  poll?: { interval?: DurationInput };
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

// ---------------------------------------------------------------------------
// Errors

/** What a {@linkcode ScenarioError} carries besides its source. */
export interface ScenarioErrorDetails {
  /** Where in the file, e.g. `steps[3].send.every`; `""` for the file as a whole. */
  path: string;
  /** The value found there (`undefined` when missing). */
  value: unknown;
  /** What is wrong, e.g. `"10 seconds" is not a duration`. */
  problem: string;
  /** What would have been accepted. */
  expected: string;
  /** A suggestion, e.g. `did you mean "devices"?`. */
  hint?: string;
}

/**
 * A scenario file, or a value in it, is invalid. The message reads
 * `source: path: problem (expected …); hint`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseScenario, ScenarioError } from "./scenario.ts";
 * try {
 *   parseScenario({ name: "x", duration: "10 seconds" }, "x.yaml");
 * } catch (e) {
 *   assert(e instanceof ScenarioError && e.path === "duration");
 * }
 * ```
 */
export class ScenarioError extends Error {
  /** The file (or other source) the scenario came from. */
  readonly source: string;
  /** Where in the file, e.g. `steps[3].send.every`; `""` for the file as a whole. */
  readonly path: string;
  /** The value found there (`undefined` when missing). */
  readonly value: unknown;
  /** What would have been accepted. */
  readonly expected: string;
  /** A suggestion, if there is one. */
  readonly hint?: string;

  /** Builds the message from the details. */
  constructor(source: string, details: ScenarioErrorDetails, options?: ErrorOptions) {
    const where = details.path === "" ? source : `${source}: ${details.path}`;
    const hint = details.hint === undefined ? "" : `; ${details.hint}`;
    super(`${where}: ${details.problem} (expected ${details.expected})${hint}`, options);
    this.name = "ScenarioError";
    this.source = source;
    this.path = details.path;
    this.value = details.value;
    this.expected = details.expected;
    this.hint = details.hint;
  }
}

// ---------------------------------------------------------------------------
// Limits and defaults

/** Users in one scenario, generated ones included. */
const usersMax = 100_000;
/** Devices of one user. */
const devicesPerUserMax = 100;
/** Messages one `send` or `chatter` step may ask for. */
const messagesPerStepMax = 10_000_000;
/** Length of a user, device or relay name. */
const nameLengthMax = 64;

const durationMsDefault = 10 * 60_000;
const latencyMsDefault = { min: 20, max: 100 };
const pollIntervalMsDefault = 2_000;
const serversDefault = ["relay"];
/** Share of pairing mailboxes a hostile relay attacks unless the file says. */
const adversaryShareDefault = 0.5;

const SIMPLE_EXPECTATIONS: readonly SimpleExpectationName[] = [
  "converged",
  "no_duplicates",
  "no_loss",
  "contacts_blind",
  "root_key_private",
  "server_blind",
  "forwarded",
  "decrypt_clean",
  "relay_clean",
  "pairings_authentic",
  "traffic_blind",
];
const EXPECTATION_NAMES = [...SIMPLE_EXPECTATIONS, "delivered_within", "count"];

const STEP_KINDS = [
  "pair",
  "invite",
  "offline",
  "online",
  "crash",
  "restart",
  "send",
  "profile",
  "rename",
  "read",
  "partition",
  "add_server",
  "chatter",
] as const;
type StepKind = typeof STEP_KINDS[number];

const NAME_PATTERN = new RegExp(`^[^\\s/]{1,${nameLengthMax}}$`);
const NAME_EXPECTED = `a name of 1 to ${nameLengthMax} characters without spaces or "/"`;
const DEVICE_EXPECTED = "a device written user/device, e.g. alice/phone";
const SERVER_KIND_EXPECTED = "fake, redis, redis://host:port or http://host:port";

// ---------------------------------------------------------------------------
// Entry points

/**
 * Validates and normalises a scenario read from `source` (a file path, used
 * in messages). Pure: it reads nothing and does not modify `raw`.
 *
 * @throws {ScenarioError} naming the first invalid field
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseScenario } from "./scenario.ts";
 * const s = parseScenario({
 *   name: "crowd",
 *   duration: "1m",
 *   users: [{ name: "crowd", count: 3, devices: 2, pair: "all" }],
 *   steps: [{ at: "0s", invite: { from: "crowd", to: "crowd", peers: 2 } }],
 * }, "crowd.yaml");
 * assert(s.users.map((u) => u.name).join() === "crowd1,crowd2,crowd3");
 * assert(s.steps[0].kind === "invite_group" && s.durationMs === 60_000);
 * ```
 */
export function parseScenario(raw: unknown, source: string): Scenario {
  return new Reader(source).scenario(raw);
}

/**
 * Reads a scenario file: `.yaml`/`.yml` and `.json` by their text, `.ts` (or
 * `.js`, `.mjs`) by importing it and taking its default export; then
 * {@linkcode parseScenario}.
 *
 * @throws {ScenarioError} when the file cannot be read or parsed, or is invalid
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadScenario } from "./scenario.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, JSON.stringify({ name: "empty", duration: "5s" }));
 * const s = await loadScenario(path);
 * assert(s.durationMs === 5000 && s.servers[0] === "relay");
 * await Deno.remove(path);
 * ```
 */
export async function loadScenario(path: string): Promise<Scenario> {
  const ext = extname(path).toLowerCase();
  const fail = (problem: string, expected: string, cause?: unknown): never => {
    throw new ScenarioError(path, { path: "", value: path, problem, expected }, { cause });
  };
  let raw: unknown;
  if (ext === ".yaml" || ext === ".yml" || ext === ".json") {
    let text = "";
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      fail(`cannot read the file: ${(e as Error).message}`, "a readable scenario file", e);
    }
    try {
      raw = ext === ".json"
        ? JSON.parse(text)
        : YAML.parse(text, { uniqueKeys: true, prettyErrors: true });
    } catch (e) {
      const kind = ext === ".json" ? "JSON" : "YAML";
      const message = (e as Error).message.split("\n")[0];
      fail(`cannot parse the file: ${message}`, `valid ${kind}`, e);
    }
  } else if (ext === ".ts" || ext === ".js" || ext === ".mjs") {
    let module: { default?: unknown } = {};
    try {
      module = await import(pathToFileURL(path).href);
    } catch (e) {
      fail(`cannot import the module: ${(e as Error).message}`, "a module that loads", e);
    }
    if (module.default === undefined) {
      fail("the module has no default export", "a default export holding the scenario object");
    }
    raw = module.default;
  } else {
    fail(`unsupported file type "${ext}"`, "a .yaml, .yml, .json or .ts file");
  }
  return parseScenario(raw, path);
}

// ---------------------------------------------------------------------------
// The reader

type Fields = Record<string, unknown>;

/** One generated group after expansion. */
interface Group {
  users: string[];
}

class Reader {
  readonly #source: string;
  #durationMs = durationMsDefault;
  #servers: string[] = serversDefault;
  readonly #devices = new Map<string, string[]>();
  readonly #groups = new Map<string, Group>();

  constructor(source: string) {
    this.#source = source;
  }

  scenario(raw: unknown): Scenario {
    const top = this.#fields(raw, "", [
      "name",
      "description",
      "seed",
      "duration",
      "server",
      "servers",
      "network",
      "poll",
      "limits",
      "relay",
      "users",
      "steps",
      "expect",
    ]);
    const name = this.#string(top.name, "name", { nonEmpty: true });
    const description = top.description === undefined
      ? ""
      : this.#string(top.description, "description");
    let seed: number | undefined;
    if (top.seed !== undefined) {
      seed = this.#integer(top.seed, "seed", 0, Number.MAX_SAFE_INTEGER);
    }
    if (top.duration !== undefined) {
      this.#durationMs = this.#duration(top.duration, "duration", { positive: true });
    }
    let server: string | undefined;
    if (top.server !== undefined) server = this.#serverKind(top.server, "server");
    if (top.servers !== undefined) this.#servers = this.#names(top.servers, "servers", "relay");
    const network = this.#network(top.network);
    const pollIntervalMs = this.#poll(top.poll);
    const limits = this.#limits(top.limits);
    const { adversary, adversaryShare } = this.#relay(top.relay);
    const users = this.#users(top.users);
    const steps = this.#list(top.steps, "steps").map((s, i) => this.#step(s, i));
    steps.sort((a, b) => a.atMs - b.atMs || a.index - b.index);
    const expect = this.#list(top.expect, "expect").map((e, i) =>
      this.#expectation(e, `expect[${i}]`)
    );
    const scenario: Scenario = {
      name,
      description,
      durationMs: this.#durationMs,
      servers: [...this.#servers],
      network,
      pollIntervalMs,
      limits,
      adversary,
      adversaryShare,
      users,
      steps,
      expect,
      source: this.#source,
    };
    if (seed !== undefined) scenario.seed = seed;
    if (server !== undefined) scenario.server = server;
    return scenario;
  }

  // --- sections -------------------------------------------------------------

  #network(raw: unknown): NetworkSpec {
    const network: NetworkSpec = {
      latencyMs: { ...latencyMsDefault },
      reorder: 0,
      duplicate: 0,
      drop: 0,
      corrupt: 0,
    };
    if (raw === undefined) return network;
    const f = this.#fields(raw, "network", ["latency", "reorder", "duplicate", "drop", "corrupt"]);
    if (f.latency !== undefined && typeof f.latency === "object") {
      const l = this.#fields(f.latency, "network.latency", ["min", "max"]);
      if (l.min !== undefined) network.latencyMs.min = this.#duration(l.min, "network.latency.min");
      if (l.max !== undefined) network.latencyMs.max = this.#duration(l.max, "network.latency.max");
      if (network.latencyMs.min > network.latencyMs.max) {
        this.#fail({
          path: "network.latency",
          value: f.latency,
          problem: `min ${network.latencyMs.min}ms is above max ${network.latencyMs.max}ms`,
          expected: "min <= max (defaults: min 20ms, max 100ms)",
        });
      }
    } else if (f.latency !== undefined) {
      // A single duration is a fixed latency; handy, and not ambiguous.
      const ms = this.#duration(f.latency, "network.latency");
      network.latencyMs = { min: ms, max: ms };
    }
    for (const key of ["reorder", "duplicate", "drop", "corrupt"] as const) {
      if (f[key] !== undefined) network[key] = this.#probability(f[key], `network.${key}`);
    }
    return network;
  }

  #limits(raw: unknown): ScenarioLimits {
    if (raw === undefined) return {};
    const f = this.#fields(raw, "limits", [
      ...Object.keys(LIMIT_DURATIONS),
      ...Object.keys(LIMIT_COUNTS),
    ]);
    const limits: ScenarioLimits = {};
    for (const [key, name] of Object.entries(LIMIT_DURATIONS)) {
      if (f[key] !== undefined) {
        limits[name] = this.#duration(f[key], `limits.${key}`, { positive: true });
      }
    }
    for (const [key, name] of Object.entries(LIMIT_COUNTS)) {
      if (f[key] !== undefined) {
        limits[name] = this.#integer(f[key], `limits.${key}`, 1, limitCountMax);
      }
    }
    return limits;
  }

  #relay(raw: unknown): { adversary: AdversaryKind[]; adversaryShare: number } {
    if (raw === undefined) return { adversary: [], adversaryShare: adversaryShareDefault };
    const f = this.#fields(raw, "relay", ["adversary", "share"]);
    const adversaryShare = f.share === undefined
      ? adversaryShareDefault
      : this.#probability(f.share, "relay.share");
    if (f.adversary === undefined) return { adversary: [], adversaryShare };
    const adversary = this.#list(f.adversary, "relay.adversary").map((kind, i) => {
      const path = `relay.adversary[${i}]`;
      if (typeof kind === "string" && (ADVERSARY_KINDS as readonly string[]).includes(kind)) {
        return kind as AdversaryKind;
      }
      const hint = typeof kind === "string" ? suggest(kind, ADVERSARY_KINDS) : undefined;
      this.#fail({
        path,
        value: kind,
        problem: `${show(kind)} is not an adversary${hint ? ` (did you mean ${hint}?)` : ""}`,
        expected: ADVERSARY_KINDS.join(" or "),
      });
    });
    return { adversary, adversaryShare };
  }

  #via(raw: unknown, path: string): PairingVia {
    if (raw === undefined) return "code";
    if (raw === "code" || raw === "link") return raw;
    this.#fail({
      path,
      value: raw,
      problem: `${show(raw)} is not a way to hand a pairing over`,
      expected: "code (a short code typed by hand) or link (a link or QR code)",
    });
  }

  #poll(raw: unknown): number {
    if (raw === undefined) return pollIntervalMsDefault;
    const f = this.#fields(raw, "poll", ["interval"]);
    if (f.interval === undefined) return pollIntervalMsDefault;
    return this.#duration(f.interval, "poll.interval", { positive: true });
  }

  #users(raw: unknown): UserSpec[] {
    const users: UserSpec[] = [];
    const declaredBy = new Map<string, string>();
    const declare = (name: string, path: string, by: string): void => {
      const earlier = declaredBy.get(name);
      if (earlier !== undefined) {
        this.#fail({
          path,
          value: name,
          problem: `"${name}" is declared twice (${earlier} and ${by})`,
          expected: "user and generated group names that are unique after expansion",
        });
      }
      declaredBy.set(name, by);
    };
    this.#list(raw, "users").forEach((entry, i) => {
      const path = `users[${i}]`;
      const f = this.#fields(entry, path, ["name", "devices", "count", "pair"]);
      const name = this.#name(f.name, `${path}.name`, "user");
      if (f.count === undefined) {
        if (f.pair !== undefined) {
          this.#fail({
            path: `${path}.pair`,
            value: f.pair,
            problem: "pair applies to generated groups only",
            expected: "count and devices as numbers beside pair: all; pair a declared " +
              "user's devices with a pair step",
          });
        }
        if (typeof f.devices === "number") {
          this.#fail({
            path: `${path}.devices`,
            value: f.devices,
            problem: "a number of devices needs count (a generated group)",
            expected: "a list of device names, e.g. [phone, laptop]",
          });
        }
        declare(name, `${path}.name`, `users[${i}]`);
        const devices = this.#names(f.devices, `${path}.devices`, "device", devicesPerUserMax);
        this.#devices.set(name, devices);
        users.push({ name, devices });
        return;
      }
      const count = this.#integer(f.count, `${path}.count`, 1, usersMax);
      if (typeof f.devices !== "number") {
        this.#fail({
          path: `${path}.devices`,
          value: f.devices,
          problem: `${show(f.devices)} is not a number of devices`,
          expected:
            `a whole number from 1 to ${devicesPerUserMax} in a generated group (with count)`,
        });
      }
      const deviceCount = this.#integer(f.devices, `${path}.devices`, 1, devicesPerUserMax);
      let pairAll = false;
      if (f.pair !== undefined) {
        if (f.pair !== "all") {
          this.#fail({
            path: `${path}.pair`,
            value: f.pair,
            problem: `${show(f.pair)} is not a pairing`,
            expected: "all",
          });
        }
        pairAll = true;
      }
      declare(name, `${path}.name`, `generated group users[${i}]`);
      const devices = Array.from({ length: deviceCount }, (_, d) => `d${d + 1}`);
      const group: Group = { users: [] };
      for (let n = 1; n <= count; n++) {
        const member = `${name}${n}`;
        declare(member, `${path}.name`, `generated group "${name}"`);
        this.#devices.set(member, devices);
        group.users.push(member);
        users.push({ name: member, devices: [...devices], generated: { group: name, pairAll } });
      }
      this.#groups.set(name, group);
    });
    if (users.length > usersMax) {
      this.#fail({
        path: "users",
        value: users.length,
        problem: `${users.length} users after expanding generated groups`,
        expected: `at most ${usersMax}`,
      });
    }
    return users;
  }

  #step(raw: unknown, index: number): Step {
    const path = `steps[${index}]`;
    const f = this.#fields(raw, path, ["at", ...STEP_KINDS]);
    const kinds = STEP_KINDS.filter((k) => f[k] !== undefined);
    if (kinds.length !== 1) {
      this.#fail({
        path,
        value: raw,
        problem: kinds.length === 0
          ? "the step has no action"
          : `the step has ${kinds.length} actions (${kinds.join(", ")})`,
        expected: `at and exactly one of ${STEP_KINDS.join(", ")}`,
      });
    }
    if (f.at === undefined) {
      this.#fail({
        path: `${path}.at`,
        value: undefined,
        problem: "missing",
        expected: `the time the step runs, ${DURATION_EXPECTED}`,
      });
    }
    const atMs = this.#withinDuration(f.at, `${path}.at`, 0);
    const action = this.#action(kinds[0], f[kinds[0]], `${path}.${kinds[0]}`, atMs);
    return { atMs, index, ...action };
  }

  #action(kind: StepKind, raw: unknown, path: string, atMs: number): StepAction {
    switch (kind) {
      case "pair": {
        const f = this.#fields(raw, path, ["user", "from", "to", "via"]);
        const user = this.#user(f.user, `${path}.user`);
        const from = this.#deviceOf(user, f.from, `${path}.from`);
        const to = this.#deviceOf(user, f.to, `${path}.to`);
        if (from === to) {
          this.#fail({
            path: `${path}.to`,
            value: f.to,
            problem: `a device cannot pair with itself`,
            expected: `another device of ${user} than ${from}`,
          });
        }
        return { kind, user, from, to, via: this.#via(f.via, `${path}.via`) };
      }
      case "invite":
        return this.#invite(raw, path);
      case "offline":
      case "online":
      case "crash":
      case "restart":
        return { kind, device: this.#device(raw, path) };
      case "send": {
        const f = this.#fields(raw, path, ["from", "to", "text", "count", "every"]);
        const from = this.#device(f.from, `${path}.from`);
        const to = this.#peer(f.to, `${path}.to`, from, "send");
        const text = this.#string(f.text, `${path}.text`);
        const count = f.count === undefined
          ? 1
          : this.#integer(f.count, `${path}.count`, 1, messagesPerStepMax);
        const everyMs = f.every === undefined ? 0 : this.#duration(f.every, `${path}.every`);
        this.#endsWithin(atMs + (count - 1) * everyMs, `${path}.every`, f.every, "last message");
        return { kind, from, to, text, count, everyMs };
      }
      case "profile": {
        const f = this.#fields(raw, path, ["device", "nickname", "status"]);
        const device = this.#device(f.device, `${path}.device`);
        if (f.nickname === undefined && f.status === undefined) {
          this.#fail({
            path,
            value: raw,
            problem: "nothing to change",
            expected: "nickname, status or both",
          });
        }
        const step: ProfileStep = { kind, device };
        if (f.nickname !== undefined) step.nickname = this.#string(f.nickname, `${path}.nickname`);
        if (f.status !== undefined) step.status = this.#string(f.status, `${path}.status`);
        return step;
      }
      case "rename": {
        const f = this.#fields(raw, path, ["device", "peer", "name"]);
        const device = this.#device(f.device, `${path}.device`);
        const peer = this.#peer(f.peer, `${path}.peer`, device, "rename");
        return { kind, device, peer, name: this.#string(f.name, `${path}.name`) };
      }
      case "read": {
        const f = this.#fields(raw, path, ["device", "peer"]);
        const device = this.#device(f.device, `${path}.device`);
        return { kind, device, peer: this.#peer(f.peer, `${path}.peer`, device, "read") };
      }
      case "partition": {
        const f = this.#fields(raw, path, ["devices", "for"]);
        const list = typeof f.devices === "string"
          ? [f.devices]
          : this.#list(f.devices, `${path}.devices`, { nonEmpty: true });
        const devices = list.map((d, i) => this.#device(d, `${path}.devices[${i}]`));
        const twice = devices.find((d, i) => devices.indexOf(d) !== i);
        if (twice !== undefined) {
          this.#fail({
            path: `${path}.devices`,
            value: f.devices,
            problem: `"${twice}" is listed twice`,
            expected: "each device once",
          });
        }
        const forMs = this.#duration(f.for, `${path}.for`, { positive: true });
        this.#endsWithin(atMs + forMs, `${path}.for`, f.for, "partition");
        return { kind, devices, forMs };
      }
      case "add_server": {
        const f = this.#fields(raw, path, ["device", "server"]);
        const device = this.#device(f.device, `${path}.device`);
        const server = this.#string(f.server, `${path}.server`, { nonEmpty: true });
        if (!this.#servers.includes(server)) {
          this.#fail({
            path: `${path}.server`,
            value: server,
            problem: `"${server}" is not one of the scenario's servers`,
            expected: `one of ${this.#servers.join(", ")}`,
            hint: [`declare it: servers: [${[...this.#servers, server].join(", ")}]`]
              .concat(suggest(server, this.#servers) ?? []).join(", or "),
          });
        }
        return { kind, device, server };
      }
      case "chatter": {
        const f = this.#fields(raw, path, ["users", "messages", "over"]);
        const users = this.#group(f.users, `${path}.users`);
        const messages = this.#integer(f.messages, `${path}.messages`, 1, messagesPerStepMax);
        const overMs = f.over === undefined ? 0 : this.#duration(f.over, `${path}.over`);
        this.#endsWithin(atMs + overMs, `${path}.over`, f.over, "chatter");
        return { kind, users, messages, overMs };
      }
    }
  }

  #invite(raw: unknown, path: string): InviteStep | InviteGroupStep {
    const f = this.#fields(raw, path, ["from", "to", "peers", "via"]);
    const via = this.#via(f.via, `${path}.via`);
    const groupForm = f.peers !== undefined ||
      (typeof f.from === "string" && this.#groups.has(f.from));
    if (groupForm) {
      const from = this.#group(f.from, `${path}.from`);
      const to = this.#group(f.to, `${path}.to`);
      if (f.peers === undefined) {
        this.#fail({
          path: `${path}.peers`,
          value: undefined,
          problem: "missing",
          expected: "how many random contacts each user of the group gets, e.g. peers: 5",
        });
      }
      const candidates = this.#groups.get(to)!.users.length - (from === to ? 1 : 0);
      if (candidates < 1) {
        this.#fail({
          path: `${path}.to`,
          value: to,
          problem: `group "${to}" has no other user to invite`,
          expected: "a group with at least 2 users",
        });
      }
      const peers = this.#integer(f.peers, `${path}.peers`, 1, candidates);
      return { kind: "invite_group", from, to, peers, via };
    }
    const from = this.#device(f.from, `${path}.from`);
    let to: DeviceRef;
    if (typeof f.to === "string" && !f.to.includes("/") && this.#devices.has(f.to)) {
      // `to: bob` invites bob's identity, which lives on his first device.
      to = `${f.to}/${this.#devices.get(f.to)![0]}`;
    } else {
      to = this.#device(f.to, `${path}.to`, "a device (user/device) or a user name");
    }
    if (userOf(from) === userOf(to)) {
      this.#fail({
        path: `${path}.to`,
        value: f.to,
        problem: `"${to}" belongs to the inviting user ${userOf(from)}`,
        expected: "a device of another user (pair devices of one user with a pair step)",
      });
    }
    return { kind: "invite", from, to, via };
  }

  #expectation(raw: unknown, path: string): Expectation {
    if (typeof raw === "string") {
      if (raw === "delivered_within" || raw === "count") {
        this.#fail({
          path,
          value: raw,
          problem: `${raw} needs parameters`,
          expected: raw === "count"
            ? "{ count: { messages: N } }"
            : "{ delivered_within: { p50: D, p99: D } }",
        });
      }
      return { name: this.#simpleExpectation(raw, path) };
    }
    const f = this.#fields(raw, path, EXPECTATION_NAMES);
    const keys = Object.keys(f);
    if (keys.length !== 1) {
      this.#fail({
        path,
        value: raw,
        problem: `${keys.length} expectations in one entry`,
        expected: "one expectation per entry",
      });
    }
    const name = keys[0];
    const inner = `${path}.${name}`;
    if (name === "delivered_within") {
      const p = this.#fields(f[name], inner, ["p50", "p99"]);
      if (p.p50 === undefined && p.p99 === undefined) {
        this.#fail({
          path: inner,
          value: f[name],
          problem: "no bound",
          expected: "p50, p99 or both",
        });
      }
      const e: Expectation = { name };
      if (p.p50 !== undefined) e.p50Ms = this.#duration(p.p50, `${inner}.p50`);
      if (p.p99 !== undefined) e.p99Ms = this.#duration(p.p99, `${inner}.p99`);
      if (e.p50Ms !== undefined && e.p99Ms !== undefined && e.p50Ms > e.p99Ms) {
        this.#fail({
          path: inner,
          value: f[name],
          problem: `p50 ${e.p50Ms}ms is above p99 ${e.p99Ms}ms`,
          expected: "p50 <= p99",
        });
      }
      return e;
    }
    if (name === "count") {
      const c = this.#fields(f[name], inner, ["messages"]);
      return {
        name,
        messages: this.#integer(c.messages, `${inner}.messages`, 0, Number.MAX_SAFE_INTEGER),
      };
    }
    // `- converged:` in YAML reads as { converged: null }; accept it as the plain name.
    if (f[name] !== null) {
      this.#fail({
        path: inner,
        value: f[name],
        problem: `${name} takes no parameters`,
        expected: `just the name: - ${name}`,
      });
    }
    return { name: this.#simpleExpectation(name, path) };
  }

  #simpleExpectation(raw: string, path: string): SimpleExpectationName {
    const name = SIMPLE_EXPECTATIONS.find((n) => n === raw);
    if (name === undefined) {
      this.#fail({
        path,
        value: raw,
        problem: `${show(raw)} is not an expectation`,
        expected: `one of ${EXPECTATION_NAMES.join(", ")}`,
        hint: suggest(raw, EXPECTATION_NAMES),
      });
    }
    return name;
  }

  // --- references to users, devices and groups ------------------------------

  #user(raw: unknown, path: string): string {
    const name = this.#string(raw, path, { nonEmpty: true });
    if (!this.#devices.has(name)) this.#unknownUser(name, path);
    return name;
  }

  /** A device name of `user`, written bare (`phone`) or in full (`alice/phone`). */
  #deviceOf(user: string, raw: unknown, path: string): string {
    const written = this.#string(raw, path, { nonEmpty: true });
    const devices = this.#devices.get(user)!;
    let device = written;
    if (written.includes("/")) {
      if (userOf(written) !== user) {
        this.#fail({
          path,
          value: written,
          problem: `"${written}" is not a device of ${user}`,
          expected: `one of ${devices.join(", ")}`,
        });
      }
      device = written.slice(user.length + 1);
    }
    if (!devices.includes(device)) {
      this.#fail({
        path,
        value: written,
        problem: `"${written}" is not a device of ${user}`,
        expected: `one of ${devices.join(", ")}`,
        hint: suggest(device, devices),
      });
    }
    return device;
  }

  #device(raw: unknown, path: string, expected = DEVICE_EXPECTED): DeviceRef {
    if (typeof raw !== "string") {
      this.#fail({ path, value: raw, problem: `${show(raw)} is not a device`, expected });
    }
    const slash = raw.indexOf("/");
    if (slash < 0) {
      const devices = this.#devices.get(raw);
      this.#fail({
        path,
        value: raw,
        problem: devices === undefined
          ? `${show(raw)} is not a device`
          : `"${raw}" names a user, not a device`,
        expected,
        hint: devices === undefined
          ? suggestUser(raw, this.#devices)
          : `${raw}'s devices are ${devices.map((d) => `${raw}/${d}`).join(", ")}`,
      });
    }
    const user = raw.slice(0, slash);
    const device = raw.slice(slash + 1);
    const devices = this.#devices.get(user);
    if (devices === undefined) this.#unknownUser(user, path, raw);
    if (!devices.includes(device)) {
      this.#fail({
        path,
        value: raw,
        problem: `"${raw}" is not a device of ${user}`,
        expected: `one of ${devices.map((d) => `${user}/${d}`).join(", ")}`,
        hint: suggest(device, devices)?.replace(/"(.*)"/, `"${user}/$1"`),
      });
    }
    return raw as DeviceRef;
  }

  /** A user named in `to:`/`peer:`: the conversation of `device`'s user with them. */
  #peer(raw: unknown, path: string, device: DeviceRef, action: string): string {
    if (typeof raw === "string" && raw.includes("/")) {
      const user = userOf(raw);
      this.#fail({
        path,
        value: raw,
        problem: `"${raw}" is a device, but ${action} names a user (the conversation with them)`,
        expected: "a user name",
        hint: this.#devices.has(user) ? `write "${user}"` : suggestUser(user, this.#devices),
      });
    }
    const user = this.#user(raw, path);
    if (user === userOf(device)) {
      this.#fail({
        path,
        value: raw,
        problem: `"${user}" is the user of ${device} itself`,
        expected: "another user, one of its contacts",
      });
    }
    return user;
  }

  #group(raw: unknown, path: string): string {
    const name = this.#string(raw, path, { nonEmpty: true });
    if (!this.#groups.has(name)) {
      const groups = [...this.#groups.keys()];
      this.#fail({
        path,
        value: name,
        problem: this.#devices.has(name)
          ? `"${name}" is a user, not a generated group`
          : `${show(name)} is not a generated group`,
        expected: groups.length === 0
          ? "a generated group (a users entry with count), but the scenario declares none"
          : `one of ${groups.join(", ")}`,
        hint: suggest(name, groups),
      });
    }
    return name;
  }

  #unknownUser(user: string, path: string, written: string = user): never {
    return this.#fail({
      path,
      value: written,
      problem: written === user
        ? `"${user}" is not a user`
        : `"${written}" names an unknown user "${user}"`,
      expected: "a user declared under users",
      hint: suggestUser(user, this.#devices),
    });
  }

  // --- values ----------------------------------------------------------------

  /** The fields of a mapping, refusing any key not in `known` (typo detection). */
  #fields(raw: unknown, path: string, known: readonly string[]): Fields {
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      this.#fail({
        path,
        value: raw,
        problem: path === "" ? "the file does not hold a mapping" : `${show(raw)} is not a mapping`,
        expected: `a mapping with ${known.join(", ")}`,
      });
    }
    const fields = raw as Fields;
    for (const key of Object.keys(fields)) {
      if (!known.includes(key)) {
        this.#fail({
          path: path === "" ? key : `${path}.${key}`,
          value: fields[key],
          problem: "unknown field",
          expected: `one of ${known.join(", ")}`,
          hint: suggest(key, known),
        });
      }
    }
    return fields;
  }

  #list(raw: unknown, path: string, options: { nonEmpty?: boolean } = {}): unknown[] {
    if (raw === undefined && !options.nonEmpty) return [];
    if (!Array.isArray(raw) || (options.nonEmpty && raw.length === 0)) {
      this.#fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a list`,
        expected: options.nonEmpty ? "a non-empty list" : "a list",
      });
    }
    return raw;
  }

  #string(raw: unknown, path: string, options: { nonEmpty?: boolean } = {}): string {
    if (typeof raw !== "string" || (options.nonEmpty && raw === "")) {
      this.#fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a text`,
        expected: options.nonEmpty ? "a non-empty string" : "a string",
      });
    }
    return raw;
  }

  #name(raw: unknown, path: string, what: string): string {
    if (typeof raw !== "string" || !NAME_PATTERN.test(raw)) {
      this.#fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a ${what} name`,
        expected: NAME_EXPECTED,
      });
    }
    return raw;
  }

  /** A non-empty list of unique names. */
  #names(raw: unknown, path: string, what: string, max = usersMax): string[] {
    const list = this.#list(raw, path, { nonEmpty: true });
    if (list.length > max) {
      this.#fail({
        path,
        value: list.length,
        problem: `${list.length} ${what}s`,
        expected: `at most ${max}`,
      });
    }
    const names = list.map((n, i) => this.#name(n, `${path}[${i}]`, what));
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) {
        this.#fail({
          path: `${path}[${i}]`,
          value: n,
          problem: `"${n}" is listed twice`,
          expected: `unique ${what} names`,
        });
      }
    });
    return names;
  }

  #integer(raw: unknown, path: string, min: number, max: number): number {
    if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < min || raw > max) {
      this.#fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is out of range or not whole`,
        expected: `a whole number from ${min} to ${max}`,
      });
    }
    return raw;
  }

  #probability(raw: unknown, path: string): number {
    if (typeof raw !== "number" || !(raw >= 0 && raw <= 1)) {
      this.#fail({
        path,
        value: raw,
        problem: `${show(raw)} is not a probability`,
        expected: "a number from 0 to 1, e.g. 0.05",
      });
    }
    return raw;
  }

  #duration(raw: unknown, path: string, options: { positive?: boolean } = {}): number {
    const ms = parseDuration(raw);
    if (ms === undefined) {
      this.#fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a duration`,
        expected: DURATION_EXPECTED,
      });
    }
    if (options.positive && ms === 0) {
      this.#fail({
        path,
        value: raw,
        problem: `${show(raw)} is zero`,
        expected: `a duration above zero, ${DURATION_EXPECTED}`,
      });
    }
    return ms;
  }

  #withinDuration(raw: unknown, path: string, offsetMs: number): number {
    const ms = this.#duration(raw, path);
    this.#endsWithin(offsetMs + ms, path, raw, "step");
    return ms;
  }

  /** Fails when something that ends at `endMs` would run past the scenario's duration. */
  #endsWithin(endMs: number, path: string, value: unknown, what: string): void {
    if (endMs > this.#durationMs) {
      this.#fail({
        path,
        value,
        problem: `the ${what} would end at ${endMs}ms, after the scenario's duration`,
        expected: `everything within duration (${this.#durationMs}ms)`,
      });
    }
  }

  #serverKind(raw: unknown, path: string): string {
    const ok = typeof raw === "string" &&
      (raw === "fake" || raw === "redis" || /^(redis|https?):\/\/\S+$/.test(raw));
    if (!ok) {
      this.#fail({
        path,
        value: raw,
        problem: `${show(raw)} is not a relay kind`,
        expected: SERVER_KIND_EXPECTED,
        hint: typeof raw === "string" ? suggest(raw, ["fake", "redis"]) : undefined,
      });
    }
    return raw as string;
  }

  #fail(details: ScenarioErrorDetails): never {
    throw new ScenarioError(this.#source, details);
  }
}

// ---------------------------------------------------------------------------
// Helpers

function userOf(ref: string): string {
  return ref.slice(0, ref.indexOf("/"));
}

/** A value as it appears in a message: strings quoted, structures abbreviated. */
function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = typeof value === "bigint" ? `${value}` : JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function suggestUser(name: string, devices: Map<string, string[]>): string | undefined {
  return suggest(name, [...devices.keys()]);
}

/** `did you mean "x"?` for the closest candidate, when one is close enough to be a typo. */
function suggest(written: string, candidates: readonly string[]): string | undefined {
  const w = written.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const c = candidate.toLowerCase();
    const d = c.startsWith(w) || w.startsWith(c) ? 1 : editDistance(w, c);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  const allowed = Math.max(1, Math.floor(Math.max(written.length, best?.length ?? 0) / 3));
  return best !== undefined && bestDistance <= allowed ? `did you mean "${best}"?` : undefined;
}

/** Optimal string alignment distance: edits, with a swap of two neighbours counting as one. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => {
    const row = new Array<number>(b.length + 1).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

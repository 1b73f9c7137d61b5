/**
 * Shrinking (`deno task sim FILE --shrink`): when an expectation fails, a
 * greedy delta-debugging search for a smaller scenario that still fails the
 * same expectation with the same seed. It drops users (with every step that
 * mentions them), devices, chunks of steps, lowers `count`s and chatter
 * `messages`, shortens offline, crash and partition windows, and calms the
 * network (no reordering, duplicates or drops; latency at its minimum).
 *
 * Every candidate is written back to the file format and read again with
 * {@linkcode parseScenario}, so a candidate is always a valid scenario and the
 * result loads back exactly as it was run.
 *
 * Longer than most files: the shrinking passes are one search, each pass a small reduction of the
 * same scenario.
 *
 * @module
 */
import { basename, dirname, extname, join } from "node:path";
import YAML from "yaml";
import { HISTORY_DEFAULT } from "../plugins/device_sync/mod.ts";
import type { Report } from "./run.ts";
import {
  type Expectation,
  type ExpectationInput,
  LIMIT_COUNTS,
  LIMIT_DURATIONS,
  parseScenario,
  type Scenario,
  ScenarioError,
  type ScenarioInput,
  type Step,
  type StepInput,
  type UserInput,
} from "./scenario.ts";

/** Runs a shrink may make before it settles for what it has. */
export const shrinkRunsMax = 200;

/** How big a scenario is, as the shrink reports it. */
export interface ScenarioSize {
  users: number;
  devices: number;
  steps: number;
  /** Messages asked for: `send` counts plus chatter `messages`. */
  messages: number;
}

/**
 * The size of a scenario.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseScenario } from "./scenario.ts";
 * import { scenarioSize } from "./shrink.ts";
 * const s = parseScenario({
 *   name: "x",
 *   users: [{ name: "a", devices: ["p", "q"] }, { name: "b", devices: ["p"] }],
 *   steps: [{ at: 0, invite: { from: "a/p", to: "b" } }, { at: 1, send: { from: "a/p", to: "b", text: "t", count: 4 } }],
 * }, "x.yaml");
 * assert(JSON.stringify(scenarioSize(s)) === '{"users":2,"devices":3,"steps":2,"messages":4}');
 * ```
 */
export function scenarioSize(scenario: Scenario): ScenarioSize {
  let messages = 0;
  for (const step of scenario.steps) {
    if (step.kind === "send") messages += step.count;
    if (step.kind === "chatter") messages += step.messages;
  }
  return {
    users: scenario.users.length,
    devices: scenario.users.reduce((n, u) => n + u.devices.length, 0),
    steps: scenario.steps.length,
    messages,
  };
}

/** A duration as a file writes it: the largest whole unit. */
function duration(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms > 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms === 0 ? "0s" : `${ms}ms`;
}

function stepInput(step: Step): StepInput {
  const input = actionInput(step);
  return step.mayFail ? { ...input, may_fail: true } : input;
}

function actionInput(step: Step): StepInput {
  const at = duration(step.atMs);
  switch (step.kind) {
    case "pair": {
      const pair: NonNullable<StepInput["pair"]> = {
        user: step.user,
        from: step.from,
        to: step.to,
        via: step.via,
      };
      const { windowMs, messagesMax } = step.history;
      const isDefault = windowMs === HISTORY_DEFAULT.windowMs &&
        messagesMax === HISTORY_DEFAULT.messagesMax;
      if (!isDefault) {
        pair.history = messagesMax === 0
          ? 0
          : windowMs === undefined
          ? messagesMax
          : duration(windowMs);
      }
      return { at, pair };
    }
    case "invite":
      return { at, invite: { from: step.from, to: step.to, via: step.via } };
    case "invite_group":
      return { at, invite: { from: step.from, to: step.to, peers: step.peers, via: step.via } };
    case "offline":
    case "online":
    case "crash":
    case "restart":
    case "retire":
    case "lose":
      return { at, [step.kind]: step.device };
    case "handover":
      return { at, handover: { user: step.user, peer: step.peer, to: step.to } };
    case "remove":
      return { at, remove: { device: step.device, by: step.by } };
    case "recover":
      return { at, recover: { user: step.user, device: step.device } };
    case "send": {
      const send: NonNullable<StepInput["send"]> = {
        from: step.from,
        to: step.to,
        text: step.text,
      };
      if (step.count !== 1) send.count = step.count;
      if (step.everyMs !== 0) send.every = duration(step.everyMs);
      return { at, send };
    }
    case "profile": {
      const profile: NonNullable<StepInput["profile"]> = { device: step.device };
      if (step.nickname !== undefined) profile.nickname = step.nickname;
      if (step.status !== undefined) profile.status = step.status;
      return { at, profile };
    }
    case "rename":
      return { at, rename: { device: step.device, peer: step.peer, name: step.name } };
    case "read":
      return { at, read: { device: step.device, peer: step.peer } };
    case "partition":
      return { at, partition: { devices: [...step.devices], for: duration(step.forMs) } };
    case "add_server":
      return { at, add_server: { device: step.device, server: step.server } };
    case "chatter":
      return {
        at,
        chatter: { users: step.users, messages: step.messages, over: duration(step.overMs) },
      };
    case "plugin":
      return { at, [step.step]: { ...step.args } };
  }
}

function expectationInput(e: Expectation): ExpectationInput {
  if (e.name === "delivered_within") {
    const bounds: { p50?: string; p99?: string; to?: "all" | "online" } = {};
    if (e.p50Ms !== undefined) bounds.p50 = duration(e.p50Ms);
    if (e.p99Ms !== undefined) bounds.p99 = duration(e.p99Ms);
    if (e.to !== undefined) bounds.to = e.to;
    return { delivered_within: bounds };
  }
  if (e.name === "count") return { count: { messages: e.messages } };
  if (e.name === "refused") return { refused: e.steps };
  if (e.name === "plugin") {
    return Object.keys(e.args).length === 0 ? e.expectation : { [e.expectation]: { ...e.args } };
  }
  return e.name;
}

/**
 * A normalised scenario written back in the file format of SCENARIOS.md
 * (durations as strings, steps with `at`, generated groups folded back into
 * `count:` entries): `parseScenario(scenarioInput(s))` gives `s` again.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseScenario } from "./scenario.ts";
 * import { scenarioInput } from "./shrink.ts";
 * const s = parseScenario({ name: "x", duration: "90s", users: [{ name: "g", count: 2, devices: 2, pair: "all" }] }, "x.yaml");
 * const input = scenarioInput(s);
 * assert(input.duration === "90s" && input.users?.length === 1);
 * assert(JSON.stringify(parseScenario(input, "x.yaml")) === JSON.stringify(s));
 * ```
 */
export function scenarioInput(scenario: Scenario): ScenarioInput {
  const users: UserInput[] = [];
  const groups = new Set<string>();
  for (const user of scenario.users) {
    if (!user.generated) {
      users.push({ name: user.name, devices: [...user.devices] });
      continue;
    }
    const group = user.generated.group;
    if (groups.has(group)) continue;
    groups.add(group);
    const count = scenario.users.filter((u) => u.generated?.group === group).length;
    const entry: UserInput = { name: group, count, devices: user.devices.length };
    if (user.generated.pairAll) entry.pair = "all";
    users.push(entry);
  }
  const { latencyMs, reorder, duplicate, drop, corrupt } = scenario.network;
  const input: ScenarioInput = { name: scenario.name };
  if (scenario.description !== "") input.description = scenario.description;
  if (scenario.seed !== undefined) input.seed = scenario.seed;
  input.duration = duration(scenario.durationMs);
  if (scenario.server !== undefined) input.server = scenario.server;
  input.servers = [...scenario.servers];
  input.network = {
    latency: { min: duration(latencyMs.min), max: duration(latencyMs.max) },
    reorder,
    duplicate,
    drop,
    ...(corrupt > 0 ? { corrupt } : {}),
  };
  input.poll = { interval: duration(scenario.pollIntervalMs) };
  if (scenario.pluginFiles.length > 0) input.plugins = [...scenario.pluginFiles];
  const own = Object.entries(scenario.pollIntervalsMs).filter(([ref]) =>
    scenario.users.some((u) => u.devices.some((d) => `${u.name}/${d}` === ref))
  );
  if (own.length > 0) {
    input.poll.devices = Object.fromEntries(own.map(([ref, ms]) => [ref, duration(ms)]));
  }
  const limits: NonNullable<ScenarioInput["limits"]> = {};
  for (const [key, name] of Object.entries(LIMIT_DURATIONS)) {
    const ms = scenario.limits[name];
    if (ms !== undefined) limits[key as keyof typeof LIMIT_DURATIONS] = duration(ms);
  }
  for (const [key, name] of Object.entries(LIMIT_COUNTS)) {
    const n = scenario.limits[name];
    if (n !== undefined) limits[key as keyof typeof LIMIT_COUNTS] = n;
  }
  if (Object.keys(limits).length > 0) input.limits = limits;
  if (scenario.adversary.length > 0) {
    input.relay = { adversary: [...scenario.adversary], share: scenario.adversaryShare };
  }
  input.users = users;
  // In file order: the reader sorts by time again and numbers the steps as before.
  input.steps = [...scenario.steps].sort((a, b) => a.index - b.index).map(stepInput);
  input.expect = scenario.expect.map(expectationInput);
  return input;
}

/** Where the shrunk scenario of `file` is written: `<name>.shrunk.yaml` beside it. */
export function shrunkPath(file: string): string {
  const name = basename(file, extname(file)).replace(/\.shrunk$/, "");
  return join(dirname(file), `${name}.shrunk.yaml`);
}

/**
 * Writes `scenario` as YAML to `path` (which `deno task sim` loads back).
 *
 * @example
 * ```ts ignore
 * await writeShrunk("scenarios/crowd.shrunk.yaml", result.scenario);
 * ```
 */
export async function writeShrunk(path: string, scenario: Scenario): Promise<void> {
  const header = `# Written by deno task sim --shrink from ${scenario.source}; it fails ` +
    `${scenario.expect.map((e) => e.name).join(", ")} with seed ${scenario.seed ?? 1}.\n`;
  await Deno.writeTextFile(path, header + YAML.stringify(scenarioInput(scenario)));
}

// ---------------------------------------------------------------------------
// Candidates: each a smaller scenario, or undefined when the change makes none.

function userOf(ref: string): string {
  return ref.slice(0, ref.indexOf("/"));
}

/** The steps left when `gone` (users or devices) no longer exist. */
function withoutRefs(
  steps: Step[],
  goneUser: (u: string) => boolean,
  goneRef: (r: string) => boolean,
) {
  const out: Step[] = [];
  for (const step of steps) {
    switch (step.kind) {
      case "pair":
        if (goneUser(step.user)) continue;
        if (goneRef(`${step.user}/${step.from}`) || goneRef(`${step.user}/${step.to}`)) continue;
        break;
      case "invite":
        if (goneRef(step.from) || goneRef(step.to)) continue;
        break;
      case "send":
        if (goneRef(step.from) || goneUser(step.to)) continue;
        break;
      case "rename":
      case "read":
        if (goneRef(step.device) || goneUser(step.peer)) continue;
        break;
      case "partition": {
        const devices = step.devices.filter((d) => !goneRef(d));
        if (devices.length === 0) continue;
        out.push({ ...step, devices });
        continue;
      }
      case "invite_group":
      case "chatter":
        break;
      case "handover":
        if (goneRef(`${step.user}/${step.to}`) || goneUser(step.peer)) continue;
        break;
      case "remove":
        if (goneRef(step.device) || goneRef(step.by)) continue;
        break;
      case "recover":
        if (goneRef(`${step.user}/${step.device}`)) continue;
        break;
      case "plugin": {
        // Its device and user fields are strings among its args.
        const refs = Object.values(step.args).filter((v): v is string => typeof v === "string");
        if (refs.some((v) => (v.includes("/") && goneRef(v)) || goneUser(v))) continue;
        break;
      }
      default:
        if (goneRef(step.device)) continue;
    }
    out.push(step);
  }
  return out;
}

function dropUser(s: Scenario, index: number): Scenario | undefined {
  const user = s.users[index];
  if (user.generated) {
    // Generated members are numbered 1..count: only the last can go.
    const group = user.generated.group;
    const members = s.users.filter((u) => u.generated?.group === group);
    if (members[members.length - 1] !== user) return undefined;
    const users = s.users.filter((u) => u !== user);
    let steps = withoutRefs(s.steps, (u) => u === user.name, (r) => userOf(r) === user.name);
    const size = (g: string) => users.filter((u) => u.generated?.group === g).length;
    steps = steps.flatMap((step): Step[] => {
      if (step.kind === "chatter" && size(step.users) === 0) return [];
      if (step.kind !== "invite_group") return [step];
      const candidates = size(step.to) - (step.from === step.to ? 1 : 0);
      if (size(step.from) === 0 || candidates < 1) return [];
      return [{ ...step, peers: Math.min(step.peers, candidates) }];
    });
    return { ...s, users, steps };
  }
  return {
    ...s,
    users: s.users.filter((u) => u !== user),
    steps: withoutRefs(s.steps, (u) => u === user.name, (r) => userOf(r) === user.name),
  };
}

function dropDevice(s: Scenario, userIndex: number, device: string): Scenario | undefined {
  const user = s.users[userIndex];
  if (user.devices.length < 2) return undefined;
  if (user.generated) {
    // Generated devices are d1..dN for every member: drop dN from all of them.
    if (device !== user.devices[user.devices.length - 1]) return undefined;
    const group = user.generated.group;
    const inGroup = (name: string) =>
      s.users.some((u) => u.name === name && u.generated?.group === group);
    return {
      ...s,
      users: s.users.map((u) =>
        u.generated?.group === group ? { ...u, devices: u.devices.slice(0, -1) } : u
      ),
      steps: withoutRefs(
        s.steps,
        () => false,
        (r) => inGroup(userOf(r)) && r.endsWith(`/${device}`),
      ),
    };
  }
  const ref = `${user.name}/${device}`;
  return {
    ...s,
    users: s.users.map((u) =>
      u === user ? { ...u, devices: u.devices.filter((d) => d !== device) } : u
    ),
    steps: withoutRefs(s.steps, () => false, (r) => r === ref),
  };
}

function replaceStep(s: Scenario, index: number, step: Step | undefined): Scenario {
  const steps = [...s.steps];
  if (step) steps[index] = step;
  else steps.splice(index, 1);
  return { ...s, steps };
}

/** Smaller `count`s and `messages`: first to the least, then by halves. */
function fewerMessages(s: Scenario): Scenario[] {
  const out: Scenario[] = [];
  s.steps.forEach((step, i) => {
    if (step.kind === "send" && step.count > 1) {
      out.push(replaceStep(s, i, { ...step, count: 1 }));
      if (step.count > 2) {
        out.push(replaceStep(s, i, { ...step, count: Math.ceil(step.count / 2) }));
      }
    }
    if (step.kind === "chatter" && step.messages > 1) {
      out.push(replaceStep(s, i, { ...step, messages: 1 }));
      if (step.messages > 2) {
        out.push(replaceStep(s, i, { ...step, messages: Math.ceil(step.messages / 2) }));
      }
    }
  });
  return out;
}

/** Shorter offline, crash and partition windows: the end moves halfway to the start. */
function shorterWindows(s: Scenario): Scenario[] {
  const out: Scenario[] = [];
  s.steps.forEach((step, i) => {
    if (step.kind === "partition" && step.forMs > 1) {
      out.push(replaceStep(s, i, { ...step, forMs: Math.max(1, Math.floor(step.forMs / 2)) }));
    }
    if (step.kind !== "offline" && step.kind !== "crash") return;
    const end = step.kind === "offline" ? "online" : "restart";
    const j = s.steps.findIndex((e, k) =>
      k > i && e.kind === end && (e as { device: string }).device === step.device
    );
    if (j < 0) return;
    const gapMs = s.steps[j].atMs - step.atMs;
    if (gapMs < 2) return;
    out.push(replaceStep(s, j, { ...s.steps[j], atMs: step.atMs + Math.floor(gapMs / 2) }));
  });
  return out;
}

/** A calmer network: each disturbance off, latency at its minimum. */
function calmerNetwork(s: Scenario): Scenario[] {
  const n = s.network;
  const out: Scenario[] = [];
  if (n.reorder + n.duplicate + n.drop + n.corrupt > 0) {
    out.push({ ...s, network: { ...n, reorder: 0, duplicate: 0, drop: 0, corrupt: 0 } });
  }
  for (const key of ["reorder", "duplicate", "drop", "corrupt"] as const) {
    if (n[key] > 0) out.push({ ...s, network: { ...n, [key]: 0 } });
  }
  if (n.latencyMs.max > n.latencyMs.min) {
    out.push({
      ...s,
      network: { ...n, latencyMs: { min: n.latencyMs.min, max: n.latencyMs.min } },
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// The search

/** Options of {@linkcode shrinkScenario}. */
export interface ShrinkOptions {
  /** The name of the failing expectation every candidate must still fail. */
  expectation: string;
  /** Runs a candidate (same seed, same relay and storage) and returns its report. */
  run: (scenario: Scenario) => Promise<Report>;
  /** @default shrinkRunsMax (200) */
  runsMax?: number;
  /** Gets a line of progress now and then. */
  progress?: (line: string) => void;
}

/** What {@linkcode shrinkScenario} found. */
export interface ShrinkResult {
  /** The smallest failing scenario found (the original's, if nothing smaller fails). */
  scenario: Scenario;
  /** Candidate runs made. */
  runs: number;
}

/**
 * Greedily shrinks `scenario` while it keeps failing `options.expectation`.
 * The result keeps only that expectation (the others would not be checked
 * against what remains).
 *
 * @example
 * ```ts ignore
 * const { scenario: small } = await shrinkScenario(scenario, {
 *   expectation: "converged",
 *   run: (candidate) => runScenario(candidate, { seed: 7 }),
 * });
 * ```
 */
export async function shrinkScenario(
  scenario: Scenario,
  options: ShrinkOptions,
): Promise<ShrinkResult> {
  const runsMax = options.runsMax ?? shrinkRunsMax;
  const progress = options.progress ?? (() => {});
  const tried = new Map<string, boolean>();
  let runs = 0;
  const show = (s: Scenario) => {
    const z = scenarioSize(s);
    return `${z.users} users, ${z.devices} devices, ${z.steps} steps, ${z.messages} messages`;
  };
  /** Normalises a candidate through the file format; undefined when it is no valid scenario. */
  const normal = (s: Scenario): Scenario | undefined => {
    try {
      return parseScenario(scenarioInput(s), scenario.source, { modules: scenario.extraModules });
    } catch (e) {
      if (e instanceof ScenarioError) return undefined;
      throw e;
    }
  };
  const fails = async (candidate: Scenario | undefined): Promise<Scenario | undefined> => {
    const s = candidate && normal(candidate);
    if (!s || runs >= runsMax) return undefined;
    const key = JSON.stringify(scenarioInput(s));
    if (key === JSON.stringify(scenarioInput(current))) return undefined; // no change
    let failed = tried.get(key);
    if (failed === undefined) {
      runs++;
      let report: Report | undefined;
      try {
        report = await options.run(s);
      } catch {
        report = undefined; // a candidate that crashes the run is not the failure we keep
      }
      failed = report?.expectations.some((e) => e.name === options.expectation && !e.ok) ?? false;
      tried.set(key, failed);
    }
    return failed ? s : undefined;
  };

  const only = scenario.expect.filter((e) => e.name === options.expectation);
  let current = normal({ ...scenario, expect: only.length > 0 ? only : scenario.expect })!;
  const accept = (s: Scenario, what: string) => {
    current = s;
    progress(`${what}: ${show(s)} (${runs} runs)`);
  };
  progress(`from ${show(current)}, at most ${runsMax} runs`);

  /** Tries candidates of one kind, taking each that still fails and going on from there. */
  const sweep = async (what: string, candidates: (s: Scenario) => (Scenario | undefined)[]) => {
    let changed = false;
    for (let i = 0; runs < runsMax; i++) {
      const list = candidates(current);
      if (i >= list.length) break;
      const smaller = await fails(list[i]);
      if (smaller) {
        accept(smaller, what);
        changed = true;
        i--; // the list changed under index i: try what now stands there
      }
    }
    return changed;
  };

  /** Delta debugging over the steps: drop chunks, halving their size. */
  const dropSteps = async () => {
    let changed = false;
    for (let size = Math.ceil(current.steps.length / 2); size >= 1 && runs < runsMax;) {
      let i = 0;
      while (i < current.steps.length && runs < runsMax) {
        const steps = [...current.steps];
        steps.splice(i, size);
        const smaller = await fails({ ...current, steps });
        if (smaller) {
          accept(smaller, `dropped ${size} step(s)`);
          changed = true;
        } else i += size;
      }
      if (size === 1) break;
      size = Math.ceil(size / 2);
    }
    return changed;
  };

  for (let pass = 1; runs < runsMax; pass++) {
    let changed = false;
    changed = await sweep("dropped a user", (s) =>
      s.users.map((_, i) => dropUser(s, i)).reverse()) ||
      changed;
    changed = await sweep("dropped a device", (s) =>
      s.users.flatMap((u, i) =>
        u.devices.map((d) =>
          dropDevice(s, i, d)
        )
      ).reverse()) || changed;
    changed = await dropSteps() || changed;
    changed = await sweep("fewer messages", fewerMessages) || changed;
    changed = await sweep("shorter window", shorterWindows) || changed;
    changed = await sweep("calmer network", calmerNetwork) || changed;
    if (!changed) break;
    progress(`pass ${pass} done: ${show(current)} (${runs} runs)`);
  }
  if (runs >= runsMax) progress(`stopped at shrinkRunsMax (${runsMax} runs)`);
  return { scenario: current, runs };
}

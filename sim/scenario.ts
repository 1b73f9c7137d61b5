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
import { dirname, extname, resolve } from "node:path";
import type { PluginModule } from "../kernel/mod.ts";
import {
  BUILTIN_MODULES,
  loadPluginModule,
  PluginModuleError,
  productionPlugins,
} from "../plugins/mod.ts";
import { pathToFileURL } from "node:url";
import YAML from "yaml";
import { ADVERSARY_KINDS, type AdversaryKind } from "./adversary.ts";
import { ScenarioError } from "./scenario_error.ts";
import {
  LIMIT_COUNTS,
  LIMIT_DURATIONS,
  type NetworkSpec,
  type Scenario,
  type ScenarioLimits,
  type UserSpec,
} from "./scenario_types.ts";
import { readExpectation } from "./_scenario_expect.ts";
import { readStep } from "./_scenario_steps.ts";
import {
  devicesPerUserMax,
  type Group,
  ScenarioValues,
  show,
  suggest,
  usersMax,
} from "./_scenario_values.ts";

export * from "./scenario_types.ts";
export * from "./scenario_error.ts";

/** The largest count limit a file may set (the card's fields are 32-bit). */
const limitCountMax = 0xffffffff;
const latencyMsDefault = { min: 20, max: 100 };
const pollIntervalMsDefault = 2_000;
/** Share of pairing mailboxes a hostile relay attacks unless the file says. */
const adversaryShareDefault = 0.5;

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
export function parseScenario(
  raw: unknown,
  source: string,
  options: { modules?: readonly PluginModule[] } = {},
): Scenario {
  const reader = new Reader(source);
  const extra = options.modules ?? [];
  reader.modules = [...BUILTIN_MODULES, ...extra];
  return { ...reader.scenario(raw), extraModules: extra, modules: reader.modules };
}

/** The names of the production plugins: a loaded plugin may not take one. */
const PRODUCTION_NAMES: ReadonlySet<string> = new Set(productionPlugins().map((p) => p.name));

/**
 * Loads the plugin modules a scenario needs: those its `plugins:` lists (relative to the file),
 * then `extra` (paths as given, relative to the working directory).
 *
 * @throws {ScenarioError} for a `plugins:` that is not a list of files, or a module that cannot be
 *   used (plugins/loader.ts)
 */
async function loadModules(
  raw: unknown,
  source: string,
  extra: readonly string[],
): Promise<PluginModule[]> {
  const listed = raw !== null && typeof raw === "object" && !Array.isArray(raw)
    ? (raw as { plugins?: unknown }).plugins
    : undefined;
  if (
    listed !== undefined && (!Array.isArray(listed) || listed.some((f) => typeof f !== "string"))
  ) {
    throw new ScenarioError(source, {
      path: "plugins",
      value: listed,
      problem: `${JSON.stringify(listed)} is not a list of files`,
      expected: "a list of plugin module files, relative to this file: [./reactions.ts]",
    });
  }
  const taken = new Set(PRODUCTION_NAMES);
  const modules: PluginModule[] = [];
  const files = [
    ...((listed as string[] | undefined) ?? []).map((file, i) => ({
      file,
      base: dirname(resolve(source)),
      path: `plugins[${i}]`,
    })),
    ...extra.map((file) => ({ file, base: Deno.cwd(), path: "--plugin" })),
  ];
  for (const { file, base, path } of files) {
    try {
      const module = await loadPluginModule(file, { base, taken });
      taken.add(module.name);
      modules.push(module);
    } catch (e) {
      if (!(e instanceof PluginModuleError)) throw e;
      throw new ScenarioError(source, {
        path,
        value: file,
        problem: e.message,
        expected: "a plugin module (docs/PLUGINS.md)",
      }, { cause: e });
    }
  }
  return modules;
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
export async function loadScenario(
  path: string,
  options: { plugins?: readonly string[] } = {},
): Promise<Scenario> {
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
  const modules = await loadModules(raw, path, options.plugins ?? []);
  return parseScenario(raw, path, { modules });
}

// ---------------------------------------------------------------------------
// The reader

/** Reads a whole scenario: its top-level sections here, steps and expectations beside. */
class Reader extends ScenarioValues {
  scenario(raw: unknown): Scenario {
    const top = this.fields(raw, "", [
      "name",
      "description",
      "seed",
      "duration",
      "server",
      "servers",
      "network",
      "poll",
      "plugins",
      "limits",
      "relay",
      "users",
      "steps",
      "expect",
    ]);
    const name = this.string(top.name, "name", { nonEmpty: true });
    const description = top.description === undefined
      ? ""
      : this.string(top.description, "description");
    let seed: number | undefined;
    if (top.seed !== undefined) {
      seed = this.integer(top.seed, "seed", 0, Number.MAX_SAFE_INTEGER);
    }
    if (top.duration !== undefined) {
      this.durationMs = this.duration(top.duration, "duration", { positive: true });
    }
    let server: string | undefined;
    if (top.server !== undefined) server = this.serverKind(top.server, "server");
    if (top.servers !== undefined) this.servers = this.names(top.servers, "servers", "relay");
    const network = this.#network(top.network);
    const pollIntervalMs = this.#poll(top.poll);
    const limits = this.#limits(top.limits);
    const { adversary, adversaryShare } = this.#relay(top.relay);
    const users = this.#users(top.users);
    const pollIntervalsMs = this.#pollDevices(top.poll);
    const pluginFiles = top.plugins === undefined
      ? []
      : this.list(top.plugins, "plugins").map((f, i) =>
        this.string(f, `plugins[${i}]`, { nonEmpty: true })
      );
    const steps = this.list(top.steps, "steps").map((s, i) => readStep(this, s, i));
    steps.sort((a, b) => a.atMs - b.atMs || a.index - b.index);
    const expect = this.list(top.expect, "expect").map((e, i) =>
      readExpectation(this, e, `expect[${i}]`)
    );
    const scenario: Scenario = {
      name,
      description,
      durationMs: this.durationMs,
      servers: [...this.servers],
      network,
      pollIntervalMs,
      pollIntervalsMs,
      pluginFiles,
      modules: this.modules,
      extraModules: [],
      limits,
      adversary,
      adversaryShare,
      users,
      steps,
      expect,
      source: this.source,
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
    const f = this.fields(raw, "network", ["latency", "reorder", "duplicate", "drop", "corrupt"]);
    if (f.latency !== undefined && typeof f.latency === "object") {
      const l = this.fields(f.latency, "network.latency", ["min", "max"]);
      if (l.min !== undefined) network.latencyMs.min = this.duration(l.min, "network.latency.min");
      if (l.max !== undefined) network.latencyMs.max = this.duration(l.max, "network.latency.max");
      if (network.latencyMs.min > network.latencyMs.max) {
        this.fail({
          path: "network.latency",
          value: f.latency,
          problem: `min ${network.latencyMs.min}ms is above max ${network.latencyMs.max}ms`,
          expected: "min <= max (defaults: min 20ms, max 100ms)",
        });
      }
    } else if (f.latency !== undefined) {
      // A single duration is a fixed latency; handy, and not ambiguous.
      const ms = this.duration(f.latency, "network.latency");
      network.latencyMs = { min: ms, max: ms };
    }
    for (const key of ["reorder", "duplicate", "drop", "corrupt"] as const) {
      if (f[key] !== undefined) network[key] = this.probability(f[key], `network.${key}`);
    }
    return network;
  }

  #limits(raw: unknown): ScenarioLimits {
    if (raw === undefined) return {};
    const f = this.fields(raw, "limits", [
      ...Object.keys(LIMIT_DURATIONS),
      ...Object.keys(LIMIT_COUNTS),
    ]);
    const limits: ScenarioLimits = {};
    for (const [key, name] of Object.entries(LIMIT_DURATIONS)) {
      if (f[key] !== undefined) {
        limits[name] = this.duration(f[key], `limits.${key}`, { positive: true });
      }
    }
    for (const [key, name] of Object.entries(LIMIT_COUNTS)) {
      if (f[key] !== undefined) {
        limits[name] = this.integer(f[key], `limits.${key}`, 1, limitCountMax);
      }
    }
    return limits;
  }

  #relay(raw: unknown): { adversary: AdversaryKind[]; adversaryShare: number } {
    if (raw === undefined) return { adversary: [], adversaryShare: adversaryShareDefault };
    const f = this.fields(raw, "relay", ["adversary", "share"]);
    const adversaryShare = f.share === undefined
      ? adversaryShareDefault
      : this.probability(f.share, "relay.share");
    if (f.adversary === undefined) return { adversary: [], adversaryShare };
    const adversary = this.list(f.adversary, "relay.adversary").map((kind, i) => {
      const path = `relay.adversary[${i}]`;
      if (typeof kind === "string" && (ADVERSARY_KINDS as readonly string[]).includes(kind)) {
        return kind as AdversaryKind;
      }
      const hint = typeof kind === "string" ? suggest(kind, ADVERSARY_KINDS) : undefined;
      this.fail({
        path,
        value: kind,
        problem: `${show(kind)} is not an adversary${hint ? ` (did you mean ${hint}?)` : ""}`,
        expected: ADVERSARY_KINDS.join(" or "),
      });
    });
    return { adversary, adversaryShare };
  }

  #poll(raw: unknown): number {
    if (raw === undefined) return pollIntervalMsDefault;
    const f = this.fields(raw, "poll", ["interval", "devices"]);
    if (f.interval === undefined) return pollIntervalMsDefault;
    return this.duration(f.interval, "poll.interval", { positive: true });
  }

  /** `poll.devices`: `user/device` → its own poll interval (read once the users are known). */
  #pollDevices(raw: unknown): Record<string, number> {
    if (raw === undefined) return {};
    const f = this.fields(raw, "poll", ["interval", "devices"]);
    if (f.devices === undefined) return {};
    const entries = f.devices;
    if (entries === null || typeof entries !== "object" || Array.isArray(entries)) {
      this.fail({
        path: "poll.devices",
        value: entries,
        problem: `${show(entries)} is not a mapping`,
        expected: "a mapping of user/device to a poll interval, such as { alice/cloud: 1m }",
      });
    }
    const out: Record<string, number> = {};
    for (const [ref, value] of Object.entries(entries as Record<string, unknown>)) {
      const device = this.device(ref, `poll.devices.${ref}`);
      out[device] = this.duration(value, `poll.devices.${ref}`, { positive: true });
    }
    return out;
  }

  #users(raw: unknown): UserSpec[] {
    const users: UserSpec[] = [];
    const declaredBy = new Map<string, string>();
    const declare = (name: string, path: string, by: string): void => {
      const earlier = declaredBy.get(name);
      if (earlier !== undefined) {
        this.fail({
          path,
          value: name,
          problem: `"${name}" is declared twice (${earlier} and ${by})`,
          expected: "user and generated group names that are unique after expansion",
        });
      }
      declaredBy.set(name, by);
    };
    this.list(raw, "users").forEach((entry, i) => {
      const path = `users[${i}]`;
      const f = this.fields(entry, path, ["name", "devices", "count", "pair"]);
      const name = this.name(f.name, `${path}.name`, "user");
      if (f.count === undefined) {
        if (f.pair !== undefined) {
          this.fail({
            path: `${path}.pair`,
            value: f.pair,
            problem: "pair applies to generated groups only",
            expected: "count and devices as numbers beside pair: all; pair a declared " +
              "user's devices with a pair step",
          });
        }
        if (typeof f.devices === "number") {
          this.fail({
            path: `${path}.devices`,
            value: f.devices,
            problem: "a number of devices needs count (a generated group)",
            expected: "a list of device names, e.g. [phone, laptop]",
          });
        }
        declare(name, `${path}.name`, `users[${i}]`);
        const devices = this.names(f.devices, `${path}.devices`, "device", devicesPerUserMax);
        this.devices.set(name, devices);
        users.push({ name, devices });
        return;
      }
      const count = this.integer(f.count, `${path}.count`, 1, usersMax);
      if (typeof f.devices !== "number") {
        this.fail({
          path: `${path}.devices`,
          value: f.devices,
          problem: `${show(f.devices)} is not a number of devices`,
          expected:
            `a whole number from 1 to ${devicesPerUserMax} in a generated group (with count)`,
        });
      }
      const deviceCount = this.integer(f.devices, `${path}.devices`, 1, devicesPerUserMax);
      let pairAll = false;
      if (f.pair !== undefined) {
        if (f.pair !== "all") {
          this.fail({
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
        this.devices.set(member, devices);
        group.users.push(member);
        users.push({ name: member, devices: [...devices], generated: { group: name, pairAll } });
      }
      this.groups.set(name, group);
    });
    if (users.length > usersMax) {
      this.fail({
        path: "users",
        value: users.length,
        problem: `${users.length} users after expanding generated groups`,
        expected: `at most ${usersMax}`,
      });
    }
    return users;
  }
}

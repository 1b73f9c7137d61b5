/**
 * The scenario reader's base (private to sim/): the reading of single values
 * (mappings, lists, names, numbers, durations) and of references to users,
 * devices and groups, each failing with a {@linkcode ScenarioError}; and the
 * helpers that word those errors (`did you mean …?`).
 *
 * @module
 */
import { BUILTIN_MODULES } from "../plugins/mod.ts";
import type {
  ExpectationExtension,
  FieldKind,
  FieldSpec,
  PluginModule,
  StepExtension,
} from "../kernel/mod.ts";
import { DURATION_EXPECTED, parseDuration } from "./duration.ts";
import { ScenarioError, type ScenarioErrorDetails } from "./scenario_error.ts";
import type { DeviceRef } from "./scenario_types.ts";

/** Users in one scenario, generated ones included. */
export const usersMax = 100_000;
/** Devices of one user. */
export const devicesPerUserMax = 100;
/** Messages one `send` or `chatter` step may ask for. */
export const messagesPerStepMax = 10_000_000;
/** Length of a user, device or relay name. */
const nameLengthMax = 64;

const durationMsDefault = 10 * 60_000;
const serversDefault = ["relay"];

const NAME_PATTERN = new RegExp(`^[^\\s/]{1,${nameLengthMax}}$`);
const NAME_EXPECTED = `a name of 1 to ${nameLengthMax} characters without spaces or "/"`;
const DEVICE_EXPECTED = "a device written user/device, e.g. alice/phone";
const SERVER_KIND_EXPECTED = "fake, redis, redis://host:port or http://host:port";

/** The fields of a mapping as read, by key. */
export type Fields = Record<string, unknown>;

/** One generated group after expansion. */
export interface Group {
  users: string[];
}

/**
 * What every part of the reader shares: where the scenario came from, the
 * duration and relays read so far, the users and groups declared so far,
 * and the readers of values and references.
 */
export class ScenarioValues {
  /** Where the scenario came from (the file path), for messages. */
  readonly source: string;
  /** The scenario's duration, once read (steps must end within it). */
  durationMs: number = durationMsDefault;
  /** The scenario's relay names, once read. */
  servers: string[] = serversDefault;
  /** Declared users (generated ones included) → their device names. */
  readonly devices: Map<string, string[]> = new Map<string, string[]>();
  /** Generated groups by name. */
  readonly groups: Map<string, Group> = new Map<string, Group>();
  /** The plugin modules whose steps and expectations may appear. */
  modules: readonly PluginModule[] = BUILTIN_MODULES;

  /** The module that adds step `name`, if one does. */
  pluginStep(name: string): { module: PluginModule; step: StepExtension } | undefined {
    for (const module of this.modules) {
      const step = module.steps?.[name];
      if (step) return { module, step };
    }
    return undefined;
  }

  /** The module that adds expectation `name`, if one does. */
  pluginExpectation(
    name: string,
  ): { module: PluginModule; expectation: ExpectationExtension } | undefined {
    for (const module of this.modules) {
      const expectation = module.expectations?.[name];
      if (expectation) return { module, expectation };
    }
    return undefined;
  }

  /** The names of every step kind the modules add. */
  pluginStepNames(): string[] {
    return this.modules.flatMap((m) => Object.keys(m.steps ?? {}));
  }

  /** The names of every expectation the modules add. */
  pluginExpectationNames(): string[] {
    return this.modules.flatMap((m) => Object.keys(m.expectations ?? {}));
  }

  /** Reads the fields of a plugin's step or expectation by their specs. */
  pluginFields(
    raw: unknown,
    path: string,
    specs: Readonly<Record<string, FieldSpec>>,
  ): Record<string, unknown> {
    const names = Object.keys(specs);
    const f = raw === null && names.length === 0 ? {} : this.fields(raw, path, names);
    const out: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(specs)) {
      const value = f[name];
      const at = `${path}.${name}`;
      if (value === undefined) {
        if (spec.required) {
          this.fail({ path: at, value, problem: "missing", expected: describeKind(spec.kind) });
        }
        continue;
      }
      const kind = spec.kind;
      if (kind === "device") out[name] = this.device(value, at);
      else if (kind === "user") out[name] = this.user(value, at);
      else if (kind === "text") out[name] = this.string(value, at, { nonEmpty: true });
      else if (kind === "duration") out[name] = this.duration(value, at);
      else if (kind === "count") out[name] = this.integer(value, at, 0, Number.MAX_SAFE_INTEGER);
      else if (kind === "boolean") {
        if (typeof value !== "boolean") {
          this.fail({
            path: at,
            value,
            problem: `${show(value)} is not true or false`,
            expected: "true or false",
          });
        }
        out[name] = value;
      } else {
        if (typeof value !== "string" || !kind.oneOf.includes(value)) {
          this.fail({
            path: at,
            value,
            problem: `${show(value)} is not one of ${kind.oneOf.join(", ")}`,
            expected: kind.oneOf.join(" or "),
            hint: typeof value === "string" ? suggest(value, [...kind.oneOf]) : undefined,
          });
        }
        out[name] = value;
      }
    }
    return out;
  }

  /** A reader for the scenario from `source`. */
  constructor(source: string) {
    this.source = source;
  }

  // --- references to users, devices and groups ------------------------------

  user(raw: unknown, path: string): string {
    const name = this.string(raw, path, { nonEmpty: true });
    if (!this.devices.has(name)) this.unknownUser(name, path);
    return name;
  }

  /** A device name of `user`, written bare (`phone`) or in full (`alice/phone`). */
  deviceOf(user: string, raw: unknown, path: string): string {
    const written = this.string(raw, path, { nonEmpty: true });
    const devices = this.devices.get(user)!;
    let device = written;
    if (written.includes("/")) {
      if (userOf(written) !== user) {
        this.fail({
          path,
          value: written,
          problem: `"${written}" is not a device of ${user}`,
          expected: `one of ${devices.join(", ")}`,
        });
      }
      device = written.slice(user.length + 1);
    }
    if (!devices.includes(device)) {
      this.fail({
        path,
        value: written,
        problem: `"${written}" is not a device of ${user}`,
        expected: `one of ${devices.join(", ")}`,
        hint: suggest(device, devices),
      });
    }
    return device;
  }

  device(raw: unknown, path: string, expected = DEVICE_EXPECTED): DeviceRef {
    if (typeof raw !== "string") {
      this.fail({ path, value: raw, problem: `${show(raw)} is not a device`, expected });
    }
    const slash = raw.indexOf("/");
    if (slash < 0) {
      const devices = this.devices.get(raw);
      this.fail({
        path,
        value: raw,
        problem: devices === undefined
          ? `${show(raw)} is not a device`
          : `"${raw}" names a user, not a device`,
        expected,
        hint: devices === undefined
          ? suggestUser(raw, this.devices)
          : `${raw}'s devices are ${devices.map((d) => `${raw}/${d}`).join(", ")}`,
      });
    }
    const user = raw.slice(0, slash);
    const device = raw.slice(slash + 1);
    const devices = this.devices.get(user);
    if (devices === undefined) this.unknownUser(user, path, raw);
    if (!devices.includes(device)) {
      this.fail({
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
  peer(raw: unknown, path: string, device: DeviceRef, action: string): string {
    if (typeof raw === "string" && raw.includes("/")) {
      const user = userOf(raw);
      this.fail({
        path,
        value: raw,
        problem: `"${raw}" is a device, but ${action} names a user (the conversation with them)`,
        expected: "a user name",
        hint: this.devices.has(user) ? `write "${user}"` : suggestUser(user, this.devices),
      });
    }
    const user = this.user(raw, path);
    if (user === userOf(device)) {
      this.fail({
        path,
        value: raw,
        problem: `"${user}" is the user of ${device} itself`,
        expected: "another user, one of its contacts",
      });
    }
    return user;
  }

  group(raw: unknown, path: string): string {
    const name = this.string(raw, path, { nonEmpty: true });
    if (!this.groups.has(name)) {
      const groups = [...this.groups.keys()];
      this.fail({
        path,
        value: name,
        problem: this.devices.has(name)
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

  unknownUser(user: string, path: string, written: string = user): never {
    return this.fail({
      path,
      value: written,
      problem: written === user
        ? `"${user}" is not a user`
        : `"${written}" names an unknown user "${user}"`,
      expected: "a user declared under users",
      hint: suggestUser(user, this.devices),
    });
  }

  // --- values ----------------------------------------------------------------

  /** The fields of a mapping, refusing any key not in `known` (typo detection). */
  fields(raw: unknown, path: string, known: readonly string[]): Fields {
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      this.fail({
        path,
        value: raw,
        problem: path === "" ? "the file does not hold a mapping" : `${show(raw)} is not a mapping`,
        expected: `a mapping with ${known.join(", ")}`,
      });
    }
    const fields = raw as Fields;
    for (const key of Object.keys(fields)) {
      if (!known.includes(key)) {
        this.fail({
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

  list(raw: unknown, path: string, options: { nonEmpty?: boolean } = {}): unknown[] {
    if (raw === undefined && !options.nonEmpty) return [];
    if (!Array.isArray(raw) || (options.nonEmpty && raw.length === 0)) {
      this.fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a list`,
        expected: options.nonEmpty ? "a non-empty list" : "a list",
      });
    }
    return raw;
  }

  string(raw: unknown, path: string, options: { nonEmpty?: boolean } = {}): string {
    if (typeof raw !== "string" || (options.nonEmpty && raw === "")) {
      this.fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a text`,
        expected: options.nonEmpty ? "a non-empty string" : "a string",
      });
    }
    return raw;
  }

  name(raw: unknown, path: string, what: string): string {
    if (typeof raw !== "string" || !NAME_PATTERN.test(raw)) {
      this.fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a ${what} name`,
        expected: NAME_EXPECTED,
      });
    }
    return raw;
  }

  /** A non-empty list of unique names. */
  names(raw: unknown, path: string, what: string, max = usersMax): string[] {
    const list = this.list(raw, path, { nonEmpty: true });
    if (list.length > max) {
      this.fail({
        path,
        value: list.length,
        problem: `${list.length} ${what}s`,
        expected: `at most ${max}`,
      });
    }
    const names = list.map((n, i) => this.name(n, `${path}[${i}]`, what));
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) {
        this.fail({
          path: `${path}[${i}]`,
          value: n,
          problem: `"${n}" is listed twice`,
          expected: `unique ${what} names`,
        });
      }
    });
    return names;
  }

  integer(raw: unknown, path: string, min: number, max: number): number {
    if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < min || raw > max) {
      this.fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is out of range or not whole`,
        expected: `a whole number from ${min} to ${max}`,
      });
    }
    return raw;
  }

  probability(raw: unknown, path: string): number {
    if (typeof raw !== "number" || !(raw >= 0 && raw <= 1)) {
      this.fail({
        path,
        value: raw,
        problem: `${show(raw)} is not a probability`,
        expected: "a number from 0 to 1, e.g. 0.05",
      });
    }
    return raw;
  }

  duration(raw: unknown, path: string, options: { positive?: boolean } = {}): number {
    const ms = parseDuration(raw);
    if (ms === undefined) {
      this.fail({
        path,
        value: raw,
        problem: raw === undefined ? "missing" : `${show(raw)} is not a duration`,
        expected: DURATION_EXPECTED,
      });
    }
    if (options.positive && ms === 0) {
      this.fail({
        path,
        value: raw,
        problem: `${show(raw)} is zero`,
        expected: `a duration above zero, ${DURATION_EXPECTED}`,
      });
    }
    return ms;
  }

  withinDuration(raw: unknown, path: string, offsetMs: number): number {
    const ms = this.duration(raw, path);
    this.endsWithin(offsetMs + ms, path, raw, "step");
    return ms;
  }

  /** Fails when something that ends at `endMs` would run past the scenario's duration. */
  endsWithin(endMs: number, path: string, value: unknown, what: string): void {
    if (endMs > this.durationMs) {
      this.fail({
        path,
        value,
        problem: `the ${what} would end at ${endMs}ms, after the scenario's duration`,
        expected: `everything within duration (${this.durationMs}ms)`,
      });
    }
  }

  serverKind(raw: unknown, path: string): string {
    const ok = typeof raw === "string" &&
      (raw === "fake" || raw === "redis" || /^(redis|https?):\/\/\S+$/.test(raw));
    if (!ok) {
      this.fail({
        path,
        value: raw,
        problem: `${show(raw)} is not a relay kind`,
        expected: SERVER_KIND_EXPECTED,
        hint: typeof raw === "string" ? suggest(raw, ["fake", "redis"]) : undefined,
      });
    }
    return raw as string;
  }

  fail(details: ScenarioErrorDetails): never {
    throw new ScenarioError(this.source, details);
  }
}

export function userOf(ref: string): string {
  return ref.slice(0, ref.indexOf("/"));
}

/** A value as it appears in a message: strings quoted, structures abbreviated. */
export function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = typeof value === "bigint" ? `${value}` : JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

export function suggestUser(name: string, devices: Map<string, string[]>): string | undefined {
  return suggest(name, [...devices.keys()]);
}

/** `did you mean "x"?` for the closest candidate, when one is close enough to be a typo. */
export function suggest(written: string, candidates: readonly string[]): string | undefined {
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

/** What a plugin field kind expects, for messages. */
function describeKind(kind: FieldKind): string {
  if (typeof kind === "object") return kind.oneOf.join(" or ");
  return {
    device: "a device, user/device",
    user: "a user of the scenario",
    text: "a non-empty string",
    duration: "a duration like 250ms, 10s, 5m",
    count: "a whole number",
    boolean: "true or false",
  }[kind];
}

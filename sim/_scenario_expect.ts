/**
 * The scenario reader's expectations (private to sim/): one `expect:` entry,
 * read into an {@linkcode Expectation}.
 *
 * @module
 */
import type { Expectation, SimpleExpectationName } from "./scenario_types.ts";
import { type ScenarioValues, show, suggest } from "./_scenario_values.ts";

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
  "history",
  "removed_blind",
  "reachable",
];
const EXPECTATION_NAMES = [...SIMPLE_EXPECTATIONS, "delivered_within", "count", "refused"];

/** Reads one expectation at `path` (`expect[i]`). */
export function readExpectation(r: ScenarioValues, raw: unknown, path: string): Expectation {
  const pluginName = typeof raw === "string"
    ? raw
    : raw !== null && typeof raw === "object" && !Array.isArray(raw) &&
        Object.keys(raw).length === 1
    ? Object.keys(raw)[0]
    : undefined;
  const plugin = pluginName === undefined ? undefined : r.pluginExpectation(pluginName);
  if (plugin && pluginName) {
    const args = typeof raw === "string"
      ? r.pluginFields(null, `${path}.${pluginName}`, plugin.expectation.fields ?? {})
      : r.pluginFields(
        (raw as Record<string, unknown>)[pluginName] ?? null,
        `${path}.${pluginName}`,
        plugin.expectation.fields ?? {},
      );
    return { name: "plugin", expectation: pluginName, module: plugin.module.name, args };
  }
  if (typeof raw === "string") {
    if (raw === "delivered_within" || raw === "count" || raw === "refused") {
      r.fail({
        path,
        value: raw,
        problem: `${raw} needs parameters`,
        expected: raw === "count"
          ? "{ count: { messages: N } }"
          : raw === "refused"
          ? "{ refused: N } (how many steps the devices refuse)"
          : "{ delivered_within: { p50: D, p99: D } }",
      });
    }
    return { name: readSimpleExpectation(r, raw, path) };
  }
  const f = r.fields(raw, path, [...EXPECTATION_NAMES, ...r.pluginExpectationNames()]);
  const keys = Object.keys(f);
  if (keys.length !== 1) {
    r.fail({
      path,
      value: raw,
      problem: `${keys.length} expectations in one entry`,
      expected: "one expectation per entry",
    });
  }
  const name = keys[0];
  const inner = `${path}.${name}`;
  if (name === "delivered_within") {
    const p = r.fields(f[name], inner, ["p50", "p99", "to"]);
    if (p.p50 === undefined && p.p99 === undefined) {
      r.fail({
        path: inner,
        value: f[name],
        problem: "no bound",
        expected: "p50, p99 or both",
      });
    }
    const e: Expectation = { name };
    if (p.p50 !== undefined) e.p50Ms = r.duration(p.p50, `${inner}.p50`);
    if (p.p99 !== undefined) e.p99Ms = r.duration(p.p99, `${inner}.p99`);
    if (p.to !== undefined) {
      if (p.to !== "all" && p.to !== "online") {
        r.fail({
          path: `${inner}.to`,
          value: p.to,
          problem: `${JSON.stringify(p.to)} is not a set of devices`,
          expected: "all (every device online) or online (the devices that stayed online)",
        });
      }
      e.to = p.to;
    }
    if (e.p50Ms !== undefined && e.p99Ms !== undefined && e.p50Ms > e.p99Ms) {
      r.fail({
        path: inner,
        value: f[name],
        problem: `p50 ${e.p50Ms}ms is above p99 ${e.p99Ms}ms`,
        expected: "p50 <= p99",
      });
    }
    return e;
  }
  if (name === "refused") {
    return { name, steps: r.integer(f[name], inner, 0, Number.MAX_SAFE_INTEGER) };
  }
  if (name === "count") {
    const c = r.fields(f[name], inner, ["messages"]);
    return {
      name,
      messages: r.integer(c.messages, `${inner}.messages`, 0, Number.MAX_SAFE_INTEGER),
    };
  }
  // `- converged:` in YAML reads as { converged: null }; accept it as the plain name.
  if (f[name] !== null) {
    r.fail({
      path: inner,
      value: f[name],
      problem: `${name} takes no parameters`,
      expected: `just the name: - ${name}`,
    });
  }
  return { name: readSimpleExpectation(r, name, path) };
}

function readSimpleExpectation(
  r: ScenarioValues,
  raw: string,
  path: string,
): SimpleExpectationName {
  const name = SIMPLE_EXPECTATIONS.find((n) => n === raw);
  if (name === undefined) {
    r.fail({
      path,
      value: raw,
      problem: `${show(raw)} is not an expectation`,
      expected: `one of ${[...EXPECTATION_NAMES, ...r.pluginExpectationNames()].join(", ")}`,
      hint: suggest(raw, [...EXPECTATION_NAMES, ...r.pluginExpectationNames()]),
    });
  }
  return name;
}

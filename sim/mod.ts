/**
 * The simulator's door: what the rest of meowsync (cli/, tests/, bench/) uses
 * of sim/. Run a scenario with {@linkcode runScenario} after
 * {@linkcode loadScenario} (a file) or {@linkcode parseScenario} (a value), or
 * drive the whole command line with {@linkcode main}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseScenario, runScenario, summary } from "./mod.ts";
 * const scenario = parseScenario({
 *   name: "hello",
 *   duration: "1m",
 *   users: [{ name: "alice", devices: ["phone"] }, { name: "bob", devices: ["phone"] }],
 *   steps: [
 *     { at: "0s", invite: { from: "alice/phone", to: "bob" } },
 *     { at: "10s", send: { from: "alice/phone", to: "bob", text: "hi" } },
 *   ],
 *   expect: ["converged"],
 * }, "hello.ts");
 * const report = await runScenario(scenario, { seed: 1 });
 * assert(report.ok, summary(report));
 * ```
 *
 * @module
 */
export { type CliIo, HELP, main, SIM_EXIT } from "./cli.ts";
export { type Report, type RunOptions, runScenario, summary } from "./run.ts";
export {
  type Expectation,
  loadScenario,
  parseScenario,
  type Scenario,
  ScenarioError,
  type ScenarioErrorDetails,
  type ScenarioInput,
  type Step,
} from "./scenario.ts";
export { defaultPlugins } from "./plugins.ts";
export { testIo } from "./_test_io.ts";

/**
 * The typed error of a scenario file: {@linkcode ScenarioError} names the
 * field, what was seen and what was expected (the cli exits 2 on it).
 *
 * @module
 */

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

/**
 * The message plugins' scenario holds every expectation (tests/scenarios_test.ts runs it), and each
 * plugin expectation fails on a broken run: a primary that keeps the contact's reactions and
 * deletions to itself, and edits where the last copy to arrive wins.
 */
import assert from "node:assert/strict";
import { loadScenario, runScenario } from "../sim/mod.ts";
import type { Weakening } from "../plugins/mod.ts";

async function failing(weakening: Weakening, seed?: number): Promise<Map<string, string>> {
  const scenario = await loadScenario("scenarios/plugins_reactions_edits.yaml");
  const report = await runScenario(scenario, { weakening, seed });
  return new Map(report.expectations.filter((e) => !e.ok).map((e) => [e.name, e.detail]));
}

Deno.test("plugins_reactions_edits: a primary that keeps the contact's marks: reactions_converged and deletions_converged fail", async () => {
  assert.deepEqual([...(await failing({})).keys()], []);
  const failed = await failing({ marksNoPassOn: true });
  assert.match(failed.get("reactions_converged") ?? "", /show different reactions/);
  assert.match(failed.get("deletions_converged") ?? "", /show different deletions/);
});

Deno.test("plugins_reactions_edits: the last edit to arrive wins: concurrent edits diverge, edits_converged fails", async () => {
  // Some seed orders the two concurrent edits differently on two devices.
  let detail = "";
  for (let seed = 1; seed <= 10 && detail === ""; seed++) {
    detail = (await failing({ editsLastArrival: true }, seed)).get("edits_converged") ?? "";
  }
  assert.match(detail, /show different edits/);
});

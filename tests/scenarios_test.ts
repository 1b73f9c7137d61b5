/**
 * Every shipped scenario runs with its own seed and every expectation holds.
 * (The slow ones, crowd, hub200 and crowd_many_peers, are left to the CI swarm.)
 */
import assert from "node:assert/strict";
import { loadScenario, runScenario } from "../sim/mod.ts";

const SLOW = new Set(["crowd.yaml", "hub200.yaml", "crowd_many_peers.yaml"]);

for (
  const entry of [...Deno.readDirSync(new URL("../scenarios/", import.meta.url))].sort((a, b) =>
    a.name < b.name ? -1 : 1
  )
) {
  if (
    !/\.(ya?ml|json)$/.test(entry.name) || entry.name.startsWith("_") ||
    entry.name.includes(".shrunk.")
  ) continue;
  Deno.test({
    name: `scenario ${entry.name} holds every expectation`,
    ignore: SLOW.has(entry.name),
    fn: async () => {
      const scenario = await loadScenario(`scenarios/${entry.name}`);
      const report = await runScenario(scenario, {});
      assert.deepEqual(
        report.expectations.filter((e) => !e.ok),
        [],
        `${entry.name}: ${report.replay}`,
      );
    },
  });
}

import assert from "node:assert/strict";
import { testIo } from "./_test_io.ts";
import { main } from "./cli.ts";
import { runScenario } from "./run.ts";
import { loadScenario } from "./scenario.ts";
import { runSwarm } from "./swarm.ts";

const QUICKSTART = "scenarios/quickstart.yaml";

const io = testIo;

Deno.test("runSwarm() gives each seed the digest and trace hash of a direct run", async () => {
  const seeds = [1, 2, 3];
  const results = await runSwarm({ file: QUICKSTART, server: "fake" }, seeds, { workers: 2 });
  assert.deepEqual(results.map((r) => r.seed), seeds);
  const scenario = await loadScenario(QUICKSTART);
  for (const result of results) {
    assert.equal(result.error, undefined);
    const direct = await runScenario(scenario, { seed: result.seed, file: QUICKSTART });
    assert.equal(result.report!.digest, direct.digest, `seed ${result.seed} digest`);
    assert.equal(result.report!.traceHash, direct.traceHash, `seed ${result.seed} traceHash`);
    assert.equal(result.report!.replay, direct.replay);
  }
});

Deno.test("runSwarm() reports a seed whose run throws and goes on with the others", async () => {
  const results = await runSwarm({ file: "no/such/file.yaml", server: "fake" }, [1, 2], {
    workers: 1,
  });
  assert.deepEqual(results.map((r) => r.seed), [1, 2]);
  for (const r of results) assert.match(r.error ?? "", /no\/such\/file\.yaml/);
});

Deno.test("main() --seeds runs the range in workers and prints the summary line", async () => {
  const sink = io({ workers: 2 });
  assert.equal(await main([QUICKSTART, "--seeds", "4..6", "--json", "-"], sink), 0);
  const reports = JSON.parse(sink.stdout);
  assert.deepEqual(reports.map((r: { seed: number }) => r.seed), [4, 5, 6]);
  assert.match(sink.stderr, /seed 4: ok\nseed 5: ok\nseed 6: ok\n/);
  const quiet = io({ workers: 2 });
  assert.equal(await main([QUICKSTART, "--seeds", "4..5", "--quiet"], quiet), 0);
  assert.match(quiet.stdout, /^2 seeds run, 0 failed, [\d.]+ s wall\n$/);
});

Deno.test("main() --seeds prints each failing seed with its replay command and exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync-swarm-" });
  try {
    const path = `${dir}/wrong_count.yaml`;
    const text = await Deno.readTextFile(QUICKSTART);
    await Deno.writeTextFile(path, text.replace("messages: 5", "messages: 6"));
    const sink = io({ workers: 2 });
    assert.equal(await main([path, "--seeds", "1..3", "--quiet"], sink), 1);
    const lines = sink.stdout.trim().split("\n");
    assert.deepEqual(
      lines.slice(0, 3),
      [1, 2, 3].map((seed) =>
        `seed ${seed}: FAIL (count) — replay: deno task sim ${path} --seed ${seed}`
      ),
    );
    assert.match(lines[3], /^3 seeds run, 3 failed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The simulator over a real Redis Cluster (`--server redis-cluster://…`): the same run, to the
 * digest, as over the in-process relay.
 */
import assert from "node:assert/strict";
import { main, testIo } from "../sim/mod.ts";
import { redisClusterSkip, startRedisCluster } from "../server/redis_process.ts";

const skip = redisClusterSkip();

Deno.test({
  name:
    `sim --server redis-cluster:// runs a scenario over a Redis Cluster, to the fake relay's digest${
      skip ? ` (skipped: ${skip})` : ""
    }`,
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const cluster = await startRedisCluster();
    try {
      const file = "scenarios/forward_primary_online.yaml";
      const nodes = cluster.urls.map((url) => new URL(url).host).join(",");
      const over = testIo();
      const code = await main([file, "--server", `redis-cluster://${nodes}`, "--json", "-"], over);
      assert.equal(code, 0, over.stderr);
      const fake = testIo();
      assert.equal(await main([file, "--json", "-"], fake), 0, fake.stderr);
      const [real, plain] = [JSON.parse(over.stdout), JSON.parse(fake.stdout)];
      assert.equal(real.server, `redis-cluster://${nodes}`);
      assert.ok(real.ok, JSON.stringify(real.expectations));
      assert.equal(real.digest, plain.digest);

      // A node nothing listens on: one line, exit 3, before the run.
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const closed = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const down = testIo({ abortAfter: (ms) => AbortSignal.timeout(ms) });
      const failed = await main(
        [file, "--server", `redis-cluster://${nodes},127.0.0.1:${closed}`],
        down,
      );
      assert.equal(failed, 3);
      assert.match(
        down.stderr,
        /^sim: cannot reach the Redis at redis-cluster:\/\/.* \(node 127\.0\.0\.1:\d+\): /,
      );
      assert.equal(down.stderr.trim().split("\n").length, 1);
      const bad = testIo();
      assert.equal(await main([file, "--server", "redis-cluster://nonsense"], bad), 2);
      assert.match(bad.stderr, /does not name Redis Cluster nodes/);
    } finally {
      await cluster.stop();
    }
  },
});

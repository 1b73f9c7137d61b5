// meowsync:production-port — the simulator's command line reads the wall clock for its timing report.
/**
 * `deno task sim FILE [options]`: the simulator's entry point (logic in sim/cli.ts, through sim/mod.ts).
 *
 * @module
 */
import { main } from "../sim/mod.ts";
import { startRedis } from "../server/mod.ts";

const status = await main(Deno.args, {
  out: (text) => Deno.stdout.writeSync(new TextEncoder().encode(text)),
  err: (text) => Deno.stderr.writeSync(new TextEncoder().encode(text)),
  errIsTerminal: Deno.stderr.isTerminal(),
  wallClock: () => performance.now(),
  uniqueId: () => crypto.randomUUID(),
  startRedis: async () => {
    const redis = await startRedis();
    if (!redis) throw new Error("redis-server is not installed");
    return { url: redis.url, stop: () => redis.stop() };
  },
});
Deno.exit(status);

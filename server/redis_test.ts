import { redisSkip, startRedis, type TestRedis } from "./redis_process.ts";
import { backendConformance } from "./backend_conformance.ts";
import { RedisBackend } from "./redis.ts";

let server: TestRedis | undefined;
let harnesses = 0;

backendConformance("RedisBackend", async () => {
  server ??= await startRedis();
  // Each case gets its own key prefix on this file's private server.
  const prefix = `case${harnesses++}:`;
  return {
    open: () => RedisBackend.connect({ url: server!.url, prefix }),
    cleanup: () => Promise.resolve(),
  };
}, { ignore: redisSkip() });

Deno.test({
  name: "RedisBackend tests stop their private redis-server",
  ignore: redisSkip() !== undefined,
  fn: async () => {
    await server?.stop();
  },
});

import { redisSkip, startRedis, type TestRedis } from "./redis_process.ts";
import { backendConformance } from "./backend_conformance.ts";
import { RedisBackend } from "./redis.ts";
import assert from "node:assert/strict";
import { createClient } from "redis";
import { backendCrashTests } from "./_test_backend_crash.ts";

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
  name: "RedisBackend runs its scripts by SHA and loads them again after SCRIPT FLUSH",
  ignore: redisSkip() !== undefined,
  fn: async () => {
    server ??= await startRedis();
    const backend = await RedisBackend.connect({ url: server.url, prefix: "flush:" });
    const admin = createClient({ url: server.url });
    admin.on("error", () => {});
    await admin.connect();
    try {
      const options = { nowMs: 1_000, retentionMs: 60_000, queueLengthMax: 10 };
      const message = (uuid: string) => ({
        queue: "q",
        deliveryUuid: uuid,
        receivedMs: 1_000,
        bytes: new Uint8Array([1, 2, 3]),
      });
      assert.deepEqual(await backend.storeMessages([message("a")], options), [true]);
      await admin.sendCommand(["SCRIPT", "FLUSH"]);
      // Redis holds no script now: each call falls back to EVAL once, and runs once.
      assert.deepEqual(await backend.storeMessages([message("b")], options), [true]);
      await admin.sendCommand(["SCRIPT", "FLUSH"]);
      const read = await backend.readQueues(["q"], { ...options, messagesMax: 10 });
      assert.deepEqual(read.map((m) => m.deliveryUuid), ["a", "b"]);
      await admin.sendCommand(["SCRIPT", "FLUSH"]);
      assert.equal(await backend.ackMessages(["q"], ["a", "b"]), 2);
      const stats = await admin.sendCommand(["INFO", "commandstats"]) as string;
      assert.match(stats, /cmdstat_evalsha:calls=\d+/);
    } finally {
      await admin.quit();
      await backend.close();
    }
  },
});

Deno.test({
  name: "RedisBackend stores and acks batches past Lua's unpack bound in one call",
  ignore: redisSkip() !== undefined,
  fn: async () => {
    server ??= await startRedis();
    const backend = await RedisBackend.connect({ url: server.url, prefix: "big:" });
    try {
      const options = { nowMs: 1_000, retentionMs: 60_000, queueLengthMax: 10_000 };
      const uuids = Array.from({ length: 2_500 }, (_, i) => `u${String(i).padStart(5, "0")}`);
      const batch = uuids.map((deliveryUuid) => ({
        queue: "q",
        deliveryUuid,
        receivedMs: 1_000,
        bytes: new Uint8Array([1]),
      }));
      const stored = await backend.storeMessages(batch, options);
      assert.equal(stored.filter(Boolean).length, 2_500);
      const read = await backend.readQueues(["q"], { ...options, messagesMax: 10_000 });
      assert.deepEqual(read.map((m) => m.deliveryUuid), uuids);
      assert.equal(await backend.ackMessages(["q"], uuids), 2_500);
      assert.equal((await backend.readQueues(["q"], { ...options, messagesMax: 10 })).length, 0);
    } finally {
      await backend.close();
    }
  },
});

Deno.test({
  name: "RedisBackend tests stop their private redis-server",
  ignore: redisSkip() !== undefined,
  fn: async () => {
    await server?.stop();
  },
});

backendCrashTests("RedisBackend", async () => {
  const redis = await startRedis({ durable: true });
  return {
    open: () => RedisBackend.connect({ url: redis.url, prefix: "crash:" }),
    kill: () => redis.kill(),
    restart: () => redis.restart(),
    stop: () => redis.stop(),
  };
}, { ignore: redisSkip() });

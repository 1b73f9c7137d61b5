import { redisSkip, startRedis, type TestRedis } from "./redis_process.ts";
import { backendConformance } from "./backend_conformance.ts";
import { RedisBackend } from "./redis.ts";
import assert from "node:assert/strict";
import { createClient } from "redis";
import { create } from "@bufbuild/protobuf";
import { SeededRandom } from "../crypto/mod.ts";
import { ErrorCode, PackedUserMessageSchema } from "../proto/gen/meow_pb.ts";
import { ManualClock, TestDevice, text } from "../tests/support/relay.ts";
import { ServerCore } from "./core.ts";

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

Deno.test({
  name: "a relay over a Redis that crashed answers BUSY at once, saying why, and once Redis is " +
    "back serves again with everything it had stored",
  ignore: redisSkip() !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const redis = await startRedis({ durable: true });
    const backend = await RedisBackend.connect({ url: redis.url, prefix: "crash:" });
    try {
      const clock = new ManualClock(1_000_000);
      const random = new SeededRandom(41);
      const core = await ServerCore.create({ backend, clock, random: random.fork("relay") });
      const send = (body: Uint8Array) => core.handle(body);
      const sender = new TestDevice(random.fork("sender"), core.card(), send, () => clock.now());
      const receiver = new TestDevice(
        random.fork("receiver"),
        core.card(),
        send,
        () => clock.now(),
      );
      const message = (words: string) =>
        create(PackedUserMessageSchema, {
          destination: receiver.queue,
          payload: new TextEncoder().encode(words),
        });
      assert.equal((await sender.request({ messages: [message("before the crash")] })).stored, 1);

      await redis.kill();
      // Made while Redis is down, answered after it is back: a relay that held the request for
      // the reconnection would store it late (the client may have given up and sent it again).
      const during = sender.request({ messages: [message("during the crash")] });
      await redis.restart();
      const refused = await during;
      assert.equal(refused.stored, 0);
      assert.equal(refused.errors[0]?.code, ErrorCode.BUSY);
      assert.match(refused.errors[0].detail, /^relay storage failed: \S/);

      // node-redis reconnects on its own; the first requests after the restart may still be BUSY.
      let stored = 0;
      for (let attempt = 0; attempt < 100 && stored === 0; attempt++) {
        const answer = await sender.request({ messages: [message("after the crash")] });
        stored = answer.stored;
        if (stored === 0) {
          assert.equal(answer.errors[0]?.code, ErrorCode.BUSY);
          await new Promise((resolve) => setTimeout(resolve, 50)); // the reconnection's backoff
        }
      }
      assert.equal(stored, 1);
      clock.advance(1);
      const pulled = await receiver.request({ pullRequests: [await receiver.pull()] });
      assert.deepEqual(pulled.chat.map(text), ["before the crash", "after the crash"]);
    } finally {
      await backend.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "after Redis restarts, a long poll on one relay is still woken by a store through another",
  ignore: redisSkip() !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const redis = await startRedis({ durable: true });
    const backends = [
      await RedisBackend.connect({ url: redis.url, prefix: "wake:" }),
      await RedisBackend.connect({ url: redis.url, prefix: "wake:" }),
    ];
    try {
      const clock = new ManualClock(1_000_000);
      const random = new SeededRandom(42);
      // Two relay processes over one Redis: the same keys, so one card.
      const [polled, stored] = await Promise.all(
        backends.map((backend, i) =>
          ServerCore.create({ backend, clock, random: random.fork(`relay ${i}`) })
        ),
      );
      const sender = new TestDevice(
        random.fork("sender"),
        stored.card(),
        (body) => stored.handle(body),
        () => clock.now(),
      );
      const receiver = new TestDevice(
        random.fork("receiver"),
        polled.card(),
        (body) => polled.handle(body),
        () => clock.now(),
      );
      /** A long poll through one relay, woken by a store through the other. */
      const wokenBy = (words: string) =>
        within(10_000, `a long poll woken by "${words}"`, async () => {
          clock.advance(1);
          const poll = receiver.request({
            pullRequests: [await receiver.pull()],
            timeoutMs: 20_000,
          });
          await clock.sleepers(1); // asleep on the clock: watching the queue
          const answer = await sender.request({
            messages: [sender.message(receiver.queue, words)],
          });
          assert.equal(answer.stored, 1);
          const woken = await poll;
          assert.deepEqual(woken.chat.map(text), [words]);
          return woken;
        });
      const first = await wokenBy("before the crash");
      await redis.kill();
      await redis.restart();
      // Both relays reconnect by themselves: until then a request is BUSY.
      for (const device of [sender, receiver]) {
        for (let attempt = 0;; attempt++) {
          clock.advance(1);
          const answer = await device.request({
            pullRequests: [await device.pull()],
            acks: device === receiver ? first.chat.map((m) => m.serverDeliveryUuid) : [],
          });
          if (answer.errors.length === 0) break;
          assert.equal(answer.errors[0].code, ErrorCode.BUSY);
          assert(attempt < 100, "the relay did not reconnect to Redis");
          await new Promise((resolve) => setTimeout(resolve, 50)); // the reconnection's backoff
        }
      }
      await wokenBy("after the crash");
    } finally {
      for (const backend of backends) await backend.close();
      await redis.stop();
    }
  },
});

/**
 * `body`'s result, or a failure naming `what` once `ms` of real time passed: a long poll nobody
 * wakes sleeps on a manual clock for ever.
 */
async function within<T>(ms: number, what: string, body: () => Promise<T>): Promise<T> {
  let bound: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    bound = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([body(), late]);
  } finally {
    clearTimeout(bound);
  }
}

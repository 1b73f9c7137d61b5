import { redisClusterSkip, startRedisCluster, type TestRedisCluster } from "./redis_process.ts";
import { backendConformance, within } from "./backend_conformance.ts";
import { backendCrashTests } from "./_test_backend_crash.ts";
import { keySlot, RedisBackend } from "./redis.ts";
import assert from "node:assert/strict";
import { createClient, type RedisClientType } from "redis";

let cluster: TestRedisCluster | undefined;
let harnesses = 0;
const skip = redisClusterSkip();

backendConformance("RedisBackend on a Redis Cluster", async () => {
  cluster ??= await startRedisCluster();
  // Each case gets its own key prefix on this file's private Cluster.
  const prefix = `case${harnesses++}:`;
  return {
    open: () => RedisBackend.connect({ cluster: cluster!.urls, prefix }),
    cleanup: () => Promise.resolve(),
  };
}, { ignore: skip });

/** A test on this file's private Cluster (started by the first test that needs it). */
function clusterTest(name: string, fn: (cluster: TestRedisCluster) => Promise<void>): void {
  Deno.test({
    name: `RedisBackend on a Redis Cluster ${name}${skip ? ` (skipped: ${skip})` : ""}`,
    ignore: skip !== undefined,
    fn: async () => {
      cluster ??= await startRedisCluster();
      await fn(cluster);
    },
  });
}

/** The URL of the Cluster node on `port`. */
const nodeUrl = (port: number) => `redis://127.0.0.1:${port}`;

/** The slot of `queue`'s keys under the key prefix `prefix`. */
const queueSlot = (prefix: string, queue: string) => keySlot(`${prefix}msg:{${queue}}`);

/** Runs `fn` with a plain client of the Cluster node at `url` (for CLUSTER commands). */
async function withNode<T>(url: string, fn: (node: RedisClientType) => Promise<T>): Promise<T> {
  const node = createClient({ url }) as RedisClientType;
  node.on("error", () => {});
  await node.connect();
  try {
    return await fn(node);
  } finally {
    await node.close();
  }
}

/** The port of the master that serves `slot`, asked of the node at `url`. */
function masterPortOf(url: string, slot: number): Promise<number> {
  return withNode(url, async (node) => {
    const slots = await node.sendCommand(["CLUSTER", "SLOTS"]) as [number, number, [
      string,
      number,
    ]][];
    const range = slots.find(([from, to]) => from <= slot && slot <= to);
    assert.ok(range, `no master serves slot ${slot}`);
    return Number(range[2][1]);
  });
}

clusterTest("computes key slots as the Cluster does", async (cluster) => {
  await withNode(cluster.urls[0], async (node) => {
    for (const key of ["q", "msg:{q}", "a{b}c", "x{}y", "{}", "é{ü}", "foo{bar}{zap}"]) {
      assert.equal(keySlot(key), Number(await node.sendCommand(["CLUSTER", "KEYSLOT", key])));
    }
  });
});

clusterTest("wakes a watch by a store on another master", async (cluster) => {
  const prefix = "wake:";
  const first = cluster.urls[0];
  const firstPort = cluster.ports[0];
  // A queue whose keys live on the first master, and one whose keys live on another.
  let here: string | undefined;
  let there: string | undefined;
  for (let i = 0; here === undefined || there === undefined; i++) {
    const queue = `queue${i}`;
    const port = await masterPortOf(first, queueSlot(prefix, queue));
    if (port === firstPort) here ??= queue;
    else there ??= queue;
  }
  const watcher = await RedisBackend.connect({ cluster: [first], prefix });
  const writer = await RedisBackend.connect({ cluster: [first], prefix });
  try {
    const watch = await watcher.watchQueues([here, there]);
    // Bounded, so a watch that is never woken fails the test instead of hanging it.
    const woken = within(
      5_000,
      "the watch woken by a store on another master",
      () => watch.changed,
    );
    assert.deepEqual(
      await writer.storeMessages([{
        queue: there,
        deliveryUuid: "u1",
        receivedMs: 1_000,
        bytes: new Uint8Array([1]),
      }], { nowMs: 1_000, retentionMs: 60_000, queueLengthMax: 10 }),
      [true],
    );
    await woken;
    watch.close();
    const read = await watcher.readQueues([here, there], {
      nowMs: 1_000,
      retentionMs: 60_000,
      messagesMax: 10,
    });
    assert.deepEqual(read.map((m) => [m.queue, m.deliveryUuid]), [[there, "u1"]]);
  } finally {
    await writer.close();
    await watcher.close();
  }
});

clusterTest("stores and acks across slots and sweeps every master", async (cluster) => {
  const backend = await RedisBackend.connect({ cluster: cluster.urls, prefix: "multi:" });
  try {
    // Twelve queues over several slots, and two (`same}…`: hash tag `same`) in one slot.
    const queues = [...Array.from({ length: 10 }, (_, i) => `q${i}`), "same}1", "same}2"];
    assert.equal(keySlot("multi:msg:{same}1}"), keySlot("multi:body:{same}2}"));
    const slots = new Set(queues.map((q) => queueSlot("multi:", q)));
    assert.ok(slots.size > 1);
    const batch = queues.map((queue, i) => ({
      queue,
      deliveryUuid: `u${i}`,
      receivedMs: 1_000 + i,
      bytes: new Uint8Array([i]),
    }));
    const options = { nowMs: 2_000, retentionMs: 60_000, queueLengthMax: 10 };
    assert.deepEqual(await backend.storeMessages(batch, options), queues.map(() => true));
    const read = await backend.readQueues(queues, { ...options, messagesMax: 100 });
    assert.deepEqual(read.map((m) => m.deliveryUuid), batch.map((m) => m.deliveryUuid));
    assert.equal(
      await backend.ackMessages(["q0", "q1", "same}1", "same}2"], ["u0", "u1", "u10", "u11"]),
      4,
    );
    // The rest expire: one sweep finds them on every master.
    assert.equal(await backend.sweep(1_000_000, 60_000), 8);
  } finally {
    await backend.close();
  }
});

/**
 * Moves `slot` with its keys to the master on `toPort`, as a resharding does (IMPORTING and
 * MIGRATING, MIGRATE of every key, then the new owner told to every master).
 */
async function moveSlot(cluster: TestRedisCluster, slot: number, toPort: number): Promise<void> {
  const fromPort = await masterPortOf(cluster.urls[0], slot);
  const idOf = (port: number) =>
    withNode(nodeUrl(port), async (node) => String(await node.sendCommand(["CLUSTER", "MYID"])));
  const [fromId, toId] = [await idOf(fromPort), await idOf(toPort)];
  await withNode(
    nodeUrl(toPort),
    (node) => node.sendCommand(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", fromId]),
  );
  await withNode(nodeUrl(fromPort), async (node) => {
    await node.sendCommand(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", toId]);
    for (;;) {
      const keys = await node.sendCommand([
        "CLUSTER",
        "GETKEYSINSLOT",
        String(slot),
        "100",
      ]) as string[];
      if (keys.length === 0) break;
      await node.sendCommand(
        ["MIGRATE", "127.0.0.1", String(toPort), "", "0", "5000", "KEYS", ...keys],
      );
    }
  });
  // The new owner first, then the old one, then the rest (the order redis-cli uses).
  const order = [toPort, fromPort, ...cluster.ports.filter((p) => p !== toPort && p !== fromPort)];
  for (const port of order) {
    await withNode(
      nodeUrl(port),
      (node) => node.sendCommand(["CLUSTER", "SETSLOT", String(slot), "NODE", toId]),
    );
  }
}

clusterTest(
  "follows a queue's slot moved to another master, its messages with it",
  async (cluster) => {
    const prefix = "moved:";
    const queue = "moving";
    const slot = queueSlot(prefix, queue);
    const backend = await RedisBackend.connect({ cluster: cluster.urls, prefix });
    try {
      const options = { nowMs: 1_000, retentionMs: 60_000, queueLengthMax: 10 };
      const message = (uuid: string) => ({
        queue,
        deliveryUuid: uuid,
        receivedMs: 1_000,
        bytes: new TextEncoder().encode(uuid),
      });
      assert.deepEqual(await backend.storeMessages([message("u1"), message("u2")], options), [
        true,
        true,
      ]);
      const fromPort = await masterPortOf(cluster.urls[0], slot);
      const toPort = cluster.ports.find((port) => port !== fromPort)!;
      await moveSlot(cluster, slot, toPort);
      assert.equal(await masterPortOf(cluster.urls[0], slot), toPort, "the slot moved");
      // The backend's map of slots is stale now: Redis answers MOVED, the client follows.
      const read = { ...options, messagesMax: 10 };
      assert.deepEqual((await backend.readQueues([queue], read)).map((m) => m.deliveryUuid), [
        "u1",
        "u2",
      ]);
      assert.equal(await backend.ackMessages([queue], ["u1"]), 1);
      assert.deepEqual(await backend.storeMessages([message("u3")], options), [true]);
      assert.deepEqual((await backend.readQueues([queue], read)).map((m) => m.deliveryUuid), [
        "u2",
        "u3",
      ]);
      // The keys are on the new master only.
      const keysOn = (port: number) =>
        withNode(
          nodeUrl(port),
          async (node) =>
            Number(await node.sendCommand(["CLUSTER", "COUNTKEYSINSLOT", String(slot)])),
        );
      assert.equal(await keysOn(fromPort), 0);
      assert.ok(await keysOn(toPort) > 0);
    } finally {
      await backend.close();
    }
  },
);

backendCrashTests("RedisBackend on a Redis Cluster, one master killed", async () => {
  // A Cluster of its own, append-only: the one above is shared and keeps nothing on a restart.
  const durable = await startRedisCluster({ durable: true });
  const prefix = "crash:";
  let killed: number | undefined;
  return {
    open: () => RedisBackend.connect({ cluster: durable.urls, prefix }),
    kill: async (queue) => {
      killed = await masterPortOf(durable.urls[0], queueSlot(prefix, queue));
      await durable.kill(killed);
    },
    restart: () => durable.restart(killed!),
    stop: () => durable.stop(),
  };
}, { ignore: skip });

Deno.test({
  name: `RedisBackend on a Redis Cluster tests stop their private Cluster${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== undefined,
  fn: async () => {
    await cluster?.stop();
  },
});

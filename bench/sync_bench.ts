/**
 * Benchmarks of device sync: one chat message sent by a user with 2, 5 and 10
 * devices, on the sending device (the primary): the one transaction that
 * stores the message, encrypts it for the contact and encrypts one `msg`
 * sync for every sibling. Baseline: the same chat send by a user with one
 * device, in the same run.
 *
 * The floor is one pipeline run per recipient: a user with N devices runs the
 * outbound pipeline N times per message (the contact, then N - 1 siblings), so
 * the best possible ratio to the baseline is N. At load it prints the median
 * cost per message, the bytes queued per message, the ratio to the baseline
 * and how close that ratio is to the floor (measured ratio / N; 1.00 = at the
 * floor).
 *
 *   ./dev bench --allow-all bench/sync_bench.ts
 *
 * @module
 */
import { ManualClock } from "../tests/support/world.ts";
import { Kernel } from "../kernel/kernel.ts";
import { SeededRandom } from "../crypto/mod.ts";
import { encode } from "../proto/codec.ts";
import { PackedUserMessageSchema } from "../proto/gen/meow_pb.ts";
import { CHAT_API, chatPlugin } from "../plugins/chat/mod.ts";
import { dedupPlugin } from "../plugins/dedup/mod.ts";
import { DEVICE_SYNC_API, deviceSyncPlugin } from "../plugins/device_sync/mod.ts";
import { forwardRelayPlugin } from "../plugins/forward_relay/mod.ts";
import { MemoryStore } from "../plugins/storage/mod.ts";
import { LocalTransport, MemoryBackend, ServerCore } from "../server/mod.ts";

const DEVICE_COUNTS = [2, 5, 10];
/** Sends per timing round; the outbox is drained (untimed) between rounds. */
const ROUND_SENDS = 40;
/** Timing rounds; the median round counts. */
const ROUNDS = 7;
const TEXT = "x".repeat(200);

/** A user with `devices` devices (the first one is the contact's primary) and a contact. */
async function setup(devices: number) {
  const clock = new ManualClock();
  const random = new SeededRandom(`sync bench ${devices}`);
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock,
    random: random.fork("relay"),
  });
  const transport = new LocalTransport([core]);
  const open = (name: string) =>
    Kernel.open({
      store: new MemoryStore(),
      clock,
      random: random.fork(name),
      transport,
      plugins: [chatPlugin(), dedupPlugin(), deviceSyncPlugin(), forwardRelayPlugin()],
      name,
      observe: name !== "d0" ? undefined : (o) => {
        if (o.kind === "outbound") queued.bytes += encode(PackedUserMessageSchema, o.packed).length;
      },
    });
  const all: Kernel[] = [];
  const queued = { bytes: 0 };
  const settle = async () => {
    for (let round = 0; round < 40; round++) {
      let moved = 0;
      for (const k of all) moved += await k.flushOutbox();
      clock.advance(10);
      for (const k of all) moved += await k.pollOnce();
      if (moved === 0 && all.every((k) => k.outboxSize() === 0)) return;
    }
    throw new Error("sync bench: the world did not settle");
  };
  const primary = await open("d0");
  await primary.createIdentity({ nickname: "alice", deviceName: "d0", servers: [core.card()] });
  all.push(primary);
  for (let i = 1; i < devices; i++) {
    const device = await open(`d${i}`);
    all.push(device);
    const ticket = await primary.api(DEVICE_SYNC_API).initDevicePairing();
    await device.api(DEVICE_SYNC_API).answerDevicePairing(ticket.bytes, {
      deviceName: `d${i}`,
    });
    await settle();
  }
  const bob = await open("bob");
  await bob.createIdentity({ nickname: "bob", deviceName: "bob", servers: [core.card()] });
  all.push(bob);
  const ticket = await primary.createInvitation();
  const bobUid = await bob.acceptInvitation(ticket.bytes);
  await settle();
  const chat = primary.api(CHAT_API);
  return { primary, chat, bobUid, settle, queued };
}

type World = Awaited<ReturnType<typeof setup>>;

const worlds = new Map<number, World>();
for (const n of [1, ...DEVICE_COUNTS]) worlds.set(n, await setup(n));

/** One timed round: wall ms per message, and bytes queued per message, on the primary. */
async function round(world: World): Promise<{ ms: number; bytes: number }> {
  await world.settle();
  world.queued.bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < ROUND_SENDS; i++) await world.chat.send(world.bobUid, TEXT);
  const ms = (performance.now() - t0) / ROUND_SENDS;
  return { ms, bytes: world.queued.bytes / ROUND_SENDS };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

for (const n of [1, ...DEVICE_COUNTS]) {
  const world = worlds.get(n)!;
  Deno.bench({
    name: n === 1 ? "chat send, 1 device (baseline)" : `chat send, ${n} devices`,
    group: "one message",
    baseline: n === 1,
    fn: async (b) => {
      if (world.primary.outboxSize() > ROUND_SENDS * n) await world.settle();
      b.start();
      await world.chat.send(world.bobUid, TEXT);
      b.end();
    },
  });
}

const results = new Map<number, { ms: number; bytes: number }>();
for (const n of [1, ...DEVICE_COUNTS]) {
  const rounds: { ms: number; bytes: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round(worlds.get(n)!));
  results.set(n, {
    ms: median(rounds.map((x) => x.ms)),
    bytes: median(rounds.map((x) => x.bytes)),
  });
}
const base = results.get(1)!;
console.log(
  `sync bench: one ${TEXT.length}-byte chat message on the sending device (median of ${ROUNDS} rounds × ${ROUND_SENDS})`,
);
console.log("  devices   µs/msg   bytes queued   ratio to baseline   floor   ratio / floor");
for (const [n, r] of results) {
  const ratio = r.ms / base.ms;
  console.log(
    `  ${String(n).padStart(7)} ${(r.ms * 1000).toFixed(0).padStart(8)} ${
      r.bytes.toFixed(0).padStart(14)
    } ` +
      `${ratio.toFixed(2).padStart(19)} ${String(n).padStart(7)} ${
        (ratio / n).toFixed(2).padStart(15)
      }`,
  );
}

/**
 * The simulator at scale (issue 7's benchmark): a generated crowd — by default
 * 500 users x 2 devices, 4 contacts each, exchanging 10,000 messages — run
 * once, reporting virtual seconds per wall second, events per second, wall
 * time, peak memory, and where the time went (WebCrypto vs the rest), beside
 * the crypto pipeline's floor measured in the same run.
 *
 *   ./dev run --allow-all bench/sim_bench.ts [--users 500] [--messages 10000] [--poll 5s]
 *
 * A `deno bench` entry runs a small crowd so `deno task bench` stays short.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { clone, create } from "@bufbuild/protobuf";
import { TestWorld } from "../kernel/_test_world.ts";
import { SeededRandom } from "../kernel/crypto/mod.ts";
import { pack, unpack } from "../kernel/pipeline.ts";
import {
  ConversationStatusSchema,
  PeerRecordSchema,
  UserMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { runScenario } from "../sim/run.ts";
import { parseScenario, type Scenario } from "../sim/scenario.ts";

/** Builds the crowd scenario. */
export function crowd(users: number, messages: number, poll: string, overMs: number): Scenario {
  return parseScenario({
    name: `bench-crowd-${users * 2}-devices`,
    seed: 1,
    duration: "2h",
    network: { latency: { min: "20ms", max: "150ms" } },
    poll: { interval: poll },
    users: [{ name: "u", count: users, devices: 2, pair: "all" }],
    steps: [
      { at: "5s", invite: { from: "u", to: "u", peers: 2 } },
      { at: "60s", chatter: { users: "u", messages, over: overMs } },
    ],
    expect: ["no_loss", "no_duplicates", { count: { messages } }],
  }, "bench");
}

/**
 * The crypto pipeline's floor: `count` user messages packed (ratchet →
 * symmetric → seal → sign) and unpacked (verify → unseal → symmetric →
 * ratchet) between two paired peers, each answering the other in turn (so
 * every message also takes a DH ratchet step), with nothing else around
 * them: no relay, no store, no scheduler. Resolves with the wall time in ms.
 */
export async function pipelineFloor(
  count: number,
  options: { textBytes?: number; start?: () => void; end?: () => void } = {},
): Promise<number> {
  const world = await TestWorld.create(7);
  const a = await world.device("a", { nickname: "a" });
  const b = await world.device("b", { nickname: "b" });
  const ticket = await a.kernel.createInvitation();
  const uid = await b.kernel.acceptInvitation(ticket.bytes);
  await world.settle([a, b]);
  const peers = [a, b].map((d) => clone(PeerRecordSchema, d.kernel.peer(uid)!));
  await a.kernel.close();
  await b.kernel.close();
  const random = new SeededRandom(7);
  const now = world.clock.now();
  const text = "m".repeat(options.textBytes ?? 120);
  options.start?.();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const [from, to] = i % 2 === 0 ? [peers[0], peers[1]] : [peers[1], peers[0]];
    const message = create(UserMessageSchema, {
      destination: "",
      type: "chat",
      data: text,
      status: create(ConversationStatusSchema, { uuid: `floor-${i}`, sent: now }),
    });
    const packed = await pack(from, message, { random, now });
    from.ratchet = packed.ratchet;
    const opened = await unpack(to, packed.packed, { random, now });
    to.ratchet = opened.ratchet;
  }
  const ms = performance.now() - t0;
  options.end?.();
  return ms;
}

/** Runs the crowd and prints the report. */
export async function benchCrowd(
  options: { users: number; messages: number; poll: string; overMs: number },
): Promise<void> {
  const scenario = crowd(options.users, options.messages, options.poll, options.overMs);
  let peakRss = 0;
  const t0 = performance.now();
  let packed = 0;
  const report = await runScenario(scenario, {
    wallClock: () => performance.now(),
    trace: (line) => {
      if (line.kind === "msg.out") packed++;
    },
    progress: () => {
      peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
    },
  });
  const wallMs = performance.now() - t0;
  peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
  const s = report.stats;
  console.log(
    `${scenario.name}: ${s.devices} devices, ${s.messagesSent} messages, ${s.syncPayloads} sync payloads`,
  );
  console.log(
    `  ok ${report.ok} ${report.expectations.filter((e) => !e.ok).map((e) => e.detail).join("; ")}`,
  );
  console.log(
    `  wall ${(wallMs / 1000).toFixed(1)} s, virtual ${(s.virtualMs / 1000).toFixed(0)} s → ${
      (s.virtualMs / wallMs).toFixed(1)
    } virtual s per wall s`,
  );
  console.log(
    `  ${s.events} events, ${(s.events / (wallMs / 1000)).toFixed(0)} events/s, peak RSS ${
      (peakRss / 2 ** 20).toFixed(0)
    } MiB`,
  );
  const floorMs = await pipelineFloor(packed);
  const perMessage = wallMs / packed;
  const floorPerMessage = floorMs / packed;
  console.log(
    `  per user message (chat, sync, ack: ${packed} packed and opened): ${
      perMessage.toFixed(2)
    } ms in the simulator vs ${floorPerMessage.toFixed(2)} ms for the bare crypto pipeline ` +
      `(floor, same run) → ${(perMessage / floorPerMessage).toFixed(2)}x the floor`,
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      users: { type: "string", default: "500" },
      messages: { type: "string", default: "10000" },
      poll: { type: "string", default: "5s" },
      over: { type: "string", default: "300000" },
    },
  });
  await benchCrowd({
    users: Number(values.users),
    messages: Number(values.messages),
    poll: values.poll!,
    overMs: Number(values.over),
  });
} else {
  // The simulator's run against the crypto pipeline alone for as many user messages
  // (deno bench prints the ratio to the baseline).
  const group = "simulator vs the crypto pipeline's floor";
  let packedInRun = 0;
  Deno.bench({
    name: "simulator: 40 devices, 200 messages, one run",
    group,
    n: 1,
    warmup: 0,
    fn: async () => {
      let packed = 0;
      const report = await runScenario(crowd(20, 200, "5s", 60_000), {
        trace: (line) => {
          if (line.kind === "msg.out") packed++;
        },
      });
      if (!report.ok) throw new Error(JSON.stringify(report.expectations));
      packedInRun = packed;
    },
  });
  Deno.bench({
    name: "floor: the same number of user messages packed and opened, nothing else",
    group,
    baseline: true,
    n: 1,
    warmup: 0,
    fn: async (b) => {
      if (packedInRun === 0) throw new Error("the simulator's run did not count its messages");
      await pipelineFloor(packedInRun, { start: () => b.start(), end: () => b.end() });
    },
  });
}

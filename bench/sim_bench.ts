/**
 * The simulator at scale (issue 7's benchmark): a generated crowd — by default
 * 500 users x 2 devices, 4 contacts each, exchanging 10,000 messages — run
 * once, reporting virtual seconds per wall second, events per second, wall
 * time and peak memory, beside two floors measured in the same run: the bare
 * crypto pipeline for as many user messages, and that plus the relay
 * protocol's crypto for as many relay requests (with as many pull
 * signatures) as the run made. The first ratio is the issue's measure; the
 * second is the simulator's own overhead (scheduler, stores, protobuf).
 *
 *   ./dev run --allow-all bench/sim_bench.ts [--users 500] [--messages 10000] [--poll 5s]
 *
 * A `deno bench` entry runs a small crowd so `deno task bench` stays short.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { clone, create } from "@bufbuild/protobuf";
import { ManualClock, TestWorld } from "../tests/support/world.ts";
import {
  generateLookupKeyPair,
  type PublicKeyOperation,
  publicKeyOperations,
  randomUuid,
  SeededRandom,
} from "../crypto/mod.ts";
import { pack, unpack } from "../kernel/pipeline.ts";
import { decode } from "../proto/codec.ts";
import {
  ConversationStatusSchema,
  PeerRecordSchema,
  ToServerMessageSchema,
  UserMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { MemoryBackend, openRelayExchange, ServerCore, signPull } from "../server/mod.ts";
import { parseScenario, type RunOptions, runScenario, type Scenario } from "../sim/mod.ts";

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

/** A `relayObserved` hook that appends each request's number of pull signatures to `pulls`. */
function countPulls(pulls: number[]): RunOptions["relayObserved"] {
  return (_relay, event) => {
    if (event.kind === "request") {
      pulls.push(decode(ToServerMessageSchema, event.bytes).pullRequests.length);
    }
  };
}

/** At most this many requests are timed for the relay protocol's floor; more are sampled. */
const RELAY_FLOOR_REQUESTS_MAX = 20_000;

/**
 * The relay protocol's floor: requests sealed to an in-process relay over
 * memory (device: seal, sign; relay: open, verify, verify each pull
 * signature, seal the answer; device: open the answer), request i carrying
 * `pulls[i]` signed pull requests as the run's did, nothing else around
 * them. A request's cost hardly depends on the messages it carries (opaque
 * to the relay), so none are sent. Past {@linkcode RELAY_FLOOR_REQUESTS_MAX}
 * requests an evenly spaced sample is timed and scaled. Resolves with the
 * wall time in ms for all of `pulls`.
 */
export async function relayFloor(pulls: number[]): Promise<number> {
  if (pulls.length === 0) return 0;
  const step = Math.max(1, pulls.length / RELAY_FLOOR_REQUESTS_MAX);
  const sample: number[] = [];
  for (let i = 0; i < pulls.length; i += step) sample.push(pulls[Math.floor(i)]);
  const clock = new ManualClock();
  const random = new SeededRandom(8);
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock,
    random: random.fork("relay"),
    name: "floor",
    url: "sim://floor",
  });
  const server = core.card();
  const lookups = Array.from({ length: Math.max(...sample) }, () => generateLookupKeyPair(random));
  const t0 = performance.now();
  for (const count of sample) {
    clock.advance(1); // a pull signature is good once per key and time
    const exchange = await openRelayExchange({ server, random });
    const { binding: ephemeralPublicKey } = exchange;
    const pullRequests = await Promise.all(
      lookups.slice(0, count).map((lookup) =>
        signPull({ server, lookup, now: clock.now(), ephemeralPublicKey })
      ),
    );
    const request = create(ToServerMessageSchema, { uuid: randomUuid(random), pullRequests });
    const answer = exchange.open(await core.handle(exchange.seal(request)));
    if (answer.errors.length > 0) throw new Error(`relay floor: ${answer.errors[0].detail}`);
  }
  return (performance.now() - t0) * (pulls.length / sample.length);
}

/** Public-key operations done between two readings of {@linkcode publicKeyOperations}, scaled. */
function operationsSince(
  before: Record<PublicKeyOperation, number>,
  scale = 1,
): Record<PublicKeyOperation, number> {
  const after = publicKeyOperations();
  const kinds = Object.keys(after) as PublicKeyOperation[];
  return Object.fromEntries(
    kinds.map((kind) => [kind, Math.round((after[kind] - before[kind]) * scale)]),
  ) as Record<PublicKeyOperation, number>;
}

/** `x25519 a, Ed25519 sign b, verify c, key generations d`. */
function operationsText(o: Record<PublicKeyOperation, number>): string {
  return `X25519 ${o.x25519}, Ed25519 sign ${o.ed25519Sign}, verify ${o.ed25519Verify}, ` +
    `key generations ${o.keyGeneration}`;
}

/** How many of `requests` requests {@linkcode relayFloor} times (it samples past its maximum). */
function relayFloorSample(requests: number): number {
  const step = Math.max(1, requests / RELAY_FLOOR_REQUESTS_MAX);
  let sampled = 0;
  for (let i = 0; i < requests; i += step) sampled++;
  return sampled;
}

/** Runs the crowd and prints the report. */
export async function benchCrowd(
  options: { users: number; messages: number; poll: string; overMs: number },
): Promise<void> {
  const scenario = crowd(options.users, options.messages, options.poll, options.overMs);
  let peakRss = 0;
  const t0 = performance.now();
  let packed = 0;
  let lastReport = t0;
  const pulls: number[] = [];
  let lastEvent = t0;
  const beforeRun = publicKeyOperations();
  const report = await runScenario(scenario, {
    relayObserved: countPulls(pulls),
    wallClock: () => performance.now(),
    trace: (line) => {
      if (line.kind === "msg.out") packed++;
      if (line.kind === "end") {
        lastEvent = performance.now();
        // The checks and the report follow: a line now says how far a large crowd got.
        console.error(
          `  … last event at ${(Number(line.t) / 1000).toFixed(0)} virtual s after ${
            ((lastEvent - t0) / 1000).toFixed(0)
          } s, ${packed} user messages; reading the stores and checking`,
        );
      }
    },
    progress: (virtualMs) => {
      peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
      // A line every 30 s of wall time: a large crowd runs for minutes.
      if (performance.now() - lastReport >= 30_000) {
        lastReport = performance.now();
        console.error(
          `  … ${(virtualMs / 1000).toFixed(0)} virtual s after ${
            ((lastReport - t0) / 1000).toFixed(0)
          } s, ${packed} user messages, peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`,
        );
      }
    },
  });
  const wallMs = performance.now() - t0;
  const runOperations = operationsSince(beforeRun);
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
    } MiB; after the last event, reading the stores, the checks and the report took ${
      ((t0 + wallMs - lastEvent) / 1000).toFixed(1)
    } s`,
  );
  let beforeFloor = publicKeyOperations();
  let pipelineOperations = operationsSince(beforeFloor);
  const floorMs = await pipelineFloor(packed, {
    start: () => void (beforeFloor = publicKeyOperations()),
    end: () => void (pipelineOperations = operationsSince(beforeFloor)),
  });
  const beforeRelay = publicKeyOperations();
  const relayMs = await relayFloor(pulls);
  const relayOperations = operationsSince(
    beforeRelay,
    pulls.length / Math.max(1, relayFloorSample(pulls.length)),
  );
  const perMessage = wallMs / packed;
  const floorPerMessage = floorMs / packed;
  const cryptoPerMessage = (floorMs + relayMs) / packed;
  const pullCount = pulls.reduce((sum, n) => sum + n, 0);
  console.log(
    `  per user message (chat, sync, ack: ${packed} packed and opened): ${
      perMessage.toFixed(2)
    } ms in the simulator vs ${floorPerMessage.toFixed(2)} ms for the bare crypto pipeline ` +
      `(floor, same run) → ${(perMessage / floorPerMessage).toFixed(2)}x the floor`,
  );
  console.log(
    `  relay requests: ${pulls.length} (${pullCount} pull signatures) cost ${
      (relayMs / 1000).toFixed(1)
    } s bare; with them the run's crypto alone costs ${cryptoPerMessage.toFixed(2)} ms per user ` +
      `message → the simulator runs at ${(perMessage / cryptoPerMessage).toFixed(2)}x its crypto`,
  );
  // What the floors stand for: their public-key operations beside the run's own (more in a
  // floor than in the run overstates the run's crypto; fewer, the run does crypto they leave out).
  console.log(`  public-key operations: the run ${operationsText(runOperations)}`);
  console.log(
    `    the floors: pipeline ${operationsText(pipelineOperations)}; relay ${
      operationsText(relayOperations)
    }${pulls.length > RELAY_FLOOR_REQUESTS_MAX ? " (scaled from its sample)" : ""}`,
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
  // (deno bench prints the ratio to the baseline), and against all of the run's crypto.
  const group = "simulator vs the crypto pipeline's floor";
  let packedInRun = 0;
  let pullsInRun: number[] = [];
  Deno.bench({
    name: "simulator: 40 devices, 200 messages, one run",
    group,
    n: 1,
    warmup: 0,
    fn: async () => {
      let packed = 0;
      const pulls: number[] = [];
      const report = await runScenario(crowd(20, 200, "5s", 60_000), {
        trace: (line) => {
          if (line.kind === "msg.out") packed++;
        },
        relayObserved: countPulls(pulls),
      });
      if (!report.ok) throw new Error(JSON.stringify(report.expectations));
      packedInRun = packed;
      pullsInRun = pulls;
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
  Deno.bench({
    name: "all of the run's crypto: that floor, plus the relay protocol for its requests",
    group,
    n: 1,
    warmup: 0,
    fn: async (b) => {
      if (pullsInRun.length === 0) {
        throw new Error("the simulator's run did not count its requests");
      }
      b.start();
      await pipelineFloor(packedInRun);
      await relayFloor(pullsInRun);
      b.end();
    },
  });
}

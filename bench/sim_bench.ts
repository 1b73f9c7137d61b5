/**
 * The simulator at scale (issue 7's benchmark): a generated crowd — by default
 * 500 users x 2 devices, 4 contacts each, exchanging 10,000 messages — run
 * once, reporting virtual seconds per wall second, events per second, wall
 * time and peak memory, beside two floors measured in the same run: the bare
 * crypto pipeline for as many user messages, and that plus the relay
 * protocol's crypto for the relay requests the run made, each shaped as it
 * was (in v2 or a relay session, its signed and token pulls). The first ratio is the issue's measure; the
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
  SeededRandom,
  toBase64Url,
} from "../crypto/mod.ts";
import { pack, unpack } from "../kernel/pipeline.ts";
import { decode } from "../proto/codec.ts";
import {
  ConversationStatusSchema,
  type FromServerMessage,
  PeerRecordSchema,
  ToServerMessageSchema,
  UserMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { MemoryBackend, ServerCore, signPull } from "../server/mod.ts";
import { macPull } from "../envelope/mod.ts";
import { TestDevice } from "../tests/support/relay.ts";
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
 * ratchet) between two paired peers, with nothing else around them: no relay,
 * no store, no scheduler. The direction changes `turns` times, spread evenly
 * (by default before every message, so each takes a DH ratchet step): a turn
 * costs the ratchet step's key generation and two X25519, so the crowd's floor
 * takes as many turns as the run's own X25519 count calls for
 * ({@linkcode turnsLike}). Resolves with the wall time in ms.
 */
export async function pipelineFloor(
  count: number,
  options: { textBytes?: number; turns?: number; start?: () => void; end?: () => void } = {},
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
  const turns = Math.min(count, Math.max(0, Math.round(options.turns ?? count)));
  let side = 0;
  for (let i = 0; i < count; i++) {
    // A turn before message i when the evenly spread count of turns moves on at i.
    if (i > 0 && Math.floor(i * turns / count) > Math.floor((i - 1) * turns / count)) side ^= 1;
    const [from, to] = side === 0 ? [peers[0], peers[1]] : [peers[1], peers[0]];
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

/**
 * The turns the pipeline floor takes for `messages` user messages so that its X25519 count, with
 * the relay floor's, is the run's: each message costs two (the seal's, made and opened), each
 * turn two more (the DH ratchet step). What the run does beyond that (pairings, invitations)
 * counts as turns too: it is X25519 all the same.
 */
export function turnsLike(runX25519: number, relayX25519: number, messages: number): number {
  return Math.min(messages, Math.max(0, Math.round((runX25519 - relayX25519 - 2 * messages) / 2)));
}

/** What the relay protocol costs for one of the run's requests: its pulls, and how it came. */
export interface RequestShape {
  /** Pulls proven by an Ed25519 signature (a key's first pull, or one after its token lapsed). */
  signed: number;
  /** Pulls presenting a pull token and its MAC. */
  tokens: number;
  /** Whether it came in a relay session (no X25519 on either side). */
  session: boolean;
}

/** A `relayObserved` hook that appends each request's {@linkcode RequestShape} to `requests`. */
function countRequests(requests: RequestShape[]): RunOptions["relayObserved"] {
  return (_relay, event) => {
    if (event.kind !== "request") return;
    const { pullRequests } = decode(ToServerMessageSchema, event.bytes);
    const tokens = pullRequests.filter((p) => p.pullToken.length > 0).length;
    requests.push({
      signed: pullRequests.length - tokens,
      tokens,
      session: event.session === true,
    });
  };
}

/** At most this many requests are timed for the relay protocol's floor; more are sampled. */
const RELAY_FLOOR_REQUESTS_MAX = 20_000;

/**
 * The relay protocol's floor: requests to an in-process relay over memory
 * shaped as the run's were ({@linkcode RequestShape}: in v2 — a key
 * generation and an X25519 each side — or in a relay session; as many signed
 * pulls, verified by the relay, and as many token pulls, MACed), each sealed
 * by the device, opened, authorised and answered by the relay, and the
 * answer opened; nothing else around them. A request's cost hardly depends
 * on the messages it carries (opaque to the relay), so none are sent. The
 * tokens and the session come from untimed requests first. Past
 * {@linkcode RELAY_FLOOR_REQUESTS_MAX} requests an evenly spaced sample is
 * timed and scaled. Resolves with the wall time in ms for all of `requests`.
 */
export async function relayFloor(requests: RequestShape[]): Promise<number> {
  if (requests.length === 0) return 0;
  const sample = relayFloorSample(requests);
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
  const send = (body: Uint8Array) => core.handle(body);
  // The device that makes the requests: it keeps the tokens and the session it is given.
  const device = new TestDevice(random, server, send, () => clock.now());
  device.useSessions = true;
  const most = Math.max(1, ...sample.map((r) => r.signed + r.tokens));
  const lookups = Array.from({ length: most }, () => generateLookupKeyPair(random));
  const pullAll = () => Promise.all(lookups.map((lookup) => device.pull(lookup)));
  // Untimed: a token for every key, and a session.
  await check(device.request({ pullRequests: await pullAll() }));
  const t0 = performance.now();
  for (const shape of sample) {
    clock.advance(1); // a pull signature is good once per key and time
    if (!shape.session) device.dropSession();
    const { binding: ephemeralPublicKey } = await device.next();
    const pullRequests = await Promise.all(
      lookups.slice(0, shape.signed + shape.tokens).map(
        (lookup, i) => {
          const token = device.tokens.get(toBase64Url(lookup.publicKey));
          return i < shape.signed || !token
            ? signPull({ server, lookup, now: clock.now(), ephemeralPublicKey })
            : macPull({ server, token, now: clock.now(), ephemeralPublicKey });
        },
      ),
    );
    await check(device.request({ pullRequests }));
  }
  return (performance.now() - t0) * (requests.length / sample.length);
}

/**
 * The requests {@linkcode relayFloor} times: all of them, or past
 * {@linkcode RELAY_FLOOR_REQUESTS_MAX} an evenly spaced sample of that many.
 */
function relayFloorSample(requests: RequestShape[]): RequestShape[] {
  const step = Math.max(1, requests.length / RELAY_FLOOR_REQUESTS_MAX);
  const sample: RequestShape[] = [];
  for (let i = 0; i < requests.length; i += step) sample.push(requests[Math.floor(i)]);
  return sample;
}

/** Throws the relay's first error in `answer`. */
async function check(answer: Promise<FromServerMessage>): Promise<void> {
  const { errors } = await answer;
  if (errors.length > 0) throw new Error(`relay floor: ${errors[0].detail}`);
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

/** Runs the crowd and prints the report. */
export async function benchCrowd(
  options: { users: number; messages: number; poll: string; overMs: number },
): Promise<void> {
  const scenario = crowd(options.users, options.messages, options.poll, options.overMs);
  let peakRss = 0;
  const t0 = performance.now();
  let packed = 0;
  let lastReport = t0;
  const pulls: RequestShape[] = [];
  let lastEvent = t0;
  const beforeRun = publicKeyOperations();
  const report = await runScenario(scenario, {
    relayObserved: countRequests(pulls),
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
  const beforeRelay = publicKeyOperations();
  const relayMs = await relayFloor(pulls);
  const relayOperations = operationsSince(
    beforeRelay,
    pulls.length / Math.max(1, relayFloorSample(pulls).length),
  );
  // The run's messages change direction far less often than once each: as many turns as its
  // X25519 count shows, so the floor does the run's public-key work, not more.
  const turns = turnsLike(runOperations.x25519, relayOperations.x25519, packed);
  let beforeFloor = publicKeyOperations();
  let pipelineOperations = operationsSince(beforeFloor);
  const floorMs = await pipelineFloor(packed, {
    turns,
    start: () => void (beforeFloor = publicKeyOperations()),
    end: () => void (pipelineOperations = operationsSince(beforeFloor)),
  });
  const perMessage = wallMs / packed;
  const floorPerMessage = floorMs / packed;
  const cryptoPerMessage = (floorMs + relayMs) / packed;
  const signedPulls = pulls.reduce((sum, r) => sum + r.signed, 0);
  const tokenPulls = pulls.reduce((sum, r) => sum + r.tokens, 0);
  const inSession = pulls.filter((r) => r.session).length;
  console.log(
    `  per user message (chat, sync, ack: ${packed} packed and opened): ${
      perMessage.toFixed(2)
    } ms in the simulator vs ${floorPerMessage.toFixed(2)} ms for the bare crypto pipeline ` +
      `(floor, same run) → ${(perMessage / floorPerMessage).toFixed(2)}x the floor`,
  );
  console.log(
    `  relay requests: ${pulls.length} (${inSession} in a session; ${signedPulls} signed pulls, ${tokenPulls} with a token) cost ${
      (relayMs / 1000).toFixed(1)
    } s bare; with them the run's crypto alone costs ${cryptoPerMessage.toFixed(2)} ms per user ` +
      `message → the simulator runs at ${(perMessage / cryptoPerMessage).toFixed(2)}x its crypto`,
  );
  // What the floors stand for: their public-key operations beside the run's own (more in a
  // floor than in the run overstates the run's crypto; fewer, the run does crypto they leave out).
  console.log(`  public-key operations: the run ${operationsText(runOperations)}`);
  console.log(
    `    the floors: pipeline (${turns} turns) ${operationsText(pipelineOperations)}; relay ${
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
  let pullsInRun: RequestShape[] = [];
  Deno.bench({
    name: "simulator: 40 devices, 200 messages, one run",
    group,
    n: 1,
    warmup: 0,
    fn: async () => {
      let packed = 0;
      const pulls: RequestShape[] = [];
      const report = await runScenario(crowd(20, 200, "5s", 60_000), {
        trace: (line) => {
          if (line.kind === "msg.out") packed++;
        },
        relayObserved: countRequests(pulls),
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

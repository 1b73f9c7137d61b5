/**
 * Relay throughput, each number next to its baseline in the same run:
 *
 * 1. messages stored + pulled + acked per second of the relay's own time through the core
 *    over a private Redis (16 pairs of clients, requests carrying batches of 16 messages,
 *    pulls presenting pull tokens in a relay session as the kernel's do; the clients seal and open outside the
 *    timed part, as `redis-benchmark`'s client is not Redis), against `redis-benchmark`'s ZADD
 *    rate on the same Redis (the ratio is printed; the goal is ≥ 0.5); beside it the same load with
 *    the clients' work on the same CPU, and the in-memory backend: the ratio's ceiling when
 *    Redis costs nothing. Each is the median of three runs (ZADD: of three `redis-benchmark`s);
 * 2. what HTTP costs the relay: its CPU time per request in a `deno task server` process of its
 *    own over HTTP on loopback, 64 clients in this process, against the core's CPU time for the
 *    same requests handed to it in this process (the ratio's goal is ≥ 0.8), over memory, one Redis
 *    and the Cluster, with two relay processes beside one; and the request rate over HTTP with the
 *    relay in this process, against the same requests in-process, which counts the clients'
 *    sealing and HTTP client too (each after a short untimed run; every answer is checked to be
 *    served, not refused — the clients share one address, so the relays here hold it to no
 *    request rate);
 * 3. several relay processes (`deno task server`, as the e2e tests start them): HTTP requests per
 *    second with the 64 clients spread over two processes over one Redis, against one process
 *    over the same Redis; the same over a three-master Redis Cluster; and the core over the
 *    Cluster against the core over one Redis.
 *
 *   deno run --allow-all bench/server_bench.ts [--seconds 3]
 *
 * Under `deno bench` it registers a small in-process case instead.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { SystemRandom } from "../crypto/mod.ts";
import { systemClock } from "../ports/system_clock.ts";
import {
  ErrorCode,
  type FromServerMessage,
  PackedUserMessageSchema,
  type ServerCard,
} from "../proto/gen/meow_pb.ts";
import {
  type Backend,
  createHandler,
  HttpTransport,
  MemoryBackend,
  RedisBackend,
  ServerCore,
} from "../server/mod.ts";
import {
  redisClusterSkip,
  redisSkip,
  startRedis,
  startRedisCluster,
} from "../server/redis_process.ts";
import { TestDevice } from "../tests/support/relay.ts";
import { freePort, relayAnswers, ROOT, taskArgs } from "../tests/support/processes.ts";

const BATCH = 16;
const HTTP_CLIENTS = 64;
/**
 * The bench's clients all come from 127.0.0.1, one address: the relays they reach over HTTP
 * hold that address to this many requests per second instead of the default 50, so what is
 * measured is requests served, not refused BUSY (each answer is checked).
 */
const BENCH_REQUESTS_PER_SECOND_PER_CLIENT = 1_000_000;
const random = new SystemRandom();
/** A benchmark client: the relay tests' device, on the real clock. */
function benchDevice(server: ServerCard, send: (b: Uint8Array) => Promise<Uint8Array>): TestDevice {
  const device = new TestDevice(random, server, send, () => Date.now());
  // As the kernel does: the first pull of a key is signed, later ones present its token; a
  // request that pulls goes in the device's relay session (stores stay in v2).
  device.useTokens = true;
  device.useSessions = true;
  return device;
}

function batch(destination: string) {
  return Array.from({ length: BATCH }, (_, i) =>
    create(PackedUserMessageSchema, {
      destination,
      payload: new Uint8Array(256).fill(i),
      signature: new Uint8Array(64),
    }));
}

/** Pairs of devices: each sender stores batches of 16, its receiver pulls and acks them. */
async function coreThroughput(core: ServerCore, seconds: number, pairs: number): Promise<number> {
  const send = (b: Uint8Array) => core.handle(b);
  const deadline = Date.now() + seconds * 1000;
  let acked = 0;
  await Promise.all(Array.from({ length: pairs }, async () => {
    const sender = benchDevice(core.card(), send);
    const receiver = benchDevice(core.card(), send);
    let toAck: string[] = [];
    while (Date.now() < deadline) {
      const stored = await sender.request({ messages: batch(receiver.queue) });
      if (stored.stored !== BATCH) {
        throw new Error(`stored ${stored.stored}: ${stored.errors[0]?.detail}`);
      }
      const pulled = await receiver.request({ pullRequests: [await receiver.pull()], acks: toAck });
      acked += toAck.length;
      toAck = pulled.chat.map((m) => m.serverDeliveryUuid);
    }
    await receiver.request({ pullRequests: [await receiver.pull()], acks: toAck });
    acked += toAck.length;
  }));
  return acked / seconds;
}

/**
 * The same load counted in the relay's own time, as `redis-benchmark` counts Redis's: in each
 * round every client seals its requests first (untimed), then the core handles all of them at
 * once (timed, with the backend's round trips), then the clients open the answers (untimed).
 * A round holds each pair's store of a batch and its pull with the acks of what the last
 * round brought, side by side as a relay's requests come, so the relay's work on some overlaps
 * the backend's on others. Sealing a request costs a client about what opening it costs the
 * relay: on a shared CPU the clients would otherwise halve the rate measured for the relay.
 */
async function relayThroughput(core: ServerCore, seconds: number, pairs: number): Promise<number> {
  const send = (): Promise<Uint8Array> => {
    throw new Error("the relay-time bench hands bodies to the core itself");
  };
  const devices = Array.from({ length: pairs }, () => ({
    sender: benchDevice(core.card(), send),
    receiver: benchDevice(core.card(), send),
    toAck: [] as string[],
  }));
  let relayMs = 0;
  let acked = 0;
  const round = async (final: boolean) => {
    const sealed = await Promise.all(devices.map(async (d) => ({
      store: await d.sender.seal({ messages: final ? [] : batch(d.receiver.queue) }),
      pull: await d.receiver.seal({ pullRequests: [await d.receiver.pull()], acks: d.toAck }),
    })));
    const start = performance.now();
    const answers = await Promise.all(
      sealed.map(async ({ store, pull }) =>
        await Promise.all([
          core.handle(store.body),
          core.handle(pull.body),
        ])
      ),
    );
    relayMs += performance.now() - start;
    answers.forEach(([storedBody, pulledBody], i) => {
      const stored = sealed[i].store.exchange.open(storedBody);
      if (!final && stored.stored !== BATCH) {
        throw new Error(`stored ${stored.stored}: ${stored.errors[0]?.detail}`);
      }
      const d = devices[i];
      const pulled = d.receiver.keepTokens(sealed[i].pull.exchange.open(pulledBody));
      acked += d.toAck.length;
      d.toAck = pulled.chat.map((m) => m.serverDeliveryUuid);
    });
  };
  while (relayMs < seconds * 1000) await round(false);
  // Two more rounds ack what the last ones brought (stored then, pulled, then acked).
  await round(true);
  await round(true);
  return acked / (relayMs / 1000);
}

/**
 * The relay-time rate once warm: one untimed second first (compilation, the first signed pulls
 * and their tokens), then the median of three runs of `seconds` each.
 */
async function steadyRelayThroughput(core: ServerCore, seconds: number): Promise<number> {
  await relayThroughput(core, 1, 16);
  return (await median(3, () => relayThroughput(core, seconds, 16)))!;
}

/** The median of `runs` results of `measure` (`undefined` when any is). */
async function median(
  runs: number,
  measure: () => Promise<number | undefined>,
): Promise<number | undefined> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) {
    const value = await measure();
    if (value === undefined) return undefined;
    values.push(value);
  }
  return values.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

async function redisZaddRate(port: number): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("redis-benchmark", {
      args: ["-h", "127.0.0.1", "-p", String(port), "-q", "-t", "zadd", "-n", "100000"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const match = [...text.matchAll(/ZADD: ([\d.]+) requests per second/g)].at(-1);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function httpRequestsPerSecond(
  seconds: number,
): Promise<{ http: number; inProcess: number }> {
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock: systemClock,
    random,
    limits: { requestsPerSecondPerClientMax: BENCH_REQUESTS_PER_SECOND_PER_CLIENT },
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    createHandler(core),
  );
  const card = core.card();
  card.url = `http://127.0.0.1:${server.addr.port}`;
  const transport = new HttpTransport();
  const run = (send: (b: Uint8Array) => Promise<Uint8Array>) =>
    requestRate([{ card, send }], seconds);
  const overHttp = (b: Uint8Array) => transport.exchange(card, b);
  const handed = (b: Uint8Array) => core.handle(b);
  try {
    // Warm, as the core rows are: a short untimed run of each first (compilation, the first
    // signed pulls, tokens and sessions, the HTTP client's and server's first connections).
    await requestRate([{ card, send: overHttp }], 0.5);
    await requestRate([{ card, send: handed }], 0.5);
    const http = await run(overHttp);
    const inProcess = await run(handed);
    return { http, inProcess };
  } finally {
    await server.shutdown();
  }
}

/**
 * Requests per second of {@linkcode HTTP_CLIENTS} clients spread over `targets`, each sending one
 * message in and then one pull with its ack out: the shape of a chatty client.
 */
async function requestRate(
  targets: { card: ServerCard; send: (b: Uint8Array) => Promise<Uint8Array> }[],
  seconds: number,
): Promise<number> {
  const deadline = Date.now() + seconds * 1000;
  let requests = 0;
  await Promise.all(Array.from({ length: HTTP_CLIENTS }, async (_, i) => {
    const { card, send } = targets[i % targets.length];
    const device = benchDevice(card, send);
    while (Date.now() < deadline) {
      const answer = served(
        await device.request({
          messages: [
            create(PackedUserMessageSchema, {
              destination: device.queue,
              payload: new Uint8Array(64),
            }),
          ],
          pullRequests: [await device.pull()],
        }),
      );
      served(
        await device.request({
          pullRequests: [await device.pull()],
          acks: answer.chat.map((m) => m.serverDeliveryUuid),
        }),
      );
      requests += 2;
    }
  }));
  return requests / seconds;
}

/**
 * The relay's CPU time per request, in µs: {@linkcode HTTP_CLIENTS} clients spread over
 * `targets` send the chatty client's pair of requests (a message in with a pull, then a pull with
 * the ack of what came) in rounds: every client seals its request (untimed), the relays answer
 * all of them, then the clients open the answers (untimed). `relayCpuMs` reads the relays' CPU
 * time — this process's, read around each round's answering, when the core runs in-process; the
 * relay processes' own, which do nothing else, when they run apart — so the clients' sealing and
 * their HTTP client are not counted, as `redis-benchmark`'s client is not counted in Redis's.
 */
async function relayCpuPerRequest(
  targets: { card: ServerCard; send: (b: Uint8Array) => Promise<Uint8Array> }[],
  seconds: number,
  relayCpuMs: () => number,
  inProcess: boolean,
): Promise<number> {
  const clients = Array.from({ length: HTTP_CLIENTS }, (_, i) => ({
    device: benchDevice(targets[i % targets.length].card, targets[i % targets.length].send),
    acks: [] as string[],
  }));
  let requests = 0;
  let spentMs = 0;
  const runStart = relayCpuMs();
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    for (const first of [true, false]) {
      const sealed = await Promise.all(clients.map(async ({ device, acks }) =>
        await device.seal(
          first
            ? {
              messages: [create(PackedUserMessageSchema, {
                destination: device.queue,
                payload: new Uint8Array(64),
              })],
              pullRequests: [await device.pull()],
            }
            : { pullRequests: [await device.pull()], acks },
        )
      ));
      const before = relayCpuMs();
      const answers = await Promise.all(sealed.map((s, i) => clients[i].device.send(s.body)));
      spentMs += relayCpuMs() - before;
      requests += sealed.length;
      answers.forEach((body, i) => {
        const client = clients[i];
        const answer = served(client.device.keepTokens(sealed[i].exchange.open(body)));
        client.acks = first ? answer.chat.map((m) => m.serverDeliveryUuid) : [];
      });
    }
  }
  // Relays apart do nothing between rounds: their whole run is counted, not only the rounds'
  // answering, so the coarse ticks of their CPU clock do not round each round away.
  const relayMs = inProcess ? spentMs : relayCpuMs() - runStart;
  return relayMs / requests * 1000;
}

/** This process's CPU time (all its threads) in ms. */
function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * The CPU time in ms of processes `pids` (all their threads) from Linux's /proc, in its clock
 * ticks of 10 ms (`USER_HZ`, fixed at 100 for user space); `undefined` without /proc.
 */
function processesCpuMs(pids: number[]): number | undefined {
  try {
    return pids.reduce((sum, pid) => {
      const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
      return sum + (Number(fields[11]) + Number(fields[12])) * 10;
    }, 0);
  } catch {
    return undefined;
  }
}

/**
 * Relay CPU per request of one relay process over `backend` (apart from the clients, over HTTP
 * on loopback), with `two` of two over the same backend, and of `inProcessCore` (over the same
 * kind of backend) in this process; each the median of three runs after a short untimed one. `undefined` where the relay processes' CPU time cannot be read.
 */
async function httpCost(
  backend: string,
  inProcessCore: ServerCore,
  seconds: number,
  two: boolean,
): Promise<{ inProcess: number; one: number; two?: number } | undefined> {
  const started: Deno.ChildProcess[] = [];
  try {
    const first = await relayProcess(backend);
    started.push(first.child);
    const second = two ? await relayProcess(backend) : first;
    if (two) started.push(second.child);
    if (processesCpuMs([first.child.pid]) === undefined) return undefined;
    const transport = new HttpTransport();
    const over = async (url: string) => {
      const card = { ...(await transport.fetchCard(url)), url };
      return { card, send: (b: Uint8Array) => transport.exchange(card, b) };
    };
    const [a, b] = [await over(first.url), await over(second.url)];
    const handed = {
      card: inProcessCore.card(),
      // From the one address the relay processes see, so the core counts it as they do.
      send: (body: Uint8Array) => inProcessCore.handle(body, { client: "127.0.0.1" }),
    };
    const measure = async (
      targets: (typeof handed)[],
      cpu: () => number,
      inProcess: boolean,
    ) => {
      await relayCpuPerRequest(targets, 0.5, cpu, inProcess);
      return (await median(3, () => relayCpuPerRequest(targets, seconds, cpu, inProcess)))!;
    };
    const pids = started.map((child) => child.pid);
    return {
      inProcess: await measure([handed], ownCpuMs, true),
      one: await measure([a], () => processesCpuMs(pids.slice(0, 1))!, false),
      two: two ? await measure([a, b], () => processesCpuMs(pids)!, false) : undefined,
    };
  } finally {
    for (const child of started) {
      child.kill("SIGTERM");
      await child.status;
    }
  }
}

/** A core in this process that holds the clients' one address to no request rate, as the bench's relay processes do. */
function benchCore(backend: Backend): Promise<ServerCore> {
  return ServerCore.create({
    backend,
    clock: systemClock,
    random,
    limits: { requestsPerSecondPerClientMax: BENCH_REQUESTS_PER_SECOND_PER_CLIENT },
  });
}

/** `use` of a core in this process over a new connection to Redis (`url`) or a Cluster. */
async function withCore<T>(
  redis: { url: string } | { cluster: string[] },
  use: (core: ServerCore) => Promise<T>,
): Promise<T> {
  const backend = await RedisBackend.connect({ ...redis, prefix: "bench-cpu:" });
  try {
    return await use(await benchCore(backend));
  } finally {
    await backend.close();
  }
}

/** Prints {@linkcode httpCost}'s rows: each ratio is in-process CPU per request over the relays'. */
function printHttpCost(over: string, cost: Awaited<ReturnType<typeof httpCost>>): void {
  if (!cost) {
    console.log(`http relay CPU over ${over}: not measured (no /proc to read a process's CPU)`);
    return;
  }
  const us = (n: number) => `${Math.round(n)} µs`;
  console.log(
    `relay CPU per request over ${over}: in-process core ${us(cost.inProcess)}; one relay ` +
      `process over HTTP ${us(cost.one)} (ratio ${(cost.inProcess / cost.one).toFixed(2)}; ` +
      `goal ≥ 0.8)` +
      (cost.two === undefined
        ? ""
        : `; two processes ${us(cost.two)} (ratio ${(cost.inProcess / cost.two).toFixed(2)})`),
  );
}

/** `answer`, unless the relay refused something in it (then the rate would not be of requests served). */
function served(answer: FromServerMessage): FromServerMessage {
  const refusal = answer.errors[0];
  if (refusal) throw new Error(`the relay refused: ${ErrorCode[refusal.code]} (${refusal.detail})`);
  return answer;
}

/** Requests per second over HTTP of {@linkcode HTTP_CLIENTS} clients spread over `cards`. */
function httpRate(cards: ServerCard[], seconds: number): Promise<number> {
  const transport = new HttpTransport();
  return requestRate(
    cards.map((card) => ({ card, send: (b: Uint8Array) => transport.exchange(card, b) })),
    seconds,
  );
}

/** `deno task server --backend B` on a free loopback port; resolves once its card answers. */
async function relayProcess(backend: string): Promise<{ url: string; child: Deno.ChildProcess }> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...await taskArgs("server"),
      ...["--port", String(port), "--backend", backend, "--log-level", "warn"],
      ...["--requests-per-second-per-client-max", String(BENCH_REQUESTS_PER_SECOND_PER_CLIENT)],
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  if (await relayAnswers(url, 30_000)) return { url, child };
  child.kill("SIGKILL");
  throw new Error(`the relay over ${backend} did not start`);
}

/**
 * HTTP requests per second to one relay process over `backend` (a `--backend` value), and to two
 * processes over the same backend, the clients spread over them.
 */
async function processes(backend: string, seconds: number): Promise<{ one: number; two: number }> {
  const started: Deno.ChildProcess[] = [];
  try {
    const first = await relayProcess(backend);
    started.push(first.child);
    const second = await relayProcess(backend);
    started.push(second.child);
    const transport = new HttpTransport();
    const card = async (url: string) => ({ ...(await transport.fetchCard(url)), url });
    const [a, b] = [await card(first.url), await card(second.url)];
    const one = await median(3, () => httpRate([a], seconds)) ?? 0;
    const two = await median(3, () => httpRate([a, b], seconds)) ?? 0;
    return { one, two };
  } finally {
    for (const child of started) {
      child.kill("SIGTERM");
      await child.status;
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { seconds: { type: "string", default: "3" } },
  });
  const seconds = Number(values.seconds);
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  const skip = redisSkip();
  if (skip) {
    console.log(`redis: skipped (${skip})`);
  } else {
    const redis = await startRedis();
    try {
      const zadd = await median(3, () => redisZaddRate(redis.port));
      const backend = await RedisBackend.connect({ url: redis.url, prefix: "bench:" });
      const core = await ServerCore.create({ backend, clock: systemClock, random });
      const rate = await steadyRelayThroughput(core, seconds);
      const shared = await coreThroughput(core, seconds, 16);
      await backend.close();
      console.log(
        `core over redis: ${fmt(rate)} messages stored+pulled+acked per second of relay time ` +
          `(batches of ${BATCH}, 16 pairs of clients)`,
      );
      console.log(
        `  with its clients sealing and opening on the same CPU: ${fmt(shared)} messages/s`,
      );
      const spread = await processes(redis.url, seconds);
      console.log(
        `http, ${HTTP_CLIENTS} clients, to one relay process over one Redis: ${fmt(spread.one)} ` +
          `requests/s; to two processes over it: ${fmt(spread.two)} requests/s (ratio ${
            (spread.two / spread.one).toFixed(2)
          }; the clients on the same CPU)`,
      );
      printHttpCost(
        "one Redis",
        await withCore({ url: redis.url }, (c) => httpCost(redis.url, c, seconds, true)),
      );
      const clusterSkip = redisClusterSkip();
      if (clusterSkip) {
        console.log(`redis cluster: skipped (${clusterSkip})`);
      } else {
        const cluster = await startRedisCluster();
        try {
          const over = await RedisBackend.connect({ cluster: cluster.urls, prefix: "bench:" });
          const clustered = await steadyRelayThroughput(
            await ServerCore.create({ backend: over, clock: systemClock, random }),
            seconds,
          );
          await over.close();
          console.log(
            `core over a 3-master Redis Cluster: ${fmt(clustered)} messages/s of relay time ` +
              `(ratio to one Redis ${(clustered / rate).toFixed(2)})`,
          );
          const nodes = cluster.urls.map((url) => new URL(url).host).join(",");
          const across = await processes(`redis-cluster://${nodes}`, seconds);
          console.log(
            `http to one relay process over the Cluster: ${fmt(across.one)} requests/s; to two: ` +
              `${fmt(across.two)} requests/s (ratio ${(across.two / across.one).toFixed(2)}; ` +
              `the clients on the same CPU)`,
          );
          printHttpCost(
            "the Cluster",
            await withCore(
              { cluster: cluster.urls },
              (c) => httpCost(`redis-cluster://${nodes}`, c, seconds, true),
            ),
          );
        } finally {
          await cluster.stop();
        }
      }
      if (zadd === undefined) {
        console.log("redis-benchmark ZADD: not available");
      } else {
        console.log(`redis-benchmark ZADD: ${fmt(zadd)} requests/s`);
        console.log(`ratio: ${(rate / zadd).toFixed(3)} (goal ≥ 0.5)`);
        // The same load on the in-memory backend: what the ratio could reach were Redis free
        // (the rest is sealing, signatures and protobuf on the relay's side).
        const memory = await ServerCore.create({
          backend: new MemoryBackend(),
          clock: systemClock,
          random,
        });
        const ceiling = await steadyRelayThroughput(memory, seconds);
        console.log(
          `core over memory: ${fmt(ceiling)} messages per second of relay time (the ratio's ` +
            `ceiling here: ${(ceiling / zadd).toFixed(3)})`,
        );
      }
    } finally {
      await redis.stop();
    }
  }
  const { http, inProcess } = await httpRequestsPerSecond(seconds);
  console.log(
    `http on loopback, ${HTTP_CLIENTS} clients, the relay in this process: ${fmt(http)} ` +
      `requests/s; the same requests in-process: ${fmt(inProcess)} requests/s (ratio ${
        (http / inProcess).toFixed(2)
      }; the clients' sealing and HTTP client on the same CPU)`,
  );
  const memory = await benchCore(new MemoryBackend());
  printHttpCost("memory", await httpCost("memory", memory, seconds, false));
}

if (import.meta.main) {
  await main();
} else {
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock: systemClock,
    random,
  });
  const sender = benchDevice(core.card(), (b) => core.handle(b));
  const receiver = benchDevice(core.card(), (b) => core.handle(b));
  Deno.bench({
    name: "core over memory: store 16 + pull + ack",
    baseline: true,
    fn: async () => {
      await sender.request({ messages: batch(receiver.queue) });
      const pulled = await receiver.request({ pullRequests: [await receiver.pull()] });
      await receiver.request({
        pullRequests: [await receiver.pull()],
        acks: pulled.chat.map((m) => m.serverDeliveryUuid),
      });
    },
  });
}

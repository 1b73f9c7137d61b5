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

/** Times WebCrypto calls (beneath the simulator's runner) while `fn` runs. */
async function timed<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; cryptoMs: number; calls: number }> {
  const subtle = crypto.subtle as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const originals = new Map<string, (...a: unknown[]) => Promise<unknown>>();
  let cryptoMs = 0;
  let calls = 0;
  for (const name of ["sign", "verify", "importKey", "deriveBits"]) {
    const original = subtle[name].bind(crypto.subtle);
    originals.set(name, subtle[name]);
    subtle[name] = async (...args: unknown[]) => {
      const t = performance.now();
      try {
        return await original(...args);
      } finally {
        cryptoMs += performance.now() - t;
        calls++;
      }
    };
  }
  try {
    return { result: await fn(), cryptoMs, calls };
  } finally {
    for (const [name, original] of originals) subtle[name] = original;
  }
}

/** Runs the crowd and prints the report. */
export async function benchCrowd(
  options: { users: number; messages: number; poll: string; overMs: number },
): Promise<void> {
  const scenario = crowd(options.users, options.messages, options.poll, options.overMs);
  let peakRss = 0;
  const t0 = performance.now();
  const { result: report, cryptoMs, calls } = await timed(() =>
    runScenario(scenario, {
      wallClock: () => performance.now(),
      progress: () => {
        peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
      },
    })
  );
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
  console.log(
    `  WebCrypto ${(cryptoMs / 1000).toFixed(1)} s in ${calls} calls (${
      ((cryptoMs / wallMs) * 100).toFixed(0)
    }% of wall); the rest (scheduler, stores, protobuf, noble) ${
      ((wallMs - cryptoMs) / 1000).toFixed(1)
    } s`,
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
  Deno.bench({
    name: "simulator: 40 devices, 200 messages, one run",
    n: 1,
    warmup: 0,
    fn: async () => {
      const report = await runScenario(crowd(20, 200, "5s", 60_000), {});
      if (!report.ok) throw new Error(JSON.stringify(report.expectations));
    },
  });
}

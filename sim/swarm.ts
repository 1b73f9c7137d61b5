/**
 * Seed swarms (`deno task sim FILE --seeds A..B`): every seed of a range runs
 * in a pool of Web Workers, one per core, each worker loading the scenario
 * itself and running {@linkcode runScenario}. A seed's report does not depend
 * on which worker ran it or on what ran beside it: each run has its own
 * scheduler, its own seeded randomness and (per worker) its own global crypto
 * runner, so the swarm's `digest` and `traceHash` of seed N are those of
 * `--seed N`.
 *
 * The network is the scenario file's: the swarm sweeps seeds only, so every
 * failing seed replays exactly with the printed `--seed N` command.
 *
 * This file also wires a {@linkcode SeedJob}'s relay kind into run options
 * (`redis://` backends, `http://` relays), so the CLI's in-process runs and the
 * workers build the same world.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { PluginInput } from "../kernel/mod.ts";
import { ServerCardSchema } from "../proto/mod.ts";
import { HttpTransport } from "../server/mod.ts";
import { PULL_FRESHNESS_MS } from "../server/mod.ts";
import type { ObservedEvent, ServerCore } from "../server/mod.ts";
import { RedisBackend, redisClusterNodes } from "../server/mod.ts";
import { type Report, type RunOptions, runScenario } from "./run.ts";
import { loadScenario, type Scenario } from "./scenario.ts";
import type { StorageKind } from "./storage.ts";

/** One seed to run: everything a worker needs, as plain (structured-cloneable) data. */
export interface SeedJob {
  /** The scenario file: loaded from here unless `scenario` is given; named in the replay command. */
  file: string;
  /** Plugin module files (`--plugin`, relative to the working directory), loaded with the file. */
  plugins?: readonly string[];
  /** A scenario already loaded (e.g. a shrinking candidate). */
  scenario?: Scenario;
  /** The seed. */
  seed: number;
  /** Relay kind as given on the command line: `fake`, `redis`, `redis://…`, `http://…`. */
  server: string;
  /** @default "memory" */
  storage?: StorageKind;
  /** For `redis` kinds: the server's URL (a private one for plain `redis`). */
  redisUrl?: string;
  /** For `redis` kinds: a key prefix unique to this swarm (the seed is appended). */
  redisPrefix?: string;
  /** Whether to send the trace lines back. @default false */
  trace?: boolean;
  /** Draw the network from the seed within the file's ranges (`--vary-network`). @default false */
  varyNetwork?: boolean;
  /**
   * URL of a module whose default export is `(ref: string) => PluginInput[]`:
   * extra plugins per device (tests plant bugs this way). Unlike a function,
   * a URL reaches workers.
   */
  pluginsModule?: string;
}

/** What one seed gave: its report, or the error that stopped it. */
export interface SeedResult {
  seed: number;
  /** Absent when the run threw. */
  report?: Report;
  /** The error's stack or message when the run threw. */
  error?: string;
  /** Trace lines (when the job asked for them). */
  trace?: Record<string, unknown>[];
}

/** Options of {@linkcode runSeed}. */
export interface RunSeedOptions {
  /** Extra plugins per device; wins over `job.pluginsModule`. */
  extraPlugins?: (ref: string) => PluginInput[];
  /** Gets every trace line. */
  trace?: (line: Record<string, unknown>) => void;
  /** Virtual progress. */
  progress?: RunOptions["progress"];
  /** Wall clock for `stats.wallMs`. @default () => 0 */
  wallClock?: () => number;
}

/**
 * How far the virtual epoch of an `http://` run sits before the relay's
 * clock, in ms. The relay refuses pull signatures more than
 * `PULL_FRESHNESS_MS` away from its own time, and virtual time runs far
 * faster than real time; starting a minute inside the window's past edge
 * leaves about `2 × PULL_FRESHNESS_MS − 1 min` of virtual time usable.
 */
export const httpEpochLeadMs: number = PULL_FRESHNESS_MS - 60_000;

/**
 * The virtual time an `http://` run can reach before the relay refuses its
 * pulls as stale (a run that goes on longer fails where `fake` passes), in ms.
 */
export const httpVirtualMsMax: number = httpEpochLeadMs + PULL_FRESHNESS_MS;

const scenarioCache = new Map<string, Promise<Scenario>>();
const pluginCache = new Map<string, Promise<(ref: string) => PluginInput[]>>();

/**
 * Runs one seed of a job in this process (workers call it too).
 *
 * @example
 * ```ts ignore
 * const { report } = await runSeed({ file: "scenarios/quickstart.yaml", seed: 2, server: "fake" });
 * console.log(report!.ok, report!.digest);
 * ```
 */
export async function runSeed(job: SeedJob, options: RunSeedOptions = {}): Promise<SeedResult> {
  const plugins = job.plugins ?? [];
  const scenario = job.scenario ??
    await cached(
      scenarioCache,
      JSON.stringify([job.file, ...plugins]),
      () => loadScenario(job.file, { plugins }),
    );
  let extraPlugins = options.extraPlugins;
  if (!extraPlugins && job.pluginsModule) {
    extraPlugins = await cached(pluginCache, job.pluginsModule, async (url) => {
      const module = await import(url);
      if (typeof module.default !== "function") {
        throw new TypeError(`Cannot use plugins module ${url}: its default export is no function`);
      }
      return module.default;
    });
  }
  const lines: Record<string, unknown>[] = [];
  const runOptions: RunOptions = {
    seed: job.seed,
    server: job.server,
    storage: job.storage ?? "memory",
    file: job.file,
    plugins,
    varyNetwork: job.varyNetwork,
    extraPlugins,
    wallClock: options.wallClock,
    progress: options.progress,
    trace: job.trace || options.trace
      ? (line) => {
        if (job.trace) lines.push(line);
        options.trace?.(line);
      }
      : undefined,
  };
  if (job.server.startsWith("redis-cluster://")) {
    const cluster = redisClusterNodes(job.server)!;
    const prefix = `${job.redisPrefix ?? "meowsync-sim:"}${job.seed}:`;
    runOptions.backend = (name) => RedisBackend.connect({ cluster, prefix: `${prefix}${name}:` });
  } else if (job.server.startsWith("redis")) {
    const url = job.redisUrl ?? job.server;
    const prefix = `${job.redisPrefix ?? "meowsync-sim:"}${job.seed}:`;
    runOptions.backend = (name) => RedisBackend.connect({ url, prefix: `${prefix}${name}:` });
  } else if (job.server.startsWith("http")) {
    const remote = await remoteRelay(job.server, { name: scenario.servers[0] });
    runOptions.relay = () => Promise.resolve(remote.relay);
    runOptions.epochMs = remote.relayNowMs - httpEpochLeadMs;
  }
  const report = await runScenario(scenario, runOptions);
  return job.trace ? { seed: job.seed, report, trace: lines } : { seed: job.seed, report };
}

function cached<T>(cache: Map<string, Promise<T>>, key: string, load: (key: string) => Promise<T>) {
  let value = cache.get(key);
  if (!value) {
    value = load(key);
    cache.set(key, value);
    value.catch(() => cache.delete(key));
  }
  return value;
}

/** A relay running elsewhere, as the simulator's world sees it. */
export interface RemoteRelay {
  /** Stands in for an in-process core: `card()`, `handle()`, `observe`. */
  relay: ServerCore;
  /** The relay's clock when it was reached (from its `Date` header), in ms since the Unix epoch. */
  relayNowMs: number;
}

/** Options of {@linkcode remoteRelay}. */
export interface RemoteRelayOptions {
  /** The relay's name in its card as the devices see it. @default the name the relay gives */
  name?: string;
}

/**
 * Reaches a running relay (`deno task server`) at `url`: fetches its card,
 * and returns a stand-in for a {@linkcode ServerCore} whose `handle()` POSTs
 * the request and resolves with the answer's bytes. Requests run one at a
 * time in the order asked (the simulator tracks each one as real I/O). After
 * each request the relay's `/health` count of stored messages is read, and a
 * rise is reported to `observe` as a `stored` event: the world's quiescence
 * test needs to know when a relay last stored something. The bytes of such an
 * event are empty, so `server_blind` cannot look into a remote relay.
 *
 * Use a fresh relay (e.g. `--backend memory`) for each run of a seed: keys,
 * and so queues, follow from the seed, and a relay still holding an earlier
 * run's messages hands them to the new one.
 *
 * @example
 * ```ts ignore
 * const { relay } = await remoteRelay("http://127.0.0.1:8080");
 * console.log(relay.card().uid);
 * ```
 */
export async function remoteRelay(
  url: string,
  options: RemoteRelayOptions = {},
): Promise<RemoteRelay> {
  const base = url.replace(/\/+$/, "");
  const transport = new HttpTransport();
  const card = await transport.fetchCard(base);
  // Devices keep relays by name in their state: the scenario's name, as in-process.
  if (options.name !== undefined) card.name = options.name;
  const health = async (): Promise<{ stored: number; nowMs: number }> => {
    const response = await fetch(`${base}/health`);
    const body = await response.json();
    return { stored: Number(body.stored ?? 0), nowMs: Date.parse(response.headers.get("date")!) };
  };
  const first = await health();
  if (!Number.isFinite(first.nowMs)) {
    throw new Error(`Cannot read the clock of the relay at ${url}: no Date header in /health`);
  }
  let stored = first.stored;
  let chain: Promise<unknown> = Promise.resolve();
  const standIn = {
    observe: undefined as ((event: ObservedEvent) => void) | undefined,
    card: () => create(ServerCardSchema, card),
    handle(body: Uint8Array): Promise<Uint8Array> {
      const run = chain.then(async () => {
        let answer: Uint8Array;
        try {
          answer = await transport.exchange(card, body);
        } catch {
          // An in-process core answers "nobody to answer" with no bytes; the client retries.
          answer = new Uint8Array(0);
        }
        const now = (await health().catch(() => undefined))?.stored ?? stored;
        if (now > stored) standIn.observe?.({ kind: "stored", bytes: new Uint8Array(0) });
        stored = now;
        return answer;
      });
      chain = run.catch(() => {});
      return run;
    },
  };
  // The world and its network use card(), handle() and observe of a core, nothing else.
  return { relay: standIn as unknown as ServerCore, relayNowMs: first.nowMs };
}

/** Options of {@linkcode runSwarm}. */
export interface SwarmOptions {
  /** Workers in the pool. @default navigator.hardwareConcurrency (at least 1), at most one per seed */
  workers?: number;
  /** Called as each seed finishes (in completion order). */
  onResult?: (result: SeedResult) => void;
  /** Wall clock: when given, each report's `stats.wallMs` is the time its worker took. */
  wallClock?: () => number;
}

/** What a worker is sent. */
export interface WorkerRequest {
  job: SeedJob;
}

/**
 * Runs `job` once for each seed in `seeds`, in parallel workers; resolves
 * with the results in the order of `seeds`. A seed whose run throws gives a
 * result with `error` (the swarm goes on).
 *
 * @example
 * ```ts ignore
 * const results = await runSwarm({ file: "scenarios/quickstart.yaml", server: "fake" }, [1, 2, 3]);
 * console.log(results.filter((r) => !r.report?.ok).length, "failed");
 * ```
 */
export async function runSwarm(
  job: Omit<SeedJob, "seed">,
  seeds: number[],
  options: SwarmOptions = {},
): Promise<SeedResult[]> {
  const cores = Math.max(1, options.workers ?? navigator.hardwareConcurrency ?? 1);
  const size = Math.min(cores, seeds.length);
  const results = new Map<number, SeedResult>();
  let next = 0;
  const url = new URL("./swarm_worker.ts", import.meta.url).href;
  const drive = (worker: Worker): Promise<void> =>
    new Promise((resolve) => {
      const give = () => {
        if (next >= seeds.length) return resolve();
        const seed = seeds[next++];
        const request: WorkerRequest = { job: { ...job, seed } };
        const started = options.wallClock?.() ?? 0;
        worker.onmessage = (e: MessageEvent<SeedResult>) => {
          if (options.wallClock && e.data.report) {
            e.data.report.stats.wallMs = Math.round(options.wallClock() - started);
          }
          results.set(seed, e.data);
          options.onResult?.(e.data);
          give();
        };
        worker.onerror = (e: ErrorEvent) => {
          e.preventDefault();
          const result = { seed, error: `worker failed: ${e.message}` };
          results.set(seed, result);
          options.onResult?.(result);
          resolve(); // the worker may be dead: leave the remaining seeds to the others
        };
        worker.postMessage(request);
      };
      give();
    });
  const workers = Array.from({ length: size }, () => new Worker(url, { type: "module" }));
  try {
    await Promise.all(workers.map(drive));
  } finally {
    for (const worker of workers) worker.terminate();
  }
  return seeds.map((seed) =>
    results.get(seed) ?? { seed, error: "not run: every worker of the swarm failed" }
  );
}

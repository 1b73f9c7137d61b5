/**
 * `deno task sim FILE [options]` (SCENARIOS.md, "Command line"): parses the
 * options, runs the scenario (or a range of seeds), prints a one-screen
 * summary, writes the JSON report and the trace, and returns the exit status
 * ({@linkcode SIM_EXIT}). Before the run it checks what the run needs from
 * outside: that the relay of `--server http://…` answers, that the Redis of
 * `--server redis://…` answers PING, that the folders of the output files
 * exist and are writable. Each problem is one `sim: …` line on stderr and its
 * own exit status, never a stack trace.
 *
 * @module
 */
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import type { PluginInput } from "../kernel/mod.ts";
import { TransportError } from "../ports/mod.ts";
import { HttpTransport, redisClusterNodes } from "../server/mod.ts";
import { replayCommand, type Report, summary } from "./run.ts";
import { loadScenario, type Scenario, ScenarioError } from "./scenario.ts";
import { scenarioSize, shrinkScenario, shrunkPath, writeShrunk } from "./shrink.ts";
import type { StorageKind } from "./storage.ts";
import { httpVirtualMsMax, runSeed, runSwarm, type SeedJob, type SeedResult } from "./swarm.ts";
import { timelineHtml } from "./timeline.ts";

/** The help text. */
export const HELP = `Usage: deno task sim FILE [options]

Runs a meowsync scenario (YAML, JSON or a .ts module) in the deterministic
simulator and checks its expectations. See docs/SCENARIOS.md.

Options:
  --seed N            seed for every random choice (default: the file's seed, else 1)
  --seeds A..B        run every seed in the range in parallel workers (one per core);
                      one line per failing seed with its replay command
  --server KIND       fake | redis[://host:port] | redis-cluster://h:p,h:p,… (a Redis
                      Cluster, found from those nodes) | http://host:port (a running
                      \`deno task server\`) (default: the file's server, else fake)
  --storage KIND      memory | sqlite | kv (default: memory)
  --json PATH         write the report as JSON ("-" for stdout)
  --trace PATH        write every event as JSON lines
  --timeline PATH     write an HTML message-flow diagram of the run (with --seeds: of
                      the first failing seed, else the first seed)
  --shrink            on failure, search for a smaller scenario failing the same
                      expectation and write it as NAME.shrunk.yaml beside the file
  --vary-network      draw each seed's network within the file's ranges (latency max
                      in [min, max]; reorder, duplicate, drop in [0, value]); replays
                      name it too
  --plugin FILE       load a plugin module (docs/PLUGINS.md) on every device, with the
                      steps and expectations it adds; repeat for several
  --quiet             no progress bar
  -h, --help          this help

Exit status:
  0  every expectation held
  1  an expectation failed
  2  invalid file or options (unknown option, bad value, unreadable scenario,
     an output folder that does not exist or cannot be written)
  3  the relay could not be reached or started (--server http://… not answering,
     redis://… not answering, redis-server not installed or not starting)
  4  the run finished but an output file (--json, --trace, --timeline, the shrunk
     scenario) could not be written
  5  internal error, a bug in meowsync (with MEOW_DEBUG set and readable: its stack)
`;

/** The exit statuses of {@linkcode main} (HELP, "Exit status"). */
export const SIM_EXIT = {
  /** Every expectation held. */
  ok: 0,
  /** An expectation failed. */
  failed: 1,
  /** The file or the options are invalid. */
  usage: 2,
  /** The relay or Redis of `--server` could not be reached or started. */
  server: 3,
  /** An output file could not be written after the run. */
  output: 4,
  /** An unexpected error (reported by the entry point, cli/sim.ts). */
  internal: 5,
} as const;

/** How long the probes of `--server http://…` and `--server redis://…` wait, in ms. */
export const PROBE_MS = 3_000;

/** What the CLI needs from the outside world (so tests can drive it). */
export interface CliIo {
  /** Writes to standard output. */
  out(text: string): void;
  /** Writes to standard error. */
  err(text: string): void;
  /** Whether standard error is a terminal (progress bar). */
  errIsTerminal: boolean;
  /** Wall-clock ms, for timing reports. */
  wallClock(): number;
  /**
   * Starts a private redis-server for `--server redis`; resolves with its URL
   * and a stop function. Rejects with `Deno.errors.NotFound` when redis-server
   * is not installed.
   */
  startRedis?(): Promise<{ url: string; stop(): Promise<void> }>;
  /**
   * An `AbortSignal` that aborts after `ms` of real time: bounds the probe of
   * `--server redis://…`. Without it the probe waits as long as the system's
   * TCP connect does.
   */
  abortAfter?(ms: number): AbortSignal;
  /** A unique prefix for Redis keys of one run. */
  uniqueId(): string;
  /**
   * Extra plugins per device (tests plant bugs this way). A function cannot
   * reach workers: with it, `--seeds` runs its seeds in this process, one
   * after another.
   */
  extraPlugins?: (ref: string) => PluginInput[];
  /**
   * URL of a module whose default export is `(ref) => PluginInput[]`: extra
   * plugins that also reach swarm workers. `extraPlugins` wins when both are given.
   */
  extraPluginsModule?: string;
  /** Workers of a swarm. @default navigator.hardwareConcurrency */
  workers?: number;
}

class UsageError extends Error {}

/** A message on one line (node and Deno error messages may span several). */
function oneLine(text: string): string {
  return text.split("\n").map((line) => line.trim()).filter((line) => line !== "").join(" ");
}

function messageOf(e: unknown): string {
  return oneLine(e instanceof Error ? e.message : String(e));
}

/** parseArgs's error as one line of ours. */
function argsProblem(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown option ${unknown[1]} (see --help)`;
  const missing = /^Option '(?:-\w, )?(--[\w-]+)(?: <value>)?' argument (missing|is ambiguous)/
    .exec(message);
  if (missing) {
    return missing[2] === "missing"
      ? `${missing[1]} needs a value (see --help)`
      : `${missing[1]} needs a value (for one starting with "-", write ${missing[1]}=-VALUE)`;
  }
  const flag = /^Option '(?:-\w, )?(--[\w-]+)' does not take an argument/.exec(message);
  if (flag) return `${flag[1]} takes no value (see --help)`;
  return `${oneLine(message)} (see --help)`;
}

/**
 * Checks that `path` (an output file of `--option`) can be written: its folder
 * exists and takes a new file, and it is no folder itself. Leaves no file behind.
 */
async function checkOutput(option: string, path: string): Promise<void> {
  const dir = dirname(path);
  const where = `--${option} ${path}`;
  let folder: Deno.FileInfo;
  try {
    folder = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`${where}: the folder ${dir} does not exist`);
    }
    throw new UsageError(`${where}: cannot reach the folder ${dir}: ${messageOf(e)}`);
  }
  if (!folder.isDirectory) throw new UsageError(`${where}: ${dir} is not a folder`);
  let existing: Deno.FileInfo | undefined;
  try {
    existing = await Deno.stat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new UsageError(`${where}: cannot write it: ${messageOf(e)}`);
    }
  }
  if (existing?.isDirectory) throw new UsageError(`${where}: is a folder (give a file name)`);
  try {
    // Opened without truncating: an existing file keeps its content until the run ends.
    const file = await Deno.open(
      path,
      existing ? { write: true } : { write: true, createNew: true },
    );
    file.close();
    if (!existing) await Deno.remove(path);
  } catch (e) {
    throw new UsageError(`${where}: cannot write it: ${messageOf(e)}`);
  }
}

/** Why the relay at `url` does not answer with its card, or `undefined` when it does. */
async function relayProblem(url: string): Promise<string | undefined> {
  try {
    await new HttpTransport({ timeoutMs: PROBE_MS }).fetchCard(url.replace(/\/+$/, ""));
    return undefined;
  } catch (e) {
    const why = messageOf(e).replace(/^Cannot reach \S+: /, "");
    if (/^no answer within/.test(why) || !(e instanceof Error) || !(e.cause instanceof Error)) {
      return why;
    }
    // fetch says "fetch failed"; the reason is at the end of its chain of causes.
    let deepest: Error = e.cause;
    while (deepest.cause instanceof Error) deepest = deepest.cause;
    return messageOf(deepest).replace(/^error sending request for url \([^)]*\): /, "")
      .replace(/^.*\berror: (?=\S)/, "");
  }
}

/** Why the Redis at `url` does not answer PING, or `undefined` when it does. */
async function redisProblem(target: URL, io: CliIo): Promise<string | undefined> {
  const hostname = target.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = Number(target.port || 6379);
  const signal = io.abortAfter?.(PROBE_MS);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname, port, signal });
  } catch (e) {
    return signal?.aborted ? `no connection within ${PROBE_MS} ms` : messageOf(e);
  }
  const close = () => {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  signal?.addEventListener("abort", close);
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(256);
    const n = await conn.read(buffer);
    if (n === null) {
      return signal?.aborted
        ? `no answer to PING within ${PROBE_MS} ms`
        : "it closed the connection without answering PING";
    }
    const reply = new TextDecoder().decode(buffer.subarray(0, n)).split("\r\n")[0];
    // A Redis asking for a password the URL gives answers PING with NOAUTH.
    if (reply.startsWith("+PONG") || (reply.startsWith("-NOAUTH") && target.password !== "")) {
      return undefined;
    }
    return `it answered PING with "${oneLine(reply).slice(0, 80)}", not +PONG`;
  } catch (e) {
    return signal?.aborted ? `no answer to PING within ${PROBE_MS} ms` : messageOf(e);
  } finally {
    signal?.removeEventListener("abort", close);
    close();
  }
}

function parseSeeds(text: string): [number, number] {
  const match = /^(\d+)\.\.(\d+)$/.exec(text);
  if (!match) {
    throw new UsageError(`--seeds: "${text}" is not a range (expected A..B, e.g. 1..100)`);
  }
  const [a, b] = [Number(match[1]), Number(match[2])];
  if (b < a) throw new UsageError(`--seeds: ${text} is empty (B must be at least A)`);
  return [a, b];
}

function parseSeed(text: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`--seed: "${text}" is not a whole number`);
  return Number(text);
}

/** Runs the CLI with `args`; resolves with the exit status. */
export async function main(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        seed: { type: "string" },
        seeds: { type: "string" },
        server: { type: "string" },
        storage: { type: "string" },
        json: { type: "string" },
        trace: { type: "string" },
        timeline: { type: "string" },
        shrink: { type: "boolean" },
        quiet: { type: "boolean" },
        "vary-network": { type: "boolean" },
        plugin: { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    io.err(`sim: ${argsProblem(e)}\n`);
    return SIM_EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(HELP);
    return SIM_EXIT.ok;
  }
  let scenario: Scenario;
  let seeds: number[];
  let storage: StorageKind;
  let server: string;
  let redisTargets: URL[] = [];
  try {
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length === 0
          ? "no scenario file given"
          : `one scenario file expected, got ${positionals.length}`,
      );
    }
    if (values.timeline === "") throw new UsageError("--timeline: give a file name, e.g. out.html");
    storage = (values.storage ?? "memory") as StorageKind;
    if (!["memory", "sqlite", "kv"].includes(storage)) {
      throw new UsageError(`--storage: "${values.storage}" is not memory, sqlite or kv`);
    }
    if (
      values.server !== undefined &&
      !/^(fake|redis(:\/\/.+)?|redis-cluster:\/\/\S+|http:\/\/[^/\s]+\/?)$/.test(values.server)
    ) {
      throw new UsageError(
        `--server: "${values.server}" is not supported (expected fake, redis[://host:port], ` +
          "redis-cluster://host:port,host:port,… or http://host:port)",
      );
    }
    scenario = await loadScenario(positionals[0], { plugins: values.plugin ?? [] });
    server = values.server ?? scenario.server ?? "fake";
    if (server.startsWith("https://")) {
      throw new UsageError(`--server: "${server}" is not supported (expected http://host:port)`);
    }
    if (server.startsWith("http://") && scenario.servers.length > 1) {
      throw new UsageError(
        `--server ${server}: the scenario declares ${scenario.servers.length} relays ` +
          `(${scenario.servers.join(", ")}) but one running server is one relay ` +
          "(expected a scenario with one relay, or --server fake|redis)",
      );
    }
    if (server.startsWith("redis://")) {
      try {
        redisTargets = [new URL(server)];
      } catch {
        throw new UsageError(`--server: "${server}" is not a URL (expected redis://host:port)`);
      }
    }
    if (server.startsWith("redis-cluster://")) {
      const nodes = redisClusterNodes(server);
      if (!nodes) {
        throw new UsageError(
          `--server: "${server}" does not name Redis Cluster nodes (expected ` +
            "redis-cluster://127.0.0.1:7000,127.0.0.1:7001,…)",
        );
      }
      redisTargets = nodes.map((node) => new URL(node));
    }
    if (values.seeds !== undefined && values.seed !== undefined) {
      throw new UsageError("give --seed or --seeds, not both");
    }
    if (values.seeds !== undefined) {
      const [a, b] = parseSeeds(values.seeds);
      seeds = Array.from({ length: b - a + 1 }, (_, i) => a + i);
    } else {
      seeds = [values.seed !== undefined ? parseSeed(values.seed) : scenario.seed ?? 1];
    }
    for (const option of ["json", "trace", "timeline"] as const) {
      const path = values[option];
      if (path !== undefined && !(option === "json" && path === "-")) {
        await checkOutput(option, path);
      }
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof ScenarioError) {
      io.err(`sim: ${oneLine(e.message)}\n`);
      return SIM_EXIT.usage;
    }
    if (e instanceof Deno.errors.NotFound) {
      io.err(`sim: cannot read ${positionals[0]}: no such file\n`);
      return SIM_EXIT.usage;
    }
    if (Object.values(Deno.errors).some((kind) => e instanceof kind)) {
      io.err(`sim: cannot read ${positionals[0]}: ${messageOf(e)}\n`);
      return SIM_EXIT.usage;
    }
    throw e;
  }
  const file = positionals[0];

  let redis: { url: string; stop(): Promise<void> } | undefined;
  const job: Omit<SeedJob, "seed"> = {
    file,
    server,
    storage,
    pluginsModule: io.extraPluginsModule,
    plugins: values.plugin ?? [],
    varyNetwork: values["vary-network"] ?? false,
  };
  if (server.startsWith("http://")) {
    const problem = await relayProblem(server);
    if (problem !== undefined) {
      io.err(`sim: cannot reach the relay at ${server}: ${problem}\n`);
      return SIM_EXIT.server;
    }
  }
  for (const target of redisTargets) {
    const problem = await redisProblem(target, io);
    if (problem !== undefined) {
      const at = redisTargets.length > 1 ? `${server} (node ${target.host})` : server;
      io.err(`sim: cannot reach the Redis at ${at}: ${problem}\n`);
      return SIM_EXIT.server;
    }
  }
  if (server.startsWith("redis")) {
    if (server === "redis") {
      const install =
        'install it with "apt-get install -y redis-server", or give --server redis://host:port';
      if (!io.startRedis) {
        io.err(`sim: --server redis: cannot start a redis-server here; ${install}\n`);
        return SIM_EXIT.server;
      }
      try {
        redis = await io.startRedis();
      } catch (e) {
        io.err(
          e instanceof Deno.errors.NotFound
            ? `sim: --server redis: ${messageOf(e)}; ${install}\n`
            : `sim: --server redis: cannot start redis-server: ${messageOf(e)}\n`,
        );
        return SIM_EXIT.server;
      }
    }
    job.redisUrl = redis?.url ?? server;
    job.redisPrefix = `meowsync-sim:${io.uniqueId()}:`;
  }

  // Output files that could not be written after the run, one line each.
  const unwritten: string[] = [];
  const write = async (
    what: string,
    path: string,
    save: () => Promise<void>,
  ): Promise<boolean> => {
    try {
      await save();
      return true;
    } catch (e) {
      unwritten.push(`sim: ${what} ${path}: cannot write it: ${messageOf(e)}`);
      return false;
    }
  };

  const traceLines: string[] = [];
  const results: SeedResult[] = [];
  let timelineTrace: Record<string, unknown>[] | undefined;
  let failing: Report | undefined;
  const started = io.wallClock();
  try {
    if (seeds.length === 1) {
      let lastBar = "";
      const lines: Record<string, unknown>[] = [];
      const result = await runSeed({ ...job, scenario, seed: seeds[0] }, {
        extraPlugins: io.extraPlugins,
        wallClock: io.wallClock,
        trace: values.trace !== undefined || values.timeline !== undefined
          ? (line) => lines.push(line)
          : undefined,
        progress: io.errIsTerminal && !values.quiet
          ? (virtualMs, durationMs) => {
            const share = Math.min(1, virtualMs / durationMs);
            const bar = `\r[${"#".repeat(Math.round(share * 30)).padEnd(30, ".")}] ${
              (virtualMs / 1000).toFixed(0)
            }s / ${(durationMs / 1000).toFixed(0)}s virtual`;
            if (bar !== lastBar) io.err(bar);
            lastBar = bar;
          }
          : undefined,
      });
      if (lastBar) io.err("\r" + " ".repeat(lastBar.length) + "\r");
      results.push(result);
      for (const line of lines) traceLines.push(JSON.stringify(line));
      timelineTrace = lines;
    } else {
      // Failures are printed in seed order as soon as every lower seed is done,
      // so the output does not depend on which worker finished first.
      const done = new Map<number, SeedResult>();
      let printed = 0;
      const onResult = (result: SeedResult) => {
        done.set(result.seed, result);
        while (printed < seeds.length && done.has(seeds[printed])) {
          printSeed(done.get(seeds[printed])!, io, { quiet: values.quiet, job });
          printed++;
        }
      };
      const swarmJob = { ...job, trace: values.trace !== undefined };
      if (io.extraPlugins) {
        for (const seed of seeds) {
          const t0 = io.wallClock();
          const result = await runSeed({ ...swarmJob, scenario, seed }, {
            extraPlugins: io.extraPlugins,
          }).catch((e) => ({ seed, error: (e as Error).stack ?? String(e) }) as SeedResult);
          if (result.report) result.report.stats.wallMs = Math.round(io.wallClock() - t0);
          onResult(result);
        }
      } else {
        await runSwarm(swarmJob, seeds, {
          workers: io.workers,
          wallClock: io.wallClock,
          onResult,
        });
      }
      for (const seed of seeds) {
        const result = done.get(seed)!;
        results.push(result);
        for (const line of result.trace ?? []) traceLines.push(JSON.stringify(line));
        delete result.trace;
      }
    }
    failing = results.find((r) => r.report && !r.report.ok)?.report;
    const late = results.find((r) => (r.report?.stats.virtualMs ?? 0) > httpVirtualMsMax);
    if (server.startsWith("http") && late) {
      io.err(
        `sim: warning: seed ${late.seed} ran ${
          late.report!.stats.virtualMs
        } ms of virtual time, past the ` +
          `${httpVirtualMsMax} ms an http:// relay accepts (its pull signatures must be within ` +
          "PULL_FRESHNESS_MS of the relay's real clock); later pulls were refused as stale\n",
      );
    }

    if (values.timeline !== undefined) {
      const chosen = failing ?? results.find((r) => r.report)?.report;
      if (chosen && !timelineTrace) {
        // A swarm keeps no traces: run the chosen seed again (the same run, by determinism).
        if (!values.quiet) io.err(`sim: tracing seed ${chosen.seed} for the timeline\n`);
        const lines: Record<string, unknown>[] = [];
        await runSeed({ ...job, scenario, seed: chosen.seed }, {
          extraPlugins: io.extraPlugins,
          trace: (line) => lines.push(line),
        });
        timelineTrace = lines;
      }
      if (
        chosen && timelineTrace &&
        await write(
          "--timeline",
          values.timeline,
          () =>
            Deno.writeTextFile(
              values.timeline!,
              timelineHtml(timelineTrace!, { scenario, report: chosen }),
            ),
        ) && !values.quiet
      ) {
        io.err(`sim: timeline of seed ${chosen.seed} in ${values.timeline}\n`);
      }
    }

    if (values.shrink) {
      if (!failing) {
        if (!values.quiet) io.err("sim: --shrink: every expectation held, nothing to shrink\n");
      } else {
        const seed = failing.seed;
        const expectation = failing.expectations.find((e) => !e.ok)!.name;
        io.err(`sim: shrinking seed ${seed} (${expectation} fails)\n`);
        const shrunk = await shrinkScenario(scenario, {
          expectation,
          run: async (candidate) =>
            (await runSeed({ ...job, scenario: candidate, seed }, {
              extraPlugins: io.extraPlugins,
            })).report!,
          progress: (line) => io.err(`sim: shrink: ${line}\n`),
        });
        const path = shrunkPath(file);
        // The file's own seed is the failing one, so running it alone replays the failure.
        const written = await write(
          "--shrink",
          path,
          () => writeShrunk(path, { ...shrunk.scenario, seed }),
        );
        const before = scenarioSize(scenario);
        const after = scenarioSize(shrunk.scenario);
        if (written) {
          io.out(
            `shrunk in ${shrunk.runs} runs: users ${before.users} → ${after.users}, devices ${before.devices} → ${after.devices}, ` +
              `steps ${before.steps} → ${after.steps}, messages ${before.messages} → ${after.messages}; ` +
              `still fails ${expectation}\n` +
              `  written to ${path} — replay: ${
                replayCommand(path, seed, server, storage, values["vary-network"], values.plugin)
              }\n`,
          );
        }
      }
    }
  } catch (e) {
    // The relay answered the probe, then stopped answering during the run.
    if (e instanceof TransportError) {
      io.err(`sim: lost the relay at ${server}: ${messageOf(e)}\n`);
      return SIM_EXIT.server;
    }
    throw e;
  } finally {
    await redis?.stop();
  }

  if (values.trace !== undefined) {
    const trace = values.trace;
    await write("--trace", trace, () => Deno.writeTextFile(trace, traceLines.join("\n") + "\n"));
  }
  const reports = results.flatMap((r) => r.report ? [r.report] : []);
  const json = JSON.stringify(seeds.length === 1 ? reports[0] : reports, null, 2);
  if (values.json === "-") io.out(json + "\n");
  else {
    const path = values.json;
    if (path !== undefined) {
      await write("--json", path, () => Deno.writeTextFile(path, json + "\n"));
    }
    if (seeds.length === 1) io.out(summary(reports[0]) + "\n");
    else {
      const failures = results.filter((r) => !r.report?.ok).length;
      io.out(
        `${results.length} seeds run, ${failures} failed, ${
          ((io.wallClock() - started) / 1000).toFixed(1)
        } s wall\n`,
      );
    }
  }
  for (const line of unwritten) io.err(line + "\n");
  if (unwritten.length > 0) return SIM_EXIT.output;
  return results.every((r) => r.report?.ok) ? SIM_EXIT.ok : SIM_EXIT.failed;
}

/** One swarm line: failures on stdout with their replay command, passes on stderr. */
function printSeed(
  result: SeedResult,
  io: CliIo,
  options: { quiet?: boolean; job: Omit<SeedJob, "seed"> },
): void {
  const { report, seed } = result;
  if (!report) {
    const { file, server, storage } = options.job;
    const replay = replayCommand(
      file,
      seed,
      server,
      storage ?? "memory",
      options.job.varyNetwork,
      options.job.plugins,
    );
    io.out(`seed ${seed}: ERROR (${result.error?.split("\n")[0]}) — replay: ${replay}\n`);
  } else if (!report.ok) {
    const failed = report.expectations.filter((e) => !e.ok).map((e) => e.name).join(", ");
    io.out(`seed ${seed}: FAIL (${failed}) — replay: ${report.replay}\n`);
  } else if (!options.quiet) io.err(`seed ${seed}: ok\n`);
}

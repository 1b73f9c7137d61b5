/**
 * `deno task sim FILE [options]` (SCENARIOS.md, "Command line"): parses the
 * options, runs the scenario (or a range of seeds), prints a one-screen
 * summary, writes the JSON report and the trace, and returns the exit status:
 * 0 every expectation held, 1 one failed, 2 the file or options are invalid.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { PluginInput } from "../kernel/mod.ts";
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
  --server KIND       fake | redis[://host:port] | http://host:port (a running
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

Exit status: 0 all expectations held; 1 an expectation failed; 2 invalid file or options.
`;

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
  /** Starts a private redis-server for `--server redis`; resolves with its URL and a stop function. */
  startRedis?(): Promise<{ url: string; stop(): Promise<void> }>;
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
    io.err(`sim: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  let scenario: Scenario;
  let seeds: number[];
  let storage: StorageKind;
  let server: string;
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
      !/^(fake|redis(:\/\/.+)?|http:\/\/[^/\s]+\/?)$/.test(values.server)
    ) {
      throw new UsageError(
        `--server: "${values.server}" is not supported (expected fake, redis[://host:port] or http://host:port)`,
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
    if (values.seeds !== undefined && values.seed !== undefined) {
      throw new UsageError("give --seed or --seeds, not both");
    }
    if (values.seeds !== undefined) {
      const [a, b] = parseSeeds(values.seeds);
      seeds = Array.from({ length: b - a + 1 }, (_, i) => a + i);
    } else {
      seeds = [values.seed !== undefined ? parseSeed(values.seed) : scenario.seed ?? 1];
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof ScenarioError) {
      io.err(`sim: ${e.message}\n`);
      return 2;
    }
    if (e instanceof Deno.errors.NotFound) {
      io.err(`sim: cannot read ${positionals[0]}: no such file\n`);
      return 2;
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
  if (server.startsWith("redis")) {
    if (server === "redis") {
      if (!io.startRedis) {
        io.err("sim: --server redis needs redis-server installed (or give redis://host:port)\n");
        return 2;
      }
      redis = await io.startRedis();
    }
    job.redisUrl = redis?.url ?? server;
    job.redisPrefix = `meowsync-sim:${io.uniqueId()}:`;
  }

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
      if (chosen && timelineTrace) {
        await Deno.writeTextFile(
          values.timeline,
          timelineHtml(timelineTrace, { scenario, report: chosen }),
        );
        if (!values.quiet) io.err(`sim: timeline of seed ${chosen.seed} in ${values.timeline}\n`);
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
        await writeShrunk(path, { ...shrunk.scenario, seed });
        const before = scenarioSize(scenario);
        const after = scenarioSize(shrunk.scenario);
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
  } finally {
    await redis?.stop();
  }

  if (values.trace !== undefined) {
    await Deno.writeTextFile(values.trace, traceLines.join("\n") + "\n");
  }
  const reports = results.flatMap((r) => r.report ? [r.report] : []);
  const json = JSON.stringify(seeds.length === 1 ? reports[0] : reports, null, 2);
  if (values.json === "-") io.out(json + "\n");
  else {
    if (values.json !== undefined) await Deno.writeTextFile(values.json, json + "\n");
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
  return results.every((r) => r.report?.ok) ? 0 : 1;
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

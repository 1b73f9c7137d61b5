/**
 * `deno task sim FILE [options]` (SCENARIOS.md, "Command line"): parses the
 * options, runs the scenario (or a range of seeds), prints a one-screen
 * summary, writes the JSON report and the trace, and returns the exit status:
 * 0 every expectation held, 1 one failed, 2 the file or options are invalid.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { PluginInput } from "../kernel/plugin.ts";
import type { Backend } from "../server/mod.ts";
import { RedisBackend } from "../server/redis.ts";
import { type Report, runScenario, summary } from "./run.ts";
import { loadScenario, type Scenario, ScenarioError } from "./scenario.ts";
import type { StorageKind } from "./storage.ts";

/** The help text. */
export const HELP = `Usage: deno task sim FILE [options]

Runs a meowsync scenario (YAML, JSON or a .ts module) in the deterministic
simulator and checks its expectations. See docs/SCENARIOS.md.

Options:
  --seed N            seed for every random choice (default: the file's seed, else 1)
  --seeds A..B        run every seed in the range; one line per failing seed
  --server KIND       fake | redis[://host:port] (default: the file's server, else fake)
  --storage KIND      memory | sqlite | kv (default: memory)
  --json PATH         write the report as JSON ("-" for stdout)
  --trace PATH        write every event as JSON lines
  --timeline PATH     write an HTML message-flow diagram (not available yet)
  --shrink            on failure, search for a smaller failing scenario (not available yet)
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
  /** Extra plugins per device (tests plant bugs this way). */
  extraPlugins?: (ref: string) => PluginInput[];
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
  try {
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length === 0
          ? "no scenario file given"
          : `one scenario file expected, got ${positionals.length}`,
      );
    }
    if (values.timeline !== undefined) throw new UsageError("--timeline is not available yet");
    if (values.shrink) throw new UsageError("--shrink is not available yet");
    storage = (values.storage ?? "memory") as StorageKind;
    if (!["memory", "sqlite", "kv"].includes(storage)) {
      throw new UsageError(`--storage: "${values.storage}" is not memory, sqlite or kv`);
    }
    if (values.server !== undefined && !/^(fake|redis(:\/\/.+)?)$/.test(values.server)) {
      throw new UsageError(
        `--server: "${values.server}" is not supported (expected fake or redis[://host:port]; http:// relays are not available yet)`,
      );
    }
    scenario = await loadScenario(positionals[0]);
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

  const server = values.server ?? scenario.server ?? "fake";
  let redis: { url: string; stop(): Promise<void> } | undefined;
  let backend: ((name: string) => Promise<Backend>) | undefined;
  if (server.startsWith("redis")) {
    if (server === "redis") {
      if (!io.startRedis) {
        io.err("sim: --server redis needs redis-server installed (or give redis://host:port)\n");
        return 2;
      }
      redis = await io.startRedis();
    }
    const url = redis?.url ?? server;
    const run = io.uniqueId();
    backend = (name) => RedisBackend.connect({ url, prefix: `meowsync-sim:${run}:${name}:` });
  }

  const traceLines: string[] = [];
  const reports: Report[] = [];
  const started = io.wallClock();
  try {
    for (const seed of seeds) {
      let lastBar = "";
      const report = await runScenario(scenario, {
        seed,
        server,
        storage,
        file: positionals[0],
        backend,
        extraPlugins: io.extraPlugins,
        wallClock: io.wallClock,
        trace: values.trace !== undefined
          ? (line) => traceLines.push(JSON.stringify(line))
          : undefined,
        progress: io.errIsTerminal && !values.quiet && seeds.length === 1
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
      reports.push(report);
      if (seeds.length > 1) {
        if (!report.ok) {
          const failed = report.expectations.filter((e) => !e.ok).map((e) => e.name).join(", ");
          io.out(`seed ${seed}: FAIL (${failed}) — replay: ${report.replay}\n`);
        } else if (!values.quiet) io.err(`seed ${seed}: ok\n`);
      }
    }
  } finally {
    await redis?.stop();
  }

  if (values.trace !== undefined) {
    await Deno.writeTextFile(values.trace, traceLines.join("\n") + "\n");
  }
  const json = JSON.stringify(seeds.length === 1 ? reports[0] : reports, null, 2);
  if (values.json === "-") io.out(json + "\n");
  else {
    if (values.json !== undefined) await Deno.writeTextFile(values.json, json + "\n");
    if (seeds.length === 1) io.out(summary(reports[0]) + "\n");
    else {
      const failures = reports.filter((r) => !r.ok).length;
      io.out(
        `${reports.length} seeds run, ${failures} failed, ${
          ((io.wallClock() - started) / 1000).toFixed(1)
        } s wall\n`,
      );
    }
  }
  return reports.every((r) => r.ok) ? 0 : 1;
}

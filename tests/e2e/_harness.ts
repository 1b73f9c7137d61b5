/**
 * Real processes for the end-to-end tests: a relay (`cli/server.ts`) and
 * device agents (`cli/agent.ts`), each run with exactly the permissions of
 * its `deno.json` task, on loopback only. Every process a test starts is
 * registered with a {@linkcode Procs} and killed by its handle at the end,
 * even when the test fails.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  redisSkip,
  startRedis,
  type StartRedisOptions,
  type TestRedis,
} from "../../server/redis_process.ts";
import { freePort, relayAnswers, ROOT, taskArgs } from "../support/processes.ts";

export { freePort, ROOT };

/** The passphrase every test home uses. */
export const PASSPHRASE = "correct horse battery staple";
/** How long one CLI command may take, in ms. */
const COMMAND_MS_MAX = 30_000;
/**
 * How long a command that waits for another device (`pair join`, `accept`)
 * may take, in ms: two process starts, a passphrase derivation and two relay
 * round trips each side, on a loaded two-core CI machine.
 */
export const WAITING_COMMAND_MS_MAX = 120_000;
/** The line `pair start` and `invite` print: `code: K7M2-XQ4P-9R3T`; group 1 is the code. */
export const CODE_LINE = /^code: ([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})$/m;
/** The line both sides of a pairing print: `safety code: 417093`; group 1 is the six digits. */
export const SAFETY_CODE_LINE = /^safety code: (\d{6})\b/m;
/** How much of each process's output a failure report shows, in characters. */
const TAIL_CHARS = 2_000;

/** What a finished command printed and how it ended. */
export interface Result {
  /** The exit code. */
  code: number;
  /** Its stdout. */
  stdout: string;
  /** Its stderr. */
  stderr: string;
}

/** A started process whose output is collected line by line. */
export class Proc {
  readonly child: Deno.ChildProcess;
  readonly name: string;
  stdout = "";
  stderr = "";
  readonly done: Promise<Result>;
  /** Whether the process has ended. */
  exited = false;

  constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.child = child;
    const read = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) this[into] += chunk;
    };
    this.done = Promise.all([
      read(child.stdout, "stdout"),
      read(child.stderr, "stderr"),
      child.status,
    ]).then(([, , status]) => {
      this.exited = true;
      return { code: status.code, stdout: this.stdout, stderr: this.stderr };
    });
  }

  /** Resolves with the first match of `pattern` in stdout + stderr, within `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs = COMMAND_MS_MAX): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let finished = false;
    this.done.then(() => finished = true, () => finished = true);
    for (;;) {
      const match = (this.stdout + "\n" + this.stderr).match(pattern);
      if (match) return match;
      if (finished || Date.now() > deadline) {
        throw new Error(
          `${this.name}: ${
            finished ? "exited" : "timed out"
          } without printing ${pattern}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** Sends `signal` (if it still runs). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** The processes of one test: started through it, all stopped by {@linkcode Procs.stopAll}. */
export class Procs {
  readonly #all: Proc[] = [];
  readonly dir: string;
  #agentArgs: string[] | undefined;
  #serverArgs: string[] | undefined;
  #cloudArgs: string[] | undefined;
  readonly env: Record<string, string>;

  private constructor(dir: string) {
    this.dir = dir;
    this.env = { MEOW_PASSPHRASE: PASSPHRASE, NO_COLOR: "1", MEOW_HOME: `${dir}/default-home` };
  }

  /** A new set of processes with a temp dir. */
  static async create(): Promise<Procs> {
    const procs = new Procs(await Deno.makeTempDir({ prefix: "meowsync-e2e-" }));
    procs.#agentArgs = await taskArgs("agent");
    procs.#serverArgs = await taskArgs("server");
    procs.#cloudArgs = await taskArgs("cloud");
    return procs;
  }

  #spawn(name: string, args: string[], env: Record<string, string> = {}): Proc {
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      env: { ...this.env, ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const proc = new Proc(name, child);
    this.#all.push(proc);
    return proc;
  }

  /** Starts `deno task agent <args>` (same permissions) and returns at once. */
  spawnAgent(args: string[], env: Record<string, string> = {}): Proc {
    return this.#spawn(`agent ${args.join(" ")}`, [...this.#agentArgs!, ...args], env);
  }

  /** Runs `deno task agent <args>` to its end; SIGKILL after `timeoutMs`. */
  async agent(
    args: string[],
    env: Record<string, string> = {},
    timeoutMs = COMMAND_MS_MAX,
  ): Promise<Result> {
    const proc = this.spawnAgent(args, env);
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    try {
      return await proc.done;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs an agent command that must succeed; resolves with its stdout. A
   * failure reports the command's output, how long it ran, and the tail of
   * every other process of the test (the relay, a waiting sibling).
   */
  async ok(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
    const started = Date.now();
    const result = await this.agent(args, {}, options.timeoutMs);
    if (result.code !== 0) {
      const name = `agent ${args.join(" ")}`;
      throw new Error(
        `${name} exited ${result.code} after ${Date.now() - started} ms` +
          (result.code === 137 ? " (killed: it ran out of time)" : "") +
          `\nstdout: ${result.stdout}\nstderr: ${result.stderr}\n${this.describe(name)}`,
      );
    }
    return result.stdout;
  }

  /** The output tails of every process but `except`, for a failure report. */
  describe(except = ""): string {
    const tail = (text: string) => text.length > TAIL_CHARS ? `…${text.slice(-TAIL_CHARS)}` : text;
    return this.#all.filter((p) => p.name !== except).map((p) =>
      `--- ${p.name} (${p.exited ? "exited" : "running"})\n` +
      `stdout: ${tail(p.stdout)}\nstderr: ${tail(p.stderr)}`
    ).join("\n");
  }

  /** Runs an agent command with `--json`; resolves with its (last) JSON line. */
  async json<T>(args: string[]): Promise<T> {
    const lines = (await this.ok(["--json", ...args])).trim().split("\n");
    return JSON.parse(lines[lines.length - 1]) as T;
  }

  /**
   * Starts a relay on a free loopback port over `backend` (`kv` in the temp
   * dir, or a redis:// URL), with `extraArgs` (limits), and resolves with its URL once its card answers.
   */
  async relay(backend: string, extraArgs: string[] = []): Promise<string> {
    return (await this.startRelay(backend, { extraArgs })).url;
  }

  /**
   * {@linkcode Procs.relay} with its process (to kill it), on `options.port` when given (to
   * start it again where the devices look for it).
   */
  async startRelay(
    backend: string,
    options: { extraArgs?: string[]; port?: number } = {},
  ): Promise<{ url: string; proc: Proc }> {
    const port = options.port ?? freePort();
    const extraArgs = options.extraArgs ?? [];
    const spec = backend === "kv" ? `kv:${this.dir}/relay.kv` : backend;
    const proc = this.#spawn("relay", [
      ...this.#serverArgs!,
      "--port",
      String(port),
      "--hostname",
      "127.0.0.1",
      "--backend",
      spec,
      "--log-level",
      "warn",
      ...extraArgs,
    ]);
    const url = `http://127.0.0.1:${port}`;
    if (!await relayAnswers(url, COMMAND_MS_MAX)) {
      throw new Error(`relay did not start: ${proc.stderr}`);
    }
    return { url, proc };
  }

  /**
   * Starts the always-online device (`deno task cloud`, deploy/agent.ts under `deno serve`) on
   * a free loopback port with `env` (its KV file in the temp dir unless given), and resolves
   * with its URL and process once `/health` answers.
   */
  async cloud(
    env: Record<string, string> = {},
    port = freePort(),
  ): Promise<{ url: string; proc: Proc }> {
    const args = [...this.#cloudArgs!];
    const script = args.pop()!;
    const proc = this.#spawn("cloud", [
      ...args,
      "--port",
      String(port),
      "--host",
      "127.0.0.1",
      script,
    ], {
      MEOW_KV_PATH: `${this.dir}/cloud.kv`,
      MEOW_LOG_LEVEL: "info",
      ...env,
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + COMMAND_MS_MAX;
    for (;;) {
      try {
        const response = await fetch(`${url}/health`);
        await response.body?.cancel();
        if (response.ok) return { url, proc };
      } catch {
        // Not listening yet.
      }
      if (proc.exited || Date.now() > deadline) {
        throw new Error(`the cloud device did not start: ${proc.stderr}${proc.stdout}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Kills every process still running (SIGKILL, by handle), waits for them, removes the dir. */
  async stopAll(): Promise<void> {
    for (const proc of this.#all) proc.kill("SIGKILL");
    await Promise.allSettled(this.#all.map((p) => p.done));
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Runs `body` with a private Redis, or says why it cannot. */
export async function withRedis(
  body: (redis: TestRedis) => Promise<void>,
  options: StartRedisOptions = {},
): Promise<void> {
  const redis = await startRedis(options);
  try {
    await body(redis);
  } finally {
    await redis.stop();
  }
}

export { redisSkip };

/**
 * A test with a private Redis and a {@linkcode Procs}, both stopped at the end; without
 * redis-server it is skipped, and its name says why.
 */
export function redisProcsTest(
  name: string,
  fn: (redis: TestRedis, procs: Procs) => Promise<void>,
  redisOptions: StartRedisOptions = {},
): void {
  const skip = redisSkip();
  Deno.test({
    name: `${name}${skip ? ` (skipped: ${skip})` : ""}`,
    ignore: skip !== undefined,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () =>
      withRedis(async (redis) => {
        const procs = await Procs.create();
        try {
          await fn(redis, procs);
        } finally {
          await procs.stopAll();
        }
      }, redisOptions),
  });
}

/**
 * Asserts a command failed the way a user should see it: exit code `code`,
 * one line on stderr that starts "meowsync agent: " and matches `pattern`,
 * no stack trace.
 */
export function assertOneLine(result: Result, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `exit code; stderr: ${result.stderr}`);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${result.stderr}`);
  assert.match(lines[0], /^meowsync agent: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(result.stderr, /^\s+at /m, "no stack trace");
}

/** Splits a shell command line into words (double and single quotes, no escapes). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (const m of line.matchAll(re)) words.push(m[1] ?? m[2] ?? m[3]);
  return words;
}

/** Polls `check` until it resolves true, within `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

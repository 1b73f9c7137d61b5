/**
 * What every command stands on: the context it runs in (the I/O, the home,
 * the output mode), the session it acts through — the running agent's
 * control endpoint when `run` holds the home, else an agent opened on the
 * store under the home lock, both dispatching through the one operation
 * table — and its output (text lines, or one JSON object per line with
 * `--json`).
 *
 * @module
 */
import { MeowError, type PluginModule } from "../kernel/mod.ts";
import { type Transport, TransportError } from "../ports/mod.ts";
import { UnreadableRecord } from "../plugins/storage/mod.ts";
import { Agent } from "./agent.ts";
import { callControl, ControlUnreachable } from "./control.ts";
import { AgentError, EXIT } from "./errors.ts";
import {
  HomeLock,
  type HomePaths,
  readConfig,
  readControlAddress,
  removeControlAddress,
} from "./home.ts";
import { type OpInput, type OpName, type OpResult, runOperation } from "./operations.ts";
import { deriveKey, getPassphrase, keyMatches } from "./passphrase.ts";

/** How long a command waits for another command to release the home, in ms. */
const BUSY_WAIT_MS = 5_000;
/** How often a wait says it is still waiting, in ms. */
const PROGRESS_MS = 10_000;

/** What the CLI reads and writes; tests pass their own. */
export interface CliIo {
  /** Writes one line to stdout. */
  out(line: string): void;
  /** Writes one line to stderr. */
  err(line: string): void;
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /**
   * Asks for a passphrase without echo; undefined without a terminal.
   * @default {the terminal}
   */
  ask?(prompt: string): Promise<string | undefined>;
  /**
   * Aborts waits and stops `run`.
   * @default {SIGINT or SIGTERM}
   */
  interrupt?: AbortSignal;
  /**
   * The way to the relays.
   * @default {new HttpTransport()}
   */
  transport?: Transport;
}

/** What one command runs with. */
export interface Ctx {
  /** Its I/O. */
  io: CliIo;
  /** The home it acts on. */
  paths: HomePaths;
  /** Whether it prints JSON (`--json`) instead of text. */
  json: boolean;
  /** Aborts on Ctrl-C or SIGTERM. */
  interrupt: AbortSignal;
  /** The way to the relays. */
  transport: Transport;
  /** The plugin modules loaded besides the built-in ones (`--plugin`, the home's `plugins`). */
  modules: readonly PluginModule[];
}

/** Turns any failure into the one line and exit code the user sees. */
export function toAgentError(e: unknown): AgentError {
  if (e instanceof AgentError) return e;
  if (e instanceof TransportError) {
    return new AgentError(`cannot reach the relay: ${e.message}`, EXIT.unreachable);
  }
  if (e instanceof UnreadableRecord) {
    return new AgentError(
      `the store does not open with this passphrase (${e.message})`,
      EXIT.passphrase,
    );
  }
  if (e instanceof MeowError) return new AgentError(e.message, EXIT.failure);
  const message = e instanceof Error ? e.message : String(e);
  return new AgentError(message.split("\n")[0], EXIT.failure);
}

// ─── Sessions: through the running agent, or on the store under the lock ──────

/** The way a command runs operations on its home. */
export interface Session {
  /** Whether a running agent serves the calls. */
  remote: boolean;
  /** Runs operation `op` with `input` (in this process, or in the running agent). */
  call<N extends OpName>(op: N, input: OpInput<N>): Promise<OpResult<N>>;
  /** Ends the session (a local one flushes, closes and releases the lock). */
  close(): Promise<void>;
}

/**
 * Opens a session on the home: a local one when the home lock is free (after
 * a catch-up round when `options.catchUp`), else through the running agent;
 * waits up to {@linkcode BUSY_WAIT_MS} for another command to finish.
 */
export async function openSession(ctx: Ctx, options: { catchUp: boolean }): Promise<Session> {
  const config = await readConfig(ctx.paths);
  if (!config) {
    throw new AgentError(
      `no identity in ${ctx.paths.dir} yet: run \`init\` or \`pair join\` first`,
      EXIT.noIdentity,
    );
  }
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (;;) {
    const lock = await HomeLock.tryAcquire(ctx.paths);
    if (lock instanceof HomeLock) {
      try {
        return await localSession(ctx, lock, options);
      } catch (e) {
        lock.release();
        throw e;
      }
    }
    const address = await readControlAddress(ctx.paths);
    if (address) {
      try {
        await callControl(address, "status", {});
        return {
          remote: true,
          call: (op, input) => callControl(address, op, input, ctx.interrupt),
          close: () => Promise.resolve(),
        };
      } catch (e) {
        if (!(e instanceof ControlUnreachable)) throw e;
      }
    }
    if (Date.now() > deadline) {
      throw new AgentError(
        `another meowsync command${
          lock.pid ? ` (pid ${lock.pid})` : ""
        } is using ${ctx.paths.dir}; try again when it has finished`,
        EXIT.busy,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The store key from the passphrase; a wrong passphrase is an exit-3 error. */
export async function unlock(ctx: Ctx): Promise<Uint8Array> {
  const config = await readConfig(ctx.paths);
  if (!config) {
    throw new AgentError(`no identity in ${ctx.paths.dir} yet`, EXIT.noIdentity);
  }
  const passphrase = await getPassphrase({ env: ctx.io.env, ask: ctx.io.ask });
  const key = deriveKey(passphrase, config.kdf);
  if (!keyMatches(key, config.check)) {
    throw new AgentError(`wrong passphrase for ${ctx.paths.dir}`, EXIT.passphrase);
  }
  return key;
}

async function localSession(
  ctx: Ctx,
  lock: HomeLock,
  options: { catchUp: boolean },
): Promise<Session> {
  // A killed `run` leaves its control files behind; the lock says it is gone.
  await removeControlAddress(ctx.paths);
  const key = await unlock(ctx);
  const agent = await Agent.open(ctx.paths, key, {
    transport: ctx.transport,
    modules: ctx.modules,
  });
  if (options.catchUp && agent.kernel.hasIdentity()) warn(ctx, await agent.catchUp());
  return {
    remote: false,
    call: (op, input) => runOperation(agent, op, input, ctx.interrupt),
    close: async () => {
      try {
        warn(ctx, await agent.finish());
      } finally {
        lock.release();
      }
    },
  };
}

/** Runs `fn` in a session on the home (see {@linkcode openSession}), then closes it. */
export async function withSession(
  ctx: Ctx,
  options: { catchUp: boolean },
  fn: (session: Session) => Promise<void>,
): Promise<void> {
  const session = await openSession(ctx, options);
  try {
    await fn(session);
  } finally {
    await session.close();
  }
}

// ─── Output ───────────────────────────────────────────────────────────────────

/** Prints a result: `value` as one JSON line with `--json`, else the `text` lines. */
export function emit(ctx: Ctx, value: unknown, text: string | string[]): void {
  if (ctx.json) ctx.io.out(JSON.stringify(value));
  else for (const line of [text].flat()) ctx.io.out(line);
}

/** Prints a warning, if any, on stderr. */
export function warn(ctx: Ctx, warning: string | undefined): void {
  if (warning) ctx.io.err(`meowsync agent: warning: ${warning}`);
}

/** Says "still waiting" every {@linkcode PROGRESS_MS} while `promise` runs. */
export async function withProgress<T>(ctx: Ctx, what: string, promise: Promise<T>): Promise<T> {
  const started = Date.now();
  ctx.io.err(`waiting for ${what} (Ctrl-C stops waiting)…`);
  const timer = setInterval(() => {
    ctx.io.err(`still waiting for ${what} (${Math.round((Date.now() - started) / 1000)} s)…`);
  }, PROGRESS_MS);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}

// meowsync:production-port — the simulator's command line reads the wall clock for its timing report.
/**
 * `deno task sim FILE [options]`: the simulator's entry point (logic in sim/cli.ts, through sim/mod.ts).
 * Whatever goes wrong ends as one `sim: …` line on stderr: an error `main()`
 * did not expect is reported as `sim: internal error: …` (with its stack when
 * `MEOW_DEBUG` is set and readable) and exit status 5.
 *
 * @module
 */
import { main, SIM_EXIT } from "../sim/mod.ts";
import { startRedis } from "../server/mod.ts";

const encoder = new TextEncoder();
const err = (text: string) => Deno.stderr.writeSync(encoder.encode(text));

/** Whether `MEOW_DEBUG` is set, asking for no permission the task does not grant. */
function debug(): boolean {
  try {
    const env = { name: "env", variable: "MEOW_DEBUG" } as const;
    return Deno.permissions.querySync(env).state === "granted" && !!Deno.env.get("MEOW_DEBUG");
  } catch {
    return false;
  }
}

function internal(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  const line = message.split("\n").map((part) => part.trim()).filter((part) => part !== "")
    .join(" ");
  err(`sim: internal error: ${line || "(no message)"}\n`);
  if (debug() && error instanceof Error && error.stack) err(error.stack + "\n");
  Deno.exit(SIM_EXIT.internal);
}

// A stray rejection or exception (a worker, a callback) ends the same way.
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  internal(event.reason);
});
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  internal(event.error ?? event.message);
});

let status: number;
try {
  status = await main(Deno.args, {
    out: (text) => Deno.stdout.writeSync(encoder.encode(text)),
    err,
    errIsTerminal: Deno.stderr.isTerminal(),
    wallClock: () => performance.now(),
    uniqueId: () => crypto.randomUUID(),
    abortAfter: (ms) => AbortSignal.timeout(ms),
    // Rejects with Deno.errors.NotFound when redis-server is not installed.
    startRedis: () => startRedis(),
  });
} catch (e) {
  internal(e);
}
Deno.exit(status);

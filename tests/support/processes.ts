/**
 * Starting the project's own processes from tests and benchmarks: a free
 * loopback port, a `deno task`'s arguments as deno.json gives them, and the
 * wait until a relay started on a port answers its card.
 *
 * @module
 */
import { freeLoopbackPort } from "../../server/redis_process.ts";

/** The project's root directory (with its deno.json). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** A free loopback port below the ephemeral range (so a process restarted on it can bind it). */
export const freePort: () => number = freeLoopbackPort;

/** The arguments of `deno task <task>` after `deno`, as deno.json gives them. */
export async function taskArgs(task: string): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)) as {
    tasks: Record<string, string>;
  };
  const words = config.tasks[task].split(/\s+/);
  if (words[0] !== "deno") throw new Error(`task ${task} does not start with deno`);
  return words.slice(1);
}

/**
 * Resolves true once the relay at `url` answers `GET /card`, asking every 50 ms, or false when
 * `withinMs` passed without an answer.
 */
export async function relayAnswers(url: string, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      const response = await fetch(`${url}/card`);
      await response.body?.cancel();
      if (response.ok) return true;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

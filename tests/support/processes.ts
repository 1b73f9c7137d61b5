/**
 * Starting the project's own processes from tests and benchmarks: a free
 * loopback port, a `deno task`'s arguments as deno.json gives them, and the
 * wait until a relay started on a port answers its card.
 *
 * @module
 */

/** The project's root directory (with its deno.json). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** A loopback port nothing listens on (just closed). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

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

// meowsync:production-port — starts and stops a private redis-server process, on the real clock.
/**
 * A private `redis-server` for a test, a benchmark or `deno task sim --server redis`: started on a free
 * loopback port in a temp dir, stopped by its PID. It never touches a Redis
 * it did not start. When `redis-server` is not installed, {@linkcode redisSkip}
 * says why and the Redis tests are registered with `ignore: true`.
 *
 * @module
 */

/** Where the Debian package installs the server. */
export const REDIS_SERVER = "/usr/bin/redis-server";
/** How long to wait for a started server to answer PING, in ms. */
const START_MS_MAX = 10_000;

/** A running private Redis. */
export interface TestRedis {
  /** Its port on 127.0.0.1. */
  port: number;
  /** `redis://127.0.0.1:<port>`. */
  url: string;
  /** Stops the server (by PID) and removes its temp dir. */
  stop(): Promise<void>;
}

/** Why Redis tests cannot run here, or `undefined` when they can. */
export function redisSkip(): string | undefined {
  try {
    Deno.statSync(REDIS_SERVER);
    return undefined;
  } catch {
    return `${REDIS_SERVER} is not installed (apt-get install -y redis-server)`;
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function ping(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buffer = new Uint8Array(16);
      const n = await conn.read(buffer);
      return n !== null && new TextDecoder().decode(buffer.subarray(0, n)).startsWith("+PONG");
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

/**
 * Starts a private `redis-server` and resolves once it answers PING. Rejects
 * with `Deno.errors.NotFound` when it is not installed.
 */
export async function startRedis(): Promise<TestRedis> {
  if (redisSkip() !== undefined) throw new Deno.errors.NotFound(`${REDIS_SERVER} is not installed`);
  const dir = await Deno.makeTempDir({ prefix: "meowsync-redis-" });
  const port = freePort();
  const child = new Deno.Command(REDIS_SERVER, {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let stopped = false;
  // A test run that ends early still stops its server.
  const onUnload = () => {
    if (!stopped) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
  };
  globalThis.addEventListener("unload", onUnload);
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    globalThis.removeEventListener("unload", onUnload);
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + START_MS_MAX;
  while (!(await ping(port))) {
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not answer PING within ${START_MS_MAX} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { port, url: `redis://127.0.0.1:${port}`, stop };
}

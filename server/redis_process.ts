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
/** Where the Debian package installs the command-line client (used to form a Cluster). */
export const REDIS_CLI = "/usr/bin/redis-cli";
/** How long to wait for a formed Cluster to report `cluster_state:ok` on every node, in ms. */
const CLUSTER_OK_MS_MAX = 20_000;
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
  /** Kills the server (SIGKILL, by PID) as a crash would; its temp dir stays for a restart. */
  kill(): Promise<void>;
  /**
   * Starts the server again on the same port and dir (after {@linkcode TestRedis.kill}) and
   * resolves once it answers PING: with `durable`, it reloads what it had written.
   */
  restart(): Promise<void>;
}

/** Options for {@linkcode startRedis}. */
export interface StartRedisOptions {
  /**
   * Log every write to an append-only file, synced before Redis answers (`appendonly yes`,
   * `appendfsync always`), so a killed server restarts with everything it acknowledged.
   * @default {false}
   */
  durable?: boolean;
}

/** The arguments that make a server {@linkcode StartRedisOptions.durable}. */
const DURABLE_ARGS = ["--appendonly", "yes", "--appendfsync", "always"];

/** Why Redis tests cannot run here, or `undefined` when they can. */
export function redisSkip(): string | undefined {
  try {
    Deno.statSync(REDIS_SERVER);
    return undefined;
  } catch {
    return `${REDIS_SERVER} is not installed (apt-get install -y redis-server)`;
  }
}

/** Why Redis Cluster tests cannot run here (no server or no `redis-cli`), or `undefined`. */
export function redisClusterSkip(): string | undefined {
  const skip = redisSkip();
  if (skip !== undefined) return skip;
  try {
    Deno.statSync(REDIS_CLI);
    return undefined;
  } catch {
    return `${REDIS_CLI} is not installed (apt-get install -y redis-tools)`;
  }
}

/** The lowest and highest port {@linkcode freeLoopbackPort} picks. */
const PORT_MIN = 10_000;
const PORT_MAX = 22_767;

/**
 * A loopback port free now, and so is the port 10000 above it (a Cluster node's bus): both below
 * the kernel's ephemeral range (32768–60999 by default), so no outgoing connection takes either
 * as its local port while a server that owned it is down — a server restarted on its port (a
 * crash test) could not bind it then.
 */
export function freeLoopbackPort(): number {
  const draw = new Uint16Array(1);
  for (let attempt = 0; attempt < 1_000; attempt++) {
    crypto.getRandomValues(draw);
    const port = PORT_MIN + (draw[0] % (PORT_MAX - PORT_MIN + 1));
    if (bindable(port) && bindable(port + 10_000)) return port;
  }
  throw new Error(`no free loopback port between ${PORT_MIN} and ${PORT_MAX}`);
}

function bindable(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
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

/** One spawned `redis-server`, stopped (SIGTERM) or killed (SIGKILL) by its PID. */
interface Spawned {
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** Starts `redis-server` on `port` in `dir`; `extra` arguments come last and win. */
function spawnServer(port: number, dir: string, extra: string[]): Spawned {
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
      ...extra,
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
  const end = async (signal: "SIGTERM" | "SIGKILL") => {
    if (stopped) return;
    stopped = true;
    globalThis.removeEventListener("unload", onUnload);
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
    await child.status;
  };
  return { stop: () => end("SIGTERM"), kill: () => end("SIGKILL") };
}

async function waitForPing(port: number, stop: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + START_MS_MAX;
  while (!(await ping(port))) {
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not answer PING within ${START_MS_MAX} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Starts a private `redis-server` and resolves once it answers PING. Rejects
 * with `Deno.errors.NotFound` when it is not installed.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  if (redisSkip() !== undefined) throw new Deno.errors.NotFound(`${REDIS_SERVER} is not installed`);
  const dir = await Deno.makeTempDir({ prefix: "meowsync-redis-" });
  const port = freeLoopbackPort();
  const extra = options.durable ? DURABLE_ARGS : [];
  let server = spawnServer(port, dir, extra);
  const stop = async () => {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  await waitForPing(port, stop);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    kill: () => server.kill(),
    restart: async () => {
      await server.kill();
      server = spawnServer(port, dir, extra);
      await waitForPing(port, stop);
    },
  };
}

/** A running private Redis Cluster. */
export interface TestRedisCluster {
  /** Its masters' ports on 127.0.0.1. */
  ports: number[];
  /** `redis://127.0.0.1:<port>` per master. */
  urls: string[];
  /** Stops every node (by PID) and removes the temp dir. */
  stop(): Promise<void>;
  /** Kills the master on `port` (SIGKILL, by PID) as a crash would. */
  kill(port: number): Promise<void>;
  /**
   * Starts the master on `port` again (after {@linkcode TestRedisCluster.kill}) with its cluster
   * config (and with `durable`, its data) and resolves once every node reports the Cluster ok.
   */
  restart(port: number): Promise<void>;
}

async function redisCli(args: string[]): Promise<{ ok: boolean; out: string }> {
  const output = await new Deno.Command(REDIS_CLI, { args, stdout: "piped", stderr: "piped" })
    .output();
  const decoder = new TextDecoder();
  return {
    ok: output.success,
    out: decoder.decode(output.stdout) + decoder.decode(output.stderr),
  };
}

/**
 * Starts a private three-master Redis Cluster (no replicas) and resolves once every node
 * reports `cluster_state:ok`. Rejects with `Deno.errors.NotFound` when `redis-server` or
 * `redis-cli` is not installed.
 */
export async function startRedisCluster(
  options: StartRedisOptions = {},
): Promise<TestRedisCluster> {
  const skip = redisClusterSkip();
  if (skip !== undefined) throw new Deno.errors.NotFound(skip);
  const dir = await Deno.makeTempDir({ prefix: "meowsync-redis-cluster-" });
  const ports: number[] = [];
  while (ports.length < 3) {
    const port = freeLoopbackPort(); // its bus, port + 10000, is free too
    if (ports.includes(port) || ports.includes(port + 10_000) || ports.includes(port - 10_000)) {
      continue;
    }
    ports.push(port);
  }
  // Each node in its own dir: an append-only file is named alike on every node.
  const spawnNode = async (port: number) => {
    await Deno.mkdir(`${dir}/${port}`, { recursive: true });
    return spawnServer(port, `${dir}/${port}`, [
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      `${dir}/nodes-${port}.conf`,
      ...(options.durable ? DURABLE_ARGS : []),
    ]);
  };
  const servers = new Map<number, Spawned>();
  for (const port of ports) servers.set(port, await spawnNode(port));
  const stop = async () => {
    await Promise.all([...servers.values()].map((server) => server.stop()));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const clusterOk = async () => {
    const deadline = Date.now() + CLUSTER_OK_MS_MAX;
    for (const port of ports) {
      while (
        !(await redisCli(["-p", String(port), "cluster", "info"])).out.includes(
          "cluster_state:ok",
        )
      ) {
        if (Date.now() > deadline) {
          throw new Error(`Redis Cluster node ${port} not ok within ${CLUSTER_OK_MS_MAX} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  try {
    for (const port of ports) await waitForPing(port, () => Promise.resolve());
    const created = await redisCli([
      "--cluster",
      "create",
      ...ports.map((port) => `127.0.0.1:${port}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    if (!created.ok) throw new Error(`redis-cli --cluster create failed: ${created.out}`);
    await clusterOk();
  } catch (e) {
    await stop();
    throw e;
  }
  const node = (port: number) => {
    const server = servers.get(port);
    if (!server) throw new RangeError(`no Cluster node on port ${port}`);
    return server;
  };
  return {
    ports,
    urls: ports.map((port) => `redis://127.0.0.1:${port}`),
    stop,
    kill: (port) => node(port).kill(),
    restart: async (port) => {
      await node(port).kill();
      servers.set(port, await spawnNode(port));
      await waitForPing(port, stop);
      await clusterOk();
    },
  };
}

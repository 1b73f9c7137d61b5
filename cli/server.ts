/**
 * `deno task server`: runs a meowsync relay over HTTP.
 *
 *   deno task server --port 8080 --backend kv:./.meowsync/relay.kv
 *   deno task server --backend redis://127.0.0.1:6379 --log-level debug
 *   deno task server --backend redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SystemRandom } from "../crypto/mod.ts";
import { systemClock } from "../ports/mod.ts";
import {
  type Backend,
  createHandler,
  DEFAULT_LIMITS,
  KvBackend,
  type LogLevel,
  MemoryBackend,
  RedisBackend,
  redisClusterNodes,
  ServerCore,
  type ServerLimitsInit,
  startChores,
} from "../server/mod.ts";

const LIMIT_FLAGS: Record<string, keyof ServerLimitsInit> = {
  "message-bytes-max": "messageBytesMax",
  "messages-per-request-max": "messagesPerRequestMax",
  "queue-length-max": "queueLengthMax",
  "retention-ms": "retentionMs",
  "long-poll-ms-max": "longPollMsMax",
  "long-polls-open-max": "longPollsOpenMax",
  "pull-requests-max": "pullRequestsMax",
  "request-bytes-max": "requestBytesMax",
  "pull-messages-max": "pullMessagesMax",
  "acks-per-request-max": "acksPerRequestMax",
  "mailbox-ms-max": "mailboxMsMax",
  "mailbox-posts-max": "mailboxPostsMax",
  "mailbox-lookups-per-minute-max": "mailboxLookupsPerMinuteMax",
  "long-polls-per-client-max": "longPollsPerClientMax",
  "requests-per-second-per-client-max": "requestsPerSecondPerClientMax",
};
const LEVELS: LogLevel[] = ["debug", "info", "warn"];

const HELP = `meowsync relay server

Usage: deno task server [options]

  --port N             port to listen on (default 8080, or $MEOW_PORT)
  --hostname H         address to bind (default 127.0.0.1)
  --backend B          kv:<path> | redis://host:port | redis-cluster://host:port,host:port,...
                       (a Redis Cluster, found from those nodes) | memory
                       (default kv:./.meowsync/relay.kv)
  --name NAME          the relay's name in its card (default "meowsync relay")
  --url URL            the public base URL in its card (default http://<hostname>:<port>)
  --log-level L        debug | info | warn (default info)
  --help               this text

Limits (defaults in parentheses):
${
  Object.entries(LIMIT_FLAGS).map(([flag, key]) =>
    `  --${flag.padEnd(36)} (${DEFAULT_LIMITS[key]})`
  )
    .join("\n")
}
`;

class UsageError extends Error {}

function fail(message: string): never {
  console.error(`meowsync server: ${message} (see --help)`);
  Deno.exit(2);
}

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`--${flag} must be a positive integer, got "${text}"`);
  }
  return n;
}

async function openBackend(spec: string): Promise<Backend> {
  if (spec === "memory") return new MemoryBackend();
  if (spec.startsWith("kv:")) {
    const path = spec.slice(3);
    if (path === "") throw new UsageError(`--backend kv: needs a path, as in kv:./relay.kv`);
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    if (dir !== "") await Deno.mkdir(dir, { recursive: true });
    return await KvBackend.open({ path });
  }
  if (spec.startsWith("redis://") || spec.startsWith("rediss://")) {
    return await RedisBackend.connect({ url: spec });
  }
  if (spec.startsWith("redis-cluster://")) {
    const cluster = redisClusterNodes(spec);
    if (!cluster) {
      throw new UsageError(
        `--backend redis-cluster:// needs host:port nodes, as in ` +
          `redis-cluster://127.0.0.1:7000,127.0.0.1:7001, got "${spec}"`,
      );
    }
    return await RedisBackend.connect({ cluster });
  }
  throw new UsageError(
    `--backend must be kv:<path>, redis://host:port, redis-cluster://host:port,... or memory, ` +
      `got "${spec}"`,
  );
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string" },
        hostname: { type: "string", default: "127.0.0.1" },
        backend: { type: "string", default: "kv:./.meowsync/relay.kv" },
        name: { type: "string" },
        url: { type: "string" },
        "log-level": { type: "string", default: "info" },
        help: { type: "boolean", default: false },
        ...Object.fromEntries(
          Object.keys(LIMIT_FLAGS).map((f) => [f, { type: "string" as const }]),
        ),
      },
    });
  } catch (e) {
    fail((e as Error).message.split("\n")[0]);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    console.log(HELP);
    return;
  }
  let core: ServerCore;
  let port: number;
  const level = values["log-level"] as string;
  const hostname = values.hostname as string;
  try {
    if (!LEVELS.includes(level as LogLevel)) {
      throw new UsageError(`--log-level must be debug, info or warn, got "${level}"`);
    }
    port = positiveInt("port", (values.port as string) ?? Deno.env.get("MEOW_PORT") ?? "8080");
    if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
    const limits: Partial<ServerLimitsInit> = {};
    for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
      if (values[flag] !== undefined) limits[key] = positiveInt(flag, values[flag] as string);
    }
    const backend = await openBackend(values.backend as string);
    core = await ServerCore.create({
      backend,
      clock: systemClock,
      random: new SystemRandom(),
      name: values.name as string | undefined,
      url: (values.url as string | undefined) ?? `http://${hostname}:${port}`,
      limits,
    }).catch((e) => {
      throw e instanceof RangeError ? new UsageError(e.message) : e;
    });
  } catch (e) {
    if (e instanceof UsageError) fail(e.message);
    console.error(`meowsync server: cannot start: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const threshold = LEVELS.indexOf(level as LogLevel);
  const log = (l: LogLevel, line: string) => {
    if (LEVELS.indexOf(l) >= threshold) console.log(`${new Date().toISOString()} ${l} ${line}`);
  };
  const stopChores = startChores(core, { log });
  const server = Deno.serve({
    port,
    hostname,
    // Printed whatever --log says: it is the answer to "did it start, and where?", not a warning.
    onListen: ({ hostname, port }) =>
      console.log(
        `${new Date().toISOString()} info relay ${core.card().uid} (${core.backend.kind}) ` +
          `listening on http://${hostname}:${port}`,
      ),
  }, createHandler(core, { log, clock: systemClock }));
  const shutdown = async () => {
    stopChores();
    await server.shutdown();
    await core.backend.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", shutdown);
}

if (import.meta.main) await main();

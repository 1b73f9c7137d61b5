/**
 * The HTTP entry of a relay: `POST /` (a sealed request), `GET /card`,
 * `GET /health`. Runs under `Deno.serve`, `deno serve` and Deno Deploy.
 *
 * @module
 */
import { concatBytes } from "../crypto/mod.ts";
import { encode, encodeJson } from "../proto/mod.ts";
import { ServerCardSchema } from "../proto/mod.ts";
import type { Clock } from "../ports/mod.ts";
import type { ServerCore } from "./core.ts";

/** How loud the relay logs: `debug` logs every request, `info` the periodic summary. */
export type LogLevel = "debug" | "info" | "warn";

/** Where log lines go. */
export type LogSink = (level: LogLevel, line: string) => void;

/** Options for {@linkcode createHandler}. */
export interface HandlerOptions {
  /**
   * Receives one debug line per request.
   * @default {no logging}
   */
  log?: LogSink;
  /**
   * Times requests for the log lines.
   * @default {undefined: no durations}
   */
  clock?: Clock;
}

const PROTOBUF = "application/x-protobuf";
const CORS = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": "content-type, accept",
};

/**
 * A fetch handler for `core`: `POST /` (body at most `requestBytesMax`, else
 * 413; an envelope nobody can be answered on gets 400), `GET /card` (protobuf,
 * or JSON with `Accept: application/json`), `GET /health`. The remote address
 * `Deno.serve` passes in `info` is the client for per-address limits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHandler } from "./http.ts";
 * import { ServerCore } from "./core.ts";
 * import { MemoryBackend } from "./memory.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * const core = await ServerCore.create({
 *   backend: new MemoryBackend(),
 *   random: new SeededRandom(1),
 *   clock: { now: () => 0, sleep: () => Promise.resolve() },
 * });
 * const handler = createHandler(core);
 * const res = await handler(new Request("http://relay/card", { headers: { accept: "application/json" } }));
 * assert((await res.json()).uid === core.card().uid);
 * ```
 */
export function createHandler(
  core: ServerCore,
  options: HandlerOptions = {},
): (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const { log, clock } = options;
  const route = async (
    req: Request,
    path: string,
    client: string,
  ): Promise<[Response, number]> => {
    if (req.method === "OPTIONS") return [new Response(null, { status: 204, headers: CORS }), 0];
    if (path === "/" && req.method === "POST") return await post(core, req, client);
    if (path === "/card" && req.method === "GET") {
      if ((req.headers.get("accept") ?? "").includes("application/json")) {
        return [Response.json(encodeJson(ServerCardSchema, core.card()), { headers: CORS }), 0];
      }
      return [binary(encode(ServerCardSchema, core.card())), 0];
    }
    if (path === "/health" && req.method === "GET") {
      return [Response.json({ ok: true, backend: core.backend.kind, ...core.stats() }), 0];
    }
    if (["/", "/card", "/health"].includes(path)) {
      return [text(405, `${req.method} is not allowed on ${path}`), 0];
    }
    return [text(404, `no such path ${path}`), 0];
  };
  return async (req, info) => {
    const start = clock?.now();
    const path = new URL(req.url).pathname;
    const [response, bytesIn] = await route(req, path, remoteHost(info));
    if (log) {
      const ms = start === undefined ? "" : ` ${clock!.now() - start}ms`;
      log("debug", `${req.method} ${path} ${response.status} in=${bytesIn}${ms}`);
    }
    return response;
  };
}

/** The client address of a request: the remote host name (empty on a Unix socket or without `info`). */
function remoteHost(info: Deno.ServeHandlerInfo | undefined): string {
  const address = info?.remoteAddr as Partial<Deno.NetAddr> | undefined;
  return address?.hostname ?? "";
}

async function post(
  core: ServerCore,
  req: Request,
  client: string,
): Promise<[Response, number]> {
  const max = core.limits.requestBytesMax;
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > max) return [text(413, `request body exceeds ${max} bytes`), declared];
  const body = await readLimited(req, max);
  if (body === undefined) return [text(413, `request body exceeds ${max} bytes`), max + 1];
  const answer = await core.handle(body, { signal: req.signal, client });
  if (answer.length === 0) {
    return [text(400, "not a PackedServerMessage with a usable `from` key"), body.length];
  }
  return [binary(answer), body.length];
}

/** The body, or `undefined` as soon as it grows past `max` bytes (the rest is not read). */
async function readLimited(req: Request, max: number): Promise<Uint8Array | undefined> {
  // A declared length (checked against the limit by the caller) and no chunked framing: the
  // server reads exactly that many bytes, in one call rather than chunk by chunk. `req.body`
  // is not touched first: that makes the body a stream, which cost ~40 µs a request.
  const headers = req.headers;
  if (headers.has("content-length") && !headers.has("transfer-encoding")) return await req.bytes();
  if (!req.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = req.body.getReader();
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  return concatBytes(...chunks);
}

const BINARY_HEADERS = { "content-type": PROTOBUF, ...CORS };

function binary(bytes: Uint8Array): Response {
  return new Response(bytes as Uint8Array<ArrayBuffer>, { headers: BINARY_HEADERS });
}

function text(status: number, message: string): Response {
  return new Response(message + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...CORS },
  });
}

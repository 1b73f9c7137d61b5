/**
 * The control endpoint of a running agent: while `run` holds a home, the
 * other commands act through it instead of opening the store (a second
 * kernel on the same home would write back stale ratchets). It listens on
 * 127.0.0.1 on a random port (`agent.port`) and wants the random token of
 * `agent.token` (owner-only) as a bearer token, so only someone who can read
 * the home can use it.
 *
 * Protocol: `POST /` with `{"op": name, "args": {...}}`, `name` and `args`
 * an operation of `operations.ts` and its input; the answer is
 * `{"ok": true, "result": ...}` (the operation's result) or
 * `{"ok": false, "error": line, "exitCode": n}`.
 *
 * @module
 */
import { SystemRandom, toBase64Url } from "../crypto/mod.ts";
import type { Agent } from "./agent.ts";
import {
  isOpName,
  OP_NAMES,
  type OpInput,
  type OpName,
  type OpResult,
  runOperation,
} from "./operations.ts";
import { AgentError, EXIT } from "./errors.ts";
import { type ControlAddress, type HomePaths, writeControlAddress } from "./home.ts";

/** The operations the endpoint serves: the names of the operation table, in its order. */
export const CONTROL_OPS: readonly OpName[] = OP_NAMES;

/** The name of a control operation. */
export type ControlOp = OpName;

/** The largest request body accepted, in bytes (a text message plus room). */
const REQUEST_BYTES_MAX = 256 * 1024;

/** A running control endpoint. */
export interface ControlServer {
  /** Its address. */
  address: ControlAddress;
  /** Stops listening (after the answers in flight). */
  close(): Promise<void>;
}

/**
 * Serves `agent` on 127.0.0.1 and writes `agent.port` and `agent.token`.
 *
 * @example
 * ```ts ignore
 * const server = await serveControl(agent, paths, { toError });
 * // … later
 * await server.close();
 * ```
 */
export async function serveControl(
  agent: Agent,
  paths: HomePaths,
  options: { toError: (e: unknown) => AgentError },
): Promise<ControlServer> {
  const token = toBase64Url(new SystemRandom().bytes(32));
  const expected = new TextEncoder().encode(`Bearer ${token}`);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const given = new TextEncoder().encode(req.headers.get("authorization") ?? "");
    if (req.method !== "POST" || !sameBytes(given, expected)) {
      return Response.json({ ok: false, error: "not authorized", exitCode: EXIT.failure }, {
        status: 403,
      });
    }
    try {
      const text = await req.text();
      if (text.length > REQUEST_BYTES_MAX) throw new AgentError("request too large", EXIT.usage);
      const { op, args } = JSON.parse(text) as { op: string; args?: Record<string, unknown> };
      if (!isOpName(op)) throw new AgentError(`unknown operation "${op}"`, EXIT.usage);
      // The input is taken as the client sent it (the CLI sends the operation's typed input).
      // The operation gets no signal: a wait whose client went away ends at its timeout or when
      // the agent stops. (req.signal would now tell, with deno.json's no-legacy-abort.)
      const result = await runOperation(agent, op, (args ?? {}) as OpInput<typeof op>);
      return Response.json({ ok: true, result });
    } catch (e) {
      const error = options.toError(e);
      return Response.json({ ok: false, error: error.message, exitCode: error.exitCode });
    }
  });
  const address = { port: server.addr.port, token };
  await writeControlAddress(paths, address);
  return { address, close: () => server.shutdown() };
}

/**
 * Calls `op` with input `args` on the agent at `address`; resolves with its
 * result, its failures come back as {@linkcode AgentError}s with the agent's
 * exit code.
 *
 * @example
 * ```ts ignore
 * const contacts = await callControl(address, "contacts", {});
 * ```
 */
export async function callControl<N extends OpName>(
  address: ControlAddress,
  op: N,
  args: OpInput<N>,
  signal?: AbortSignal,
): Promise<OpResult<N>> {
  let response: Response;
  try {
    response = await fetch(`http://127.0.0.1:${address.port}/`, {
      method: "POST",
      headers: { authorization: `Bearer ${address.token}`, "content-type": "application/json" },
      body: JSON.stringify({ op, args }),
      signal,
    });
  } catch (e) {
    if (signal?.aborted) throw new AgentError("interrupted", EXIT.interrupted);
    throw new ControlUnreachable(`cannot reach the running agent: ${(e as Error).message}`);
  }
  const body = await response.json() as {
    ok: boolean;
    result?: unknown;
    error?: string;
    exitCode?: number;
  };
  if (!body.ok) throw new AgentError(body.error ?? "the agent failed", body.exitCode ?? 1);
  return body.result as OpResult<N>;
}

/** The running agent's endpoint did not answer (it is starting or stopping). */
export class ControlUnreachable extends Error {
  /** @param message what failed */
  constructor(message: string) {
    super(message);
    this.name = "ControlUnreachable";
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * A client of the always-online device's control API (deploy/cloud_agent.ts):
 * signs each request with the control key of the passphrase, a fresh nonce and
 * the time, and turns the JSON answer into a result or an {@linkcode AgentError}.
 *
 * @module
 */
import { SystemRandom, toBase64Url } from "../crypto/mod.ts";
import { AgentError, EXIT } from "../agent/mod.ts";
import { CLOUD_KDF_LOG_N, controlAuthorization, controlKey } from "./cloud_agent.ts";

/** A control client for the device at `url`, keyed by `passphrase`. */
export class CloudClient {
  readonly #url: string;
  readonly #key: Uint8Array;
  readonly #random = new SystemRandom();

  /** Derives the control key once (scrypt, `logN`). */
  constructor(url: string, passphrase: string, logN = CLOUD_KDF_LOG_N) {
    this.#url = url.replace(/\/+$/, "");
    this.#key = controlKey(passphrase, logN);
  }

  /**
   * Runs operation `op` with `args` on the device.
   *
   * @throws {AgentError} with the device's message and exit code when it refuses
   */
  async call<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const body = new TextEncoder().encode(JSON.stringify({ op, args }));
    const authorization = controlAuthorization(this.#key, {
      ts: Date.now(),
      nonce: toBase64Url(this.#random.bytes(16)),
      path: "/control",
      body,
    });
    let res: Response;
    try {
      res = await fetch(`${this.#url}/control`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body,
      });
    } catch (e) {
      throw new AgentError(`cannot reach ${this.#url}: ${(e as Error).message}`, EXIT.unreachable);
    }
    const answer = await res.json() as {
      ok: boolean;
      result?: T;
      error?: string;
      exitCode?: number;
    };
    if (!answer.ok) {
      throw new AgentError(answer.error ?? `HTTP ${res.status}`, answer.exitCode ?? EXIT.failure);
    }
    return answer.result as T;
  }
}

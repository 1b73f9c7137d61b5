// meowsync:production-port — real fetch over the network, with real timeouts.
/**
 * The HTTP transport: `POST /` and `GET /card` to a relay.
 *
 * @module
 */
import { decode } from "../proto/mod.ts";
import { type ServerCard, ServerCardSchema } from "../proto/mod.ts";
import { type Transport, TransportError } from "../ports/mod.ts";
import { ANSWER_BYTES_MAX } from "../envelope/mod.ts";

/** Options for {@linkcode HttpTransport}. */
export interface HttpTransportOptions {
  /**
   * How long an exchange may take beyond the relay's long-poll bound, in ms.
   * @default {15000}
   */
  timeoutMs?: number;
  /**
   * The fetch to use (tests inject one).
   * @default {globalThis.fetch}
   */
  fetch?: typeof fetch;
}

/**
 * Carries requests to relays over HTTP. Network failures, timeouts and
 * non-200 answers are {@linkcode TransportError}s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpTransport } from "./http_transport.ts";
 * import { TransportError } from "../ports/mod.ts";
 * const transport = new HttpTransport({ fetch: () => Promise.reject(new TypeError("offline")) });
 * await transport.fetchCard("http://127.0.0.1:9").then(
 *   () => assert(false),
 *   (e) => assert(e instanceof TransportError),
 * );
 * ```
 */
export class HttpTransport implements Transport {
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  /** @param options see {@linkcode HttpTransportOptions} */
  constructor(options: HttpTransportOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 15_000;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** POSTs `body` to the relay's URL and resolves with the answer's bytes. */
  async exchange(server: ServerCard, body: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const wait = (server.limits?.longPollMsMax ?? 0) + this.#timeoutMs;
    const response = await this.#request(
      `${base(server.url)}/`,
      {
        method: "POST",
        body: body as Uint8Array<ArrayBuffer>,
        headers: { "content-type": "application/x-protobuf" },
      },
      wait,
      signal,
    );
    const bytes = await response.bytes();
    if (bytes.length > ANSWER_BYTES_MAX) {
      throw new TransportError(`Relay ${server.url} answered ${bytes.length} bytes: too large`);
    }
    return bytes;
  }

  /** GETs `<url>/card` and decodes it. */
  async fetchCard(url: string, signal?: AbortSignal): Promise<ServerCard> {
    const response = await this.#request(
      `${base(url)}/card`,
      {
        headers: { accept: "application/x-protobuf" },
      },
      this.#timeoutMs,
      signal,
    );
    try {
      return decode(ServerCardSchema, new Uint8Array(await response.arrayBuffer()));
    } catch (cause) {
      throw new TransportError(`Cannot read the card at ${url}: ${(cause as Error).message}`, {
        cause,
      });
    }
  }

  async #request(
    url: string,
    init: RequestInit,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Response> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.#fetch(url, { ...init, signal: combined });
    } catch (cause) {
      const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : (cause as Error).message;
      throw new TransportError(`Cannot reach ${url}: ${why}`, { cause });
    }
    if (response.status !== 200) {
      const detail = (await response.text().catch(() => "")).trim().slice(0, 200);
      throw new TransportError(`${url} answered HTTP ${response.status}: ${detail}`);
    }
    return response;
  }
}

function base(url: string): string {
  return url.replace(/\/+$/, "");
}

/**
 * The in-process transport: a map from relay uid and URL to a
 * {@linkcode ServerCore}, so kernels, tests and the simulator talk to a relay
 * without a network.
 *
 * @module
 */
import { type ServerCard, ServerCardSchema } from "../proto/mod.ts";
import { create } from "@bufbuild/protobuf";
import { type Transport, TransportError } from "../ports/mod.ts";
import type { ServerCore } from "./core.ts";

/**
 * Carries requests to in-process relays: `exchange()` calls
 * {@linkcode ServerCore.handle} of the relay whose uid (or, failing that,
 * URL) the card names. An unknown or removed relay is a
 * {@linkcode TransportError}, as an unreachable host would be.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LocalTransport } from "./local_transport.ts";
 * import { ServerCore } from "./core.ts";
 * import { MemoryBackend } from "./memory.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * const core = await ServerCore.create({
 *   backend: new MemoryBackend(),
 *   random: new SeededRandom(1),
 *   clock: { now: () => 0, sleep: () => Promise.resolve() },
 *   url: "sim://relay",
 * });
 * const transport = new LocalTransport([core]);
 * const card = await transport.fetchCard("sim://relay");
 * assert(card.uid === core.card().uid);
 * ```
 */
export class LocalTransport implements Transport {
  readonly #byUid = new Map<string, ServerCore>();
  readonly #byUrl = new Map<string, ServerCore>();
  readonly #client: string;

  /**
   * @param cores relays reachable from the start
   * @param options `client`: who the relays see as the sender, for per-client limits
   *   (default "": no address, so in-process senders share one mailbox look-up count and are
   *   held to no per-address request or long-poll limit)
   */
  constructor(cores: Iterable<ServerCore> = [], options: { client?: string } = {}) {
    this.#client = options.client ?? "";
    for (const core of cores) this.add(core);
  }

  /** Makes `core` reachable by its uid and, when its card has one, its URL. */
  add(core: ServerCore): void {
    const card = core.card();
    this.#byUid.set(card.uid, core);
    if (card.url !== "") this.#byUrl.set(card.url, core);
  }

  /** Makes the relay with this uid or URL unreachable; resolves whether one was known. */
  remove(uidOrUrl: string): boolean {
    const core = this.#byUid.get(uidOrUrl) ?? this.#byUrl.get(uidOrUrl);
    if (!core) return false;
    const card = core.card();
    this.#byUid.delete(card.uid);
    if (this.#byUrl.get(card.url) === core) this.#byUrl.delete(card.url);
    return true;
  }

  /** Hands `body` to the relay's core and resolves with its answer. */
  async exchange(server: ServerCard, body: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const core = this.#byUid.get(server.uid) ?? this.#byUrl.get(server.url);
    if (!core) {
      throw new TransportError(
        `Cannot reach relay ${server.uid || "(no uid)"} at ${
          server.url || "(no url)"
        }: not in this process`,
      );
    }
    if (signal?.aborted) throw new TransportError("Cannot reach relay: the exchange was aborted");
    // Copies both ways: neither side may keep a view into the other's buffer.
    const answer = await core.handle(body.slice(), { signal, client: this.#client });
    return answer.slice();
  }

  /** The card of the relay at `url` (or with that uid). */
  fetchCard(url: string, _signal?: AbortSignal): Promise<ServerCard> {
    const core = this.#byUrl.get(url) ?? this.#byUid.get(url);
    if (!core) {
      return Promise.reject(new TransportError(`Cannot fetch the card at ${url}: no such relay`));
    }
    return Promise.resolve(create(ServerCardSchema, core.card()));
  }
}

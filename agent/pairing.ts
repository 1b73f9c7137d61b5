/**
 * Pairing input and pairing failures as the agent shows them: the relay card
 * a URL names, what a user typed or pasted to join, and one clear line and
 * exit code for each way a pairing step fails.
 *
 * @module
 */
import { MeowError, NoSuchCode, PairingInterfered, RelayRefused } from "../kernel/mod.ts";
import { parsePairingCode, parsePairingLink } from "../kernel/mod.ts";
import type { JoinInput } from "../kernel/mod.ts";
import { type Transport, TransportError } from "../ports/mod.ts";
import type { ServerCard } from "../proto/mod.ts";
import { AgentError, EXIT } from "./errors.ts";

/** The relay card at `url`; an unreachable relay is an {@linkcode AgentError}. */
export async function fetchServerCard(transport: Transport, url: string): Promise<ServerCard> {
  if (!/^https?:\/\/[^/\s]+/.test(url)) {
    throw new AgentError(
      `the relay URL must start with http:// or https://, got "${url}"`,
      EXIT.usage,
    );
  }
  try {
    const card = await transport.fetchCard(url);
    // A relay that does not know its public URL (deploy/main.ts without MEOW_URL) publishes
    // none; the URL that just answered is the one to use.
    if (card.url === "") card.url = url.replace(/\/+$/, "");
    return card;
  } catch (e) {
    if (e instanceof TransportError) {
      throw new AgentError(`cannot reach the relay at ${url}: ${e.message}`, EXIT.unreachable);
    }
    throw e;
  }
}

/**
 * What a user typed or pasted to join a pairing: a `meow:` link, or a short
 * code on the relay `server()` names. A malformed one is an
 * {@linkcode AgentError} (exit 6) that names what is wrong.
 */
export async function pairingInput(
  text: string,
  server: () => Promise<ServerCard | undefined>,
): Promise<JoinInput> {
  const clean = text.trim();
  try {
    if (clean.toLowerCase().startsWith("meow:")) {
      parsePairingLink(clean);
      return { link: clean };
    }
    parsePairingCode(clean);
  } catch (e) {
    if (e instanceof MeowError) throw new AgentError(e.message, EXIT.badCode);
    throw e;
  }
  const relay = await server();
  if (!relay) throw new AgentError("a code needs --server <url>: the relay it is on", EXIT.usage);
  return { code: clean, server: relay };
}

/**
 * Runs a pairing step, turning its failures into one clear line: a used,
 * expired or mistyped code and a failed confirmation exit 6, an unreachable
 * relay exits 5.
 */
export async function pairingErrors<T>(step: () => Promise<T>, relayUrl: string): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (e instanceof TransportError) {
      throw new AgentError(
        `cannot reach the relay${relayUrl ? ` at ${relayUrl}` : ""}: ${e.message}`,
        EXIT.unreachable,
      );
    }
    if (e instanceof NoSuchCode || e instanceof PairingInterfered) {
      throw new AgentError(e.message, EXIT.badCode);
    }
    if (e instanceof RelayRefused) throw new AgentError(e.message, EXIT.unreachable);
    if (e instanceof MeowError) throw new AgentError(`cannot pair: ${e.message}`, EXIT.badCode);
    throw e;
  }
}

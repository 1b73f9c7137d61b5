/**
 * The domain errors callers must handle: bad input from the network, a peer or
 * a file. Each carries a stable `code`; programmer errors are `TypeError` /
 * `RangeError` and are never mixed with these.
 *
 * @module
 */

import { MeowError } from "../crypto/mod.ts";

export {
  BadCiphertext,
  BadSignature,
  Malformed,
  MeowError,
  Replay,
  TooManySkipped,
} from "../crypto/mod.ts";

/** A packed message addressed to a lookup key no peer on this device owns. */
export class UnknownDestination extends MeowError {
  /** @param message the destination that matched no peer */
  constructor(message: string, options?: ErrorOptions) {
    super("UnknownDestination", message, options);
  }
}

/** A user message whose `type` no plugin claims. */
export class UnknownType extends MeowError {
  /** @param message the type and the plugins that were asked */
  constructor(message: string, options?: ErrorOptions) {
    super("UnknownType", message, options);
  }
}

/**
 * A relay refused a whole request (too large, busy, unreadable): nothing of
 * it was applied. The kernel backs off (after `retryAfterMs` when the relay
 * named a time), retries with what it can change, and reports it.

 * A pairing whose key confirmation, MAC or sealed card did not check out. One
 * message for every cause: a wrong code and an attack look the same, and
 * telling them apart would help the attacker.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RelayRefused } from "./errors.ts";
 * const e = new RelayRefused("Relay r1 refused a poll: BUSY (too many long polls)", {
 *   relayCode: "BUSY",
 *   retryAfterMs: 500,
 * });
 * assert.equal(e.code, "RelayRefused");
 * assert.equal(e.retryAfterMs, 500);
 * ```
 */
export class RelayRefused extends MeowError {
  /** The relay's error code (`TOO_LARGE`, `BUSY`, `MALFORMED`, …). */
  readonly relayCode: string;
  /** When the relay asked to be retried, in ms (0: not said). */
  readonly retryAfterMs: number;
  /** @param message which relay refused what, and what it said */
  constructor(
    message: string,
    details: { relayCode: string; retryAfterMs?: number },
    options?: ErrorOptions,
  ) {
    super("RelayRefused", message, options);
    this.relayCode = details.relayCode;
    this.retryAfterMs = details.retryAfterMs ?? 0;
  }
}

/**
 * A pairing whose key confirmation, MAC or sealed card did not check out. One
 * message for every cause: a wrong code and an attack look the same, and
 * telling them apart would help the attacker.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MeowError, PairingInterfered } from "./errors.ts";
 * const e = new PairingInterfered();
 * assert(e instanceof MeowError && e.code === "PairingInterfered");
 * assert.equal(e.message, "wrong code, or someone interfered");
 * ```
 */
export class PairingInterfered extends MeowError {
  /** @param message what the user is told; keep the default */
  constructor(message = "wrong code, or someone interfered", options?: ErrorOptions) {
    super("PairingInterfered", message, options);
  }
}

/**
 * A pairing's mailbox is not there for this side: the code or link is
 * unknown, used already, expired or killed. The relay answers all four the
 * same way, so nobody can tell which by asking.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NoSuchCode } from "./errors.ts";
 * assert.equal(new NoSuchCode().message, "no such code: used already, expired or mistyped");
 * ```
 */
export class NoSuchCode extends MeowError {
  /** @param message what the user is told; keep the default */
  constructor(message = "no such code: used already, expired or mistyped", options?: ErrorOptions) {
    super("NoSuchCode", message, options);
  }
}

/**
 * A user message too large for its destination relay once packed and padded:
 * refused when it is sent, before anything is stored or the ratchet moves.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MessageTooLarge } from "./errors.ts";
 * const e = new MessageTooLarge(40_100, 16_279);
 * assert.equal(e.message, "message too large: 40100 bytes, at most 16279");
 * assert(e.bytes > e.bytesMax);
 * ```
 */
export class MessageTooLarge extends MeowError {
  /**
   * @param bytes the serialized user message's size, in bytes
   * @param bytesMax the largest the destination relay takes, in bytes
   */
  constructor(
    readonly bytes: number,
    readonly bytesMax: number,
    options?: ErrorOptions,
  ) {
    super("MessageTooLarge", `message too large: ${bytes} bytes, at most ${bytesMax}`, options);
  }
}

/**
 * A plugin hook failed. The kernel throws it where nothing classifies the
 * failure (a plugin's `setup`, from `Kernel.open`); where the kernel or its
 * caller tells errors apart by their class (`receive`, `outbound`, the event
 * hooks: a domain error rejects a message, anything else is thrown), the
 * original error passes through unchanged and `pluginErrorOf`
 * (kernel/plugin_driver.ts) names the plugin and hook it came from.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MeowError, PluginError } from "./errors.ts";
 * const e = new PluginError("chat", "setup", new TypeError("no relay"));
 * assert(e instanceof MeowError && e.code === "PluginError");
 * assert.equal(e.message, `Plugin "chat" failed in setup: no relay`);
 * assert(e.cause instanceof TypeError);
 * ```
 */
export class PluginError extends MeowError {
  /**
   * @param plugin the failing plugin's name
   * @param hook the hook that threw: `setup`, `receive`, `outbound` or `on.<event>`
   * @param cause what the hook threw
   */
  constructor(readonly plugin: string, readonly hook: string, cause: unknown) {
    super(
      "PluginError",
      `Plugin "${plugin}" failed in ${hook}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
  }
}

/**
 * Thrown inside a receiving transaction — by the kernel or a plugin hook — to
 * leave the message on the relay for a later poll: nothing commits, nothing
 * is acked or quarantined (a message that overtook what it depends on, or
 * one for the device that is about to become a contact's primary). Not a
 * {@linkcode MeowError}: the message is not bad, only early.
 */
export class Deferred extends Error {
  override name = "Deferred";
}

/**
 * A session reset signed with an identity key the contact retired (a reset or
 * rekey replaced it): what a removed or stolen device would send. Refused;
 * nothing changes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MeowError, RetiredKey } from "./errors.ts";
 * const e = new RetiredKey("signed with a retired key");
 * assert(e instanceof MeowError && e.code === "RetiredKey");
 * ```
 */
export class RetiredKey extends MeowError {
  /** @param message the peer and the key that was refused */
  constructor(message: string, options?: ErrorOptions) {
    super("RetiredKey", message, options);
  }
}

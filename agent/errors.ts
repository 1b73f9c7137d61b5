/**
 * The agent's user-facing failures: one line of text and an exit code each.
 *
 * @module
 */

/**
 * Exit codes of `deno task agent`, stable for scripts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT } from "./errors.ts";
 * assert(EXIT.unknownContact === 4);
 * ```
 */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** An unexpected failure (a bug, a disk error); the message says what. */
  failure: 1,
  /** Bad arguments or options. */
  usage: 2,
  /** No identity in the home yet (or one already, for `init` / `pair join`). */
  noIdentity: 3,
  /** The contact given matches none, or more than one. */
  unknownContact: 4,
  /** A relay could not be reached. */
  unreachable: 5,
  /**
   * A pairing code or link that is malformed, used, expired or unknown to the
   * relay, or whose check failed (a wrong code, or someone interfered).
   */
  badCode: 6,
  /** The passphrase is wrong or missing. */
  passphrase: 7,
  /** Another command holds the home. */
  busy: 8,
  /** The other device or contact did not answer in time. */
  timeout: 9,
  /** Interrupted (Ctrl-C) while waiting. */
  interrupted: 130,
} as const;

/** The exit codes, as text for `--help`. */
export const EXIT_HELP = `Exit codes:
  0 done                        5 a relay could not be reached
  1 unexpected failure          6 bad, used or expired code or link
  2 bad arguments               7 wrong or missing passphrase
  3 no identity yet (or one     8 another command holds the home
    already, for init/join)     9 timed out waiting for the other side
  4 unknown or ambiguous contact  130 interrupted`;

/**
 * A failure to report to the user as one line, with its exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AgentError, EXIT } from "./errors.ts";
 * const e = new AgentError("no contact matches \"zed\"", EXIT.unknownContact);
 * assert(e.exitCode === 4);
 * ```
 */
export class AgentError extends Error {
  /** The process exit code this failure ends with. */
  readonly exitCode: number;
  /** @param message one line: what could not be done, and what to do about it */
  constructor(message: string, exitCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentError";
    this.exitCode = exitCode;
  }
}

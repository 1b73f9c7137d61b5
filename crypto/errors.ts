/**
 * The errors of bad input that the leaves raise — bytes that do not decode, signatures and
 * ciphertexts that do not verify, replays, ratchet skips past the bound — and their base,
 * {@linkcode MeowError}. Each carries a stable `code`; programmer errors are `TypeError` /
 * `RangeError` and are never mixed with these. The kernel's own errors extend the same base
 * (kernel/errors.ts, which re-exports these).
 *
 * @module
 */

/**
 * Base of every meowsync domain error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Malformed, MeowError } from "./errors.ts";
 * const e = new Malformed("Cannot decode UserMessage: truncated");
 * assert(e instanceof MeowError && e.code === "Malformed");
 * ```
 */
export class MeowError extends Error {
  /** A stable name for the failure, the same as the class name. */
  readonly code: string;
  /** Creates the error with a message saying what could not be done and what was seen. */
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = code;
  }
}

/** Bytes that do not decode to the expected message, or exceed its size limit. */
export class Malformed extends MeowError {
  /** @param message what could not be decoded and why */
  constructor(message: string, options?: ErrorOptions) {
    super("Malformed", message, options);
  }
}

/** A signature that does not verify against the expected key. */
export class BadSignature extends MeowError {
  /** @param message what was checked and against which key */
  constructor(message: string, options?: ErrorOptions) {
    super("BadSignature", message, options);
  }
}

/** A ciphertext that does not authenticate or decrypt (tampered, or the wrong key). */
export class BadCiphertext extends MeowError {
  /** @param message what could not be opened */
  constructor(message: string, options?: ErrorOptions) {
    super("BadCiphertext", message, options);
  }
}

/** A message that was already received (its ratchet key is spent). */
export class Replay extends MeowError {
  /** @param message which message was seen again */
  constructor(message: string, options?: ErrorOptions) {
    super("Replay", message, options);
  }
}

/** A ratchet header that would make one message skip more keys of a chain than MAX_SKIP. */
export class TooManySkipped extends MeowError {
  /** @param message how many keys would be skipped, and the limit */
  constructor(message: string, options?: ErrorOptions) {
    super("TooManySkipped", message, options);
  }
}

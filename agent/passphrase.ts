/**
 * The passphrase that protects a home at rest: scrypt turns it into the
 * 32-byte key of the store cipher; a key check in `agent.json` tells a wrong
 * passphrase from a damaged file before anything is read.
 *
 * @module
 */
import { scrypt } from "@noble/hashes/scrypt.js";
import { fromBase64Url, toBase64Url } from "../crypto/mod.ts";
import type { Random } from "../ports/mod.ts";
import { recordAd, SEAL_OVERHEAD_BYTES, xchachaCipher } from "../plugins/storage/mod.ts";
import { AgentError, EXIT } from "./errors.ts";

/** scrypt parameters, stored with their salt so a home always opens with the ones it was made with. */
export interface KdfParams {
  /** Always "scrypt". */
  name: "scrypt";
  /** log2 of the cost N. */
  logN: number;
  /** Block size. */
  r: number;
  /** Parallelism. */
  p: number;
  /** The random salt, base64url (16 bytes). */
  salt: string;
}

/**
 * The default cost: N = 2^17, r = 8, p = 1 — 128 MiB and about 0.4 s per
 * derivation on a laptop, the strength of the scrypt paper's interactive
 * setting doubled. A home keeps the parameters it was made with.
 */
export const KDF_LOG_N_DEFAULT = 17;
/** The smallest cost `--scrypt-log-n` accepts (tests and slow machines). */
export const KDF_LOG_N_MIN = 10;
/** The largest cost accepted (2^20: 1 GiB). */
export const KDF_LOG_N_MAX = 20;
/** Bytes of a derived key. */
const KEY_BYTES = 32;
/** Bytes of a salt. */
const SALT_BYTES = 16;
/** What the key check seals. */
const CHECK_TEXT = "meowsync key check v1";
/** Where the key check is bound (its associated data): no store record has this key. */
const CHECK_AD = recordAd(["agent.json", "check"]);

/**
 * Fresh parameters with a random salt.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SystemRandom } from "../crypto/mod.ts";
 * import { newKdfParams } from "./passphrase.ts";
 * assert(newKdfParams(new SystemRandom()).logN === 17);
 * ```
 */
export function newKdfParams(random: Random, logN: number = KDF_LOG_N_DEFAULT): KdfParams {
  if (!Number.isInteger(logN) || logN < KDF_LOG_N_MIN || logN > KDF_LOG_N_MAX) {
    throw new AgentError(
      `the scrypt cost must be an integer from ${KDF_LOG_N_MIN} to ${KDF_LOG_N_MAX}, got ${logN}`,
      EXIT.usage,
    );
  }
  return { name: "scrypt", logN, r: 8, p: 1, salt: toBase64Url(random.bytes(SALT_BYTES)) };
}

/**
 * Derives the store key from a passphrase.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveKey } from "./passphrase.ts";
 * const key = deriveKey("correct horse", { name: "scrypt", logN: 10, r: 8, p: 1, salt: "AAAAAAAAAAAAAAAAAAAAAA" });
 * assert(key.length === 32);
 * ```
 */
export function deriveKey(passphrase: string, params: KdfParams): Uint8Array {
  return scrypt(passphrase.normalize("NFC"), fromBase64Url(params.salt), {
    N: 2 ** params.logN,
    r: params.r,
    p: params.p,
    dkLen: KEY_BYTES,
  });
}

/**
 * The key check to store: a constant sealed with `key`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SystemRandom } from "../crypto/mod.ts";
 * import { keyCheck, keyMatches } from "./passphrase.ts";
 * const key = new SystemRandom().bytes(32);
 * assert(keyMatches(key, keyCheck(key, new SystemRandom())));
 * ```
 */
export function keyCheck(key: Uint8Array, random: Random): string {
  return toBase64Url(
    xchachaCipher(key, random).seal(new TextEncoder().encode(CHECK_TEXT), CHECK_AD),
  );
}

/**
 * Whether `key` opens the key check.
 *
 * @throws {AgentError} the check was made by an older meowsync, whose store
 *   records are not bound to their keys and do not open any more
 */
export function keyMatches(key: Uint8Array, check: string): boolean {
  let sealed: Uint8Array;
  try {
    sealed = fromBase64Url(check);
  } catch {
    return false;
  }
  // A check's length is fixed by its format: one byte short (no format byte) is an older home's.
  if (sealed.length === CHECK_TEXT.length + SEAL_OVERHEAD_BYTES - 1) {
    throw new AgentError(
      "this home was made by an older meowsync, whose store format is no longer read " +
        "(records were not bound to their keys); move it away and set the device up again " +
        "(`init`, or `pair join` from a sibling)",
      EXIT.failure,
    );
  }
  try {
    const text = xchachaCipher(key, { bytes: () => new Uint8Array(0) }).open(sealed, CHECK_AD);
    return new TextDecoder().decode(text) === CHECK_TEXT;
  } catch {
    return false;
  }
}

/** Where a passphrase comes from. */
export interface PassphraseSource {
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /**
   * Asks the user (`prompt` on stderr, no echo); undefined when there is no terminal.
   * @default {terminal prompt}
   */
  ask?(prompt: string): Promise<string | undefined>;
}

/**
 * The passphrase: `$MEOW_PASSPHRASE`, else asked on the terminal (twice when
 * `confirm`, for a new home).
 *
 * @throws {AgentError} none given, or the two entries differ
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getPassphrase } from "./passphrase.ts";
 * const pass = await getPassphrase({ env: () => "s3cret" }, { confirm: true });
 * assert(pass === "s3cret");
 * ```
 */
export async function getPassphrase(
  source: PassphraseSource,
  options: { confirm?: boolean } = {},
): Promise<string> {
  const fromEnv = source.env("MEOW_PASSPHRASE");
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  const ask = source.ask ?? askOnTerminal;
  const first = await ask("passphrase: ");
  if (first === undefined) {
    throw new AgentError(
      "no passphrase: set MEOW_PASSPHRASE or run the command in a terminal",
      EXIT.passphrase,
    );
  }
  if (first === "") throw new AgentError("the passphrase must not be empty", EXIT.passphrase);
  if (options.confirm) {
    const again = await ask("passphrase again: ");
    if (again !== first) {
      throw new AgentError("the two passphrases differ; nothing was created", EXIT.passphrase);
    }
  }
  return first;
}

/** Reads a line from the terminal without echo; undefined when stdin is no terminal. */
export async function askOnTerminal(prompt: string): Promise<string | undefined> {
  if (!Deno.stdin.isTerminal()) return undefined;
  const encoder = new TextEncoder();
  await Deno.stderr.write(encoder.encode(prompt));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  try {
    const buffer = new Uint8Array(64);
    for (;;) {
      const n = await Deno.stdin.read(buffer);
      if (n === null) break;
      for (const b of buffer.subarray(0, n)) {
        if (b === 3) throw new AgentError("interrupted", EXIT.interrupted); // Ctrl-C
        if (b === 13 || b === 10) return new TextDecoder().decode(new Uint8Array(bytes));
        if (b === 127 || b === 8) bytes.pop();
        else bytes.push(b);
      }
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(encoder.encode("\n"));
  }
}

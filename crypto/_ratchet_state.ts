/**
 * Persisting a Double Ratchet session: {@linkcode serializeRatchet} and
 * {@linkcode deserializeRatchet}, an exact round trip. Private to
 * crypto/: other folders import crypto/mod.ts.
 *
 * Layout (version 1): version (u8) ‖ flags (u8: DHr, CKs, CKr present) ‖
 * DHs private, DHs public, RK ‖ DHr, CKs, CKr when present ‖ Ns, Nr, PN (u32)
 * ‖ ad (u16 length, bytes) ‖ previous remote keys (u8 count, keys) ‖ skipped
 * keys in runs sharing a chain's public key (u16 run count; per run: key, u16
 * count, then per entry N (u32), message key, created ms (f64)). At most
 * SKIPPED_KEYS_MAX keys in all; a version-1 blob written when the cap was
 * MAX_SKIP has the same layout and reads unchanged.
 *
 * @module
 */
import { Malformed } from "./errors.ts";
import { assertLength, KEY_BYTES } from "./_primitives.ts";
import { equalBytes } from "./bytes.ts";
import { assertU32 } from "./_ratchet_header.ts";
import { SKIPPED_KEYS_MAX, type SkippedMessageKey } from "./_skipped_keys.ts";
import {
  assertAd,
  previousRemoteKeysMax,
  ratchetAdBytesMax,
  type RatchetState,
} from "./ratchet.ts";

const STATE_VERSION = 1;

/**
 * Serializes a session: version (1) first, then a compact binary layout; an
 * exact round trip through {@linkcode deserializeRatchet}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   deserializeRatchet,
 *   generateEncryptionKeyPair,
 *   initRatchetResponder,
 *   SeededRandom,
 *   serializeRatchet,
 * } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const state = initRatchetResponder({
 *   rootKey: random.bytes(32),
 *   ownKeyPair: generateEncryptionKeyPair(random),
 *   ad: new Uint8Array(64),
 * });
 * const bytes = serializeRatchet(state);
 * assert(bytes[0] === 1);
 * assert(serializeRatchet(deserializeRatchet(bytes)).join() === bytes.join());
 * ```
 */
export function serializeRatchet(state: RatchetState): Uint8Array {
  if (state.skipped.length > SKIPPED_KEYS_MAX) {
    throw new RangeError(`Cannot serialize a ratchet: ${state.skipped.length} skipped keys`);
  }
  if (state.previousRemoteKeys.length > previousRemoteKeysMax) {
    throw new RangeError(
      `Cannot serialize a ratchet: ${state.previousRemoteKeys.length} previous remote keys`,
    );
  }
  assertAd(state.ad);
  const runs = skippedRuns(state.skipped);
  const present = [state.dhr, state.cks, state.ckr].filter((k) => k !== null).length;
  const w = new Writer(
    2 + (3 + present) * KEY_BYTES + 3 * 4 + 2 + state.ad.length +
      1 + state.previousRemoteKeys.length * KEY_BYTES +
      2 + runs.length * (KEY_BYTES + 2) + state.skipped.length * (4 + KEY_BYTES + 8),
  );
  w.u8(STATE_VERSION);
  w.u8((state.dhr ? 1 : 0) | (state.cks ? 2 : 0) | (state.ckr ? 4 : 0));
  w.key(state.dhs.privateKey);
  w.key(state.dhs.publicKey);
  w.key(state.rk);
  if (state.dhr) w.key(state.dhr);
  if (state.cks) w.key(state.cks);
  if (state.ckr) w.key(state.ckr);
  w.u32(state.ns);
  w.u32(state.nr);
  w.u32(state.pn);
  w.u16(state.ad.length);
  w.bytes(state.ad);
  w.u8(state.previousRemoteKeys.length);
  for (const k of state.previousRemoteKeys) w.key(k);
  // Skipped keys come in runs sharing a chain's public key: store each key once per run.
  w.u16(runs.length);
  for (const run of runs) {
    w.key(run[0].publicKey);
    w.u16(run.length);
    for (const entry of run) {
      w.u32(entry.n);
      w.key(entry.messageKey);
      w.f64(entry.createdMs);
    }
  }
  return w.done();
}

/**
 * Restores a session serialized by {@linkcode serializeRatchet}.
 *
 * @throws {Malformed} on an unknown version, a wrong length, or values out of range
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Malformed } from "./errors.ts";
 * import { deserializeRatchet } from "./mod.ts";
 * try {
 *   deserializeRatchet(new Uint8Array([9]));
 *   throw new Error("unreachable");
 * } catch (e) {
 *   assert(e instanceof Malformed);
 * }
 * ```
 */
export function deserializeRatchet(bytes: Uint8Array): RatchetState {
  if (!(bytes instanceof Uint8Array)) {
    throw new Malformed("Cannot deserialize a ratchet: not bytes");
  }
  const r = new Reader(bytes);
  const version = r.u8();
  if (version !== STATE_VERSION) {
    throw new Malformed(`Cannot deserialize a ratchet: unknown version ${version}`);
  }
  const flags = r.u8();
  if ((flags & ~7) !== 0 || ((flags & 4) !== 0 && (flags & 1) === 0)) {
    throw new Malformed(`Cannot deserialize a ratchet: invalid flags ${flags}`);
  }
  const privateKey = r.key();
  const publicKey = r.key();
  const rk = r.key();
  const dhr = flags & 1 ? r.key() : null;
  const cks = flags & 2 ? r.key() : null;
  const ckr = flags & 4 ? r.key() : null;
  const ns = r.u32();
  const nr = r.u32();
  const pn = r.u32();
  const adLength = r.u16();
  if (adLength > ratchetAdBytesMax) {
    throw new Malformed(`Cannot deserialize a ratchet: ad of ${adLength} bytes is too long`);
  }
  const ad = r.bytes(adLength);
  const previousCount = r.u8();
  if (previousCount > previousRemoteKeysMax) {
    throw new Malformed(
      `Cannot deserialize a ratchet: ${previousCount} previous remote keys (max ${previousRemoteKeysMax})`,
    );
  }
  const previousRemoteKeys: Uint8Array[] = [];
  for (let i = 0; i < previousCount; i++) previousRemoteKeys.push(r.key());
  const runCount = r.u16();
  if (runCount > SKIPPED_KEYS_MAX) {
    throw new Malformed(
      `Cannot deserialize a ratchet: ${runCount} runs of skipped keys (max ${SKIPPED_KEYS_MAX} keys)`,
    );
  }
  const skipped: SkippedMessageKey[] = [];
  for (let i = 0; i < runCount; i++) {
    const runKey = r.key();
    const count = r.u16();
    if (count === 0 || skipped.length + count > SKIPPED_KEYS_MAX) {
      throw new Malformed(
        `Cannot deserialize a ratchet: a run of ${count} skipped keys after ${skipped.length} ` +
          `(max ${SKIPPED_KEYS_MAX})`,
      );
    }
    for (let j = 0; j < count; j++) {
      const n = r.u32();
      const messageKey = r.key();
      const createdMs = r.f64();
      if (!Number.isFinite(createdMs)) {
        throw new Malformed("Cannot deserialize a ratchet: a skipped key has no valid time");
      }
      skipped.push({ publicKey: j === 0 ? runKey : runKey.slice(), n, messageKey, createdMs });
    }
  }
  r.end();
  return {
    dhs: { privateKey, publicKey },
    dhr,
    rk,
    cks,
    ckr,
    ns,
    nr,
    pn,
    skipped,
    previousRemoteKeys,
    ad,
  };
}

// --- internals ---

function skippedRuns(skipped: readonly SkippedMessageKey[]): SkippedMessageKey[][] {
  const runs: SkippedMessageKey[][] = [];
  for (const entry of skipped) {
    const last = runs.at(-1);
    if (last && equalBytes(last[0].publicKey, entry.publicKey)) last.push(entry);
    else runs.push([entry]);
  }
  return runs;
}

class Writer {
  readonly #out: Uint8Array;
  readonly #view: DataView;
  #at = 0;
  constructor(length: number) {
    this.#out = new Uint8Array(length);
    this.#view = new DataView(this.#out.buffer);
  }
  u8(v: number): void {
    this.#view.setUint8(this.#at, v);
    this.#at += 1;
  }
  u16(v: number): void {
    this.#view.setUint16(this.#at, v);
    this.#at += 2;
  }
  u32(v: number): void {
    assertU32(v, "a ratchet counter");
    this.#view.setUint32(this.#at, v);
    this.#at += 4;
  }
  f64(v: number): void {
    this.#view.setFloat64(this.#at, v);
    this.#at += 8;
  }
  key(k: Uint8Array): void {
    assertLength(k, KEY_BYTES, "a ratchet key");
    this.bytes(k);
  }
  bytes(b: Uint8Array): void {
    this.#out.set(b, this.#at);
    this.#at += b.length;
  }
  done(): Uint8Array {
    if (this.#at !== this.#out.length) {
      throw new Error(`ratchet serializer wrote ${this.#at} of ${this.#out.length} bytes`);
    }
    return this.#out;
  }
}

class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #at = 0;
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  #take(n: number): number {
    if (this.#at + n > this.#bytes.length) {
      throw new Malformed(
        `Cannot deserialize a ratchet: truncated at byte ${this.#at} of ${this.#bytes.length}`,
      );
    }
    const at = this.#at;
    this.#at += n;
    return at;
  }
  u8(): number {
    return this.#view.getUint8(this.#take(1));
  }
  u16(): number {
    return this.#view.getUint16(this.#take(2));
  }
  u32(): number {
    return this.#view.getUint32(this.#take(4));
  }
  f64(): number {
    return this.#view.getFloat64(this.#take(8));
  }
  key(): Uint8Array {
    return this.bytes(KEY_BYTES);
  }
  bytes(n: number): Uint8Array {
    const at = this.#take(n);
    return this.#bytes.slice(at, at + n);
  }
  end(): void {
    if (this.#at !== this.#bytes.length) {
      throw new Malformed(
        `Cannot deserialize a ratchet: ${this.#bytes.length - this.#at} trailing bytes`,
      );
    }
  }
}

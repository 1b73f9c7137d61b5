/**
 * The Double Ratchet (Signal's specification, revision 4) as pure functions
 * over a plain state object. Inputs are never mutated: every step returns a
 * new state, so a step that throws leaves the caller's state as it was, and the
 * caller commits the new state only once it is stored.
 *
 * KDF_RK = HKDF-SHA-256 (salt = RK, ikm = DH output); KDF_CK = HMAC-SHA-256
 * (0x01 → message key, 0x02 → next chain key); each message key expands by
 * HKDF into an XChaCha20-Poly1305 key and nonce (each key is used once, so the
 * nonce may be derived); associated data = the session's `ad` ‖ encoded header.
 *
 * @module
 */
import { BadCiphertext, Malformed, Replay, TooManySkipped } from "../errors.ts";
import type { Random } from "./random.ts";
import type { KeyPair } from "./keys.ts";
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  aeadDecrypt,
  aeadEncrypt,
  assertLength,
  assertPublicKey,
  hkdfSha256,
  hmacSha256,
  KEY_BYTES,
} from "./_primitives.ts";
import { x25519, x25519Ephemeral } from "./_native.ts";
import { _bytesEqual, concatBytes } from "./bytes.ts";

/**
 * Most skipped message keys one session stores. A header that would take the
 * store past this throws {@linkcode TooManySkipped}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_SKIP } from "./mod.ts";
 * assert(MAX_SKIP === 1000);
 * ```
 */
export const MAX_SKIP = 1000;

/**
 * Age after which a stored skipped message key is dropped: a message delayed
 * longer than this can no longer be decrypted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SKIPPED_KEY_TTL_MS } from "./mod.ts";
 * assert(SKIPPED_KEY_TTL_MS === 604_800_000);
 * ```
 */
export const SKIPPED_KEY_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * How many earlier remote ratchet public keys a session remembers, so that a
 * repeated message from a finished chain is reported as a {@linkcode Replay}
 * rather than taken for a new ratchet step (which would fail as BadCiphertext).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { previousRemoteKeysMax } from "./mod.ts";
 * assert(previousRemoteKeysMax > 0);
 * ```
 */
export const previousRemoteKeysMax = 16;

/**
 * Longest associated data a session accepts (it binds both identity keys, so
 * it is normally 64 bytes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ratchetAdBytesMax } from "./mod.ts";
 * assert(ratchetAdBytesMax >= 64);
 * ```
 */
export const ratchetAdBytesMax = 1024;

const HEADER_VERSION = 1;
const HEADER_BYTES = 1 + KEY_BYTES + 4 + 4;
const STATE_VERSION = 1;
const U32_MAX = 0xffff_ffff;
const ROOT_INFO = new TextEncoder().encode("meowsync/ratchet/root/v1");
const MESSAGE_INFO = new TextEncoder().encode("meowsync/ratchet/message/v1");
const MESSAGE_SALT = new Uint8Array(32);
const CHAIN_MESSAGE = Uint8Array.of(0x01);
const CHAIN_NEXT = Uint8Array.of(0x02);

/**
 * A message key kept for a message that has not arrived yet.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SkippedMessageKey } from "./mod.ts";
 * const entry: SkippedMessageKey = {
 *   publicKey: new Uint8Array(32),
 *   n: 3,
 *   messageKey: new Uint8Array(32),
 *   createdMs: 0,
 * };
 * assert(entry.n === 3);
 * ```
 */
export interface SkippedMessageKey {
  /** The remote ratchet public key of the chain the message belongs to. */
  readonly publicKey: Uint8Array;
  /** The message's number in that chain. */
  readonly n: number;
  /** The message key. */
  readonly messageKey: Uint8Array;
  /** When the key was stored (ms, the caller's clock): it expires after SKIPPED_KEY_TTL_MS. */
  readonly createdMs: number;
}

/**
 * One side of a Double Ratchet session (Signal's names). Treat it as a value:
 * the functions here never mutate it and neither should callers. Persist it
 * with {@linkcode serializeRatchet}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEncryptionKeyPair, initRatchetResponder, SeededRandom } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const state = initRatchetResponder({
 *   rootKey: random.bytes(32),
 *   ownKeyPair: generateEncryptionKeyPair(random),
 *   ad: new Uint8Array(64),
 * });
 * assert(state.cks === null && state.skipped.length === 0);
 * ```
 */
export interface RatchetState {
  /** DHs: our current ratchet key pair (X25519). */
  readonly dhs: Readonly<KeyPair>;
  /** DHr: the remote's current ratchet public key, null until known. */
  readonly dhr: Uint8Array | null;
  /** RK: the root key. */
  readonly rk: Uint8Array;
  /** CKs: the sending chain key, null until we have a sending chain. */
  readonly cks: Uint8Array | null;
  /** CKr: the receiving chain key, null until we have a receiving chain. */
  readonly ckr: Uint8Array | null;
  /** Ns: number of the next message we send in the sending chain. */
  readonly ns: number;
  /** Nr: number of the next message we expect in the receiving chain. */
  readonly nr: number;
  /** PN: number of messages in our previous sending chain. */
  readonly pn: number;
  /** Stored keys of skipped messages, oldest first; at most {@linkcode MAX_SKIP}. */
  readonly skipped: readonly SkippedMessageKey[];
  /** Earlier remote ratchet public keys, oldest first; at most {@linkcode previousRemoteKeysMax}. */
  readonly previousRemoteKeys: readonly Uint8Array[];
  /** Associated data bound into every message (both sides' identity public keys). */
  readonly ad: Uint8Array;
}

/**
 * The cleartext header of a ratchet message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RatchetHeader } from "./mod.ts";
 * const header: RatchetHeader = { publicKey: new Uint8Array(32), pn: 0, n: 0 };
 * assert(header.n === 0);
 * ```
 */
export interface RatchetHeader {
  /** The sender's current ratchet public key. */
  publicKey: Uint8Array;
  /** PN: number of messages in the sender's previous sending chain. */
  pn: number;
  /** N: this message's number in the sending chain. */
  n: number;
}

/**
 * Encodes a header: version (1) ‖ public key (32) ‖ PN (u32 BE) ‖ N (u32 BE), 41 bytes.
 *
 * @throws {RangeError} when the key is not 32 bytes or PN/N is not a u32
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRatchetHeader, encodeRatchetHeader } from "./mod.ts";
 * const bytes = encodeRatchetHeader({ publicKey: new Uint8Array(32), pn: 2, n: 5 });
 * assert(decodeRatchetHeader(bytes).n === 5);
 * ```
 */
export function encodeRatchetHeader(h: RatchetHeader): Uint8Array {
  assertLength(h.publicKey, KEY_BYTES, "a ratchet header public key");
  assertU32(h.pn, "a ratchet header PN");
  assertU32(h.n, "a ratchet header N");
  const out = new Uint8Array(HEADER_BYTES);
  const view = new DataView(out.buffer);
  out[0] = HEADER_VERSION;
  out.set(h.publicKey, 1);
  view.setUint32(1 + KEY_BYTES, h.pn);
  view.setUint32(1 + KEY_BYTES + 4, h.n);
  return out;
}

/**
 * Decodes what {@linkcode encodeRatchetHeader} produced.
 *
 * @throws {Malformed} on a wrong length or version
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Malformed } from "../errors.ts";
 * import { decodeRatchetHeader } from "./mod.ts";
 * try {
 *   decodeRatchetHeader(new Uint8Array(3));
 *   throw new Error("unreachable");
 * } catch (e) {
 *   assert(e instanceof Malformed);
 * }
 * ```
 */
export function decodeRatchetHeader(b: Uint8Array): RatchetHeader {
  if (!(b instanceof Uint8Array) || b.length !== HEADER_BYTES) {
    throw new Malformed(
      `Cannot decode a ratchet header: expected ${HEADER_BYTES} bytes, got ${b?.length}`,
    );
  }
  if (b[0] !== HEADER_VERSION) {
    throw new Malformed(`Cannot decode a ratchet header: unknown version ${b[0]}`);
  }
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    publicKey: b.slice(1, 1 + KEY_BYTES),
    pn: view.getUint32(1 + KEY_BYTES),
    n: view.getUint32(1 + KEY_BYTES + 4),
  };
}

/**
 * Starts a session as the initiator (Signal's "Alice"), who knows the
 * responder's ratchet public key: performs the first DH ratchet step, so it
 * can send at once.
 *
 * @throws {RangeError} when `rootKey` is not 32 bytes or `ad` is too long
 * @throws {Malformed} when `remotePublicKey` is not a valid X25519 public key
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEncryptionKeyPair, initRatchetInitiator, SeededRandom } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const bob = generateEncryptionKeyPair(random);
 * const alice = await initRatchetInitiator({
 *   rootKey: random.bytes(32),
 *   remotePublicKey: bob.publicKey,
 *   ad: new Uint8Array(64),
 *   random,
 * });
 * assert(alice.cks !== null);
 * ```
 */
export function initRatchetInitiator(options: {
  /** The shared secret both sides agreed (e.g. by X3DH), 32 bytes. */
  rootKey: Uint8Array;
  /** The responder's ratchet public key. */
  remotePublicKey: Uint8Array;
  /** Associated data, the same on both sides. */
  ad: Uint8Array;
  /** Source of the first ratchet key pair. */
  random: Random;
}): Promise<RatchetState> {
  return Promise.try(() => initiate(options));
}

function initiate(options: Parameters<typeof initRatchetInitiator>[0]): RatchetState {
  assertLength(options.rootKey, KEY_BYTES, "a ratchet root key");
  assertAd(options.ad);
  assertPublicKey(options.remotePublicKey, "a ratchet session");
  const privateKey = options.random.bytes(KEY_BYTES);
  const { publicKey, sharedSecret } = x25519Ephemeral(privateKey, options.remotePublicKey);
  const [rk, cks] = kdfRk(options.rootKey, sharedSecret);
  return {
    dhs: { privateKey, publicKey },
    dhr: options.remotePublicKey.slice(),
    rk,
    cks,
    ckr: null,
    ns: 0,
    nr: 0,
    pn: 0,
    skipped: [],
    previousRemoteKeys: [],
    ad: options.ad.slice(),
  };
}

/**
 * Starts a session as the responder (Signal's "Bob"), whose ratchet key pair
 * the initiator used. It can send once it has received a message.
 *
 * @throws {RangeError} when a key is not 32 bytes or `ad` is too long
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEncryptionKeyPair, initRatchetResponder, SeededRandom } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const bob = initRatchetResponder({
 *   rootKey: random.bytes(32),
 *   ownKeyPair: generateEncryptionKeyPair(random),
 *   ad: new Uint8Array(64),
 * });
 * assert(bob.dhr === null);
 * ```
 */
export function initRatchetResponder(options: {
  /** The shared secret both sides agreed, 32 bytes. */
  rootKey: Uint8Array;
  /** Our ratchet key pair, whose public key the initiator used. */
  ownKeyPair: KeyPair;
  /** Associated data, the same on both sides. */
  ad: Uint8Array;
}): RatchetState {
  assertLength(options.rootKey, KEY_BYTES, "a ratchet root key");
  assertLength(options.ownKeyPair.privateKey, KEY_BYTES, "a ratchet private key");
  assertLength(options.ownKeyPair.publicKey, KEY_BYTES, "a ratchet public key");
  assertAd(options.ad);
  return {
    dhs: {
      privateKey: options.ownKeyPair.privateKey.slice(),
      publicKey: options.ownKeyPair.publicKey.slice(),
    },
    dhr: null,
    rk: options.rootKey.slice(),
    cks: null,
    ckr: null,
    ns: 0,
    nr: 0,
    pn: 0,
    skipped: [],
    previousRemoteKeys: [],
    ad: options.ad.slice(),
  };
}

/**
 * Encrypts the next message of the sending chain. Returns the new state (store
 * it before sending), the encoded header and the ciphertext.
 *
 * @throws {TypeError} when the session cannot send yet (a responder that has not received)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   generateEncryptionKeyPair,
 *   initRatchetInitiator,
 *   initRatchetResponder,
 *   ratchetDecrypt,
 *   ratchetEncrypt,
 *   SeededRandom,
 * } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const rootKey = random.bytes(32);
 * const ad = new Uint8Array(64);
 * const bobPair = generateEncryptionKeyPair(random);
 * const alice = await initRatchetInitiator({ rootKey, remotePublicKey: bobPair.publicKey, ad, random });
 * const bob = initRatchetResponder({ rootKey, ownKeyPair: bobPair, ad });
 * const sent = await ratchetEncrypt(alice, new Uint8Array([42]), { random, now: 0 });
 * const got = await ratchetDecrypt(bob, sent.header, sent.ciphertext, { random, now: 0 });
 * assert(got.plaintext[0] === 42);
 * ```
 */
export function ratchetEncrypt(
  state: RatchetState,
  plaintext: Uint8Array,
  // The options are accepted for a call shape uniform with ratchetDecrypt:
  // encryption needs neither randomness (the nonce is derived) nor the time.
  _options: {
    /** Unused by encryption. */
    random: Random;
    /** Unused by encryption. */
    now: number;
  },
): Promise<{ state: RatchetState; header: Uint8Array; ciphertext: Uint8Array }> {
  try {
    if (state.cks === null) {
      throw new TypeError(
        "Cannot encrypt with the ratchet: this responder session has not received a message yet",
      );
    }
    if (state.ns >= U32_MAX) {
      throw new RangeError("Cannot encrypt with the ratchet: the sending chain is exhausted");
    }
    const [messageKey, cks] = kdfCk(state.cks);
    const header = encodeRatchetHeader({
      publicKey: state.dhs.publicKey,
      pn: state.pn,
      n: state.ns,
    });
    const ciphertext = messageEncrypt(messageKey, plaintext, concatBytes(state.ad, header));
    return Promise.resolve({ state: { ...state, cks, ns: state.ns + 1 }, header, ciphertext });
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * Decrypts a message: from a stored skipped key, from the current receiving
 * chain, or after a DH ratchet step. Skipped keys older than
 * {@linkcode SKIPPED_KEY_TTL_MS} before `now` are dropped. On any failure the
 * state passed in stays valid and unchanged.
 *
 * @throws {Malformed} when the header does not decode or holds a low-order key
 * @throws {BadCiphertext} when the message does not authenticate
 * @throws {Replay} when its message key was already used (or has expired)
 * @throws {TooManySkipped} when accepting it would store more than MAX_SKIP skipped keys
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Replay } from "../errors.ts";
 * import {
 *   generateEncryptionKeyPair,
 *   initRatchetInitiator,
 *   initRatchetResponder,
 *   ratchetDecrypt,
 *   ratchetEncrypt,
 *   SeededRandom,
 * } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const rootKey = random.bytes(32);
 * const ad = new Uint8Array(64);
 * const bobPair = generateEncryptionKeyPair(random);
 * const alice = await initRatchetInitiator({ rootKey, remotePublicKey: bobPair.publicKey, ad, random });
 * const bob = initRatchetResponder({ rootKey, ownKeyPair: bobPair, ad });
 * const sent = await ratchetEncrypt(alice, new Uint8Array([1]), { random, now: 0 });
 * const { state } = await ratchetDecrypt(bob, sent.header, sent.ciphertext, { random, now: 0 });
 * const again = await ratchetDecrypt(state, sent.header, sent.ciphertext, { random, now: 0 })
 *   .catch((e) => e);
 * assert(again instanceof Replay);
 * ```
 */
export function ratchetDecrypt(
  state: RatchetState,
  header: Uint8Array,
  ciphertext: Uint8Array,
  options: {
    /** Source of the next ratchet key pair when the message starts a new chain. */
    random: Random;
    /** The current time (ms), to expire old skipped keys and date new ones. */
    now: number;
  },
): Promise<{ state: RatchetState; plaintext: Uint8Array }> {
  return Promise.try(() => decrypt(state, header, ciphertext, options));
}

function decrypt(
  state: RatchetState,
  header: Uint8Array,
  ciphertext: Uint8Array,
  options: Parameters<typeof ratchetDecrypt>[3],
): { state: RatchetState; plaintext: Uint8Array } {
  const h = decodeRatchetHeader(header);
  const ad = concatBytes(state.ad, header);
  const { now } = options;
  const live = expireSkipped(state.skipped, now);

  const found = live.findIndex((k) => k.n === h.n && _bytesEqual(k.publicKey, h.publicKey));
  if (found >= 0) {
    const plaintext = messageDecrypt(live[found].messageKey, ciphertext, ad);
    return { state: { ...state, skipped: live.toSpliced(found, 1) }, plaintext };
  }

  if (state.dhr !== null && _bytesEqual(h.publicKey, state.dhr)) {
    if (state.ckr === null) {
      throw new BadCiphertext(
        "Cannot decrypt a ratchet message: it claims the responder's initial key, which never sends",
      );
    }
    if (h.n < state.nr) {
      throw new Replay(
        `Cannot decrypt a ratchet message: message ${h.n} of the current chain was already ` +
          `received (next expected ${state.nr})`,
      );
    }
    assertSkipRoom(live.length, h.n - state.nr);
    const chain = skipMessageKeys(state.ckr, {
      from: state.nr,
      until: h.n,
      publicKey: state.dhr,
      now,
      into: live,
    });
    const [messageKey, ckr] = kdfCk(chain.ck);
    const plaintext = messageDecrypt(messageKey, ciphertext, ad);
    return { state: { ...state, ckr, nr: h.n + 1, skipped: chain.skipped }, plaintext };
  }

  if (state.previousRemoteKeys.some((k) => _bytesEqual(k, h.publicKey))) {
    throw new Replay(
      `Cannot decrypt a ratchet message: message ${h.n} belongs to a finished chain and its ` +
        "key was already used",
    );
  }

  // A new remote ratchet key: finish the current receiving chain up to PN, then step.
  const oldChainSkips = state.ckr !== null && state.dhr !== null ? Math.max(0, h.pn - state.nr) : 0;
  assertSkipRoom(live.length, oldChainSkips + h.n);
  let skipped = live;
  if (state.ckr !== null && state.dhr !== null) {
    skipped = skipMessageKeys(state.ckr, {
      from: state.nr,
      until: h.pn,
      publicKey: state.dhr,
      now,
      into: skipped,
    }).skipped;
  }
  const nextPrivateKey = options.random.bytes(KEY_BYTES);
  const received = x25519(state.dhs.privateKey, h.publicKey, { cache: false });
  const next = x25519Ephemeral(nextPrivateKey, h.publicKey);
  const [rkMid, ckrNew] = kdfRk(state.rk, received);
  const [rk, cks] = kdfRk(rkMid, next.sharedSecret);
  const chain = skipMessageKeys(ckrNew, {
    from: 0,
    until: h.n,
    publicKey: h.publicKey,
    now,
    into: skipped,
  });
  const [messageKey, ckr] = kdfCk(chain.ck);
  const plaintext = messageDecrypt(messageKey, ciphertext, ad);
  const previousRemoteKeys = state.dhr === null
    ? state.previousRemoteKeys
    : [...state.previousRemoteKeys, state.dhr].slice(-previousRemoteKeysMax);
  return {
    state: {
      ...state,
      dhs: { privateKey: nextPrivateKey, publicKey: next.publicKey },
      dhr: h.publicKey,
      rk,
      cks,
      ckr,
      ns: 0,
      nr: h.n + 1,
      pn: state.ns,
      skipped: chain.skipped,
      previousRemoteKeys,
    },
    plaintext,
  };
}

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
  if (state.skipped.length > MAX_SKIP) {
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
 * import { Malformed } from "../errors.ts";
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
  const skipped: SkippedMessageKey[] = [];
  for (let i = 0; i < runCount; i++) {
    const runKey = r.key();
    const count = r.u16();
    if (count === 0 || skipped.length + count > MAX_SKIP) {
      throw new Malformed(
        `Cannot deserialize a ratchet: a run of ${count} skipped keys after ${skipped.length}`,
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

function kdfRk(rk: Uint8Array, dhOut: Uint8Array): [Uint8Array, Uint8Array] {
  const out = hkdfSha256(dhOut, { salt: rk, info: ROOT_INFO, length: 2 * KEY_BYTES });
  return [out.slice(0, KEY_BYTES), out.slice(KEY_BYTES)];
}

/** KDF_CK: [message key, next chain key]. */
function kdfCk(ck: Uint8Array): [Uint8Array, Uint8Array] {
  return [hmacSha256(ck, CHAIN_MESSAGE), hmacSha256(ck, CHAIN_NEXT)];
}

function messageCipher(messageKey: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const out = hkdfSha256(messageKey, {
    salt: MESSAGE_SALT,
    info: MESSAGE_INFO,
    length: AEAD_KEY_BYTES + AEAD_NONCE_BYTES,
  });
  return { key: out.subarray(0, AEAD_KEY_BYTES), nonce: out.subarray(AEAD_KEY_BYTES) };
}

function messageEncrypt(messageKey: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array {
  const { key, nonce } = messageCipher(messageKey);
  return aeadEncrypt(key, plaintext, { nonce, ad });
}

function messageDecrypt(
  messageKey: Uint8Array,
  ciphertext: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  const { key, nonce } = messageCipher(messageKey);
  return aeadDecrypt(key, ciphertext, { nonce, ad, what: "a ratchet message" });
}

function expireSkipped(
  skipped: readonly SkippedMessageKey[],
  now: number,
): readonly SkippedMessageKey[] {
  const fresh = (k: SkippedMessageKey) => now - k.createdMs <= SKIPPED_KEY_TTL_MS;
  return skipped.every(fresh) ? skipped : skipped.filter(fresh);
}

function assertSkipRoom(stored: number, more: number): void {
  if (stored + more > MAX_SKIP) {
    throw new TooManySkipped(
      `Cannot decrypt a ratchet message: it would skip ${more} message keys with ${stored} ` +
        `already stored (max ${MAX_SKIP})`,
    );
  }
}

/** Advances a chain from message `from` to `until`, storing each skipped key. */
function skipMessageKeys(
  ck: Uint8Array,
  options: {
    from: number;
    until: number;
    publicKey: Uint8Array;
    now: number;
    into: readonly SkippedMessageKey[];
  },
): { ck: Uint8Array; skipped: readonly SkippedMessageKey[] } {
  if (options.until <= options.from) return { ck, skipped: options.into };
  const skipped = options.into.slice();
  for (let n = options.from; n < options.until; n++) {
    const [messageKey, next] = kdfCk(ck);
    skipped.push({ publicKey: options.publicKey, n, messageKey, createdMs: options.now });
    ck = next;
  }
  return { ck, skipped };
}

function skippedRuns(skipped: readonly SkippedMessageKey[]): SkippedMessageKey[][] {
  const runs: SkippedMessageKey[][] = [];
  for (const entry of skipped) {
    const last = runs.at(-1);
    if (last && _bytesEqual(last[0].publicKey, entry.publicKey)) last.push(entry);
    else runs.push([entry]);
  }
  return runs;
}

function assertU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new RangeError(`Cannot encode ${what}: ${value} is not a u32`);
  }
}

function assertAd(ad: Uint8Array): void {
  if (!(ad instanceof Uint8Array) || ad.length > ratchetAdBytesMax) {
    throw new RangeError(
      `Cannot use ratchet associated data: expected at most ${ratchetAdBytesMax} bytes, ` +
        `got ${ad?.length}`,
    );
  }
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

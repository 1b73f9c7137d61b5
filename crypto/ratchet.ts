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
 * Every function is synchronous.
 *
 * Skipped message keys follow Signal's rules: {@linkcode MAX_SKIP} bounds how
 * many keys ONE message makes the receiver skip in a chain, the stored keys are
 * capped at {@linkcode SKIPPED_KEYS_MAX} with the oldest evicted, and they
 * expire after {@linkcode SKIPPED_KEY_TTL_MS}. One refinement: where Signal's
 * SkipMessageKeys raises because a DH step's PN is more than MAX_SKIP past Nr
 * of the old receiving chain, this code stores the MAX_SKIP keys after Nr,
 * abandons the rest of that chain (those messages were lost) and steps. A gap
 * past MAX_SKIP in the current chain is still refused per message and changes
 * nothing; the sender's next DH step, which follows as soon as it hears from
 * us, then goes through, so one long gap never locks a session. (A new chain
 * whose first message to arrive is already more than MAX_SKIP in is refused,
 * as in Signal.)
 *
 * @module
 */
import { BadCiphertext, Replay } from "./errors.ts";
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
  KEY_BYTES,
} from "./_primitives.ts";
import { x25519, x25519Ephemeral } from "./_native.ts";
import { concatBytes, equalBytes } from "./bytes.ts";
import { decodeRatchetHeader, encodeRatchetHeader, U32_MAX } from "./_ratchet_header.ts";
import {
  assertSkipBound,
  expireSkipped,
  kdfCk,
  MAX_SKIP,
  skipMessageKeys,
  type SkippedMessageKey,
  takeSkipped,
} from "./_skipped_keys.ts";

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

const ROOT_INFO = new TextEncoder().encode("meowsync/ratchet/root/v1");
const MESSAGE_INFO = new TextEncoder().encode("meowsync/ratchet/message/v1");
const MESSAGE_SALT = new Uint8Array(32);

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
  /** Stored keys of skipped messages, oldest first; at most {@linkcode SKIPPED_KEYS_MAX}. */
  readonly skipped: readonly SkippedMessageKey[];
  /** Earlier remote ratchet public keys, oldest first; at most {@linkcode previousRemoteKeysMax}. */
  readonly previousRemoteKeys: readonly Uint8Array[];
  /** Associated data bound into every message (both sides' identity public keys). */
  readonly ad: Uint8Array;
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
 * const alice = initRatchetInitiator({
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
}): RatchetState {
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
 * const alice = initRatchetInitiator({ rootKey, remotePublicKey: bobPair.publicKey, ad, random });
 * const bob = initRatchetResponder({ rootKey, ownKeyPair: bobPair, ad });
 * const sent = ratchetEncrypt(alice, new Uint8Array([42]), { random, now: 0 });
 * const got = ratchetDecrypt(bob, sent.header, sent.ciphertext, { random, now: 0 });
 * assert(got.plaintext[0] === 42);
 * ```
 */
export function ratchetEncrypt(
  state: RatchetState,
  plaintext: Uint8Array,
  // The options are accepted for a call shape uniform with ratchetDecrypt:
  // encryption needs neither randomness (the nonce is derived) nor the time.
  _options?: {
    /** Unused by encryption. */
    random: Random;
    /** Unused by encryption. */
    now: number;
  },
): { state: RatchetState; header: Uint8Array; ciphertext: Uint8Array } {
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
  return { state: { ...state, cks, ns: state.ns + 1 }, header, ciphertext };
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
 * @throws {TooManySkipped} when it would skip more than MAX_SKIP keys of its chain (the
 *   current one, or the new one of a DH step; see the module's notes)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Replay } from "./errors.ts";
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
 * const alice = initRatchetInitiator({ rootKey, remotePublicKey: bobPair.publicKey, ad, random });
 * const bob = initRatchetResponder({ rootKey, ownKeyPair: bobPair, ad });
 * const sent = ratchetEncrypt(alice, new Uint8Array([1]), { random, now: 0 });
 * const { state } = ratchetDecrypt(bob, sent.header, sent.ciphertext, { random, now: 0 });
 * assert.throws(
 *   () => ratchetDecrypt(state, sent.header, sent.ciphertext, { random, now: 0 }),
 *   Replay,
 * );
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
): { state: RatchetState; plaintext: Uint8Array } {
  const h = decodeRatchetHeader(header);
  const ad = concatBytes(state.ad, header);
  const { now } = options;
  const live = expireSkipped(state.skipped, now);

  const stored = takeSkipped(live, h.publicKey, h.n);
  if (stored !== null) {
    const plaintext = messageDecrypt(stored.messageKey, ciphertext, ad);
    return { state: { ...state, skipped: stored.rest }, plaintext };
  }

  if (state.dhr !== null && equalBytes(h.publicKey, state.dhr)) {
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
    assertSkipBound(h.n - state.nr, "in the current chain");
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

  if (state.previousRemoteKeys.some((k) => equalBytes(k, h.publicKey))) {
    throw new Replay(
      `Cannot decrypt a ratchet message: message ${h.n} belongs to a finished chain and its ` +
        "key was already used",
    );
  }

  // A new remote ratchet key: finish the current receiving chain up to PN, then step.
  assertSkipBound(h.n, "in the new chain");
  let skipped = live;
  if (state.ckr !== null && state.dhr !== null) {
    // Signal raises when PN is more than MAX_SKIP past Nr; we keep the MAX_SKIP
    // keys after Nr and abandon the rest of the old chain (see the module's notes).
    skipped = skipMessageKeys(state.ckr, {
      from: state.nr,
      until: Math.min(h.pn, state.nr + MAX_SKIP),
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

// --- internals ---

/** KDF_RK: [next root key, new chain key]. */
function kdfRk(rk: Uint8Array, dhOut: Uint8Array): [Uint8Array, Uint8Array] {
  const out = hkdfSha256(dhOut, { salt: rk, info: ROOT_INFO, length: 2 * KEY_BYTES });
  return [out.slice(0, KEY_BYTES), out.slice(KEY_BYTES)];
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

/**
 * Throws a RangeError unless `ad` is bytes of at most {@linkcode ratchetAdBytesMax}.
 *
 * @throws {RangeError} when `ad` is not bytes or too long
 */
export function assertAd(ad: Uint8Array): void {
  if (!(ad instanceof Uint8Array) || ad.length > ratchetAdBytesMax) {
    throw new RangeError(
      `Cannot use ratchet associated data: expected at most ${ratchetAdBytesMax} bytes, ` +
        `got ${ad?.length}`,
    );
  }
}

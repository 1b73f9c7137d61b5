/**
 * CPace, the balanced password-authenticated key exchange of
 * draft-irtf-cfrg-cpace-21 (23 April 2026), in the cipher suite
 * CPACE-RISTR255-SHA512 and the initiator-responder setting: two devices that
 * share a short code derive the same 64-byte intermediate session key (ISK),
 * and an eavesdropper or an active attacker gets at most one guess of the code
 * per run.
 *
 * The flow (draft section 7): each side calls {@linkcode cpaceStart} with the
 * shared password-related string `prs` (and the same `ci` and `sid`), sends
 * its `y` and `ad` to the other, and calls {@linkcode cpaceFinish} with the
 * peer's. The optional explicit key confirmation of section 10.4 follows:
 * each side sends {@linkcode cpaceConfirmationTag} over its own message and
 * checks the peer's with {@linkcode cpaceVerifyTag}. Apply a KDF to the ISK
 * before using it as a key (section 10.3).
 *
 * The group is ristretto255 (RFC 9496) from @noble/curves, the hash SHA-512
 * from @noble/hashes; all randomness comes from the {@linkcode Random} port.
 * Tests reproduce the draft's Appendix B.3 vectors byte for byte.
 *
 * @module
 */
import { ristretto255, ristretto255_hasher } from "@noble/curves/ed25519.js";
import { bytesToNumberLE } from "@noble/curves/utils.js";
import { equalBytes } from "./bytes.ts";
import { hmac } from "@noble/hashes/hmac.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { Malformed } from "./errors.ts";
import { concatBytes } from "./bytes.ts";
import type { Random } from "./random.ts";

const Point = ristretto255.Point;
const encoder = new TextEncoder();

/** G_Ristretto255.DSI, the suite's domain-separation identifier (draft section 8.3). */
const DSI = encoder.encode("CPaceRistretto255");
/** G.DSI || b"_ISK", the domain separator of the ISK hash (draft section 7.2). */
const DSI_ISK = encoder.encode("CPaceRistretto255_ISK");
/** The prefix of the key-confirmation MAC key hash (draft section 10.4). */
const MAC_LABEL = encoder.encode("CPaceMac");
/** The prefix of the optional session id output hash (draft section 10.6). */
const SID_OUTPUT_LABEL = encoder.encode("CPaceSidOutput");
/** SHA-512's input block size, H.s_in_bytes. */
const SHA512_BLOCK_BYTES = 128;
/** G_Ristretto255.group_size_bits: sampled scalars keep this many low bits. */
const SCALAR_BITS = 252;

/** Length of an encoded ristretto255 element: a CPace share `y`. */
export const CPACE_POINT_BYTES = 32;
/** Length of a CPace secret scalar (little endian). */
export const CPACE_SCALAR_BYTES = 32;
/** Length of the intermediate session key (a SHA-512 output). */
export const CPACE_ISK_BYTES = 64;
/** Length of a key-confirmation tag (an HMAC-SHA-512 output). */
export const CPACE_TAG_BYTES = 64;

/** G.I, the public encoding of the identity element. */
const IDENTITY = new Uint8Array(CPACE_POINT_BYTES);
const EMPTY = new Uint8Array(0);

/**
 * The session inputs both sides must agree on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CpaceOptions } from "./cpace.ts";
 * const options: CpaceOptions = { prs: new TextEncoder().encode("7KQ2-M9XD") };
 * assert(options.ci === undefined);
 * ```
 */
export interface CpaceOptions {
  /** The password-related string: the shared secret, however short. */
  prs: Uint8Array;
  /** The channel identifier (kept secret, never sent); empty when absent. */
  ci?: Uint8Array;
  /** The public session identifier; empty when absent. */
  sid?: Uint8Array;
}

/** Which side of the initiator-responder flow a party plays. */
export type CpaceRole = "initiator" | "responder";

/** The draft's prepend_len: the LEB128 encoding of `data`'s length, then `data` (Appendix A.1.1). */
export function _prependLen(data: Uint8Array): Uint8Array {
  const length: number[] = [];
  let rest = data.length;
  do {
    length.push(rest < 0x80 ? rest : (rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  } while (rest > 0);
  return concatBytes(new Uint8Array(length), data);
}

/** The draft's lv_cat: each argument with its length prepended, joined (Appendix A.1.3). */
export function _lvCat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(...parts.map(_prependLen));
}

/**
 * The draft's generator_string for this suite (section 8.1, Appendix A.2):
 * lv_cat(DSI, PRS, zero_bytes(len_zpad), CI, sid), the zero padding filling
 * SHA-512's first block after DSI and PRS.
 */
export function _cpaceGeneratorString(options: CpaceOptions): Uint8Array {
  const dsi = _prependLen(DSI);
  const prs = _prependLen(options.prs);
  const zpadBytes = Math.max(0, SHA512_BLOCK_BYTES - 1 - prs.length - dsi.length);
  return concatBytes(
    dsi,
    prs,
    _lvCat(new Uint8Array(zpadBytes), options.ci ?? EMPTY, options.sid ?? EMPTY),
  );
}

/**
 * The draft's calculate_generator (section 8.3): SHA-512 of the generator
 * string, mapped with ristretto255's element derivation (RFC 9496 section
 * 4.3.4, the one-way map of 64 uniform bytes).
 */
function calculateGenerator(options: CpaceOptions): InstanceType<typeof Point> {
  return ristretto255_hasher.deriveToCurve!(sha512(_cpaceGeneratorString(options)));
}

/** The generator's public encoding (for the draft's test vectors; never sent in the protocol). */
export function _cpaceGenerator(options: CpaceOptions): Uint8Array {
  return calculateGenerator(options).toBytes();
}

/** The scalar as an integer in [1, order), or a RangeError for a caller's bad scalar. */
function decodeScalar(scalar: Uint8Array): bigint {
  if (scalar.length !== CPACE_SCALAR_BYTES) {
    throw new RangeError(
      `Cannot use a CPace scalar of ${scalar.length} bytes: expected ${CPACE_SCALAR_BYTES}`,
    );
  }
  const value = bytesToNumberLE(scalar);
  if (!Point.Fn.isValidNot0(value)) {
    throw new RangeError("Cannot use a CPace scalar that is 0 or not below the group order");
  }
  return value;
}

/**
 * The draft's G.sample_scalar (section 8.3, the recommended way): 32 random
 * bytes with the bits above bit 251 cleared, read little endian. A zero
 * scalar (probability 2^-252) is drawn again.
 */
function sampleScalar(random: Random): Uint8Array {
  for (;;) {
    const scalar = random.bytes(CPACE_SCALAR_BYTES);
    scalar[CPACE_SCALAR_BYTES - 1] &= (1 << (SCALAR_BITS % 8)) - 1;
    if (scalar.some((byte) => byte !== 0)) return scalar;
  }
}

/**
 * The draft's G.scalar_mult_vfy (section 8.3): `scalar` times the element
 * encoded by `point`, encoded; the identity's encoding (32 zero bytes) when
 * `point` is not a canonical ristretto255 encoding. Never throws for a bad
 * `point`.
 *
 * @throws {RangeError} when `scalar` is not 32 bytes in [1, order)
 */
export function _cpaceScalarMultVfy(scalar: Uint8Array, point: Uint8Array): Uint8Array {
  const y = decodeScalar(scalar);
  if (point.length !== CPACE_POINT_BYTES) return IDENTITY.slice();
  let decoded;
  try {
    decoded = Point.fromBytes(point);
  } catch {
    return IDENTITY.slice();
  }
  return decoded.is0() ? IDENTITY.slice() : decoded.multiply(y).toBytes();
}

/** The draft's transcript_ir: lv_cat(Ya, ADa) || lv_cat(Yb, ADb) (Appendix A.3.4). */
export function _cpaceTranscriptIr(
  ya: Uint8Array,
  ada: Uint8Array,
  yb: Uint8Array,
  adb: Uint8Array,
): Uint8Array {
  return concatBytes(_lvCat(ya, ada), _lvCat(yb, adb));
}

/**
 * The draft's transcript_oc for the symmetric setting (Appendix A.3.6):
 * b"oc", then the two lv_cat messages, lexicographically larger first. Only
 * for the draft's test vectors: meowsync runs the initiator-responder setting.
 */
export function _cpaceTranscriptOc(
  ya: Uint8Array,
  ada: Uint8Array,
  yb: Uint8Array,
  adb: Uint8Array,
): Uint8Array {
  const a = _lvCat(ya, ada);
  const b = _lvCat(yb, adb);
  return concatBytes(encoder.encode("oc"), ...(lexicographicallyLarger(a, b) ? [a, b] : [b, a]));
}

function lexicographicallyLarger(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return a.length > b.length;
}

/** ISK = H(lv_cat(DSI_ISK, sid, K) || transcript) (draft section 7.2). */
export function _cpaceIsk(
  sid: Uint8Array,
  k: Uint8Array,
  transcript: Uint8Array,
): Uint8Array {
  return sha512(concatBytes(_lvCat(DSI_ISK, sid, k), transcript));
}

/**
 * The draft's optional session id output (section 10.6), for runs without a
 * `sid`: SHA-512(b"CPaceSidOutput" || transcript_ir). Public, the same on both
 * sides.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpaceSidOutput } from "./cpace.ts";
 * const id = cpaceSidOutput({ initiatorY: new Uint8Array(32), responderY: new Uint8Array(32) });
 * assert(id.length === 64);
 * ```
 */
export function cpaceSidOutput(options: {
  initiatorY: Uint8Array;
  initiatorAd?: Uint8Array;
  responderY: Uint8Array;
  responderAd?: Uint8Array;
}): Uint8Array {
  const transcript = _cpaceTranscriptIr(
    options.initiatorY,
    options.initiatorAd ?? EMPTY,
    options.responderY,
    options.responderAd ?? EMPTY,
  );
  return sha512(concatBytes(SID_OUTPUT_LABEL, transcript));
}

/**
 * {@linkcode cpaceStart} with a given scalar instead of a sampled one, for the
 * draft's test vectors.
 *
 * @throws {RangeError} when `scalar` is not 32 bytes in [1, order)
 */
export function _cpaceStartWithScalar(
  options: CpaceOptions & { scalar: Uint8Array; ad?: Uint8Array },
): { scalar: Uint8Array; y: Uint8Array; ad: Uint8Array } {
  const y = calculateGenerator(options).multiply(decodeScalar(options.scalar)).toBytes();
  return { scalar: options.scalar.slice(), y, ad: (options.ad ?? EMPTY).slice() };
}

/**
 * One side's first step: samples a secret scalar (keep it, use it once) and
 * computes the share `y` to send, with the associated data `ad` (sent in the
 * clear, authenticated by the run).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpaceStart, SeededRandom } from "./mod.ts";
 * const prs = new TextEncoder().encode("7KQ2-M9XD");
 * const start = cpaceStart({ prs, random: new SeededRandom(1) });
 * assert(start.y.length === 32 && start.scalar.length === 32 && start.ad.length === 0);
 * ```
 */
export function cpaceStart(
  options: CpaceOptions & { random: Random; ad?: Uint8Array },
): { scalar: Uint8Array; y: Uint8Array; ad: Uint8Array } {
  return _cpaceStartWithScalar({ ...options, scalar: sampleScalar(options.random) });
}

/**
 * Both sides' last step: the 64-byte intermediate session key from the own
 * scalar and message and the peer's message. Equal on both sides exactly when
 * `prs`, `ci`, `sid` and both messages match. `sid` must be the one given to
 * {@linkcode cpaceStart}.
 *
 * @throws {Malformed} when `peerY` is not 32 bytes, not a canonical
 *   ristretto255 encoding, or the identity (the draft's abort on K = G.I)
 * @throws {RangeError} when `scalar` or `ownY` is not what {@linkcode cpaceStart} returns
 * @throws {TypeError} when `role` is neither "initiator" nor "responder"
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpaceFinish, cpaceStart, SeededRandom } from "./mod.ts";
 * const random = new SeededRandom(1);
 * const prs = new TextEncoder().encode("7KQ2-M9XD");
 * const sid = random.bytes(16);
 * const a = cpaceStart({ prs, sid, random, ad: new TextEncoder().encode("phone") });
 * const b = cpaceStart({ prs, sid, random });
 * const iskA = cpaceFinish({
 *   scalar: a.scalar, ownY: a.y, ownAd: a.ad, peerY: b.y, peerAd: b.ad, sid, role: "initiator",
 * });
 * const iskB = cpaceFinish({
 *   scalar: b.scalar, ownY: b.y, ownAd: b.ad, peerY: a.y, peerAd: a.ad, sid, role: "responder",
 * });
 * assert.deepEqual(iskA, iskB);
 * ```
 */
export function cpaceFinish(options: {
  scalar: Uint8Array;
  ownY: Uint8Array;
  ownAd: Uint8Array;
  peerY: Uint8Array;
  peerAd: Uint8Array;
  sid?: Uint8Array;
  role: CpaceRole;
}): Uint8Array {
  const { scalar, ownY, ownAd, peerY, peerAd, role } = options;
  if (role !== "initiator" && role !== "responder") {
    throw new TypeError(`Cannot finish CPace as ${String(role)}: expected initiator or responder`);
  }
  if (ownY.length !== CPACE_POINT_BYTES) {
    throw new RangeError(
      `Cannot finish CPace with an own share of ${ownY.length} bytes: expected ${CPACE_POINT_BYTES}`,
    );
  }
  if (peerY.length !== CPACE_POINT_BYTES) {
    throw new Malformed(
      `Cannot finish CPace: the peer's share is ${peerY.length} bytes, expected ${CPACE_POINT_BYTES}`,
    );
  }
  const k = _cpaceScalarMultVfy(scalar, peerY);
  if (equalBytes(k, IDENTITY)) {
    throw new Malformed(
      "Cannot finish CPace: the peer's share is not a canonical ristretto255 encoding of an " +
        "element other than the identity",
    );
  }
  const transcript = role === "initiator"
    ? _cpaceTranscriptIr(ownY, ownAd, peerY, peerAd)
    : _cpaceTranscriptIr(peerY, peerAd, ownY, ownAd);
  return _cpaceIsk(options.sid ?? EMPTY, k, transcript);
}

/** The message that a confirmation tag authenticates: the sender's own share and AD. */
export interface CpaceTagInput {
  /** The intermediate session key from {@linkcode cpaceFinish}. */
  isk: Uint8Array;
  /** The session identifier of the run; empty when absent. */
  sid?: Uint8Array;
  /** The share `y` of the party whose tag this is. */
  y: Uint8Array;
  /** The associated data of the party whose tag this is. */
  ad: Uint8Array;
}

/**
 * The explicit key confirmation tag of draft section 10.4 over the sender's
 * own message: HMAC-SHA-512 under mac_key = SHA-512(b"CPaceMac" || sid || ISK)
 * of lv_cat(y, ad). Pass the own `y`/`ad` to make the tag to send; the peer
 * checks it with {@linkcode cpaceVerifyTag} and the same values. The ISK
 * already covers the whole transcript, so each tag proves its sender derived
 * the same ISK.
 *
 * @throws {RangeError} when `isk` is not 64 bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpaceConfirmationTag, cpaceVerifyTag } from "./mod.ts";
 * const isk = new Uint8Array(64).fill(7);
 * const mine = { isk, y: new Uint8Array(32).fill(1), ad: new Uint8Array(0) };
 * const tag = cpaceConfirmationTag(mine);
 * assert(cpaceVerifyTag({ ...mine, tag }));
 * assert(!cpaceVerifyTag({ ...mine, isk: new Uint8Array(64), tag }));
 * ```
 */
export function cpaceConfirmationTag(input: CpaceTagInput): Uint8Array {
  if (input.isk.length !== CPACE_ISK_BYTES) {
    throw new RangeError(
      `Cannot confirm a CPace key of ${input.isk.length} bytes: expected ${CPACE_ISK_BYTES}`,
    );
  }
  const macKey = sha512(concatBytes(MAC_LABEL, input.sid ?? EMPTY, input.isk));
  return hmac(sha512, macKey, _lvCat(input.y, input.ad));
}

/**
 * Whether `tag` is the peer's {@linkcode cpaceConfirmationTag} over its `y` and
 * `ad` under `isk`, compared in constant time. Never throws for a bad tag.
 *
 * @throws {RangeError} when `isk` is not 64 bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpaceVerifyTag } from "./mod.ts";
 * const isk = new Uint8Array(64);
 * assert(!cpaceVerifyTag({ isk, y: new Uint8Array(32), ad: new Uint8Array(0), tag: new Uint8Array(3) }));
 * ```
 */
export function cpaceVerifyTag(input: CpaceTagInput & { tag: Uint8Array }): boolean {
  return equalBytes(cpaceConfirmationTag(input), input.tag);
}

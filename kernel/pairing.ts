/**
 * End-to-end encrypted pairing, the pure protocol layer: what two devices post
 * to a relay *mailbox* (the initiator allocates it, the relay names it by a
 * 4-character Crockford *nameplate*) so that the relay only ever holds
 * ciphertext. Two forms, both ending in the same {@linkcode PairingKeys}:
 *
 * - **link form** (QR code or paste): `meow:pair?…` / `meow:invite?…` carries
 *   the relay, the nameplate and a 32-byte secret; the initiator's card post
 *   is sealed under a key from HKDF(secret) ({@linkcode sealCardPost});
 * - **short-code form** (typed): the code is the nameplate plus an 8-character
 *   password; the two sides run CPace (draft-irtf-cfrg-cpace-21) over the
 *   mailbox, confirm the key both ways, and only then does the initiator post
 *   its card, sealed under a key from the CPace ISK
 *   ({@linkcode codeInitiatorStart} → {@linkcode codeResponderStart} →
 *   {@linkcode codeInitiatorConfirm} → {@linkcode codeResponderFinish}).
 *
 * The answer (an `InvitationAnswer`, kernel/invitation.ts) carries
 * {@linkcode answerMac} so only a holder of the secret or the code can
 * answer, and both sides show the same {@linkcode safetyCode}. Nothing here
 * does I/O or reads a clock; all randomness comes from the Random port. The
 * layouts and labels are in docs/PROTOCOL.md, "Pairing and invitations (end
 * to end)".
 *
 * Longer than most files: the whole pure pairing protocol — both forms, both sides' states and
 * the transcript they bind — is one state machine, read and reviewed as one; the flows that drive
 * it over a relay are in pairing_flow.ts.
 *
 * @module
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import {
  concatBytes,
  CPACE_POINT_BYTES,
  CPACE_TAG_BYTES,
  cpaceConfirmationTag,
  cpaceFinish,
  cpaceStart,
  cpaceVerifyTag,
  equalBytes,
  fromBase64Url,
  groupCode,
  normalizeCrockford,
  randomCrockford,
  toBase64Url,
} from "../crypto/mod.ts";
import { BadCiphertext, Malformed, PairingInterfered } from "./errors.ts";
import { CARD_BYTES_MAX } from "./invitation.ts";
import type { Random } from "../ports/mod.ts";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Length of the link form's secret S. */
export const PAIRING_SECRET_BYTES = 32;
/** Characters of a nameplate (the relay picks them). */
export const NAMEPLATE_CHARS = 4;
/** Characters of a short code's password: 8 Crockford characters, 40 bits. */
export const PAIRING_PASSWORD_CHARS = 8;
/** Digits of a safety code. */
export const SAFETY_CODE_DIGITS = 6;
/** Length of the random CPace session id the initiator sends in its first post. */
export const CODE_SID_BYTES = 16;
/** The longest pairing link text read, surrounding whitespace included, in characters. */
export const pairingLinkCharsMax = 2048;
/** The longest typed pairing code read, separators included, in characters. */
export const pairingCodeCharsMax = 64;

/** Every post starts with this version byte, then its post type byte. */
const POST_VERSION = 1;
/** Post type bytes: each post is only ever read as its own type. */
const POST_CARD = 1;
const POST_CODE_A1 = 2;
const POST_CODE_B1 = 3;
const POST_CODE_A2 = 4;
const HEADER_BYTES = 2;
const NONCE_BYTES = 24;
const AEAD_TAG_BYTES = 16;
const KEY_BYTES = 32;

/** The largest card post: the largest card, sealed. */
export const cardPostBytesMax = HEADER_BYTES + NONCE_BYTES + CARD_BYTES_MAX + AEAD_TAG_BYTES;
/** Length of the short-code form's first post, A1: header ‖ sid ‖ Ya. */
export const CODE_A1_BYTES = HEADER_BYTES + CODE_SID_BYTES + CPACE_POINT_BYTES;
/** Length of the short-code form's second post, B1: header ‖ Yb ‖ Tb. */
export const CODE_B1_BYTES = HEADER_BYTES + CPACE_POINT_BYTES + CPACE_TAG_BYTES;
/** The largest short-code third post, A2: header ‖ Ta ‖ card post. */
export const codeA2BytesMax = HEADER_BYTES + CPACE_TAG_BYTES + cardPostBytesMax;

/** HKDF-SHA-256 info labels; the prefix names the form so the two never share keys. */
const LINK_KEY_PREFIX = "meowsync pairing link v1 ";
const CODE_KEY_PREFIX = "meowsync pairing code v1 ";
const CARD_AD_LABEL = encoder.encode("meowsync pairing card v1");
const MAC_LABEL = encoder.encode("meowsync pairing answer mac v1");
const SAFETY_LABEL = encoder.encode("meowsync pairing safety code v1");
const CODE_CI_LABEL = encoder.encode("meowsync pairing code v1");

const CROCKFORD = /^[0-9A-HJKMNP-TV-Z]*$/;
const RELAY_UID = /^[0-9a-f]{32}$/;

/** The two link kinds: pairing one's own device, or inviting a contact. */
export type PairingLinkKind = "pair" | "invite";

/** What a pairing link carries. */
export interface PairingLink {
  /** Device pairing or contact invitation. */
  kind: PairingLinkKind;
  /** The relay's base URL. */
  relayUrl: string;
  /** The relay's uid (32 lowercase hex characters); the joiner checks it against the relay it reaches. */
  relayUid: string;
  /** The mailbox's nameplate, 4 Crockford characters. */
  nameplate: string;
  /** The 32-byte secret S; never sent to the relay. */
  secret: Uint8Array;
}

/**
 * The keys a pairing derives, the same on both sides: from the link secret
 * ({@linkcode pairingLinkKeys}) or from the CPace ISK (the code functions).
 */
export interface PairingKeys {
  /** The link's kind, or "code" for the short-code form; bound into every seal and MAC. */
  kind: PairingLinkKind | "code";
  /** Seals the initiator's card post. */
  cardKey: Uint8Array;
  /** Authenticates the answer ({@linkcode answerMac}). */
  macKey: Uint8Array;
  /** Derives the {@linkcode safetyCode}. */
  safetyKey: Uint8Array;
}

/**
 * What the answer MAC and the safety code cover: the post that carried the
 * initiator's card (the card post of a link, or A2 of a short code), whole,
 * and the answering side's serialized card.
 */
export interface PairingTranscript {
  /** The post that carried the initiator's card, byte for byte. */
  cardPost: Uint8Array;
  /** The answer's card, serialized (`ContactCard` bytes). */
  answerCard: Uint8Array;
}

/** Each part preceded by its length as 4 bytes big endian, joined: an unambiguous transcript. */
function lengthPrefixed(...parts: Uint8Array[]): Uint8Array {
  const out: Uint8Array[] = [];
  for (const part of parts) {
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, part.length);
    out.push(length, part);
  }
  return concatBytes(...out);
}

function deriveKeys(ikm: Uint8Array, prefix: string, kind: PairingKeys["kind"]): PairingKeys {
  const key = (name: string) =>
    hkdf(sha256, ikm, undefined, encoder.encode(prefix + name), KEY_BYTES);
  return { kind, cardKey: key("card key"), macKey: key("mac key"), safetyKey: key("safety key") };
}

function checkSecret(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length !== PAIRING_SECRET_BYTES) {
    throw new RangeError(
      `Cannot use a pairing secret of ${
        secret instanceof Uint8Array ? secret.length : typeof secret
      } bytes: expected ${PAIRING_SECRET_BYTES}`,
    );
  }
}

function checkKind(kind: string): asserts kind is PairingLinkKind {
  if (kind !== "pair" && kind !== "invite") {
    throw new TypeError(
      `Cannot use pairing link kind ${JSON.stringify(kind)}: expected pair or invite`,
    );
  }
}

/** RangeError unless `text` is `chars` canonical Crockford characters (caller's misuse). */
function checkCrockford(text: string, chars: number, what: string): void {
  if (typeof text !== "string" || text.length !== chars || !CROCKFORD.test(text)) {
    throw new RangeError(
      `Cannot use ${what} ${
        JSON.stringify(text)
      }: expected ${chars} uppercase Crockford characters`,
    );
  }
}

function checkRelayUid(relayUid: string): void {
  if (typeof relayUid !== "string" || !RELAY_UID.test(relayUid)) {
    throw new RangeError(
      `Cannot use relay uid ${JSON.stringify(relayUid)}: expected 32 lowercase hex characters`,
    );
  }
}

/**
 * A fresh link secret S from the Random port.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { drawPairingSecret } from "./pairing.ts";
 * assert.equal(drawPairingSecret(new SeededRandom(1)).length, 32);
 * ```
 */
export function drawPairingSecret(random: Random): Uint8Array {
  return random.bytes(PAIRING_SECRET_BYTES);
}

/**
 * A fresh short-code password: 8 uniform Crockford characters (40 bits).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { drawPairingPassword } from "./pairing.ts";
 * assert.match(drawPairingPassword(new SeededRandom(1)), /^[0-9A-HJKMNP-TV-Z]{8}$/);
 * ```
 */
export function drawPairingPassword(random: Random): string {
  return randomCrockford(random, PAIRING_PASSWORD_CHARS);
}

/**
 * The canonical form of a nameplate from a relay or a person: 4 Crockford
 * characters, case and look-alikes forgiven.
 *
 * @throws {Malformed} when it is not 4 Crockford characters
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNameplate } from "./pairing.ts";
 * assert.equal(parseNameplate("k7m2"), "K7M2");
 * ```
 */
export function parseNameplate(text: string): string {
  const nameplate = normalizeCrockford(text);
  if (nameplate.length !== NAMEPLATE_CHARS) {
    throw new Malformed(
      `Cannot read nameplate ${JSON.stringify(text)}: it has ${nameplate.length} characters, ` +
        `expected ${NAMEPLATE_CHARS}`,
    );
  }
  return nameplate;
}

/**
 * The link form's keys: HKDF-SHA-256 of the secret, no salt, one info label a
 * key ("meowsync pairing link v1 card key", "… mac key", "… safety key").
 *
 * @throws {RangeError} when the secret is not 32 bytes
 * @throws {TypeError} when the kind is neither "pair" nor "invite"
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pairingLinkKeys } from "./pairing.ts";
 * const keys = pairingLinkKeys({ kind: "pair", secret: new Uint8Array(32) });
 * assert(keys.kind === "pair" && keys.cardKey.length === 32);
 * assert.notDeepEqual(keys.cardKey, keys.macKey);
 * ```
 */
export function pairingLinkKeys(link: Pick<PairingLink, "kind" | "secret">): PairingKeys {
  checkKind(link.kind);
  checkSecret(link.secret);
  return deriveKeys(link.secret, LINK_KEY_PREFIX, link.kind);
}

const LINK_FIELDS = ["r", "u", "m", "s"] as const;

/**
 * The text of a pairing link:
 * `meow:<kind>?r=<encodeURIComponent(relayUrl)>&u=<relay uid>&m=<nameplate>&s=<base64url secret>`.
 *
 * @throws {RangeError} when a field is not in its canonical form or the link is too long
 * @throws {TypeError} when the kind is neither "pair" nor "invite"
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatPairingLink, parsePairingLink } from "./pairing.ts";
 * const link = {
 *   kind: "invite" as const, relayUrl: "https://relay.example", relayUid: "0123456789abcdef0123456789abcdef",
 *   nameplate: "K7M2", secret: new Uint8Array(32).fill(9),
 * };
 * const text = formatPairingLink(link);
 * assert(text.startsWith("meow:invite?r=https%3A%2F%2Frelay.example&u=0123"));
 * assert.deepEqual(parsePairingLink(text), link);
 * ```
 */
export function formatPairingLink(link: PairingLink): string {
  checkKind(link.kind);
  if (typeof link.relayUrl !== "string" || link.relayUrl === "") {
    throw new RangeError("Cannot format a pairing link without a relay URL");
  }
  checkRelayUid(link.relayUid);
  checkCrockford(link.nameplate, NAMEPLATE_CHARS, "nameplate");
  checkSecret(link.secret);
  const text = `meow:${link.kind}?r=${encodeURIComponent(link.relayUrl)}&u=${link.relayUid}` +
    `&m=${link.nameplate}&s=${toBase64Url(link.secret)}`;
  if (text.length > pairingLinkCharsMax) {
    throw new RangeError(
      `Cannot format a pairing link of ${text.length} characters: at most ${pairingLinkCharsMax}`,
    );
  }
  return text;
}

function badLink(why: string, cause?: unknown): Malformed {
  return new Malformed(`Cannot read the pairing link: ${why}`, cause ? { cause } : undefined);
}

/**
 * Reads a link {@linkcode formatPairingLink} made; surrounding whitespace is
 * ignored, fields may come in any order. The relay uid is returned as
 * written (lowercased): the caller checks it names the relay it talks to.
 *
 * @throws {Malformed} saying what is wrong: the length limit, the scheme, the
 *   kind, a missing, duplicate or unknown field, junk, the relay URL, the
 *   relay uid, the nameplate, or the secret (not base64url, not 32 bytes)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Malformed } from "./errors.ts";
 * import { parsePairingLink } from "./pairing.ts";
 * assert.throws(() => parsePairingLink("meow:pair?r=x"), Malformed);
 * ```
 */
export function parsePairingLink(text: string): PairingLink {
  if (text.length > pairingLinkCharsMax) {
    throw badLink(`it has ${text.length} characters, at most ${pairingLinkCharsMax}`);
  }
  const link = text.trim();
  const query = link.indexOf("?");
  const head = query < 0 ? link : link.slice(0, query);
  if (!head.startsWith("meow:")) {
    throw badLink(
      `it starts with ${
        JSON.stringify(link.slice(0, 12))
      }, expected "meow:pair?" or "meow:invite?"`,
    );
  }
  const kind = head.slice("meow:".length);
  if (kind !== "pair" && kind !== "invite") {
    throw badLink(`unknown kind ${JSON.stringify(kind)}, expected "pair" or "invite"`);
  }
  if (query < 0) throw badLink(`no fields after "meow:${kind}", expected "?r=…&u=…&m=…&s=…"`);
  const junk = link.search(/[\s#]/);
  if (junk >= 0) {
    throw badLink(
      `junk at character ${junk + 1} (${JSON.stringify(link.slice(junk, junk + 12))}): ` +
        "a link has no spaces or '#'",
    );
  }
  const fields = new Map<string, string>();
  for (const part of link.slice(query + 1).split("&")) {
    const eq = part.indexOf("=");
    if (eq < 0) {
      throw badLink(
        `junk ${JSON.stringify(part.slice(0, 12))} where a field "name=value" was expected`,
      );
    }
    const name = part.slice(0, eq);
    if (!(LINK_FIELDS as readonly string[]).includes(name)) {
      throw badLink(`unknown field ${JSON.stringify(name.slice(0, 12))}, expected r, u, m and s`);
    }
    if (fields.has(name)) throw badLink(`the field "${name}" appears twice`);
    fields.set(name, part.slice(eq + 1));
  }
  const missing = LINK_FIELDS.filter((name) => !fields.has(name));
  if (missing.length > 0) {
    throw badLink(`the field${missing.length > 1 ? "s" : ""} ${missing.join(", ")} missing`);
  }
  return {
    kind,
    relayUrl: parseRelayUrl(fields.get("r")!),
    relayUid: parseRelayUid(fields.get("u")!),
    nameplate: parseLinkNameplate(fields.get("m")!),
    secret: parseSecret(fields.get("s")!),
  };
}

function parseRelayUrl(value: string): string {
  let url: string;
  try {
    url = decodeURIComponent(value);
  } catch (cause) {
    throw badLink(`the relay URL r is not percent-encoded text`, cause);
  }
  if (!URL.canParse(url)) throw badLink(`the relay URL r=${JSON.stringify(url)} is not a URL`);
  return url;
}

function parseRelayUid(value: string): string {
  const uid = value.toLowerCase();
  if (!RELAY_UID.test(uid)) {
    throw badLink(
      `the relay uid u=${JSON.stringify(value.slice(0, 40))} is not 32 hex characters`,
    );
  }
  return uid;
}

function parseLinkNameplate(value: string): string {
  try {
    return parseNameplate(value);
  } catch (cause) {
    throw badLink(
      `the nameplate m=${JSON.stringify(value.slice(0, 12))} is not 4 Crockford characters`,
      cause,
    );
  }
}

function parseSecret(value: string): Uint8Array {
  let secret: Uint8Array;
  try {
    secret = fromBase64Url(value);
  } catch (cause) {
    throw badLink(`the secret s is not base64url (${(cause as Error).message})`, cause);
  }
  if (secret.length !== PAIRING_SECRET_BYTES) {
    throw badLink(
      `the secret s is ${secret.length} bytes (${value.length} characters), expected ` +
        `${PAIRING_SECRET_BYTES} (43 characters)`,
    );
  }
  return secret;
}

/**
 * The short code to show: nameplate then password, in groups of 4
 * ("K7M2-XQ4P-9R3T").
 *
 * @throws {RangeError} when the nameplate is not 4 or the password not 8 canonical Crockford characters
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatPairingCode } from "./pairing.ts";
 * assert.equal(formatPairingCode("K7M2", "XQ4P9R3T"), "K7M2-XQ4P-9R3T");
 * ```
 */
export function formatPairingCode(nameplate: string, password: string): string {
  checkCrockford(nameplate, NAMEPLATE_CHARS, "nameplate");
  checkCrockford(password, PAIRING_PASSWORD_CHARS, "pairing password");
  return groupCode(nameplate + password);
}

/**
 * Reads a typed short code: case, spaces, dashes and the look-alikes O/0,
 * I/L/1 are forgiven. The relay is not part of the code.
 *
 * @throws {Malformed} naming what is wrong: too long, a bad character, or
 *   the wrong number of characters
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePairingCode } from "./pairing.ts";
 * assert.deepEqual(parsePairingCode(" k7m2 xq4p-9r3t "), { nameplate: "K7M2", password: "XQ4P9R3T" });
 * ```
 */
export function parsePairingCode(text: string): { nameplate: string; password: string } {
  const expected = `expected ${NAMEPLATE_CHARS + PAIRING_PASSWORD_CHARS} (${NAMEPLATE_CHARS} for ` +
    `the mailbox, ${PAIRING_PASSWORD_CHARS} for the password)`;
  if (text.length > pairingCodeCharsMax) {
    throw new Malformed(
      `Cannot read the pairing code: ${text.length} characters typed, at most ` +
        `${pairingCodeCharsMax}; ${expected}`,
    );
  }
  let code: string;
  try {
    code = normalizeCrockford(text);
  } catch (cause) {
    throw new Malformed(`Cannot read the pairing code: ${(cause as Error).message}`, { cause });
  }
  if (code.length !== NAMEPLATE_CHARS + PAIRING_PASSWORD_CHARS) {
    throw new Malformed(
      `Cannot read the pairing code: the code has ${code.length} characters, ${expected}`,
    );
  }
  return { nameplate: code.slice(0, NAMEPLATE_CHARS), password: code.slice(NAMEPLATE_CHARS) };
}

function cardAd(kind: PairingKeys["kind"]): Uint8Array {
  return lengthPrefixed(CARD_AD_LABEL, encoder.encode(kind));
}

/**
 * The initiator's card post: version 1 ‖ type 1 ‖ 24-byte random nonce ‖
 * XChaCha20-Poly1305 of the card under `keys.cardKey`, the associated data
 * binding the label "meowsync pairing card v1" and `keys.kind`.
 *
 * @throws {RangeError} when the card is over `CARD_BYTES_MAX` or a key is not 32 bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { openCardPost, pairingLinkKeys, sealCardPost } from "./pairing.ts";
 * const random = new SeededRandom(1);
 * const keys = pairingLinkKeys({ kind: "pair", secret: random.bytes(32) });
 * const post = sealCardPost(new Uint8Array([1, 2, 3]), keys, random);
 * assert.deepEqual(openCardPost(post, keys), new Uint8Array([1, 2, 3]));
 * ```
 */
export function sealCardPost(cardBytes: Uint8Array, keys: PairingKeys, random: Random): Uint8Array {
  if (cardBytes.length > CARD_BYTES_MAX) {
    throw new RangeError(
      `Cannot seal a card of ${cardBytes.length} bytes: at most ${CARD_BYTES_MAX}`,
    );
  }
  const nonce = random.bytes(NONCE_BYTES);
  const sealed = xchacha20poly1305(keys.cardKey, nonce, cardAd(keys.kind)).encrypt(cardBytes);
  return concatBytes(new Uint8Array([POST_VERSION, POST_CARD]), nonce, sealed);
}

/**
 * The card bytes of a {@linkcode sealCardPost} post.
 *
 * @throws {BadCiphertext} when the post is not a card post of version 1, is
 *   too short or too long, tampered, sealed under another secret or for the
 *   other kind
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BadCiphertext } from "./errors.ts";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { openCardPost, pairingLinkKeys, sealCardPost } from "./pairing.ts";
 * const random = new SeededRandom(1);
 * const secret = random.bytes(32);
 * const post = sealCardPost(new Uint8Array([1]), pairingLinkKeys({ kind: "pair", secret }), random);
 * assert.throws(() => openCardPost(post, pairingLinkKeys({ kind: "invite", secret })), BadCiphertext);
 * ```
 */
export function openCardPost(post: Uint8Array, keys: PairingKeys): Uint8Array {
  if (
    post.length < HEADER_BYTES + NONCE_BYTES + AEAD_TAG_BYTES || post.length > cardPostBytesMax ||
    post[0] !== POST_VERSION || post[1] !== POST_CARD
  ) {
    throw new BadCiphertext(
      `Cannot open a pairing card post of ${post.length} bytes: not a version ${POST_VERSION} ` +
        `card post of ${HEADER_BYTES + NONCE_BYTES + AEAD_TAG_BYTES} to ${cardPostBytesMax} bytes`,
    );
  }
  const nonce = post.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
  try {
    return xchacha20poly1305(keys.cardKey, nonce, cardAd(keys.kind)).decrypt(
      post.subarray(HEADER_BYTES + NONCE_BYTES),
    );
  } catch (cause) {
    throw new BadCiphertext(
      `Cannot open a pairing card post of ${post.length} bytes: it does not authenticate ` +
        `(tampered, another pairing's secret, or not a "${keys.kind}" post)`,
      { cause },
    );
  }
}

function transcriptBytes(label: Uint8Array, keys: PairingKeys, t: PairingTranscript): Uint8Array {
  return lengthPrefixed(label, encoder.encode(keys.kind), t.cardPost, t.answerCard);
}

/**
 * The answer's 32-byte MAC: HMAC-SHA-256 under `keys.macKey` of the
 * length-prefixed transcript (label "meowsync pairing answer mac v1", kind,
 * card post, answer card). Only a holder of the link secret or the code can
 * make it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { answerMac, pairingLinkKeys, verifyAnswerMac } from "./pairing.ts";
 * const keys = pairingLinkKeys({ kind: "invite", secret: new Uint8Array(32) });
 * const transcript = { cardPost: new Uint8Array([1]), answerCard: new Uint8Array([2]) };
 * const mac = answerMac(keys, transcript);
 * assert(mac.length === 32 && verifyAnswerMac(keys, { ...transcript, mac }));
 * ```
 */
export function answerMac(keys: PairingKeys, transcript: PairingTranscript): Uint8Array {
  return hmac(sha256, keys.macKey, transcriptBytes(MAC_LABEL, keys, transcript));
}

/**
 * Whether `mac` is {@linkcode answerMac} of the transcript, compared in
 * constant time. Never throws for a bad MAC.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pairingLinkKeys, verifyAnswerMac } from "./pairing.ts";
 * const keys = pairingLinkKeys({ kind: "invite", secret: new Uint8Array(32) });
 * const t = { cardPost: new Uint8Array([1]), answerCard: new Uint8Array([2]) };
 * assert(!verifyAnswerMac(keys, { ...t, mac: new Uint8Array(32) }));
 * ```
 */
export function verifyAnswerMac(
  keys: PairingKeys,
  transcript: PairingTranscript & { mac: Uint8Array },
): boolean {
  const expected = answerMac(keys, transcript);
  return transcript.mac instanceof Uint8Array && transcript.mac.length === expected.length &&
    equalBytes(expected, transcript.mac);
}

/**
 * The 6-digit safety code both sides show: HMAC-SHA-256 under
 * `keys.safetyKey` of the length-prefixed transcript (label "meowsync
 * pairing safety code v1", kind, card post, answer card), its first 4 bytes
 * read big endian, mod 10^6, zero-padded. The modulo bias is negligible:
 * 2^32 mod 10^6 = 967296, so those values are 4295/4294 times as likely as
 * the rest (2.3e-4 relative), no help to an attacker who must hit one value
 * in a million.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pairingLinkKeys, safetyCode } from "./pairing.ts";
 * const keys = pairingLinkKeys({ kind: "pair", secret: new Uint8Array(32) });
 * const code = safetyCode(keys, { cardPost: new Uint8Array([1]), answerCard: new Uint8Array([2]) });
 * assert.match(code, /^\d{6}$/);
 * ```
 */
export function safetyCode(keys: PairingKeys, transcript: PairingTranscript): string {
  const digest = hmac(sha256, keys.safetyKey, transcriptBytes(SAFETY_LABEL, keys, transcript));
  const value = new DataView(digest.buffer, digest.byteOffset).getUint32(0) %
    10 ** SAFETY_CODE_DIGITS;
  return String(value).padStart(SAFETY_CODE_DIGITS, "0");
}

/** What both sides of a short code must agree on. */
export interface CodeSession {
  /** The password, 8 canonical Crockford characters (from {@linkcode parsePairingCode} or {@linkcode drawPairingPassword}). */
  password: string;
  /** The relay's uid, 32 lowercase hex characters. */
  relayUid: string;
  /** The mailbox's nameplate, 4 canonical Crockford characters. */
  nameplate: string;
}

/** The initiator's state between A1 and B1. Use it once. */
export interface CodeInitiatorState {
  /** The CPace session id it sent. */
  readonly sid: Uint8Array;
  /** Its CPace secret scalar. */
  readonly scalar: Uint8Array;
  /** Its CPace share Ya. */
  readonly ya: Uint8Array;
}

/** The responder's state between B1 and A2. Use it once. */
export interface CodeResponderState {
  /** The CPace session id from A1. */
  readonly sid: Uint8Array;
  /** The initiator's share Ya (what Ta covers). */
  readonly ya: Uint8Array;
  /** The CPace ISK; trusted only once Ta verifies. */
  readonly isk: Uint8Array;
}

/** States already used: a second B1 (or A2) must not get a second guess at the code. */
const spentStates = new WeakSet<object>();

function spend(state: object, what: string): void {
  if (spentStates.has(state)) {
    throw new TypeError(`Cannot ${what} twice with one state: start a new pairing run`);
  }
  spentStates.add(state);
}

/** The CPace inputs: PRS = the password; CI = lengthPrefixed(label, relay uid, nameplate). */
function cpaceInputs(session: CodeSession, sid: Uint8Array) {
  checkCrockford(session.password, PAIRING_PASSWORD_CHARS, "pairing password");
  checkCrockford(session.nameplate, NAMEPLATE_CHARS, "nameplate");
  checkRelayUid(session.relayUid);
  const ci = lengthPrefixed(
    CODE_CI_LABEL,
    encoder.encode(session.relayUid),
    encoder.encode(session.nameplate),
  );
  return { prs: encoder.encode(session.password), ci, sid };
}

/** The short-code form's keys: HKDF-SHA-256 of the ISK, info "meowsync pairing code v1 card key", … */
function codeKeys(isk: Uint8Array): PairingKeys {
  return deriveKeys(isk, CODE_KEY_PREFIX, "code");
}

function header(type: number): Uint8Array {
  return new Uint8Array([POST_VERSION, type]);
}

function hasHeader(post: Uint8Array, type: number): boolean {
  return post[0] === POST_VERSION && post[1] === type;
}

/**
 * Short code, step 1 (initiator): a fresh CPace session id and share. A1 =
 * version 1 ‖ type 2 ‖ sid (16 random bytes) ‖ Ya (32); the CPace AD is empty.
 * The card is not an input: nothing of it leaves before B1 confirms.
 *
 * @throws {RangeError} when the password, nameplate or relay uid is not canonical
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { CODE_A1_BYTES, codeInitiatorStart } from "./pairing.ts";
 * const { post } = codeInitiatorStart({
 *   password: "XQ4P9R3T", relayUid: "0123456789abcdef0123456789abcdef", nameplate: "K7M2",
 *   random: new SeededRandom(1),
 * });
 * assert.equal(post.length, CODE_A1_BYTES);
 * ```
 */
export function codeInitiatorStart(
  options: CodeSession & { random: Random },
): { state: CodeInitiatorState; post: Uint8Array } {
  const sid = options.random.bytes(CODE_SID_BYTES);
  const start = cpaceStart({ ...cpaceInputs(options, sid), random: options.random });
  const state: CodeInitiatorState = { sid, scalar: start.scalar, ya: start.y };
  return { state, post: concatBytes(header(POST_CODE_A1), sid, start.y) };
}

/**
 * Short code, step 2 (responder): reads A1, answers with its share and its
 * confirmation tag. B1 = version 1 ‖ type 3 ‖ Yb (32) ‖ Tb (64), Tb the
 * draft's confirmation tag over Yb and the empty AD.
 *
 * @throws {Malformed} when A1 is not a version 1 A1 post or Ya is not a valid share
 * @throws {RangeError} when the password, nameplate or relay uid is not canonical
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { CODE_B1_BYTES, codeInitiatorStart, codeResponderStart } from "./pairing.ts";
 * const random = new SeededRandom(1);
 * const session = { password: "XQ4P9R3T", relayUid: "0123456789abcdef0123456789abcdef", nameplate: "K7M2" };
 * const a = codeInitiatorStart({ ...session, random });
 * const b = codeResponderStart({ ...session, random, a1: a.post });
 * assert.equal(b.post.length, CODE_B1_BYTES);
 * ```
 */
export function codeResponderStart(
  options: CodeSession & { random: Random; a1: Uint8Array },
): { state: CodeResponderState; post: Uint8Array } {
  const { a1, random } = options;
  if (a1.length !== CODE_A1_BYTES || !hasHeader(a1, POST_CODE_A1)) {
    throw new Malformed(
      `Cannot read a pairing code's first post of ${a1.length} bytes: expected a version ` +
        `${POST_VERSION} first post of ${CODE_A1_BYTES} bytes`,
    );
  }
  const sid = a1.slice(HEADER_BYTES, HEADER_BYTES + CODE_SID_BYTES);
  const ya = a1.slice(HEADER_BYTES + CODE_SID_BYTES);
  const start = cpaceStart({ ...cpaceInputs(options, sid), random });
  const isk = cpaceFinish({
    scalar: start.scalar,
    ownY: start.y,
    ownAd: EMPTY,
    peerY: ya,
    peerAd: EMPTY,
    sid,
    role: "responder",
  });
  const tb = cpaceConfirmationTag({ isk, sid, y: start.y, ad: EMPTY });
  return { state: { sid, ya, isk }, post: concatBytes(header(POST_CODE_B1), start.y, tb) };
}

/**
 * Short code, step 3 (initiator): checks B1's tag, and only then seals the
 * card. A2 = version 1 ‖ type 4 ‖ Ta (64, over Ya and the empty AD) ‖ a
 * {@linkcode sealCardPost} post under the ISK's card key. The returned keys
 * are the pairing's.
 *
 * @throws {PairingInterfered} when B1 is malformed or its tag does not verify
 *   (a wrong code and an attack look the same); the state is spent either way
 * @throws {TypeError} when the state was used already
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { PairingInterfered } from "./errors.ts";
 * import { codeInitiatorConfirm, codeInitiatorStart, codeResponderStart } from "./pairing.ts";
 * const random = new SeededRandom(1);
 * const session = { password: "XQ4P9R3T", relayUid: "0123456789abcdef0123456789abcdef", nameplate: "K7M2" };
 * const a = codeInitiatorStart({ ...session, random });
 * const guess = codeResponderStart({ ...session, password: "00000000", random, a1: a.post });
 * assert.throws(() => codeInitiatorConfirm(a.state, guess.post, new Uint8Array([1]), random), PairingInterfered);
 * ```
 */
export function codeInitiatorConfirm(
  state: CodeInitiatorState,
  b1: Uint8Array,
  cardBytes: Uint8Array,
  random: Random,
): { keys: PairingKeys; post: Uint8Array } {
  if (cardBytes.length > CARD_BYTES_MAX) {
    throw new RangeError(
      `Cannot pair a card of ${cardBytes.length} bytes: at most ${CARD_BYTES_MAX}`,
    );
  }
  spend(state, "confirm a pairing code");
  if (b1.length !== CODE_B1_BYTES || !hasHeader(b1, POST_CODE_B1)) throw new PairingInterfered();
  const yb = b1.slice(HEADER_BYTES, HEADER_BYTES + CPACE_POINT_BYTES);
  const tb = b1.slice(HEADER_BYTES + CPACE_POINT_BYTES);
  let isk: Uint8Array;
  try {
    isk = cpaceFinish({
      scalar: state.scalar,
      ownY: state.ya,
      ownAd: EMPTY,
      peerY: yb,
      peerAd: EMPTY,
      sid: state.sid,
      role: "initiator",
    });
  } catch (cause) {
    if (cause instanceof Malformed) throw new PairingInterfered(undefined, { cause });
    throw cause;
  }
  if (!cpaceVerifyTag({ isk, sid: state.sid, y: yb, ad: EMPTY, tag: tb })) {
    throw new PairingInterfered();
  }
  const ta = cpaceConfirmationTag({ isk, sid: state.sid, y: state.ya, ad: EMPTY });
  const keys = codeKeys(isk);
  return {
    keys,
    post: concatBytes(header(POST_CODE_A2), ta, sealCardPost(cardBytes, keys, random)),
  };
}

/**
 * Short code, step 4 (responder): checks A2's tag and opens the card.
 *
 * @throws {PairingInterfered} when A2 is malformed, its tag does not verify or
 *   the card does not open; the state is spent either way
 * @throws {TypeError} when the state was used already
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import * as p from "./pairing.ts";
 * const random = new SeededRandom(1);
 * const session = { password: "XQ4P9R3T", relayUid: "0123456789abcdef0123456789abcdef", nameplate: "K7M2" };
 * const a = p.codeInitiatorStart({ ...session, random });
 * const b = p.codeResponderStart({ ...session, random, a1: a.post });
 * const done = p.codeInitiatorConfirm(a.state, b.post, new Uint8Array([7]), random);
 * const got = p.codeResponderFinish(b.state, done.post);
 * assert.deepEqual(got.cardBytes, new Uint8Array([7]));
 * assert.deepEqual(got.keys, done.keys);
 * ```
 */
export function codeResponderFinish(
  state: CodeResponderState,
  a2: Uint8Array,
): { keys: PairingKeys; cardBytes: Uint8Array } {
  spend(state, "finish a pairing code");
  if (
    a2.length < HEADER_BYTES + CPACE_TAG_BYTES || a2.length > codeA2BytesMax ||
    !hasHeader(a2, POST_CODE_A2)
  ) {
    throw new PairingInterfered();
  }
  const ta = a2.subarray(HEADER_BYTES, HEADER_BYTES + CPACE_TAG_BYTES);
  if (!cpaceVerifyTag({ isk: state.isk, sid: state.sid, y: state.ya, ad: EMPTY, tag: ta })) {
    throw new PairingInterfered();
  }
  const keys = codeKeys(state.isk);
  try {
    return { keys, cardBytes: openCardPost(a2.subarray(HEADER_BYTES + CPACE_TAG_BYTES), keys) };
  } catch (cause) {
    throw new PairingInterfered(undefined, { cause });
  }
}

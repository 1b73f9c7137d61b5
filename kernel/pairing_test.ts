import assert from "node:assert/strict";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { decode, encode } from "../proto/codec.ts";
import { InvitationAnswerSchema, PeerRecordSchema } from "../proto/gen/meow_pb.ts";
import {
  concatBytes,
  containsBytes,
  cpaceConfirmationTag,
  cpaceFinish,
  SeededRandom,
  toBase64Url,
} from "../crypto/mod.ts";
import { BadCiphertext, Malformed, PairingInterfered } from "./errors.ts";
import { openFrame } from "./pipeline.ts";
import {
  answerInvitation,
  cardBytes,
  createInvitation,
  decodeCard,
  finalizeInvitation,
} from "./invitation.ts";
import {
  answerMac,
  CODE_A1_BYTES,
  CODE_B1_BYTES,
  codeInitiatorConfirm,
  codeInitiatorStart,
  type CodeInitiatorState,
  codeResponderFinish,
  codeResponderStart,
  drawPairingPassword,
  drawPairingSecret,
  formatPairingCode,
  formatPairingLink,
  openCardPost,
  type PairingKeys,
  type PairingLink,
  pairingLinkCharsMax,
  pairingLinkKeys,
  parseNameplate,
  parsePairingCode,
  parsePairingLink,
  safetyCode,
  sealCardPost,
  verifyAnswerMac,
} from "./pairing.ts";

const RELAY_UID = "0123456789abcdef0123456789abcdef";
const SESSION = { password: "XQ4P9R3T", relayUid: RELAY_UID, nameplate: "K7M2" };

function sampleLink(overrides: Partial<PairingLink> = {}): PairingLink {
  return {
    kind: "pair",
    relayUrl: "https://relay.example:8443/meow?x=1&y=ü",
    relayUid: RELAY_UID,
    nameplate: "K7M2",
    secret: new SeededRandom("link").bytes(32),
    ...overrides,
  };
}

/** A real contact card's bytes, as a pairing initiator posts them. */
function sampleCard(seed = "card"): Uint8Array {
  const { card } = createInvitation({
    random: new SeededRandom(seed),
    now: 0,
    name: "alice",
    servers: [],
  });
  return cardBytes(card);
}

function flipped(bytes: Uint8Array, index: number): Uint8Array {
  const copy = bytes.slice();
  copy[index] ^= 0x01;
  return copy;
}

function assertMalformed(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert(e instanceof Malformed, `expected Malformed, got ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

/** Runs the short-code flow up to the initiator's confirmation. */
function codeRun(seed: string, responderPassword = SESSION.password) {
  const random = new SeededRandom(seed);
  const initiator = codeInitiatorStart({ ...SESSION, random: random.fork("initiator") });
  const responder = codeResponderStart({
    ...SESSION,
    password: responderPassword,
    random: random.fork("responder"),
    a1: initiator.post,
  });
  return { random, initiator, responder };
}

// --- link form: text ---

Deno.test("formatPairingLink() and parsePairingLink() round trip both kinds", () => {
  for (const kind of ["pair", "invite"] as const) {
    const link = sampleLink({ kind });
    const text = formatPairingLink(link);
    assert(text.startsWith(`meow:${kind}?r=https%3A%2F%2Frelay.example%3A8443%2Fmeow%3Fx%3D1`));
    assert(text.endsWith(`&u=${RELAY_UID}&m=K7M2&s=${toBase64Url(link.secret)}`));
    assert.deepEqual(parsePairingLink(text), link);
    assert.deepEqual(parsePairingLink(` \n\t${text}\r\n `), link, "surrounding whitespace");
  }
});

Deno.test("parsePairingLink() accepts fields in any order, an uppercase uid and a lowercase nameplate", () => {
  const link = sampleLink();
  const secret = toBase64Url(link.secret);
  const url = encodeURIComponent(link.relayUrl);
  const text = `meow:pair?s=${secret}&m=k7m2&u=${RELAY_UID.toUpperCase()}&r=${url}`;
  assert.deepEqual(parsePairingLink(text), link);
});

Deno.test("parsePairingLink() reads a link for another relay uid: the caller compares", () => {
  const other = "ffffffffffffffffffffffffffffffff";
  const parsed = parsePairingLink(formatPairingLink(sampleLink({ relayUid: other })));
  assert.equal(parsed.relayUid, other);
  assert.notEqual(parsed.relayUid, RELAY_UID);
});

Deno.test("parsePairingLink() refuses every bad link with a Malformed that says what is wrong", () => {
  const good = formatPairingLink(sampleLink());
  const secret = toBase64Url(sampleLink().secret);
  const url = encodeURIComponent(sampleLink().relayUrl);
  const fields = (s: string) => `meow:pair?r=${url}&u=${RELAY_UID}&m=K7M2&s=${s}`;
  const cases: [string, string, RegExp][] = [
    [
      "wrong scheme",
      good.replace("meow:", "http:"),
      /starts with "http:pair\?r=", expected "meow:pair\?"/,
    ],
    ["no scheme", "K7M2-XQ4P-9R3T", /starts with "K7M2-XQ4P-9R", expected "meow:pair\?"/],
    ["unknown kind", good.replace("meow:pair", "meow:pear"), /unknown kind "pear"/],
    ["no fields", "meow:invite", /no fields after "meow:invite"/],
    ["missing field", good.replace(/&m=K7M2/, ""), /the field m missing/],
    ["missing fields", "meow:pair?r=x", /the fields u, m, s missing/],
    ["duplicate field", `${good}&m=K7M2`, /the field "m" appears twice/],
    ["unknown field", `${good}&x=1`, /unknown field "x", expected r, u, m and s/],
    ["trailing junk", `${good} please`, /junk at character \d+ \(" please"\)/],
    ["trailing fragment", `${good}#top`, /junk at character \d+ \("#top"\)/],
    ["trailing '&'", `${good}&`, /junk "" where a field "name=value" was expected/],
    ["bad base64url", fields(secret.slice(0, 42) + "+"), /the secret s is not base64url.*"\+"/],
    [
      "secret too short",
      fields(toBase64Url(sampleLink().secret.subarray(0, 31))),
      /the secret s is 31 bytes \(42 characters\), expected 32/,
    ],
    ["secret too long", fields(secret + "AAAA"), /the secret s is 35 bytes/],
    [
      "nameplate too short",
      good.replace("m=K7M2", "m=K7M"),
      /the nameplate m="K7M" is not 4 Crockford/,
    ],
    ["nameplate bad character", good.replace("m=K7M2", "m=K7MU"), /the nameplate m="K7MU"/],
    [
      "relay uid too short",
      good.replace(RELAY_UID, RELAY_UID.slice(1)),
      /relay uid u="123.*not 32 hex/,
    ],
    [
      "relay uid not hex",
      good.replace(RELAY_UID, "g".repeat(32)),
      /relay uid u="g{32}" is not 32 hex/,
    ],
    [
      "relay URL not encoded",
      good.replace(/r=[^&]*/, "r=%E0%A4%A"),
      /relay URL r is not percent-encoded/,
    ],
    ["relay URL not a URL", good.replace(/r=[^&]*/, "r=relay"), /relay URL r="relay" is not a URL/],
    ["too long", good + "&".repeat(pairingLinkCharsMax), /characters, at most 2048/],
  ];
  for (const [what, text, message] of cases) {
    assert.throws(() => parsePairingLink(text), (e: unknown) => {
      assert(e instanceof Malformed, `${what}: expected Malformed, got ${e}`);
      assert.match(e.message, /^Cannot read the pairing link: /, what);
      assert.match(e.message, message, what);
      return true;
    });
  }
});

Deno.test("formatPairingLink() refuses non-canonical fields as misuse", () => {
  assert.throws(() => formatPairingLink(sampleLink({ secret: new Uint8Array(31) })), RangeError);
  assert.throws(() => formatPairingLink(sampleLink({ nameplate: "k7m2" })), RangeError);
  assert.throws(
    () => formatPairingLink(sampleLink({ relayUid: RELAY_UID.toUpperCase() })),
    RangeError,
  );
  assert.throws(() => formatPairingLink(sampleLink({ relayUrl: "" })), RangeError);
  assert.throws(() => formatPairingLink(sampleLink({ kind: "pear" as "pair" })), TypeError);
  const long = sampleLink({ relayUrl: "https://x/" + "a".repeat(pairingLinkCharsMax) });
  assert.throws(() => formatPairingLink(long), RangeError);
});

// --- link form: keys, card post, answer MAC, safety code ---

Deno.test("pairingLinkKeys() derives three distinct keys from the secret, independent of the kind", () => {
  const secret = drawPairingSecret(new SeededRandom(1));
  const keys = pairingLinkKeys({ kind: "pair", secret });
  assert.equal(new Set([keys.cardKey, keys.macKey, keys.safetyKey].map(toBase64Url)).size, 3);
  assert.deepEqual(pairingLinkKeys({ kind: "pair", secret }), keys);
  assert.deepEqual(pairingLinkKeys({ kind: "invite", secret }).cardKey, keys.cardKey);
  assert.notDeepEqual(
    pairingLinkKeys({ kind: "pair", secret: new Uint8Array(32) }).cardKey,
    keys.cardKey,
  );
});

Deno.test("openCardPost() opens a card post with the right keys and refuses swapped, tampered or other-kind posts", () => {
  const random = new SeededRandom("post");
  const secret = random.bytes(32);
  const keys = pairingLinkKeys({ kind: "invite", secret });
  const card = sampleCard();
  const post = sealCardPost(card, keys, random);
  assert.deepEqual(openCardPost(post, keys), card);

  const other = pairingLinkKeys({ kind: "invite", secret: random.bytes(32) });
  const swapped = sealCardPost(card, other, random);
  assert.throws(() => openCardPost(swapped, keys), BadCiphertext, "sealed under another secret");
  assert.throws(() => openCardPost(post, other), BadCiphertext, "opened with another secret");
  for (let i = 0; i < post.length; i++) {
    assert.throws(() => openCardPost(flipped(post, i), keys), BadCiphertext, `byte ${i} flipped`);
  }
  assert.throws(() => openCardPost(post.subarray(0, post.length - 1), keys), BadCiphertext);
  assert.throws(() => openCardPost(post.subarray(0, 20), keys), BadCiphertext);
  const pairKeys = pairingLinkKeys({ kind: "pair", secret });
  assert.throws(() => openCardPost(post, pairKeys), BadCiphertext, "a post of the other kind");
  assert.throws(() => openCardPost(sealCardPost(card, pairKeys, random), keys), BadCiphertext);
  assert.throws(() => openCardPost(post, { ...keys, kind: "code" }), BadCiphertext);
});

Deno.test("answerMac() verifies, and fails for a changed answer card, card post or key", () => {
  const random = new SeededRandom("mac");
  const keys = pairingLinkKeys({ kind: "pair", secret: random.bytes(32) });
  const cardPost = sealCardPost(sampleCard("initiator"), keys, random);
  const answerCard = sampleCard("answerer");
  const mac = answerMac(keys, { cardPost, answerCard });
  assert.equal(mac.length, 32);
  assert(verifyAnswerMac(keys, { cardPost, answerCard, mac }));

  assert(!verifyAnswerMac(keys, { cardPost, answerCard: flipped(answerCard, 5), mac }));
  assert(!verifyAnswerMac(keys, { cardPost, answerCard: sampleCard("mallory"), mac }));
  assert(!verifyAnswerMac(keys, { cardPost: flipped(cardPost, 40), answerCard, mac }));
  assert(!verifyAnswerMac(keys, { cardPost, answerCard, mac: flipped(mac, 0) }));
  assert(!verifyAnswerMac(keys, { cardPost, answerCard, mac: mac.subarray(0, 31) }));
  assert(!verifyAnswerMac(keys, { cardPost, answerCard, mac: new Uint8Array(0) }));
  assert(!verifyAnswerMac({ ...keys, kind: "invite" }, { cardPost, answerCard, mac }));
  // Fields that move between the parts must not give the same transcript.
  const shifted = {
    cardPost: concatBytes(cardPost, answerCard.subarray(0, 1)),
    answerCard: answerCard.subarray(1),
  };
  assert(!verifyAnswerMac(keys, { ...shifted, mac }));
  // Someone without the secret (the relay sees the post, not the link) cannot make it.
  const stranger = pairingLinkKeys({ kind: "pair", secret: random.bytes(32) });
  const forged = answerMac(stranger, { cardPost, answerCard: sampleCard("mallory") });
  assert(!verifyAnswerMac(keys, { cardPost, answerCard: sampleCard("mallory"), mac: forged }));
});

Deno.test("safetyCode() is 6 digits, equal for equal transcripts and keys, different otherwise", () => {
  const random = new SeededRandom("safety");
  const secret = random.bytes(32);
  const keys = pairingLinkKeys({ kind: "invite", secret });
  const transcript = {
    cardPost: sealCardPost(sampleCard(), keys, random),
    answerCard: sampleCard("b"),
  };
  const code = safetyCode(keys, transcript);
  assert.match(code, /^\d{6}$/);
  assert.equal(
    safetyCode(pairingLinkKeys({ kind: "invite", secret }), transcript),
    code,
    "the other side",
  );
  assert.notEqual(safetyCode({ ...keys, kind: "pair" }, transcript), code);
  assert.notEqual(
    safetyCode(keys, { ...transcript, cardPost: flipped(transcript.cardPost, 3) }),
    code,
  );
  assert.notEqual(safetyCode(keys, { ...transcript, answerCard: sampleCard("c") }), code);
  const codes = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const k = pairingLinkKeys({ kind: "pair", secret: random.bytes(32) });
    const c = safetyCode(k, transcript);
    assert.match(c, /^\d{6}$/);
    codes.add(c);
  }
  assert(codes.size > 45, "codes spread over the range");
});

Deno.test("the card-in-clear variant shows the relay the card; sealCardPost() does not", () => {
  const random = new SeededRandom("clear");
  const keys = pairingLinkKeys({ kind: "pair", secret: random.bytes(32) });
  const card = sampleCard();
  // A weakened build that posts the card without sealing it.
  const cardInClearPost = (bytes: Uint8Array) => concatBytes(new Uint8Array([1, 1]), bytes);
  assert(containsBytes(cardInClearPost(card), card), "the relay reads the card");
  const post = sealCardPost(card, keys, random);
  assert(!containsBytes(post, card));
  // Nor any 16-byte window of it (a key in the card would be one).
  for (let i = 0; i + 16 <= card.length; i += 8) {
    assert(
      !containsBytes(post, card.subarray(i, i + 16)),
      `card bytes ${i}..${i + 16} in the post`,
    );
  }
});

// --- short-code form: text ---

Deno.test("formatPairingCode() and parsePairingCode() round trip, forgiving case, spaces, dashes and look-alikes", () => {
  assert.equal(formatPairingCode("K7M2", "XQ4P9R3T"), "K7M2-XQ4P-9R3T");
  const expected = { nameplate: "K7M2", password: "XQ4P9R3T" };
  for (const text of ["K7M2-XQ4P-9R3T", "k7m2xq4p9r3t", " k7m2 - xq4p - 9r3t\n", "K7M2XQ4P9R3T"]) {
    assert.deepEqual(parsePairingCode(text), expected, text);
  }
  assert.deepEqual(parsePairingCode("ABO1-IL00-0000"), { nameplate: "AB01", password: "11000000" });
  const password = drawPairingPassword(new SeededRandom(3));
  assert.deepEqual(parsePairingCode(formatPairingCode("0000", password)), {
    nameplate: "0000",
    password,
  });
  assert.throws(() => formatPairingCode("K7M", "XQ4P9R3T"), RangeError);
  assert.throws(() => formatPairingCode("K7M2", "xq4p9r3t"), RangeError);
});

Deno.test("parsePairingCode() says what is wrong with a bad code", () => {
  assertMalformed(
    () => parsePairingCode("K7M2-XQ4P-9R3"),
    /the code has 11 characters, expected 12 \(4 for the mailbox, 8 for the password\)/,
  );
  assertMalformed(() => parsePairingCode(""), /has 0 characters, expected 12/);
  assertMalformed(() => parsePairingCode("K7M2-XQ4P-9R3T-A"), /has 13 characters, expected 12/);
  assertMalformed(
    () => parsePairingCode("K7M2-XQ4P-9R3U"),
    /Cannot read the pairing code: Cannot read "U"/,
  );
  assertMalformed(() => parsePairingCode("K7M2.XQ4P.9R3T"), /Cannot read "\."/);
  assertMalformed(() => parsePairingCode("-".repeat(65)), /65 characters typed, at most 64/);
});

Deno.test("parseNameplate() reads 4 Crockford characters and refuses others", () => {
  assert.equal(parseNameplate("k7mz"), "K7MZ");
  assertMalformed(() => parseNameplate("K7M"), /has 3 characters, expected 4/);
  assertMalformed(() => parseNameplate("K7M2X"), /has 5 characters/);
  assert.throws(() => parseNameplate("K7MU"), Malformed);
});

// --- short-code form: CPace ---

Deno.test("the short-code flow gives both sides equal keys, the card and equal safety codes", () => {
  const { random, initiator, responder } = codeRun("flow");
  assert.equal(initiator.post.length, CODE_A1_BYTES);
  assert.equal(responder.post.length, CODE_B1_BYTES);
  const card = sampleCard();
  const confirmed = codeInitiatorConfirm(initiator.state, responder.post, card, random);
  const finished = codeResponderFinish(responder.state, confirmed.post);
  assert.deepEqual(finished.cardBytes, card);
  assert.deepEqual(finished.keys, confirmed.keys);
  assert.equal(confirmed.keys.kind, "code");
  const transcript = { cardPost: confirmed.post, answerCard: sampleCard("answer") };
  const code = safetyCode(confirmed.keys, transcript);
  assert.match(code, /^\d{6}$/);
  assert.equal(safetyCode(finished.keys, transcript), code);
  const mac = answerMac(finished.keys, transcript);
  assert(verifyAnswerMac(confirmed.keys, { ...transcript, mac }));
  // The code keys are not the link keys of any secret the relay could know.
  assert.notDeepEqual(
    confirmed.keys.cardKey,
    pairingLinkKeys({ kind: "pair", secret: new Uint8Array(32) }).cardKey,
  );
});

Deno.test("codeInitiatorConfirm() detects a wrong password: the guessing relay gets one guess and no card", () => {
  const { random, initiator, responder } = codeRun("guess", "XQ4P9R3V");
  const card = sampleCard();
  assert.throws(
    () => codeInitiatorConfirm(initiator.state, responder.post, card, random),
    (e: unknown) => {
      assert(e instanceof PairingInterfered);
      assert.equal(e.message, "wrong code, or someone interfered");
      return true;
    },
  );
  // The run is spent: a second B1, even the right one, gets no second guess.
  const right = codeResponderStart({ ...SESSION, random, a1: initiator.post });
  assert.throws(() => codeInitiatorConfirm(initiator.state, right.post, card, random), TypeError);
});

Deno.test("codeInitiatorConfirm() throws PairingInterfered for a malformed B1", () => {
  const { random, initiator, responder } = codeRun("b1");
  const card = sampleCard();
  const bad = [
    responder.post.subarray(0, CODE_B1_BYTES - 1),
    concatBytes(responder.post, new Uint8Array(1)),
    flipped(responder.post, 0),
    flipped(responder.post, 1),
    concatBytes(responder.post.subarray(0, 2), new Uint8Array(32), responder.post.subarray(34)),
    flipped(responder.post, 2),
    flipped(responder.post, CODE_B1_BYTES - 1),
    new Uint8Array(0),
  ];
  for (const [i, b1] of bad.entries()) {
    const fresh = codeInitiatorStart({ ...SESSION, random });
    assert.throws(
      () => codeInitiatorConfirm(fresh.state, b1, card, random),
      PairingInterfered,
      `case ${i}`,
    );
  }
  // The untouched B1 still confirms against its own run.
  assert(codeInitiatorConfirm(initiator.state, responder.post, card, random).post.length > 0);
});

Deno.test("codeResponderStart() throws Malformed for a malformed A1", () => {
  const { initiator } = codeRun("a1");
  const random = new SeededRandom(1);
  const bad = [
    initiator.post.subarray(0, CODE_A1_BYTES - 1),
    concatBytes(initiator.post, new Uint8Array(1)),
    flipped(initiator.post, 0),
    flipped(initiator.post, 1),
    concatBytes(initiator.post.subarray(0, 18), new Uint8Array(32)),
    concatBytes(initiator.post.subarray(0, 18), new Uint8Array(32).fill(0xff)),
  ];
  for (const [i, a1] of bad.entries()) {
    assert.throws(() => codeResponderStart({ ...SESSION, random, a1 }), Malformed, `case ${i}`);
  }
});

Deno.test("a relay in the middle with a guessed password fails confirmation on the side it talks to", () => {
  const card = sampleCard();
  const guess = "00000000";
  // Toward the initiator: the relay swaps B1 for its own responder message.
  {
    const random = new SeededRandom("mitm-1");
    const initiator = codeInitiatorStart({ ...SESSION, random });
    const relay = codeResponderStart({ ...SESSION, password: guess, random, a1: initiator.post });
    assert.throws(
      () => codeInitiatorConfirm(initiator.state, relay.post, card, random),
      PairingInterfered,
    );
  }
  // Toward the responder: the relay swaps A1 for its own, then cannot make a valid A2.
  {
    const random = new SeededRandom("mitm-2");
    const relay = codeInitiatorStart({ ...SESSION, password: guess, random });
    const responder = codeResponderStart({ ...SESSION, random, a1: relay.post });
    assert.throws(
      () => codeInitiatorConfirm(relay.state, responder.post, card, random),
      PairingInterfered,
    );
    // Its best A2 is one from another run (it holds no ISK of this one).
    const other = codeRun("mitm-2-other");
    const otherA2 =
      codeInitiatorConfirm(other.initiator.state, other.responder.post, card, random).post;
    assert.throws(() => codeResponderFinish(responder.state, otherA2), PairingInterfered);
  }
  // A relay that only changes the session id in A1 breaks the run too.
  {
    const random = new SeededRandom("mitm-3");
    const initiator = codeInitiatorStart({ ...SESSION, random });
    const responder = codeResponderStart({ ...SESSION, random, a1: flipped(initiator.post, 5) });
    assert.throws(
      () => codeInitiatorConfirm(initiator.state, responder.post, card, random),
      PairingInterfered,
    );
  }
  // Two sides that disagree on the relay (or the nameplate) never agree on a key.
  for (const change of [{ relayUid: "f".repeat(32) }, { nameplate: "K7M3" }]) {
    const random = new SeededRandom("mitm-4");
    const initiator = codeInitiatorStart({ ...SESSION, random });
    const responder = codeResponderStart({ ...SESSION, ...change, random, a1: initiator.post });
    assert.throws(
      () => codeInitiatorConfirm(initiator.state, responder.post, card, random),
      PairingInterfered,
    );
  }
});

Deno.test("codeResponderFinish() throws PairingInterfered for any tampered A2", () => {
  const card = sampleCard();
  const { random, initiator, responder } = codeRun("a2");
  const a2 = codeInitiatorConfirm(initiator.state, responder.post, card, random).post;
  // One state per try: each try spends it.
  const tries: Uint8Array[] = [
    a2.subarray(0, a2.length - 1),
    a2.subarray(0, 66),
    a2.subarray(0, 10),
    concatBytes(a2, new Uint8Array(1)),
  ];
  for (let i = 0; i < a2.length; i += 1) tries.push(flipped(a2, i));
  for (const [i, bad] of tries.entries()) {
    const run = codeRun("a2");
    assert.deepEqual(run.responder.post, responder.post, "the same run again");
    assert.throws(
      () => codeResponderFinish(run.responder.state, bad),
      PairingInterfered,
      `try ${i}`,
    );
  }
  assert.deepEqual(codeResponderFinish(responder.state, a2).cardBytes, card);
  assert.throws(() => codeResponderFinish(responder.state, a2), TypeError, "a spent state");
});

Deno.test("the card leaves the initiator only in A2, sealed, and only after Tb verifies", () => {
  const card = sampleCard();
  const { random, initiator, responder } = codeRun("leave");
  // codeInitiatorStart and codeResponderStart take no card; their posts hold none of it.
  assert.equal(codeInitiatorStart.length, 1);
  assert.equal(codeResponderStart.length, 1);
  for (const post of [initiator.post, responder.post]) {
    for (let i = 0; i + 16 <= card.length; i += 8) {
      assert(!containsBytes(post, card.subarray(i, i + 16)));
    }
  }
  // codeInitiatorConfirm is the only step that sees the card; a refused B1 returns no post.
  const wrong = codeRun("leave", "XQ4P9R3V");
  let leaked: Uint8Array | undefined;
  assert.throws(() => {
    leaked = codeInitiatorConfirm(wrong.initiator.state, wrong.responder.post, card, random).post;
  }, PairingInterfered);
  assert.equal(leaked, undefined);
  const a2 = codeInitiatorConfirm(initiator.state, responder.post, card, random).post;
  assert(!containsBytes(a2, card.subarray(0, 16)));
  for (let i = 0; i + 16 <= card.length; i += 8) {
    assert(!containsBytes(a2, card.subarray(i, i + 16)));
  }
});

/** The code form's keys as pairing.ts derives them, for the weakened build below. */
function weakCodeKeys(isk: Uint8Array): PairingKeys {
  const key = (name: string) =>
    hkdf(sha256, isk, undefined, new TextEncoder().encode(`meowsync pairing code v1 ${name}`), 32);
  return {
    kind: "code",
    cardKey: key("card key"),
    macKey: key("mac key"),
    safetyKey: key("safety key"),
  };
}

/**
 * A weakened build's step 3: no key confirmation. It skips the Tb check, so it
 * never notices a wrong guess, never spends its run, and seals the card for
 * whoever answered.
 */
function confirmWithoutTagCheck(
  state: CodeInitiatorState,
  b1: Uint8Array,
  card: Uint8Array,
  random: SeededRandom,
): Uint8Array {
  const isk = cpaceFinish({
    scalar: state.scalar,
    ownY: state.ya,
    ownAd: new Uint8Array(),
    peerY: b1.subarray(2, 34),
    peerAd: new Uint8Array(),
    sid: state.sid,
    role: "initiator",
  });
  const ta = cpaceConfirmationTag({ isk, sid: state.sid, y: state.ya, ad: new Uint8Array() });
  return concatBytes(new Uint8Array([1, 4]), ta, sealCardPost(card, weakCodeKeys(isk), random));
}

Deno.test("without key confirmation a guessing relay keeps guessing and gets the card; codeInitiatorConfirm() refuses", () => {
  const card = sampleCard();
  const random = new SeededRandom("weak");
  const initiator = codeInitiatorStart({ ...SESSION, random });
  // The relay's guesses; the third is right (a small dictionary, or luck).
  const guesses = ["00000000", "ZZZZZZZZ", SESSION.password];

  // The weakened build answers every guess, and the relay tells right from wrong offline.
  let stolen: Uint8Array | undefined;
  let tries = 0;
  for (const password of guesses) {
    tries++;
    const relay = codeResponderStart({ ...SESSION, password, random, a1: initiator.post });
    const a2 = confirmWithoutTagCheck(initiator.state, relay.post, card, random);
    try {
      stolen = codeResponderFinish(relay.state, a2).cardBytes;
      break;
    } catch (e) {
      assert(e instanceof PairingInterfered);
    }
  }
  assert.deepEqual(stolen, card, "the weakened build hands the card to a guessing relay");
  assert.equal(tries, 3);

  // The real step refuses the first wrong guess, and the run is spent for the rest.
  const real = codeInitiatorStart({ ...SESSION, random });
  const first = codeResponderStart({ ...SESSION, password: guesses[0], random, a1: real.post });
  assert.throws(
    () => codeInitiatorConfirm(real.state, first.post, card, random),
    PairingInterfered,
  );
  for (const password of guesses.slice(1)) {
    const next = codeResponderStart({ ...SESSION, password, random, a1: real.post });
    assert.throws(() => codeInitiatorConfirm(real.state, next.post, card, random), TypeError);
  }
});

Deno.test("the pairing functions are deterministic over a SeededRandom", () => {
  const run = (seed: string) => {
    const random = new SeededRandom(seed);
    const secret = drawPairingSecret(random);
    const password = drawPairingPassword(random);
    const keys = pairingLinkKeys({ kind: "invite", secret });
    const cardPost = sealCardPost(sampleCard(), keys, random);
    const session = { ...SESSION, password };
    const a = codeInitiatorStart({ ...session, random });
    const b = codeResponderStart({ ...session, random, a1: a.post });
    const c = codeInitiatorConfirm(a.state, b.post, sampleCard(), random);
    return [
      secret,
      new TextEncoder().encode(password),
      cardPost,
      a.post,
      b.post,
      c.post,
      c.keys.cardKey,
    ]
      .map(toBase64Url);
  };
  assert.deepEqual(run("same"), run("same"));
  const [x, y] = [run("same"), run("other")];
  for (let i = 0; i < x.length; i++) assert.notEqual(x[i], y[i], `output ${i}`);
});

// --- invitation.ts: the transcript MAC in the answer ---

async function linkInvitation(seed: string) {
  const random = new SeededRandom(seed);
  const options = { random, now: 1, servers: [] };
  const { pending, card } = createInvitation({ ...options, name: "alice" });
  const keys = pairingLinkKeys({ kind: "invite", secret: random.bytes(32) });
  const cardPost = sealCardPost(cardBytes(card), keys, random);
  const opened = decodeCard(openCardPost(cardPost, keys));
  const { answer } = await answerInvitation(opened, {
    ...options,
    name: "bob",
    mac: (answerCard) => answerMac(keys, { cardPost, answerCard }),
  });
  const verifyMac = (answerCard: Uint8Array, mac: Uint8Array) =>
    verifyAnswerMac(keys, { cardPost, answerCard, mac });
  return { random, pending, answer, keys, cardPost, verifyMac };
}

Deno.test("answerInvitation() fills transcript_mac with the MAC over its serialized card", async () => {
  const { pending, answer, keys, cardPost } = await linkInvitation("answer-mac");
  const body = decode(
    InvitationAnswerSchema,
    (await openFrame(pending.myEncryption!.privateKey, answer.payload)).body,
  );
  assert.equal(body.transcriptMac.length, 32);
  assert.deepEqual(
    body.transcriptMac,
    answerMac(keys, { cardPost, answerCard: cardBytes(body.card!) }),
  );
  // Without the option the field stays empty, as before.
  const random = new SeededRandom("no-mac");
  const { pending: p2, card } = createInvitation({ random, now: 1, name: "a", servers: [] });
  const plain = await answerInvitation(card, { random, now: 1, name: "b", servers: [] });
  const plainBody = decode(
    InvitationAnswerSchema,
    (await openFrame(p2.myEncryption!.privateKey, plain.answer.payload)).body,
  );
  assert.equal(plainBody.transcriptMac.length, 0);
  const peer = await finalizeInvitation(p2, plain.answer, { random, now: 2 });
  assert.equal(peer.name, "b");
});

Deno.test("finalizeInvitation() accepts a correct transcript MAC", async () => {
  const { random, pending, answer, verifyMac } = await linkInvitation("finalize-ok");
  const peer = await finalizeInvitation(pending, answer, { random, now: 2, verifyMac });
  assert.equal(peer.name, "bob");
  assert(peer.contact && peer.ratchet.length > 0);
});

Deno.test("finalizeInvitation() throws PairingInterfered for a rejected MAC, before accepting anything", async () => {
  const { random, pending, answer, verifyMac } = await linkInvitation("finalize-bad");
  const before = encode(PeerRecordSchema, pending);
  let seen: Uint8Array[] = [];
  await assert.rejects(
    finalizeInvitation(pending, answer, {
      random,
      now: 2,
      verifyMac: (card, mac) => {
        seen = [card, mac];
        return false;
      },
    }),
    PairingInterfered,
  );
  assert.equal(seen[1].length, 32, "the MAC was handed to verifyMac");
  assert.deepEqual(encode(PeerRecordSchema, pending), before, "the pending record is unchanged");
  // An answer MACed under another secret (someone without the link) is refused too.
  const stranger = await linkInvitation("finalize-stranger");
  const foreign = await answerInvitation(decodeCard(cardBytes(pending.pendingCard!)), {
    random,
    now: 1,
    name: "mallory",
    servers: [],
    mac: (answerCard) => answerMac(stranger.keys, { cardPost: stranger.cardPost, answerCard }),
  });
  await assert.rejects(
    finalizeInvitation(pending, foreign.answer, { random, now: 2, verifyMac }),
    PairingInterfered,
  );
  // An answer with no MAC at all, when one is required.
  const bare = await answerInvitation(decodeCard(cardBytes(pending.pendingCard!)), {
    random,
    now: 1,
    name: "mallory",
    servers: [],
  });
  await assert.rejects(
    finalizeInvitation(pending, bare.answer, { random, now: 2, verifyMac }),
    PairingInterfered,
  );
  assert.deepEqual(encode(PeerRecordSchema, pending), before);
  // The real answer still finalizes afterwards.
  assert.equal(
    (await finalizeInvitation(pending, answer, { random, now: 2, verifyMac })).name,
    "bob",
  );
});

import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { Malformed } from "./errors.ts";
import {
  _cpaceGenerator,
  _cpaceGeneratorString,
  _cpaceIsk,
  _cpaceScalarMultVfy,
  _cpaceStartWithScalar,
  _cpaceTranscriptIr,
  _cpaceTranscriptOc,
  _lvCat,
  _prependLen,
  cpaceConfirmationTag,
  cpaceFinish,
  type CpaceRole,
  cpaceSidOutput,
  cpaceStart,
  cpaceVerifyTag,
} from "./cpace.ts";
import { SeededRandom } from "./random.ts";
import { FixedRandom, flipByte, hex, toHex } from "./_test_util.ts";

const text = (s: string) => new TextEncoder().encode(s);

// draft-irtf-cfrg-cpace-21 (23 April 2026), Appendix B.3 "Test vector for CPace using group
// ristretto255 and hash SHA-512" (B.3.1 to B.3.7, B.3.10, B.3.11).
const V = {
  prs: text("Password"),
  ci: hex("0b415f696e69746961746f720b425f726573706f6e646572"),
  sid: hex("7e4b4791d6a8ef019b936c79fb7f2c57"),
  generatorString: hex(`
    11435061636552697374726574746f3235350850617373776f726464
    00000000000000000000000000000000000000000000000000000000
    00000000000000000000000000000000000000000000000000000000
    00000000000000000000000000000000000000000000000000000000
    00000000000000000000000000000000180b415f696e69746961746f
    720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f
    2c57`),
  generatorHash: hex(`
    da6d3ddc8802fca9058755ffd3ebde08a9c2c74945901a258482a288
    b6663af06bf645c93cd1c51512307199c80e84908916d983b34af772
    05f90851a657ee27`),
  g: hex("222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5698c7e56"),
  ada: text("ADa"),
  ya: hex("da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4ff0976d08"),
  Ya: hex("d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec482b9157"),
  adb: text("ADb"),
  yb: hex("d2316b454718c35362d83d69df6320f38578ed5984651435e2949762d900b80d"),
  Yb: hex("3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f7258"),
  K: hex("80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc9887c8b40f"),
  transcriptIr: hex(`
    20d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0e
    ec482b915703414461203ea7e0b19560d7c0b0f5734f63b955286dfa
    8232b5ebe63324e2d9e7433f725803414462`),
  iskInputIr: hex(`
    15435061636552697374726574746f3235355f49534b107e4b4791d6
    a8ef019b936c79fb7f2c572080b69a8a76457ab6a4d7f887a4bf6b55
    a2f80ac19c333f917a05fc9887c8b40f20d6bac480f2c386c394efc7
    c47adb9925dcd2630b64f240c50f8d0eec482b915703414461203ea7
    e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f
    725803414462`),
  iskIr: hex(`
    b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dc
    ae7b35cd2b38950a39dfd5d4a79164614c2984f7daa460b588c1e80c
    3fa2068af7900447`),
  transcriptOc: hex(`
    6f6320d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f
    8d0eec482b915703414461203ea7e0b19560d7c0b0f5734f63b95528
    6dfa8232b5ebe63324e2d9e7433f725803414462`),
  iskSy: hex(`
    544199d71f62f8d9a1fee55727e24fe4a45844593c2b6013c4fa3969
    d0e5debb2244675c0b43397cbb68d342b01fc0f98fc961469a25134d
    e9f0f813c1a57476`),
  sidOutputIr: hex(`
    bb1c449b35f0ea79a65c209f329a693d475e0ce2387bed9fe4b78f60
    b2a27c219813fb2cfe175ef40d2222d9261e66da7d78f7c55a303b1b
    8611dcdfab880c47`),
  // B.3.10 and B.3.11
  s: hex("7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05"),
  X: hex("2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c"),
  sX: hex("7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e"),
  invalidY1: hex("2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c"),
  identity: new Uint8Array(32),
};

/** 2^255 - 19 little endian: a field element that is not canonical (s >= p). */
const NON_CANONICAL = hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
/** s = 1: canonical but negative (odd), which ristretto255 decoding rejects. */
const NEGATIVE = hex("0100000000000000000000000000000000000000000000000000000000000000");

/** One side's state after its first step. */
interface Side {
  scalar: Uint8Array;
  y: Uint8Array;
  ad: Uint8Array;
}

/** cpaceFinish() for `own` against the message `peer` sent. */
function finish(
  own: Side,
  peer: { y: Uint8Array; ad: Uint8Array },
  role: CpaceRole,
  sid?: Uint8Array,
): Uint8Array {
  return cpaceFinish({
    scalar: own.scalar,
    ownY: own.y,
    ownAd: own.ad,
    peerY: peer.y,
    peerAd: peer.ad,
    sid,
    role,
  });
}

Deno.test("_prependLen() and _lvCat() match the draft's Appendix A.1 vectors", () => {
  assert.equal(toHex(_prependLen(new Uint8Array(0))), "00");
  assert.equal(toHex(_prependLen(text("1234"))), "0431323334");
  const r127 = Uint8Array.from({ length: 127 }, (_, i) => i);
  const r128 = Uint8Array.from({ length: 128 }, (_, i) => i);
  assert.equal(toHex(_prependLen(r127)), "7f" + toHex(r127));
  assert.equal(toHex(_prependLen(r128)), "8001" + toHex(r128));
  assert.equal(toHex(_prependLen(new Uint8Array(300)).subarray(0, 2)), "ac02");
  assert.equal(
    toHex(_lvCat(text("1234"), text("5"), new Uint8Array(0), text("678"))),
    "043132333401350003363738",
  );
});

Deno.test("_cpaceTranscriptIr() and _cpaceTranscriptOc() match the draft's Appendix A.3 vectors", () => {
  const cases: [typeof _cpaceTranscriptIr, string, string, string][] = [
    [_cpaceTranscriptIr, "123", "234", "03313233065061727479410332333406506172747942"],
    [_cpaceTranscriptIr, "3456", "2345", "043334353606506172747941043233343506506172747942"],
    [_cpaceTranscriptOc, "123", "234", "6f6303323334065061727479420331323306506172747941"],
    [_cpaceTranscriptOc, "3456", "2345", "6f63043334353606506172747941043233343506506172747942"],
  ];
  for (const [transcript, ya, yb, expected] of cases) {
    assert.equal(
      toHex(transcript(text(ya), text("PartyA"), text(yb), text("PartyB"))),
      expected,
      `${transcript.name}(${ya}, ${yb})`,
    );
  }
});

Deno.test("_cpaceGeneratorString() and _cpaceGenerator() match the draft's B.3.1 vectors", () => {
  const options = { prs: V.prs, ci: V.ci, sid: V.sid };
  const generatorString = _cpaceGeneratorString(options);
  assert.equal(toHex(generatorString), toHex(V.generatorString));
  assert.equal(generatorString.length, 170);
  assert.equal(
    toHex(createHash("sha512").update(generatorString).digest()),
    toHex(V.generatorHash),
  );
  assert.equal(toHex(_cpaceGenerator(options)), toHex(V.g));
});

Deno.test("_cpaceGeneratorString() pads short passwords to one SHA-512 block and long ones not at all", () => {
  // DSI (18 bytes with its length) + PRS (with its length) + the padding (with its length) = 128.
  for (const length of [0, 1, 8, 100, 108]) {
    const s = _cpaceGeneratorString({ prs: new Uint8Array(length) });
    assert.equal(s.length, 128 + 2, `PRS of ${length} bytes`);
  }
  const long = _cpaceGeneratorString({ prs: new Uint8Array(200) });
  assert.equal(long.length, 18 + 2 + 200 + 1 + 2);
});

Deno.test("_cpaceStartWithScalar() gives the draft's Ya and Yb (B.3.2, B.3.3)", () => {
  const options = { prs: V.prs, ci: V.ci, sid: V.sid };
  const a = _cpaceStartWithScalar({ ...options, scalar: V.ya, ad: V.ada });
  const b = _cpaceStartWithScalar({ ...options, scalar: V.yb, ad: V.adb });
  assert.equal(toHex(a.y), toHex(V.Ya));
  assert.equal(toHex(b.y), toHex(V.Yb));
  assert.deepEqual(a.ad, V.ada);
  assert.deepEqual(a.scalar, V.ya);
});

Deno.test("cpaceStart() samples the scalar the draft's way: 32 bytes, bits above 251 cleared", () => {
  const options = { prs: V.prs, ci: V.ci, sid: V.sid };
  // The draft's ya already has its top four bits clear; setting them shows they are dropped.
  const ya = V.ya.slice();
  ya[31] |= 0xf0;
  const a = cpaceStart({ ...options, random: new FixedRandom(ya), ad: V.ada });
  assert.equal(toHex(a.scalar), toHex(V.ya));
  assert.equal(toHex(a.y), toHex(V.Ya));
  // A zero scalar is drawn again.
  const b = cpaceStart({ ...options, random: new FixedRandom(new Uint8Array(32), V.yb) });
  assert.equal(toHex(b.y), toHex(V.Yb));
  const top = cpaceStart({ prs: V.prs, random: new FixedRandom(new Uint8Array(32).fill(0xff)) });
  assert.equal(top.scalar[31], 0x0f);
});

Deno.test("_cpaceScalarMultVfy() gives the draft's K (B.3.4) and B.3.10, and G.I for B.3.11", () => {
  assert.equal(toHex(_cpaceScalarMultVfy(V.ya, V.Yb)), toHex(V.K));
  assert.equal(toHex(_cpaceScalarMultVfy(V.yb, V.Ya)), toHex(V.K));
  assert.equal(toHex(_cpaceScalarMultVfy(V.s, V.X)), toHex(V.sX));
  for (const bad of [V.invalidY1, V.identity, NON_CANONICAL, NEGATIVE, V.X.subarray(0, 31)]) {
    assert.equal(toHex(_cpaceScalarMultVfy(V.s, bad)), toHex(V.identity), toHex(bad));
  }
});

Deno.test("_cpaceIsk() and cpaceSidOutput() match the draft's B.3.5 to B.3.7", () => {
  assert.equal(toHex(_cpaceTranscriptIr(V.Ya, V.ada, V.Yb, V.adb)), toHex(V.transcriptIr));
  assert.equal(toHex(_cpaceTranscriptOc(V.Ya, V.ada, V.Yb, V.adb)), toHex(V.transcriptOc));
  assert.equal(
    toHex(createHash("sha512").update(V.iskInputIr).digest()),
    toHex(V.iskIr),
    "the draft's own ISK input hashes to its ISK",
  );
  assert.equal(toHex(_cpaceIsk(V.sid, V.K, V.transcriptIr)), toHex(V.iskIr));
  assert.equal(toHex(_cpaceIsk(V.sid, V.K, V.transcriptOc)), toHex(V.iskSy));
  assert.equal(
    toHex(
      cpaceSidOutput({
        initiatorY: V.Ya,
        initiatorAd: V.ada,
        responderY: V.Yb,
        responderAd: V.adb,
      }),
    ),
    toHex(V.sidOutputIr),
  );
});

Deno.test("cpaceFinish() gives the draft's ISK_IR (B.3.5) on both sides", () => {
  const a = { scalar: V.ya, y: V.Ya, ad: V.ada };
  const b = { scalar: V.yb, y: V.Yb, ad: V.adb };
  const initiator = finish(a, b, "initiator", V.sid);
  const responder = finish(b, a, "responder", V.sid);
  assert.equal(toHex(initiator), toHex(V.iskIr));
  assert.equal(toHex(responder), toHex(V.iskIr));
});

interface Run {
  initiator: Uint8Array;
  responder: Uint8Array;
}

/** A full run between two sides with their own inputs; returns both ISKs. */
function run(
  random: SeededRandom,
  a: { prs: Uint8Array; ci?: Uint8Array; sid?: Uint8Array; ad?: Uint8Array },
  b: { prs: Uint8Array; ci?: Uint8Array; sid?: Uint8Array; ad?: Uint8Array },
  tamper: (y: Uint8Array, ad: Uint8Array) => [Uint8Array, Uint8Array] = (y, ad) => [y, ad],
): Run {
  const sa = cpaceStart({ ...a, random });
  const sb = cpaceStart({ ...b, random });
  const [y, ad] = tamper(sa.y, sa.ad);
  return {
    initiator: finish(sa, sb, "initiator", a.sid),
    responder: finish(sb, { y, ad }, "responder", b.sid),
  };
}

Deno.test("cpaceFinish() agrees exactly when password, ci, sid and both messages match", () => {
  const random = new SeededRandom("cpace/agree");
  const prs = text("7KQ2M9XD");
  const same = { prs, ci: text("ci"), sid: text("sid"), ad: text("ad") };
  const ok = run(random, same, same);
  assert.deepEqual(ok.initiator, ok.responder);
  assert.equal(ok.initiator.length, 64);

  const differ = (r: Run, what: string) => assert.notDeepEqual(r.initiator, r.responder, what);
  differ(run(random, same, { ...same, prs: text("7KQ2M9XE") }), "a different password");
  differ(run(random, same, { ...same, ci: text("ck") }), "a different ci");
  differ(run(random, same, { ...same, sid: text("sie") }), "a different sid");
  differ(run(random, same, same, (y) => [y, text("AD")]), "a tampered ad");
  const other = cpaceStart({ ...same, random }).y;
  differ(run(random, same, same, (_, ad) => [other, ad]), "a swapped share");
});

Deno.test("cpaceFinish() gives different keys when both sides claim the same role", () => {
  const random = new SeededRandom("cpace/roles");
  const prs = text("pw");
  const a = cpaceStart({ prs, random, ad: text("a") });
  const b = cpaceStart({ prs, random, ad: text("b") });
  assert.notDeepEqual(finish(a, b, "initiator"), finish(b, a, "initiator"));
});

Deno.test("cpaceFinish() rejects a bad peer share with Malformed, never a noble error", () => {
  const start = _cpaceStartWithScalar({ prs: V.prs, ci: V.ci, sid: V.sid, scalar: V.ya });
  const bad = [
    V.Yb.subarray(0, 31),
    new Uint8Array(33),
    new Uint8Array(0),
    V.invalidY1,
    NON_CANONICAL,
    NEGATIVE,
    V.identity,
    flipByte(V.Yb, 0),
  ];
  for (const peerY of bad) {
    assert.throws(
      () => finish(start, { y: peerY, ad: V.adb }, "initiator", V.sid),
      (e: unknown) => e instanceof Malformed && /peer's share/.test(e.message),
      toHex(peerY),
    );
  }
});

Deno.test("cpaceFinish() and _cpaceStartWithScalar() reject misuse with RangeError and TypeError", () => {
  const a = { scalar: V.ya, y: V.Ya, ad: V.ada };
  const b = { y: V.Yb, ad: V.adb };
  assert.throws(() => finish({ ...a, scalar: V.ya.subarray(1) }, b, "initiator"), RangeError);
  assert.throws(() => finish({ ...a, scalar: new Uint8Array(32) }, b, "initiator"), RangeError);
  const order = hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
  assert.throws(() => finish({ ...a, scalar: order }, b, "initiator"), RangeError);
  assert.throws(() => finish({ ...a, y: V.Ya.subarray(1) }, b, "initiator"), RangeError);
  assert.throws(() => finish(a, b, "symmetric" as CpaceRole), TypeError);
  assert.throws(
    () => _cpaceStartWithScalar({ prs: V.prs, scalar: new Uint8Array(32) }),
    RangeError,
  );
});

Deno.test("cpaceConfirmationTag() is draft section 10.4's HMAC over lv_cat(y, ad)", () => {
  const macKey = createHash("sha512").update(text("CPaceMac")).update(V.sid).update(V.iskIr)
    .digest();
  const ta = createHmac("sha512", macKey).update(_lvCat(V.Ya, V.ada)).digest();
  const tb = createHmac("sha512", macKey).update(_lvCat(V.Yb, V.adb)).digest();
  const a = { isk: V.iskIr, sid: V.sid, y: V.Ya, ad: V.ada };
  const b = { isk: V.iskIr, sid: V.sid, y: V.Yb, ad: V.adb };
  assert.equal(toHex(cpaceConfirmationTag(a)), toHex(ta));
  assert.equal(toHex(cpaceConfirmationTag(b)), toHex(tb));
  assert.equal(cpaceConfirmationTag(a).length, 64);
  assert.throws(() => cpaceConfirmationTag({ ...a, isk: V.iskIr.subarray(1) }), RangeError);
});

Deno.test("cpaceVerifyTag() accepts only the matching ISK, sid and message", () => {
  const random = new SeededRandom("cpace/tags");
  const prs = text("code");
  const sid = random.bytes(16);
  const a = cpaceStart({ prs, sid, random, ad: text("phone") });
  const b = cpaceStart({ prs, sid, random, ad: text("laptop") });
  const iskA = finish(a, b, "initiator", sid);
  const iskB = finish(b, a, "responder", sid);
  const ta = cpaceConfirmationTag({ isk: iskA, sid, y: a.y, ad: a.ad });
  const tb = cpaceConfirmationTag({ isk: iskB, sid, y: b.y, ad: b.ad });
  assert(cpaceVerifyTag({ isk: iskB, sid, y: a.y, ad: a.ad, tag: ta }));
  assert(cpaceVerifyTag({ isk: iskA, sid, y: b.y, ad: b.ad, tag: tb }));
  assert.notDeepEqual(ta, tb);

  // A wrong password gives another ISK, and its tag fails.
  const c = cpaceStart({ prs: text("cod3"), sid, random, ad: text("laptop") });
  const iskC = finish(c, a, "responder", sid);
  const tc = cpaceConfirmationTag({ isk: iskC, sid, y: c.y, ad: c.ad });
  assert(!cpaceVerifyTag({ isk: iskA, sid, y: c.y, ad: c.ad, tag: tc }));

  const good = { isk: iskB, sid, y: a.y, ad: a.ad, tag: ta };
  assert(!cpaceVerifyTag({ ...good, ad: text("phonf") }), "tampered ad");
  assert(!cpaceVerifyTag({ ...good, y: flipByte(a.y, 3) }), "tampered share");
  assert(!cpaceVerifyTag({ ...good, y: b.y, ad: b.ad }), "the other side's message");
  assert(!cpaceVerifyTag({ ...good, sid: random.bytes(16) }), "another sid");
  assert(!cpaceVerifyTag({ ...good, isk: flipByte(iskB, 63) }), "another ISK");
  assert(!cpaceVerifyTag({ ...good, tag: flipByte(ta, 10) }), "tampered tag");
  assert(!cpaceVerifyTag({ ...good, tag: ta.subarray(0, 32) }), "truncated tag");
});

Deno.test("cpaceStart() and cpaceFinish() are deterministic under a seeded Random", () => {
  const once = () => {
    const random = new SeededRandom(1);
    const prs = text("7KQ2M9XD");
    const a = cpaceStart({ prs, random });
    const b = cpaceStart({ prs, random });
    const isk = finish(a, b, "initiator");
    return [a.scalar, a.y, b.scalar, b.y, isk].map(toHex);
  };
  const first = once();
  assert.deepEqual(once(), first);
  assert.notEqual(first[0], first[2], "the two sides draw different scalars");
});

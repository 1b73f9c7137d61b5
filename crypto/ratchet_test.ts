import assert from "node:assert/strict";
import fc from "fast-check";
import { BadCiphertext, Malformed, MeowError, Replay, TooManySkipped } from "./errors.ts";
import {
  decodeRatchetHeader,
  deserializeRatchet,
  encodeRatchetHeader,
  generateEncryptionKeyPair,
  initRatchetInitiator,
  initRatchetResponder,
  MAX_SKIP,
  previousRemoteKeysMax,
  ratchetDecrypt,
  ratchetEncrypt,
  type RatchetState,
  SeededRandom,
  serializeRatchet,
  SKIPPED_KEY_TTL_MS,
  SKIPPED_KEYS_MAX,
} from "./mod.ts";
import { flipByte } from "./_test_util.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Message {
  header: Uint8Array;
  ciphertext: Uint8Array;
  text: string;
}

/** One side of a session, holding its state the way a caller would: replaced after each step. */
class Party {
  constructor(public state: RatchetState, readonly random: SeededRandom) {}

  send(text: string, now = 0): Message {
    const out = ratchetEncrypt(this.state, encoder.encode(text), {
      random: this.random,
      now,
    });
    this.state = out.state;
    return { header: out.header, ciphertext: out.ciphertext, text };
  }

  receive(message: Message, now = 0): string {
    const out = ratchetDecrypt(this.state, message.header, message.ciphertext, {
      random: this.random,
      now,
    });
    this.state = out.state;
    return decoder.decode(out.plaintext);
  }

  /** Persists and restores the state, as a device does between steps. */
  reload(): void {
    this.state = deserializeRatchet(serializeRatchet(this.state));
  }
}

function session(seed: number | string): { alice: Party; bob: Party } {
  const root = new SeededRandom(seed);
  const setup = root.fork("setup");
  const rootKey = setup.bytes(32);
  const ad = setup.bytes(64);
  const bobPair = generateEncryptionKeyPair(setup);
  const aliceRandom = root.fork("alice");
  const alice = initRatchetInitiator({
    rootKey,
    remotePublicKey: bobPair.publicKey,
    ad,
    random: aliceRandom,
  });
  const bob = initRatchetResponder({ rootKey, ownKeyPair: bobPair, ad });
  return { alice: new Party(alice, aliceRandom), bob: new Party(bob, root.fork("bob")) };
}

/** Every ordering of `items`. */
function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest])
  );
}

/** Asserts that receiving `message` throws a MeowError and that `party.state` did not change. */
function assertRejectsUnchanged(
  party: Party,
  message: Message,
  expected: (new (...args: never[]) => MeowError) | typeof MeowError = MeowError,
): void {
  const before = serializeRatchet(party.state);
  const state = party.state;
  assert.throws(() => party.receive(message), expected);
  assert.equal(party.state, state);
  assert.deepEqual(serializeRatchet(state), before);
}

Deno.test("ratchetEncrypt() and ratchetDecrypt() carry messages in order, both ways", () => {
  const { alice, bob } = session("in order");
  for (let turn = 0; turn < 5; turn++) {
    for (let i = 0; i < 3; i++) {
      assert.equal(bob.receive(alice.send(`a${turn}.${i}`)), `a${turn}.${i}`);
    }
    for (let i = 0; i < 2; i++) {
      assert.equal(alice.receive(bob.send(`b${turn}.${i}`)), `b${turn}.${i}`);
    }
  }
  assert.equal(alice.state.skipped.length, 0);
  assert.equal(bob.state.skipped.length, 0);
});

Deno.test("ratchetEncrypt() refuses to send from a responder that has not received yet", () => {
  const { bob } = session("responder");
  assert.throws(() => bob.send("too early"), TypeError);
});

Deno.test("ratchetDecrypt() accepts every permutation of a window of 5 messages in one chain", () => {
  const { alice, bob } = session("window");
  bob.receive(alice.send("hello"));
  alice.receive(bob.send("hi"));
  const window: Message[] = [];
  for (let i = 0; i < 5; i++) window.push(alice.send(`m${i}`));
  const start = bob.state;
  for (const order of permutations(window)) {
    bob.state = start;
    for (const message of order) assert.equal(bob.receive(message), message.text);
    assert.equal(bob.state.skipped.length, 0);
  }
});

Deno.test("ratchetDecrypt() accepts every permutation of 5 messages spanning a DH ratchet step", () => {
  const { alice, bob } = session("window across steps");
  bob.receive(alice.send("hello"));
  const window: Message[] = [alice.send("old0"), alice.send("old1")];
  alice.receive(bob.send("reply")); // Alice steps her ratchet
  window.push(alice.send("new0"), alice.send("new1"), alice.send("new2"));
  assert.notDeepEqual(
    decodeRatchetHeader(window[0].header).publicKey,
    decodeRatchetHeader(window[4].header).publicKey,
  );
  const start = bob.state;
  for (const order of permutations(window)) {
    bob.state = start;
    for (const message of order) assert.equal(bob.receive(message), message.text);
    assert.equal(bob.state.skipped.length, 0);
  }
});

Deno.test("ratchetDecrypt() tolerates lost messages: later ones still decrypt", () => {
  const { alice, bob } = session("lost");
  bob.receive(alice.send("0"));
  alice.send("lost 1");
  alice.send("lost 2");
  assert.equal(bob.receive(alice.send("3")), "3");
  assert.equal(bob.state.skipped.length, 2);
  alice.receive(bob.send("reply"));
  alice.send("lost in new chain");
  assert.equal(bob.receive(alice.send("after")), "after");
  assert.equal(bob.state.skipped.length, 3);
});

Deno.test("ratchetDecrypt() handles both sides sending at once across several ratchet turns", () => {
  const { alice, bob } = session("simultaneous");
  bob.receive(alice.send("open"));
  for (let turn = 0; turn < 6; turn++) {
    const fromAlice = [alice.send(`a${turn}x`), alice.send(`a${turn}y`)];
    const fromBob = [bob.send(`b${turn}x`), bob.send(`b${turn}y`)];
    // Messages cross in flight: each side receives after having sent.
    assert.equal(alice.receive(fromBob[1]), `b${turn}y`);
    assert.equal(bob.receive(fromAlice[0]), `a${turn}x`);
    assert.equal(alice.receive(fromBob[0]), `b${turn}x`);
    assert.equal(bob.receive(fromAlice[1]), `a${turn}y`);
  }
  assert.equal(alice.state.skipped.length, 0);
  assert.equal(bob.state.skipped.length, 0);
});

/**
 * A random conversation: sends by either side, deliveries in any order, losses,
 * duplicates and reloads from storage. Every delivered message decrypts to its
 * text exactly once; a second delivery is a Replay.
 */
Deno.test("ratchetDecrypt() survives random interleavings, losses, replays and reloads", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("send" as const), fromAlice: fc.boolean() }),
    fc.record({ kind: fc.constant("deliver" as const), toAlice: fc.boolean(), pick: fc.nat() }),
    fc.record({ kind: fc.constant("drop" as const), toAlice: fc.boolean(), pick: fc.nat() }),
    fc.record({ kind: fc.constant("replay" as const), toAlice: fc.boolean(), pick: fc.nat() }),
    fc.record({ kind: fc.constant("reload" as const), alice: fc.boolean() }),
  );
  fc.assert(
    fc.property(fc.integer(), fc.array(op, { maxLength: 40 }), (seed, ops) => {
      const { alice, bob } = session(seed);
      const inFlight = { toAlice: [] as Message[], toBob: [] as Message[] };
      const delivered = { toAlice: [] as Message[], toBob: [] as Message[] };
      let count = 0;
      for (const o of ops) {
        if (o.kind === "send") {
          const sender = o.fromAlice ? alice : bob;
          if (sender.state.cks === null) continue;
          const message = sender.send(`message ${count++}`);
          (o.fromAlice ? inFlight.toBob : inFlight.toAlice).push(message);
        } else if (o.kind === "reload") {
          (o.alice ? alice : bob).reload();
        } else {
          const key = o.toAlice ? "toAlice" : "toBob";
          const receiver = o.toAlice ? alice : bob;
          if (o.kind === "replay") {
            const done = delivered[key];
            if (done.length === 0) continue;
            assertRejectsUnchanged(receiver, done[o.pick % done.length], Replay);
            continue;
          }
          const queue = inFlight[key];
          if (queue.length === 0) continue;
          const [message] = queue.splice(o.pick % queue.length, 1);
          if (o.kind === "deliver") {
            assert.equal(receiver.receive(message), message.text);
            delivered[key].push(message);
          }
        }
      }
    }),
    { numRuns: 150 },
  );
});

Deno.test("serializeRatchet() between any two steps yields the same plaintexts and states", () => {
  // Sends and out-of-order deliveries over three ratchet turns.
  const script: [op: "send" | "deliver", text: string][] = [
    ["send", "a1"],
    ["send", "a2"],
    ["deliver", "a2"],
    ["deliver", "a1"],
    ["send", "b1"],
    ["send", "a3"],
    ["deliver", "b1"],
    ["deliver", "a3"],
    ["send", "b2"],
    ["send", "b3"],
    ["deliver", "b3"],
    ["deliver", "b2"],
    ["send", "a4"],
    ["deliver", "a4"],
  ];
  function run(reloadBefore: number): { texts: string[]; states: Uint8Array[] } {
    const { alice, bob } = session("reload");
    const pending = new Map<string, Message>();
    const texts: string[] = [];
    const states: Uint8Array[] = [];
    for (const [step, [op, text]] of script.entries()) {
      if (step === reloadBefore) {
        alice.reload();
        bob.reload();
      }
      const fromAlice = text.startsWith("a");
      if (op === "send") pending.set(text, (fromAlice ? alice : bob).send(text));
      else texts.push((fromAlice ? bob : alice).receive(pending.get(text)!));
      states.push(serializeRatchet(alice.state), serializeRatchet(bob.state));
    }
    return { texts, states };
  }
  const reference = run(-1);
  assert.deepEqual(reference.texts, ["a2", "a1", "b1", "a3", "b3", "b2", "a4"]);
  for (let at = 0; at < script.length; at++) assert.deepEqual(run(at), reference);
});

Deno.test("ratchetDecrypt() rejects any single-byte flip of header or ciphertext and leaves the state unchanged", () => {
  const { alice, bob } = session("flips");
  const first = alice.send("first, with a DH step");
  const skippedOne = alice.send("kept for later");
  const current = alice.send("current chain");
  const cases: [string, Message][] = [["DH step", first]];
  for (const [label, message] of cases) {
    for (let i = 0; i < message.header.length; i++) {
      assertRejectsUnchanged(bob, { ...message, header: flipByte(message.header, i) });
    }
    for (let i = 0; i < message.ciphertext.length; i++) {
      assertRejectsUnchanged(bob, {
        ...message,
        ciphertext: flipByte(message.ciphertext, i),
      });
    }
    assert.equal(bob.receive(message), message.text, label);
  }
  assert.equal(bob.receive(current), current.text);
  // Now `skippedOne` is served from a stored skipped key; then a fresh one from the current chain.
  const next = alice.send("next in chain");
  for (const message of [skippedOne, next]) {
    for (let i = 0; i < message.header.length; i++) {
      assertRejectsUnchanged(bob, { ...message, header: flipByte(message.header, i) });
    }
    for (let i = 0; i < message.ciphertext.length; i++) {
      assertRejectsUnchanged(bob, {
        ...message,
        ciphertext: flipByte(message.ciphertext, i),
      });
    }
    assert.equal(bob.receive(message), message.text);
  }
});

Deno.test("ratchetDecrypt() rejects truncated ciphertexts and wrong-sized headers", () => {
  const { alice, bob } = session("truncated");
  const message = alice.send("hello");
  for (let n = 0; n < message.ciphertext.length; n++) {
    assertRejectsUnchanged(
      bob,
      { ...message, ciphertext: message.ciphertext.subarray(0, n) },
      BadCiphertext,
    );
  }
  for (const n of [0, 1, 40, 42]) {
    const header = new Uint8Array(n);
    header.set(message.header.subarray(0, n));
    assertRejectsUnchanged(bob, { ...message, header }, Malformed);
  }
});

Deno.test("ratchetDecrypt() reports every earlier message delivered again as a Replay", () => {
  const { alice, bob } = session("replay");
  const seen: Message[] = [];
  for (let turn = 0; turn < 4; turn++) {
    for (let i = 0; i < 3; i++) {
      const m = alice.send(`a${turn}.${i}`);
      seen.push(m);
    }
    // Deliver out of order so some keys go through the skipped store.
    bob.receive(seen.at(-1)!);
    bob.receive(seen.at(-3)!);
    bob.receive(seen.at(-2)!);
    alice.receive(bob.send(`b${turn}`));
    for (const old of seen) assertRejectsUnchanged(bob, old, Replay);
  }
  assert.ok(previousRemoteKeysMax >= 4);
});

/**
 * A session where Bob has received Alice's first message and Alice then lost
 * `lost` messages: in Bob's current receiving chain, or (`newChain`) in a new
 * chain she started on hearing Bob's reply.
 */
function afterLoss(lost: number, newChain: boolean): { alice: Party; bob: Party } {
  const { alice, bob } = session(`lost ${lost} ${newChain}`);
  bob.receive(alice.send("0"));
  if (newChain) alice.receive(bob.send("reply"));
  for (let i = 0; i < lost; i++) alice.send("lost");
  return { alice, bob };
}

Deno.test("ratchetDecrypt() refuses a gap larger than MAX_SKIP with TooManySkipped, in the current or a new chain", () => {
  for (const newChain of [false, true]) {
    const over = afterLoss(MAX_SKIP + 1, newChain);
    assertRejectsUnchanged(over.bob, over.alice.send("too far"), TooManySkipped);
    // Exactly MAX_SKIP skipped keys is allowed: one fewer lost message.
    const fits = afterLoss(MAX_SKIP, newChain);
    assert.equal(fits.bob.receive(fits.alice.send("just fits")), "just fits");
    assert.equal(fits.bob.state.skipped.length, MAX_SKIP);
  }
});

Deno.test("ratchetDecrypt() bounds one message's skip, not the stored total, across a DH step too", () => {
  const { alice, bob } = afterLoss(600, false);
  bob.receive(alice.send("601"));
  assert.equal(bob.state.skipped.length, 600);
  alice.receive(bob.send("reply"));
  for (let i = 0; i < 401; i++) alice.send("lost in new chain");
  assert.equal(bob.receive(alice.send("401 more makes 1001")), "401 more makes 1001");
  assert.equal(bob.state.skipped.length, 1001);
});

Deno.test("ratchetDecrypt() never locks a chain on a 1,100-message gap lost in pieces", () => {
  const { alice, bob } = session("pieces");
  bob.receive(alice.send("0"));
  const lost: Message[] = [];
  const gap = 100;
  // Every single skip is 100 (within MAX_SKIP); in all, more than SKIPPED_KEYS_MAX are lost.
  while (lost.length < SKIPPED_KEYS_MAX + 2 * gap) {
    for (let i = 0; i < gap; i++) lost.push(alice.send(`lost ${lost.length}`));
    const delivered = alice.send(`after ${lost.length} lost`);
    assert.equal(bob.receive(delivered), delivered.text);
    assert.equal(bob.state.skipped.length, Math.min(lost.length, SKIPPED_KEYS_MAX));
    if (lost.length === 1100) assert.ok(bob.state.skipped.length > MAX_SKIP);
  }
  // The oldest 200 keys were evicted; the oldest one kept is the next lost message.
  assertRejectsUnchanged(bob, lost[0], Replay);
  assertRejectsUnchanged(bob, lost[2 * gap - 1], Replay);
  assert.equal(bob.receive(lost[2 * gap]), lost[2 * gap].text);
  assert.equal(bob.receive(lost.at(-1)!), lost.at(-1)!.text);
  assert.equal(bob.receive(alice.send("later")), "later");
  assert.equal(alice.receive(bob.send("reply")), "reply");
  assert.equal(bob.receive(alice.send("after a DH step")), "after a DH step");
});

Deno.test("ratchetDecrypt() refuses a single jump past MAX_SKIP unchanged, and heals at the sender's next DH step", () => {
  const { alice, bob } = session("jump");
  bob.receive(alice.send("0"));
  alice.receive(bob.send("reply"));
  bob.receive(alice.send("first of Alice's second chain"));
  const lost: Message[] = [];
  for (let i = 0; i < 1100; i++) lost.push(alice.send(`lost ${i}`));
  assertRejectsUnchanged(bob, alice.send("too far"), TooManySkipped);
  assertRejectsUnchanged(bob, alice.send("still too far"), TooManySkipped);
  // Bob's reply carries his new ratchet key: Alice steps, and her PN is far past Bob's Nr.
  alice.receive(bob.send("are you there?"));
  const healed = alice.send("after Alice's step");
  assert.ok(decodeRatchetHeader(healed.header).pn > bob.state.nr + MAX_SKIP);
  assert.equal(bob.receive(healed), healed.text);
  assert.equal(bob.receive(alice.send("and on")), "and on");
  // Bob kept the MAX_SKIP keys after his Nr and abandoned the rest of that chain.
  assert.equal(bob.state.skipped.length, MAX_SKIP);
  assert.equal(bob.receive(lost[0]), lost[0].text);
  assert.equal(bob.receive(lost[MAX_SKIP - 1]), lost[MAX_SKIP - 1].text);
  assertRejectsUnchanged(bob, lost[MAX_SKIP], Replay);
});

Deno.test("ratchetDecrypt() evicts the oldest stored keys first, expires them, and uses each once", () => {
  const { alice, bob } = session("evict");
  const t0 = 1_000_000;
  bob.receive(alice.send("0"), t0);
  // Two chains of lost messages, the first stored at t0, the second an hour later.
  const first: Message[] = [];
  for (let i = 0; i < MAX_SKIP; i++) first.push(alice.send(`first ${i}`));
  bob.receive(alice.send("ends the first gap"), t0);
  alice.receive(bob.send("reply"), t0);
  const second: Message[] = [];
  for (let i = 0; i < MAX_SKIP; i++) second.push(alice.send(`second ${i}`));
  const t1 = t0 + 3_600_000;
  bob.receive(alice.send("ends the second gap"), t1);
  assert.equal(bob.state.skipped.length, SKIPPED_KEYS_MAX);
  // One more lost message evicts exactly the oldest key: the first chain's first.
  const third = alice.send("one more lost");
  bob.receive(alice.send("ends the third gap"), t1);
  assert.equal(bob.state.skipped.length, SKIPPED_KEYS_MAX);
  assert.deepEqual(bob.state.skipped.map((k) => k.n).slice(0, 2), [2, 3]);
  assertRejectsUnchanged(bob, first[0], Replay);
  assert.equal(bob.receive(first[1], t1), first[1].text);
  // A skipped key is used once.
  assertRejectsUnchanged(bob, first[1], Replay);
  // Past the TTL of the first chain's keys they expire; the later ones remain.
  const late = t0 + SKIPPED_KEY_TTL_MS + 1;
  const before = bob.state;
  assert.throws(() => bob.receive(first[2], late), Replay);
  assert.equal(bob.state, before);
  assert.equal(bob.receive(second[0], late), second[0].text);
  assert.equal(bob.state.skipped.length, MAX_SKIP);
  assert.equal(bob.receive(third, late), third.text);
});

Deno.test("ratchetDecrypt() drops skipped keys older than SKIPPED_KEY_TTL_MS", () => {
  const { alice, bob } = session("ttl");
  const t0 = 1_000_000;
  bob.receive(alice.send("0"), t0);
  const late = alice.send("late");
  const veryLate = alice.send("very late");
  bob.receive(alice.send("3"), t0);
  assert.equal(bob.state.skipped.length, 2);
  // At exactly the TTL the key is still there.
  assert.equal(bob.receive(late, t0 + SKIPPED_KEY_TTL_MS), "late");
  // One millisecond later it has expired: the message can no longer be read.
  const before = bob.state;
  assert.throws(() => bob.receive(veryLate, t0 + SKIPPED_KEY_TTL_MS + 1), Replay);
  assert.equal(bob.state, before);
  // Any successful decrypt after the TTL drops the expired key from the state.
  bob.receive(alice.send("4"), t0 + SKIPPED_KEY_TTL_MS + 1);
  assert.equal(bob.state.skipped.length, 0);
});

Deno.test("ratchetDecrypt() binds the associated data: a session with other ad cannot read", () => {
  const { alice, bob } = session("ad");
  const message = alice.send("bound");
  const other = new Party({ ...bob.state, ad: flipByte(bob.state.ad, 0) }, bob.random);
  assertRejectsUnchanged(other, message, BadCiphertext);
  assert.equal(bob.receive(message), "bound");
});

Deno.test("ratchetDecrypt() never mutates its input state", () => {
  const { alice, bob } = session("pure");
  const m1 = alice.send("1");
  alice.send("2");
  const m3 = alice.send("3");
  const aliceBefore = serializeRatchet(alice.state);
  const bobState = bob.state;
  const bobBefore = serializeRatchet(bobState);
  bob.receive(m3);
  assert.deepEqual(serializeRatchet(bobState), bobBefore);
  const mid = bob.state;
  const midBefore = serializeRatchet(mid);
  bob.receive(m1);
  assert.deepEqual(serializeRatchet(mid), midBefore);
  assert.deepEqual(serializeRatchet(alice.state), aliceBefore);
});

Deno.test("ratchetDecrypt() rejects a header carrying a low-order public key as Malformed", () => {
  const { alice, bob } = session("low order");
  const message = alice.send("x");
  const header = encodeRatchetHeader({ publicKey: new Uint8Array(32), pn: 0, n: 0 });
  assertRejectsUnchanged(bob, { ...message, header }, Malformed);
});

Deno.test("encodeRatchetHeader() and decodeRatchetHeader() round-trip and reject bad input", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.nat({ max: 0xffff_ffff }),
      fc.nat({ max: 0xffff_ffff }),
      (publicKey, pn, n) => {
        const bytes = encodeRatchetHeader({ publicKey, pn, n });
        assert.equal(bytes.length, 41);
        assert.equal(bytes[0], 1);
        assert.deepEqual(decodeRatchetHeader(bytes), { publicKey, pn, n });
      },
    ),
  );
  const good = encodeRatchetHeader({ publicKey: new Uint8Array(32), pn: 1, n: 2 });
  assert.throws(() => decodeRatchetHeader(good.subarray(1)), Malformed);
  assert.throws(() => decodeRatchetHeader(new Uint8Array([...good, 0])), Malformed);
  assert.throws(() => decodeRatchetHeader(flipByte(good, 0)), Malformed);
  assert.throws(
    () => encodeRatchetHeader({ publicKey: new Uint8Array(32), pn: -1, n: 0 }),
    RangeError,
  );
  assert.throws(
    () => encodeRatchetHeader({ publicKey: new Uint8Array(32), pn: 0, n: 2 ** 32 }),
    RangeError,
  );
  assert.throws(
    () => encodeRatchetHeader({ publicKey: new Uint8Array(31), pn: 0, n: 0 }),
    RangeError,
  );
});

Deno.test("serializeRatchet() round-trips exactly, skipped and previous keys included", () => {
  const { alice, bob } = session("serialize");
  const states = [alice.state, bob.state];
  bob.receive(alice.send("0"));
  for (let turn = 0; turn < 3; turn++) {
    alice.send("lost");
    bob.receive(alice.send("after a loss"), 1000 * turn + 0.5);
    alice.receive(bob.send("reply"), -7);
    states.push(alice.state, bob.state);
  }
  assert.ok(bob.state.skipped.length === 3 && bob.state.previousRemoteKeys.length === 2);
  for (const state of states) {
    const bytes = serializeRatchet(state);
    assert.equal(bytes[0], 1);
    const restored = deserializeRatchet(bytes);
    assert.deepEqual(restored, state);
    assert.deepEqual(serializeRatchet(restored), bytes);
  }
  // Compact: each skipped key costs 44 bytes plus 34 per run of one chain.
  const bytes = serializeRatchet(bob.state);
  const without = serializeRatchet({ ...bob.state, skipped: [] });
  assert.equal(bytes.length - without.length, 3 * 44 + 3 * 34);
});

Deno.test("serializeRatchet() round-trips SKIPPED_KEYS_MAX stored keys; deserializeRatchet() refuses more", () => {
  const { alice, bob } = session("full store");
  bob.receive(alice.send("0"));
  const publicKey = bob.state.dhr!;
  const full: RatchetState = {
    ...bob.state,
    skipped: Array.from({ length: SKIPPED_KEYS_MAX }, (_, n) => ({
      publicKey,
      n: n + 1,
      messageKey: new Uint8Array(32).fill(n % 256),
      createdMs: n,
    })),
  };
  const bytes = serializeRatchet(full);
  assert.equal(bytes[0], 1);
  assert.deepEqual(deserializeRatchet(bytes), full);
  // One run holds every key: its u16 count sits just before the keys, 44 bytes each.
  const at = bytes.length - SKIPPED_KEYS_MAX * 44 - 2;
  assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint16(at), SKIPPED_KEYS_MAX);
  const more = new Uint8Array(bytes.length + 44);
  more.set(bytes);
  new DataView(more.buffer).setUint16(at, SKIPPED_KEYS_MAX + 1);
  assert.throws(() => deserializeRatchet(more), Malformed);
  // Two runs that together pass the cap are refused too.
  const split = serializeRatchet({
    ...full,
    skipped: full.skipped.map((k, i) => i < 10 ? { ...k, publicKey: bob.state.dhs.publicKey } : k),
  });
  const splitAt = split.length - (SKIPPED_KEYS_MAX - 10) * 44 - 2;
  assert.equal(new DataView(split.buffer).getUint16(splitAt), SKIPPED_KEYS_MAX - 10);
  const splitMore = new Uint8Array(split.length + 44);
  splitMore.set(split);
  new DataView(splitMore.buffer).setUint16(splitAt, SKIPPED_KEYS_MAX - 9);
  assert.throws(() => deserializeRatchet(splitMore), Malformed);
  const overfull = { ...full, skipped: [...full.skipped, { ...full.skipped[0], n: 0 }] };
  assert.throws(() => serializeRatchet(overfull), RangeError);
});

Deno.test("deserializeRatchet() rejects truncations, trailing bytes and bad versions as Malformed", () => {
  const { alice, bob } = session("malformed");
  alice.send("lost");
  bob.receive(alice.send("1"));
  const bytes = serializeRatchet(bob.state);
  for (let n = 0; n < bytes.length; n++) {
    assert.throws(() => deserializeRatchet(bytes.subarray(0, n)), Malformed);
  }
  assert.throws(() => deserializeRatchet(new Uint8Array([...bytes, 0])), Malformed);
  assert.throws(() => deserializeRatchet(flipByte(bytes, 0)), Malformed);
  const badFlags = bytes.slice();
  badFlags[1] = 0x08;
  assert.throws(() => deserializeRatchet(badFlags), Malformed);
  const ckrWithoutDhr = serializeRatchet(alice.state).slice();
  ckrWithoutDhr[1] = 0x04;
  assert.throws(() => deserializeRatchet(ckrWithoutDhr), Malformed);
  assert.throws(() => deserializeRatchet("nope" as unknown as Uint8Array), Malformed);
});

Deno.test("deserializeRatchet() never throws anything but Malformed on random bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      try {
        const state = deserializeRatchet(bytes);
        assert.deepEqual(serializeRatchet(state), bytes);
      } catch (e) {
        assert.ok(e instanceof Malformed, String(e));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("initRatchetInitiator() and friends are deterministic under a SeededRandom", () => {
  function transcript(seed: string): Uint8Array[] {
    const { alice, bob } = session(seed);
    const out: Uint8Array[] = [serializeRatchet(alice.state), serializeRatchet(bob.state)];
    for (let i = 0; i < 3; i++) {
      const a = alice.send(`a${i}`);
      bob.receive(a);
      const b = bob.send(`b${i}`);
      alice.receive(b);
      out.push(a.header, a.ciphertext, b.header, b.ciphertext);
      out.push(serializeRatchet(alice.state), serializeRatchet(bob.state));
    }
    return out;
  }
  assert.deepEqual(transcript("det"), transcript("det"));
  assert.notDeepEqual(transcript("det"), transcript("other"));
});

Deno.test("initRatchetInitiator() and initRatchetResponder() reject misuse", () => {
  const random = new SeededRandom("misuse");
  const pair = generateEncryptionKeyPair(random);
  assert.throws(
    () =>
      initRatchetInitiator({
        rootKey: new Uint8Array(16),
        remotePublicKey: pair.publicKey,
        ad: new Uint8Array(64),
        random,
      }),
    RangeError,
  );
  assert.throws(
    () =>
      initRatchetInitiator({
        rootKey: new Uint8Array(32),
        remotePublicKey: new Uint8Array(5),
        ad: new Uint8Array(64),
        random,
      }),
    Malformed,
  );
  assert.throws(
    () =>
      initRatchetResponder({
        rootKey: new Uint8Array(32),
        ownKeyPair: pair,
        ad: new Uint8Array(2000),
      }),
    RangeError,
  );
});

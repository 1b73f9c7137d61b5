import assert from "node:assert/strict";
import fc from "fast-check";
import { BadCiphertext, Malformed, MeowError, Replay, TooManySkipped } from "../errors.ts";
import { generateEncryptionKeyPair } from "./keys.ts";
import { SeededRandom } from "./random.ts";
import {
  decodeRatchetHeader,
  deserializeRatchet,
  encodeRatchetHeader,
  initRatchetInitiator,
  initRatchetResponder,
  MAX_SKIP,
  previousRemoteKeysMax,
  ratchetDecrypt,
  ratchetEncrypt,
  type RatchetState,
  serializeRatchet,
  SKIPPED_KEY_TTL_MS,
} from "./ratchet.ts";
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

  async send(text: string, now = 0): Promise<Message> {
    const out = await ratchetEncrypt(this.state, encoder.encode(text), {
      random: this.random,
      now,
    });
    this.state = out.state;
    return { header: out.header, ciphertext: out.ciphertext, text };
  }

  async receive(message: Message, now = 0): Promise<string> {
    const out = await ratchetDecrypt(this.state, message.header, message.ciphertext, {
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

async function session(seed: number | string): Promise<{ alice: Party; bob: Party }> {
  const root = new SeededRandom(seed);
  const setup = root.fork("setup");
  const rootKey = setup.bytes(32);
  const ad = setup.bytes(64);
  const bobPair = generateEncryptionKeyPair(setup);
  const aliceRandom = root.fork("alice");
  const alice = await initRatchetInitiator({
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

/** Asserts that `step` rejects with a MeowError and that `party.state` did not change. */
async function assertRejectsUnchanged(
  party: Party,
  message: Message,
  expected: (new (...args: never[]) => MeowError) | typeof MeowError = MeowError,
): Promise<void> {
  const before = serializeRatchet(party.state);
  const state = party.state;
  await assert.rejects(party.receive(message), expected);
  assert.equal(party.state, state);
  assert.deepEqual(serializeRatchet(state), before);
}

Deno.test("ratchetEncrypt() and ratchetDecrypt() carry messages in order, both ways", async () => {
  const { alice, bob } = await session("in order");
  for (let turn = 0; turn < 5; turn++) {
    for (let i = 0; i < 3; i++) {
      assert.equal(await bob.receive(await alice.send(`a${turn}.${i}`)), `a${turn}.${i}`);
    }
    for (let i = 0; i < 2; i++) {
      assert.equal(await alice.receive(await bob.send(`b${turn}.${i}`)), `b${turn}.${i}`);
    }
  }
  assert.equal(alice.state.skipped.length, 0);
  assert.equal(bob.state.skipped.length, 0);
});

Deno.test("ratchetEncrypt() refuses to send from a responder that has not received yet", async () => {
  const { bob } = await session("responder");
  await assert.rejects(bob.send("too early"), TypeError);
});

Deno.test("ratchetDecrypt() accepts every permutation of a window of 5 messages in one chain", async () => {
  const { alice, bob } = await session("window");
  await bob.receive(await alice.send("hello"));
  await alice.receive(await bob.send("hi"));
  const window: Message[] = [];
  for (let i = 0; i < 5; i++) window.push(await alice.send(`m${i}`));
  const start = bob.state;
  for (const order of permutations(window)) {
    bob.state = start;
    for (const message of order) assert.equal(await bob.receive(message), message.text);
    assert.equal(bob.state.skipped.length, 0);
  }
});

Deno.test("ratchetDecrypt() accepts every permutation of 5 messages spanning a DH ratchet step", async () => {
  const { alice, bob } = await session("window across steps");
  await bob.receive(await alice.send("hello"));
  const window: Message[] = [await alice.send("old0"), await alice.send("old1")];
  await alice.receive(await bob.send("reply")); // Alice steps her ratchet
  window.push(await alice.send("new0"), await alice.send("new1"), await alice.send("new2"));
  assert.notDeepEqual(
    decodeRatchetHeader(window[0].header).publicKey,
    decodeRatchetHeader(window[4].header).publicKey,
  );
  const start = bob.state;
  for (const order of permutations(window)) {
    bob.state = start;
    for (const message of order) assert.equal(await bob.receive(message), message.text);
    assert.equal(bob.state.skipped.length, 0);
  }
});

Deno.test("ratchetDecrypt() tolerates lost messages: later ones still decrypt", async () => {
  const { alice, bob } = await session("lost");
  await bob.receive(await alice.send("0"));
  await alice.send("lost 1");
  await alice.send("lost 2");
  assert.equal(await bob.receive(await alice.send("3")), "3");
  assert.equal(bob.state.skipped.length, 2);
  await alice.receive(await bob.send("reply"));
  await alice.send("lost in new chain");
  assert.equal(await bob.receive(await alice.send("after")), "after");
  assert.equal(bob.state.skipped.length, 3);
});

Deno.test("ratchetDecrypt() handles both sides sending at once across several ratchet turns", async () => {
  const { alice, bob } = await session("simultaneous");
  await bob.receive(await alice.send("open"));
  for (let turn = 0; turn < 6; turn++) {
    const fromAlice = [await alice.send(`a${turn}x`), await alice.send(`a${turn}y`)];
    const fromBob = [await bob.send(`b${turn}x`), await bob.send(`b${turn}y`)];
    // Messages cross in flight: each side receives after having sent.
    assert.equal(await alice.receive(fromBob[1]), `b${turn}y`);
    assert.equal(await bob.receive(fromAlice[0]), `a${turn}x`);
    assert.equal(await alice.receive(fromBob[0]), `b${turn}x`);
    assert.equal(await bob.receive(fromAlice[1]), `a${turn}y`);
  }
  assert.equal(alice.state.skipped.length, 0);
  assert.equal(bob.state.skipped.length, 0);
});

/**
 * A random conversation: sends by either side, deliveries in any order, losses,
 * duplicates and reloads from storage. Every delivered message decrypts to its
 * text exactly once; a second delivery is a Replay.
 */
Deno.test("ratchetDecrypt() survives random interleavings, losses, replays and reloads", async () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("send" as const), fromAlice: fc.boolean() }),
    fc.record({ kind: fc.constant("deliver" as const), toAlice: fc.boolean(), pick: fc.nat() }),
    fc.record({ kind: fc.constant("drop" as const), toAlice: fc.boolean(), pick: fc.nat() }),
    fc.record({ kind: fc.constant("replay" as const), toAlice: fc.boolean(), pick: fc.nat() }),
    fc.record({ kind: fc.constant("reload" as const), alice: fc.boolean() }),
  );
  await fc.assert(
    fc.asyncProperty(fc.integer(), fc.array(op, { maxLength: 40 }), async (seed, ops) => {
      const { alice, bob } = await session(seed);
      const inFlight = { toAlice: [] as Message[], toBob: [] as Message[] };
      const delivered = { toAlice: [] as Message[], toBob: [] as Message[] };
      let count = 0;
      for (const o of ops) {
        if (o.kind === "send") {
          const sender = o.fromAlice ? alice : bob;
          if (sender.state.cks === null) continue;
          const message = await sender.send(`message ${count++}`);
          (o.fromAlice ? inFlight.toBob : inFlight.toAlice).push(message);
        } else if (o.kind === "reload") {
          (o.alice ? alice : bob).reload();
        } else {
          const key = o.toAlice ? "toAlice" : "toBob";
          const receiver = o.toAlice ? alice : bob;
          if (o.kind === "replay") {
            const done = delivered[key];
            if (done.length === 0) continue;
            await assertRejectsUnchanged(receiver, done[o.pick % done.length], Replay);
            continue;
          }
          const queue = inFlight[key];
          if (queue.length === 0) continue;
          const [message] = queue.splice(o.pick % queue.length, 1);
          if (o.kind === "deliver") {
            assert.equal(await receiver.receive(message), message.text);
            delivered[key].push(message);
          }
        }
      }
    }),
    { numRuns: 150 },
  );
});

Deno.test("serializeRatchet() between any two steps yields the same plaintexts and states", async () => {
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
  async function run(reloadBefore: number): Promise<{ texts: string[]; states: Uint8Array[] }> {
    const { alice, bob } = await session("reload");
    const pending = new Map<string, Message>();
    const texts: string[] = [];
    const states: Uint8Array[] = [];
    for (const [step, [op, text]] of script.entries()) {
      if (step === reloadBefore) {
        alice.reload();
        bob.reload();
      }
      const fromAlice = text.startsWith("a");
      if (op === "send") pending.set(text, await (fromAlice ? alice : bob).send(text));
      else texts.push(await (fromAlice ? bob : alice).receive(pending.get(text)!));
      states.push(serializeRatchet(alice.state), serializeRatchet(bob.state));
    }
    return { texts, states };
  }
  const reference = await run(-1);
  assert.deepEqual(reference.texts, ["a2", "a1", "b1", "a3", "b3", "b2", "a4"]);
  for (let at = 0; at < script.length; at++) assert.deepEqual(await run(at), reference);
});

Deno.test("ratchetDecrypt() rejects any single-byte flip of header or ciphertext and leaves the state unchanged", async () => {
  const { alice, bob } = await session("flips");
  const first = await alice.send("first, with a DH step");
  const skippedOne = await alice.send("kept for later");
  const current = await alice.send("current chain");
  const cases: [string, Message][] = [["DH step", first]];
  for (const [label, message] of cases) {
    for (let i = 0; i < message.header.length; i++) {
      await assertRejectsUnchanged(bob, { ...message, header: flipByte(message.header, i) });
    }
    for (let i = 0; i < message.ciphertext.length; i++) {
      await assertRejectsUnchanged(bob, {
        ...message,
        ciphertext: flipByte(message.ciphertext, i),
      });
    }
    assert.equal(await bob.receive(message), message.text, label);
  }
  assert.equal(await bob.receive(current), current.text);
  // Now `skippedOne` is served from a stored skipped key; then a fresh one from the current chain.
  const next = await alice.send("next in chain");
  for (const message of [skippedOne, next]) {
    for (let i = 0; i < message.header.length; i++) {
      await assertRejectsUnchanged(bob, { ...message, header: flipByte(message.header, i) });
    }
    for (let i = 0; i < message.ciphertext.length; i++) {
      await assertRejectsUnchanged(bob, {
        ...message,
        ciphertext: flipByte(message.ciphertext, i),
      });
    }
    assert.equal(await bob.receive(message), message.text);
  }
});

Deno.test("ratchetDecrypt() rejects truncated ciphertexts and wrong-sized headers", async () => {
  const { alice, bob } = await session("truncated");
  const message = await alice.send("hello");
  for (let n = 0; n < message.ciphertext.length; n++) {
    await assertRejectsUnchanged(
      bob,
      { ...message, ciphertext: message.ciphertext.subarray(0, n) },
      BadCiphertext,
    );
  }
  for (const n of [0, 1, 40, 42]) {
    const header = new Uint8Array(n);
    header.set(message.header.subarray(0, n));
    await assertRejectsUnchanged(bob, { ...message, header }, Malformed);
  }
});

Deno.test("ratchetDecrypt() reports every earlier message delivered again as a Replay", async () => {
  const { alice, bob } = await session("replay");
  const seen: Message[] = [];
  for (let turn = 0; turn < 4; turn++) {
    for (let i = 0; i < 3; i++) {
      const m = await alice.send(`a${turn}.${i}`);
      seen.push(m);
    }
    // Deliver out of order so some keys go through the skipped store.
    await bob.receive(seen.at(-1)!);
    await bob.receive(seen.at(-3)!);
    await bob.receive(seen.at(-2)!);
    await alice.receive(await bob.send(`b${turn}`));
    for (const old of seen) await assertRejectsUnchanged(bob, old, Replay);
  }
  assert.ok(previousRemoteKeysMax >= 4);
});

Deno.test("ratchetDecrypt() refuses a gap larger than MAX_SKIP with TooManySkipped", async () => {
  const { alice, bob } = await session("gap");
  await bob.receive(await alice.send("0"));
  for (let i = 0; i < MAX_SKIP + 1; i++) await alice.send("lost");
  const tooFar = await alice.send("too far");
  await assertRejectsUnchanged(bob, tooFar, TooManySkipped);
  // Exactly MAX_SKIP skipped keys is allowed: one fewer lost message.
  const { alice: alice2, bob: bob2 } = await session("gap");
  await bob2.receive(await alice2.send("0"));
  for (let i = 0; i < MAX_SKIP; i++) await alice2.send("lost");
  assert.equal(await bob2.receive(await alice2.send("just fits")), "just fits");
  assert.equal(bob2.state.skipped.length, MAX_SKIP);
});

Deno.test("ratchetDecrypt() counts stored skipped keys towards MAX_SKIP, across a DH step too", async () => {
  const { alice, bob } = await session("stored");
  await bob.receive(await alice.send("0"));
  for (let i = 0; i < 600; i++) await alice.send("lost");
  await bob.receive(await alice.send("601"));
  assert.equal(bob.state.skipped.length, 600);
  await alice.receive(await bob.send("reply"));
  for (let i = 0; i < 401; i++) await alice.send("lost in new chain");
  const over = await alice.send("401 more would make 1001");
  await assertRejectsUnchanged(bob, over, TooManySkipped);
  assert.equal(bob.state.skipped.length, 600);
  // After one skipped key is consumed there is room again.
  const { alice: a2, bob: b2 } = await session("stored");
  await b2.receive(await a2.send("0"));
  const late = await a2.send("late");
  for (let i = 0; i < 599; i++) await a2.send("lost");
  await b2.receive(await a2.send("601"));
  await b2.receive(late);
  await a2.receive(await b2.send("reply"));
  for (let i = 0; i < 401; i++) await a2.send("lost in new chain");
  assert.equal(await b2.receive(await a2.send("fits")), "fits");
  assert.equal(b2.state.skipped.length, MAX_SKIP);
});

Deno.test("ratchetDecrypt() drops skipped keys older than SKIPPED_KEY_TTL_MS", async () => {
  const { alice, bob } = await session("ttl");
  const t0 = 1_000_000;
  await bob.receive(await alice.send("0"), t0);
  const late = await alice.send("late");
  const veryLate = await alice.send("very late");
  await bob.receive(await alice.send("3"), t0);
  assert.equal(bob.state.skipped.length, 2);
  // At exactly the TTL the key is still there.
  assert.equal(await bob.receive(late, t0 + SKIPPED_KEY_TTL_MS), "late");
  // One millisecond later it has expired: the message can no longer be read.
  const before = bob.state;
  await assert.rejects(bob.receive(veryLate, t0 + SKIPPED_KEY_TTL_MS + 1), Replay);
  assert.equal(bob.state, before);
  // Any successful decrypt after the TTL drops the expired key from the state.
  await bob.receive(await alice.send("4"), t0 + SKIPPED_KEY_TTL_MS + 1);
  assert.equal(bob.state.skipped.length, 0);
});

Deno.test("ratchetDecrypt() binds the associated data: a session with other ad cannot read", async () => {
  const { alice, bob } = await session("ad");
  const message = await alice.send("bound");
  const other = new Party({ ...bob.state, ad: flipByte(bob.state.ad, 0) }, bob.random);
  await assertRejectsUnchanged(other, message, BadCiphertext);
  assert.equal(await bob.receive(message), "bound");
});

Deno.test("ratchetDecrypt() never mutates its input state", async () => {
  const { alice, bob } = await session("pure");
  const m1 = await alice.send("1");
  await alice.send("2");
  const m3 = await alice.send("3");
  const aliceBefore = serializeRatchet(alice.state);
  const bobState = bob.state;
  const bobBefore = serializeRatchet(bobState);
  await bob.receive(m3);
  assert.deepEqual(serializeRatchet(bobState), bobBefore);
  const mid = bob.state;
  const midBefore = serializeRatchet(mid);
  await bob.receive(m1);
  assert.deepEqual(serializeRatchet(mid), midBefore);
  assert.deepEqual(serializeRatchet(alice.state), aliceBefore);
});

Deno.test("ratchetDecrypt() rejects a header carrying a low-order public key as Malformed", async () => {
  const { alice, bob } = await session("low order");
  const message = await alice.send("x");
  const header = encodeRatchetHeader({ publicKey: new Uint8Array(32), pn: 0, n: 0 });
  await assertRejectsUnchanged(bob, { ...message, header }, Malformed);
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

Deno.test("serializeRatchet() round-trips exactly, skipped and previous keys included", async () => {
  const { alice, bob } = await session("serialize");
  const states = [alice.state, bob.state];
  await bob.receive(await alice.send("0"));
  for (let turn = 0; turn < 3; turn++) {
    await alice.send("lost");
    await bob.receive(await alice.send("after a loss"), 1000 * turn + 0.5);
    await alice.receive(await bob.send("reply"), -7);
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

Deno.test("deserializeRatchet() rejects truncations, trailing bytes and bad versions as Malformed", async () => {
  const { alice, bob } = await session("malformed");
  await alice.send("lost");
  await bob.receive(await alice.send("1"));
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

Deno.test("initRatchetInitiator() and friends are deterministic under a SeededRandom", async () => {
  async function transcript(seed: string): Promise<Uint8Array[]> {
    const { alice, bob } = await session(seed);
    const out: Uint8Array[] = [serializeRatchet(alice.state), serializeRatchet(bob.state)];
    for (let i = 0; i < 3; i++) {
      const a = await alice.send(`a${i}`);
      await bob.receive(a);
      const b = await bob.send(`b${i}`);
      await alice.receive(b);
      out.push(a.header, a.ciphertext, b.header, b.ciphertext);
      out.push(serializeRatchet(alice.state), serializeRatchet(bob.state));
    }
    return out;
  }
  assert.deepEqual(await transcript("det"), await transcript("det"));
  assert.notDeepEqual(await transcript("det"), await transcript("other"));
});

Deno.test("initRatchetInitiator() and initRatchetResponder() reject misuse", async () => {
  const random = new SeededRandom("misuse");
  const pair = generateEncryptionKeyPair(random);
  await assert.rejects(
    initRatchetInitiator({
      rootKey: new Uint8Array(16),
      remotePublicKey: pair.publicKey,
      ad: new Uint8Array(64),
      random,
    }),
    RangeError,
  );
  await assert.rejects(
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

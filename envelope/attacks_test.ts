/**
 * Attacks on the device ↔ relay transport. Each runs twice: against a deliberately weakened
 * envelope written here (v1 without its envelope signature: the payload sealed to the relay's
 * static key, `from` an unauthenticated "answer to this key" beside it, answers sealed to that
 * key with no request named, pulls not bound to their request), where it must succeed, and
 * against the real v2 envelope and relay core, where it must fail.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  concatBytes,
  fromBase64Url,
  generateEncryptionKeyPair,
  generateLookupKeyPair,
  type KeyPair,
  open,
  publicKeyOperations,
  type Random,
  seal,
  SeededRandom,
  sign,
  toBase64Url,
  verify,
} from "../crypto/mod.ts";
import { BadCiphertext, Malformed, Replay } from "../kernel/errors.ts";
import { decode, encode } from "../proto/codec.ts";
import {
  type ConversationRequest,
  ConversationRequestSchema,
  ErrorCode,
  type FromServerMessage,
  FromServerMessageSchema,
  PackedServerMessageSchema,
  type PackedUserMessage,
  type ServerCard,
  ServerCardSchema,
  ServerErrorSchema,
  type ToServerMessage,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { text } from "../tests/support/relay.ts";
import { openRelayExchange } from "./request.ts";
import { openRelayRequest, sealRelayAnswer } from "./relay.ts";
import { signPull } from "./pull.ts";
import { testRelay } from "./_test_relay.ts";

// ─── The weakened variant ────────────────────────────────────────────────────

const encoder = new TextEncoder();

/** A request sealed to the relay's static key; `answerTo` rides beside it, unauthenticated. */
async function weakSeal(
  server: ServerCard,
  answerTo: Uint8Array,
  request: ToServerMessage,
  random: Random,
): Promise<Uint8Array> {
  const payload = await seal(
    server.encryptionPublicKey,
    encode(ToServerMessageSchema, request),
    random,
  );
  return encode(
    PackedServerMessageSchema,
    create(PackedServerMessageSchema, { from: answerTo, payload }),
  );
}

/** Opens an answer sealed to the device's static key; which request it answers is not checked. */
async function weakOpen(device: KeyPair, body: Uint8Array): Promise<FromServerMessage> {
  const envelope = decode(PackedServerMessageSchema, body);
  return decode(FromServerMessageSchema, await open(device.privateKey, envelope.payload));
}

/** A pull signed over relay uid ‖ lookup key ‖ timestamp: good in any request. */
async function weakPull(
  server: ServerCard,
  lookup: KeyPair,
  now: number,
): Promise<ConversationRequest> {
  const lookupKey = toBase64Url(lookup.publicKey);
  const signed = concatBytes(
    encoder.encode(server.uid),
    encoder.encode(lookupKey),
    encoder.encode(String(now)),
  );
  return create(ConversationRequestSchema, {
    lookupKey,
    sendTimestamp: now,
    lookupSignature: await sign(lookup.privateKey, signed),
  });
}

/** A relay for the weakened envelope: queues, single-use pull signatures, answers to `from`. */
class WeakRelay {
  readonly keys: KeyPair;
  readonly card: ServerCard;
  readonly queues = new Map<string, PackedUserMessage[]>();
  readonly #used = new Set<string>();

  constructor(readonly random: Random) {
    this.keys = generateEncryptionKeyPair(random);
    this.card = create(ServerCardSchema, { uid: "weak", encryptionPublicKey: this.keys.publicKey });
  }

  async handle(body: Uint8Array): Promise<Uint8Array> {
    const envelope = decode(PackedServerMessageSchema, body);
    const request = decode(
      ToServerMessageSchema,
      await open(this.keys.privateKey, envelope.payload),
    );
    const answer = create(FromServerMessageSchema, { uuidAck: request.uuid });
    for (const message of request.messages) {
      this.queues.set(message.destination, [
        ...(this.queues.get(message.destination) ?? []),
        message,
      ]);
      answer.stored++;
    }
    for (const pull of request.pullRequests) {
      const signed = concatBytes(
        encoder.encode(this.card.uid),
        encoder.encode(pull.lookupKey),
        encoder.encode(String(pull.sendTimestamp)),
      );
      const id = toBase64Url(pull.lookupSignature);
      if (
        !(await verify(fromBase64Url(pull.lookupKey), signed, pull.lookupSignature)) ||
        this.#used.has(id)
      ) {
        answer.errors.push(create(ServerErrorSchema, { code: ErrorCode.BAD_LOOKUP_SIGNATURE }));
        continue;
      }
      this.#used.add(id);
      answer.chat.push(...(this.queues.get(pull.lookupKey) ?? []));
    }
    const sealed = await seal(envelope.from, encode(FromServerMessageSchema, answer), this.random);
    return encode(
      PackedServerMessageSchema,
      create(PackedServerMessageSchema, { payload: sealed }),
    );
  }
}

/** A weak relay whose queue for Bob holds "secret", Bob's static key and lookup key. */
async function weakWorld() {
  const random = new SeededRandom(21);
  const relay = new WeakRelay(random.fork("relay"));
  const bob = { key: generateEncryptionKeyPair(random), lookup: generateLookupKeyPair(random) };
  const queue = toBase64Url(bob.lookup.publicKey);
  const store = create(ToServerMessageSchema, {
    uuid: "store",
    messages: [{ destination: queue, payload: encoder.encode("secret") }],
  });
  const alice = generateEncryptionKeyPair(random);
  await relay.handle(await weakSeal(relay.card, alice.publicKey, store, random));
  return { random, relay, bob, queue };
}

/** A real relay whose queue for Bob holds "secret". */
async function realWorld() {
  const relay = await testRelay(22);
  const alice = relay.device();
  const bob = relay.device();
  const stored = await alice.request({ messages: [alice.message(bob.queue, "secret")] });
  assert.equal(stored.stored, 1);
  return { ...relay, alice, bob };
}

/** The envelope `body` with its `from` replaced by `from`. */
function rewrap(body: Uint8Array, from: Uint8Array): Uint8Array {
  const envelope = decode(PackedServerMessageSchema, body);
  envelope.from = from;
  return encode(PackedServerMessageSchema, envelope);
}

// ─── Re-wrapped request ──────────────────────────────────────────────────────

Deno.test("attack: a re-wrapped request reads Bob's queue through the weakened envelope", async () => {
  const { random, relay, bob } = await weakWorld();
  const request = create(ToServerMessageSchema, {
    uuid: "bob",
    pullRequests: [await weakPull(relay.card, bob.lookup, 1)],
  });
  const captured = await weakSeal(relay.card, bob.key.publicKey, request, random);
  const mallory = generateEncryptionKeyPair(random);
  const answer = await weakOpen(mallory, await relay.handle(rewrap(captured, mallory.publicKey)));
  assert.deepEqual(answer.chat.map(text), ["secret"], "the weakened envelope leaks the queue");
});

Deno.test("attack: a re-wrapped request learns nothing through v2 and burns nothing", async () => {
  const { core, data, bob, random } = await realWorld();
  const { body: captured, exchange: bobs } = await bob.seal({ pullRequests: [await bob.pull()] });
  const mallory = await openRelayExchange({ server: core.card(), random });
  mallory.seal(create(ToServerMessageSchema, { uuid: "mallory" }));
  const answer = await core.handle(rewrap(captured, mallory.binding));
  // Under Mallory's key the relay cannot open the payload: a MALFORMED refusal is all she reads.
  assert.throws(
    () => mallory.open(answer),
    (e) => e instanceof Malformed && /MALFORMED \(cannot open the request/.test(e.message),
  );
  assert.equal(data.queues.get(bob.queue)?.size, 1, "the queue is untouched");
  assert.equal(data.signatures.size, 0, "Bob's pull signature was not used");
  const own = bobs.open(await core.handle(captured));
  assert.deepEqual(own.chat.map(text), ["secret"], "Bob's own request still works");
});

// ─── Replayed answer ─────────────────────────────────────────────────────────

Deno.test("attack: an old answer is accepted for a later request through the weakened envelope", async () => {
  const { random, relay, bob, queue } = await weakWorld();
  const send = (uuid: string, words: string) =>
    weakSeal(
      relay.card,
      bob.key.publicKey,
      create(ToServerMessageSchema, {
        uuid,
        messages: [{ destination: queue, payload: encoder.encode(words) }],
      }),
      random,
    );
  const old = await relay.handle(await send("first", "one"));
  await send("second", "two"); // dropped on the way; the attacker hands back the old answer
  const answer = await weakOpen(bob.key, old);
  assert.equal(answer.stored, 1, "the device would drop its unsent outbox entry");
  assert.equal(answer.uuidAck, "first");
});

Deno.test("attack: an old answer opens for no later request through v2", async () => {
  const { core, keys, alice, bob, random } = await realWorld();
  const first = await alice.seal({ uuid: "first", messages: [alice.message(bob.queue, "one")] });
  const old = await core.handle(first.body);
  assert.equal(first.exchange.open(old).stored, 1);
  const second = await alice.seal({ uuid: "second", messages: [alice.message(bob.queue, "two")] });
  assert.throws(() => second.exchange.open(old), BadCiphertext);
  // Even an answer under the right key is refused when it names another request.
  const { answerKey } = await openRelayRequest({ keys, body: second.body });
  const relabelled = create(FromServerMessageSchema, { uuidAck: "first", stored: 1 });
  assert.throws(
    () => second.exchange.open(sealRelayAnswer({ answerKey, answer: relabelled, random })),
    Replay,
  );
});

// ─── Replayed or re-wrapped pull ─────────────────────────────────────────────

Deno.test("attack: a pull lifted into another request reads the queue through the weakened envelope", async () => {
  const { random, relay, bob } = await weakWorld();
  const lifted = await weakPull(relay.card, bob.lookup, 7); // from a request that never arrives
  const mallory = generateEncryptionKeyPair(random);
  const request = create(ToServerMessageSchema, { uuid: "mallory", pullRequests: [lifted] });
  const answer = await weakOpen(
    mallory,
    await relay.handle(await weakSeal(relay.card, mallory.publicKey, request, random)),
  );
  assert.deepEqual(answer.chat.map(text), ["secret"]);
});

Deno.test("attack: a pull lifted into another request is refused by v2, and stays good in its own", async () => {
  const { core, data, device, bob } = await realWorld();
  const lifted = await bob.pull(); // signed for Bob's next request
  const mallory = device();
  const answer = await mallory.request({ pullRequests: [lifted] });
  assert.deepEqual(answer.chat, []);
  assert.equal(answer.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.equal(data.signatures.size, 0, "a refused pull burns nothing");
  // Replayed inside a copy of Bob's own request, the pull is good once.
  const { body, exchange } = await bob.seal({ pullRequests: [lifted] });
  assert.deepEqual(exchange.open(await core.handle(body)).chat.map(text), ["secret"]);
  const again = exchange.open(await core.handle(body));
  assert.equal(again.errors[0].code, ErrorCode.BAD_LOOKUP_SIGNATURE);
  assert.deepEqual(again.chat, []);
});

// ─── Cost ────────────────────────────────────────────────────────────────────

Deno.test("v2 envelope costs the device one key generation and one X25519, the relay one X25519", async () => {
  const { core, bob } = await realWorld();
  const delta = (before: ReturnType<typeof publicKeyOperations>) => {
    const after = publicKeyOperations();
    return Object.fromEntries(
      Object.entries(after).map(([kind, n]) => [kind, n - before[kind as keyof typeof before]]),
    );
  };
  const none = { keyGeneration: 0, x25519: 0, ed25519Sign: 0, ed25519Verify: 0 };
  for (const pulls of [0, 2]) {
    let before = publicKeyOperations();
    const exchange = await openRelayExchange({ server: core.card(), random: bob.random });
    const request = create(ToServerMessageSchema, { uuid: `p${pulls}` });
    for (let i = 0; i < pulls; i++) {
      request.pullRequests.push(
        await signPull({
          server: core.card(),
          lookup: bob.lookup,
          now: bob.now() + i,
          ephemeralPublicKey: exchange.binding,
        }),
      );
    }
    const body = exchange.seal(request);
    assert.deepEqual(delta(before), { ...none, keyGeneration: 1, x25519: 1, ed25519Sign: pulls });
    before = publicKeyOperations();
    const answer = await core.handle(body);
    assert.deepEqual(delta(before), { ...none, x25519: 1, ed25519Verify: pulls }, "relay");
    before = publicKeyOperations();
    assert.deepEqual(exchange.open(answer).errors, []);
    assert.deepEqual(delta(before), none, "opening the answer");
  }
});

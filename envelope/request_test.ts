import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { BadCiphertext, Malformed, Replay } from "../kernel/errors.ts";
import { decode, encode } from "../proto/codec.ts";
import {
  ErrorCode,
  FromServerMessageSchema,
  PackedServerMessageSchema,
  ServerErrorSchema,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { openRelayExchange } from "./request.ts";
import { openRelayRequest, sealRelayAnswer } from "./relay.ts";
import { testRelay } from "./_test_relay.ts";

const ask = (uuid: string) => create(ToServerMessageSchema, { uuid });

Deno.test("openRelayExchange() seals each request under its own ephemeral key, no device key", async () => {
  const { core, random } = await testRelay();
  const server = core.card();
  const a = await openRelayExchange({ server, random });
  const b = await openRelayExchange({ server, random });
  assert.notDeepEqual(a.binding, b.binding);
  const envelope = decode(PackedServerMessageSchema, a.seal(ask("a")));
  assert.deepEqual(envelope.from, a.binding);
  // Nothing else is set: no device key, no session.
  assert.equal(envelope.session.length, 0);
  assert.equal(envelope.sessionUnknown, false);
  assert.deepEqual(
    Object.keys(envelope).filter((k) => !k.startsWith("$")).sort(),
    ["from", "payload", "session", "sessionUnknown"],
  );
});

Deno.test("RelayExchange.open() opens the relay's answer to its own request", async () => {
  const { core, random } = await testRelay();
  const exchange = await openRelayExchange({ server: core.card(), random });
  const answer = exchange.open(await core.handle(exchange.seal(ask("mine"))));
  assert.equal(answer.uuidAck, "mine");
  assert.deepEqual(answer.errors, []);
});

Deno.test("RelayExchange.open() refuses the answer to another request as BadCiphertext", async () => {
  const { core, random } = await testRelay();
  const first = await openRelayExchange({ server: core.card(), random });
  const answer = await core.handle(first.seal(ask("first")));
  const second = await openRelayExchange({ server: core.card(), random });
  second.seal(ask("second"));
  assert.throws(() => second.open(answer), BadCiphertext);
});

Deno.test("RelayExchange.open() refuses an answer naming another request as Replay", async () => {
  const { core, keys, random } = await testRelay();
  const exchange = await openRelayExchange({ server: core.card(), random });
  const { answerKey } = await openRelayRequest({ keys, body: exchange.seal(ask("now")) });
  const old = create(FromServerMessageSchema, { uuidAck: "before", stored: 1 });
  const body = sealRelayAnswer({ answerKey, answer: old, random });
  assert.throws(
    () => exchange.open(body),
    (e) => e instanceof Replay && /"before".*"now"/.test(e.message),
  );
});

Deno.test("RelayExchange.open() turns a relay that could not read the request into Malformed", async () => {
  const { core, keys, random } = await testRelay();
  const exchange = await openRelayExchange({ server: core.card(), random });
  const { answerKey } = await openRelayRequest({ keys, body: exchange.seal(ask("q")) });
  const refusal = create(FromServerMessageSchema, {
    errors: [create(ServerErrorSchema, { code: ErrorCode.MALFORMED, detail: "cannot open" })],
  });
  const body = sealRelayAnswer({ answerKey, answer: refusal, random });
  assert.throws(
    () => exchange.open(body),
    (e) => e instanceof Malformed && /MALFORMED/.test(e.message),
  );
});

Deno.test("RelayExchange.open() refuses the empty answer and garbage as Malformed", async () => {
  const { core, random } = await testRelay();
  const exchange = await openRelayExchange({ server: core.card(), random });
  exchange.seal(ask("q"));
  for (const body of [new Uint8Array(0), new Uint8Array([0xff, 0xff, 0xff])]) {
    assert.throws(() => exchange.open(body), Malformed);
  }
  const tampered = encode(
    PackedServerMessageSchema,
    create(PackedServerMessageSchema, { payload: new Uint8Array(64) }),
  );
  assert.throws(() => exchange.open(tampered), BadCiphertext);
});

Deno.test("RelayExchange.seal() is once per exchange and needs a uuid; open() needs a seal", async () => {
  const { core, random } = await testRelay();
  const exchange = await openRelayExchange({ server: core.card(), random });
  assert.throws(() => exchange.open(new Uint8Array(1)), TypeError);
  assert.throws(() => exchange.seal(ask("")), TypeError);
  exchange.seal(ask("one"));
  assert.throws(() => exchange.seal(ask("two")), TypeError);
});

Deno.test("openRelayExchange() refuses a card without a usable X25519 key as Malformed", async () => {
  const { core, random } = await testRelay();
  const server = core.card();
  server.encryptionPublicKey = new Uint8Array(31);
  await assert.rejects(() => openRelayExchange({ server, random }), Malformed);
  server.encryptionPublicKey = new Uint8Array(32); // a low-order point
  await assert.rejects(() => openRelayExchange({ server, random }), Malformed);
});

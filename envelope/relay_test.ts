import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { BadCiphertext, Malformed } from "../kernel/errors.ts";
import { decode, encode } from "../proto/codec.ts";
import {
  PackedServerMessageSchema,
  ServerErrorSchema,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import { openRelayExchange } from "./request.ts";
import { openRelayRequest, sealRelayAnswer } from "./relay.ts";
import { testRelay } from "./_test_relay.ts";
import { FromServerMessageSchema } from "../proto/gen/meow_pb.ts";

Deno.test("openRelayRequest() opens a request and answers under the key only its sender has", async () => {
  const { core, keys, random } = await testRelay();
  const exchange = await openRelayExchange({ server: core.card(), random });
  const body = exchange.seal(create(ToServerMessageSchema, { uuid: "u", timeoutMs: 3 }));
  const opened = await openRelayRequest({ keys, body });
  assert.equal(opened.request?.uuid, "u");
  assert.equal(opened.request?.timeoutMs, 3);
  assert.deepEqual(opened.binding, exchange.binding);
  const answer = create(FromServerMessageSchema, { uuidAck: "u", stored: 2 });
  const reply = sealRelayAnswer({ answerKey: opened.answerKey, answer, random });
  const envelope = decode(PackedServerMessageSchema, reply);
  assert.equal(envelope.from.length, 0, "no relay key, no signature");
  // Framed by hand around the box: exactly protobuf's own encoding of the envelope.
  assert.deepEqual(reply, encode(PackedServerMessageSchema, envelope));
  assert.equal(exchange.open(reply).stored, 2);
  // And with an answer long enough for a two-byte and a three-byte length.
  for (const bytes of [200, 20_000]) {
    const long = create(FromServerMessageSchema, { uuidAck: "u" });
    long.errors.push(create(ServerErrorSchema, { detail: "x".repeat(bytes) }));
    const framed = sealRelayAnswer({ answerKey: opened.answerKey, answer: long, random });
    assert.deepEqual(
      framed,
      encode(PackedServerMessageSchema, decode(PackedServerMessageSchema, framed)),
    );
    assert.equal(exchange.open(framed).errors[0].detail.length, bytes);
  }
});

Deno.test("openRelayRequest() reports a payload that does not open, keeping the answer key", async () => {
  const { core, keys, random } = await testRelay();
  const exchange = await openRelayExchange({ server: core.card(), random });
  const envelope = decode(
    PackedServerMessageSchema,
    exchange.seal(create(ToServerMessageSchema, { uuid: "u" })),
  );
  envelope.payload[30] ^= 1;
  const opened = await openRelayRequest({
    keys,
    body: encode(PackedServerMessageSchema, envelope),
  });
  assert.ok(opened.error instanceof BadCiphertext);
  assert.equal(opened.request, undefined);
  assert.equal(opened.plaintext, undefined);
  assert.equal(opened.answerKey.length, 32);
});

Deno.test("openRelayRequest() refuses unreadable envelopes and unusable keys as Malformed", async () => {
  const { keys } = await testRelay();
  const envelope = (from: Uint8Array) =>
    encode(PackedServerMessageSchema, create(PackedServerMessageSchema, { from }));
  for (
    const body of [
      new Uint8Array([0xff, 0xff]),
      envelope(new Uint8Array(0)),
      envelope(new Uint8Array(33)),
      envelope(new Uint8Array(32)), // all zero: a low-order point
    ]
  ) {
    await assert.rejects(() => openRelayRequest({ keys, body }), Malformed);
  }
});

import assert from "node:assert/strict";
import { create, type DescField, type DescMessage, equals, ScalarType } from "@bufbuild/protobuf";
import fc from "fast-check";
import { Malformed } from "../kernel/errors.ts";
import { decode, decodeJson, encode, encodeJson, encodeWithElements, withFields } from "./codec.ts";
import * as gen from "./gen/meow_pb.ts";

/** Every message schema in meow.proto. */
const schemas: DescMessage[] = gen.file_meow.messages;

function scalarArbitrary(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return fc.string({ unit: "grapheme", maxLength: 12 });
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 40 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.UINT32:
      return fc.nat();
    case ScalarType.INT64:
      return fc.integer({ min: -(2 ** 40), max: 2 ** 40 });
    case ScalarType.UINT64:
      return fc.nat({ max: 2 ** 40 });
    default:
      return fc.integer();
  }
}

function fieldArbitrary(field: DescField, depth: number): fc.Arbitrary<unknown> {
  switch (field.fieldKind) {
    case "scalar":
      return scalarArbitrary(field.scalar);
    case "enum":
      return fc.constantFrom(...field.enum.values.map((v) => v.number));
    case "message":
      return messageInit(field.message, depth + 1);
    case "list":
      if (field.listKind === "scalar") {
        return fc.array(scalarArbitrary(field.scalar), { maxLength: 3 });
      }
      if (field.listKind === "enum") {
        return fc.array(fc.constantFrom(...field.enum.values.map((v) => v.number)), {
          maxLength: 3,
        });
      }
      return depth > 2
        ? fc.constant([])
        : fc.array(messageInit(field.message, depth + 1), { maxLength: 2 });
    default:
      throw new TypeError(`meow.proto has no ${field.fieldKind} fields; extend the generator`);
  }
}

/** A random, fully populated message of `schema`, built from its descriptor. */
function messageInit(schema: DescMessage, depth = 0): fc.Arbitrary<unknown> {
  const record: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of schema.fields) {
    if (depth > 3 && field.fieldKind === "message") continue;
    record[field.localName] = fieldArbitrary(field, depth);
  }
  return fc.record(record).map((init) => create(schema, init as never));
}

for (const schema of schemas) {
  Deno.test(`decode() round-trips ${schema.name} through binary and JSON`, () => {
    fc.assert(
      fc.property(messageInit(schema), (message) => {
        const m = message as never;
        assert(equals(schema, decode(schema, encode(schema, m)), m), "binary round trip");
        assert(equals(schema, decodeJson(schema, encodeJson(schema, m)), m), "JSON round trip");
      }),
      { numRuns: 50 },
    );
  });
}

Deno.test("decode() turns random bytes into a message or Malformed, never another exception", () => {
  fc.assert(
    fc.property(fc.constantFrom(...schemas), fc.uint8Array({ maxLength: 300 }), (schema, bytes) => {
      try {
        decode(schema, bytes);
      } catch (e) {
        assert(e instanceof Malformed, `expected Malformed, got ${e}`);
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("decode() rejects every truncation inside a length-delimited field", () => {
  const message = create(gen.UserMessageSchema, { type: "chat", data: "x".repeat(200) });
  const bytes = encode(gen.UserMessageSchema, message);
  // The `data` field's value is the last 200 bytes; any cut inside it is a truncated field.
  for (let cut = bytes.length - 199; cut < bytes.length; cut++) {
    assert.throws(() => decode(gen.UserMessageSchema, bytes.subarray(0, cut)), Malformed);
  }
});

Deno.test("decode() refuses oversized input before parsing it", () => {
  const bytes = encode(
    gen.UserMessageSchema,
    create(gen.UserMessageSchema, { data: "y".repeat(100) }),
  );
  assert.throws(() => decode(gen.UserMessageSchema, bytes, { bytesMax: 50 }), Malformed);
  assert.equal(
    decode(gen.UserMessageSchema, bytes, { bytesMax: bytes.length }).data,
    "y".repeat(100),
  );
});

Deno.test("decodeJson() turns a value of the wrong shape into Malformed", () => {
  assert.throws(() => decodeJson(gen.UserMessageSchema, { type: 5 }), Malformed);
  assert.throws(() => decodeJson(gen.UserMessageSchema, { nope: true }), Malformed);
  assert.throws(() => decodeJson(gen.UserMessageSchema, [1, 2]), Malformed);
});

Deno.test("encodeWithElements() decodes as the message with those elements, at every length-prefix size", () => {
  // Element sizes either side of each varint length boundary (1, 2 and 3 bytes of length).
  const sizes = fc.constantFrom(0, 1, 100, 127, 128, 129, 16_383, 16_384, 16_385, 70_000);
  fc.assert(
    fc.property(
      fc.array(sizes, { maxLength: 6 }),
      fc.string({ maxLength: 40 }),
      (lengths, uuid) => {
        const elements = lengths.map((n, i) =>
          create(gen.PackedUserMessageSchema, {
            destination: `d${i}`,
            payload: new Uint8Array(n).fill(i),
          })
        );
        const head = create(gen.FromServerMessageSchema, { uuidAck: uuid });
        const bytes = encodeWithElements(
          gen.FromServerMessageSchema,
          head,
          "chat",
          elements.map((m) => encode(gen.PackedUserMessageSchema, m)),
        );
        // Exactly protobuf's own encoding of the whole message: the elements come after the head's
        // fields, as a field of higher number than all the head sets would.
        const expected = create(gen.FromServerMessageSchema, { uuidAck: uuid, chat: elements });
        assert(
          equals(gen.FromServerMessageSchema, decode(gen.FromServerMessageSchema, bytes), expected),
        );
        const sizes = encode(gen.FromServerMessageSchema, expected).length;
        assert.equal(bytes.length, sizes);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("withFields() appends the fields: the result decodes with them over the sent values", () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: "grapheme", maxLength: 60 }),
      fc.integer({ min: 0, max: 2 ** 48 }),
      fc.uint8Array({ maxLength: 300 }),
      (sentUuid, uuid, ms, payload) => {
        const sent = encode(
          gen.PackedUserMessageSchema,
          create(gen.PackedUserMessageSchema, {
            destination: "d",
            payload,
            serverDeliveryUuid: sentUuid,
          }),
        );
        // Beside a message without the fields and one with them: each result is its own.
        const [before, mine, after] = withFields(
          gen.PackedUserMessageSchema,
          [sent, sent, sent],
          [{}, { serverDeliveryUuid: uuid, serverReceivedMs: ms }, { serverReceivedMs: -ms }],
        );
        assert.deepEqual(before, sent);
        const stored = decode(gen.PackedUserMessageSchema, mine);
        assert.deepEqual(
          [stored.destination, stored.payload, stored.serverDeliveryUuid, stored.serverReceivedMs],
          ["d", payload, uuid, ms],
        );
        const last = decode(gen.PackedUserMessageSchema, after);
        assert.deepEqual([last.serverDeliveryUuid, last.serverReceivedMs], [sentUuid, -ms]);
      },
    ),
    { numRuns: 100 },
  );
  assert.throws(
    () => withFields(gen.PackedUserMessageSchema, [new Uint8Array(0)], [{ toString: "x" }]),
    RangeError,
  );
  assert.throws(
    () => withFields(gen.PackedUserMessageSchema, [new Uint8Array(0)], [{ payload: "x" }]),
    RangeError,
  );
  assert.throws(() => withFields(gen.PackedUserMessageSchema, [new Uint8Array(0)], []), RangeError);
  // Lone surrogates are written as U+FFFD (three bytes), as TextEncoder writes them.
  for (const uuid of ["\ud800", "a\udc00b", "\ud83d\ude00\ud83d", "é€😀"]) {
    const [bytes] = withFields(gen.PackedUserMessageSchema, [new Uint8Array(0)], [{
      serverDeliveryUuid: uuid,
    }]);
    const expected = encode(
      gen.PackedUserMessageSchema,
      create(gen.PackedUserMessageSchema, { serverDeliveryUuid: uuid }),
    );
    assert.deepEqual(bytes, expected);
  }
});

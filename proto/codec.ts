/**
 * Bytes to messages and back. Every malformed input becomes a typed
 * {@linkcode Malformed} error: never an uncaught exception, never a
 * half-decoded object.
 *
 * @module
 */
import {
  type DescField,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  type MessageShape,
  ScalarType,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Malformed } from "../crypto/mod.ts";

/**
 * The largest message the codec decodes by default, in bytes: a relay request
 * with a full batch of messages fits well below it.
 */
export const MESSAGE_BYTES_MAX = 4 * 1024 * 1024;

/** Options for {@linkcode decode}. */
export interface DecodeOptions {
  /**
   * Refuse inputs larger than this many bytes before parsing.
   * @default {MESSAGE_BYTES_MAX}
   */
  bytesMax?: number;
}

/**
 * Decodes protobuf binary into a message of `schema`.
 *
 * @throws {Malformed} when the bytes are oversized, truncated or not a valid encoding
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { decode, encode } from "./codec.ts";
 * import { UserMessageSchema } from "./gen/meow_pb.ts";
 * const bytes = encode(UserMessageSchema, create(UserMessageSchema, { type: "chat", data: "hi" }));
 * assert(decode(UserMessageSchema, bytes).data === "hi");
 * ```
 */
export function decode<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array,
  options: DecodeOptions = {},
): MessageShape<Desc> {
  const bytesMax = options.bytesMax ?? MESSAGE_BYTES_MAX;
  if (!(bytes instanceof Uint8Array)) {
    throw new Malformed(`Cannot decode ${schema.name}: expected bytes, got ${typeof bytes}`);
  }
  if (bytes.length > bytesMax) {
    throw new Malformed(
      `Cannot decode ${schema.name}: ${bytes.length} bytes exceed the limit of ${bytesMax} bytes`,
    );
  }
  try {
    // readUnknownFields: false keeps a message built only from what the schema names.
    return fromBinary(schema, bytes, { readUnknownFields: false });
  } catch (cause) {
    throw new Malformed(
      `Cannot decode ${schema.name} from ${bytes.length} bytes: ${(cause as Error).message}`,
      { cause },
    );
  }
}

/**
 * Encodes a message to protobuf binary.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { encode } from "./codec.ts";
 * import { AckPayloadSchema } from "./gen/meow_pb.ts";
 * assert(encode(AckPayloadSchema, create(AckPayloadSchema, { uuid: "u" })).length > 0);
 * ```
 */
export function encode<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): Uint8Array {
  return toBinary(schema, message);
}

/**
 * Encodes `message`, then appends `encoded` — messages already in protobuf binary — as elements
 * of its repeated message field `field` (which `message` itself leaves empty). The wire format
 * lets a repeated field's elements come anywhere in the encoding, so the result decodes as
 * `message` with those elements in that order; the elements are never decoded and re-encoded.
 *
 * @throws {RangeError} when `field` is not a repeated message field of `schema`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { decode, encode, encodeWithElements } from "./codec.ts";
 * import { FromServerMessageSchema, PackedUserMessageSchema } from "./gen/meow_pb.ts";
 * const element = encode(PackedUserMessageSchema, create(PackedUserMessageSchema, { destination: "d" }));
 * const answer = create(FromServerMessageSchema, { uuidAck: "u" });
 * const bytes = encodeWithElements(FromServerMessageSchema, answer, "chat", [element, element]);
 * const decoded = decode(FromServerMessageSchema, bytes);
 * assert.deepEqual(decoded.chat.map((m) => m.destination), ["d", "d"]);
 * assert.equal(decoded.uuidAck, "u");
 * ```
 */
export function encodeWithElements<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
  field: string,
  encoded: readonly Uint8Array[],
): Uint8Array {
  const number = repeatedMessageField(schema, field);
  const head = toBinary(schema, message);
  if (encoded.length === 0) return head;
  // The head, then each element's tag, length and bytes, written once into a buffer of the exact
  // size (a writer fed the elements would grow, and copy, its buffer as it goes).
  const tag = (number << 3 | WireType.LengthDelimited) >>> 0;
  const tagBytes = varintBytes(tag);
  let total = head.length;
  for (const element of encoded) total += tagBytes + varintBytes(element.length) + element.length;
  const out = new Uint8Array(total);
  out.set(head, 0);
  let at = head.length;
  for (const element of encoded) {
    at = writeVarint(out, at, tag);
    at = writeVarint(out, at, element.length);
    out.set(element, at);
    at += element.length;
  }
  return out;
}

/**
 * The bytes before a `length`-byte value of `schema`'s bytes field `field` in an encoding: its tag
 * and length. A message whose only field set is that one encodes as these bytes, then the value;
 * so a caller can write the value straight after them, without encoding the message again.
 *
 * @throws {RangeError} when `field` is not a bytes field of `schema`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { encode, fieldHeader } from "./codec.ts";
 * import { PackedServerMessageSchema } from "./gen/meow_pb.ts";
 * const payload = new Uint8Array(300).fill(7);
 * const header = fieldHeader(PackedServerMessageSchema, "payload", payload.length);
 * const bytes = encode(PackedServerMessageSchema, create(PackedServerMessageSchema, { payload }));
 * assert.deepEqual(bytes, new Uint8Array([...header, ...payload]));
 * ```
 */
export function fieldHeader(schema: DescMessage, field: string, length: number): Uint8Array {
  const desc = schema.fields.find((f) => f.localName === field);
  if (desc?.fieldKind !== "scalar" || desc.scalar !== ScalarType.BYTES) {
    throw new RangeError(`${schema.name}.${field} is not a bytes field`);
  }
  const tag = (desc.number << 3 | WireType.LengthDelimited) >>> 0;
  const out = new Uint8Array(varintBytes(tag) + varintBytes(length));
  writeVarint(out, writeVarint(out, 0, tag), length);
  return out;
}

/** Writes protobuf's varint encoding of the unsigned 32-bit `value` at `at`; the end. */
function writeVarint(out: Uint8Array, at: number, value: number): number {
  while (value > 0x7f) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
  return at;
}

/** How many bytes protobuf's varint encoding of the unsigned 32-bit `value` takes. */
function varintBytes(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x20_0000) return 3;
  if (value < 0x1000_0000) return 4;
  return 5;
}

/**
 * Each of `encoded` (encodings of `schema`) with its `fields` appended: each decodes as the
 * original message with those fields set, over any value it had (protobuf keeps the last value
 * of a field set twice). Only string and double fields. The results are views into one buffer,
 * written once: a store of a batch allocates once, not once per message.
 *
 * @throws {RangeError} when a name is not a string or double field of `schema`, or the two
 *   lists differ in length
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { decode, encode, withFields } from "./codec.ts";
 * import { PackedUserMessageSchema } from "./gen/meow_pb.ts";
 * const sent = encode(PackedUserMessageSchema, create(PackedUserMessageSchema, { destination: "d" }));
 * const [stored] = withFields(PackedUserMessageSchema, [sent], [{ serverDeliveryUuid: "u", serverReceivedMs: 5 }]);
 * const message = decode(PackedUserMessageSchema, stored);
 * assert.deepEqual([message.destination, message.serverDeliveryUuid, message.serverReceivedMs], ["d", "u", 5]);
 * ```
 */
export function withFields(
  schema: DescMessage,
  encoded: readonly Uint8Array[],
  fields: readonly Record<string, string | number>[],
): Uint8Array[] {
  if (encoded.length !== fields.length) {
    throw new RangeError(`${encoded.length} encodings but ${fields.length} sets of fields`);
  }
  // Every field's tag, the strings' lengths and the total first; then one buffer of that size.
  const appended: { tag: number; value: string | number; bytes: number }[][] = [];
  let total = 0;
  for (let i = 0; i < encoded.length; i++) {
    const parts: { tag: number; value: string | number; bytes: number }[] = [];
    total += encoded[i].length;
    for (const name in fields[i]) {
      const desc = scalarField(schema, name);
      const value = fields[i][name];
      if (desc.scalar === ScalarType.STRING) {
        const text = String(value);
        const bytes = utf8Length(text);
        const tag = (desc.number << 3 | WireType.LengthDelimited) >>> 0;
        parts.push({ tag, value: text, bytes });
        total += varintBytes(tag) + varintBytes(bytes) + bytes;
      } else {
        const tag = (desc.number << 3 | WireType.Bit64) >>> 0;
        parts.push({ tag, value: Number(value), bytes: 8 });
        total += varintBytes(tag) + 8;
      }
    }
    appended.push(parts);
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  const results: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; i < encoded.length; i++) {
    const start = at;
    out.set(encoded[i], at);
    at += encoded[i].length;
    for (const { tag, value, bytes } of appended[i]) {
      at = writeVarint(out, at, tag);
      if (typeof value === "number") {
        view.setFloat64(at, value, true);
      } else {
        at = writeVarint(out, at, bytes);
        utf8.encodeInto(value, out.subarray(at, at + bytes));
      }
      at += bytes;
    }
    results.push(out.subarray(start, at));
  }
  return results;
}

/** How many bytes `text` takes in UTF-8 (a lone surrogate as U+FFFD, as TextEncoder writes it). */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (
      code >= 0xd800 && code < 0xdc00 && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

const utf8 = new TextEncoder();
/** The string and double fields {@linkcode withFields} has looked up, by schema and name. */
const scalarFields = new WeakMap<DescMessage, Map<string, DescField & { fieldKind: "scalar" }>>();

/** `schema`'s string or double field `name`. */
function scalarField(schema: DescMessage, name: string): DescField & { fieldKind: "scalar" } {
  let known = scalarFields.get(schema);
  if (known === undefined) scalarFields.set(schema, known = new Map());
  let desc = known.get(name);
  if (desc === undefined) {
    const found = schema.fields.find((f) => f.localName === name);
    if (
      found?.fieldKind !== "scalar" ||
      (found.scalar !== ScalarType.STRING && found.scalar !== ScalarType.DOUBLE)
    ) {
      throw new RangeError(`${schema.name}.${name} is not a string or double field`);
    }
    known.set(name, desc = found);
  }
  return desc;
}

/**
 * The encoded elements of the repeated message field `field` in `bytes` (an encoding of
 * `schema`), in order, exactly as they were sent: views into `bytes`, neither decoded nor
 * re-encoded. Decode `bytes` first: this assumes a valid encoding.
 *
 * @throws {RangeError} when `field` is not a repeated message field of `schema`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { encode, encodedElements } from "./codec.ts";
 * import { PackedUserMessageSchema, ToServerMessageSchema } from "./gen/meow_pb.ts";
 * const message = create(PackedUserMessageSchema, { destination: "d" });
 * const request = create(ToServerMessageSchema, { uuid: "r", messages: [message, message] });
 * const elements = encodedElements(ToServerMessageSchema, encode(ToServerMessageSchema, request), "messages");
 * assert.deepEqual(elements, [1, 2].map(() => encode(PackedUserMessageSchema, message)));
 * ```
 */
export function encodedElements<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array,
  field: string,
): Uint8Array[] {
  const number = repeatedMessageField(schema, field);
  const reader = new BinaryReader(bytes);
  const out: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === number && wireType === WireType.LengthDelimited) out.push(reader.bytes());
    else reader.skip(wireType, fieldNo);
  }
  return out;
}

/** The field number of `schema`'s repeated message field `field`. */
function repeatedMessageField(schema: DescMessage, field: string): number {
  const desc = schema.fields.find((f) => f.localName === field);
  if (desc === undefined || desc.fieldKind !== "list" || desc.listKind !== "message") {
    throw new RangeError(`${schema.name}.${field} is not a repeated message field`);
  }
  return desc.number;
}

/**
 * Decodes the protobuf JSON form of a message.
 *
 * @throws {Malformed} when the value does not match the schema
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeJson } from "./codec.ts";
 * import { AckPayloadSchema } from "./gen/meow_pb.ts";
 * assert(decodeJson(AckPayloadSchema, { uuid: "u", received: "5" }).received === 5);
 * ```
 */
export function decodeJson<Desc extends DescMessage>(
  schema: Desc,
  json: JsonValue,
): MessageShape<Desc> {
  try {
    return fromJson(schema, json);
  } catch (cause) {
    throw new Malformed(`Cannot decode ${schema.name} from JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
}

/**
 * Encodes a message to its protobuf JSON form.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { encodeJson } from "./codec.ts";
 * import { AckPayloadSchema } from "./gen/meow_pb.ts";
 * assert(JSON.stringify(encodeJson(AckPayloadSchema, create(AckPayloadSchema, { uuid: "u" }))) === '{"uuid":"u"}');
 * ```
 */
export function encodeJson<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): JsonValue {
  return toJson(schema, message);
}

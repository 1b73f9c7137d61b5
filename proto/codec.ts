/**
 * Bytes to messages and back. Every malformed input becomes a typed
 * {@linkcode Malformed} error: never an uncaught exception, never a
 * half-decoded object.
 *
 * @module
 */
import {
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  type MessageShape,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { Malformed } from "../kernel/errors.ts";

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

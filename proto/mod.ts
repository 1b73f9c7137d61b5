/**
 * The meowsync wire contract: the generated protobuf-es messages of
 * `meow.proto` and a codec that turns malformed bytes into typed errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { decode, encode, UserMessageSchema } from "./mod.ts";
 * const m = decode(UserMessageSchema, encode(UserMessageSchema, create(UserMessageSchema, { data: "hi" })));
 * assert(m.data === "hi");
 * ```
 *
 * @module
 */
export * from "./gen/meow_pb.ts";
export { decode, decodeJson, encode, encodeJson, MESSAGE_BYTES_MAX } from "./codec.ts";
export type { DecodeOptions } from "./codec.ts";
export { encodedElements, encodeWithElements, fieldHeader, withFields } from "./codec.ts";

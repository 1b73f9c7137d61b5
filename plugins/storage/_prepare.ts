/**
 * Validates and encodes a {@linkcode Batch} before any adapter writes a byte
 * of it: every check that can fail, fails here, so `commit` either applies
 * all of a batch or throws with the store untouched.
 *
 * @module
 */
import { type DescMessage, isMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Batch } from "../../ports/mod.ts";
import { encode } from "../../proto/mod.ts";
import {
  DbMessageSchema,
  IdentityRecordSchema,
  OutboxEntrySchema,
  PeerRecordSchema,
  QuarantineRecordSchema,
} from "../../proto/mod.ts";

/** One stored message, validated and encoded. */
export interface PreparedMessage {
  peerUid: string;
  uuid: string;
  storedAt: number;
  bytes: Uint8Array;
}

/** One outbox entry, validated and encoded. */
export interface PreparedOutbox {
  id: string;
  queuedAt: number;
  bytes: Uint8Array;
}

/** One quarantined message, validated and encoded. */
export interface PreparedQuarantine {
  id: string;
  at: number;
  bytes: Uint8Array;
}

/** One plugin record, validated. */
export interface PreparedPluginRecord {
  namespace: string;
  key: string;
  bytes: Uint8Array;
}

/**
 * A batch that passed validation. Within one batch the last upsert of a key
 * wins (as if applied in order) and the first seen mark of an id wins (as an
 * insert that ignores ids already present would).
 */
export interface PreparedBatch {
  identity: Uint8Array | undefined;
  peers: Map<string, Uint8Array>;
  deletePeers: Set<string>;
  devices: Map<string, Uint8Array>;
  deleteDevices: Set<string>;
  /** Keyed by `JSON.stringify([peerUid, uuid])`. */
  messages: Map<string, PreparedMessage>;
  outboxPut: Map<string, PreparedOutbox>;
  outboxDelete: Set<string>;
  seen: Map<string, number>;
  quarantinePut: Map<string, PreparedQuarantine>;
  quarantineDelete: Set<string>;
  /** Keyed by `JSON.stringify([namespace, key])`. */
  pluginPut: Map<string, PreparedPluginRecord>;
  /** Keyed by `JSON.stringify([namespace, key])`. */
  pluginDelete: Map<string, { namespace: string; key: string }>;
}

/** What the adapter is called and how large one encoded record may be. */
export interface PrepareOptions {
  /** The adapter's name, for error messages ("KvStore"). */
  store: string;
  /** The largest encoded record the adapter accepts, in bytes. */
  recordBytesMax: number;
  /** Where that limit comes from, for error messages ("Deno KV's value limit"). */
  recordLimitName: string;
}

/**
 * Checks every record and key of `batch` and encodes the records.
 *
 * @throws {TypeError} a record misses its key, is not the expected message, cannot be encoded,
 *   or a key is both upserted and deleted
 * @throws {RangeError} an encoded record exceeds `options.recordBytesMax`
 */
export function prepareBatch(batch: Batch, options: PrepareOptions): PreparedBatch {
  const fail = (what: string): TypeError =>
    new TypeError(`Cannot commit to ${options.store}: ${what}`);
  if (typeof batch !== "object" || batch === null) {
    throw fail(`expected a batch object, got ${describe(batch)}`);
  }
  const encodeChecked = <D extends DescMessage>(
    schema: D,
    record: MessageShape<D>,
    where: string,
  ): Uint8Array => {
    if (!isMessage(record, schema)) {
      throw fail(`${where} is not a ${schema.typeName} (got ${describe(record)})`);
    }
    let bytes: Uint8Array;
    try {
      bytes = encode(schema, record);
    } catch (cause) {
      throw new TypeError(
        `Cannot commit to ${options.store}: ${where} cannot be encoded: ${
          (cause as Error).message
        }`,
        { cause },
      );
    }
    if (bytes.length > options.recordBytesMax) {
      throw new RangeError(
        `Cannot commit to ${options.store}: ${where} encodes to ${bytes.length} bytes, over ` +
          `${options.recordLimitName} of ${options.recordBytesMax} bytes`,
      );
    }
    return bytes;
  };
  const key = (value: unknown, where: string): string => {
    if (typeof value !== "string" || value === "") {
      throw fail(`${where} must be a non-empty string, got ${describe(value)}`);
    }
    if (!value.isWellFormed()) {
      // TextEncoder would turn a lone surrogate into U+FFFD, so two different
      // keys could collide on disk.
      throw fail(`${where} is not well-formed UTF-16 (lone surrogate): ${JSON.stringify(value)}`);
    }
    return value;
  };
  // Times order rows on disk (index keys, ORDER BY), so NaN or Infinity would misplace a row;
  // Number() keeps this independent of whether the generated code types them number or bigint.
  const time = (value: number | bigint, where: string): number => {
    const ms = Number(value);
    if (!Number.isSafeInteger(ms)) {
      throw fail(`${where} must be an integer of ms, got ${describe(value)}`);
    }
    return ms;
  };
  const list = <T>(value: T[] | undefined, where: string): T[] => {
    if (value === undefined) return [];
    if (!Array.isArray(value)) {
      throw fail(`batch.${where} must be an array, got ${describe(value)}`);
    }
    return value;
  };

  const out: PreparedBatch = {
    identity: undefined,
    peers: new Map(),
    deletePeers: new Set(),
    devices: new Map(),
    deleteDevices: new Set(),
    messages: new Map(),
    outboxPut: new Map(),
    outboxDelete: new Set(),
    seen: new Map(),
    quarantinePut: new Map(),
    quarantineDelete: new Set(),
    pluginPut: new Map(),
    pluginDelete: new Map(),
  };

  if (batch.identity !== undefined) {
    out.identity = encodeChecked(IdentityRecordSchema, batch.identity, "identity");
  }
  for (const [field, target] of [["peers", out.peers], ["devices", out.devices]] as const) {
    list(batch[field], field).forEach((record, i) => {
      const where = `${field}[${i}]`;
      const uid = key((record as { uid?: unknown } | undefined)?.uid, `${where}.uid`);
      target.set(uid, encodeChecked(PeerRecordSchema, record, `${where} (uid "${uid}")`));
    });
  }
  for (
    const [field, target] of [
      ["deletePeers", out.deletePeers],
      ["deleteDevices", out.deleteDevices],
      ["outboxDelete", out.outboxDelete],
      ["quarantineDelete", out.quarantineDelete],
    ] as const
  ) {
    list(batch[field], field).forEach((id, i) => target.add(key(id, `${field}[${i}]`)));
  }
  list(batch.messages, "messages").forEach((record, i) => {
    const where = `messages[${i}]`;
    const peerUid = key((record as { peerUid?: unknown } | undefined)?.peerUid, `${where}.peerUid`);
    const uuid = key(record?.message?.status?.uuid, `${where}.message.status.uuid`);
    const bytes = encodeChecked(
      DbMessageSchema,
      record,
      `${where} (peer "${peerUid}", uuid "${uuid}")`,
    );
    const storedAt = time(record.storedAt, `${where}.storedAt (peer "${peerUid}", uuid "${uuid}")`);
    out.messages.set(JSON.stringify([peerUid, uuid]), { peerUid, uuid, storedAt, bytes });
  });
  list(batch.outboxPut, "outboxPut").forEach((record, i) => {
    const where = `outboxPut[${i}]`;
    const id = key((record as { id?: unknown } | undefined)?.id, `${where}.id`);
    const bytes = encodeChecked(OutboxEntrySchema, record, `${where} (id "${id}")`);
    const queuedAt = time(record.queuedAt, `${where}.queuedAt (id "${id}")`);
    out.outboxPut.set(id, { id, queuedAt, bytes });
  });
  list(batch.quarantinePut, "quarantinePut").forEach((record, i) => {
    const where = `quarantinePut[${i}]`;
    const id = key((record as { id?: unknown } | undefined)?.id, `${where}.id`);
    const bytes = encodeChecked(QuarantineRecordSchema, record, `${where} (id "${id}")`);
    const at = time(record.at, `${where}.at (id "${id}")`);
    out.quarantinePut.set(id, { id, at, bytes });
  });
  list(batch.pluginPut, "pluginPut").forEach((record, i) => {
    const where = `pluginPut[${i}]`;
    const namespace = key(
      (record as { namespace?: unknown } | undefined)?.namespace,
      `${where}.namespace`,
    );
    const k = key(record.key, `${where}.key`);
    if (!(record.value instanceof Uint8Array)) {
      throw fail(`${where}.value must be a Uint8Array, got ${describe(record.value)}`);
    }
    if (record.value.length > options.recordBytesMax) {
      throw new RangeError(
        `Cannot commit to ${options.store}: ${where} (${namespace} "${k}") holds ` +
          `${record.value.length} bytes, over ${options.recordLimitName} of ` +
          `${options.recordBytesMax} bytes`,
      );
    }
    out.pluginPut.set(JSON.stringify([namespace, k]), {
      namespace,
      key: k,
      bytes: record.value.slice(),
    });
  });
  list(batch.pluginDelete, "pluginDelete").forEach((record, i) => {
    const where = `pluginDelete[${i}]`;
    const namespace = key(
      (record as { namespace?: unknown } | undefined)?.namespace,
      `${where}.namespace`,
    );
    const k = key(record.key, `${where}.key`);
    out.pluginDelete.set(JSON.stringify([namespace, k]), { namespace, key: k });
  });
  list(batch.seen, "seen").forEach((mark, i) => {
    const where = `seen[${i}]`;
    const id = key((mark as { id?: unknown } | undefined)?.id, `${where}.id`);
    const at = time(mark.at, `${where}.at (id "${id}")`);
    if (!out.seen.has(id)) out.seen.set(id, at);
  });

  // Upsert-then-delete or delete-then-upsert: a batch has no order between its
  // fields, so either reading is a guess. Refuse it.
  for (
    const [puts, deletes, what] of [
      [out.peers, out.deletePeers, "peer"],
      [out.devices, out.deleteDevices, "device"],
      [out.outboxPut, out.outboxDelete, "outbox entry"],
      [out.quarantinePut, out.quarantineDelete, "quarantined message"],
      [out.pluginPut, new Set(out.pluginDelete.keys()), "plugin record"],
    ] as const
  ) {
    for (const id of deletes) {
      if (puts.has(id)) throw fail(`${what} "${id}" is both upserted and deleted in one batch`);
    }
  }
  return out;
}

/** A short description of an unexpected value, for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const typeName = (value as { $typeName?: unknown }).$typeName;
    return typeof typeName === "string" ? typeName : "an object";
  }
  if (typeof value === "string") return JSON.stringify(value.slice(0, 40));
  return `${typeof value} ${String(value)}`;
}

/** Throws a TypeError unless `beforeMs` is a number (not NaN). */
export function checkBeforeMs(store: string, beforeMs: number): void {
  if (typeof beforeMs !== "number" || Number.isNaN(beforeMs)) {
    throw new TypeError(
      `Cannot prune seen marks in ${store}: beforeMs must be a number of ms, got ${
        describe(beforeMs)
      }`,
    );
  }
}

/** Returns the limit of a `listMessages` call, or throws a RangeError if it is not one. */
export function checkLimit(store: string, limit: number | undefined): number | undefined {
  if (limit === undefined) return undefined;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(
      `Cannot list messages in ${store}: limit must be a non-negative integer, got ${
        describe(limit)
      }`,
    );
  }
  return limit;
}

/**
 * History for a new sibling and catch-up after a long absence (docs/PROTOCOL.md "History and
 * catch-up"): which stored messages go, and how they are packed into `history` payloads that each
 * fit the relay.
 *
 * @module
 */
import { clone } from "@bufbuild/protobuf";
import { encode } from "../../proto/mod.ts";
import { type DbMessage, DbMessageSchema } from "../../proto/mod.ts";

const DAY_MS = 86_400_000;

/** The time a new sibling gets history for by default, in ms (30 days). */
export const HISTORY_WINDOW_MS_DEFAULT = 30 * DAY_MS;
/** The most messages per conversation a window holds (the default and the ceiling of `N`). */
export const HISTORY_MESSAGES_PER_CONVERSATION_MAX = 1_000;
/** The most messages one `history` payload carries; a larger one is refused. */
export const HISTORY_PAYLOAD_MESSAGES_MAX = 200;
/** The most messages one pairing or one catch-up answer sends, over every conversation. */
export const HISTORY_MESSAGES_TOTAL_MAX = 20_000;
/** How far before its last recorded poll a device returning from an absence asks from, in ms. */
export const CATCH_UP_MARGIN_MS = 60 * 60_000;
/** Room left in a packed `history` message for the payload's other fields, in bytes. */
const PAYLOAD_OVERHEAD_BYTES = 384;
/** The least room for messages a history payload's size class leaves beside the record, in bytes. */
export const HISTORY_ROWS_BYTES_MIN = 1024;

/**
 * The size a history payload of a conversation is packed to: the smallest
 * padding bucket (as a user message's bytes, `frameOverheadBytes` taken off)
 * that leaves {@linkcode HISTORY_ROWS_BYTES_MIN} for messages beside the
 * conversation's record (`recordBytes`), at most `largeBytes`. With today's
 * records that is the 4 KiB bucket.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { historyBucketBytes } from "./_history.ts";
 * assert.equal(historyBucketBytes(100, 16_000, [2048, 4096], 105), 2048 - 105);
 * assert.equal(historyBucketBytes(1100, 16_000, [2048, 4096], 105), 4096 - 105);
 * assert.equal(historyBucketBytes(1100, 3000, [2048, 4096], 105), 3000);
 * ```
 */
export function historyBucketBytes(
  recordBytes: number,
  largeBytes: number,
  buckets: readonly number[],
  frameOverheadBytes: number,
): number {
  for (const bucket of buckets) {
    const bytes = bucket - frameOverheadBytes;
    if (bytes - recordBytes - PAYLOAD_OVERHEAD_BYTES >= HISTORY_ROWS_BYTES_MIN) {
      return Math.min(bytes, largeBytes);
    }
  }
  return largeBytes;
}

/**
 * What a pairing sends a new sibling: the messages of the last `windowMs`
 * (none when 0, any age when undefined), at most `messagesMax` per
 * conversation, the newest ones.
 */
export interface HistoryWindow {
  /** How far back, in ms; `undefined` for any age. */
  windowMs: number | undefined;
  /** The most messages per conversation (0: none). */
  messagesMax: number;
}

/** The default window: the last 30 days, at most 1,000 messages per conversation. */
export const HISTORY_DEFAULT: Readonly<HistoryWindow> = Object.freeze({
  windowMs: HISTORY_WINDOW_MS_DEFAULT,
  messagesMax: HISTORY_MESSAGES_PER_CONVERSATION_MAX,
});

/**
 * Reads a history window as people write it: `0` (none), `N` (the last N
 * messages of each conversation, any age, N ≤ 1,000) or a duration in days
 * or hours (`30d`, `12h`: that time back, at most 1,000 per conversation).
 *
 * @throws {RangeError} for anything else, saying what is expected
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHistoryWindow } from "./_history.ts";
 * assert.deepEqual(parseHistoryWindow("0"), { windowMs: 0, messagesMax: 0 });
 * assert.deepEqual(parseHistoryWindow("500"), { windowMs: undefined, messagesMax: 500 });
 * assert.deepEqual(parseHistoryWindow("7d"), { windowMs: 7 * 86_400_000, messagesMax: 1000 });
 * assert.throws(() => parseHistoryWindow("lots"), RangeError);
 * ```
 */
export function parseHistoryWindow(text: string | number): HistoryWindow {
  const raw = String(text).trim();
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    if (n > HISTORY_MESSAGES_PER_CONVERSATION_MAX) {
      throw new RangeError(
        `history ${raw}: at most ${HISTORY_MESSAGES_PER_CONVERSATION_MAX} messages per conversation`,
      );
    }
    return n === 0 ? { windowMs: 0, messagesMax: 0 } : { windowMs: undefined, messagesMax: n };
  }
  const match = /^(\d+)(d|h)$/.exec(raw);
  if (!match || Number(match[1]) === 0) {
    throw new RangeError(
      `history "${raw}": expected 0 (none), a number of messages per conversation (1..${HISTORY_MESSAGES_PER_CONVERSATION_MAX}) or a time like 30d or 12h`,
    );
  }
  const unitMs = match[2] === "d" ? DAY_MS : 3_600_000;
  return {
    windowMs: Number(match[1]) * unitMs,
    messagesMax: HISTORY_MESSAGES_PER_CONVERSATION_MAX,
  };
}

/** The last time anything happened to a stored message (stored, sent, received, read, failed), in ms. */
export function lastActivityMs(row: DbMessage): number {
  const status = row.message?.status;
  return Math.max(
    row.storedAt,
    status?.sent ?? 0,
    status?.received ?? 0,
    status?.processed ?? 0,
    row.failedAt,
  );
}

/**
 * The rows of one conversation (oldest first) that go: active at or after
 * `sinceMs`, the newest `messagesMax`, oldest first.
 */
export function selectHistory(
  rows: DbMessage[],
  sinceMs: number,
  messagesMax: number,
): DbMessage[] {
  if (messagesMax <= 0) return [];
  const recent = rows.filter((row) => lastActivityMs(row) >= sinceMs);
  return recent.slice(Math.max(0, recent.length - messagesMax));
}

/** A row as it travels in `history`: no local file paths, no local refresh bookkeeping. */
export function rowForHistory(row: DbMessage): DbMessage {
  const copy = clone(DbMessageSchema, row);
  copy.filePaths = [];
  copy.synced = false;
  copy.refreshCount = 0;
  copy.refreshedAt = 0;
  return copy;
}

/**
 * Splits rows into payload-sized groups, in order. Rows are grouped, at most
 * {@linkcode HISTORY_PAYLOAD_MESSAGES_MAX} to a group, into payloads that fit
 * `smallBytes` — the smallest padding bucket, so that a relay sees history
 * in the size class of ordinary messages; a row too large for that travels
 * alone, up to `largeBytes` (the relay's limit). `fixedBytes` is what else
 * each payload carries (the conversation's record). A row too large even alone is left out and counted
 * in `skipped`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { create } from "@bufbuild/protobuf";
 * import { DbMessageSchema } from "../../proto/gen/meow_pb.ts";
 * import { packHistory } from "./_history.ts";
 * const row = (text: string) => create(DbMessageSchema, { peerUid: "bob", message: { data: text } });
 * const rows = [row("a"), row("b"), row("x".repeat(900)), row("c"), row("y".repeat(5000))];
 * const { groups, skipped } = packHistory(rows, { smallBytes: 500, largeBytes: 1500, fixedBytes: 0 });
 * assert.equal(skipped, 1);
 * assert.deepEqual(groups.map((g) => g.map((r) => r.message!.data.length)), [[1, 1], [900], [1]]);
 * ```
 */
export function packHistory(
  rows: DbMessage[],
  { smallBytes, largeBytes, fixedBytes }: {
    smallBytes: number;
    largeBytes: number;
    fixedBytes: number;
  },
): { groups: DbMessage[][]; skipped: number } {
  const small = () => smallBytes - fixedBytes - PAYLOAD_OVERHEAD_BYTES;
  const large = () => largeBytes - fixedBytes - PAYLOAD_OVERHEAD_BYTES;
  const groups: DbMessage[][] = [];
  let group: DbMessage[] = [];
  let bytes = 0;
  let skipped = 0;
  const flush = () => {
    if (group.length > 0) groups.push(group);
    group = [];
    bytes = 0;
  };
  for (const row of rows) {
    // A repeated field's entry: its bytes, a tag and a length of at most five bytes.
    const size = encode(DbMessageSchema, row).length + 6;
    if (group.length === HISTORY_PAYLOAD_MESSAGES_MAX || bytes + size > small()) flush();
    if (size > small()) {
      if (size > large()) {
        skipped++;
        continue;
      }
      groups.push([row]);
      continue;
    }
    group.push(row);
    bytes += size;
  }
  flush();
  return { groups, skipped };
}

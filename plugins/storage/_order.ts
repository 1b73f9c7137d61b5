/**
 * Orderings every adapter shares, so the memory fake sorts exactly as SQLite
 * (BINARY collation: UTF-8 bytes) and Deno KV (key parts: UTF-8 bytes) do.
 *
 * @module
 */
import type { DbMessage, OutboxEntry, QuarantineRecord } from "../../proto/mod.ts";

/**
 * Compares two strings by Unicode code point, which is the order of their
 * UTF-8 bytes. JavaScript's `<` compares UTF-16 code units instead, which
 * differs once a string holds characters above U+FFFF.
 */
export function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (U+D800..DFFF) encode code points above U+FFFF: they sort after
    // every other BMP unit, including U+E000..FFFF.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Orders stored messages by `storedAt`, then by uuid. */
export function compareMessages(a: DbMessage, b: DbMessage): number {
  return Number(a.storedAt) - Number(b.storedAt) ||
    compareStrings(a.message?.status?.uuid ?? "", b.message?.status?.uuid ?? "");
}

/** Orders outbox entries by `queuedAt`, then by id. */
export function compareOutbox(a: OutboxEntry, b: OutboxEntry): number {
  return Number(a.queuedAt) - Number(b.queuedAt) || compareStrings(a.id, b.id);
}

/** Orders quarantined messages by `at`, then by id. */
export function compareQuarantine(a: QuarantineRecord, b: QuarantineRecord): number {
  return Number(a.at) - Number(b.at) || compareStrings(a.id, b.id);
}

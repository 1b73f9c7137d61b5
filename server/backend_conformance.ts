/**
 * The conformance suite every relay backend passes: memory exactly as Deno KV
 * and Redis. Each backend's `*_test.ts` calls {@linkcode backendConformance}
 * with a harness that opens the backend over some storage.
 *
 * @module
 */
import assert from "node:assert/strict";
import { systemClock } from "../kernel/system_clock.ts";
import type { Backend, ServerKeys, StoredMessage } from "./backend.ts";

/** Opens backends over one piece of storage (a path, a Redis key prefix, a MemoryData). */
export interface BackendHarness {
  /** A backend over the storage; a second call is a restart (a new process, a new client). */
  open(): Promise<Backend>;
  /** Removes the storage and closes what the harness opened. */
  cleanup(): Promise<void>;
}

/** Options for {@linkcode backendConformance}. */
export interface ConformanceOptions {
  /**
   * Skip every case, with this reason in the test names (for example "redis-server not installed").
   * @default {undefined}
   */
  ignore?: string;
}

/** How long a wake-up may take before a case fails, in real ms. */
const WAKE_MS_MAX = 5_000;
/** How long a case waits to be sure a watch did not fire, in real ms. */
const QUIET_MS = 150;
const RETENTION_MS = 60_000;
const T0 = 1_700_000_000_000;

function message(queue: string, uuid: string, receivedMs: number, text = uuid): StoredMessage {
  return { queue, deliveryUuid: uuid, receivedMs, bytes: new TextEncoder().encode(text) };
}

function texts(messages: StoredMessage[]): string[] {
  return messages.map((m) => new TextDecoder().decode(m.bytes));
}

const store = (nowMs: number, queueLengthMax = 100) => ({
  nowMs,
  retentionMs: RETENTION_MS,
  queueLengthMax,
});
const read = (nowMs: number, messagesMax = 100) => ({
  nowMs,
  retentionMs: RETENTION_MS,
  messagesMax,
});

/**
 * Registers the conformance cases as `Deno.test`s named `"<name>: <case>"`.
 *
 * @example
 * ```ts ignore
 * import { backendConformance } from "./backend_conformance.ts";
 * import { MemoryBackend, MemoryData } from "./memory.ts";
 * backendConformance("MemoryBackend", () => {
 *   const data = new MemoryData();
 *   return Promise.resolve({
 *     open: () => Promise.resolve(new MemoryBackend({ data })),
 *     cleanup: () => Promise.resolve(),
 *   });
 * });
 * ```
 */
export function backendConformance(
  name: string,
  harness: () => Promise<BackendHarness>,
  options: ConformanceOptions = {},
): void {
  const cases: [string, (open: () => Promise<Backend>) => Promise<void>][] = [
    ["stores, reads oldest first and removes acked messages", roundTrip],
    ["acks only touch the named queues and are idempotent", ackScope],
    ["drops messages older than the retention", retention],
    ["refuses messages beyond the queue length limit", queueLimit],
    ["keeps invitations until they expire or are deleted", invitations],
    ["two pullers never both ack one message away", concurrentPulls],
    ["redelivers after a crash between pull and ack", crashRedelivers],
    ["records a signature once until it expires", signatures],
    ["wakes a watch on a store in a watched queue only", watchWakes],
    ["keeps the first keys it was given", keys],
  ];
  for (const [title, body] of cases) {
    Deno.test({
      name: `${name}: ${title}${options.ignore ? ` (skipped: ${options.ignore})` : ""}`,
      ignore: options.ignore !== undefined,
      // Deno KV's watch and the Redis client keep handles the backends' close() ends late.
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        const h = await harness();
        const opened: Backend[] = [];
        const open = async () => {
          const backend = await h.open();
          opened.push(backend);
          return backend;
        };
        try {
          await body(open);
        } finally {
          for (const backend of opened) await backend.close().catch(() => {});
          await h.cleanup();
        }
      },
    });
  }
}

async function roundTrip(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  const results = await b.storeMessages(
    [message("q1", "b", T0), message("q1", "a", T0), message("q2", "c", T0 - 5)],
    store(T0),
  );
  assert.deepEqual(results, [true, true, true]);
  assert.deepEqual(await b.storeMessages([message("q1", "0", T0 + 1)], store(T0 + 1)), [true]);
  const both = await b.readQueues(["q1", "q2"], read(T0 + 2));
  assert.deepEqual(texts(both), ["c", "a", "b", "0"], "by receive time, then delivery uuid");
  assert.deepEqual(both.map((m) => m.queue), ["q2", "q1", "q1", "q1"]);
  assert.deepEqual(both.map((m) => m.receivedMs), [T0 - 5, T0, T0, T0 + 1]);
  assert.deepEqual(texts(await b.readQueues(["q1", "q2"], read(T0 + 2, 2))), ["c", "a"]);
  assert.deepEqual(texts(await b.readQueues(["nobody"], read(T0 + 2))), []);
  assert.equal(await b.ackMessages(["q1"], ["a", "0"]), 2);
  assert.deepEqual(texts(await b.readQueues(["q1"], read(T0 + 2))), ["b"]);
  const big = new Uint8Array(20_000).map((_, i) => i % 251);
  await b.storeMessages(
    [{ queue: "q3", deliveryUuid: "z", receivedMs: T0, bytes: big }],
    store(T0),
  );
  assert.deepEqual((await b.readQueues(["q3"], read(T0)))[0].bytes, big, "bytes survive intact");
}

async function ackScope(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.storeMessages([message("mine", "m1", T0), message("theirs", "t1", T0)], store(T0));
  assert.equal(await b.ackMessages(["mine"], ["t1", "unknown"]), 0);
  assert.equal((await b.readQueues(["theirs"], read(T0))).length, 1);
  assert.equal(await b.ackMessages(["mine"], ["m1"]), 1);
  assert.equal(await b.ackMessages(["mine"], ["m1"]), 0, "a second ack is a no-op");
  assert.equal(await b.ackMessages([], ["t1"]), 0);
}

async function retention(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.storeMessages([message("q", "old", T0)], store(T0));
  await b.storeMessages([message("q", "new", T0 + 30_000)], store(T0 + 30_000));
  assert.deepEqual(texts(await b.readQueues(["q"], read(T0 + RETENTION_MS))), ["old", "new"]);
  assert.deepEqual(texts(await b.readQueues(["q"], read(T0 + RETENTION_MS + 1))), ["new"]);
  // Expired messages do not count towards the length limit.
  const later = T0 + RETENTION_MS + 1;
  assert.deepEqual(await b.storeMessages([message("q", "x", later)], store(later, 2)), [true]);
  assert.equal(await b.sweep(T0 + 30_000 + RETENTION_MS + 1, RETENTION_MS), 1, "sweep drops 'new'");
  assert.deepEqual(texts(await b.readQueues(["q"], read(later))), ["x"]);
}

async function queueLimit(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  const batch = [message("q", "1", T0), message("q", "2", T0), message("other", "3", T0)];
  batch.push(message("q", "4", T0));
  assert.deepEqual(await b.storeMessages(batch, store(T0, 2)), [true, true, true, false]);
  assert.deepEqual(await b.storeMessages([message("q", "5", T0)], store(T0, 2)), [false]);
  assert.equal(await b.ackMessages(["q"], ["1"]), 1);
  assert.deepEqual(await b.storeMessages([message("q", "6", T0)], store(T0, 2)), [true]);
  assert.deepEqual(texts(await b.readQueues(["q"], read(T0))), ["2", "6"]);
}

async function invitations(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  const record = {
    payload: new Uint8Array([1, 2]),
    passwordSha256: new Uint8Array([9]),
    expiresMs: T0 + 1000,
  };
  assert.equal(await b.putInvitation("C1", record, T0), true);
  assert.equal(await b.putInvitation("C1", { ...record, payload: new Uint8Array([3]) }, T0), false);
  const got = await b.getInvitation("C1", T0 + 999);
  assert.deepEqual(got?.payload, new Uint8Array([1, 2]));
  assert.deepEqual(got?.passwordSha256, new Uint8Array([9]));
  assert.equal(got?.expiresMs, T0 + 1000);
  assert.equal(await b.getInvitation("C1", T0 + 1000), undefined, "expired");
  assert.equal(await b.getInvitation("C2", T0), undefined);
  const again = { ...record, passwordSha256: new Uint8Array(0), expiresMs: T0 + 5000 };
  assert.equal(await b.putInvitation("C1", again, T0 + 1000), true, "an expired code is free");
  assert.deepEqual((await b.getInvitation("C1", T0 + 1000))?.passwordSha256, new Uint8Array(0));
  assert.equal(await b.deleteInvitation("C1", T0 + 1000), true);
  assert.equal(await b.deleteInvitation("C1", T0 + 1000), false);
  assert.equal(await b.getInvitation("C1", T0 + 1000), undefined);
}

async function concurrentPulls(open: () => Promise<Backend>): Promise<void> {
  const first = await open();
  const second = await open();
  const batch = Array.from({ length: 10 }, (_, i) => message("q", `m${i}`, T0 + i));
  await first.storeMessages(batch, store(T0 + 10));
  const [a, b] = await Promise.all([
    first.readQueues(["q"], read(T0 + 10)),
    second.readQueues(["q"], read(T0 + 10)),
  ]);
  assert.equal(a.length, 10);
  assert.equal(b.length, 10);
  const uuids = a.map((m) => m.deliveryUuid);
  const [ackedA, ackedB] = await Promise.all([
    first.ackMessages(["q"], uuids.slice(0, 7)),
    second.ackMessages(["q"], uuids.slice(3)),
  ]);
  assert.equal(ackedA + ackedB, 10, "each message is acked away exactly once");
  assert.deepEqual(await first.readQueues(["q"], read(T0 + 10)), []);
  assert.deepEqual(await second.readQueues(["q"], read(T0 + 10)), []);
  // Both acked away: the queue has room for a full batch again.
  assert.deepEqual(
    await second.storeMessages([message("q", "n1", T0 + 11)], store(T0 + 11, 1)),
    [true],
  );
}

async function crashRedelivers(open: () => Promise<Backend>): Promise<void> {
  const before = await open();
  await before.storeMessages([message("q", "m1", T0), message("q", "m2", T0)], store(T0));
  const pulled = await before.readQueues(["q"], read(T0));
  assert.equal(pulled.length, 2);
  await before.close(); // The relay dies before the client's ack arrives.
  const after = await open();
  const again = await after.readQueues(["q"], read(T0));
  assert.deepEqual(texts(again), ["m1", "m2"]);
  assert.equal(await after.ackMessages(["q"], again.map((m) => m.deliveryUuid)), 2);
  const third = await open();
  assert.deepEqual(await third.readQueues(["q"], read(T0)), []);
}

async function signatures(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  assert.equal(await b.useSignature("sig-1", T0 + 1000, T0), true);
  assert.equal(await b.useSignature("sig-1", T0 + 1000, T0 + 999), false);
  assert.equal(await b.useSignature("sig-2", T0 + 1000, T0), true);
  const results = await Promise.all([1, 2, 3].map(() => b.useSignature("sig-3", T0 + 1000, T0)));
  assert.deepEqual(results.sort(), [false, false, true], "exactly one concurrent use wins");
  const restarted = await open();
  assert.equal(
    await restarted.useSignature("sig-1", T0 + 1000, T0 + 10),
    false,
    "survives restarts",
  );
  assert.equal(await restarted.useSignature("sig-1", T0 + 2000, T0 + 1000), true, "expired");
}

async function watchWakes(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  const watch = await b.watchQueues(["q1", "q2"]);
  let fired = false;
  watch.changed.then(() => (fired = true));
  await b.storeMessages([message("elsewhere", "e", T0)], store(T0));
  await systemClock.sleep(QUIET_MS);
  assert.equal(fired, false, "a store elsewhere does not wake the watch");
  await b.storeMessages([message("q2", "m", T0)], store(T0));
  const bound = new AbortController();
  await Promise.race([
    watch.changed,
    systemClock.sleep(WAKE_MS_MAX, bound.signal).then(() => {
      throw new Error(`the watch did not wake within ${WAKE_MS_MAX} ms of a store`);
    }),
  ]).finally(() => bound.abort());
  watch.close();
  watch.close();
  // A closed watch stays quiet, and a full queue (nothing stored) wakes nobody.
  const quiet = await b.watchQueues(["q3"]);
  let woke = false;
  quiet.changed.then(() => (woke = true));
  await b.storeMessages([message("q3", "a", T0)], store(T0, 0));
  await systemClock.sleep(QUIET_MS);
  assert.equal(woke, false, "a refused store wakes nobody");
  quiet.close();
}

async function keys(open: () => Promise<Backend>): Promise<void> {
  const pair = (n: number) => ({
    privateKey: new Uint8Array(32).fill(n),
    publicKey: new Uint8Array(32).fill(n + 1),
  });
  const first: ServerKeys = { encryption: pair(1), signing: pair(3) };
  const second: ServerKeys = { encryption: pair(5), signing: pair(7) };
  const b = await open();
  assert.deepEqual(await b.loadOrStoreKeys(first), first);
  assert.deepEqual(await b.loadOrStoreKeys(second), first);
  const restarted = await open();
  assert.deepEqual(await restarted.loadOrStoreKeys(second), first);
}

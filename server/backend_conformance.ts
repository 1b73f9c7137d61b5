/**
 * The conformance suite every relay backend passes: memory exactly as Deno KV
 * and Redis. Each backend's `*_test.ts` calls {@linkcode backendConformance}
 * with a harness that opens the backend over some storage.
 *
 * @module
 */
import assert from "node:assert/strict";
import { systemClock } from "../ports/mod.ts";
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
    ["two pullers never both ack one message away", concurrentPulls],
    ["redelivers after a crash between pull and ack", crashRedelivers],
    ["records a signature once until it expires", signatures],
    ["records a token MAC once, and refuses revoked tokens", tokenMacs],
    ["wakes a watch on a store in a watched queue only", watchWakes],
    ["keeps the first keys it was given", keys],
    ["creates a mailbox unless a live one holds the nameplate", mailboxCreate],
    ["joins a second side to a mailbox and refuses a third", mailboxJoin],
    ["numbers mailbox posts and answers the other side's from `after`", mailboxPosts],
    ["refuses mailbox posts beyond postsMax", mailboxPostsMax],
    ["closes a mailbox for its members only, for everyone", mailboxClose],
    ["expires mailboxes, and sweep drops them", mailboxExpiry],
    ["wakes a mailbox watch on a post in that mailbox only", mailboxWatch],
    ["wakes a mailbox watch when a member closes the mailbox", mailboxWatchClose],
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

async function tokenMacs(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  const token = { lookupKey: "q1", issuedMs: T0 };
  assert.equal(await b.useTokenMac("mac-1", T0 + 1000, T0, token), "ok");
  assert.equal(await b.useTokenMac("mac-1", T0 + 1000, T0 + 999, token), "used");
  await b.revokePullTokens("q1", T0 + 10, T0 + 5000);
  assert.equal(await b.useTokenMac("mac-2", T0 + 1000, T0 + 20, token), "revoked");
  assert.equal(
    await b.useTokenMac("mac-3", T0 + 1000, T0 + 20, { lookupKey: "q2", issuedMs: T0 }),
    "ok",
    "another key's tokens are not revoked",
  );
  assert.equal(
    await b.useTokenMac("mac-2", T0 + 1000, T0 + 20, { lookupKey: "q1", issuedMs: T0 + 11 }),
    "ok",
    "a token issued after the revocation is good, and the refused MAC was not recorded",
  );
  // A later revocation moves the mark on; an earlier one never moves it back.
  await b.revokePullTokens("q1", T0 + 30, T0 + 5000);
  await b.revokePullTokens("q1", T0 + 15, T0 + 5000);
  assert.equal(
    await b.useTokenMac("mac-4", T0 + 1000, T0 + 40, { lookupKey: "q1", issuedMs: T0 + 20 }),
    "revoked",
  );
  const restarted = await open();
  assert.equal(
    await restarted.useTokenMac("mac-5", T0 + 1000, T0 + 40, token),
    "revoked",
    "survives restarts",
  );
  const other = { lookupKey: "q3", issuedMs: T0 };
  const results = await Promise.all(
    [1, 2, 3].map(() => restarted.useTokenMac("mac-6", T0 + 1000, T0 + 40, other)),
  );
  assert.deepEqual(results.sort(), ["ok", "used", "used"], "exactly one concurrent use wins");
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
  await within(WAKE_MS_MAX, "the watch woken by a store", () => watch.changed);
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

const A = new Uint8Array(16).fill(0xa);
const B = new Uint8Array(16).fill(0xb);
const C = new Uint8Array(16).fill(0xc);
const bytes = (text: string) => new TextEncoder().encode(text);
const life = (nowMs = T0) => ({ side: A, expiresMs: nowMs + 10_000 });
const step = (side: Uint8Array, post?: string, after = 0, postsMax = 8) => ({
  side,
  post: post === undefined ? undefined : bytes(post),
  after,
  postsMax,
});
/** The posts of a step as "index:side:text" (side as the letter of A, B or C). */
function posts(
  result: { posts: { index: number; side: Uint8Array; body: Uint8Array }[] } | undefined,
) {
  assert.ok(result, "a live mailbox this side may use");
  return result.posts.map((p) =>
    `${p.index}:${"?ABC"[p.side[0] - 9] ?? "?"}:${new TextDecoder().decode(p.body)}`
  );
}

async function mailboxCreate(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  assert.equal(await b.createMailbox("M1", life(), T0), true);
  assert.equal(await b.createMailbox("M1", { side: B, expiresMs: T0 + 10_000 }, T0 + 1), false);
  assert.equal(await b.createMailbox("M2", { ...life(), post: bytes("p") }, T0), true);
  const restarted = await open();
  assert.equal(await restarted.createMailbox("M1", life(), T0 + 2), false, "survives restarts");
  assert.equal(
    await restarted.createMailbox("M2", life(T0 + 10_000), T0 + 10_000),
    true,
    "expired",
  );
  assert.deepEqual(posts(await restarted.stepMailbox("M2", step(B), T0 + 10_001)), [], "a new one");
  const made = await Promise.all(
    [A, B, C].map((side) => b.createMailbox("M3", { side, expiresMs: T0 + 10_000 }, T0)),
  );
  assert.deepEqual(made.sort(), [false, false, true], "exactly one concurrent create wins");
}

async function mailboxJoin(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  assert.equal(await b.stepMailbox("M1", step(A), T0), undefined, "unknown");
  await b.createMailbox("M1", life(), T0);
  const first = await b.stepMailbox("M1", step(A), T0);
  assert.equal(first?.member, true, "the creator is a member");
  assert.equal(first?.expiresMs, T0 + 10_000);
  assert.equal((await b.stepMailbox("M1", step(B), T0))?.member, false, "B joins");
  assert.equal((await b.stepMailbox("M1", step(B), T0))?.member, true, "B is a member now");
  assert.equal(await b.stepMailbox("M1", step(C), T0), undefined, "both places are taken");
  assert.equal(await b.stepMailbox("M1", step(C, "x"), T0), undefined, "with or without a post");
  assert.deepEqual(posts(await b.stepMailbox("M1", step(A), T0)), [], "C's post went nowhere");
  await b.createMailbox("M2", life(), T0);
  const raced = await Promise.all([B, C].map((side) => b.stepMailbox("M2", step(side), T0)));
  assert.equal(raced.filter((r) => r !== undefined).length, 1, "one newcomer takes the place");
}

async function mailboxPosts(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.createMailbox("M1", { ...life(), post: bytes("a0") }, T0);
  assert.deepEqual(posts(await b.stepMailbox("M1", step(A), T0)), [], "not its own posts");
  assert.deepEqual(posts(await b.stepMailbox("M1", step(B, "b1"), T0)), ["0:A:a0"]);
  assert.deepEqual(posts(await b.stepMailbox("M1", step(A, "a2"), T0)), ["1:B:b1"]);
  assert.deepEqual(posts(await b.stepMailbox("M1", step(B, undefined, 1), T0)), ["2:A:a2"]);
  assert.deepEqual(posts(await b.stepMailbox("M1", step(B, undefined, 3), T0)), []);
  const restarted = await open();
  assert.deepEqual(posts(await restarted.stepMailbox("M1", step(B), T0)), ["0:A:a0", "2:A:a2"]);
  const big = new Uint8Array(20_000).map((_, i) => i % 251);
  await restarted.stepMailbox("M1", { ...step(A), post: big }, T0);
  const [last] = (await b.stepMailbox("M1", step(B, undefined, 3), T0))!.posts;
  assert.equal(last.index, 3);
  assert.deepEqual(last.body, big, "bytes survive intact");
  assert.deepEqual(last.side, A);
}

async function mailboxPostsMax(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.createMailbox("M1", { ...life(), post: bytes("a0") }, T0);
  assert.equal((await b.stepMailbox("M1", step(B, "b1", 0, 3), T0))?.full, false);
  assert.equal((await b.stepMailbox("M1", step(A, "a2", 0, 3), T0))?.full, false);
  const refused = await b.stepMailbox("M1", step(B, "b3", 0, 3), T0);
  assert.equal(refused?.full, true, "the fourth post is refused");
  assert.deepEqual(posts(refused), ["0:A:a0", "2:A:a2"], "posts are still answered");
  assert.deepEqual(posts(await b.stepMailbox("M1", step(A), T0)), ["1:B:b1"], "b3 was not kept");
  assert.equal((await b.stepMailbox("M1", step(A, undefined, 0, 3), T0))?.full, false);
}

async function mailboxClose(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.createMailbox("M1", { ...life(), post: bytes("a0") }, T0);
  await b.stepMailbox("M1", step(B, "b1"), T0);
  assert.equal(await b.closeMailbox("M1", C, T0), false, "not a member");
  assert.equal(await b.closeMailbox("NONE", A, T0), false, "unknown");
  assert.equal((await b.stepMailbox("M1", step(A), T0))?.member, true, "still there");
  assert.equal(await b.closeMailbox("M1", B, T0), true, "the second member closes it");
  assert.equal(await b.stepMailbox("M1", step(A), T0), undefined, "gone for the creator");
  assert.equal(await b.stepMailbox("M1", step(C), T0), undefined, "and for a newcomer");
  assert.equal(await b.closeMailbox("M1", A, T0), false, "closed once");
  assert.equal(await b.createMailbox("M1", { side: C, expiresMs: T0 + 10_000 }, T0), true);
  assert.deepEqual(
    posts(await b.stepMailbox("M1", step(A), T0)),
    [],
    "a new mailbox, no old posts",
  );
  const first = await b.createMailbox("M2", life(), T0);
  assert.equal(first, true);
  assert.equal(await b.closeMailbox("M2", A, T0 + 10_000), false, "expired");
}

async function mailboxExpiry(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.createMailbox("OLD", { ...life(), post: bytes("a0") }, T0);
  await b.createMailbox("NEW", { side: A, expiresMs: T0 + 20_000 }, T0);
  assert.equal((await b.stepMailbox("OLD", step(B), T0 + 9_999))?.member, false);
  assert.equal(await b.stepMailbox("OLD", step(A), T0 + 10_000), undefined, "expired");
  assert.equal(await b.stepMailbox("OLD", step(B), T0 + 10_000), undefined, "for every side");
  assert.equal(await b.sweep(T0 + 10_000, RETENTION_MS), 0, "sweep counts messages only");
  // Back in time, an unswept mailbox would be live: sweep removed it.
  assert.equal(await b.stepMailbox("OLD", step(A), T0), undefined, "sweep dropped it");
  assert.equal((await b.stepMailbox("NEW", step(A), T0))?.member, true, "a live one stays");
}

async function mailboxWatch(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.createMailbox("M1", life(), T0);
  await b.createMailbox("M2", life(), T0);
  const watch = await b.watchMailbox("M1");
  let fired = false;
  watch.changed.then(() => (fired = true));
  await b.stepMailbox("M1", step(B), T0);
  await b.stepMailbox("M2", step(A, "elsewhere"), T0);
  await b.stepMailbox("M1", step(C, "refused"), T0);
  await b.stepMailbox("M1", step(B, "full", 0, 0), T0);
  await systemClock.sleep(QUIET_MS);
  assert.equal(fired, false, "a join, a post elsewhere and refused posts wake nobody");
  const other = await open();
  await other.stepMailbox("M1", step(B, "b0"), T0);
  await within(WAKE_MS_MAX, "the mailbox watch woken by a post", () => watch.changed);
  watch.close();
  watch.close();
}

async function mailboxWatchClose(open: () => Promise<Backend>): Promise<void> {
  const b = await open();
  await b.createMailbox("M3", life(), T0);
  await b.stepMailbox("M3", step(B), T0);
  const watch = await b.watchMailbox("M3");
  const other = await open();
  assert.equal(await other.closeMailbox("M3", A, T0), true);
  await within(WAKE_MS_MAX, "the mailbox watch woken by a close", () => watch.changed);
  watch.close();
}

/**
 * `body`'s result, or a failure naming `what` once `ms` of real time passed: a watch or a long
 * poll that nobody wakes would wait for ever (on a manual clock, or for a store that never comes).
 */
export async function within<T>(ms: number, what: string, body: () => Promise<T>): Promise<T> {
  const bound = new AbortController();
  try {
    return await Promise.race([
      body(),
      systemClock.sleep(ms, bound.signal).then((): never => {
        throw new Error(`${what}: not within ${ms} ms`);
      }),
    ]);
  } finally {
    bound.abort();
  }
}

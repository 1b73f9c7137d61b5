import assert from "node:assert/strict";
import { join } from "node:path";
import { type EventInfo, Scheduler } from "./scheduler.ts";

Deno.test("Scheduler runs events by time, then in the order they were scheduled", async () => {
  const scheduler = new Scheduler();
  const seen: string[] = [];
  const add = (atMs: number, name: string) =>
    scheduler.schedule(atMs, () => void seen.push(`${name}@${scheduler.now}`), name);
  add(30, "d");
  add(10, "a");
  add(20, "b");
  add(10, "a2");
  add(20, "c");
  add(10, "a3");
  assert.equal(scheduler.pending(), 6);
  await scheduler.runUntil(100);
  assert.deepEqual(seen, ["a@10", "a2@10", "a3@10", "b@20", "c@20", "d@30"]);
  assert.equal(scheduler.pending(), 0);
  assert.equal(scheduler.now, 100);
  assert.equal(scheduler.eventsRun, 6);
});

Deno.test("Scheduler keeps (time, sequence) order over many random-looking insertions", async () => {
  const scheduler = new Scheduler();
  const seen: [number, number][] = [];
  // A fixed pseudo-random sequence (an LCG) so the heap sees every shape of insertion.
  let x = 12345;
  for (let seq = 0; seq < 2_000; seq++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const atMs = x % 50;
    scheduler.schedule(atMs, () => void seen.push([atMs, seq]));
  }
  await scheduler.runUntil(50);
  const sorted = [...seen].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  assert.deepEqual(seen, sorted);
  assert.equal(seen.length, 2_000);
});

Deno.test("Scheduler.cancel() removes a pending event, anywhere in the heap, once", async () => {
  const scheduler = new Scheduler();
  const seen: number[] = [];
  const ids = Array.from(
    { length: 100 },
    (_, i) => scheduler.schedule((i * 37) % 100, () => void seen.push(i)),
  );
  for (let i = 0; i < 100; i += 3) assert.equal(scheduler.cancel(ids[i]), true);
  assert.equal(scheduler.cancel(ids[0]), false);
  assert.equal(scheduler.cancel(9_999), false);
  assert.equal(scheduler.pending(), 66);
  await scheduler.runUntil(100);
  assert.equal(seen.length, 66);
  assert.ok(seen.every((i) => i % 3 !== 0));
  assert.deepEqual(seen, [...seen].sort((a, b) => ((a * 37) % 100) - ((b * 37) % 100)));
  // An event that already ran cannot be cancelled.
  const ran = scheduler.schedule(100, () => {});
  await scheduler.runUntil(100);
  assert.equal(scheduler.cancel(ran), false);
});

Deno.test("Scheduler.cancel() from inside an event stops a later event", async () => {
  const scheduler = new Scheduler();
  const seen: string[] = [];
  const later = scheduler.schedule(20, () => void seen.push("later"));
  scheduler.schedule(10, () => void scheduler.cancel(later));
  await scheduler.runUntil(30);
  assert.deepEqual(seen, []);
});

Deno.test("Scheduler.schedule() refuses a time in the past or not a time", () => {
  const scheduler = new Scheduler({ startMs: 100 });
  assert.throws(() => scheduler.schedule(99, () => {}), RangeError);
  assert.throws(() => scheduler.schedule(NaN, () => {}), RangeError);
  assert.throws(() => scheduler.schedule(Infinity, () => {}), RangeError);
  scheduler.schedule(100, () => {});
  assert.equal(scheduler.pending(), 1);
});

Deno.test("Scheduler.runUntil() leaves later events pending and runs events at endMs", async () => {
  const scheduler = new Scheduler();
  const seen: number[] = [];
  for (const t of [5, 10, 11]) scheduler.schedule(t, () => void seen.push(t));
  await scheduler.runUntil(10);
  assert.deepEqual(seen, [5, 10]);
  assert.equal(scheduler.now, 10);
  assert.equal(scheduler.pending(), 1);
  await assert.rejects(() => scheduler.runUntil(9), RangeError);
  await scheduler.runUntil(11);
  assert.deepEqual(seen, [5, 10, 11]);
});

Deno.test("Scheduler.runUntil() stops at the first event after which idle() holds", async () => {
  const scheduler = new Scheduler();
  let inFlight = 0;
  for (const t of [10, 20, 30, 40]) {
    scheduler.schedule(t, async () => {
      inFlight++;
      await Promise.resolve();
      if (t === 30) inFlight = 0;
    });
  }
  let checks = 0;
  await scheduler.runUntil(1_000, {
    idle: () => {
      checks++;
      return inFlight === 0;
    },
  });
  assert.equal(scheduler.now, 30);
  assert.equal(checks, 3);
  assert.equal(scheduler.pending(), 1);
});

Deno.test("Scheduler drains a chain of async callbacks before the next event, deterministically", async () => {
  const run = async (): Promise<string[]> => {
    const scheduler = new Scheduler();
    const log: string[] = [];
    // Each callback awaits many microtasks (nested async functions), then
    // schedules its successor at the *same* time. A scheduler that popped the
    // next event before the chain finished would interleave "other" earlier.
    const deep = async (depth: number): Promise<void> => {
      if (depth > 0) await deep(depth - 1);
      await Promise.resolve();
    };
    const step = (n: number) => async () => {
      log.push(`step${n}@${scheduler.now}`);
      await deep(50);
      await new Promise<void>((resolve) => queueMicrotask(resolve));
      for (let i = 0; i < 5_000; i++) await Promise.resolve();
      if (n < 5) scheduler.schedule(scheduler.now, step(n + 1), `step${n + 1}`);
    };
    scheduler.schedule(0, step(1), "step1");
    scheduler.schedule(0, () => void log.push(`other@${scheduler.now}`), "other");
    scheduler.schedule(1, () => void log.push(`last@${scheduler.now}`), "last");
    await scheduler.runUntil(10);
    return log;
  };
  const first = await run();
  // step2 was scheduled while step1 drained: after "other", which was already queued at time 0.
  assert.deepEqual(first, [
    "step1@0",
    "other@0",
    "step2@0",
    "step3@0",
    "step4@0",
    "step5@0",
    "last@1",
  ]);
  assert.deepEqual(await run(), first);
});

Deno.test("Scheduler runs an hour of virtual time with 10,000 events in well under a second", async () => {
  const scheduler = new Scheduler();
  const hourMs = 3_600_000;
  const devices = 10;
  const intervalMs = (hourMs / 10_000) * devices; // 10 devices x 1,000 polls each
  let events = 0;
  for (let d = 0; d < devices; d++) {
    const poll = async () => {
      events++;
      await Promise.resolve();
      await Promise.resolve();
      if (scheduler.now + intervalMs < hourMs) {
        scheduler.schedule(scheduler.now + intervalMs, poll, `device${d}: poll`);
      }
    };
    scheduler.schedule(d, poll, `device${d}: poll`);
  }
  const started = performance.now();
  await scheduler.runUntil(hourMs);
  const wallMs = performance.now() - started;
  assert.equal(events, 10_000);
  assert.equal(scheduler.eventsRun, 10_000);
  assert.equal(scheduler.now, hourMs);
  assert.ok(wallMs < 1_000, `took ${wallMs}ms of wall time`);
});

Deno.test("Scheduler waits for a tracked promise (real I/O) before the next event", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_scheduler_" });
  try {
    const scheduler = new Scheduler();
    const path = join(dir, "state.txt");
    const seen: string[] = [];
    scheduler.schedule(1, async () => {
      // Several round trips through the OS, then more microtasks, all before event 2.
      await scheduler.track(Deno.writeTextFile(path, "one"));
      await scheduler.track(Deno.writeTextFile(path, "two", { append: true }));
      seen.push(await scheduler.track(Deno.readTextFile(path)));
    }, "write");
    scheduler.schedule(1, async () => {
      seen.push(`next sees ${await scheduler.track(Deno.readTextFile(path))}`);
    }, "read");
    await scheduler.runUntil(1);
    assert.deepEqual(seen, ["onetwo", "next sees onetwo"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Scheduler.runUntil() fails naming the event whose callback threw or rejected", async () => {
  const scheduler = new Scheduler();
  scheduler.schedule(5, () => {
    throw new Error("boom");
  }, "sync");
  const sync = await scheduler.runUntil(10).then(() => undefined, (e) => e);
  assert.match(sync.message, /^Event "sync" at 5ms failed: boom$/);
  assert.equal(sync.cause.message, "boom");

  scheduler.schedule(7, async () => {
    await Promise.resolve();
    throw new Error("later");
  }, "async");
  scheduler.schedule(8, () => assert.fail("must not run after a failure"), "after");
  await assert.rejects(() => scheduler.runUntil(10), /Event "async" at 7ms failed: later/);
  assert.equal(scheduler.pending(), 1);
});

Deno.test("Scheduler refuses to run twice at once, and reports every event to onEvent", async () => {
  const events: EventInfo[] = [];
  const scheduler = new Scheduler({ onEvent: (e) => events.push(e) });
  const id = scheduler.schedule(3, async () => {
    await assert.rejects(() => scheduler.runUntil(10), TypeError);
  }, "nested");
  scheduler.schedule(4, () => {});
  await scheduler.runUntil(10);
  assert.deepEqual(events, [{ id, atMs: 3, label: "nested" }, { id: id + 1, atMs: 4, label: "" }]);
});

Deno.test("Scheduler declares a livelock when time stops moving", async () => {
  const scheduler = new Scheduler({ eventsAtOneTimeMax: 100 });
  const spin = () => void scheduler.schedule(scheduler.now, spin, "spin");
  scheduler.schedule(0, spin, "spin");
  await assert.rejects(() => scheduler.runUntil(10), /livelock.*eventsAtOneTimeMax/);
});

Deno.test("Scheduler declares a drain stuck when tracked work keeps spawning more", async () => {
  const scheduler = new Scheduler({ drainRoundsMax: 20 });
  // Real I/O each time: a microtask-only loop would never yield to anything.
  const forever = (): void => void scheduler.track(Deno.stat(".").then(forever));
  scheduler.schedule(0, forever, "forever");
  await assert.rejects(() => scheduler.runUntil(10), /"forever" at 0ms.*drainRoundsMax/);
});

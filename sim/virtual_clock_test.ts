import assert from "node:assert/strict";
import { Scheduler } from "./scheduler.ts";
import { VIRTUAL_EPOCH_MS, VirtualClock } from "./virtual_clock.ts";

Deno.test("VIRTUAL_EPOCH_MS is 2026-01-01T00:00:00Z", () => {
  assert.equal(VIRTUAL_EPOCH_MS, Date.UTC(2026, 0, 1));
});

Deno.test("VirtualClock.now() is the epoch plus the scheduler's time", async () => {
  const scheduler = new Scheduler();
  const clock = new VirtualClock(scheduler);
  assert.equal(clock.now(), VIRTUAL_EPOCH_MS);
  await scheduler.runUntil(1_500);
  assert.equal(clock.now(), VIRTUAL_EPOCH_MS + 1_500);
  assert.equal(new VirtualClock(scheduler, { epochMs: 0 }).now(), 1_500);
});

Deno.test("VirtualClock.sleep() wakes at now + ms, in order with other events", async () => {
  const scheduler = new Scheduler();
  const clock = new VirtualClock(scheduler, { label: "alice/phone" });
  const seen: string[] = [];
  const labels: string[] = [];
  const traced = new Scheduler({ onEvent: (e) => labels.push(e.label) });
  const tracedClock = new VirtualClock(traced, { label: "alice/phone" });
  traced.schedule(0, () => tracedClock.sleep(5));
  await traced.runUntil(10);
  assert.deepEqual(labels, ["", "alice/phone: sleep 5ms"]);

  scheduler.schedule(0, async () => {
    await clock.sleep(1_000);
    seen.push(`woke@${scheduler.now}`);
    await clock.sleep(-5); // counts as 0
    seen.push(`woke again@${scheduler.now}`);
  });
  scheduler.schedule(1_000, () => void seen.push(`event@${scheduler.now}`));
  await scheduler.runUntil(2_000);
  // The wake-up at 1000 was scheduled after the event at 1000, so it runs second.
  assert.deepEqual(seen, ["event@1000", "woke@1000", "woke again@1000"]);
});

Deno.test("VirtualClock.sleep() rejects with the signal's reason and cancels its wake-up", async () => {
  const scheduler = new Scheduler();
  const clock = new VirtualClock(scheduler);
  const controller = new AbortController();
  const reason = new Error("device crashed");
  const outcome: string[] = [];
  scheduler.schedule(0, async () => {
    try {
      await clock.sleep(60_000, controller.signal);
      outcome.push("slept");
    } catch (e) {
      outcome.push(e === reason ? `aborted@${scheduler.now}` : `wrong ${e}`);
    }
  });
  scheduler.schedule(10, () => controller.abort(reason));
  await scheduler.runUntil(120_000);
  assert.deepEqual(outcome, ["aborted@10"]);
  assert.equal(scheduler.eventsRun, 2); // the wake-up at 60s never ran

  await assert.rejects(() => clock.sleep(5, controller.signal), (e) => e === reason);
  assert.equal(scheduler.pending(), 0);
});

Deno.test("VirtualClock.sleep(Infinity) waits for its signal alone", async () => {
  const scheduler = new Scheduler();
  const clock = new VirtualClock(scheduler);
  const controller = new AbortController();
  const slept = clock.sleep(Infinity, controller.signal);
  assert.equal(scheduler.pending(), 0);
  controller.abort("stop");
  await assert.rejects(() => slept, (e) => e === "stop");
  assert.throws(() => clock.sleep(NaN), RangeError);
});

Deno.test("VirtualClock.sleep() without a signal resolves and leaves no listener behind", async () => {
  const scheduler = new Scheduler();
  const clock = new VirtualClock(scheduler);
  const controller = new AbortController();
  let woke = false;
  scheduler.schedule(0, async () => {
    await clock.sleep(10, controller.signal);
    woke = true;
  });
  await scheduler.runUntil(10);
  assert.equal(woke, true);
  controller.abort(); // must not touch the finished sleep
  assert.equal(scheduler.pending(), 0);
});

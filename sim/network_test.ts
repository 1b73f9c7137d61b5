import assert from "node:assert/strict";
import { SeededRandom } from "../crypto/mod.ts";
import { MemoryBackend, ServerCore } from "../server/mod.ts";
import { SimTransport } from "./network.ts";
import { Scheduler } from "./scheduler.ts";
import { VirtualClock } from "./virtual_clock.ts";

/** A signal that counts the abort listeners left on it. */
function countingSignal(): { signal: AbortSignal; listeners: () => number } {
  const signal = new AbortController().signal;
  let listeners = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<AbortSignal["addEventListener"]>) => {
    listeners++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<AbortSignal["removeEventListener"]>) => {
    listeners--;
    remove(...args);
  };
  return { signal, listeners: () => listeners };
}

Deno.test("SimTransport leaves no abort listener on a signal that outlives its requests", async () => {
  const scheduler = new Scheduler();
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock: new VirtualClock(scheduler),
    random: new SeededRandom("relay"),
  });
  const transport = new SimTransport({
    endpoint: { ref: "u/d", reachable: () => true, incarnation: 0 },
    relays: new Map([[core.card().uid, core]]),
    scheduler,
    network: { latencyMs: { min: 5, max: 5 }, reorder: 0, duplicate: 0, drop: 0, corrupt: 0 },
    random: new SeededRandom("network"),
    track: (promise) => scheduler.track(promise),
  });
  const { signal, listeners } = countingSignal();
  const answers = [1, 2, 3].map(() =>
    transport.exchange(core.card(), new Uint8Array([1, 2, 3]), signal)
  );
  assert.equal(listeners(), 3, "each request in flight listens");
  await scheduler.runUntil(1_000);
  assert.equal((await Promise.all(answers)).length, 3);
  assert.equal(listeners(), 0, "every answered request took its listener off");
  assert.equal(transport.inFlight, 0);
});

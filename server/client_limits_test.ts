import assert from "node:assert/strict";
import { WindowLimiter } from "./client_limits.ts";

const T0 = 1_700_000_020_000; // 40 s into a minute window

Deno.test("WindowLimiter.take() allows takesMax per client and window, then says when to retry", () => {
  const limiter = new WindowLimiter({ takesMax: 3, windowMs: 60_000, clientsMax: 10 });
  for (let i = 0; i < 3; i++) assert.equal(limiter.take("a", T0 + i).ok, true);
  const refused = limiter.take("a", T0 + 5);
  assert.deepEqual(refused, { ok: false, retryAfterMs: 19_995 });
  assert.equal(limiter.take("b", T0 + 5).ok, true, "clients count apart");
  assert.equal(limiter.take("a", T0 + 20_000).ok, true, "the next window starts afresh");
});

Deno.test("WindowLimiter.refund() gives a take back in its own window only", () => {
  const limiter = new WindowLimiter({ takesMax: 1, windowMs: 60_000, clientsMax: 10 });
  const first = limiter.take("a", T0);
  assert.ok(first.ok);
  limiter.refund("a", first.window);
  const second = limiter.take("a", T0 + 1);
  assert.ok(second.ok, "the refunded take is free again");
  limiter.refund("a", second.window - 1);
  assert.equal(limiter.take("a", T0 + 2).ok, false, "a refund for an old window changes nothing");
  limiter.refund("nobody", second.window);
  assert.equal(limiter.size, 1);
});

Deno.test("WindowLimiter tracks at most clientsMax clients, evicting the least recently seen", () => {
  const limiter = new WindowLimiter({ takesMax: 1, windowMs: 60_000, clientsMax: 2 });
  limiter.take("a", T0);
  limiter.take("b", T0);
  assert.equal(limiter.take("a", T0).ok, false, "a is seen again: b is now the oldest");
  limiter.take("c", T0);
  assert.equal(limiter.size, 2);
  assert.equal(limiter.take("a", T0).ok, false, "a is still tracked");
  assert.equal(limiter.take("b", T0).ok, true, "b was evicted and starts from zero");
});

Deno.test("WindowLimiter() refuses limits that are not positive integers", () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(
      () => new WindowLimiter({ takesMax: bad, windowMs: 60_000, clientsMax: 1 }),
      RangeError,
    );
  }
});

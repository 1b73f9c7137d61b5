import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("parseDuration() reads every unit of the contract into whole ms", () => {
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("10s"), 10_000);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("0s"), 0);
  assert.equal(parseDuration(" 2s "), 2_000);
});

Deno.test("parseDuration() takes a number as ms", () => {
  assert.equal(parseDuration(0), 0);
  assert.equal(parseDuration(1500), 1500);
});

Deno.test("parseDuration() takes a fraction when the result is whole ms, exactly", () => {
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("0.3s"), 300);
  assert.equal(parseDuration("0.1h"), 360_000);
  assert.equal(parseDuration("0.5ms"), undefined);
  assert.equal(parseDuration("0.0005s"), undefined);
});

Deno.test("parseDuration() refuses what is not a duration", () => {
  for (
    const bad of [
      "10 seconds",
      "10 s",
      "10",
      "s",
      "-1s",
      "1w",
      "1e3ms",
      "",
      -1,
      1.5,
      NaN,
      Infinity,
      null,
      undefined,
      true,
      {},
      [],
    ]
  ) {
    assert.equal(parseDuration(bad), undefined, `${String(bad)} should not parse`);
  }
});

Deno.test("formatDuration() picks the largest exact unit and round-trips", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(90_000), "90s");
  assert.equal(formatDuration(7_200_000), "2h");
  for (const ms of [0, 1, 999, 1000, 61_000, 3_600_000, 3_600_001]) {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }
  assert.throws(() => formatDuration(-1), RangeError);
});

Deno.test("parseDuration() reads days and formatDuration() writes them", () => {
  assert.equal(parseDuration("3d"), 3 * 86_400_000);
  assert.equal(parseDuration("1.5d"), 36 * 3_600_000);
  assert.equal(formatDuration(2 * 86_400_000), "2d");
  assert.equal(formatDuration(36 * 3_600_000), "36h");
});

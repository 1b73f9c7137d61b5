/**
 * Test helper private to envelope/: a real relay core over memory with its keys at hand, and a
 * device on its card.
 *
 * @module
 */
import { SeededRandom } from "../crypto/mod.ts";
import { ServerCore } from "../server/core.ts";
import { MemoryBackend, MemoryData } from "../server/memory.ts";
import { ManualClock, TestDevice } from "../tests/support/relay.ts";
import type { ServerKeys } from "../server/backend.ts";

/** A relay, its stored keys and data, and a way to make devices that talk to it. */
export interface TestRelay {
  core: ServerCore;
  keys: ServerKeys;
  data: MemoryData;
  clock: ManualClock;
  random: SeededRandom;
  device(): TestDevice;
}

/** A fresh relay under `seed`. */
export async function testRelay(seed = 1): Promise<TestRelay> {
  const clock = new ManualClock();
  const data = new MemoryData();
  const random = new SeededRandom(seed);
  const core = await ServerCore.create({
    backend: new MemoryBackend({ data }),
    clock,
    random: random.fork("relay"),
  });
  let devices = 0;
  return {
    core,
    keys: data.keys!,
    data,
    clock,
    random,
    device: () =>
      new TestDevice(
        random.fork(`device-${devices++}`),
        core.card(),
        (body) => core.handle(body),
        () => clock.now(),
      ),
  };
}

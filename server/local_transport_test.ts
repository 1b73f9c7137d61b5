import assert from "node:assert/strict";
import { SeededRandom } from "../crypto/mod.ts";
import { TransportError } from "../ports/mod.ts";
import { ServerCore } from "./core.ts";
import { LocalTransport } from "./local_transport.ts";
import { MemoryBackend } from "./memory.ts";
import { ManualClock, TestDevice, text } from "../tests/support/relay.ts";

async function core(url: string, seed: number): Promise<ServerCore> {
  return await ServerCore.create({
    backend: new MemoryBackend(),
    clock: new ManualClock(),
    random: new SeededRandom(seed),
    url,
  });
}

Deno.test("LocalTransport.exchange() reaches the relay named by the card's uid or url", async () => {
  const a = await core("sim://a", 1);
  const b = await core("sim://b", 2);
  const transport = new LocalTransport([a, b]);
  const clock = new ManualClock();
  const device = new TestDevice(
    new SeededRandom(3),
    b.card(),
    (body) => transport.exchange(b.card(), body),
    () => clock.now(),
  );
  await device.request({ messages: [device.message(device.queue, "hi")] });
  const answer = await device.request({ pullRequests: [await device.pull()] });
  assert.deepEqual(answer.chat.map(text), ["hi"]);
  assert.equal((await transport.fetchCard("sim://a")).uid, a.card().uid);
});

Deno.test("LocalTransport rejects an unknown or removed relay with TransportError", async () => {
  const a = await core("sim://a", 1);
  const transport = new LocalTransport([a]);
  assert.equal(transport.remove("sim://a"), true);
  await assert.rejects(() => transport.exchange(a.card(), new Uint8Array(1)), TransportError);
  await assert.rejects(() => transport.fetchCard("sim://a"), TransportError);
  assert.equal(transport.remove("sim://a"), false);
});

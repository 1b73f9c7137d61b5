import assert from "node:assert/strict";
import { SeededRandom } from "../kernel/crypto/mod.ts";
import { ErrorCode, MailboxAction } from "../proto/gen/meow_pb.ts";
import { ServerCore } from "./core.ts";
import { createHandler } from "./http.ts";
import { MemoryBackend } from "./memory.ts";
import { ManualClock, TestDevice } from "./_testing.ts";

Deno.test("createHandler() counts mailbox look-ups per remote address", async () => {
  const clock = new ManualClock();
  const random = new SeededRandom(3);
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock,
    random: random.fork("relay"),
    limits: { mailboxLookupsPerMinuteMax: 1 },
  });
  const handler = createHandler(core);
  const device = new TestDevice(
    random.fork("device"),
    core.card(),
    () => Promise.reject(new Error("unused")),
    () => clock.now(),
  );
  const miss = async (hostname: string) => {
    const { body, exchange } = await device.seal({
      mailbox: { action: MailboxAction.EXCHANGE, nameplate: "0000", side: new Uint8Array(16) },
    });
    const info = {
      remoteAddr: { transport: "tcp", hostname, port: 40_000 },
      completed: Promise.resolve(),
    } as Deno.ServeHandlerInfo<Deno.NetAddr>;
    const request = new Request("http://relay/", {
      method: "POST",
      body: body as Uint8Array<ArrayBuffer>,
    });
    const response = await handler(request, info);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const answer = exchange.open(bytes);
    return answer.errors.map((e) => e.code);
  };
  assert.deepEqual(await miss("203.0.113.1"), [ErrorCode.NOT_FOUND]);
  assert.deepEqual(await miss("203.0.113.1"), [ErrorCode.BUSY]);
  assert.deepEqual(await miss("203.0.113.2"), [ErrorCode.NOT_FOUND], "another address");
});

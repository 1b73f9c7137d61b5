import assert from "node:assert/strict";
import { SeededRandom } from "../crypto/mod.ts";
import { ErrorCode, MailboxAction } from "../proto/gen/meow_pb.ts";
import { ServerCore } from "./core.ts";
import { createHandler } from "./http.ts";
import { MemoryBackend } from "./memory.ts";
import { ManualClock, TestDevice, text } from "../tests/support/relay.ts";
import type { ServerLimitsInit } from "./limits.ts";

/** A relay over memory with `limits`, its handler called directly, and a device on its card. */
async function handlerWorld(seed: number, limits: Partial<ServerLimitsInit>) {
  const clock = new ManualClock();
  const random = new SeededRandom(seed);
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock,
    random: random.fork("relay"),
    limits,
  });
  const device = new TestDevice(
    random.fork("device"),
    core.card(),
    () => Promise.reject(new Error("unused")),
    () => clock.now(),
  );
  return { core, handler: createHandler(core), device };
}

Deno.test("createHandler() counts mailbox look-ups per remote address", async () => {
  const { handler, device } = await handlerWorld(3, { mailboxLookupsPerMinuteMax: 1 });
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

Deno.test("createHandler() over loopback HTTP holds one address to its long polls and requests", async () => {
  const clock = new ManualClock();
  const random = new SeededRandom(4);
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock,
    random: random.fork("relay"),
    limits: { longPollsPerClientMax: 1, requestsPerSecondPerClientMax: 4 },
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    createHandler(core),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/`;
    const send = async (body: Uint8Array) => {
      const response = await fetch(url, { method: "POST", body: body as Uint8Array<ArrayBuffer> });
      return new Uint8Array(await response.arrayBuffer());
    };
    const device = (name: string) =>
      new TestDevice(random.fork(name), core.card(), send, () => clock.now());
    const [alice, bob, carol] = [device("alice"), device("bob"), device("carol")];
    const codes = (answer: { errors: { code: ErrorCode }[] }) => answer.errors.map((e) => e.code);

    const poll = bob.request({ pullRequests: [await bob.pull()], timeoutMs: 20_000 });
    await clock.sleepers(1);
    const second = carol.request({ pullRequests: [await carol.pull()], timeoutMs: 20_000 });
    const refused = await Promise.race([second, clock.sleepers(2).then(() => undefined)]);
    assert.ok(refused, "answered at once, not held");
    assert.deepEqual(codes(refused), [ErrorCode.BUSY], "the address holds its one long poll");
    assert.ok(refused.errors[0].retryAfterMs > 0);
    assert.equal(core.stats().longPollsOpen, 1);

    const sent = await alice.request({ messages: [alice.message(bob.queue, "wake")] });
    assert.equal(sent.stored, 1);
    assert.deepEqual((await poll).chat.map(text), ["wake"]);

    assert.deepEqual((await alice.request({})).errors, [], "the fourth request this second");
    const busy = await alice.request({});
    assert.deepEqual(codes(busy), [ErrorCode.BUSY], "the fifth");
    assert.equal(busy.errors[0].retryAfterMs, 1_000 - (clock.now() % 1_000));
    clock.advance(busy.errors[0].retryAfterMs);
    assert.deepEqual((await carol.request({})).errors, [], "the next second");
  } finally {
    clock.advance(20_000); // ends any long poll a failed check left open
    await server.shutdown();
  }
});

Deno.test("createHandler() reads a body of declared length and a streamed one, and refuses either past requestBytesMax", async () => {
  const { handler, device } = await handlerWorld(5, { requestBytesMax: 4096 });
  const streamed = (bytes: Uint8Array) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 1000) controller.enqueue(bytes.slice(i, i + 1000));
        controller.close();
      },
    });
  const post = (body: Uint8Array | ReadableStream<Uint8Array>, length?: number) =>
    handler(
      new Request("http://relay/", {
        method: "POST",
        body: body as Uint8Array<ArrayBuffer>,
        headers: length === undefined ? {} : { "content-length": String(length) },
      }),
    );
  for (const stream of [false, true]) {
    const { body, exchange } = await device.seal({ messages: [device.message(device.queue, "x")] });
    const response = await post(stream ? streamed(body) : body, stream ? undefined : body.length);
    assert.equal(response.status, 200);
    assert.equal(exchange.open(new Uint8Array(await response.arrayBuffer())).stored, 1);
  }
  const big = new Uint8Array(5000);
  assert.equal((await post(big, big.length)).status, 413, "declared past the limit");
  assert.equal((await post(streamed(big))).status, 413, "streamed past the limit");
});

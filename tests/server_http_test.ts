import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  generateLookupKeyPair,
  type KeyPair,
  randomUuid,
  SystemRandom,
  toBase64Url,
} from "../crypto/mod.ts";
import { systemClock } from "../ports/system_clock.ts";
import { TransportError } from "../ports/mod.ts";
import {
  type FromServerMessage,
  PackedUserMessageSchema,
  type ServerCard,
  ToServerMessageSchema,
} from "../proto/gen/meow_pb.ts";
import {
  type Backend,
  createHandler,
  HttpTransport,
  KvBackend,
  openRelayExchange,
  RedisBackend,
  type RelayExchange,
  ServerCore,
  signPull,
} from "../server/mod.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { redisSkip, startRedis } from "../server/redis_process.ts";
import { eventually, redisProcsTest } from "./e2e/_harness.ts";

const random = new SystemRandom();
const transport = new HttpTransport({ timeoutMs: 5_000 });

/** A client whose `pull()` signs for its next request, which `send()` then uses up. */
class Client {
  readonly lookup: KeyPair = generateLookupKeyPair(random);
  readonly queue = toBase64Url(this.lookup.publicKey);
  #tick = 0;
  #next: Promise<RelayExchange> | undefined;
  constructor(readonly server: ServerCard) {}

  #exchange(): Promise<RelayExchange> {
    return this.#next ??= openRelayExchange({ server: this.server, random });
  }

  async send(init: MessageInitShape<typeof ToServerMessageSchema>): Promise<FromServerMessage> {
    const exchange = await this.#exchange();
    this.#next = undefined;
    const request = create(ToServerMessageSchema, init);
    request.uuid ||= randomUuid(random);
    return exchange.open(await transport.exchange(this.server, exchange.seal(request)));
  }

  async pull() {
    const { binding: ephemeralPublicKey } = await this.#exchange();
    const now = Date.now() + this.#tick++;
    return signPull({ server: this.server, lookup: this.lookup, now, ephemeralPublicKey });
  }
}

/** A message of `text` for `client`'s queue. */
function textTo(client: Client, text: string) {
  return create(PackedUserMessageSchema, {
    destination: client.queue,
    payload: new TextEncoder().encode(text),
  });
}

async function exchangeOver(backend: Backend): Promise<void> {
  const core = await ServerCore.create({ backend, clock: systemClock, random });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    createHandler(core),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}`;
    const card = await transport.fetchCard(url);
    assert.equal(card.uid, core.card().uid);
    card.url = url;
    const alice = new Client(card);
    const bob = new Client(card);

    // Bob long-polls; Alice's store wakes him.
    const poll = bob.send({ uuid: "poll", pullRequests: [await bob.pull()], timeoutMs: 10_000 });
    const sent = await alice.send({
      uuid: "send",
      messages: [textTo(bob, "hello bob")],
    });
    assert.equal(sent.stored, 1);
    const got = await poll;
    assert.equal(got.uuidAck, "poll");
    assert.equal(new TextDecoder().decode(got.chat[0].payload), "hello bob");

    // Bob answers and acks in one request; Alice pulls it.
    const reply = await bob.send({
      messages: [textTo(alice, "hi alice")],
      pullRequests: [await bob.pull()],
      acks: [got.chat[0].serverDeliveryUuid],
    });
    assert.deepEqual(reply.chat, [], "the ack removed Bob's message before the read");
    const inbox = await alice.send({ pullRequests: [await alice.pull()] });
    assert.equal(new TextDecoder().decode(inbox.chat[0].payload), "hi alice");

    // Oversized and unreadable bodies are HTTP errors, i.e. TransportErrors.
    await assert.rejects(
      () => transport.exchange(card, new Uint8Array(core.limits.requestBytesMax + 1)),
      (e) => e instanceof TransportError && e.message.includes("413"),
    );
    await assert.rejects(
      () => transport.exchange(card, new Uint8Array([1, 2, 3])),
      (e) => e instanceof TransportError && e.message.includes("400"),
    );
    const health = await (await fetch(`${url}/health`)).json();
    assert.equal(health.ok, true);
  } finally {
    await server.shutdown();
    await backend.close();
  }
}

Deno.test({
  name: "relay over HTTP: two clients exchange sealed messages over the KV backend",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "meowsync-http-" });
    try {
      await exchangeOver(await KvBackend.open({ path: `${dir}/relay.kv` }));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: `relay over HTTP: two clients exchange sealed messages over the Redis backend${
    redisSkip() ? ` (skipped: ${redisSkip()})` : ""
  }`,
  ignore: redisSkip() !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const redis = await startRedis();
    try {
      await exchangeOver(await RedisBackend.connect({ url: redis.url }));
    } finally {
      await redis.stop();
    }
  },
});

Deno.test("HttpTransport turns an unreachable relay into a TransportError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await assert.rejects(() => transport.fetchCard(`http://127.0.0.1:${port}`), TransportError);
});

redisProcsTest(
  "two relay processes over one Redis: one card, and a long poll on one is woken by a store through the other",
  async (redis, procs) => {
    const a = await procs.startRelay(redis.url);
    const b = await procs.startRelay(redis.url);
    const [cardA, cardB] = [await transport.fetchCard(a.url), await transport.fetchCard(b.url)];
    // The relay's keys live in Redis: both processes are one relay.
    assert.equal(cardA.uid, cardB.uid);
    cardA.url = a.url;
    cardB.url = b.url;
    const bob = new Client(cardA);
    const alice = new Client(cardB);
    const poll = bob.send({ uuid: "poll", pullRequests: [await bob.pull()], timeoutMs: 20_000 });
    // Bob's long poll is open on process A (its /health counts it) before alice stores on B.
    await eventually("bob's long poll to be open on A", async () => {
      const health = await (await fetch(`${a.url}/health`)).json();
      return health.longPollsOpen === 1;
    });
    const stored = await alice.send({
      messages: [textTo(bob, "through the other process")],
    });
    assert.equal(stored.stored, 1);
    const woken = await poll;
    assert.equal(woken.uuidAck, "poll");
    assert.equal(new TextDecoder().decode(woken.chat[0].payload), "through the other process");
    // Acked through B, it is gone for A too.
    bob.server.url = b.url;
    const again = await bob.send({
      pullRequests: [await bob.pull()],
      acks: [woken.chat[0].serverDeliveryUuid],
    });
    assert.deepEqual(again.chat, []);
    bob.server.url = a.url;
    assert.deepEqual((await bob.send({ pullRequests: [await bob.pull()] })).chat, []);
  },
);

/**
 * What a relay does when its backend crashes and comes back, for every backend a test can kill
 * (one Redis, a master of a Redis Cluster): two tests, registered by {@linkcode backendCrashTests}.
 *
 * 1. A request made while the backend is down is answered `BUSY` ("relay storage failed: …") at
 *    once — not held until the backend is back, which would store it after its client may have
 *    given up and sent it again — and once the backend is back the relay serves again, with
 *    everything it had stored.
 * 2. Two relays over the backend: after the crash, a long poll on one is still woken by a store
 *    through the other (the relay's subscriptions come back with its connection).
 *
 * @module
 */
import assert from "node:assert/strict";
import { SeededRandom } from "../crypto/mod.ts";
import { ErrorCode, type FromServerMessage } from "../proto/gen/meow_pb.ts";
import { ManualClock, TestDevice, text, whileBusy } from "../tests/support/relay.ts";
import { systemClock } from "../ports/mod.ts";
import { within } from "./backend_conformance.ts";
import type { Backend } from "./backend.ts";
import { ServerCore } from "./core.ts";

/** A backend that a test can crash: opened as often as asked, killed and restarted. */
export interface CrashableBackend {
  /** A new connection to the backend (one per relay). */
  open(): Promise<Backend>;
  /** Kills (SIGKILL) the part of the backend that holds `queue`'s keys. */
  kill(queue: string): Promise<void>;
  /** Starts what {@linkcode CrashableBackend.kill} killed again, with what it had written. */
  restart(): Promise<void>;
  /** Stops it all. */
  stop(): Promise<void>;
}

/** Registers the module's two tests for the backend `start` makes (`ignore` says why not). */
export function backendCrashTests(
  name: string,
  start: () => Promise<CrashableBackend>,
  options: { ignore?: string } = {},
): void {
  const test = (what: string, fn: (backend: CrashableBackend) => Promise<void>) =>
    Deno.test({
      name: `${name}: ${what}${options.ignore ? ` (skipped: ${options.ignore})` : ""}`,
      ignore: options.ignore !== undefined,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        const backend = await start();
        try {
          await fn(backend);
        } finally {
          await backend.stop();
        }
      },
    });

  test(
    "while it is down a relay answers BUSY at once, saying why, and once it is back serves again " +
      "with everything it had stored",
    async (crashable) => {
      const { relays: [relay], close } = await relaysOver(crashable, 1, 41);
      try {
        const { sender, receiver } = relay;
        const send = (words: string) =>
          sender.request({ messages: [sender.message(receiver.queue, words)] });
        assert.equal((await send("before the crash")).stored, 1);

        await crashable.kill(receiver.queue);
        // Made while the backend is down, answered after it is back: a relay that held it for the
        // reconnection would store it late.
        const during = send("during the crash");
        await crashable.restart();
        const refused = await during;
        assert.equal(refused.stored, 0);
        assert.equal(refused.errors[0]?.code, ErrorCode.BUSY);
        assert.match(refused.errors[0].detail, /^relay storage failed: \S/);

        assert.equal((await whileBusy(() => send("after the crash"))).stored, 1);
        relay.clock.advance(1);
        const pulled = await receiver.request({ pullRequests: [await receiver.pull()] });
        assert.deepEqual(pulled.chat.map(text), ["before the crash", "after the crash"]);
      } finally {
        await close();
      }
    },
  );

  test(
    "after it crashed, a long poll on one relay is still woken by a store through another",
    async (crashable) => {
      const { relays: [polled, stored], close } = await relaysOver(crashable, 2, 42);
      const clock = polled.clock;
      const receiver = polled.receiver;
      const sender = stored.sender;
      try {
        /**
         * A long poll through the polled relay, once it sleeps on the clock watching the queue.
         * Until the connection that watches is back (it reconnects by itself, after the one that
         * reads) a poll is refused BUSY at once: then it is made again.
         */
        const watchingPoll = async (): Promise<{ poll: Promise<FromServerMessage> }> => {
          for (let attempt = 0;; attempt++) {
            clock.advance(1);
            const poll = receiver.request({
              pullRequests: [await receiver.pull()],
              timeoutMs: 20_000,
            });
            const refused = await Promise.race([clock.sleepers(1), poll]);
            if (refused === undefined) return { poll }; // not awaited: it ends when woken
            assert.equal(refused.errors[0]?.code, ErrorCode.BUSY, refused.errors[0]?.detail);
            assert(attempt < 100, `the relay did not watch again: ${refused.errors[0].detail}`);
            await systemClock.sleep(50); // the reconnection's backoff
          }
        };
        /** A long poll through one relay, woken by a store through the other. */
        const wokenBy = (words: string) =>
          within(10_000, `a long poll woken by "${words}"`, async () => {
            const { poll } = await watchingPoll();
            const answer = await sender.request({
              messages: [sender.message(receiver.queue, words)],
            });
            assert.equal(answer.stored, 1);
            const woken = await poll;
            assert.deepEqual(woken.chat.map(text), [words]);
            return woken;
          });
        const first = await wokenBy("before the crash");
        await crashable.kill(receiver.queue);
        await crashable.restart();
        // Both relays reconnect by themselves: until then a request is BUSY.
        const acks = first.chat.map((m) => m.serverDeliveryUuid);
        await whileBusy(async () => {
          clock.advance(1);
          return await receiver.request({ pullRequests: [await receiver.pull()], acks });
        });
        // A request that reaches the backend: an empty one is answered without it, so it could
        // pass while the storing relay is still reconnecting.
        await whileBusy(async () => {
          clock.advance(1);
          return await sender.request({ pullRequests: [await sender.pull()] });
        });
        await wokenBy("after the crash");
      } finally {
        await close();
      }
    },
  );
}

/** One relay over its own connection to the backend, and a sender and a receiver using it. */
interface Relay {
  clock: ManualClock;
  sender: TestDevice;
  receiver: TestDevice;
}

/**
 * `count` relays over `crashable`, each on its own connection (as relay processes are), sharing a
 * clock and the relay keys (so one card), each with a sender and a receiver; the receivers of all
 * are one device, and so are the senders.
 */
async function relaysOver(
  crashable: CrashableBackend,
  count: number,
  seed: number,
): Promise<{ relays: Relay[]; close: () => Promise<void> }> {
  const clock = new ManualClock(1_000_000);
  const random = new SeededRandom(seed);
  const backends: Backend[] = [];
  for (let i = 0; i < count; i++) backends.push(await crashable.open());
  const cores = await Promise.all(
    backends.map((backend, i) =>
      ServerCore.create({ backend, clock, random: random.fork(`relay ${i}`) })
    ),
  );
  // One key pair each for the sender and the receiver, whichever relay they use.
  const [senderKeys, receiverKeys] = [random.fork("sender"), random.fork("receiver")];
  const relays = cores.map((core) => {
    const device = (keys: SeededRandom) =>
      new TestDevice(
        keys.fork("same"),
        core.card(),
        (body) => core.handle(body),
        () => clock.now(),
      );
    return { clock, sender: device(senderKeys), receiver: device(receiverKeys) };
  });
  return {
    relays,
    close: async () => {
      for (const backend of backends) await backend.close();
    },
  };
}

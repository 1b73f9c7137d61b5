/**
 * A soak of the relay over HTTP: a private Redis, two relay processes (`deno task server`) over it
 * on loopback ports, {@linkcode DEVICES} clients each storing {@linkcode MESSAGES_PER_DEVICE}
 * messages for others and pulling and acking its own queue. Faults come from a seeded random:
 * a client crashes mid-request (after the whole body is sent, before the answer is read: either
 * it hangs up the connection, or it drops the answer once the relay has sent it) and restarts
 * from what a device persists — its outbox, the message ids it committed — losing what it keeps
 * in memory (pull tokens, acks not yet answered); one relay process is SIGKILLed in the middle of
 * the load and started again on its port, and its clients get connection errors, retry, and may
 * move to the other process; later the Redis itself (append-only, synced before it answers) is
 * SIGKILLed and started again, and both processes answer BUSY ("relay storage failed") until they
 * have reconnected. Retries go as a device's do: a new request (uuid, exchange, pull
 * signature) carrying the same packed messages, the same bytes the outbox persisted.
 *
 * Then every device drains its queue, and the ledger (tests/_test_soak_ledger.ts, whose doc
 * defines "lost", "delivered twice to one device" and "answered or told to retry" precisely) must
 * hold no violation. Bounded: {@linkcode DEVICES} × ({@linkcode STEPS_MAX} +
 * {@linkcode DRAIN_STEPS_MAX}) requests at most, each within {@linkcode REQUEST_MS_MAX}; loopback
 * only.
 *
 * @module
 */
import assert from "node:assert/strict";
import { randomFloat, randomInt, randomUuid, SeededRandom } from "../crypto/mod.ts";
import {
  ErrorCode,
  type FromServerMessage,
  type PackedUserMessage,
  type ServerCard,
} from "../proto/gen/meow_pb.ts";
import { HttpTransport, type RelayExchange } from "../server/mod.ts";
import { freePort, type Proc, redisProcsTest } from "./e2e/_harness.ts";
import { TestDevice, text } from "./support/relay.ts";
import { type OutcomeKind, SoakLedger, soakViolations } from "./_test_soak_ledger.ts";

/** Clients. */
const DEVICES = 48;
/** Messages each client stores for others. */
const MESSAGES_PER_DEVICE = 8;
/** Most messages in one store request. */
const BATCH_MAX = 3;
/** Pulls each client makes during the load, at least. */
const PULLS_MIN = 6;
/** Most requests one client makes in the load. */
const STEPS_MAX = 400;
/** Most pulls one client makes in the drain (a sound relay needs two or three). */
const DRAIN_STEPS_MAX = 20;
/** Longest any one request may take before it counts as a hang, in ms (an upper bound only). */
const REQUEST_MS_MAX = 10_000;
/** The relay process is killed once this many requests have ended. */
const KILL_AFTER_REQUESTS = 200;
/** Redis is killed and restarted once this many requests have ended (and the relay is back). */
const KILL_REDIS_AFTER_REQUESTS = 400;
/** Chance a request is made by a client that then crashes without reading the answer. */
const CRASH_CHANCE = 0.1;
/** Chance a pull long-polls (for {@linkcode LONG_POLL_MS}, an upper bound). */
const LONG_POLL_CHANCE = 0.25;
const LONG_POLL_MS = 300;
/** Chance a store request carries a pull too. */
const MIXED_CHANCE = 0.3;
/**
 * Relay 0's per-address limits, raised: every client here shares 127.0.0.1. Relay 1 keeps them
 * low, so it answers BUSY now and then (past the request rate, or past the long polls open).
 */
const RELAY_ARGS = [
  "--requests-per-second-per-client-max",
  "100000",
  "--long-polls-per-client-max",
  "1000",
];
const BUSY_RELAY_ARGS = [
  "--requests-per-second-per-client-max",
  "150",
  "--long-polls-per-client-max",
  "2",
];
/** Longest a client waits on a BUSY's `retry_after_ms`, in ms (sooner than told: the relay copes). */
const BUSY_WAIT_MS_MAX = 300;

/** How a relay's BUSY for a failing backend begins. */
const STORAGE_FAILED = "relay storage failed";

/**
 * How one attempt ended: an answer to use (its pulls maybe refused BUSY, the backend having
 * failed after the store), or nothing to read (and whether to retry; `storageFailed` for a BUSY
 * because the relay's backend failed, after which the relay cannot tell what it had applied).
 */
type Attempt =
  | { kind: "answered"; answer: FromServerMessage }
  | {
    kind: Exclude<OutcomeKind, "answered">;
    why: string;
    retryAfterMs?: number;
    storageFailed?: boolean;
  };

/** How a client treats a request: send it normally, or crash before reading its answer. */
type Fault = "none" | "hang-up" | "drop-answer";

/**
 * Sends `body` to `url` and classifies the end: `answered` (200, a sealed answer naming the
 * request, no refusal), a retry (`network`, `unavailable` 503, `busy`), the client's own crash
 * (`hung-up`, `crashed`), or `bad` (a hang, another status, an answer that does not open or
 * carries an error the client cannot retry on).
 */
async function attempt(
  url: string,
  sealed: { body: Uint8Array; exchange: RelayExchange },
  uuid: string,
  fault: Fault,
): Promise<Attempt> {
  if (fault === "hang-up") return await hangUp(url, sealed.body);
  const timeout = AbortSignal.timeout(REQUEST_MS_MAX);
  let response: Response;
  try {
    response = await fetch(`${url}/`, {
      method: "POST",
      body: sealed.body as Uint8Array<ArrayBuffer>,
      headers: { "content-type": "application/x-protobuf" },
      signal: timeout,
    });
  } catch (e) {
    if (timeout.aborted) return { kind: "bad", why: `no answer within ${REQUEST_MS_MAX} ms` };
    return { kind: "network", why: (e as Error).message };
  }
  if (fault === "drop-answer") {
    // The relay has answered (the headers came); the client goes away without reading it.
    await response.body?.cancel();
    return { kind: "crashed", why: "dropped the answer" };
  }
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await response.arrayBuffer());
  } catch (e) {
    if (timeout.aborted) return { kind: "bad", why: `no answer within ${REQUEST_MS_MAX} ms` };
    return { kind: "network", why: (e as Error).message };
  }
  if (response.status === 503) return { kind: "unavailable", why: "HTTP 503" };
  if (response.status !== 200) {
    return { kind: "bad", why: `HTTP ${response.status}: ${new TextDecoder().decode(bytes)}` };
  }
  let answer: FromServerMessage;
  try {
    answer = sealed.exchange.open(bytes);
  } catch (e) {
    return { kind: "bad", why: `malformed answer: ${(e as Error).message}` };
  }
  if (answer.uuidAck !== uuid) {
    return { kind: "bad", why: `answer names ${answer.uuidAck}, not request ${uuid}` };
  }
  const wide = answer.errors.find((e) => e.messageIndex === 0 && e.lookupKey === "");
  if (wide?.code === ErrorCode.BUSY) {
    return {
      kind: "busy",
      why: wide.detail,
      retryAfterMs: Number(wide.retryAfterMs),
      storageFailed: wide.detail.startsWith(STORAGE_FAILED),
    };
  }
  // The backend failed after the messages were stored: BUSY on each pull, the store answered.
  const pullsRefused = answer.errors.length > 0 &&
    answer.errors.every((e) =>
      e.code === ErrorCode.BUSY && e.lookupKey !== "" && e.detail.startsWith(STORAGE_FAILED)
    );
  if (answer.errors.length > 0 && !pullsRefused) {
    const codes = answer.errors.map((e) => `${ErrorCode[e.code]} (${e.detail})`);
    return { kind: "bad", why: `errors ${codes.join(", ")}` };
  }
  return { kind: "answered", answer };
}

/**
 * Writes the whole request on a raw connection and closes it without reading a byte (a loopback
 * connect and a write of a few hundred bytes into the socket buffer: nothing that can hang).
 */
async function hangUp(url: string, body: Uint8Array): Promise<Attempt> {
  const { hostname, port } = new URL(url);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname, port: Number(port) });
  } catch (e) {
    return { kind: "network", why: (e as Error).message };
  }
  try {
    const head = `POST / HTTP/1.1\r\nhost: ${hostname}:${port}\r\n` +
      `content-type: application/x-protobuf\r\ncontent-length: ${body.length}\r\n\r\n`;
    const bytes = new Uint8Array([...new TextEncoder().encode(head), ...body]);
    for (let written = 0; written < bytes.length;) {
      written += await conn.write(bytes.subarray(written));
    }
    return { kind: "hung-up", why: "closed the connection after the body" };
  } catch (e) {
    return { kind: "network", why: (e as Error).message };
  } finally {
    conn.close();
  }
}

/** An outbox entry as a device persists it: the packed bytes go again on every retry. */
interface Queued {
  id: string;
  packed: PackedUserMessage;
}

/** The two relay processes: their URLs, and the one killed and restarted. */
interface Relays {
  /** Relay 0, then relay 1. */
  urls: string[];
  /** Whether relay 0 was killed (it may be running again). */
  killed: boolean;
  /** Whether relay 0 runs again after the kill. */
  back: boolean;
  /** Requests relay 0 answered since. */
  answeredAfterRestart: number;
  /** Requests refused BUSY because the relay's Redis was down. */
  storageFailures: number;
  /**
   * Counts an ended request; at {@linkcode KILL_AFTER_REQUESTS} kills and restarts relay 0, at
   * {@linkcode KILL_REDIS_AFTER_REQUESTS} (relay 0 back) kills and restarts the Redis.
   */
  ended(): void;
}

/** One client: a {@linkcode TestDevice} with what it persists and what a crash loses. */
class SoakDevice {
  readonly client: TestDevice;
  /** Persisted: messages not yet answered as stored, oldest first. */
  readonly outbox: Queued[] = [];
  /** Persisted: the message ids committed (a copy of one is a repeat). */
  readonly committed = new Set<string>();
  /** In memory: delivery uuids committed and not yet acked in an answered request. */
  acks: string[] = [];
  /** Delivery uuids whose ack the relay answered. */
  readonly acked = new Set<string>();
  pulls = 0;
  #relay: number;
  /** Whether it keeps to its relay when cut off (a device that knows one URL), or moves. */
  readonly #loyal: boolean;
  #failures = 0;

  constructor(
    readonly name: string,
    readonly rng: SeededRandom,
    card: ServerCard,
    readonly ledger: SoakLedger,
    readonly relays: Relays,
  ) {
    this.client = new TestDevice(
      rng.fork("keys"),
      card,
      () => Promise.reject(new Error("the soak posts itself")),
      () => Date.now(),
    );
    this.client.useTokens = randomFloat(rng) < 0.5;
    this.#relay = randomInt(rng, relays.urls.length);
    this.#loyal = randomFloat(rng) < 0.5;
  }

  /** Queues a message for `to`. */
  queue(id: string, to: SoakDevice): void {
    this.outbox.push({ id, packed: this.client.message(to.client.queue, id) });
    this.ledger.messages.set(id, {
      from: this.name,
      to: to.name,
      attempts: 0,
      unread: 0,
      stored: false,
    });
  }

  /** The load: sends and pulls in a seeded order, with seeded crashes, until all is stored. */
  async load(): Promise<void> {
    for (let step = 0; this.outbox.length > 0 || this.pulls < PULLS_MIN; step++) {
      if (step >= STEPS_MAX) return this.ledger.outcome("bad", `${this.name} ran out of steps`);
      const fault: Fault = randomFloat(this.rng) >= CRASH_CHANCE
        ? "none"
        : randomFloat(this.rng) < 0.5
        ? "hang-up"
        : "drop-answer";
      const send = this.outbox.length > 0 && randomFloat(this.rng) < 0.5;
      // A send carries a pull too, now and then: one request, two parts.
      const pull = !send || randomFloat(this.rng) < MIXED_CHANCE;
      const timeoutMs = pull && randomFloat(this.rng) < LONG_POLL_CHANCE ? LONG_POLL_MS : 0;
      await this.#request(fault, { send, pull, timeoutMs });
    }
  }

  /** Pulls (no faults) until an answer brings nothing and no ack is left. */
  async drain(): Promise<void> {
    for (let step = 0; step < DRAIN_STEPS_MAX; step++) {
      const carried = this.acks.length;
      const got = await this.#request("none", { send: false, pull: true, timeoutMs: 0 });
      if (got === 0 && carried === 0) return;
    }
    this.ledger.outcome("bad", `${this.name} could not drain its queue`);
  }

  /**
   * One request: up to {@linkcode BATCH_MAX} outbox messages when `send`, a pull of the device's
   * queue carrying its pending acks when `pull` (a long poll of `timeoutMs`); resolves with how
   * many messages it brought, or `undefined` when it was not answered.
   */
  async #request(
    fault: Fault,
    parts: { send: boolean; pull: boolean; timeoutMs: number },
  ): Promise<number | undefined> {
    const batch = parts.send ? this.outbox.slice(0, 1 + randomInt(this.rng, BATCH_MAX)) : [];
    const acks = parts.pull ? this.acks.slice(0, this.client.server.limits!.acksPerRequestMax) : [];
    const pullRequests = parts.pull ? [await this.client.pull()] : [];
    for (const entry of batch) this.ledger.messages.get(entry.id)!.attempts++;
    const result = await this.#exchange({
      messages: batch.map((e) => e.packed),
      pullRequests,
      acks,
      timeoutMs: parts.timeoutMs,
    }, fault);
    if (result.kind !== "answered") {
      // BUSY is a refusal, which applies nothing, unless the relay's backend failed (it cannot
      // tell what Redis applied before the connection went); after anything else the store may
      // have been.
      if (result.kind !== "busy" || result.storageFailed) {
        for (const entry of batch) this.ledger.messages.get(entry.id)!.unread++;
      }
      if (result.storageFailed) this.relays.storageFailures++;
      return undefined;
    }
    const answer = result.answer;
    if (answer.stored !== batch.length) {
      this.ledger.outcome("bad", `${answer.stored} of ${batch.length} stored`);
      return undefined;
    }
    for (const entry of batch) this.ledger.messages.get(entry.id)!.stored = true;
    this.outbox.splice(0, batch.length);
    if (!parts.pull) return 0;
    if (answer.errors.length > 0) {
      // Stored, then the backend failed: the pull was refused (its acks go again).
      this.relays.storageFailures++;
      return undefined;
    }
    this.pulls++;
    this.client.keepTokens(answer);
    // The relay applies acks before it reads: none of these may come back, in this answer or later.
    for (const uuid of acks) this.acked.add(uuid);
    this.acks = this.acks.filter((uuid) => !acks.includes(uuid));
    for (const message of answer.chat) {
      const messageId = text(message);
      const deliveryUuid = message.serverDeliveryUuid;
      this.ledger.deliveries.push({
        device: this.name,
        deliveryUuid,
        messageId,
        afterAck: this.acked.has(deliveryUuid),
      });
      // Committed first, then acked (a crash in between brings it again, a repeat).
      if (this.committed.has(messageId)) this.ledger.repeats++;
      else {
        this.committed.add(messageId);
        this.ledger.process(this.name, messageId);
      }
      if (!this.acks.includes(deliveryUuid)) this.acks.push(deliveryUuid);
    }
    return answer.chat.length;
  }

  /**
   * One request in a new exchange to this device's relay, and how it ended; when not answered,
   * the device retries later (after a crash, from what it persisted).
   */
  async #exchange(init: Parameters<TestDevice["seal"]>[0], fault: Fault): Promise<Attempt> {
    const uuid = randomUuid(this.rng);
    const sealed = await this.client.seal({ ...init, uuid });
    const relay = this.#relay;
    let result = await attempt(this.relays.urls[relay], sealed, uuid, fault);
    // A connection may fail only at the killed process, once it was killed (during the request,
    // or before: a pooled connection to it is dead even after the restart); the other process
    // must answer everything.
    if (result.kind === "network" && !(relay === 0 && this.relays.killed)) {
      result = {
        kind: "bad",
        why: `relay ${relay} (not killed) cut the connection: ${result.why}`,
      };
    }
    this.ledger.outcome(
      result.kind,
      result.kind === "answered" ? "" : `${this.name}: ${result.why}`,
    );
    this.relays.ended();
    if (result.kind === "answered") {
      this.#failures = 0;
      if (relay === 0 && this.relays.back) this.relays.answeredAfterRestart++;
      return result;
    }
    if (result.kind === "hung-up" || result.kind === "crashed") {
      // The restart: what a device keeps in memory is gone.
      this.client.tokens.clear();
      this.acks = [];
      return result;
    }
    // Told to retry: back off (a device's backoff, not a wait for anything), maybe elsewhere.
    this.#failures++;
    if (result.kind === "network" && !this.#loyal) {
      this.#relay = (this.#relay + 1) % this.relays.urls.length;
    }
    const backoffMs = Math.min(200, 5 * 2 ** this.#failures);
    const waitMs = Math.max(backoffMs, Math.min(BUSY_WAIT_MS_MAX, result.retryAfterMs ?? 0));
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    return result;
  }
}

redisProcsTest(
  `relay soak over HTTP: ${DEVICES} crashing clients, two relay processes over one Redis, ` +
    "one killed and restarted, then Redis killed and restarted — nothing lost, nothing " +
    "delivered twice, every request answered",
  async (redis, procs) => {
    const port = freePort();
    let victim: Proc = (await procs.startRelay(redis.url, { port, extraArgs: RELAY_ARGS })).proc;
    const other = await procs.startRelay(redis.url, { extraArgs: BUSY_RELAY_ARGS });
    const urls = [`http://127.0.0.1:${port}`, other.url];
    const card = await new HttpTransport().fetchCard(urls[0]);
    const ledger = new SoakLedger();
    let restarted: Promise<void> | undefined;
    let killedAt = 0;
    let redisRestarted: Promise<void> | undefined;
    let redisKilledAt = 0;
    const relays: Relays = {
      urls,
      killed: false,
      back: false,
      answeredAfterRestart: 0,
      storageFailures: 0,
      ended() {
        if (!redisRestarted && relays.back && ledger.requests() >= KILL_REDIS_AFTER_REQUESTS) {
          redisKilledAt = ledger.requests();
          redisRestarted = (async () => {
            await redis.kill();
            await redis.restart();
          })();
        }
        if (restarted || ledger.requests() < KILL_AFTER_REQUESTS) return;
        killedAt = ledger.requests();
        relays.killed = true;
        victim.kill("SIGKILL");
        restarted = (async () => {
          const result = await victim.done;
          assert.equal(result.code, 137, "killed by SIGKILL");
          victim = (await procs.startRelay(redis.url, { port, extraArgs: RELAY_ARGS })).proc;
          relays.back = true;
        })();
      },
    };
    const random = new SeededRandom("soak");
    const devices = Array.from(
      { length: DEVICES },
      (_, i) => new SoakDevice(`d${i}`, random.fork(`d${i}`), card, ledger, relays),
    );
    for (const device of devices) {
      for (let m = 0; m < MESSAGES_PER_DEVICE; m++) {
        const others = devices.filter((d) => d !== device);
        device.queue(`${device.name}.m${m}`, others[randomInt(device.rng, others.length)]);
      }
    }
    await Promise.all(devices.map((d) => d.load()));
    assert(restarted, `the relay was killed (after ${ledger.requests()} requests)`);
    await restarted;
    assert(redisRestarted, `Redis was killed (after ${ledger.requests()} requests)`);
    await redisRestarted;
    await Promise.all(devices.map((d) => d.drain()));

    console.log(
      `soak: ${ledger.requests()} requests ${JSON.stringify(ledger.outcomes)}, killed after ` +
        `${killedAt}; ${ledger.messages.size} messages, ${ledger.deliveries.length} deliveries, ` +
        `${ledger.repeats} repeats dropped; ${relays.answeredAfterRestart} answered by the ` +
        `restarted process; Redis killed after ${redisKilledAt}, ${relays.storageFailures} ` +
        `requests refused while it was down`,
    );
    assert.deepEqual(soakViolations(ledger), []);
    // The faults happened: lost answers left copies the devices dropped, and the kill cut
    // connections.
    assert(ledger.outcomes.crashed + ledger.outcomes["hung-up"] > 0, "clients crashed");
    assert(ledger.repeats > 0, "a lost store answer left a second copy");
    assert(ledger.outcomes.network > 0, "the kill cut clients off");
    assert(relays.answeredAfterRestart > 0, "the restarted process answered its clients");
    assert(relays.storageFailures > 0, "the Redis crash refused requests");
  },
  { durable: true },
);

Deno.test("soakViolations() finds each broken rule in a ledger, and none in a sound one", () => {
  /** A ledger where a0 went from a to b, stored after one unread attempt, and b got it twice. */
  const sound = () => {
    const ledger = new SoakLedger();
    ledger.messages.set("a0", { from: "a", to: "b", attempts: 2, unread: 1, stored: true });
    ledger.deliveries.push(
      { device: "b", deliveryUuid: "u1", messageId: "a0", afterAck: false },
      { device: "b", deliveryUuid: "u2", messageId: "a0", afterAck: false },
    );
    ledger.process("b", "a0");
    ledger.outcome("answered");
    ledger.outcome("crashed");
    return ledger;
  };
  assert.deepEqual(soakViolations(sound()), []);
  const broken: [string, (ledger: SoakLedger) => void, RegExp][] = [
    ["lost", (l) => l.processed.clear(), /a0 was stored but b never got it/],
    ["never stored", (l) => l.messages.get("a0")!.stored = false, /a0 from a was never stored/],
    ["processed twice", (l) => l.process("b", "a0"), /b processed a0 2 times/],
    ["a copy per read answer", (l) => l.messages.get("a0")!.unread = 0, /as 2 copies after 0/],
    ["after its ack", (l) => l.deliveries[1].afterAck = true, /again after its ack/],
    ["to another device", (l) => l.deliveries[0].device = "c", /which was for b/],
    ["forged", (l) => l.deliveries[0].messageId = "z9", /z9, which nobody sent/],
    ["hung", (l) => l.outcome("bad", "no answer within 10000 ms"), /no answer within/],
  ];
  for (const [what, breakIt, expected] of broken) {
    const ledger = sound();
    breakIt(ledger);
    const violations = soakViolations(ledger);
    assert.equal(violations.length, 1, `${what}: ${violations.join("; ")}`);
    assert.match(violations[0], expected, what);
  }
});

/**
 * Benchmark of history on pairing: a phone holding 1,000 messages with bob pairs a new laptop,
 * which gets all of them (`history: 1000`). Measured per message of history: on the phone, the
 * one transaction that welcomes the laptop (records, introductions and the `history` payloads,
 * each encrypted for the laptop); on the laptop, receiving and storing them. Baseline in the same
 * run: one plain `msg` sync — a stored message dispatched to one sibling (built, encrypted,
 * queued), in its own transaction. The ratio says what one message of history costs against one
 * ordinary sync message; below 1 is the gain of packing several messages per payload.
 *
 *   ./dev bench --allow-all bench/history_bench.ts
 *
 * @module
 */
import { ManualClock } from "../tests/support/world.ts";
import { Kernel } from "../kernel/kernel.ts";
import { SeededRandom } from "../crypto/mod.ts";
import { CHAT_API, chatPlugin } from "../plugins/chat/mod.ts";
import { dedupPlugin } from "../plugins/dedup/mod.ts";
import {
  DEVICE_SYNC_API,
  deviceSyncPlugin,
  messageForSync,
  SYNC_TYPES,
} from "../plugins/device_sync/mod.ts";
import { forwardRelayPlugin } from "../plugins/forward_relay/mod.ts";
import { MemoryStore } from "../plugins/storage/mod.ts";
import { LocalTransport, MemoryBackend, ServerCore } from "../server/mod.ts";

/** Messages in the conversation the new device gets as history. */
const HISTORY_MESSAGES = 1_000;
/** Pairings timed (each on a fresh world); the median counts. */
const ROUNDS = 3;
/** Plain sync messages timed per round of the baseline. */
const BASELINE_SENDS = 200;
const TEXT = "x".repeat(100);

/** A phone with a contact bob and `messages` messages with him, and an `open` for new devices. */
async function setup(seed: string, messages: number) {
  const clock = new ManualClock();
  const random = new SeededRandom(`history bench ${seed}`);
  const core = await ServerCore.create({
    backend: new MemoryBackend(),
    clock,
    random: random.fork("relay"),
  });
  const transport = new LocalTransport([core]);
  const open = (name: string) =>
    Kernel.open({
      store: new MemoryStore(),
      clock,
      random: random.fork(name),
      transport,
      plugins: [chatPlugin(), dedupPlugin(), deviceSyncPlugin(), forwardRelayPlugin()],
      name,
    });
  const all: Kernel[] = [];
  const settle = async () => {
    for (let round = 0; round < 400; round++) {
      let moved = 0;
      for (const k of all) moved += await k.flushOutbox();
      clock.advance(10);
      for (const k of all) moved += await k.pollOnce();
      if (moved === 0 && all.every((k) => k.outboxSize() === 0)) return;
    }
    throw new Error("history bench: the world did not settle");
  };
  const phone = await open("phone");
  await phone.createIdentity({ nickname: "alice", deviceName: "phone", servers: [core.card()] });
  const bob = await open("bob");
  await bob.createIdentity({ nickname: "bob", deviceName: "bob", servers: [core.card()] });
  all.push(phone, bob);
  const ticket = await phone.createInvitation();
  const bobUid = await bob.acceptInvitation(ticket.bytes);
  await settle();
  for (let i = 0; i < messages; i++) {
    await phone.api(CHAT_API).send(bobUid, `${TEXT} ${i}`);
    if (i % 100 === 99) await settle();
  }
  await settle();
  return { phone, bobUid, open, all, settle, clock };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** One pairing with full history: ms per message on the phone and on the laptop, and payloads. */
async function pairing(round: number) {
  const world = await setup(`pairing ${round}`, HISTORY_MESSAGES);
  const laptop = await world.open("laptop");
  world.all.push(laptop);
  const ticket = await world.phone.api(DEVICE_SYNC_API).initDevicePairing({
    history: { windowMs: undefined, messagesMax: HISTORY_MESSAGES },
  });
  await laptop.api(DEVICE_SYNC_API).answerDevicePairing(ticket.bytes, { deviceName: "laptop" });
  await laptop.flushOutbox();
  // The phone's poll takes the answer in and welcomes the laptop: one transaction.
  const t0 = performance.now();
  await world.phone.pollOnce();
  const welcomeMs = performance.now() - t0;
  const payloads = world.phone.outboxSize();
  await world.phone.flushOutbox();
  const t1 = performance.now();
  let stored = 0;
  for (let poll = 0; poll < 50 && stored < HISTORY_MESSAGES; poll++) {
    await world.phone.flushOutbox();
    world.clock.advance(1_000); // a queue that was full takes the rest after the retry delay
    await laptop.pollOnce();
    stored = (await laptop.messages(world.bobUid)).length;
  }
  const applyMs = performance.now() - t1;
  if (stored !== HISTORY_MESSAGES) {
    throw new Error(`history bench: the laptop holds ${stored} of ${HISTORY_MESSAGES} messages`);
  }
  return {
    phoneMs: welcomeMs / HISTORY_MESSAGES,
    laptopMs: applyMs / HISTORY_MESSAGES,
    payloads,
  };
}

/** The baseline: ms per plain `msg` sync of one stored message to one sibling. */
async function plainSync(round: number): Promise<number> {
  const world = await setup(`baseline ${round}`, 1);
  const laptop = await world.open("laptop");
  world.all.push(laptop);
  const ticket = await world.phone.api(DEVICE_SYNC_API).initDevicePairing({
    history: { windowMs: 0, messagesMax: 0 },
  });
  await laptop.api(DEVICE_SYNC_API).answerDevicePairing(ticket.bytes, { deviceName: "laptop" });
  await world.settle();
  const [row] = await world.phone.messages(world.bobUid);
  const t0 = performance.now();
  for (let i = 0; i < BASELINE_SENDS; i++) {
    await world.phone.transact((tx) =>
      world.phone.api(DEVICE_SYNC_API).dispatch(tx, {
        syncType: SYNC_TYPES.msg,
        peerUid: world.bobUid,
        dbMessage: messageForSync(row),
        dedupId: `baseline-${i}`,
      })
    );
  }
  return (performance.now() - t0) / BASELINE_SENDS;
}

const pairings = [];
const baselines = [];
for (let r = 0; r < ROUNDS; r++) {
  pairings.push(await pairing(r));
  baselines.push(await plainSync(r));
}
const base = median(baselines);
const phone = median(pairings.map((p) => p.phoneMs));
const laptop = median(pairings.map((p) => p.laptopMs));
console.log(
  `history bench: pairing a device with ${HISTORY_MESSAGES} messages of history ` +
    `(${pairings[0].payloads} payloads; median of ${ROUNDS} pairings)`,
);
console.log(
  `  plain msg sync (baseline)    ${(base * 1000).toFixed(0).padStart(6)} µs per message`,
);
console.log(
  `  history, pairing device      ${(phone * 1000).toFixed(0).padStart(6)} µs per message` +
    `   ratio ${(phone / base).toFixed(3)}`,
);
console.log(
  `  history, new device          ${(laptop * 1000).toFixed(0).padStart(6)} µs per message` +
    `   ratio ${(laptop / base).toFixed(3)}`,
);

import assert from "node:assert/strict";
import { randomInt, SeededRandom } from "../../crypto/mod.ts";
import type { Plugin } from "../../kernel/plugin.ts";
import { chatPlugin, REFRESH_ATTEMPTS_MAX } from "../chat/mod.ts";
import { dedupPlugin } from "../dedup/mod.ts";
import { DEVICE_SYNC_API, deviceSyncPlugin } from "../device_sync/mod.ts";
import { clone } from "@bufbuild/protobuf";
import { encode } from "../../proto/mod.ts";
import { type PeerRecord, PeerRecordSchema } from "../../proto/mod.ts";
import { chat, lines, type SyncDevice, SyncWorld, uuids } from "../../tests/support/device_sync.ts";
import { FORWARD_RELAY_API, forwardRelayPlugin, HANDOVER_SYNC_TYPE } from "./mod.ts";

const plugins = (extra: Plugin[] = []) => () => [
  chatPlugin(),
  dedupPlugin(),
  deviceSyncPlugin(),
  forwardRelayPlugin(),
  ...extra,
];

/** Alice on phone (bob's primary), laptop and tablet; bob on one phone. */
async function aliceThreeDevices(seed: number, extra: Plugin[] = []) {
  const w = await SyncWorld.create(seed, plugins(extra));
  const phone = await w.device("phone", "alice");
  const laptop = await w.pairDevice(phone, "laptop", [phone]);
  const tablet = await w.pairDevice(phone, "tablet", [phone, laptop]);
  const bob = await w.device("bob", "bob");
  const alice = [phone, laptop, tablet];
  const bobUid = await w.befriend(phone, bob, [...alice, bob]);
  return { w, phone, laptop, tablet, bob, alice, all: [...alice, bob], bobUid };
}

Deno.test("forward_relay: a sibling's message goes through the primary, once, and shows as sent everywhere", async () => {
  const { w, phone, laptop, tablet, bob, all, bobUid } = await aliceThreeDevices(31);
  const relay = (d: SyncDevice) => d.kernel.api(FORWARD_RELAY_API);
  const primary = await laptop.kernel.transact((tx) =>
    Promise.resolve(relay(laptop).primaryOf(tx, bobUid))
  );
  assert.equal(primary, phone.kernel.deviceUid());
  const sent = await chat(laptop).send(bobUid, "from the laptop");
  assert.equal(sent.pendingForward, true, "shown at once, pending");
  assert.deepEqual(await lines(laptop, bobUid), [">from the laptop (pending)"]);
  assert.equal(
    laptop.kernel.peer(bobUid)!.ratchet.length,
    0,
    "the sibling never touches the ratchet",
  );
  await w.settle(all);
  assert.deepEqual(await lines(bob, bobUid), ["<from the laptop"]);
  for (const d of [phone, laptop, tablet]) {
    assert.deepEqual(await lines(d, bobUid), [">from the laptop"], d.name);
    const [m] = await d.kernel.messages(bobUid);
    assert.equal(m.message!.status!.uuid, sent.message!.status!.uuid);
    assert.ok(m.message!.status!.received > 0, `${d.name}: bob's delivery ack`);
  }
  // Bob answers; the tablet reads it; the read receipt goes through the primary as well.
  await chat(bob).send(bobUid, "hi laptop");
  await w.settle(all);
  assert.equal(await chat(tablet).markRead(bobUid), 1);
  await w.settle(all);
  const bobsOwn = (await bob.kernel.messages(bobUid)).find((m) => m.outbound)!;
  assert.ok(bobsOwn.message!.status!.processed > 0, "the tablet's read receipt reached bob");
  const onPhone = (await phone.kernel.messages(bobUid)).find((m) => !m.outbound)!;
  assert.ok(onPhone.message!.status!.processed > 0, "and the read state reached the primary");
});

Deno.test("forward_relay: while the primary is offline forwards wait on the relay; nothing lost or doubled", async () => {
  const { w, phone, laptop, tablet, bob, all, bobUid } = await aliceThreeDevices(32);
  for (let i = 0; i < 5; i++) {
    await chat(laptop).send(bobUid, `l${i}`);
    await chat(tablet).send(bobUid, `t${i}`);
  }
  // Six hours without the phone: everyone else keeps flushing and polling.
  for (let hour = 0; hour < 6; hour++) {
    await w.settle([laptop, tablet, bob]);
    w.world.clock.advance(3600_000);
  }
  assert.deepEqual(await lines(bob, bobUid), []);
  const pending = (await laptop.kernel.messages(bobUid)).filter((m) => m.pendingForward);
  assert.equal(pending.length, 10, "both siblings' messages show, pending, on the laptop");
  await w.settle(all);
  assert.equal((await bob.kernel.messages(bobUid)).length, 10);
  for (const d of [phone, laptop, tablet]) {
    const messages = await d.kernel.messages(bobUid);
    assert.equal(messages.length, 10, d.name);
    assert.ok(messages.every((m) => !m.pendingForward && m.message!.status!.received > 0), d.name);
  }
  assert.deepEqual(await uuids(bob, bobUid), await uuids(laptop, bobUid));
});

Deno.test("forward_relay: a primary that crashes while forwarding sends once and syncs back", async () => {
  let crashOnce = true;
  const crasher: Plugin = {
    name: "crasher",
    on: {
      "message.status"({ origin }) {
        // Fires inside the forward's transaction after the primary encrypted it, before it synced back.
        if (origin === "sync" && crashOnce) {
          crashOnce = false;
          throw new Error("power cut");
        }
      },
    },
  };
  const { w, phone, laptop, tablet, bob, all, bobUid } = await aliceThreeDevices(33, [crasher]);
  crashOnce = false;
  await chat(laptop).send(bobUid, "one");
  await laptop.kernel.flushOutbox();
  crashOnce = true;
  await assert.rejects(phone.kernel.pollOnce(), /power cut/);
  await phone.restart();
  assert.equal(phone.kernel.outboxSize(), 0, "the crashed transaction left nothing behind");
  // The forward is still on the relay; the restarted primary handles it now (a pull signature
  // is single-use per timestamp, so let the clock move past the crashed kernel's last one).
  w.world.clock.advance(1000);
  assert.equal(await phone.kernel.pollOnce(), 1);
  // Crash after the commit, before the outbox left: the outbox survives the restart.
  await chat(tablet).send(bobUid, "two");
  await tablet.kernel.flushOutbox();
  w.world.clock.advance(1000);
  await phone.kernel.pollOnce();
  assert.ok(phone.kernel.outboxSize() > 0);
  await phone.restart();
  await w.settle(all);
  assert.deepEqual(await lines(bob, bobUid), ["<one", "<two"]);
  for (const d of [phone, laptop, tablet]) {
    assert.deepEqual(await lines(d, bobUid), [">one", ">two"], d.name);
  }
});

Deno.test("forward_relay: two users with three devices each, all sending, shuffled delivery, converge", async () => {
  const w = await SyncWorld.create(34, plugins());
  const aPhone = await w.device("a-phone", "alice");
  const aLaptop = await w.pairDevice(aPhone, "a-laptop", [aPhone]);
  const aTablet = await w.pairDevice(aPhone, "a-tablet", [aPhone, aLaptop]);
  const bPhone = await w.device("b-phone", "bob");
  const bLaptop = await w.pairDevice(bPhone, "b-laptop", [bPhone]);
  const bTablet = await w.pairDevice(bPhone, "b-tablet", [bPhone, bLaptop]);
  const alice = [aPhone, aLaptop, aTablet];
  const bob = [bPhone, bLaptop, bTablet];
  const all = [...alice, ...bob];
  // Alice's laptop invites bob's tablet: each is primary on its own side.
  const uid = await w.befriend(aLaptop, bTablet, all);
  const random = new SeededRandom("shuffle");
  let sent = 0;
  for (let round = 0; round < 5; round++) {
    for (const d of all) {
      await chat(d).send(uid, `${d.name}#${round}`);
      sent++;
    }
    const order = [...all].sort(() => randomInt(random, 3) - 1);
    for (const d of order) {
      if (randomInt(random, 2) === 0) await d.kernel.flushOutbox();
      if (randomInt(random, 2) === 0) await d.kernel.pollOnce();
      w.world.clock.advance(randomInt(random, 50));
    }
  }
  await w.settle(all, 100);
  const reference = await uuids(aPhone, uid);
  assert.equal(reference.length, sent);
  for (const d of all) {
    assert.deepEqual(await uuids(d, uid), reference, d.name);
    const messages = await d.kernel.messages(uid);
    assert.ok(messages.every((m) => !m.pendingForward), `${d.name}: nothing left pending`);
    const ownSide = alice.includes(d) ? "a-" : "b-";
    for (const m of messages) {
      assert.equal(
        m.outbound,
        m.message!.data.startsWith(ownSide),
        `${d.name}: direction of ${m.message!.data}`,
      );
    }
  }
});

Deno.test("forward_relay: the contact sees one identity key, one ratchet, one lookup key, whichever device sends", async () => {
  const { w, phone, laptop, tablet, bob, all, bobUid } = await aliceThreeDevices(35);
  for (const d of [phone, laptop, tablet, laptop, phone, tablet]) {
    await chat(d).send(bobUid, `from ${d.name}`);
    await w.settle(all);
  }
  assert.equal(bob.kernel.peers().length, 1, "bob knows one alice");
  assert.equal(bob.kernel.devices().length, 0);
  const inbound = w.observed.filter((o) => o.device === "bob" && o.observation.kind === "inbound");
  const rejected = w.observed.filter((o) =>
    o.device === "bob" && o.observation.kind === "rejected"
  );
  assert.equal(rejected.length, 0, "every message opened with the one ratchet and key bob holds");
  const froms = new Set<string>();
  const destinations = new Set<string>();
  const peerUids = new Set<string>();
  for (const { observation } of inbound) {
    if (observation.kind !== "inbound") continue;
    froms.add(observation.message.from);
    destinations.add(observation.packed.destination);
    peerUids.add(observation.peerUid);
  }
  assert.ok(inbound.length >= 6, "six chats (and the pairing's first messages)");
  assert.deepEqual([...peerUids], [bobUid]);
  assert.equal(froms.size, 1, "one sender lookup key");
  assert.equal(destinations.size, 1, "one queue");
  // Every packed message to bob was made by the phone's pipeline, with the phone's one ratchet.
  const outboundToBob = w.observed.filter((o) =>
    o.observation.kind === "outbound" && o.observation.peerUid === bobUid && o.device !== "bob"
  );
  assert.ok(outboundToBob.every((o) => o.device === "phone"));
  assert.deepEqual((await lines(bob, bobUid)).length, 6);
});

Deno.test("forward_relay: a planned handover moves bob's ratchet to the laptop; bob sees the same session; late forwards go on", async () => {
  const { w, phone, laptop, tablet, bob, alice, all, bobUid } = await aliceThreeDevices(41);
  const relay = (d: SyncDevice) => d.kernel.api(FORWARD_RELAY_API);
  await chat(phone).send(bobUid, "before");
  await w.settle(all);
  const bobsView = () => {
    const alicePeer = bob.kernel.peer(bobUid)!;
    return [alicePeer.contact!.identityPublicKey.join(), alicePeer.contact!.lookupPublicKey.join()];
  };
  const keysBefore = bobsView();
  // The tablet sends while only the phone knows of the handover: its forward reaches the old primary.
  const late = await chat(tablet).send(bobUid, "late forward");
  const epoch = await relay(phone).handover(bobUid, laptop.kernel.deviceUid());
  assert.equal(epoch, 1);
  assert.equal(phone.kernel.peer(bobUid)!.ratchet.length, 0, "the old primary keeps no ratchet");
  await w.settle(all);
  assert.ok(laptop.kernel.peer(bobUid)!.ratchet.length > 0, "the laptop holds the live ratchet");
  for (const d of alice) {
    assert.equal(d.kernel.primaryOf(d.kernel.peer(bobUid)!), laptop.kernel.deviceUid(), d.name);
    assert.equal(d.kernel.peer(bobUid)!.primaryEpoch, 1, d.name);
  }
  await chat(laptop).send(bobUid, "from the new primary");
  await chat(bob).send(bobUid, "reply");
  await w.settle(all);
  assert.deepEqual(await lines(bob, bobUid), [
    "<before",
    "<from the new primary",
    "<late forward",
    ">reply",
  ]);
  for (const d of alice) {
    assert.deepEqual(await lines(d, bobUid), [
      "<reply",
      ">before",
      ">from the new primary",
      ">late forward",
    ], d.name);
  }
  assert.ok((await uuids(bob, bobUid)).includes(late.message!.status!.uuid));
  assert.deepEqual(bobsView(), keysBefore, "bob sees the same keys");
  // The phone is no longer primary: a second handover from it is refused, nothing changes.
  await assert.rejects(relay(phone).handover(bobUid, tablet.kernel.deviceUid()), TypeError);
});

Deno.test("forward_relay refuses a handover from a device that is not the contact's primary, and a stale one; nothing changes", async () => {
  const { w, phone, laptop, tablet, all, bobUid } = await aliceThreeDevices(43);
  const send = (from: SyncDevice, to: SyncDevice, record: PeerRecord) =>
    from.kernel.transact((tx) =>
      from.kernel.api(DEVICE_SYNC_API).dispatch(tx, {
        syncType: HANDOVER_SYNC_TYPE,
        peerUid: bobUid,
        peerData: encode(PeerRecordSchema, record),
      }, { to: [to.kernel.deviceUid()] })
    );
  const forged = clone(PeerRecordSchema, laptop.kernel.peer(bobUid)!);
  forged.ratchet = new Uint8Array(64).fill(7);
  forged.primaryDeviceUid = laptop.kernel.deviceUid();
  forged.primaryEpoch = 5;
  const before = laptop.kernel.peer(bobUid)!;
  const mark = w.observed.length;
  // The tablet is not bob's primary: its "handover" is refused by the laptop.
  await send(tablet, laptop, forged);
  await w.settle(all);
  const rejected = w.observed.slice(mark).filter((o) => o.observation.kind === "rejected");
  assert.deepEqual(rejected.map((o) => o.device), ["laptop"]);
  assert.deepEqual(laptop.kernel.peer(bobUid), before, "the laptop's record of bob is unchanged");
  assert.equal(laptop.kernel.primaryOf(before), phone.kernel.deviceUid());
});

Deno.test("forward_relay: a forward the primary never confirms is sent again, then shown failed on every device", async () => {
  const { w, laptop, tablet, bob, bobUid } = await aliceThreeDevices(47);
  const halfRetentionMs = 7 * 86_400_000;
  // The phone (bob's primary) is gone: it never polls again.
  const sent = await chat(laptop).send(bobUid, "into the void");
  const uuid = sent.message!.status!.uuid;
  const row = async (d: SyncDevice) =>
    (await d.kernel.messages(bobUid)).find((m) => m.message!.status!.uuid === uuid)!;
  for (let step = 1; step <= REFRESH_ATTEMPTS_MAX + 1; step++) {
    w.world.clock.advance(halfRetentionMs);
    await w.settle([laptop, tablet, bob]);
    const mine = await row(laptop);
    if (step <= REFRESH_ATTEMPTS_MAX) {
      assert.equal(mine.refreshCount, step, `sent again after ${step} half-retentions`);
      assert.equal(mine.failedAt, 0);
    }
  }
  for (const d of [laptop, tablet]) {
    const m = await row(d);
    assert.ok(m.failedAt > 0, `${d.name} shows it failed`);
    assert.match(m.failedReason, /not confirmed by the primary after 4 resends/);
  }
});

import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { encode } from "../../proto/codec.ts";
import {
  DbMessageSchema,
  DeviceIntroductionSchema,
  type DeviceSyncPayload,
  DeviceSyncPayloadSchema,
  PeerRecordSchema,
  PeerType,
  UserMessageSchema,
} from "../../proto/gen/meow_pb.ts";
import { randomInt, randomUuid, SeededRandom } from "../../crypto/mod.ts";
import { BadRecoveryCode, newRecoveryCode } from "../../kernel/device_list.ts";
import { REKEY_TYPE } from "../../kernel/rekey.ts";
import { contactLookupKey, myLookupKey } from "../../kernel/pipeline.ts";
import type { Plugin, Tx } from "../../kernel/plugin.ts";
import { MemoryBackend, ServerCore } from "../../server/mod.ts";
import { chatPlugin } from "../chat/mod.ts";
import { DEDUP_API, dedupPlugin } from "../dedup/mod.ts";
import {
  containsBytes,
  decodeSyncPayload,
  DEVICE_SYNC_API,
  DEVICE_SYNC_TYPE,
  deviceSyncPlugin,
  encodeSyncPayload,
  HISTORY_PAYLOAD_MESSAGES_MAX,
  SYNC_TYPES,
} from "./mod.ts";
import {
  chat,
  lines,
  sync,
  type SyncDevice,
  SyncWorld,
  uuids,
} from "../../tests/support/device_sync.ts";

/** Sends `appdata` as a raw device_sync message from `from` to peer `toUid` (bad input on purpose). */
function sendDeviceSync(
  w: SyncWorld,
  from: SyncDevice,
  toUid: string,
  appdata: Uint8Array,
): Promise<void> {
  return from.kernel.transact(async (tx: Tx) => {
    const peer = tx.peer(toUid)!;
    await tx.sendDirect(
      toUid,
      create(UserMessageSchema, {
        destination: contactLookupKey(peer),
        from: myLookupKey(peer),
        type: DEVICE_SYNC_TYPE,
        appdata,
        status: { uuid: randomUuid(w.world.random) },
      }),
    );
  });
}

/** A user "alice" with devices phone (the first) and laptop, and a contact "bob" paired with the phone. */
async function aliceAndBob(seed: number) {
  const w = await SyncWorld.create(seed);
  const phone = await w.device("phone", "alice");
  const laptop = await w.pairDevice(phone, "laptop", [phone]);
  const bob = await w.device("bob", "bob");
  const all = [phone, laptop, bob];
  const bobUid = await w.befriend(phone, bob, all);
  return { w, phone, laptop, bob, all, bobUid };
}

Deno.test("encodeSyncPayload() and decodeSyncPayload() round-trip every field; bad bytes are Malformed", () => {
  const payload = create(DeviceSyncPayloadSchema, {
    syncType: SYNC_TYPES.msg,
    peerUid: "peer-1",
    dbMessage: {
      peerUid: "peer-1",
      outbound: true,
      message: { data: "hi", status: { uuid: "u1", sent: 7 } },
    },
    dedupId: "msg:u1",
    peerData: new Uint8Array([1, 2]),
    identityData: new Uint8Array([3]),
    forwardPayload: new Uint8Array([4, 5, 6]),
    forwardPeerUid: "peer-2",
    timestamp: 1_767_225_600_123,
    originDevice: "dev-a",
    pluginData: new Uint8Array([9]),
  });
  const back = decodeSyncPayload(encodeSyncPayload(payload));
  assert.deepEqual(back, payload);
  assert.throws(() => decodeSyncPayload(new Uint8Array([0x0a, 0x05, 0x61])), { name: "Malformed" });
  const untyped = encodeSyncPayload(create(DeviceSyncPayloadSchema, { dedupId: "x" }));
  assert.throws(() => decodeSyncPayload(untyped), { name: "Malformed" });
});

Deno.test("device_sync pairing: the new device learns identity, profile, relays and contacts; no root private key", async () => {
  const w = await SyncWorld.create(11);
  const phone = await w.device("phone", "alice");
  const bob = await w.device("bob", "bob");
  const bobUid = await w.befriend(phone, bob, [phone, bob]);
  await phone.kernel.updateProfile({ status: "at sea" });
  const laptop = await w.pairDevice(phone, "laptop", [phone, bob]);
  const id = laptop.kernel.identity();
  assert.equal(id.uid, phone.kernel.identity().uid);
  assert.deepEqual(id.root?.publicKey, phone.kernel.identity().root?.publicKey);
  assert.equal(id.root?.privateKey.length, 0, "the root private key stays on the phone");
  assert.equal(id.profile?.nickname, "alice");
  assert.equal(id.profile?.status, "at sea");
  assert.deepEqual(id.servers.map((s) => s.uid), [w.world.core.card().uid]);
  const contact = laptop.kernel.peer(bobUid)!;
  assert.equal(contact.name, "bob");
  assert.equal(contact.type, PeerType.CONTACT);
  assert.equal(contact.primaryDeviceUid, phone.kernel.deviceUid());
  assert.equal(contact.ratchet.length, 0, "only the primary holds the ratchet");
  assert.equal(phone.kernel.peer(bobUid)!.primaryDeviceUid, "", "empty on the primary itself");
  assert.equal(laptop.kernel.devices()[0].name, "phone");
  assert.equal(phone.kernel.devices()[0].name, "laptop");
});

Deno.test("device_sync: a message sent on the phone is stored on the laptop, once, as synced", async () => {
  const { w, phone, laptop, bob, all, bobUid } = await aliceAndBob(12);
  const sent = await chat(phone).send(bobUid, "hello bob");
  await w.settle(all);
  const [copy] = await laptop.kernel.messages(bobUid);
  assert.equal(copy.message!.status!.uuid, sent.message!.status!.uuid);
  assert.equal(copy.outbound, true);
  assert.equal(copy.synced, true);
  assert.equal(copy.pendingForward, false);
  assert.ok(
    copy.message!.status!.received > 0,
    "bob's delivery ack reached the laptop as a status",
  );
  assert.deepEqual(await lines(bob, bobUid), ["<hello bob"]);
  assert.deepEqual(await uuids(laptop, bobUid), await uuids(phone, bobUid));
});

Deno.test("device_sync: a failure syncs to the sibling, and the first failure wins on both", async () => {
  const { w, phone, laptop, all, bobUid } = await aliceAndBob(13);
  const sent = await chat(phone).send(bobUid, "refused for good");
  await w.settle(all);
  const uuid = sent.message!.status!.uuid;
  /** Marks the message failed on `device` as the kernel does, at `at`. */
  const fail = (device: SyncDevice, reason: string, at: number) =>
    device.kernel.transact(async (tx) => {
      const row = (await tx.message(bobUid, uuid))!;
      row.failedReason = reason;
      row.failedAt = at;
      tx.putMessage(row);
      await tx.emit("message.status", { message: row, origin: "local" });
    });
  await fail(phone, "too large: first", 1_000);
  await fail(laptop, "queue full: later", 2_000);
  await w.settle(all);
  for (const d of [phone, laptop]) {
    const [m] = await d.kernel.messages(bobUid);
    assert.equal(m.failedReason, "too large: first", d.name);
    assert.equal(m.failedAt, 1_000, d.name);
  }
});

Deno.test("device_sync: a message from a contact to the primary is stored on the sibling", async () => {
  const { w, phone, laptop, bob, all, bobUid } = await aliceAndBob(13);
  await chat(bob).send(bobUid, "hi alice");
  await w.settle(all);
  assert.deepEqual(await lines(laptop, bobUid), ["<hi alice"]);
  const [onPhone] = await phone.kernel.messages(bobUid);
  const [onLaptop] = await laptop.kernel.messages(bobUid);
  assert.equal(onLaptop.message!.status!.received, onPhone.message!.status!.received);
  assert.equal(onLaptop.synced, true);
  assert.equal(onPhone.synced, false);
  // Reading on the primary syncs the read state to the sibling and a receipt to bob.
  await chat(phone).markRead(bobUid);
  await w.settle(all);
  const [read] = await laptop.kernel.messages(bobUid);
  assert.ok(read.message!.status!.processed > 0);
  const [bobsCopy] = await bob.kernel.messages(bobUid);
  assert.ok(bobsCopy.message!.status!.processed > 0);
});

Deno.test("device_sync dedup: one dedup id applied once (one row), remembered until pruned", async () => {
  const { w, phone, laptop, all, bobUid } = await aliceAndBob(14);
  const payloadOf = (uuid: string, text: string) => ({
    syncType: SYNC_TYPES.msg,
    peerUid: bobUid,
    dedupId: "same-id",
    dbMessage: create(DbMessageSchema, {
      peerUid: bobUid,
      outbound: true,
      message: { type: "chat", data: text, status: { uuid, sent: w.world.clock.now() } },
    }),
  });
  await phone.kernel.transact((tx) => sync(phone).dispatch(tx, payloadOf("u-1", "first")));
  await phone.kernel.transact((tx) => sync(phone).dispatch(tx, payloadOf("u-2", "second")));
  await w.settle(all);
  assert.deepEqual(await lines(laptop, bobUid), [">first"], "the repeat id was dropped");
  const dedup = laptop.kernel.api(DEDUP_API);
  assert.equal(await dedup.isSeen("same-id"), true);
  w.world.clock.advance(1000);
  assert.ok(await dedup.prune(w.world.clock.now()) >= 1);
  assert.equal(await dedup.isSeen("same-id"), false);
});

Deno.test("device_sync: a late third device gets contacts, profile and history, the mesh is complete and traffic converges", async () => {
  const { w, phone, laptop, bob, bobUid } = await aliceAndBob(15);
  await chat(phone).send(bobUid, "before the tablet");
  await w.settle([phone, laptop, bob]);
  // Paired by the phone, which holds the identity root (it signs the device list).
  const tablet = await w.pairDevice(phone, "tablet", [phone, laptop, bob]);
  const alice = [phone, laptop, tablet];
  // Contacts and profile arrived at once.
  assert.equal(tablet.kernel.peer(bobUid)?.name, "bob");
  assert.equal(tablet.kernel.peer(bobUid)?.primaryDeviceUid, phone.kernel.deviceUid());
  assert.equal(tablet.kernel.identity().profile?.nickname, "alice");
  // Every pair has its own direct channel: three devices, each with two siblings.
  for (const d of alice) {
    const others = alice.filter((o) => o !== d).map((o) => o.kernel.deviceUid()).sort();
    assert.deepEqual(
      d.kernel.devices().map((s) => s.deviceUid).sort(),
      others,
      `${d.name}'s siblings`,
    );
  }
  // Laptop ↔ tablet talk directly even while the phone (which paired the tablet) is away.
  await laptop.kernel.updateProfile({ status: "phone is off" });
  await tablet.kernel.updatePeer(bobUid, { name: "Bob B." });
  await w.settle([laptop, tablet, bob]);
  assert.equal(tablet.kernel.identity().profile?.status, "phone is off");
  assert.equal(laptop.kernel.peer(bobUid)?.name, "Bob B.");
  await w.settle([phone, laptop, tablet, bob]);
  // Later traffic converges everywhere.
  await chat(phone).send(bobUid, "after the tablet");
  await chat(bob).send(bobUid, "hello all of you");
  await w.settle([phone, laptop, tablet, bob]);
  // The message from before the tablet came as history when it paired.
  assert.deepEqual(await lines(tablet, bobUid), [
    "<hello all of you",
    ">after the tablet",
    ">before the tablet",
  ]);
  assert.deepEqual(await lines(laptop, bobUid), [
    "<hello all of you",
    ">after the tablet",
    ">before the tablet",
  ]);
  assert.equal(phone.kernel.peer(bobUid)?.name, "Bob B.");
  assert.equal(phone.kernel.identity().profile?.status, "phone is off");
  // The sibling that paired the tablet did not relay: the laptop's sync went straight to the tablet.
  const laptopToTablet = w.observed.filter((o) =>
    o.device === "laptop" && o.observation.kind === "outbound" &&
    o.observation.peerUid === laptop.kernel.devices().find((d) => d.name === "tablet")?.uid
  );
  assert.ok(laptopToTablet.length > 0);
  // Every device holds the same root-signed list, naming all three.
  for (const d of alice) {
    assert.deepEqual(
      [...d.kernel.identity().deviceList!.deviceUids].sort(),
      alice.map((o) => o.kernel.deviceUid()).sort(),
    );
  }
});

Deno.test("device_sync: concurrent profile and contact edits delivered in different orders converge (LWW)", async () => {
  const w = await SyncWorld.create(16);
  const phone = await w.device("phone", "alice");
  const laptop = await w.pairDevice(phone, "laptop", [phone]);
  const tablet = await w.pairDevice(phone, "tablet", [phone, laptop]);
  const bob = await w.device("bob", "bob");
  const alice = [phone, laptop, tablet];
  const bobUid = await w.befriend(phone, bob, [...alice, bob]);
  const random = new SeededRandom("lww");
  for (let round = 0; round < 6; round++) {
    // Every device edits both records; some at the same clock time (tie on device uid).
    for (const d of alice) {
      await d.kernel.updateProfile({ nickname: `${d.name}-${round}`, status: `s${round}` });
      await d.kernel.updatePeer(bobUid, {
        name: `bob by ${d.name} ${round}`,
        blocked: round % 2 === 0,
      });
      if (randomInt(random, 2) === 0) w.world.clock.advance(1);
    }
    // Deliver in a shuffled order: flush all, then poll devices one by one in random order, twice.
    for (const d of alice) await d.kernel.flushOutbox();
    for (let pass = 0; pass < 2; pass++) {
      const order = [...alice].sort(() => randomInt(random, 3) - 1);
      for (const d of order) await d.kernel.pollOnce();
    }
  }
  await w.settle([...alice, bob]);
  const profiles = alice.map((d) => {
    const p = d.kernel.identity().profile!;
    return `${p.nickname}|${p.status}|${p.updatedAt}|${p.updatedBy}`;
  });
  assert.equal(new Set(profiles).size, 1, profiles.join("\n"));
  const contacts = alice.map((d) => {
    const p = d.kernel.peer(bobUid)!;
    return `${p.name}|${p.blocked}|${p.updatedAt}|${p.updatedBy}`;
  });
  assert.equal(new Set(contacts).size, 1, contacts.join("\n"));
  assert.equal(phone.kernel.peer(bobUid)!.primaryDeviceUid, "", "the primary stays primary");
  assert.ok(phone.kernel.peer(bobUid)!.ratchet.length > 0, "and keeps its ratchet");
});

Deno.test("device_sync: restarts mid-sync lose nothing and duplicate nothing", async () => {
  const { w, phone, laptop, bob, all, bobUid } = await aliceAndBob(17);
  const random = new SeededRandom("restart");
  for (let i = 0; i < 40; i++) {
    await chat(phone).send(bobUid, `p${i}`);
    await chat(bob).send(bobUid, `b${i}`);
    const roll = randomInt(random, 6);
    if (roll === 0) await w.settle(all);
    else if (roll === 1) {
      await laptop.restart();
      w.world.clock.advance(1000);
    } else if (roll === 2) {
      // The laptop commits what the phone sends and crashes before acking: the relay delivers again.
      const toLaptop = phone.kernel.devices()[0].uid;
      for (const entry of await phone.store.listOutbox()) {
        if (entry.peerUid === toLaptop) await laptop.kernel.receive(entry.packed!);
      }
      await laptop.restart();
      w.world.clock.advance(1000); // past the crashed kernel's last pull signature
    } else if (roll === 3) {
      await bob.kernel.flushOutbox();
      await phone.restart();
      w.world.clock.advance(1000);
    }
  }
  await w.settle(all, 200);
  const expected = await uuids(phone, bobUid);
  assert.equal(expected.length, 80);
  assert.deepEqual(await uuids(laptop, bobUid), expected);
  const onLaptop = await laptop.kernel.messages(bobUid);
  assert.ok(
    onLaptop.every((m) => m.message!.status!.received > 0),
    "every status reached the sibling",
  );
});

Deno.test("device_sync: no private key of the identity or device appears in any plaintext a device sends", async () => {
  const { w, phone, laptop, bob, bobUid } = await aliceAndBob(18);
  const tablet = await w.pairDevice(phone, "tablet", [phone, laptop, bob]);
  await phone.kernel.updateProfile({ nickname: "Al" });
  await laptop.kernel.updatePeer(bobUid, { name: "B" });
  await chat(phone).send(bobUid, "x");
  await w.settle([phone, laptop, tablet, bob]);
  const secrets = [phone, laptop, tablet].flatMap((d) => {
    const id = d.kernel.identity();
    return [id.root?.privateKey, id.deviceEncryption!.privateKey, id.deviceSigning!.privateKey]
      .filter((k): k is Uint8Array => k !== undefined && k.length > 0)
      .map((key) => ({ device: d.name, key }));
  });
  assert.equal(secrets.length, 7, "a root key on the phone, two device keys on each device");
  let scanned = 0;
  for (const { device, observation } of w.observed) {
    if (observation.kind !== "outbound") continue;
    const bytes = encode(UserMessageSchema, observation.message);
    scanned++;
    for (const secret of secrets) {
      assert.ok(
        !containsBytes(bytes, secret.key),
        `${device} sent a private key of ${secret.device}`,
      );
    }
  }
  assert.ok(scanned > 15, `scanned ${scanned} plaintexts`);
});

Deno.test("device_sync refuses a hidden peer, a payload from a contact, and a malformed sibling payload", async () => {
  const { w, phone, laptop, bob, all, bobUid } = await aliceAndBob(19);
  // A payload that does not decode, sent by a genuine sibling: rejected, nothing changes.
  const before = await laptop.kernel.messages(bobUid);
  const rejected: string[] = [];
  const sendRaw = (appdata: Uint8Array, from: SyncDevice, toUid: string) =>
    sendDeviceSync(w, from, toUid, appdata);
  await sendRaw(new Uint8Array([0x1a, 0xff, 0x01]), phone, phone.kernel.devices()[0].uid);
  const spoofed = encodeSyncPayload(create(DeviceSyncPayloadSchema, {
    syncType: SYNC_TYPES.peerUpdate,
    dedupId: "spoof",
    originDevice: "someone-else",
    peerData: encode(PeerRecordSchema, create(PeerRecordSchema, { uid: "x" })),
  }));
  await sendRaw(spoofed, phone, phone.kernel.devices()[0].uid);
  // Bob (a contact) sends a device_sync message: refused.
  await sendRaw(spoofed, bob, bobUid);
  const before2 = phone.kernel.peers().length;
  await w.settle(all);
  for (const o of w.observed) {
    if (o.observation.kind === "rejected") {
      rejected.push(`${o.device}:${o.observation.error.code}`);
    }
  }
  assert.deepEqual(rejected.sort(), ["laptop:Malformed", "laptop:Malformed", "phone:Malformed"]);
  assert.deepEqual(await laptop.kernel.messages(bobUid), before);
  assert.equal(phone.kernel.peers().length, before2);
  // A contact hidden on the phone is never synced.
  await phone.kernel.transact((tx) => {
    const id = tx.identity();
    id.hiddenPeers.push(bobUid);
    tx.putIdentity(id);
    return Promise.resolve();
  });
  await chat(phone).send(bobUid, "secret");
  await phone.kernel.updatePeer(bobUid, { name: "hidden bob" });
  await w.settle(all);
  assert.deepEqual(await lines(laptop, bobUid), []);
  assert.equal(laptop.kernel.peer(bobUid)?.name, "bob");
});

Deno.test("device_sync pairs by a short code through a relay mailbox, and syncs a relay added later", async () => {
  const w = await SyncWorld.create(20);
  const phone = await w.device("phone", "alice");
  const offer = await sync(phone).offerDevicePairing({ form: "code" });
  const laptop = await w.device("laptop");
  await Promise.all([
    offer.exchanged,
    sync(laptop).joinDevices({ code: offer.code, server: w.world.core.card() }, {
      deviceName: "laptop",
    }),
  ]);
  await w.settle([phone, laptop]);
  assert.equal(laptop.kernel.identity().uid, phone.kernel.identity().uid);
  assert.equal(phone.kernel.devices()[0].name, "laptop");
  const relay2 = await ServerCore.create({
    backend: new MemoryBackend(),
    clock: w.world.clock,
    random: w.world.random.fork("relay2"),
    name: "relay2",
  });
  w.world.transport.add(relay2);
  await laptop.kernel.addServer(relay2.card());
  await w.settle([phone, laptop]);
  const expected = [w.world.core.card().uid, relay2.card().uid];
  assert.deepEqual(phone.kernel.identity().servers.map((s) => s.uid), expected);
  await assert.rejects(
    sync(laptop).answerDevicePairing(new Uint8Array(), { deviceName: "x" }),
    TypeError,
  );
});

Deno.test("device_sync registerSyncType(): a plugin's own sync type gets dispatch, dedup and persistence", async () => {
  const applied: string[] = [];
  const drafts = (): Plugin => ({
    name: "drafts",
    setup(host) {
      host.api(DEVICE_SYNC_API).registerSyncType(
        "draft",
        (payload, { from }) => {
          applied.push(`${from.name}:${new TextDecoder().decode(payload.pluginData)}`);
        },
      );
    },
  });
  const w = await SyncWorld.create(
    21,
    () => [chatPlugin(), dedupPlugin(), deviceSyncPlugin(), drafts()],
  );
  const phone = await w.device("phone", "alice");
  const laptop = await w.pairDevice(phone, "laptop", [phone]);
  await phone.kernel.transact(async (tx) => {
    await sync(phone).dispatch(tx, {
      syncType: "draft",
      dedupId: "d1",
      pluginData: new TextEncoder().encode("hel"),
    });
    await sync(phone).dispatch(tx, {
      syncType: "draft",
      dedupId: "d1",
      pluginData: new TextEncoder().encode("dup"),
    });
  });
  await w.settle([phone, laptop]);
  assert.deepEqual(applied, ["phone:hel"]);
  await assert.rejects(
    phone.kernel.transact((tx) => sync(phone).dispatch(tx, { syncType: "nope" })),
    /not registered/,
  );
  assert.throws(() => sync(phone).registerSyncType("late", () => {}), /register in setup/);
});

Deno.test("device_sync refuses a history or catch_up payload from a contact, for an unknown conversation, or over the limits; nothing changes", async () => {
  const { w, phone, laptop, bob, all, bobUid } = await aliceAndBob(31);
  await chat(phone).send(bobUid, "already here");
  await w.settle(all);
  const sendRaw = (payload: DeviceSyncPayload, from: SyncDevice, toUid: string) =>
    sendDeviceSync(w, from, toUid, encodeSyncPayload(payload));
  const row = (peerUid: string, text: string) =>
    create(DbMessageSchema, {
      peerUid,
      outbound: true,
      message: { type: "chat", data: text, status: { uuid: randomUuid(w.world.random), sent: 1 } },
    });
  const history = (init: MessageInitShape<typeof DeviceSyncPayloadSchema>) =>
    create(DeviceSyncPayloadSchema, {
      syncType: SYNC_TYPES.history,
      dedupId: randomUuid(w.world.random),
      originDevice: phone.kernel.deviceUid(),
      ...init,
    });
  const toLaptop = phone.kernel.devices()[0].uid;
  const before = { messages: await laptop.kernel.messages(bobUid), peers: laptop.kernel.peers() };
  // An unknown conversation, with no record of it in the payload.
  await sendRaw(history({ peerUid: "nobody", history: [row("nobody", "ghost")] }), phone, toLaptop);
  // A message of another conversation smuggled into bob's.
  await sendRaw(
    history({ peerUid: bobUid, history: [row(bobUid, "fine"), row("nobody", "smuggled")] }),
    phone,
    toLaptop,
  );
  // Over the per-payload limit.
  const many = Array.from(
    { length: HISTORY_PAYLOAD_MESSAGES_MAX + 1 },
    (_, i) => create(DbMessageSchema, { peerUid: bobUid, message: { status: { uuid: `m${i}` } } }),
  );
  await sendRaw(history({ peerUid: bobUid, history: many }), phone, toLaptop);
  // A catch_up asking from the future, and one from bob, a contact.
  await sendRaw(
    history({ syncType: SYNC_TYPES.catchUp, since: w.world.clock.now() + 3_600_000 }),
    phone,
    toLaptop,
  );
  await sendRaw(history({ syncType: SYNC_TYPES.catchUp, since: 1 }), bob, bobUid);
  const mark = w.observed.length;
  await w.settle(all);
  const rejected = w.observed.slice(mark).filter((o) => o.observation.kind === "rejected")
    .map((o) => `${o.device}:${o.observation.kind === "rejected" ? o.observation.error.code : ""}`);
  assert.deepEqual(rejected.sort(), [
    "laptop:Malformed",
    "laptop:Malformed",
    "laptop:Malformed",
    "laptop:Malformed",
    "phone:Malformed",
  ]);
  assert.deepEqual(await laptop.kernel.messages(bobUid), before.messages);
  assert.deepEqual(laptop.kernel.peers(), before.peers);
  // A well-formed history payload of bob's conversation is stored as synced, once.
  const good = row(bobUid, "from history");
  await sendRaw(history({ peerUid: bobUid, history: [good] }), phone, toLaptop);
  await sendRaw(history({ peerUid: bobUid, history: [good] }), phone, toLaptop);
  await w.settle(all);
  const stored = (await laptop.kernel.messages(bobUid)).filter((m) =>
    m.message?.data === "from history"
  );
  assert.equal(stored.length, 1);
  assert.equal(stored[0].synced, true);
});

/** Alice's phone (the root), laptop and tablet, every plugin of device_sync built with `options`. */
async function threeDevices(seed: number, options: { unsignedList?: boolean } = {}) {
  const w = await SyncWorld.create(
    seed,
    () => [chatPlugin(), dedupPlugin(), deviceSyncPlugin(options)],
  );
  const phone = await w.device("phone", "alice");
  const laptop = await w.pairDevice(phone, "laptop", [phone]);
  const tablet = await w.pairDevice(phone, "tablet", [phone, laptop]);
  return { w, phone, laptop, tablet, all: [phone, laptop, tablet] };
}

/** The stolen tablet tells the phone that the laptop was removed, with no root signature. */
async function forgeRemoval(
  w: SyncWorld,
  tablet: SyncDevice,
  phone: SyncDevice,
  laptopUid: string,
) {
  const toPhone = tablet.kernel.devices().find((d) => d.deviceUid === phone.kernel.deviceUid())!;
  await sendDeviceSync(
    w,
    tablet,
    toPhone.uid,
    encodeSyncPayload(create(DeviceSyncPayloadSchema, {
      syncType: SYNC_TYPES.deviceRemove,
      dedupId: "forged-remove",
      originDevice: tablet.kernel.deviceUid(),
      deviceUid: laptopUid,
    })),
  );
}

Deno.test("attack: a stolen device removes a sibling in a build without the root signature, not in the real one", async () => {
  for (const unsignedList of [true, false]) {
    const { w, phone, laptop, tablet, all } = await threeDevices(31, { unsignedList });
    const laptopUid = laptop.kernel.deviceUid();
    const before = phone.kernel.identity();
    await forgeRemoval(w, tablet, phone, laptopUid);
    await w.settle(all);
    const removed = phone.kernel.identity().removedDevices.includes(laptopUid);
    if (unsignedList) {
      assert.ok(removed, "the weakened build took the forged removal");
      assert.ok(!phone.kernel.devices().some((d) => d.deviceUid === laptopUid));
      continue;
    }
    // Refused: a typed error, and the phone's devices and list are as they were.
    assert.ok(!removed);
    assert.ok(phone.kernel.devices().some((d) => d.deviceUid === laptopUid));
    assert.deepEqual(phone.kernel.identity().deviceList, before.deviceList);
    const refusal = w.observed.find((o) =>
      o.device === "phone" && o.observation.kind === "rejected"
    );
    assert.ok(refusal?.observation.kind === "rejected");
    assert.match(refusal.observation.error.message, /not signed by the root/);
    // Nor may it introduce a device of its own (a copy of a real record under a new device uid),
    // or send a rekey, which only a contact's session carries.
    const own = tablet.kernel.devices()[0];
    const evil = create(PeerRecordSchema, { ...own, deviceUid: "evil-device", uid: "evil-peer" });
    const toPhone = tablet.kernel.devices().find((d) => d.deviceUid === phone.kernel.deviceUid())!;
    await sendDeviceSync(
      w,
      tablet,
      toPhone.uid,
      encodeSyncPayload(create(DeviceSyncPayloadSchema, {
        syncType: SYNC_TYPES.deviceIntroduce,
        dedupId: "forged-intro",
        originDevice: tablet.kernel.deviceUid(),
        pluginData: encode(
          DeviceIntroductionSchema,
          create(DeviceIntroductionSchema, {
            deviceUid: "evil-device",
            deviceName: "evil",
            peer: evil,
          }),
        ),
      })),
    );
    await tablet.kernel.transact(async (tx: Tx) => {
      const peer = tx.peer(toPhone.uid)!;
      await tx.sendDirect(
        toPhone.uid,
        create(UserMessageSchema, {
          destination: contactLookupKey(peer),
          from: myLookupKey(peer),
          type: REKEY_TYPE,
          status: { uuid: randomUuid(w.world.random) },
        }),
      );
    });
    await w.settle(all);
    assert.ok(!phone.kernel.devices().some((d) => d.deviceUid === "evil-device"));
    const refusals = w.observed.filter((o) =>
      o.device === "phone" && o.observation.kind === "rejected"
    ).map((o) => o.observation.kind === "rejected" ? o.observation.error.message : "");
    assert.equal(refusals.length, 3, refusals.join("; "));
    assert.match(refusals[1], /device_introduce: the device list it carries is not signed/);
    assert.match(refusals[2], /only contacts rekey/);
    // A non-root device cannot change the list itself either.
    await assert.rejects(
      tablet.kernel.api(DEVICE_SYNC_API).removeDevice(laptopUid),
      /only the device holding the identity root/,
    );
    await assert.rejects(
      tablet.kernel.api(DEVICE_SYNC_API).offerDevicePairing(),
      /only the device holding the identity root/,
    );
  }
});

Deno.test("devices recover: the recovery code moves the root to another device, a wrong code changes nothing", async () => {
  const w = await SyncWorld.create(33);
  const code = newRecoveryCode(new SeededRandom(5));
  const phone = await w.device("phone", "alice", code);
  const laptop = await w.pairDevice(phone, "laptop", [phone]);
  const api = laptop.kernel.api(DEVICE_SYNC_API);
  assert.equal(api.holdsRoot(), false);
  const wrong = newRecoveryCode(new SeededRandom(6));
  await assert.rejects(api.recoverRoot(wrong), BadRecoveryCode);
  await assert.rejects(api.recoverRoot("not-a-code"), BadRecoveryCode);
  assert.equal(api.holdsRoot(), false);
  assert.equal(laptop.kernel.identity().root?.privateKey.length, 0);
  await api.recoverRoot(code.toLowerCase().replaceAll("-", " "));
  assert.equal(api.holdsRoot(), true);
  // Now the laptop signs: it removes the phone, and the list it signed names the laptop alone.
  await api.removeDevice(phone.kernel.deviceUid());
  assert.deepEqual(laptop.kernel.identity().deviceList!.deviceUids, [laptop.kernel.deviceUid()]);
});

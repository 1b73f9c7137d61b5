import assert from "node:assert/strict";
import { isUnread } from "../chat/mod.ts";
import { chat, type SyncDevice, SyncWorld } from "../../tests/support/device_sync.ts";
import { productionPlugins } from "../mod.ts";
import { REACTIONS_API } from "../reactions/mod.ts";
import { EDITS_API } from "../edits/mod.ts";
import { DELETIONS_API } from "../deletions/mod.ts";

/** Alice on a phone (bob's primary) and a laptop, bob on a phone and a laptop. */
async function twoByTwo(seed: number) {
  const w = await SyncWorld.create(seed, () => productionPlugins());
  const phone = await w.device("alice-phone", "alice");
  const laptop = await w.pairDevice(phone, "alice-laptop", [phone]);
  const bob = await w.device("bob-phone", "bob");
  const bobLaptop = await w.pairDevice(bob, "bob-laptop", [bob]);
  const all = [phone, laptop, bob, bobLaptop];
  const bobUid = await w.befriend(phone, bob, all);
  const aliceUid = bob.kernel.peers()[0].uid;
  /** Each device with its conversation with the other user. */
  const sides: [SyncDevice, string][] = [
    [phone, bobUid],
    [laptop, bobUid],
    [bob, aliceUid],
    [bobLaptop, aliceUid],
  ];
  return { w, phone, laptop, bob, bobLaptop, all, bobUid, aliceUid, sides };
}

const unread = async (d: SyncDevice, peerUid: string) =>
  (await d.kernel.messages(peerUid)).filter(isUnread).length;

const uuidOf = async (d: SyncDevice, peerUid: string, text: string) =>
  (await d.kernel.messages(peerUid)).find((m) => m.message?.data === text)!.message!.status!.uuid;

Deno.test("reactions and edits never count as unread nor send read receipts; history stays one row per message", async () => {
  const { w, phone, laptop, bob, bobLaptop, all, bobUid, aliceUid, sides } = await twoByTwo(
    71,
  );
  await chat(laptop).send(bobUid, "lunch at noon?");
  await chat(bobLaptop).send(aliceUid, "running late");
  await w.settle(all);
  // Both sides read what they have: one receipt each.
  assert.equal(await chat(bob).markRead(aliceUid), 1);
  assert.equal(await chat(phone).markRead(bobUid), 1);
  await w.settle(all);
  for (const [d, peer] of sides) {
    assert.equal(await unread(d, peer), 0, d.name);
  }

  const lunch = await uuidOf(bob, aliceUid, "lunch at noon?");
  const late = await uuidOf(phone, bobUid, "running late");
  await phone.kernel.api(EDITS_API).edit(bobUid, lunch, "lunch at one?");
  await laptop.kernel.api(REACTIONS_API).react(bobUid, late, "😿");
  await bobLaptop.kernel.api(REACTIONS_API).react(aliceUid, lunch, "👍");
  await bob.kernel.api(EDITS_API).edit(aliceUid, late, "running very late");
  await w.settle(all);

  for (const [d, peer] of sides) {
    assert.equal(await unread(d, peer), 0, `${d.name}: nothing new is unread`);
    assert.equal((await d.kernel.messages(peer)).length, 2, `${d.name}: still two messages`);
    assert.equal(await chat(d).markRead(peer), 0, `${d.name}: no read receipt to send`);
    assert.equal((await d.kernel.api(REACTIONS_API).reactions(peer)).length, 2, d.name);
    assert.equal((await d.kernel.api(EDITS_API).edits(peer)).length, 2, d.name);
  }
  const [edit] = await bobLaptop.kernel.api(EDITS_API).edits(aliceUid, lunch);
  assert.equal(edit.value, "lunch at one?");
  assert.equal(edit.side, "peer");
});

Deno.test("edits: concurrent edits from two devices end on one text everywhere; after a deletion an edit is refused", async () => {
  const { w, phone, laptop, bob, all, bobUid, aliceUid, sides } = await twoByTwo(72);
  await chat(phone).send(bobUid, "typo here");
  await w.settle(all);
  const target = await uuidOf(phone, bobUid, "typo here");
  // Both of alice's devices edit at once, before either hears of the other.
  await phone.kernel.api(EDITS_API).edit(bobUid, target, "from the phone");
  await laptop.kernel.api(EDITS_API).edit(bobUid, target, "from the laptop");
  await w.settle(all);
  const texts = new Set<string>();
  for (const [d, peer] of sides) {
    const edits = await d.kernel.api(EDITS_API).edits(peer, target);
    assert.equal(edits.length, 1, d.name);
    texts.add(edits[0].value);
  }
  assert.equal(texts.size, 1, `one text everywhere, got ${[...texts].join(" / ")}`);

  // The contact cannot edit alice's message.
  await assert.rejects(
    () => bob.kernel.api(EDITS_API).edit(aliceUid, target, "bob's version"),
    TypeError,
  );
  await laptop.kernel.api(DELETIONS_API).delete(bobUid, target, "everyone");
  await w.settle(all);
  await assert.rejects(
    () => phone.kernel.api(EDITS_API).edit(bobUid, target, "too late"),
    /deleted/,
  );
  for (const [d, peer] of sides.filter(([d]) => d !== laptop)) {
    const [tomb] = await d.kernel.api(DELETIONS_API).tombstones(peer, target);
    assert.equal(tomb?.value, "everyone", d.name);
  }
});

Deno.test("reactions: a bad emoji is refused and changes nothing", async () => {
  const { bob, aliceUid, phone, bobUid, w, all } = await twoByTwo(73);
  await chat(phone).send(bobUid, "hi");
  await w.settle(all);
  const target = await uuidOf(bob, aliceUid, "hi");
  await assert.rejects(
    () => bob.kernel.api(REACTIONS_API).react(aliceUid, target, "x".repeat(40)),
    /not a reaction/,
  );
  assert.deepEqual(await bob.kernel.api(REACTIONS_API).reactions(aliceUid), []);
});

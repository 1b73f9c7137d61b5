import assert from "node:assert/strict";
import { type ContactCard, type IdentityRecord, PeerType } from "../proto/gen/meow_pb.ts";
import type { Kernel } from "./kernel.ts";
import { CHAT_API, type ChatApi } from "../plugins/chat/mod.ts";
import { NoSuchCode, PairingInterfered } from "./errors.ts";
import { type TestDevice, TestWorld } from "../tests/support/world.ts";
import { type Backend, MemoryBackend } from "../server/mod.ts";

function chat(device: TestDevice): ChatApi {
  return device.kernel.api(CHAT_API);
}

async function bothWays(world: TestWorld, a: TestDevice, b: TestDevice, uid: string) {
  await chat(a).send(uid, "from a");
  await chat(b).send(uid, "from b");
  await world.settle([a, b]);
  const texts = async (d: TestDevice) => (await d.kernel.messages(uid)).map((m) => m.message!.data);
  assert.deepEqual((await texts(a)).sort(), ["from a", "from b"]);
  assert.deepEqual((await texts(b)).sort(), ["from a", "from b"]);
}

for (const form of ["link", "code"] as const) {
  Deno.test(`Kernel pairs two people by ${form} through a mailbox: same safety code, both can chat`, async () => {
    const world = await TestWorld.create(21);
    const alice = await world.device("alice", { nickname: "alice" });
    const bob = await world.device("bob", { nickname: "bob" });
    const offer = await alice.kernel.offerPairing({ form });
    if (form === "link") assert.match(offer.link, /^meow:invite\?r=/);
    else assert.match(offer.code, /^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/);
    const [, accepted] = await Promise.all([
      offer.exchanged,
      bob.kernel.acceptPairing(
        form === "link" ? { link: offer.link } : { code: offer.code, server: world.core.card() },
      ),
    ]);
    assert.equal(accepted.peerUid, offer.peerUid);
    assert.equal(accepted.type, PeerType.CONTACT);
    await world.settle([alice, bob]);
    const a = alice.kernel.peer(offer.peerUid)!;
    assert.ok(a.contact, "alice's pending peer is complete");
    assert.match(accepted.safetyCode, /^\d{6}$/);
    assert.equal(a.safetyCode, accepted.safetyCode);
    assert.equal(bob.kernel.peer(offer.peerUid)!.safetyCode, accepted.safetyCode);
    await bothWays(world, alice, bob, offer.peerUid);
  });

  Deno.test(`Kernel refuses a second use of a ${form}: no such code, never a false success`, async () => {
    const world = await TestWorld.create(22);
    const alice = await world.device("alice", { nickname: "alice" });
    const bob = await world.device("bob", { nickname: "bob" });
    const carol = await world.device("carol", { nickname: "carol" });
    const offer = await alice.kernel.offerPairing({ form });
    const input = form === "link"
      ? { link: offer.link }
      : { code: offer.code, server: world.core.card() };
    await Promise.all([offer.exchanged, bob.kernel.acceptPairing(input)]);
    await assert.rejects(carol.kernel.acceptPairing(input), NoSuchCode);
    assert.equal(carol.kernel.peers().length, 0);
    await world.settle([alice, bob, carol]);
    assert.equal(alice.kernel.peers().length, 1);
  });
}

/** What a new install joining its user's devices stages (device_sync's policy, here by hand). */
function joining(kernel: Kernel, deviceName: string): (card: ContactCard) => IdentityRecord {
  return (card) =>
    kernel.newIdentityRecord({ uid: "", deviceName, servers: card.pullServers, withRoot: false });
}

Deno.test("Kernel pairs a new install as a device by code: the identity arrives by sync", async () => {
  const world = await TestWorld.create(23);
  const phone = await world.device("phone", { nickname: "alice" });
  const laptop = await world.device("laptop");
  const offer = await phone.kernel.offerPairing({ type: PeerType.DEVICE, form: "code" });
  const [, accepted] = await Promise.all([
    offer.exchanged,
    laptop.kernel.acceptPairing({ code: offer.code, server: world.core.card() }, {
      deviceName: "laptop",
      type: PeerType.DEVICE,
      newIdentity: joining(laptop.kernel, "laptop"),
    }),
  ]);
  assert.equal(accepted.type, PeerType.DEVICE);
  await world.settle([phone, laptop]);
  assert.ok(phone.kernel.peer(offer.peerUid)?.contact);
  assert.equal(phone.kernel.peer(offer.peerUid)!.safetyCode, accepted.safetyCode);
});

Deno.test("Kernel: a wrong password is one failed guess: both sides see PairingInterfered, the mailbox dies", async () => {
  const world = await TestWorld.create(24);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const offer = await alice.kernel.offerPairing({ form: "code" });
  // The same nameplate, another password: what a guesser types.
  const [nameplate] = offer.code.split("-");
  const wrong = `${nameplate}-ZZZZ-ZZZZ` === offer.code
    ? `${nameplate}-YYYY-YYYY`
    : `${nameplate}-ZZZZ-ZZZZ`;
  const results = await Promise.allSettled([
    offer.exchanged,
    bob.kernel.acceptPairing({ code: wrong, server: world.core.card() }),
  ]);
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert(r.reason instanceof PairingInterfered, String(r.reason));
  }
  assert.equal(bob.kernel.peers().length, 0);
  // Killed: the right code is no use now.
  await assert.rejects(
    bob.kernel.acceptPairing({ code: offer.code, server: world.core.card() }),
    NoSuchCode,
  );
});

Deno.test("Kernel refuses a link of the wrong kind before changing anything", async () => {
  const world = await TestWorld.create(25);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const offer = await alice.kernel.offerPairing({ type: PeerType.DEVICE, form: "link" });
  await assert.rejects(
    bob.kernel.acceptPairing({ link: offer.link }, { type: PeerType.CONTACT }),
    /device pairing link/,
  );
  assert.equal(bob.kernel.peers().length + bob.kernel.devices().length, 0);
});

/**
 * A relay whose mailboxes take any number of joiners and never close: a late
 * joiner steps in as the first one did (the weakness single use removes).
 */
function reusableMailboxes(): Backend {
  const inner = new MemoryBackend();
  const joiners = new Map<string, Uint8Array>();
  const stepMailbox: Backend["stepMailbox"] = async (nameplate, step, nowMs) => {
    const result = await inner.stepMailbox(nameplate, step, nowMs);
    if (result) {
      if (!result.member) joiners.set(nameplate, step.side);
      return result;
    }
    const joiner = joiners.get(nameplate);
    return joiner && await inner.stepMailbox(nameplate, { ...step, side: joiner }, nowMs);
  };
  return new Proxy(inner, {
    get(target, property, receiver) {
      if (property === "stepMailbox") return stepMailbox;
      if (property === "closeMailbox") return () => Promise.resolve(true);
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("Kernel: a second acceptor of a used link gets 'no such code'; against a reusable mailbox it would falsely 'pair'", async () => {
  for (const weakened of [true, false]) {
    const world = await TestWorld.create(26, weakened ? { backend: reusableMailboxes() } : {});
    const alice = await world.device("alice", { nickname: "alice" });
    const bob = await world.device("bob", { nickname: "bob" });
    const mallory = await world.device("mallory", { nickname: "mallory" });
    const offer = await alice.kernel.offerPairing({ form: "link" });
    await bob.kernel.acceptPairing({ link: offer.link });
    const second = mallory.kernel.acceptPairing({ link: offer.link });
    if (weakened) {
      // The attack works on the weakened relay: a second party "pairs" — a false success.
      await second;
      assert.equal(mallory.kernel.peers().length, 1);
    } else {
      await assert.rejects(second, NoSuchCode);
      assert.equal(mallory.kernel.peers().length, 0);
    }
  }
});

Deno.test("Kernel refuses a reused device pairing code: the second new install is told at once", async () => {
  const world = await TestWorld.create(27);
  const phone = await world.device("phone", { nickname: "alice" });
  const laptop = await world.device("laptop");
  const tablet = await world.device("tablet");
  const offer = await phone.kernel.offerPairing({ type: PeerType.DEVICE, form: "code" });
  const input = { code: offer.code, server: world.core.card() };
  await Promise.all([
    offer.exchanged,
    laptop.kernel.acceptPairing(input, {
      deviceName: "laptop",
      type: PeerType.DEVICE,
      newIdentity: joining(laptop.kernel, "laptop"),
    }),
  ]);
  await assert.rejects(
    tablet.kernel.acceptPairing(input, {
      deviceName: "tablet",
      type: PeerType.DEVICE,
      newIdentity: joining(tablet.kernel, "tablet"),
    }),
    NoSuchCode,
  );
  assert.equal(tablet.kernel.hasIdentity(), false, "the tablet keeps no half-made identity");
});

Deno.test("Kernel: a link's initiator learns when the joiner gave up (a link altered on the way), instead of waiting", async () => {
  const world = await TestWorld.create(28);
  const alice = await world.device("alice", { nickname: "alice" });
  const bob = await world.device("bob", { nickname: "bob" });
  const offer = await alice.kernel.offerPairing({ form: "link" });
  // One character of the secret changed: the card does not open for the joiner.
  const altered = offer.link.replace(/s=(.)/, (_, c) => `s=${c === "A" ? "B" : "A"}`);
  assert.notEqual(altered, offer.link);
  const [initiator, joiner] = await Promise.allSettled([
    offer.exchanged,
    bob.kernel.acceptPairing({ link: altered }),
  ]);
  for (const side of [initiator, joiner]) {
    assert.equal(side.status, "rejected");
    assert((side as PromiseRejectedResult).reason instanceof PairingInterfered);
  }
  assert.equal(bob.kernel.peers().length, 0);
});

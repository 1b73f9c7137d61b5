/**
 * Session reset and rekey with real keys and a real ratchet: the round trips, and the attack a
 * removed device would make with the keys it kept — shown to succeed against a build that takes
 * resets signed with a retired key, and refused by the real one.
 */
import assert from "node:assert/strict";
import { clone, create } from "@bufbuild/protobuf";
import { encode } from "../proto/mod.ts";
import {
  ContactCardSchema,
  type PeerRecord,
  PeerRecordSchema,
  UserMessageSchema,
} from "../proto/mod.ts";
import { SeededRandom } from "../crypto/mod.ts";
import { BadSignature, Malformed, Replay, RetiredKey } from "./errors.ts";
import { answerInvitation, createInvitation, finalizeInvitation } from "./invitation.ts";
import { contactLookupKey, FrameKind, openPacked, pack, unpack, unpackFrame } from "./pipeline.ts";
import {
  acceptRekey,
  acceptReset,
  createRekey,
  createReset,
  REKEY_TYPE,
  RESET_TYPE,
} from "./rekey.ts";

const random = new SeededRandom(7);
const now = 1_000;

/** Alice (the inviter) and bob, both with a live session. */
async function pair(): Promise<{ alice: PeerRecord; bob: PeerRecord }> {
  const { pending, card } = createInvitation({ random, now, name: "alice", servers: [] });
  const { peer: bob, answer } = await answerInvitation(card, {
    random,
    now,
    name: "bob",
    servers: [],
  });
  const alice = await finalizeInvitation(pending, answer, { random, now });
  return { alice, bob };
}

/** What a sibling of alice's holds for bob: the keys, no ratchet. */
function sibling(alice: PeerRecord): PeerRecord {
  const copy = clone(PeerRecordSchema, alice);
  copy.ratchet = new Uint8Array();
  return copy;
}

function chat(text: string) {
  return create(UserMessageSchema, { type: "chat", data: text });
}

async function resetOnBob(bob: PeerRecord, packed: Parameters<typeof openPacked>[1], weak = false) {
  const opened = await openPacked(bob, packed, { random, now });
  assert.equal(opened.frame.kind, FrameKind.RESET);
  return acceptReset(bob, opened.frame, {
    random,
    now: now + 10,
    signedByRetired: opened.signedByRetired,
    acceptRetired: weak,
  });
}

Deno.test("a session reset from a sibling without the ratchet starts a fresh session both ways", async () => {
  const { alice, bob } = await pair();
  const { peer: laptop, packed } = await createReset(sibling(alice), { random, now, servers: [] });
  assert.equal(laptop.keysVersion, 1);
  assert.notDeepEqual(laptop.myIdentity!.publicKey, alice.myIdentity!.publicKey);
  const bobNext = await resetOnBob(bob, packed);
  assert.deepEqual(bobNext.contact!.identityPublicKey, laptop.myIdentity!.publicKey);
  assert.deepEqual(bobNext.retiredIdentityKeys, [alice.myIdentity!.publicKey]);
  // Both can send at once in the new session.
  const toBob = await pack(laptop, chat("from the laptop"), { random, now });
  const opened = await unpack(bobNext, toBob.packed, { random, now });
  assert.equal(opened.message.data, "from the laptop");
  const bobAfter = { ...bobNext, ratchet: opened.ratchet } as PeerRecord;
  const toLaptop = await pack(bobAfter, chat("hi laptop"), { random, now });
  assert.equal((await unpack(laptop, toLaptop.packed, { random, now })).message.data, "hi laptop");
  // The reset's first message is of its own type, never routed.
  assert.equal(RESET_TYPE, "reset");
});

Deno.test("attack: a removed device's forged reset hijacks a weakened contact, the real one refuses it", async () => {
  const { alice, bob } = await pair();
  const stolen = sibling(alice); // the keys the removed tablet kept
  const { packed } = await createReset(sibling(alice), { random, now, servers: [] });
  const bobNext = await resetOnBob(bob, packed); // the laptop took over first
  const { peer: tablet, packed: forged } = await createReset(stolen, { random, now, servers: [] });
  // Weakened (a reset signed with a retired key taken): bob moves to the tablet's session.
  const hijacked = await resetOnBob(bobNext, forged, true);
  assert.deepEqual(hijacked.contact!.identityPublicKey, tablet.myIdentity!.publicKey);
  // The real build: refused, a typed error, and bob's record is what it was.
  const before = clone(PeerRecordSchema, bobNext);
  await assert.rejects(resetOnBob(bobNext, forged), RetiredKey);
  assert.deepEqual(bobNext, before);
  // The same reset again (delivery is at least once) is a harmless repeat.
  await assert.rejects(resetOnBob(bobNext, packed), Replay);
});

Deno.test("a reset that is not alice's, or for another conversation, is refused and changes nothing", async () => {
  const { alice, bob } = await pair();
  const other = await pair();
  // Signed by a key bob never knew.
  const { packed: foreign } = await createReset(sibling(other.alice), {
    random,
    now,
    servers: [],
  });
  foreign.destination = contactLookupKey(alice);
  await assert.rejects(openPacked(bob, foreign, { random, now }), BadSignature);
  // Alice's key, but the card names another conversation.
  const wrongUid = sibling(alice);
  wrongUid.uid = "another-conversation";
  const { packed } = await createReset(wrongUid, { random, now, servers: [] });
  const before = clone(PeerRecordSchema, bob);
  await assert.rejects(resetOnBob(bob, packed), Malformed);
  assert.deepEqual(bob, before);
});

Deno.test("a rekey inside the live session moves the contact to the new keys and retires the old one", async () => {
  const { alice, bob } = await pair();
  const { message, switchKeys } = createRekey(alice, { random, now, servers: [], keepMs: 60_000 });
  assert.equal(message.type, REKEY_TYPE);
  const sent = await pack(alice, message, { random, now });
  const aliceNext = switchKeys({ ...alice, ratchet: sent.ratchet } as PeerRecord);
  assert.equal(aliceNext.previousKeys!.untilMs, now + 60_000);
  const opened = await unpack(bob, sent.packed, { random, now });
  const bobNext = acceptRekey(
    { ...bob, ratchet: opened.ratchet } as PeerRecord,
    opened.message,
    now,
  );
  assert.deepEqual(bobNext.contact!.identityPublicKey, aliceNext.myIdentity!.publicKey);
  assert.deepEqual(bobNext.contact!.lookupPublicKey, aliceNext.myLookup!.publicKey);
  // Bob writes to the new queue and key; alice opens it.
  const reply = await pack(bobNext, chat("new keys"), { random, now });
  assert.equal((await unpack(aliceNext, reply.packed, { random, now })).message.data, "new keys");
  // What bob sent before he switched (old queue, old key) still opens on alice's previous keys.
  const early = await pack(bob, chat("in flight"), { random, now });
  const inFlight = await openPacked(aliceNext, early.packed, { random, now });
  assert.equal(unpackFrame(aliceNext, inFlight.frame, { random, now }).message.data, "in flight");
});

Deno.test("a rekey that brings back a retired key, or names another conversation, is refused", () => {
  const peer = create(PeerRecordSchema, {
    uid: "c1",
    name: "alice",
    contact: { identityPublicKey: new Uint8Array(32).fill(2) },
    retiredIdentityKeys: [new Uint8Array(32).fill(1)],
  });
  const card = (key: number, peerUid: string) =>
    create(UserMessageSchema, {
      type: REKEY_TYPE,
      appdata: encode(
        ContactCardSchema,
        create(ContactCardSchema, {
          identityPublicKey: new Uint8Array(32).fill(key),
          encryptionPublicKey: new Uint8Array(32).fill(3),
          lookupPublicKey: new Uint8Array(32).fill(4),
          symKey: new Uint8Array(32).fill(5),
          peerUid,
        }),
      ),
    });
  assert.throws(() => acceptRekey(peer, card(1, "c1"), now), RetiredKey);
  assert.throws(() => acceptRekey(peer, card(9, "c2"), now), Malformed);
  assert.throws(
    () => acceptRekey(peer, create(UserMessageSchema, { type: REKEY_TYPE }), now),
    Malformed,
  );
  assert.equal(acceptRekey(peer, card(9, "c1"), now).retiredIdentityKeys.length, 2);
});

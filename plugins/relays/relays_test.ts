import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { encode } from "../../proto/codec.ts";
import { ContactCardSchema, type ServerCard, ServerCardSchema } from "../../proto/gen/meow_pb.ts";
import { TestWorld } from "../../tests/support/world.ts";
import { MemoryBackend, ServerCore } from "../../server/mod.ts";
import { CHAT_API, chatPlugin, newUserMessage } from "../chat/mod.ts";
import { dedupPlugin } from "../dedup/mod.ts";
import { RELAYS_TYPE, relaysPlugin } from "./mod.ts";

const plugins = () => [chatPlugin(), dedupPlugin(), relaysPlugin()];

Deno.test("relays moves a contact's traffic onto a relay the user adds", async () => {
  const world = await TestWorld.create(31);
  const second = await ServerCore.create({
    backend: new MemoryBackend(),
    clock: world.clock,
    random: world.random.fork("relay2"),
    name: "relay2",
  });
  world.transport.add(second);
  const alice = await world.device("alice", { nickname: "alice", plugins });
  const bob = await world.device("bob", { nickname: "bob", plugins });
  const ticket = await alice.kernel.createInvitation();
  const uid = await bob.kernel.acceptInvitation(ticket.bytes);
  await world.settle([alice, bob]);
  assert.equal(bob.kernel.peer(uid)!.contact!.pullServers[0].uid, world.core.card().uid);

  await alice.kernel.addServer(second.card());
  await world.settle([alice, bob]);
  const card = bob.kernel.peer(uid)!.contact!;
  assert.deepEqual(card.pullServers.map((s) => s.name), ["relay2", "relay"]);

  // Bob's next message is queued on relay2, and alice (polling both) receives it.
  await bob.kernel.api(CHAT_API).send(uid, "via the new relay");
  const [entry] = await bob.store.listOutbox();
  assert.equal(entry.server!.uid, second.card().uid);
  await world.settle([alice, bob]);
  const texts = (await alice.kernel.messages(uid)).map((m) => m.message!.data);
  assert.deepEqual(texts, ["via the new relay"]);
});

Deno.test("relays ignores an older announcement and rejects a malformed one", async () => {
  const world = await TestWorld.create(32);
  const rejected: string[] = [];
  const alice = await world.device("alice", { nickname: "alice", plugins });
  const bob = await world.device("bob", {
    nickname: "bob",
    plugins,
    kernel: { observe: (o) => o.kind === "rejected" && rejected.push(o.error.code) },
  });
  const ticket = await alice.kernel.createInvitation();
  const uid = await bob.kernel.acceptInvitation(ticket.bytes);
  await world.settle([alice, bob]);
  const before = bob.kernel.peer(uid)!.contact!;
  const announce = (servers: ServerCard[], createdAt: number) =>
    alice.kernel.transact(async (tx) => {
      const message = newUserMessage(tx, tx.peer(uid)!, RELAYS_TYPE, world.random);
      message.appdata = encode(
        ContactCardSchema,
        create(ContactCardSchema, { pullServers: servers, createdAt }),
      );
      await tx.send(uid, message);
    });
  const elsewhere = create(ServerCardSchema, {
    uid: "elsewhere",
    encryptionPublicKey: new Uint8Array(32).fill(1),
    signingPublicKey: new Uint8Array(32).fill(2),
  });
  await announce([elsewhere], before.createdAt - 1); // older than the card bob holds: ignored
  await announce([], world.clock.now() + 1); // no relay at all: rejected
  await announce([create(ServerCardSchema, { uid: "nokeys" })], world.clock.now() + 2); // rejected
  await world.settle([alice, bob]);
  const after = bob.kernel.peer(uid)!.contact!;
  assert.deepEqual(after.pullServers, before.pullServers, "the card is unchanged");
  assert.equal(after.createdAt, before.createdAt);
  assert.deepEqual(rejected, ["Malformed", "Malformed"]);
});

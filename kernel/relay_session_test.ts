/**
 * The kernel's relay client and relay sessions: a scope's first request opens a session, later
 * ones go in it, and a session the relay lost costs one fallback to v2, never an error.
 */
import assert from "node:assert/strict";
import { generateLookupKeyPair, publicKeyOperations, SeededRandom } from "../crypto/mod.ts";
import { signPull } from "../envelope/mod.ts";
import { LocalTransport, MemoryBackend, MemoryData, ServerCore } from "../server/mod.ts";
import { ManualClock } from "../tests/support/relay.ts";
import { RelayClient } from "./_relay_client.ts";

async function world() {
  const clock = new ManualClock();
  const random = new SeededRandom(41);
  const data = new MemoryData();
  const relay = () =>
    ServerCore.create({ backend: new MemoryBackend({ data }), clock, random: random.fork("r") });
  const core = await relay();
  const transport = new LocalTransport([core]);
  const client = new RelayClient({
    clock,
    random: random.fork("device"),
    transport,
    observe: () => {},
    log: () => {},
    name: "test",
  });
  const lookup = generateLookupKeyPair(random);
  const server = core.card();
  let stamp = 0;
  /** A poll of the lookup key's queue in `scope`, signed over the request's binding. */
  const poll = (scope: string | undefined) =>
    client.request(server, async (binding) => ({
      pullRequests: [
        await signPull({ server, lookup, now: clock.now() + stamp++, ephemeralPublicKey: binding }),
      ],
    }), { session: scope });
  return { core, client, poll, relay, transport };
}

Deno.test("RelayClient: a scope's polls go in one session after the first", async () => {
  const { core, poll } = await world();
  const first = await poll("chunk");
  assert.deepEqual(first.errors, []);
  assert(first.session, "the first poll of the scope asks for a session");
  const before = publicKeyOperations();
  const second = await poll("chunk");
  assert.deepEqual(second.errors, []);
  assert.equal(second.session, undefined);
  assert.equal(publicKeyOperations().x25519 - before.x25519, 0);
  assert.equal(core.stats().sessionRequests, 1);
  // Without a scope, a request never goes in a session.
  const plain = await poll(undefined);
  assert.equal(plain.session, undefined);
  assert.equal(core.stats().sessionRequests, 1);
});

Deno.test("RelayClient: a session the relay lost costs one v2 request, not an error", async () => {
  const { core, poll, relay, transport } = await world();
  await poll("chunk");
  // The relay restarts (same keys, same storage): its sessions are gone.
  const restarted = await relay();
  assert.equal(restarted.card().uid, core.card().uid);
  transport.add(restarted);
  const answer = await poll("chunk");
  assert.deepEqual(answer.errors, []);
  assert(answer.session, "the fallback opened a new session");
  assert.equal(restarted.stats().rejected, 1, "the one session_unknown answer");
  await poll("chunk");
  assert.equal(restarted.stats().sessionRequests, 1);
});

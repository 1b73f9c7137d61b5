/**
 * Two people pair and chat through a real relay: `Deno.serve` on loopback
 * over the Deno KV backend, with the device stores on disk (Deno KV for one,
 * SQLite for the other), and each device restarted from its files midway.
 */
import assert from "node:assert/strict";
import { Kernel } from "../kernel/kernel.ts";
import { systemClock } from "../ports/system_clock.ts";
import { SystemRandom } from "../crypto/system_random.ts";
import type { Store } from "../ports/mod.ts";
import { CHAT_API } from "../plugins/chat/mod.ts";
import { KvStore, SqliteStore } from "../plugins/storage/mod.ts";
import { defaultPlugins } from "../sim/plugins.ts";
import { createHandler } from "../server/http.ts";
import { HttpTransport } from "../server/http_transport.ts";
import { KvBackend } from "../server/kv.ts";
import { ServerCore } from "../server/core.ts";

Deno.test({
  name:
    "Kernel pairs and chats over HTTP with a KV relay, KV and SQLite stores on disk, across restarts",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "meowsync-http-" });
    const backend = await KvBackend.open({ path: `${dir}/relay.kv` });
    // The card names the relay's URL, known once the listener has its port.
    let handler = (_req: Request) => Promise.resolve(new Response(null, { status: 503 }));
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => handler(req),
    );
    const url = `http://127.0.0.1:${server.addr.port}`;
    const core = await ServerCore.create({
      backend,
      clock: systemClock,
      random: new SystemRandom(),
      name: "relay",
      url,
    });
    handler = createHandler(core);
    const transport = new HttpTransport();
    const open = (store: Store, name: string) =>
      Kernel.open({
        store,
        clock: systemClock,
        random: new SystemRandom(),
        transport,
        plugins: defaultPlugins(),
        name,
      });
    const aliceStore = () => KvStore.open(`${dir}/alice.kv`);
    const bobStore = () => SqliteStore.open(`${dir}/bob.db`);
    let alice = await open(await aliceStore(), "alice");
    let bob = await open(await bobStore(), "bob");
    try {
      const card = await transport.fetchCard(url);
      assert.equal(card.name, "relay");
      await alice.createIdentity({ nickname: "alice", deviceName: "phone", servers: [card] });
      await bob.createIdentity({ nickname: "bob", deviceName: "phone", servers: [card] });
      // A short code through a mailbox over real HTTP: CPace both ways, then the card.
      const offer = await alice.offerPairing({ form: "code" });
      const [, { peerUid: uid }] = await Promise.all([
        offer.exchanged,
        bob.acceptPairing({ code: offer.code, server: card }),
      ]);
      const settle = async () => {
        for (let i = 0; i < 10; i++) {
          const moved = (await alice.flushOutbox()) + (await bob.flushOutbox()) +
            (await alice.pollOnce()) + (await bob.pollOnce());
          if (moved === 0 && alice.outboxSize() === 0 && bob.outboxSize() === 0) return;
        }
      };
      await settle();
      for (let i = 0; i < 20; i++) {
        await alice.api(CHAT_API).send(uid, `a${i}`);
        await bob.api(CHAT_API).send(uid, `b${i}`);
        if (i === 9) {
          // Restart both from their files with messages still in their outboxes.
          await alice.close();
          await bob.close();
          alice = await open(await aliceStore(), "alice");
          bob = await open(await bobStore(), "bob");
        }
      }
      await settle();
      const texts = async (k: Kernel) => (await k.messages(uid)).map((m) => m.message!.data).sort();
      const expected = Array.from({ length: 20 }, (_, i) => [`a${i}`, `b${i}`]).flat().sort();
      assert.deepEqual(await texts(alice), expected);
      assert.deepEqual(await texts(bob), expected);
    } finally {
      await alice.close().catch(() => {});
      await bob.close().catch(() => {});
      await server.shutdown();
      await backend.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

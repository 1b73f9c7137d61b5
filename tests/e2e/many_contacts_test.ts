/**
 * A device with more contacts than the relay takes pulls in one request:
 * 17 contacts against a relay started with `--pull-requests-max 16`. Every
 * message of every contact reaches it, through real agent processes.
 */
import assert from "node:assert/strict";
import type { ConversationView, StatusView } from "../../agent/mod.ts";
import { CODE_LINE, eventually, Procs, WAITING_COMMAND_MS_MAX } from "./_harness.ts";

const CONTACTS = 17;
/** Agent processes started at once: 17 at a time starve each other on a small machine. */
const AT_ONCE = 4;

/** Runs `work` on every item, at most {@linkcode AT_ONCE} at a time. */
async function inGroups<T>(items: T[], work: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += AT_ONCE) {
    await Promise.all(items.slice(i, i + AT_ONCE).map(work));
  }
}

Deno.test("agent with 17 contacts on a relay taking 16 pulls a request receives every message", async () => {
  const procs = await Procs.create();
  try {
    // The hub's contacts claim 17 mailboxes from one address within a minute or two.
    const relay = await procs.relay("kv", [
      "--pull-requests-max",
      "16",
      "--mailbox-lookups-per-minute-max",
      "100",
      // Every agent here shares one address (loopback): the per-address long-poll limit is
      // meant for one client, not for eighteen.
      "--long-polls-per-client-max",
      "64",
    ]);
    const home = (name: string) => ["--home", `${procs.dir}/${name}`];
    const names = Array.from({ length: CONTACTS }, (_, i) => `c${i + 1}`);
    await procs.ok([...home("hub"), "init", "--name", "hub", "--server", relay]);
    await inGroups(names, (n) => procs.ok([...home(n), "init", "--name", n, "--server", relay]));
    const waits = { timeoutMs: WAITING_COMMAND_MS_MAX };
    for (const name of names) {
      const invite = procs.spawnAgent([...home("hub"), "invite"]);
      const code = (await invite.waitFor(CODE_LINE))[1];
      await procs.ok([...home(name), "accept", code], waits);
      assert.equal((await invite.done).code, 0, invite.stderr);
    }
    const hub = procs.spawnAgent([...home("hub"), "run"]);
    await hub.waitFor(/is online/);
    await inGroups(names, (n) => procs.ok([...home(n), "send", "hub", `hello from ${n}`]));
    for (const name of names) {
      await eventually(`the hub holds the message of ${name}`, async () => {
        const view = await procs.json<ConversationView>([...home("hub"), "history", name]);
        return view.messages.some((m) => m.text === `hello from ${name}`);
      });
    }
    const status = await procs.json<StatusView>([...home("hub"), "status"]);
    assert.equal(status.contacts, CONTACTS);
    assert.deepEqual(status.relayHealth.filter((h) => h.state !== "ok"), []);
  } finally {
    await procs.stopAll();
  }
});

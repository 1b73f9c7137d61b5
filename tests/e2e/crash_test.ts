/**
 * `run` killed with SIGKILL in the middle of its work, then restarted:
 * nothing is lost, nothing is duplicated, on any device.
 */
import assert from "node:assert/strict";
import type { ConversationView } from "../../agent/mod.ts";
import { CODE_LINE, eventually, Procs, WAITING_COMMAND_MS_MAX } from "./_harness.ts";

Deno.test("agent run killed with SIGKILL and restarted loses nothing and duplicates nothing", async () => {
  const procs = await Procs.create();
  try {
    const relay = await procs.relay("kv");
    const home = (name: string) => ["--home", `${procs.dir}/${name}`];
    await procs.ok([...home("alice-phone"), "init", "--name", "alice", "--server", relay]);
    const start = procs.spawnAgent([...home("alice-phone"), "pair", "start"]);
    const pairCode = (await start.waitFor(CODE_LINE))[1];
    const waits = { timeoutMs: WAITING_COMMAND_MS_MAX };
    // The laptop keeps its store in SQLite, the other devices in Deno KV (the default).
    await procs.ok(
      [...home("alice-laptop"), "pair", "join", pairCode, "--server", relay, "--store", "sqlite"],
      waits,
    );
    assert.equal((await start.done).code, 0);
    await procs.ok([...home("bob"), "init", "--name", "bob", "--server", relay]);
    const invite = procs.spawnAgent([...home("bob"), "invite"]);
    const inviteCode = (await invite.waitFor(CODE_LINE))[1];
    // Alice's phone accepts: it becomes the primary that holds the session with bob.
    await procs.ok([...home("alice-phone"), "accept", inviteCode], waits);
    assert.equal((await invite.done).code, 0);

    const run = (name: string) => {
      const proc = procs.spawnAgent([...home(name), "run"]);
      return proc.waitFor(/is online/).then(() => proc);
    };
    let phone = await run("alice-phone");
    const laptop = await run("alice-laptop");
    const bob = await run("bob");

    const expected: string[] = [];
    const send = async (from: string, to: string, text: string) => {
      await procs.ok([...home(from), "send", to, text]);
      expected.push(text);
    };
    await send("bob", "alice", "b1");
    await send("bob", "alice", "b2");
    await send("alice-laptop", "bob", "l1");
    // Kill the primary while it relays and syncs these.
    phone.kill("SIGKILL");
    assert.equal((await phone.done).code !== 0, true);
    // While it is gone: more from bob, and forwards from the laptop wait in its queue.
    await send("bob", "alice", "b3");
    await send("alice-laptop", "bob", "l2");
    await send("alice-laptop", "bob", "l3");
    // The OS released the lock: a one-shot command works on the home, then `run` restarts.
    await procs.ok([...home("alice-phone"), "status"]);
    phone = await run("alice-phone");
    await send("alice-phone", "bob", "p1");

    const texts = async (name: string, contact: string) =>
      (await procs.json<ConversationView>([...home(name), "history", contact])).messages;
    let last = "";
    await eventually("every device to hold every message once", async () => {
      const all = [
        await texts("alice-phone", "bob"),
        await texts("alice-laptop", "bob"),
        await texts("bob", "alice"),
      ];
      last = JSON.stringify(all.map((ms) => ms.map((m) => `${m.text}:${m.state}`)));
      return all.every((ms) =>
        ms.length === expected.length &&
        JSON.stringify(ms.map((m) => m.text).sort()) === JSON.stringify([...expected].sort()) &&
        new Set(ms.map((m) => m.uuid)).size === expected.length &&
        ms.every((m) => m.state !== "forwarding")
      );
    }).catch((e) => {
      throw new Error(`${(e as Error).message}; last: ${last}`);
    });

    for (const proc of [phone, laptop, bob]) proc.kill("SIGTERM");
    for (const proc of [phone, laptop, bob]) {
      const done = await proc.done;
      assert.equal(done.code, 0, `SIGTERM stops run cleanly: ${done.stderr}`);
      assert.match(done.stderr, /stopped; everything is saved/);
    }
    // After the clean stop the outboxes are empty and nothing more arrives.
    const status = await procs.json<{ outbox: number }>([...home("alice-phone"), "status"]);
    assert.equal(status.outbox, 0);
    assert.equal((await texts("bob", "alice")).length, expected.length);
  } finally {
    await procs.stopAll();
  }
});

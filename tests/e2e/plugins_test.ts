/**
 * Plugins in real agent processes over a real relay: a plugin module written outside the
 * repository (in the test's temp dir, importing meowsync by its `meowsync/` import-map prefix)
 * runs in the agent with `--plugin` on one device and from the home's `plugins` list on another,
 * its command `wave` goes from alice's laptop (not bob's primary) through her phone to bob, and
 * its `waves` command counts them; the shipped `edit`, `react` and `delete` commands reach every
 * device, `history` shows them, and neither an edit nor a reaction counts as unread. A module that
 * is missing is one line, exit 2.
 */
import assert from "node:assert/strict";
import type { ContactView, ConversationView } from "../../agent/mod.ts";
import { EXIT } from "../../agent/mod.ts";
import { assertOneLine, CODE_LINE, eventually, Procs, WAITING_COMMAND_MS_MAX } from "./_harness.ts";

const waits = { timeoutMs: WAITING_COMMAND_MS_MAX };

/** A plugin a person writes: a "wave" message to a contact, counted by the one who receives it. */
const WAVES = `
import { apiKey, Malformed } from "meowsync/kernel/mod.ts";
import { newUserMessage } from "meowsync/plugins/chat/mod.ts";
import { PeerType } from "meowsync/proto/mod.ts";

const WAVES_API = apiKey("waves");

export default {
  name: "waves",
  create() {
    let host;
    return {
      name: "waves",
      types: ["waves"],
      setup(h) { host = h; },
      api: {
        wave: (peerUid) => host.transact(async (tx) => {
          const message = newUserMessage(tx, tx.peer(peerUid), "waves", host.random);
          await tx.send(peerUid, message);
        }),
      },
      async receive(_message, { tx, peer }) {
        if (peer.type !== PeerType.CONTACT) throw new Malformed("waves: from a contact only");
        const data = tx.data("waves");
        data.put(peer.uid, ((await data.get(peer.uid)) ?? 0) + 1);
      },
    };
  },
  commands: {
    wave: {
      summary: "wave at a contact",
      args: ["contact"],
      async run(ctx, [contact]) {
        await ctx.kernel.api(WAVES_API).wave(ctx.contact(contact));
        return { lines: ["waved"], value: { waved: true } };
      },
    },
    waves: {
      summary: "how many times a contact waved",
      args: ["contact"],
      async run(ctx, [contact]) {
        const n = (await ctx.kernel.pluginData("waves").get(ctx.contact(contact))) ?? 0;
        return { lines: [\`\${n} wave(s)\`], value: { waves: n } };
      },
    },
  },
};
`;

Deno.test("agent: a plugin from outside the repository, with --plugin and the home's plugins list; react, edit and delete end to end", async () => {
  const procs = await Procs.create();
  try {
    const relay = await procs.relay("kv");
    const dir = (name: string) => `${procs.dir}/${name}`;
    const home = (name: string) => ["--home", dir(name)];
    const wavesFile = `${procs.dir}/plugins/waves.ts`;
    await Deno.mkdir(`${procs.dir}/plugins`);
    await Deno.writeTextFile(wavesFile, WAVES);
    const laptop = [...home("alice-laptop"), "--plugin", wavesFile];

    // A missing module: one line, exit 2, before anything runs.
    const missing = await procs.agent(["--plugin", `${procs.dir}/nope.ts`, "status"]);
    assertOneLine(missing, EXIT.usage, /plugin .*nope\.ts: cannot be read/);

    await procs.ok([...home("alice-phone"), "init", "--name", "alice", "--server", relay]);
    await procs.ok([...home("bob"), "init", "--name", "bob", "--server", relay]);
    // bob's home lists the module (relative to the home), so every command on it loads it.
    await Deno.copyFile(wavesFile, `${dir("bob")}/waves.ts`);
    const config = JSON.parse(await Deno.readTextFile(`${dir("bob")}/agent.json`));
    await Deno.writeTextFile(
      `${dir("bob")}/agent.json`,
      JSON.stringify({ ...config, plugins: ["waves.ts"] }),
    );

    const invite = procs.spawnAgent([...home("bob"), "invite"]);
    await procs.ok([...home("alice-phone"), "accept", (await invite.waitFor(CODE_LINE))[1]], waits);
    assert.equal((await invite.done).code, 0);
    const start = procs.spawnAgent([...home("alice-phone"), "pair", "start"]);
    const code = (await start.waitFor(CODE_LINE))[1];
    await procs.ok(
      [...laptop, "pair", "join", code, "--server", relay, "--device", "laptop"],
      waits,
    );
    assert.equal((await start.done).code, 0);

    // alice's phone (bob's primary) and bob stay online; the other commands act through them.
    procs.spawnAgent([...home("alice-phone"), "run"]);
    procs.spawnAgent([...home("bob"), "run"]);
    const history = (name: string, contact: string, extra: string[] = []) =>
      procs.json<ConversationView>([...extra, ...home(name), "history", contact]);
    const unread = async (name: string) =>
      (await procs.json<ContactView[]>([...home(name), "contacts"]))[0].unread;

    await eventually("the laptop to know bob", async () => {
      return (await procs.json<ContactView[]>([...laptop, "contacts"])).length === 1;
    });
    await procs.ok([...home("alice-phone"), "send", "bob", "lunch at noon?"]);
    await eventually(
      "bob to receive the message",
      async () => (await history("bob", "alice")).messages.length === 1,
    );
    await procs.ok([...home("bob"), "read", "alice"]);
    assert.equal(await unread("bob"), 0);

    // The plugin's command, from a device that is not bob's primary: forwarded, then counted.
    await procs.ok([...laptop, "wave", "bob"]);
    await procs.ok([...laptop, "wave", "bob"]);
    await eventually("bob to count two waves", async () => {
      const counted = await procs.json<{ waves: number }>([...home("bob"), "waves", "alice"]);
      return counted.waves === 2;
    });
    // Without the module the command is not there.
    const none = await procs.agent([...home("alice-phone"), "wave", "bob"]);
    assert.equal(none.code, EXIT.usage, none.stderr);

    // The shipped plugins' commands.
    await procs.ok([
      ...home("alice-phone"),
      "edit",
      "bob",
      "lunch at noon?",
      "lunch",
      "at",
      "one?",
    ]);
    await procs.ok([...home("bob"), "react", "alice", "lunch at noon?", "👍"]);
    const bad = await procs.agent([...home("bob"), "react", "alice", "no such message", "👍"]);
    assertOneLine(bad, EXIT.usage, /no message of this conversation is "no such message"/);
    await eventually("the edit and the reaction on every device", async () => {
      for (const [name, extra] of [["bob", []], ["alice-phone", []], ["alice-laptop", laptop]]) {
        const [m] = (await history(name as string, name === "bob" ? "alice" : "bob", extra as []))
          .messages;
        if (m?.text !== "lunch at one?" || !m.notes?.includes("edited")) return false;
        if (!m.notes.some((n) => n.startsWith("👍"))) return false;
      }
      return true;
    });
    // Neither the edit nor the reaction is unread, on either side.
    assert.equal(await unread("bob"), 0);
    assert.equal(await unread("alice-phone"), 0);
    const text = await procs.ok([...home("bob"), "history", "alice"]);
    assert.match(text, /alice: lunch at one\? {2}\(👍 me, edited\)/);

    await procs.ok([...laptop, "delete", "bob", "lunch at noon?", "everyone"]);
    await eventually(
      "bob to see the message deleted",
      async () => (await history("bob", "alice")).messages[0]?.text === "(deleted)",
    );
    await procs.ok([...home("bob"), "stop"]);
    await procs.ok([...home("alice-phone"), "stop"]);
  } finally {
    await procs.stopAll();
  }
});

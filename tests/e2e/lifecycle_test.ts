/**
 * A device's life with real agent processes over a real relay: a new device paired with
 * `--history N` (and one with `--history 0`) shows the old messages it should and no others; a
 * bad `--history` is a usage error; a planned handover moves bob to the laptop, which then
 * reaches him; and a removed device is gone from the list for good.
 */
import assert from "node:assert/strict";
import type { ContactView, ConversationView, DeviceView } from "../../agent/mod.ts";
import { EXIT } from "../../agent/mod.ts";
import { assertOneLine, CODE_LINE, eventually, Procs, WAITING_COMMAND_MS_MAX } from "./_harness.ts";

const waits = { timeoutMs: WAITING_COMMAND_MS_MAX };

Deno.test("agent: pair start --history N|0, a planned handover and a device removal, end to end", async () => {
  const procs = await Procs.create();
  try {
    const relay = await procs.relay("kv");
    const home = (name: string) => ["--home", `${procs.dir}/${name}`];
    await procs.ok([
      ...home("alice-phone"),
      "init",
      "--name",
      "alice",
      "--device",
      "phone",
      "--server",
      relay,
    ]);
    await procs.ok([...home("bob"), "init", "--name", "bob", "--server", relay]);
    const invite = procs.spawnAgent([...home("bob"), "invite"]);
    const inviteCode = (await invite.waitFor(CODE_LINE))[1];
    await procs.ok([...home("alice-phone"), "accept", inviteCode], waits);
    assert.equal((await invite.done).code, 0);
    for (const text of ["p1", "p2", "p3"]) {
      await procs.ok([...home("alice-phone"), "send", "bob", text]);
    }
    const texts = async (name: string, contact: string) =>
      (await procs.json<ConversationView>([...home(name), "history", contact])).messages
        .map((m) => m.text).sort();
    await eventually(
      "bob to receive p1..p3",
      async () => (await texts("bob", "alice")).length === 3,
    );

    // A bad window: a usage error, one line, before anything is offered.
    const bad = await procs.agent([...home("alice-phone"), "pair", "start", "--history", "lots"]);
    assertOneLine(
      bad,
      EXIT.usage,
      /--history "lots": expected 0 \(none\), a number of messages .* or a time like 30d/,
    );

    // Without a waiting process the window would be forgotten: refused, not silently widened.
    const noWait = await procs.agent([
      ...home("alice-phone"),
      "pair",
      "start",
      "--history",
      "2",
      "--link",
      "--no-wait",
    ]);
    assertOneLine(noWait, EXIT.usage, /--history with --no-wait needs `run`/);

    const pair = async (device: string, history: string) => {
      const start = procs.spawnAgent([
        ...home("alice-phone"),
        "pair",
        "start",
        "--history",
        history,
      ]);
      const code = (await start.waitFor(CODE_LINE))[1];
      await procs.ok(
        [...home(`alice-${device}`), "pair", "join", code, "--server", relay, "--device", device],
        waits,
      );
      assert.equal((await start.done).code, 0);
    };
    await pair("laptop", "2");
    await pair("tablet", "0");
    // The laptop gets the last two messages of the conversation, the tablet none.
    await eventually(
      "the laptop's history",
      async () => (await texts("alice-laptop", "bob")).length >= 2,
    );
    assert.deepEqual(await texts("alice-laptop", "bob"), ["p2", "p3"]);
    assert.deepEqual(await texts("alice-tablet", "bob"), []);

    // Planned handover: the phone hands bob to the laptop; the laptop then sends to him directly.
    const notPrimary = await procs.agent([
      ...home("alice-laptop"),
      "contacts",
      "handover",
      "bob",
      "--to",
      "tablet",
    ]);
    assertOneLine(notPrimary, EXIT.usage, /this device is not bob's primary \(.*\)/);
    const handed = await procs.json<ContactView>([
      ...home("alice-phone"),
      "contacts",
      "handover",
      "bob",
      "--to",
      "laptop",
    ]);
    assert.equal(handed.primary, "laptop");
    await eventually("the laptop to become bob's primary", async () => {
      const [bob] = await procs.json<ContactView[]>([...home("alice-laptop"), "contacts"]);
      return bob?.primary === "this device";
    });
    await procs.ok([...home("alice-laptop"), "send", "bob", "from the new primary"]);
    await procs.ok([...home("bob"), "send", "alice", "hello laptop"]);
    await eventually(
      "bob to receive the laptop's message",
      async () => (await texts("bob", "alice")).includes("from the new primary"),
    );
    await eventually(
      "the laptop to receive bob's answer",
      async () => (await texts("alice-laptop", "bob")).includes("hello laptop"),
    );

    // The tablet is lost for good (its home is gone); the laptop removes it, the phone learns it
    // too, and the others keep chatting.
    await Deno.remove(`${procs.dir}/alice-tablet`, { recursive: true });
    const removed = await procs.json<DeviceView>([
      ...home("alice-laptop"),
      "devices",
      "remove",
      "tablet",
    ]);
    assert.equal(removed.name, "tablet");
    const names = async (name: string) =>
      (await procs.json<DeviceView[]>([...home(name), "devices"])).map((d) => d.name).sort();
    assert.deepEqual(await names("alice-laptop"), ["laptop", "phone"]);
    await eventually(
      "the phone to drop the tablet",
      async () => !(await names("alice-phone")).includes("tablet"),
    );
    const again = await procs.agent([...home("alice-laptop"), "devices", "remove", "tablet"]);
    assertOneLine(again, EXIT.usage, /no sibling device matches "tablet"/);
    await procs.ok([...home("alice-phone"), "send", "bob", "after the tablet was lost"]);
    // The phone's message goes through the laptop, bob's primary now (each command polls).
    await eventually("bob to receive the phone's message after the loss", async () => {
      await texts("alice-laptop", "bob");
      return (await texts("bob", "alice")).includes("after the tablet was lost");
    });
    await eventually(
      "the laptop to show it too",
      async () => (await texts("alice-laptop", "bob")).includes("after the tablet was lost"),
    );
  } finally {
    await procs.stopAll();
  }
});

Deno.test("agent: a laptop away longer than half the relay's retention catches up from the phone; status says so", async () => {
  const procs = await Procs.create();
  try {
    // A relay that keeps messages for 8 s: the laptop's absence below outlasts it.
    const retentionMs = 8_000;
    const relay = await procs.relay("kv", ["--retention-ms", String(retentionMs)]);
    const home = (name: string) => ["--home", `${procs.dir}/${name}`];
    const init = (name: string, device: string) =>
      procs.ok([
        ...home(`${name}-${device}`),
        "init",
        "--name",
        name,
        "--device",
        device,
        "--server",
        relay,
      ]);
    await init("alice", "phone");
    await init("bob", "phone");
    const start = procs.spawnAgent([...home("alice-phone"), "pair", "start"]);
    const code = (await start.waitFor(CODE_LINE))[1];
    await procs.ok(
      [...home("alice-laptop"), "pair", "join", code, "--server", relay, "--device", "laptop"],
      waits,
    );
    assert.equal((await start.done).code, 0);
    const invite = procs.spawnAgent([...home("bob-phone"), "invite"]);
    const inviteCode = (await invite.waitFor(CODE_LINE))[1];
    await procs.ok([...home("alice-phone"), "accept", inviteCode], waits);
    assert.equal((await invite.done).code, 0);
    await eventually(
      "the laptop to know bob",
      async () =>
        (await procs.json<ContactView[]>([...home("alice-laptop"), "contacts"])).length === 1,
    );
    const awayFrom = Date.now();

    // While the laptop is off: the phone writes to bob and changes the status line.
    for (const text of ["while you were away 1", "while you were away 2"]) {
      await procs.ok([...home("alice-phone"), "send", "bob", text]);
    }
    await procs.ok([...home("alice-phone"), "profile", "set", "--status", "travelling"]);
    // The syncs to the laptop expire on the relay: wait out its retention (a time, not an event).
    await new Promise((resolve) =>
      setTimeout(resolve, retentionMs + 1_000 - (Date.now() - awayFrom))
    );

    const phone = procs.spawnAgent([...home("alice-phone"), "run"]);
    await phone.waitFor(/is online/);
    const laptop = procs.spawnAgent([...home("alice-laptop"), "run"]);
    await laptop.waitFor(/is online/);
    await eventually("the laptop's catch-up to bring the messages", async () => {
      const status = await procs.json<{ catchUp: { messages: number; answers: number } | null }>(
        [...home("alice-laptop"), "status"],
      );
      return (status.catchUp?.answers ?? 0) > 0 && (status.catchUp?.messages ?? 0) >= 2;
    }, 60_000);
    const history = await procs.json<ConversationView>([...home("alice-laptop"), "history", "bob"]);
    assert.deepEqual(
      history.messages.map((m) => m.text).sort(),
      ["while you were away 1", "while you were away 2"],
    );
    const text = await procs.ok([...home("alice-laptop"), "status"]);
    assert.match(
      text,
      /^catch-up: asked .* for everything since .*; \d+ message\(s\) from \d+ answer\(s\)$/m,
    );
    assert.match(text, /— travelling/, "the profile change came back with the catch-up");
    phone.kill("SIGTERM");
    laptop.kill("SIGTERM");
    await phone.done;
    await laptop.done;
  } finally {
    await procs.stopAll();
  }
});

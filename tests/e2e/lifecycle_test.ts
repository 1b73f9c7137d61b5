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

    // The laptop removes the tablet: gone from its list; the phone learns it too.
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
  } finally {
    await procs.stopAll();
  }
});

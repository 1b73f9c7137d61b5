/**
 * A device's life with real agent processes over a real relay: a new device paired with
 * `--history N` (and one with `--history 0`) shows the old messages it should and no others; a
 * bad `--history` is a usage error; a planned handover moves bob to the laptop, which then
 * reaches him; only the device holding the identity root changes the device list, and the
 * recovery code moves the root to another device; the laptop, bob's primary, is lost for good
 * and removed, and the device that removed it takes bob over and keeps chatting.
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
    const { recoveryCode } = await procs.json<{ recoveryCode: string }>([
      ...home("alice-phone"),
      "init",
      "--name",
      "alice",
      "--device",
      "phone",
      "--server",
      relay,
    ]);
    assert.match(recoveryCode, /^([0-9A-Z]{4}-){7}[0-9A-Z]{4}$/);
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

    // Only the device holding the identity root (the phone, which ran init) changes the list.
    const notRoot = await procs.agent([...home("alice-laptop"), "devices", "remove", "tablet"]);
    assertOneLine(notRoot, EXIT.usage, /only the device holding the identity root/);
    const notRootPair = await procs.agent([...home("alice-laptop"), "pair", "start"]);
    assertOneLine(notRootPair, EXIT.usage, /only the device holding the identity root pairs/);
    // The tablet takes the root over from the recovery code; a wrong code changes nothing.
    const wrong = await procs.agent([...home("alice-tablet"), "devices", "recover"], {
      MEOW_RECOVERY_CODE: "0000-0000-0000-0000-0000-0000-0000-0000",
    });
    assertOneLine(wrong, EXIT.usage, /That recovery code is not this identity's/);
    const recovered = await procs.agent([...home("alice-tablet"), "devices", "recover"], {
      MEOW_RECOVERY_CODE: recoveryCode.toLowerCase(),
    });
    assert.equal(recovered.code, 0, recovered.stderr);

    // The laptop, bob's primary now, is lost for good (its home is gone). The tablet removes it:
    // it takes bob over with a session reset, every conversation moves to new keys, and everyone
    // keeps chatting.
    await Deno.remove(`${procs.dir}/alice-laptop`, { recursive: true });
    const removed = await procs.json<DeviceView>([
      ...home("alice-tablet"),
      "devices",
      "remove",
      "laptop",
    ]);
    assert.equal(removed.name, "laptop");
    const names = async (name: string) =>
      (await procs.json<DeviceView[]>([...home(name), "devices"])).map((d) => d.name).sort();
    assert.deepEqual(await names("alice-tablet"), ["phone", "tablet"]);
    const [bobOnTablet] = await procs.json<ContactView[]>([...home("alice-tablet"), "contacts"]);
    assert.equal(bobOnTablet.primary, "this device");
    await eventually(
      "the phone to drop the laptop",
      async () => !(await names("alice-phone")).includes("laptop"),
    );
    const again = await procs.agent([...home("alice-tablet"), "devices", "remove", "laptop"]);
    assertOneLine(again, EXIT.usage, /no sibling device matches "laptop"/);
    await procs.ok([...home("alice-tablet"), "send", "bob", "after the laptop was lost"]);
    await eventually(
      "bob to receive the tablet's message in the new session",
      async () => (await texts("bob", "alice")).includes("after the laptop was lost"),
    );
    await procs.ok([...home("bob"), "send", "alice", "hello tablet"]);
    await eventually(
      "the tablet to receive bob's answer",
      async () => (await texts("alice-tablet", "bob")).includes("hello tablet"),
    );
    await procs.ok([...home("alice-phone"), "send", "bob", "from the phone after the loss"]);
    // The phone's message goes through the tablet, bob's primary now (each command polls).
    await eventually("bob to receive the phone's message after the loss", async () => {
      await texts("alice-tablet", "bob");
      return (await texts("bob", "alice")).includes("from the phone after the loss");
    });
    await eventually(
      "the phone to show bob's answer",
      async () => (await texts("alice-phone", "bob")).includes("hello tablet"),
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

    // While the laptop is off: the phone writes to bob and changes the status line.
    for (const text of ["while you were away 1", "while you were away 2"]) {
      await procs.ok([...home("alice-phone"), "send", "bob", text]);
    }
    await procs.ok([...home("alice-phone"), "profile", "set", "--status", "travelling"]);
    // The syncs to the laptop expire on the relay: wait out its retention from the last of them
    // (a time, not an event; on a loaded machine the commands above take seconds each).
    await new Promise((resolve) => setTimeout(resolve, retentionMs + 1_000));

    const phone = procs.spawnAgent([...home("alice-phone"), "run"]);
    await phone.waitFor(/is online/);
    const laptop = procs.spawnAgent([...home("alice-laptop"), "run"]);
    await laptop.waitFor(/is online/);
    let last = "";
    await eventually("the laptop's catch-up to bring the messages", async () => {
      const status = await procs.json<{ catchUp: { messages: number; answers: number } | null }>(
        [...home("alice-laptop"), "status"],
      );
      last = `${new Date().toISOString()} ${JSON.stringify(status)}`;
      return (status.catchUp?.answers ?? 0) > 0 && (status.catchUp?.messages ?? 0) >= 2;
    }, 60_000).catch((e) => {
      throw new Error(`${(e as Error).message}; last status: ${last}\n${procs.describe()}`);
    });
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

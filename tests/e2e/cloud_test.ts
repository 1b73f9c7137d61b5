/**
 * The always-online device with real processes: a relay, deploy/agent.ts under `deno serve`
 * (cron every minute, its store in a local KV file) and CLI agents. The cloud device pairs with
 * the phone through one control call, becomes bob's primary by a planned handover; with the phone
 * and the laptop off, bob's message reaches the cloud device and the laptop when it comes back,
 * and the laptop's send reaches bob within one cron period while the phone stays off. Killed in
 * the middle of a cron run and started again, it loses and duplicates nothing.
 */
import assert from "node:assert/strict";
import type { ContactView, ConversationView } from "../../agent/mod.ts";
import { CloudClient } from "../../deploy/mod.ts";
import {
  CODE_LINE,
  eventually,
  PASSPHRASE,
  type Proc,
  Procs,
  WAITING_COMMAND_MS_MAX,
} from "./_harness.ts";

const waits = { timeoutMs: WAITING_COMMAND_MS_MAX };
/** The cron schedule of deploy/agent.ts: every minute. */
const CRON_PERIOD_MS = 60_000;

interface World {
  relay: string;
  home: (dir: string) => string[];
  cloud: CloudClient;
  cloudProc: Proc;
  texts: (dir: string, contact: string) => Promise<string[]>;
}

/**
 * alice's phone invites bob, pairs the laptop and the cloud device (one control call), and hands
 * bob over to the cloud device; resolves once the cloud device is bob's primary.
 */
async function setUp(procs: Procs, cloudEnv: Record<string, string>): Promise<World> {
  const relay = await procs.relay("kv");
  const home = (name: string) => ["--home", `${procs.dir}/${name}`];
  const init = (dir: string, name: string, device: string) =>
    procs.ok([...home(dir), "init", "--name", name, "--device", device, "--server", relay]);
  await init("alice-phone", "alice", "phone");
  await init("bob", "bob", "phone");
  const invite = procs.spawnAgent([...home("bob"), "invite"]);
  await procs.ok([...home("alice-phone"), "accept", (await invite.waitFor(CODE_LINE))[1]], waits);
  assert.equal((await invite.done).code, 0);
  const pairWith = async (join: (code: string) => Promise<unknown>) => {
    const start = procs.spawnAgent([...home("alice-phone"), "pair", "start"]);
    await join((await start.waitFor(CODE_LINE))[1]);
    assert.equal((await start.done).code, 0, start.stderr);
  };
  await pairWith((code) =>
    procs.ok(
      [...home("alice-laptop"), "pair", "join", code, "--server", relay, "--device", "laptop"],
      waits,
    )
  );

  // The cloud device joins with one control call (then ticks bring its welcome in).
  const { proc: cloudProc, url } = await procs.cloud({ MEOW_DEVICE: "cloud", ...cloudEnv });
  const cloud = new CloudClient(url, PASSPHRASE);
  await pairWith((code) => cloud.call("join", { code, server: relay }));
  await eventually("the cloud device to know bob", async () => {
    await cloud.call("poll");
    return (await cloud.call<ContactView[]>("contacts")).some((c) => c.name === "bob");
  }, 60_000);

  // A planned handover makes the cloud device bob's primary.
  await procs.ok([...home("alice-phone"), "contacts", "handover", "bob", "--to", "cloud"]);
  await eventually("the cloud device to become bob's primary", async () => {
    await cloud.call("poll");
    const [bob] = await cloud.call<ContactView[]>("contacts");
    return bob?.primary === "this device";
  }, 60_000);
  const texts = async (dir: string, contact: string) =>
    (await procs.json<ConversationView>([...home(dir), "history", contact])).messages
      .map((m) => m.text);
  return { relay, home, cloud, cloudProc, texts };
}

Deno.test("cloud device: paired by one control call, bob's primary after a handover, reached while the phone is off", async () => {
  const procs = await Procs.create();
  try {
    const { home, cloud, cloudProc, texts } = await setUp(procs, {});

    // Phone and laptop are off from here (no command runs on them). Bob writes; the cron brings
    // it in (no control call).
    await procs.ok([...home("bob"), "send", "alice", "to whoever is awake"]);
    await eventually("the cloud device to receive bob's message by cron", async () => {
      const history = await cloud.call<ConversationView>("history", { contact: "bob" });
      return history.messages.some((m) => m.text === "to whoever is awake");
    }, 2 * CRON_PERIOD_MS + 30_000);
    // The laptop comes back and has it (synced by the cloud device).
    assert.ok((await texts("alice-laptop", "bob")).includes("to whoever is awake"));

    // The laptop's send goes to the cloud device, bob's primary, which sends it on its next cron
    // run: within one period, while the phone is still off.
    const sentAt = Date.now();
    await procs.ok([...home("alice-laptop"), "send", "bob", "from the laptop"]);
    await eventually(
      "bob to receive the laptop's message",
      async () => (await texts("bob", "alice")).includes("from the laptop"),
      CRON_PERIOD_MS + 30_000,
    );
    const elapsedMs = Date.now() - sentAt;
    assert.ok(elapsedMs <= CRON_PERIOD_MS + 30_000, `took ${elapsedMs} ms`);
    // Its logs carry neither contents nor keys.
    assert.ok(!cloudProc.stdout.includes("to whoever is awake"));
    assert.ok(!cloudProc.stdout.includes("from the laptop"));
    assert.ok(!cloudProc.stdout.includes(PASSPHRASE));
  } finally {
    await procs.stopAll();
  }
});

Deno.test("cloud device: deno serve killed in the middle of a cron run and started again loses and duplicates nothing", async () => {
  const procs = await Procs.create();
  try {
    // Every commit and every run's start logged at debug.
    const env = { MEOW_DEVICE: "cloud", MEOW_LOG_LEVEL: "debug" };
    const { home, cloudProc, texts } = await setUp(procs, env);
    // While the cloud device is down, bob and the laptop write: its next cron run has all of it.
    cloudProc.kill("SIGKILL");
    await cloudProc.done;
    const fromBob = Array.from({ length: 8 }, (_, i) => `bob burst ${i}`);
    const fromLaptop = Array.from({ length: 4 }, (_, i) => `laptop burst ${i}`);
    for (const text of fromBob) await procs.ok([...home("bob"), "send", "alice", text]);
    for (const text of fromLaptop) await procs.ok([...home("alice-laptop"), "send", "bob", text]);

    // Started again, it waits for its cron; after the run's first commit the process is killed
    // (SIGKILL: no clean-up at all).
    const second = await procs.cloud(env);
    const deadline = Date.now() + CRON_PERIOD_MS + 30_000;
    while (!second.proc.stdout.includes("committed a message")) {
      if (Date.now() > deadline || second.proc.exited) {
        throw new Error(`no cron run committed anything: ${second.proc.stdout}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    second.proc.kill("SIGKILL");
    await second.proc.done;
    assert.match(second.proc.stdout, /tick: started \(cron\)/);
    assert.ok(!/tick: \d+ accepted/.test(second.proc.stdout), "killed before the run ended");

    // Started once more over the same KV file: runs until everything is through.
    const third = await procs.cloud(env);
    const cloud = new CloudClient(third.url, PASSPHRASE);
    const once = (list: string[], expected: string[]) =>
      expected.every((text) => list.filter((t) => t === text).length === 1);
    const all = [...fromBob, ...fromLaptop];
    const atCloud = async () =>
      (await cloud.call<ConversationView>("history", { contact: "bob" })).messages
        .map((m) => m.text);
    await eventually("every message through exactly once", async () => {
      await cloud.call("poll");
      return once(await atCloud(), all) && once(await texts("bob", "alice"), fromLaptop);
    }, 90_000);
    // Nothing twice anywhere, the laptop included (synced by the cloud device).
    const held = await atCloud();
    assert.ok(once(held, all), `cloud: ${held.join(" | ")}`);
    assert.ok(once(await texts("bob", "alice"), fromLaptop));
    await eventually("the laptop to hold each message once", async () => {
      return once(await texts("alice-laptop", "bob"), all);
    }, 30_000);
  } finally {
    await procs.stopAll();
  }
});

/**
 * The README walk-through, run as written: every `./dev task agent` line of
 * its section, in order, against a real relay process and four real device
 * homes, first over the Deno KV backend, then over Redis.
 */
import assert from "node:assert/strict";
import { type ConversationView, homePaths, readConfig } from "../../agent/mod.ts";
import { containsBytes } from "../../crypto/mod.ts";
import {
  CODE_LINE,
  eventually,
  PASSPHRASE,
  type Proc,
  Procs,
  redisSkip,
  ROOT,
  SAFETY_CODE_LINE,
  shellWords,
  WAITING_COMMAND_MS_MAX,
  withRedis,
} from "./_harness.ts";

const README_HOME = "/tmp/meow/";
const README_RELAY = "http://127.0.0.1:8080";
const AGENT = "./dev task agent ";

/** The agent command lines of the README's walk-through section, in order. */
async function walkthroughLines(): Promise<string[]> {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const section = readme.split(/^## /m).find((s) => s.startsWith("Walk-through"));
  assert.ok(section, "README has a Walk-through section");
  assert.ok(section.includes("./dev task server\n"), "the walk-through starts a relay");
  assert.ok(section.includes(`export MEOW_PASSPHRASE='${PASSPHRASE}'`));
  return section.split("\n").filter((l) => l.startsWith(AGENT));
}

async function walkThrough(procs: Procs, relay: string): Promise<void> {
  const lines = await walkthroughLines();
  const homes = `${procs.dir}/`;
  const agents: Proc[] = [];
  let waiting: Proc | undefined; // a `pair start` or `invite` waiting for the other side
  let code = "";
  let converged = false;
  const outputs: { line: string; stdout: string }[] = [];
  for (const line of lines) {
    const words = shellWords(line.slice(AGENT.length)).map((w) =>
      w.replace(README_HOME, homes).replace(README_RELAY, relay)
    );
    const background = words[words.length - 1] === "&";
    if (background) words.pop();
    const command = words.slice(2).filter((w) => !w.startsWith("-"))[0];
    if (command === "run") {
      assert.ok(background, `${line}: run goes to the background`);
      const agent = procs.spawnAgent(words);
      await agent.waitFor(/is online/);
      agents.push(agent);
      continue;
    }
    if ((command === "pair" && words.includes("start")) || command === "invite") {
      waiting = procs.spawnAgent(words);
      code = (await waiting.waitFor(CODE_LINE))[1];
      continue;
    }
    const joins = (command === "pair" && words.includes("join")) || command === "accept";
    if (joins) {
      // The README shows an example code; the test types the one just printed, as a reader would.
      const at = words.indexOf(command === "accept" ? "accept" : "join") + 1;
      assert.match(words[at], /^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/, `${line}: an example code`);
      words[at] = code;
    }
    if ((command === "history" || command === "read") && !converged) {
      await allDevicesAgree(procs, homes);
      converged = true;
    }
    const timeoutMs = joins ? WAITING_COMMAND_MS_MAX : undefined;
    const stdout = await procs.ok(words, { timeoutMs });
    outputs.push({ line, stdout });
    if (waiting) {
      const done = await waiting.done;
      assert.equal(done.code, 0, `the waiting side ends well: ${done.stderr}\n${procs.describe()}`);
      // What it queued on completing (the new device's welcome) left before it exited.
      assert.doesNotMatch(done.stderr, /wait in the outbox/, `${line}: ${done.stderr}`);
      // Both sides show the same safety code, to compare.
      const shown = stdout.match(SAFETY_CODE_LINE)?.[1];
      assert.ok(shown, `${line} prints a safety code:\n${stdout}`);
      assert.equal(
        done.stdout.match(SAFETY_CODE_LINE)?.[1],
        shown,
        `the same on both sides: ${done.stdout}`,
      );
      waiting = undefined;
    }
  }
  assert.ok(converged, "the walk-through reads the conversation");
  for (const agent of agents) {
    const done = await agent.done;
    assert.equal(done.code, 0, `run stops cleanly: ${done.stderr}`);
    assert.match(done.stderr, /stopped; everything is saved/);
  }

  const shown = (part: string) => outputs.find((o) => o.line.includes(part))!.stdout;
  const history = shown("alice-laptop history bob");
  for (const text of ["hi bob, from my phone", "and from my laptop", "bob's laptop too"]) {
    assert.ok(history.includes(text), `alice's laptop shows "${text}":\n${history}`);
  }
  const read = shown("bob-phone read alice");
  assert.match(read, /alice: hi bob, from my phone/);
  assert.match(read, /alice: and from my laptop/);
  const json = JSON.parse(shown("bob-laptop --json history alice")) as ConversationView;
  assert.equal(json.messages.length, 4);

  // And afterwards, every device of each user holds the same conversation, each message once.
  await allDevicesAgree(procs, homes);
  await sealedAtRest(homes);
}

/** Each home keeps its store in Deno KV (the default), and no file of it holds a message text. */
async function sealedAtRest(homes: string): Promise<void> {
  const texts = ["hi bob, from my phone", "bob's laptop too"].map((t) =>
    new TextEncoder().encode(t)
  );
  for (const device of ["alice-phone", "alice-laptop", "bob-phone", "bob-laptop"]) {
    const paths = homePaths(`${homes}${device}`);
    assert.equal((await readConfig(paths))?.store, "kv", `${device}: the default store`);
    assert.ok((await Deno.stat(paths.kv)).size > 0, `${device}: ${paths.kv}`);
    for await (const entry of Deno.readDir(paths.dir)) {
      if (!entry.isFile) continue;
      const bytes = await Deno.readFile(`${paths.dir}/${entry.name}`);
      for (const text of texts) {
        assert.ok(!containsBytes(bytes, text), `${device}/${entry.name} holds a message text`);
      }
    }
  }
}

/** The four devices' conversations hold the same four messages, each once, mirrored between users. */
async function allDevicesAgree(procs: Procs, homes: string): Promise<void> {
  const key = (v: ConversationView, flip: boolean) =>
    v.messages.map((m) =>
      `${m.uuid} ${(m.direction === "out") !== flip ? "alice→bob" : "bob→alice"} ${m.text}`
    ).sort();
  let last = "";
  await eventually("all four devices to show the same four messages", async () => {
    const views = await Promise.all([
      procs.json<ConversationView>(["--home", `${homes}alice-phone`, "history", "bob"]),
      procs.json<ConversationView>(["--home", `${homes}alice-laptop`, "history", "bob"]),
      procs.json<ConversationView>(["--home", `${homes}bob-phone`, "history", "alice"]),
      procs.json<ConversationView>(["--home", `${homes}bob-laptop`, "history", "alice"]),
    ]);
    const seen = views.map((v, i) => key(v, i >= 2));
    last = JSON.stringify(seen, null, 1);
    const uuids = seen.map((s) => new Set(s.map((k) => k.split(" ")[0])));
    return seen.every((s) => s.length === 4 && JSON.stringify(s) === JSON.stringify(seen[0])) &&
      uuids.every((u) => u.size === 4);
  }).catch((e) => {
    throw new Error(`${(e as Error).message}; last seen:\n${last}`);
  });
}

Deno.test("README walk-through over a Deno KV relay: pair, invite, chat from every device, same history everywhere", async () => {
  const procs = await Procs.create();
  try {
    await walkThrough(procs, await procs.relay("kv"));
  } finally {
    await procs.stopAll();
  }
});

Deno.test({
  name: "README walk-through over a Redis relay: the same commands, the same result",
  ignore: redisSkip() !== undefined,
  async fn() {
    await withRedis(async (redis) => {
      const procs = await Procs.create();
      try {
        await walkThrough(procs, await procs.relay(redis.url));
      } finally {
        await procs.stopAll();
      }
    });
  },
});

if (redisSkip()) console.warn(`skipping the Redis walk-through: ${redisSkip()}`);

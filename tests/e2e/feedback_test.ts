/**
 * What a person meets around the walk-through: relay trouble reported as it happens, hints to
 * copy, contacts found by a name prefix after a rename, one history order on both ends, `--json`
 * failures as one object on stdout, `profile show`.
 */
import assert from "node:assert/strict";
import { type ConversationView, EXIT } from "../../agent/mod.ts";
import { homePaths, readControlAddress } from "../../agent/home.ts";
import {
  CODE_LINE,
  eventually,
  freePort,
  Procs,
  ROOT,
  shellWords,
  WAITING_COMMAND_MS_MAX,
} from "./_harness.ts";

const waits = { timeoutMs: WAITING_COMMAND_MS_MAX };

Deno.test("agent feedback: relay down and back, copyable hints, name prefixes, --json errors, profile show", async () => {
  const procs = await Procs.create();
  try {
    const port = freePort();
    let relay = await procs.startRelay("kv", { port });
    const home = (name: string) => ["--home", `${procs.dir}/${name}`];
    await procs.ok([...home("alice"), "init", "--name", "alice", "--server", relay.url]);
    await procs.ok([...home("bob"), "init", "--name", "bob", "--server", relay.url]);

    // The hint `invite` prints runs as printed (with the contact's home put in), for ./dev and deno.
    const invite = procs.spawnAgent([...home("alice"), "invite"]);
    await invite.waitFor(CODE_LINE);
    const hint =
      (await invite.waitFor(/: \.\/dev task agent (--home <their home> accept .*)$/m))[1];
    assert.match(invite.stderr, /deno task agent --home <their home> accept /);
    const accept = shellWords(hint.replace("<their home>", `${procs.dir}/bob`));
    await procs.ok(accept, waits);
    assert.equal((await invite.done).code, 0);

    // profile show, as text and JSON.
    assert.match(await procs.ok([...home("alice"), "profile", "show"]), /alice/);
    const shown = JSON.parse(await procs.ok([...home("alice"), "--json", "profile", "show"]));
    assert.deepEqual(shown, { nickname: "alice", status: "" });

    // --json failures: one object on stdout, with the exit code and its name; stderr stays empty.
    for (
      const [args, exit, code] of [
        [["send", "zed", "hi"], EXIT.unknownContact, "unknownContact"],
        [["frobnicate"], EXIT.usage, "usage"],
      ] as const
    ) {
      const failed = await procs.agent([...home("alice"), "--json", ...args]);
      assert.equal(failed.code, exit, failed.stderr);
      assert.equal(failed.stderr.trim(), "");
      const lines = failed.stdout.trim().split("\n");
      assert.equal(lines.length, 1, failed.stdout);
      const { error } = JSON.parse(lines[0]);
      assert.equal(error.exit, exit);
      assert.equal(error.code, code);
      assert.equal(typeof error.message, "string");
    }

    // Rename: says what changed, and the old name (a prefix of the new) still finds the contact.
    const renamed = await procs.ok([...home("alice"), "rename", "bob", "Bob B."]);
    assert.match(renamed, /renamed "bob" to "Bob B\." on every device; "bob" still finds it/);
    await procs.ok([...home("alice"), "send", "bob", "one"]);
    await procs.ok([...home("alice"), "send", "BOB", "two"]);
    await procs.ok([...home("alice"), "history", "bob b."]);
    // A prefix that is no one's name still fails with the documented code.
    const none = await procs.agent([...home("alice"), "send", "zed", "x"]);
    assert.equal(none.code, EXIT.unknownContact);

    // Both online; lines name user and device.
    const aliceRun = procs.spawnAgent([...home("alice"), "run"]);
    await aliceRun.waitFor(/alice\/\S+ is online .*stop --home /);
    const bobRun = procs.spawnAgent([...home("bob"), "run"]);
    await bobRun.waitFor(/is online/);
    await bobRun.waitFor(/^\[bob\/\S+\] .*alice: two$/m);
    // Through a running agent no passphrase is asked for, and a wrong one changes nothing: access
    // rests on the home's owner-only agent.token.
    for (const passphrase of ["", "wrong"]) {
      const through = await procs.agent([...home("alice"), "status"], {
        MEOW_PASSPHRASE: passphrase,
      });
      assert.equal(through.code, 0, through.stderr);
    }
    assert.equal((await Deno.stat(`${procs.dir}/alice/agent.token`)).mode! & 0o077, 0);
    // The attack: a local process that cannot read agent.token asks the running agent to rename
    // bob, with no token and with a guessed one. Refused, and nothing changed; the same request
    // with the token read from the home goes through (so it is the token that stops it).
    const address = await readControlAddress(homePaths(`${procs.dir}/alice`));
    assert.ok(address);
    const rename = (authorization?: string) =>
      fetch(`http://127.0.0.1:${address.port}/`, {
        method: "POST",
        headers: authorization ? { authorization } : {},
        body: JSON.stringify({ op: "rename", args: { contact: "bob", name: "Mallory" } }),
      });
    for (const guess of [undefined, "Bearer AAAA", `Bearer ${address.token.slice(0, -1)}x`]) {
      const refused = await rename(guess);
      assert.equal(refused.status, 403);
      assert.equal((await refused.json()).ok, false);
    }
    const names = async () =>
      (await procs.json<{ name: string }[]>([...home("alice"), "contacts"])).map((c) => c.name);
    assert.deepEqual(await names(), ["Bob B."]);
    const allowed = await rename(`Bearer ${address.token}`);
    assert.equal((await allowed.json()).ok, true);
    assert.deepEqual(await names(), ["Mallory"]);
    await procs.ok([...home("alice"), "rename", "mallory", "Bob B."]);
    await procs.ok([...home("bob"), "send", "alice", "three"]);
    await aliceRun.waitFor(/^\[alice\/\S+\] .*Bob B\.: three$/m);

    // One order on both ends: the sender's send time, then the uuid.
    const order = async (name: string, contact: string) =>
      (await procs.json<ConversationView>([...home(name), "history", contact])).messages
        .map((m) => m.uuid);
    await eventually("both ends to hold the three messages", async () => {
      return (await order("alice", "bob")).length === 3 &&
        (await order("bob", "alice")).length === 3;
    });
    assert.deepEqual(await order("alice", "bob"), await order("bob", "alice"));

    // The relay goes away: the running agent says so, `send` says it is queued, `status` names it.
    relay.proc.kill("SIGKILL");
    await relay.proc.done;
    // It said where it listens at info (though run with --log-level warn), and Deno's notice about
    // request.signal never showed although every request's signal was handed to the core.
    assert.match(
      relay.proc.stdout,
      /^\S+ info relay \S+ \(kv\) listening on http:\/\/127\.0\.0\.1:/m,
    );
    assert.doesNotMatch(relay.proc.stdout + relay.proc.stderr, /legacy behavior|request\.signal/);
    await aliceRun.waitFor(/^\[alice\/\S+\] relay .+?: unreachable since .*outbox/m);
    const queued = await procs.ok([...home("alice"), "send", "bob", "while it was down"]);
    assert.match(queued, /while it was down \[queued — relay .+? unreachable since /);
    assert.match(await procs.ok([...home("alice"), "status"]), /relay .+?: unreachable since /);

    // Back where it was: the agent says so and the queued message arrives.
    relay = await procs.startRelay("kv", { port });
    await aliceRun.waitFor(/^\[alice\/\S+\] relay .+?: \w+ go through again$/m, 60_000);
    await bobRun.waitFor(/alice: while it was down$/m, 60_000);
    const sent = await procs.ok([...home("alice"), "send", "bob", "all well"]);
    assert.doesNotMatch(sent, /queued/);

    await procs.ok([...home("alice"), "stop"]);
    await procs.ok([...home("bob"), "stop"]);
    assert.equal((await aliceRun.done).code, 0);
    assert.equal((await bobRun.done).code, 0);
  } finally {
    await procs.stopAll();
  }
});

Deno.test("./dev task runs a task without deno's banner, and without colour in a pipe", async () => {
  const output = await new Deno.Command("bash", {
    args: [`${ROOT}dev`, "task", "sim", "--help"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [stdout, stderr] = [output.stdout, output.stderr].map((b) => new TextDecoder().decode(b));
  assert.equal(output.code, 0, stderr);
  assert.match(stdout, /^Usage: deno task sim FILE/);
  assert.doesNotMatch(stdout + stderr, /^Task sim /m);
  assert.ok(!(stdout + stderr).includes("\x1b["), "no colour codes");
});

/**
 * Every CLI error a user can cause ends as one line on stderr and the exit
 * code `--help` documents, never a stack trace.
 */
import assert from "node:assert/strict";
import { EXIT } from "../../agent/mod.ts";
import { assertOneLine, freePort, Procs } from "./_harness.ts";

Deno.test("agent CLI errors: one line on stderr and the documented exit code", async () => {
  const procs = await Procs.create();
  try {
    const relay = await procs.relay("kv");
    const alice = `${procs.dir}/alice`;
    await procs.ok(["--home", alice, "init", "--name", "alice", "--server", relay]);

    // No identity yet.
    assertOneLine(
      await procs.agent(["--home", `${procs.dir}/nobody`, "contacts"]),
      EXIT.noIdentity,
      /no identity in .*nobody yet: run `init` or `pair join` first/,
    );
    // An identity already.
    assertOneLine(
      await procs.agent(["--home", alice, "init", "--name", "again", "--server", relay]),
      EXIT.noIdentity,
      /has an identity already/,
    );
    // Unknown contact.
    assertOneLine(
      await procs.agent(["--home", alice, "send", "zed", "hello"]),
      EXIT.unknownContact,
      /no contact matches "zed"/,
    );
    assertOneLine(
      await procs.agent(["--home", alice, "history", "zed"]),
      EXIT.unknownContact,
      /no contact matches "zed"/,
    );
    // Relay unreachable: a loopback port nothing listens on.
    const closed = `http://127.0.0.1:${freePort()}`;
    assertOneLine(
      await procs.agent([
        "--home",
        `${procs.dir}/carol`,
        "init",
        "--name",
        "c",
        "--server",
        closed,
      ]),
      EXIT.unreachable,
      /cannot reach the relay at http:\/\/127\.0\.0\.1:\d+/,
    );
    assertOneLine(
      await procs.agent([
        "--home",
        `${procs.dir}/carol`,
        "pair",
        "join",
        "ABCD-EFGH-JKMN",
        "--server",
        closed,
      ]),
      EXIT.unreachable,
      /cannot reach the relay/,
    );
    // Bad codes and links (tests/e2e/pairing_test.ts has more).
    assertOneLine(
      await procs.agent(["--home", alice, "accept", "ZZZZ-2345-6789"]),
      EXIT.badCode,
      /no such code: used already, expired or mistyped/,
    );
    assertOneLine(
      await procs.agent([
        "--home",
        `${procs.dir}/dave`,
        "pair",
        "join",
        "ZZZZ-2345-6789",
        "--server",
        relay,
      ]),
      EXIT.badCode,
      /no such code: used already, expired or mistyped/,
    );
    await Deno.writeTextFile(`${procs.dir}/junk.link`, "not a link at all!");
    assertOneLine(
      await procs.agent(["--home", alice, "accept", "--in", `${procs.dir}/junk.link`]),
      EXIT.badCode,
      /Cannot read the pairing code/,
    );
    // A failed join leaves no half-made home behind: the same home can join later.
    assertOneLine(
      await procs.agent(["--home", `${procs.dir}/dave`, "contacts"]),
      EXIT.noIdentity,
      /no identity/,
    );
    // Wrong passphrase, and none at all without a terminal.
    assertOneLine(
      await procs.agent(["--home", alice, "contacts"], { MEOW_PASSPHRASE: "wrong" }),
      EXIT.passphrase,
      /wrong passphrase for /,
    );
    assertOneLine(
      await procs.agent(["--home", alice, "contacts"], { MEOW_PASSPHRASE: "" }),
      EXIT.passphrase,
      /no passphrase: set MEOW_PASSPHRASE/,
    );
    // Bad arguments.
    assertOneLine(
      await procs.agent(["--home", alice, "history", "bob", "--limit", "x"]),
      EXIT.usage,
      /--limit must be a positive integer/,
    );
    assertOneLine(
      await procs.agent(["--home", alice, "frobnicate"]),
      EXIT.usage,
      /unknown command/,
    );
    assertOneLine(
      await procs.agent([
        "--home",
        `${procs.dir}/dave`,
        "init",
        "--name",
        "dave",
        "--server",
        relay,
        "--store",
        "paper",
      ]),
      EXIT.usage,
      /--store.*paper.*kv, sqlite/,
    );
    // A second `run` on a home that runs already.
    const run = procs.spawnAgent(["--home", alice, "run"]);
    await run.waitFor(/is online/);
    assertOneLine(
      await procs.agent(["--home", alice, "run"]),
      EXIT.busy,
      /an agent runs on .* already \(pid \d+\)/,
    );
    // Through the running agent, errors read the same.
    assertOneLine(
      await procs.agent(["--home", alice, "send", "zed", "hello"]),
      EXIT.unknownContact,
      /no contact matches "zed"/,
    );
    await procs.ok(["--home", alice, "stop"]);
    assert.equal((await run.done).code, 0);
    // --help everywhere documents the exit codes.
    for (const args of [["--help"], ["send", "--help"], ["pair", "join", "--help"]]) {
      const help = await procs.agent(args);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /Exit codes:/);
    }
  } finally {
    await procs.stopAll();
  }
});

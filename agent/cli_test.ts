import assert from "node:assert/strict";
import { SystemRandom } from "../crypto/mod.ts";
import { systemClock } from "../ports/system_clock.ts";
import { ServerCore } from "../server/core.ts";
import { LocalTransport } from "../server/local_transport.ts";
import { MemoryBackend } from "../server/memory.ts";
import { runCli } from "./cli.ts";

const RELAY_URL = "http://relay.test";

for (const store of ["kv", "sqlite"]) {
  Deno.test(`runCli() init --store ${store} makes the home 0700 and every file in it 0600`, {
    ignore: Deno.build.os === "windows",
  }, async () => {
    const parent = await Deno.makeTempDir({ prefix: "meowsync-cli-" });
    try {
      const core = await ServerCore.create({
        backend: new MemoryBackend(),
        clock: systemClock,
        random: new SystemRandom(),
        url: RELAY_URL,
      });
      const lines: string[] = [];
      const io = {
        out: (line: string) => lines.push(line),
        err: (line: string) => lines.push(line),
        env: (name: string) => name === "MEOW_PASSPHRASE" ? "pass phrase" : undefined,
        transport: new LocalTransport([core]),
        interrupt: new AbortController().signal,
      };
      const home = `${parent}/home`;
      const args = ["--home", home, "init", "--name", "al", "--server", RELAY_URL];
      const code = await runCli([...args, "--store", store, "--scrypt-log-n", "10"], io);
      assert.equal(code, 0, lines.join("\n"));
      assert.equal((await Deno.stat(home)).mode! & 0o777, 0o700);
      const modes: Record<string, string> = {};
      for await (const entry of Deno.readDir(home)) {
        modes[entry.name] = ((await Deno.stat(`${home}/${entry.name}`)).mode! & 0o777).toString(8);
      }
      const db = store === "kv" ? "device.kv" : "device.db";
      for (const name of ["agent.json", "agent.lock", db]) assert.ok(name in modes, name);
      for (const [name, mode] of Object.entries(modes)) assert.equal(mode, "600", name);
    } finally {
      await Deno.remove(parent, { recursive: true });
    }
  });
}

Deno.test("runCli() lists the plugins' commands in --help; a bad --plugin or plugins list is one line, exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync-cli-plugin-" });
  try {
    const run = async (args: string[]) => {
      const lines: string[] = [];
      const io = {
        out: (line: string) => lines.push(line),
        err: (line: string) => lines.push(line),
        env: () => undefined,
        interrupt: new AbortController().signal,
      };
      return { code: await runCli(args, io), text: lines.join("\n"), lines };
    };
    const help = await run(["--home", dir, "--help"]);
    assert.equal(help.code, 0);
    for (const name of ["react", "edit", "delete"]) {
      assert.match(help.text, new RegExp(`^  ${name} `, "m"), name);
    }
    const module = (command: string) =>
      `export default { name: "clash", create: () => ({ name: "clash" }), commands: { ${command}: ` +
      `{ summary: "x", args: [], run: async () => ({ lines: [], value: null }) } } };`;
    await Deno.writeTextFile(`${dir}/clash.ts`, module("send"));
    await Deno.writeTextFile(`${dir}/hello.ts`, module("hello"));
    const withHello = await run(["--home", dir, "--plugin", `${dir}/hello.ts`, "--help"]);
    assert.match(withHello.text, /^ {2}hello .*\(plugin clash\)/m);
    for (
      const [args, pattern] of [
        [["--plugin", `${dir}/none.ts`, "status"], /plugin .*none\.ts: cannot be read/],
        [["--plugin", `${dir}/clash.ts`, "status"], /its command "send" is one meowsync has/],
        [
          ["--plugin=" + `${dir}/hello.ts`, "--plugin", `${dir}/hello.ts`, "status"],
          /loaded already/,
        ],
      ] as const
    ) {
      const result = await run(["--home", dir, ...args]);
      assert.equal(result.code, 2, result.text);
      assert.equal(result.lines.length, 1, result.text);
      assert.match(result.lines[0], /^meowsync agent: /);
      assert.match(result.lines[0], pattern);
    }
    // The home's list: a wrong shape is said, not ignored.
    await Deno.writeTextFile(
      `${dir}/agent.json`,
      JSON.stringify({ version: 1, kdf: { salt: "x" }, check: "x", plugins: [5] }),
    );
    const listed = await run(["--home", dir, "status"]);
    assert.notEqual(listed.code, 0);
    assert.match(listed.text, /"plugins" is not a list of file paths/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

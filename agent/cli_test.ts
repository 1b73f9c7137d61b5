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

/**
 * A plugin written outside the repository — a module in a temp dir, importing meowsync only by
 * file URL — loaded by `deno task sim --plugin` and by a scenario's `plugins:`: it adds a step
 * (`wave:`) and an expectation (`waves_counted`) and passes; the expectation fails on a broken run;
 * a bad module is one clear error, exit 2.
 */
import assert from "node:assert/strict";
import { main, testIo } from "../sim/mod.ts";

const ROOT = new URL("../", import.meta.url).href;

/** A "wave" plugin: a device counts the waves it made, in its own collection. */
const WAVES = (broken: boolean) => `
import { apiKey } from "${ROOT}kernel/mod.ts";
const WAVES_API = apiKey("waves");
export default {
  name: "waves",
  create() {
    let host;
    return {
      name: "waves",
      setup(h) { host = h; },
      api: {
        wave: () => host.transact(async (tx) => {
          const data = tx.data("waves");
          const n = (await data.get("count")) ?? 0;
          data.put("count", n + ${broken ? 2 : 1});
        }),
      },
    };
  },
  steps: {
    wave: {
      description: "{ device: user/device, times: N }",
      fields: { device: { kind: "device", required: true }, times: { kind: "count" } },
      async run(args, ctx) {
        for (let i = 0; i < (args.times ?? 1); i++) await ctx.kernel(args.device).api(WAVES_API).wave();
      },
    },
  },
  expectations: {
    waves_counted: {
      description: "alice/phone counted three waves",
      async check(_args, ctx) {
        const phone = ctx.devices.find((d) => d.ref === "alice/phone");
        const n = await phone.data("waves").get("count");
        return { ok: n === 3, detail: \`alice/phone counted \${n} wave(s)\` };
      },
    },
  },
};
`;

const SCENARIO = (plugins: string) =>
  `name: waving
duration: 1m
${plugins}users:
  - { name: alice, devices: [phone] }
  - { name: bob, devices: [phone] }
steps:
  - { at: 0s, invite: { from: alice/phone, to: bob/phone } }
  - { at: 5s, wave: { device: alice/phone, times: 2 } }
  - { at: 6s, wave: { device: alice/phone } }
expect: [no_loss, waves_counted]
`;

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "meowsync-plugin-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a plugin from outside the repository: --plugin and plugins: load it, its step runs and its expectation holds", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/waves.ts`, WAVES(false));
    await Deno.writeTextFile(`${dir}/flag.yaml`, SCENARIO(""));
    await Deno.writeTextFile(`${dir}/listed.yaml`, SCENARIO("plugins: [./waves.ts]\n"));
    const flag = testIo();
    assert.equal(
      await main([`${dir}/flag.yaml`, "--plugin", `${dir}/waves.ts`, "--quiet"], flag),
      0,
      flag.stdout + flag.stderr,
    );
    assert.match(flag.stdout, /ok {3}waves_counted: alice\/phone counted 3 wave\(s\)/);
    assert.match(flag.stdout, /plugins: waves \(steps: wave; expectations: waves_counted\)/);
    const listed = testIo();
    assert.equal(await main([`${dir}/listed.yaml`, "--quiet", "--json", "-"], listed), 0);
    const report = JSON.parse(listed.stdout.slice(listed.stdout.indexOf("{")));
    assert.deepEqual(
      report.plugins.find((p: { name: string }) => p.name === "waves"),
      { name: "waves", loaded: true, steps: ["wave"], expectations: ["waves_counted"] },
    );
  });
});

Deno.test("a plugin's expectation fails on a broken run (a plugin that counts twice)", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/waves.ts`, WAVES(true));
    await Deno.writeTextFile(`${dir}/listed.yaml`, SCENARIO("plugins: [./waves.ts]\n"));
    const sink = testIo();
    assert.equal(await main([`${dir}/listed.yaml`, "--quiet"], sink), 1);
    assert.match(sink.stdout, /FAIL waves_counted: alice\/phone counted 6 wave\(s\)/);
  });
});

Deno.test("a bad plugin module or a misspelt plugin step is one clear error, exit 2", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/waves.ts`, WAVES(false));
    await Deno.writeTextFile(`${dir}/throws.ts`, `throw new Error("broken on load");`);
    await Deno.writeTextFile(`${dir}/shape.ts`, `export default 42;`);
    await Deno.writeTextFile(`${dir}/taken.ts`, `export default () => ({ name: "chat" });`);
    await Deno.writeTextFile(`${dir}/s.yaml`, SCENARIO(""));
    const cases: [string, RegExp][] = [
      [`${dir}/missing.ts`, /plugin .*missing\.ts: cannot be read/],
      [`${dir}/throws.ts`, /failed to load: .*broken on load/],
      [`${dir}/shape.ts`, /neither a plugin factory nor a module/],
      [`${dir}/taken.ts`, /a plugin named "chat" is loaded already/],
    ];
    for (const [file, message] of cases) {
      const sink = testIo();
      assert.equal(await main([`${dir}/s.yaml`, "--plugin", file, "--quiet"], sink), 2, file);
      assert.match(sink.stderr, message);
      assert.doesNotMatch(sink.stderr, /\n\s+at /, "no stack trace");
    }
    await Deno.writeTextFile(
      `${dir}/typo.yaml`,
      SCENARIO("").replace("wave: { device: alice/phone }", "wav: { device: alice/phone }"),
    );
    const sink = testIo();
    assert.equal(await main([`${dir}/typo.yaml`, "--plugin", `${dir}/waves.ts`], sink), 2);
    assert.match(sink.stderr, /steps\[2\]\.wav: unknown field.*did you mean "wave"/s);
  });
});

import assert from "node:assert/strict";
import { testIo } from "./_test_io.ts";
import { main } from "./cli.ts";

const io = testIo;

async function withFile(text: string, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "meowsync-cli-" });
  try {
    const path = `${dir}/scenario.yaml`;
    await Deno.writeTextFile(path, text);
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const GOOD = `name: tiny
duration: 1m
users:
  - { name: alice, devices: [phone] }
  - { name: bob, devices: [phone] }
steps:
  - { at: 0s, invite: { from: alice/phone, to: bob/phone } }
  - { at: 5s, send: { from: alice/phone, to: bob, text: "hello there" } }
expect: [no_loss, { count: { messages: 1 } }]
`;

Deno.test("main() exits 0 and prints the summary when every expectation holds", async () => {
  await withFile(GOOD, async (path) => {
    const sink = io();
    assert.equal(await main([path, "--quiet"], sink), 0);
    assert.match(sink.stdout, /^PASS tiny \(seed 1, server fake\)/);
  });
});

Deno.test("main() exits 1 and prints the replay command when an expectation fails", async () => {
  await withFile(GOOD.replace("messages: 1", "messages: 2"), async (path) => {
    const sink = io();
    assert.equal(await main([path, "--seed", "4"], sink), 1);
    assert.match(sink.stdout, new RegExp(`replay: deno task sim ${path} --seed 4`));
  });
});

Deno.test("main() writes the JSON report to stdout with --json -", async () => {
  await withFile(GOOD, async (path) => {
    const sink = io();
    assert.equal(await main([path, "--json", "-"], sink), 0);
    const report = JSON.parse(sink.stdout);
    assert.equal(report.scenario, "tiny");
    assert.equal(report.ok, true);
    assert.match(report.digest, /^[0-9a-f]{64}$/);
    assert.equal(typeof report.stats.latencyMs.p99, "number");
  });
});

for (
  const [what, text, pattern] of [
    [
      "a misspelt field",
      GOOD.replace("devices: [phone] }\n  - { name: bob", "devcies: [phone] }\n  - { name: bob"),
      /devcies.*did you mean "devices"/,
    ],
    [
      "a bad duration",
      GOOD.replace("duration: 1m", "duration: 1 minute"),
      /duration: "1 minute" is not a duration/,
    ],
    [
      "an unknown device",
      GOOD.replace("from: alice/phone, to: bob, text", "from: alice/tablet, to: bob, text"),
      /alice\/tablet/,
    ],
  ] as const
) {
  Deno.test(`main() exits 2 and names the problem for ${what}`, async () => {
    await withFile(text, async (path) => {
      const sink = io();
      assert.equal(await main([path], sink), 2);
      assert.match(sink.stderr, pattern);
      assert.equal(sink.stdout, "");
    });
  });
}

Deno.test("main() exits 2 for bad options and a missing file", async () => {
  for (
    const args of [
      ["--storage", "disk", "x.yaml"],
      ["--seed", "abc", "x.yaml"],
      [],
      ["nope.yaml"],
      ["--frobnicate", "x.yaml"],
    ]
  ) {
    const sink = io();
    assert.equal(await main(args, sink), 2, args.join(" "));
    assert.ok(sink.stderr.length > 0);
  }
});

import assert from "node:assert/strict";
import { testIo } from "./_test_io.ts";
import { HELP, main, SIM_EXIT } from "./cli.ts";

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

/** A loopback port nothing listens on (bound, read, closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Asserts `sink.stderr` is exactly one `sim: ` line matching `pattern`, with no stack trace. */
function assertOneLine(sink: { stderr: string }, pattern: RegExp): void {
  const lines = sink.stderr.split("\n");
  assert.equal(lines.at(-1), "", `stderr ends with a newline: ${JSON.stringify(sink.stderr)}`);
  assert.equal(lines.length, 2, `one line on stderr: ${JSON.stringify(sink.stderr)}`);
  assert.match(lines[0], /^sim: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(sink.stderr, /^\s+at /m);
}

Deno.test("main() exits 3 in one line when the --server http:// relay does not answer", async () => {
  await withFile(GOOD, async (path) => {
    const url = `http://127.0.0.1:${closedPort()}`;
    const sink = io();
    assert.equal(await main([path, "--quiet", "--server", url], sink), SIM_EXIT.server);
    assertOneLine(sink, new RegExp(`^sim: cannot reach the relay at ${url}: .+`));
    assert.equal(sink.stdout, "");
  });
});

Deno.test("main() exits 3 in one line naming the install command when redis-server is missing", async () => {
  await withFile(GOOD, async (path) => {
    let started = 0;
    const sink = io({
      startRedis: () => {
        started++;
        return Promise.reject(new Deno.errors.NotFound("/usr/bin/redis-server is not installed"));
      },
    });
    assert.equal(await main([path, "--quiet", "--server", "redis"], sink), SIM_EXIT.server);
    assert.equal(started, 1);
    assertOneLine(
      sink,
      /redis-server is not installed.*apt-get install -y redis-server.*--server redis:\/\/host:port/,
    );
    assert.equal(sink.stdout, "");
  });
});

Deno.test("main() exits 3 in one line, without hanging, when the redis:// server does not answer", async () => {
  await withFile(GOOD, async (path) => {
    const url = `redis://127.0.0.1:${closedPort()}`;
    const sink = io({ abortAfter: (ms) => AbortSignal.timeout(ms) });
    assert.equal(await main([path, "--quiet", "--server", url], sink), SIM_EXIT.server);
    assertOneLine(sink, new RegExp(`^sim: cannot reach the Redis at ${url}: .+`));
    assert.equal(sink.stdout, "");
  });
});

Deno.test("main() exits 2 in one line before the run when an output folder does not exist", async () => {
  await withFile(GOOD, async (path) => {
    for (const option of ["--json", "--trace", "--timeline"]) {
      const out = "/no/such/dir/r.json";
      const sink = io();
      assert.equal(await main([path, "--quiet", option, out], sink), SIM_EXIT.usage, option);
      assertOneLine(
        sink,
        new RegExp(`^sim: ${option} ${out}: the folder /no/such/dir does not exist$`),
      );
      assert.equal(sink.stdout, "", "no run");
    }
  });
});

Deno.test("main() exits 2 in one line when an output path is a folder", async () => {
  await withFile(GOOD, async (path) => {
    const folder = path.replace(/\/[^/]+$/, "");
    const sink = io();
    assert.equal(await main([path, "--quiet", "--json", folder], sink), SIM_EXIT.usage);
    assertOneLine(sink, /--json .*: is a folder/);
  });
});

Deno.test("main() exits 4 in one line when an output file cannot be written after the run", async () => {
  await withFile(GOOD, async (path) => {
    const dir = await Deno.makeTempDir({ prefix: "meowsync-cli-out-" });
    const out = `${dir}/r.json`;
    let removed = false;
    // The folder passes the check before the run, then goes away while the world is built.
    const sink = io({
      extraPlugins: () => {
        if (!removed) Deno.removeSync(dir, { recursive: true });
        removed = true;
        return [];
      },
    });
    assert.equal(await main([path, "--quiet", "--json", out], sink), SIM_EXIT.output);
    assert.ok(removed);
    assertOneLine(sink, new RegExp(`^sim: --json ${out}: cannot write it: .+`));
    assert.match(sink.stdout, /^PASS tiny/, "the summary still says how the run went");
  });
});

Deno.test("main() exits 2 with one line of its own for an unknown option", async () => {
  const sink = io();
  assert.equal(await main(["--foo", "x.yaml"], sink), SIM_EXIT.usage);
  assert.equal(sink.stderr, "sim: unknown option --foo (see --help)\n");
  assert.equal(sink.stdout, "");
});

for (
  const [args, message] of [
    [["x.yaml", "--seed"], "sim: --seed needs a value (see --help)\n"],
    [["x.yaml", "--plugin"], "sim: --plugin needs a value (see --help)\n"],
    [["x.yaml", "--quiet=yes"], "sim: --quiet takes no value (see --help)\n"],
    [["x.yaml", "--help=1"], "sim: --help takes no value (see --help)\n"],
    [["x.yaml", "-x"], "sim: unknown option -x (see --help)\n"],
  ] as const
) {
  Deno.test(`main() exits 2 with one line for ${args.slice(1).join(" ")}`, async () => {
    const sink = io();
    assert.equal(await main([...args], sink), SIM_EXIT.usage);
    assert.equal(sink.stderr, message);
  });
}

Deno.test("main() says the option when a value is missing before another option", async () => {
  const sink = io();
  assert.equal(await main(["x.yaml", "--seed", "--quiet"], sink), SIM_EXIT.usage);
  assertOneLine(sink, /^sim: --seed needs a value/);
});

Deno.test("HELP documents every exit status of SIM_EXIT", () => {
  const section = HELP.slice(HELP.indexOf("Exit status:"));
  for (const code of Object.values(SIM_EXIT)) {
    assert.match(section, new RegExp(`^  ${code}  `, "m"));
  }
});

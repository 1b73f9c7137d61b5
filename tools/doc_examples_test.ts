import assert from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;
const deno = Deno.execPath();

/** Runs `deno test --doc` on one file and resolves with its exit code and output. */
async function docTest(path: string): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(deno, {
    args: ["test", "--doc", "--no-check", "--no-config", "--allow-read", path],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

Deno.test("doc examples can fail: a broken example of crypto/base64.ts fails deno test --doc", async () => {
  // Its examples import the folder's door; the copy imports the file itself.
  const source = (await Deno.readTextFile(`${root}crypto/base64.ts`))
    .replaceAll('from "./mod.ts"', 'from "./base64.ts"');
  const broken = source.replace(
    'assert(toBase64Url(new Uint8Array([0xfb, 0xff])) === "-_8");',
    'assert(toBase64Url(new Uint8Array([0xfb, 0xff])) === "+/8");',
  );
  assert.notEqual(broken, source, "the example to break is no longer in base64.ts");
  // A copy outside the tree (base64.ts and the errors it imports), so no other run sees it.
  const dir = await Deno.makeTempDir({ prefix: "meowsync-doc-" });
  try {
    await Deno.mkdir(`${dir}/crypto`);
    await Deno.copyFile(`${root}crypto/errors.ts`, `${dir}/crypto/errors.ts`);
    await Deno.writeTextFile(`${dir}/crypto/base64.ts`, source);
    await Deno.writeTextFile(`${dir}/crypto/broken.ts`, broken);
    const intact = await docTest(`${dir}/crypto/base64.ts`);
    assert.equal(intact.code, 0, intact.output);
    const failing = await docTest(`${dir}/crypto/broken.ts`);
    assert.notEqual(failing.code, 0, failing.output);
    assert.match(failing.output, /AssertionError/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("doc examples assert with node:assert/strict: no console.assert in any module", async () => {
  const offenders: string[] = [];
  async function walk(dir: string): Promise<void> {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".ts") || entry.name.endsWith(".md")) {
        const text = await Deno.readTextFile(path);
        if (text.includes("console" + ".assert(")) offenders.push(path.slice(root.length));
      }
    }
  }
  await walk(root.replace(/\/$/, ""));
  assert.deepEqual(offenders, []);
});

Deno.test("docs/PLUGINS.md's example runs: its plugin passes a two-user, two-device scenario", async () => {
  // With the project's config: the guide imports meowsync by its `meowsync/` prefix.
  const { code, stdout, stderr } = await new Deno.Command(deno, {
    args: ["test", "--doc", "--allow-read", "--allow-env", "docs/PLUGINS.md"],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.equal(code, 0, output);
  assert.match(output, /PLUGINS\.md.*\bok\b/);
});

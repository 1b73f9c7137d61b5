import assert from "node:assert/strict";
import { checkImports, findImports, formatViolation, type Violation } from "./check_imports.ts";

/** A clean little tree in the shape of the real one; each test plants one more file or import. */
const CLEAN: Record<string, string> = {
  "proto/mod.ts": 'export * from "./gen/meow_pb.ts";\n',
  "proto/gen/meow_pb.ts": 'import { create } from "@bufbuild/protobuf";\nexport { create };\n',
  "crypto/mod.ts": 'export * from "./random.ts";\n',
  "crypto/random.ts": "export const random = 4;\n",
  "kernel/mod.ts": 'export * from "./kernel.ts";\n',
  "kernel/kernel.ts": [
    'import { random } from "../crypto/mod.ts";',
    'import type { create } from "../proto/mod.ts";',
    'import { helper } from "./_helper.ts";',
    'import { strict } from "node:assert";',
    "/**",
    " * @example",
    " * ```ts",
    ' * import { serve } from "../server/mod.ts";',
    " * ```",
    " */",
    "export const kernel = [random, helper, strict] as unknown as typeof create;",
  ].join("\n"),
  "kernel/_helper.ts": "export const helper = 1;\n",
  "kernel/kernel_test.ts": 'import { helper } from "./_helper.ts";\nexport { helper };\n',
  "plugins/chat/mod.ts": 'import { kernel } from "../../kernel/mod.ts";\nexport { kernel };\n',
  "server/mod.ts": 'export * from "./core.ts";\n',
  "server/core.ts": 'import "../proto/mod.ts";\nexport const serve = 1;\n',
  "server/_testing.ts": "export const testing = 1;\n",
  "cli/server.ts": [
    'import { serve } from "../server/mod.ts";',
    'const { kernel } = await import("../kernel/mod.ts");',
    "export { kernel, serve };",
  ].join("\n"),
  "tests/e2e/_harness.ts": 'import { serve } from "../../server/core.ts";\nexport { serve };\n',
  "tests/e2e/run_test.ts": 'import { serve } from "./_harness.ts";\nexport { serve };\n',
};

/** The violations of the clean tree with `planted` files added or replaced. */
async function check(
  planted: Record<string, string> = {},
): Promise<Violation[]> {
  const root = await Deno.makeTempDir({ prefix: "meowsync-imports-" });
  try {
    for (const [path, text] of Object.entries({ ...CLEAN, ...planted })) {
      const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
      if (dir !== "") await Deno.mkdir(`${root}/${dir}`, { recursive: true });
      await Deno.writeTextFile(`${root}/${path}`, text);
    }
    return await checkImports(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const lines = (violations: Violation[]) => violations.map(formatViolation);

Deno.test("checkImports() passes a clean tree", async () => {
  assert.deepEqual(lines(await check()), []);
});

Deno.test("checkImports() fails a kernel → server import under rule 1", async () => {
  const violations = await check({
    "kernel/relay.ts":
      '// the kernel may not know the relay\nimport { serve } from "../server/mod.ts";\n',
  });
  assert.deepEqual(lines(violations), [
    "kernel/relay.ts:2: layer: kernel may not import server → server/mod.ts",
  ]);
});

Deno.test("checkImports() counts type-only imports and re-exports", async () => {
  const violations = await check({
    "server/card.ts": 'import type { Kernel } from "../kernel/mod.ts";\nexport type { Kernel };\n',
    "proto/extra.ts": 'export * from "../kernel/mod.ts";\n',
  });
  assert.deepEqual(lines(violations), [
    "proto/extra.ts:1: layer: proto may not import kernel → kernel/mod.ts",
    "server/card.ts:1: layer: server may not import kernel → kernel/mod.ts",
  ]);
});

Deno.test("checkImports() counts dynamic imports", async () => {
  const violations = await check({
    "server/late.ts": 'export const late = () =>\n  import("../plugins/chat/mod.ts");\n',
  });
  assert.deepEqual(lines(violations), [
    "server/late.ts:2: layer: server may not import plugins → plugins/chat/mod.ts",
  ]);
});

Deno.test("checkImports() fails a deep import across folders under rule 2", async () => {
  const violations = await check({
    "plugins/chat/mod.ts": 'import { kernel } from "../../kernel/kernel.ts";\nexport { kernel };\n',
    "server/codec.ts": 'import { create } from "../proto/gen/meow_pb.ts";\nexport { create };\n',
    "kernel/rng.ts": 'export * from "../crypto/random.ts";\n',
  });
  assert.deepEqual(lines(violations), [
    "kernel/rng.ts:1: entry: import crypto/mod.ts, not a file inside it → crypto/random.ts",
    "plugins/chat/mod.ts:1: entry: import kernel/mod.ts, not a file inside it → kernel/kernel.ts",
    "server/codec.ts:1: entry: import proto/mod.ts, not a file inside it → proto/gen/meow_pb.ts",
  ]);
});

Deno.test("checkImports() holds tests to rule 3 alone", async () => {
  const violations = await check({
    "plugins/chat/chat_test.ts": [
      'import { kernel } from "../../kernel/kernel.ts";',
      'import { serve } from "../../server/core.ts";',
      'import { testing } from "../../server/_testing.ts";',
    ].join("\n"),
  });
  assert.deepEqual(lines(violations), [
    "plugins/chat/chat_test.ts:3: private: _testing.ts is private to server/ → server/_testing.ts",
  ]);
});

Deno.test("checkImports() fails a private file imported from another folder under rule 3", async () => {
  const violations = await check({
    "kernel/world.ts": 'import { helper } from "./_helper.ts";\nexport { helper };\n',
    "crypto/use.ts": 'import { helper } from "../kernel/_helper.ts";\nexport { helper };\n',
    "tests/server_test.ts": 'import { testing } from "../server/_testing.ts";\n',
    "bench/kernel_bench.ts": 'import { helper } from "../kernel/_helper.ts";\n',
  });
  assert.deepEqual(lines(violations), [
    "bench/kernel_bench.ts:1: private: _helper.ts is private to kernel/ → kernel/_helper.ts",
    "crypto/use.ts:1: private: _helper.ts is private to kernel/ → kernel/_helper.ts",
    "crypto/use.ts:1: layer: crypto may not import kernel → kernel/_helper.ts",
    "tests/server_test.ts:1: private: _testing.ts is private to server/ → server/_testing.ts",
  ]);
});

Deno.test("checkImports() lets cli import any production layer but not tests, bench or tools", async () => {
  const violations = await check({
    "cli/sim.ts": [
      'import { kernel } from "../kernel/mod.ts";',
      'import { serve } from "../tests/e2e/run_test.ts";',
    ].join("\n"),
  });
  assert.deepEqual(lines(violations), [
    "cli/sim.ts:2: layer: cli may not import tests → tests/e2e/run_test.ts",
    "cli/sim.ts:2: entry: import tests/mod.ts, not a file inside it (tests/ has no mod.ts) → tests/e2e/run_test.ts",
  ]);
});

Deno.test("findImports() reads multi-line, type-only, side-effect and dynamic imports, no comments or strings", () => {
  const source = [
    "import {", //                                    1
    "  type A,",
    "  b,",
    '} from "./a.ts";',
    'import "./side.ts"; // import "./commented.ts"', // 5
    "/* import { c } from './c.ts'; */",
    "const text = 'import { d } from \"./d.ts\";';",
    'const code = `export * from "./e.ts"`;',
    "const pattern = /[\"']/;",
    'export { f } from "./f.ts";', //                10
    "const g = await import('./g.ts');",
    "export const from = 'not an import';",
  ].join("\n");
  assert.deepEqual(findImports(source), [
    { line: 1, specifier: "./a.ts" },
    { line: 5, specifier: "./side.ts" },
    { line: 10, specifier: "./f.ts" },
    { line: 11, specifier: "./g.ts" },
  ]);
});

/**
 * The architecture rules of meowsync's imports (DESIGN.md, STYLE.md "Layout"):
 *
 * 1. `layer`: a production file imports only the layers its own layer may import
 *    ({@linkcode ALLOWED_IMPORTS}).
 * 2. `entry`: across folders, a production file imports only the other folder's `mod.ts`. A folder
 *    is a directory with a `mod.ts`; a directory without one belongs to the folder of its nearest
 *    ancestor that has one (so `proto/gen/meow_pb.ts` is reached through `proto/mod.ts`), and a
 *    top-level directory with none is a folder of its own that has no entry yet.
 * 3. `private`: a `_name.ts` file is imported only from its own folder, by tests too.
 *
 * Test files ({@linkcode isProduction} false) are held to rule 3 alone. An import that breaks rule 3
 * is not reported under rule 2 as well. Specifiers that are not relative paths (`npm:`, `node:`,
 * the import map's bare names) are not project imports; comments and string contents (JSDoc
 * examples, planted sources in tests) are skipped.
 *
 *   deno run --allow-read tools/check_imports.ts [--report] [root]
 *
 * prints the violations (the first {@linkcode SHOWN_MAX}, or with `--report` every one and the
 * counts per rule) and exits 1 when there are any, 0 when there are none.
 *
 * @module
 */
import { posix } from "node:path";

/** The top-level layers and the directory each lives in (the longest matching directory wins). */
export const LAYERS: readonly { layer: string; dir: string }[] = [
  { layer: "proto", dir: "proto" },
  { layer: "crypto", dir: "crypto" },
  { layer: "ports", dir: "ports" },
  { layer: "envelope", dir: "envelope" },
  { layer: "kernel", dir: "kernel" },
  { layer: "plugins", dir: "plugins" },
  { layer: "server", dir: "server" },
  { layer: "sim", dir: "sim" },
  { layer: "agent", dir: "agent" },
  { layer: "cli", dir: "cli" },
  { layer: "deploy", dir: "deploy" },
];

/** Top-level directories that hold no production code: tests, benchmarks, tools. */
export const NON_PRODUCTION_DIRS: readonly string[] = [
  "tests",
  "bench",
  "tools",
];

/** `ANY_PRODUCTION` in {@linkcode ALLOWED_IMPORTS}: every layer but {@linkcode NON_PRODUCTION_DIRS}. */
export const ANY_PRODUCTION = "any production layer";

/** The layers each layer may import besides itself. */
export const ALLOWED_IMPORTS: Readonly<
  Record<string, readonly string[] | typeof ANY_PRODUCTION>
> = {
  proto: ["crypto"],
  crypto: [],
  ports: ["proto", "crypto"],
  envelope: ["proto", "crypto"],
  kernel: ["proto", "crypto", "ports", "envelope"],
  plugins: ["proto", "crypto", "ports", "kernel", "plugins"],
  server: ["proto", "crypto", "ports", "envelope"],
  sim: ["proto", "crypto", "ports", "envelope", "kernel", "plugins", "server"],
  agent: ["proto", "crypto", "ports", "envelope", "kernel", "plugins", "server"],
  cli: ANY_PRODUCTION,
  deploy: ANY_PRODUCTION,
};

/** The entry file of a folder. */
export const ENTRY_FILE = "mod.ts";
/** A test file's name: a test, or a helper only tests use (`_test_<name>.ts`). */
export const TEST_FILE: RegExp = /(_test\.ts|\/_test_[^/]*\.ts)$/;
/** A file private to its folder. */
export const PRIVATE_FILE: RegExp = /^_.*\.ts$/;
/** Directories never read (besides those whose names start with a dot). */
export const SKIPPED_DIRS: readonly string[] = ["node_modules", "out"];
/** How many violations the check prints without `--report`. */
export const SHOWN_MAX = 20;

/** The rules, by the name a violation line carries. */
export type RuleName = "layer" | "entry" | "private";

/** One import that breaks one rule. */
export interface Violation {
  /** The importing file, relative to the root. */
  file: string;
  /** The line the import starts on, from 1. */
  line: number;
  rule: RuleName;
  /** What is wrong, for a person. */
  what: string;
  /** The imported file, relative to the root. */
  target: string;
}

/** One import found in a source text. */
export interface ImportSite {
  /** The line the statement starts on, from 1. */
  line: number;
  /** The module specifier as written. */
  specifier: string;
}

/** `import … from "x"`, `export … from "x"` (type-only included), side-effect `import "x"`. */
const STATIC_IMPORT = /(?<![\w$.])(?:import|export)(?:\s+[\w\s{},*$]*?\bfrom)?\s*(["'])/g;
/** `import("x")` with a literal specifier. */
const DYNAMIC_IMPORT = /(?<![\w$.])import\s*\(\s*(["'])/g;
/** After these characters (or at the start) a `/` begins a regular expression, not a division. */
const BEFORE_REGEX = /[(,=:[!&|?{};+\-*%<>~^]/;

/**
 * The source with comments, string contents and template literals blanked to spaces or `_`
 * (newlines and offsets kept), so the import patterns only see code. Quotes stay, so a string's
 * text is read back from the original at the same offsets.
 */
function blank(text: string): string {
  const out = text.split("");
  const fill = (from: number, to: number, c: string) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = c;
  };
  let i = 0;
  let last = ""; // the last non-space code character, to tell a regex from a division
  while (i < text.length) {
    const c = text[i];
    const next = text[i + 1];
    if (c === "/" && next === "/") {
      const end = text.indexOf("\n", i);
      const stop = end === -1 ? text.length : end;
      fill(i, stop, " ");
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end === -1 ? text.length : end + 2;
      fill(i, stop, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (
        j < text.length && text[j] !== c && (c === "`" || text[j] !== "\n")
      ) {
        j += text[j] === "\\" ? 2 : 1;
      }
      fill(c === "`" ? i : i + 1, c === "`" ? j + 1 : j, "_");
      i = j + 1;
      last = c;
    } else if (c === "/" && (last === "" || BEFORE_REGEX.test(last))) {
      let j = i + 1;
      let inClass = false;
      while (
        j < text.length && text[j] !== "\n" && (inClass || text[j] !== "/")
      ) {
        if (text[j] === "[") inClass = true;
        else if (text[j] === "]") inClass = false;
        j += text[j] === "\\" ? 2 : 1;
      }
      fill(i, j + 1, "_");
      i = j + 1;
      last = "/";
    } else {
      if (!/\s/.test(c)) last = c;
      i++;
    }
  }
  return out.join("");
}

/**
 * The imports of a TypeScript source: static, type-only, re-exports, side-effect and dynamic
 * imports with a literal specifier; none in comments or strings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findImports } from "./check_imports.ts";
 * const source = [
 *   'import type { A } from "./a.ts";',
 *   "/** @example import { b } from \"./b.ts\"; *" + "/",
 *   'export * from "./c.ts";',
 *   'const d = await import("./d.ts");',
 * ].join("\n");
 * assert.deepEqual(findImports(source), [
 *   { line: 1, specifier: "./a.ts" },
 *   { line: 3, specifier: "./c.ts" },
 *   { line: 4, specifier: "./d.ts" },
 * ]);
 * ```
 */
export function findImports(text: string): ImportSite[] {
  const code = blank(text);
  const sites: { offset: number; specifier: string }[] = [];
  for (const pattern of [STATIC_IMPORT, DYNAMIC_IMPORT]) {
    for (const match of code.matchAll(pattern)) {
      const quote = match.index! + match[0].length - 1;
      const end = text.indexOf(match[1], quote + 1);
      if (end === -1) continue;
      sites.push({
        offset: match.index!,
        specifier: text.slice(quote + 1, end),
      });
    }
  }
  sites.sort((a, b) => a.offset - b.offset);
  return sites.map(({ offset, specifier }) => ({
    line: text.slice(0, offset).split("\n").length,
    specifier,
  }));
}

/** Whether `file` (relative to the root) is production code: not a test, not tests/bench/tools. */
export function isProduction(file: string): boolean {
  return !TEST_FILE.test(file) &&
    !NON_PRODUCTION_DIRS.includes(file.split("/")[0]);
}

/** The layer of `file`: its longest matching layer directory, else its top-level directory. */
function layerOf(file: string): string {
  let best: { layer: string; dir: string } | undefined;
  for (const entry of LAYERS) {
    if (
      file.startsWith(`${entry.dir}/`) &&
      (!best || entry.dir.length > best.dir.length)
    ) {
      best = entry;
    }
  }
  if (best) return best.layer;
  return file.includes("/") ? file.split("/")[0] : "(root)";
}

/**
 * The violations among `sources` (relative path → text), which stand for a whole tree: folders
 * are the directories holding a `mod.ts` among them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkSources } from "./check_imports.ts";
 * const violations = checkSources(new Map([
 *   ["kernel/mod.ts", 'export * from "../server/mod.ts";'],
 *   ["server/mod.ts", ""],
 * ]));
 * assert.deepEqual(violations.map((v) => v.rule), ["layer"]);
 * ```
 */
export function checkSources(
  sources: ReadonlyMap<string, string>,
): Violation[] {
  const folders = new Set<string>();
  for (const file of sources.keys()) {
    if (posix.basename(file) === ENTRY_FILE) folders.add(posix.dirname(file));
  }
  const folderOf = (file: string): string => {
    for (let dir = posix.dirname(file); dir !== "."; dir = posix.dirname(dir)) {
      if (folders.has(dir)) return dir;
    }
    return file.includes("/") ? file.split("/")[0] : ".";
  };
  const violations: Violation[] = [];
  for (const [file, text] of sources) {
    const production = isProduction(file);
    const layer = layerOf(file);
    const folder = folderOf(file);
    for (const { line, specifier } of findImports(text)) {
      if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
      const target = posix.normalize(
        posix.join(posix.dirname(file), specifier),
      );
      if (target.startsWith("../")) continue; // outside the tree: not a project import
      const report = (rule: RuleName, what: string) =>
        violations.push({ file, line, rule, what, target });
      const targetFolder = folderOf(target);
      const sameFolder = targetFolder === folder;
      const isPrivate = PRIVATE_FILE.test(posix.basename(target));
      if (isPrivate && !sameFolder) {
        report(
          "private",
          `${posix.basename(target)} is private to ${targetFolder}/`,
        );
      }
      if (!production) continue;
      const targetLayer = layerOf(target);
      const allowed = ALLOWED_IMPORTS[layer];
      if (allowed !== undefined && targetLayer !== layer) {
        const ok = allowed === ANY_PRODUCTION
          ? !NON_PRODUCTION_DIRS.includes(targetLayer)
          : allowed.includes(targetLayer);
        if (!ok) report("layer", `${layer} may not import ${targetLayer}`);
      }
      const entry = targetFolder === "." ? ENTRY_FILE : `${targetFolder}/${ENTRY_FILE}`;
      if (!sameFolder && !isPrivate && target !== entry) {
        const missing = folders.has(targetFolder) ? "" : ` (${targetFolder}/ has no ${ENTRY_FILE})`;
        report("entry", `import ${entry}, not a file inside it${missing}`);
      }
    }
  }
  return violations;
}

/** Every `.ts` file under `root`, relative to it, mapped to its text (sorted by path). */
async function readTree(root: string): Promise<Map<string, string>> {
  const files: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(posix.join(root, dir))) {
      const path = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory) {
        if (!entry.name.startsWith(".") && !SKIPPED_DIRS.includes(entry.name)) {
          await walk(path);
        }
      } else if (entry.isFile && entry.name.endsWith(".ts")) {
        files.push(path);
      }
    }
  };
  await walk("");
  files.sort();
  const sources = new Map<string, string>();
  for (const file of files) {
    sources.set(file, await Deno.readTextFile(posix.join(root, file)));
  }
  return sources;
}

/**
 * The violations of the tree under `root` (see the module doc), in file order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkImports } from "./check_imports.ts";
 * const root = await Deno.makeTempDir();
 * await Deno.mkdir(`${root}/proto`);
 * await Deno.writeTextFile(`${root}/proto/mod.ts`, "export const x = 1;\n");
 * assert.deepEqual(await checkImports(root), []);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function checkImports(root: string): Promise<Violation[]> {
  return checkSources(await readTree(root));
}

/** One line for `violation`: `file:line: rule: what → target`. */
export function formatViolation(violation: Violation): string {
  const { file, line, rule, what, target } = violation;
  return `${file}:${line}: ${rule}: ${what} → ${target}`;
}

async function main(args: string[]): Promise<number> {
  const report = args.includes("--report");
  const rest = args.filter((a) => a !== "--report");
  if (rest.length > 1 || rest.some((a) => a.startsWith("-"))) {
    console.error(
      "Usage: deno run --allow-read tools/check_imports.ts [--report] [root]",
    );
    return 2;
  }
  const root = rest[0] ?? new URL("../", import.meta.url).pathname;
  const violations = await checkImports(root);
  if (violations.length === 0) {
    console.log("import rules hold (layers, mod.ts entries, private files)");
    return 0;
  }
  const shown = report ? violations : violations.slice(0, SHOWN_MAX);
  console.error(shown.map(formatViolation).join("\n"));
  if (shown.length < violations.length) {
    console.error(
      `… and ${violations.length - shown.length} more (--report shows every one)`,
    );
  }
  const counts = (["layer", "entry", "private"] as const)
    .map((rule) => `${rule} ${violations.filter((v) => v.rule === rule).length}`)
    .join(", ");
  console.error(`${violations.length} import rule violations: ${counts}`);
  return 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

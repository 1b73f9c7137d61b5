/**
 * Part of `deno task check`: the determinism rule of STYLE.md. Nothing in
 * crypto/, ports/, kernel/, envelope/, plugins/, server/ or sim/ may read the real clock or a global random
 * source, except the production implementations of the ports, which say so
 * with the marker comment `// meowsync:production-port` followed by why.
 * Tests (`*_test.ts`) are exempt.
 *
 * @module
 */
const ROOTS = ["crypto", "ports", "kernel", "envelope", "plugins", "server", "sim"];
const MARKER = "// meowsync:production-port";
const FORBIDDEN = [
  /\bDate\.now\s*\(/,
  /\bnew Date\s*\(\s*\)/,
  /\bMath\.random\s*\(/,
  /\bcrypto\.getRandomValues\s*\(/,
  /\bcrypto\.randomUUID\s*\(/,
  /\bsetTimeout\s*\(/,
  /\bsetInterval\s*\(/,
  /\bperformance\.now\s*\(/,
];

const root = new URL("../", import.meta.url).pathname;
const violations: string[] = [];

async function walk(dir: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) {
      await walk(path);
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
      const text = await Deno.readTextFile(path);
      if (text.includes(MARKER)) continue;
      text.split("\n").forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, "");
        for (const pattern of FORBIDDEN) {
          if (pattern.test(code)) {
            violations.push(`${path.slice(root.length)}:${i + 1}: ${line.trim()}`);
          }
        }
      });
    }
  }
}

for (const dir of ROOTS) {
  try {
    await walk(`${root}${dir}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
if (violations.length > 0) {
  console.error(
    `Determinism rule broken (use the Clock/Random ports, or mark a production port with "${MARKER}"):\n` +
      violations.join("\n"),
  );
  Deno.exit(1);
}
console.log(`determinism rule holds in ${ROOTS.join(", ")}`);

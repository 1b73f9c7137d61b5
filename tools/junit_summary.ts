/**
 * Prints one line `N passed, N failed, N skipped` from a JUnit report written
 * by `deno test --junit-path`, and exits 1 when any test failed or none ran.
 *
 * @module
 */
const path = Deno.args[0] ?? "junit.xml";
const xml = await Deno.readTextFile(path);
let passed = 0;
let failed = 0;
let skipped = 0;
// Each <testcase …/> or <testcase …>…</testcase> is one test (steps included, as Deno reports them).
for (const match of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
  const body = match[2] ?? "";
  if (/<(failure|error)\b/.test(body)) failed++;
  else if (/<skipped\b/.test(body)) skipped++;
  else passed++;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
if (failed > 0 || passed === 0) Deno.exit(1);

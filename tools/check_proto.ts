/**
 * Part of `deno task check`: fails when the committed proto/gen/ differs from
 * a fresh generation of proto/meow.proto.
 *
 * @module
 */
import { generate } from "./gen_proto.ts";

const protoDir = new URL("../proto/", import.meta.url).pathname;
const fresh = await Deno.makeTempDir({ prefix: "meowsync-proto-" });
try {
  await generate(protoDir, fresh);
  const stale: string[] = [];
  for await (const entry of Deno.readDir(fresh)) {
    const want = await Deno.readTextFile(`${fresh}/${entry.name}`);
    const have = await Deno.readTextFile(`${protoDir}gen/${entry.name}`).catch(() => "<missing>");
    if (want !== have) stale.push(`proto/gen/${entry.name}`);
  }
  for await (const entry of Deno.readDir(`${protoDir}gen`)) {
    try {
      await Deno.stat(`${fresh}/${entry.name}`);
    } catch {
      stale.push(`proto/gen/${entry.name} (no longer generated)`);
    }
  }
  if (stale.length > 0) {
    console.error(
      `Stale generated code: ${stale.join(", ")}. Run \`./dev task proto\` and commit.`,
    );
    Deno.exit(1);
  }
  console.log("proto/gen/ is fresh");
} finally {
  await Deno.remove(fresh, { recursive: true });
}

import assert from "node:assert/strict";
import { generate } from "./gen_proto.ts";

Deno.test("generate() is reproducible: two generations are byte-identical and match proto/gen/", async () => {
  const protoDir = new URL("../proto/", import.meta.url).pathname;
  const first = await Deno.makeTempDir({ prefix: "meowsync-gen-" });
  const second = await Deno.makeTempDir({ prefix: "meowsync-gen-" });
  try {
    await generate(protoDir, first);
    await generate(protoDir, second);
    const a = await Deno.readTextFile(`${first}/meow_pb.ts`);
    assert.equal(a, await Deno.readTextFile(`${second}/meow_pb.ts`));
    assert.equal(a, await Deno.readTextFile(`${protoDir}gen/meow_pb.ts`));
  } finally {
    await Deno.remove(first, { recursive: true });
    await Deno.remove(second, { recursive: true });
  }
});

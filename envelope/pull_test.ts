import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { generateLookupKeyPair, SeededRandom } from "../crypto/mod.ts";
import { ServerCardSchema } from "../proto/gen/meow_pb.ts";
import { signPull, verifyPull } from "./pull.ts";

const random = new SeededRandom(11);
const server = create(ServerCardSchema, { uid: "0123456789abcdef0123456789abcdef" });
const lookup = generateLookupKeyPair(random);
const ephemeralPublicKey = random.bytes(32);

Deno.test("verifyPull() accepts a pull for this relay, queue, time and request only", async () => {
  const pull = await signPull({ server, lookup, now: 1_000.7, ephemeralPublicKey });
  assert.equal(pull.sendTimestamp, 1_000);
  const serverUid = server.uid;
  assert.ok(await verifyPull({ serverUid, pull, ephemeralPublicKey }));
  assert.ok(
    !(await verifyPull({ serverUid: "ff" + serverUid.slice(2), pull, ephemeralPublicKey })),
  );
  assert.ok(!(await verifyPull({ serverUid, pull, ephemeralPublicKey: random.bytes(32) })));
  const moved = { ...pull, sendTimestamp: 1_001 };
  assert.ok(!(await verifyPull({ serverUid, pull: moved, ephemeralPublicKey })));
  const other = generateLookupKeyPair(random);
  const renamed = {
    ...pull,
    lookupKey: (await signPull({ server, lookup: other, now: 1, ephemeralPublicKey })).lookupKey,
  };
  assert.ok(!(await verifyPull({ serverUid, pull: renamed, ephemeralPublicKey })));
});

Deno.test("verifyPull() answers false, never throws, for a lookup key that is not base64url", async () => {
  const pull = await signPull({ server, lookup, now: 5, ephemeralPublicKey });
  const bad = { ...pull, lookupKey: "not base64url!" };
  assert.equal(await verifyPull({ serverUid: server.uid, pull: bad, ephemeralPublicKey }), false);
});

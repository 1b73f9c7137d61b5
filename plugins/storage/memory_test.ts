import assert from "node:assert/strict";
import { MESSAGE_BYTES_MAX } from "../../proto/codec.ts";
import { MemoryStore } from "./memory.ts";
import { storeConformance } from "./store_conformance.ts";

storeConformance({
  name: "MemoryStore",
  recordBytesMax: MESSAGE_BYTES_MAX,
  open: () => Promise.resolve(new MemoryStore()),
  reopen: async (store) => {
    await store.close();
    return (store as MemoryStore).reopen();
  },
});

Deno.test("reopen() of a store still open closes the old handle, as a crash would", async () => {
  const store = new MemoryStore();
  await store.commit({ seen: [{ id: "d1", at: 1 }] });
  const again = store.reopen();
  await assert.rejects(store.isSeen("d1"), TypeError);
  assert.equal(await again.isSeen("d1"), true);
  await again.commit({ seen: [{ id: "d2", at: 2 }] });
  assert.equal(await again.reopen().isSeen("d2"), true);
});

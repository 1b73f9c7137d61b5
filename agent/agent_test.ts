import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { DbMessageSchema } from "../proto/gen/meow_pb.ts";
import { messageView } from "./views.ts";

Deno.test("messageView() shows a message a relay refused for good as failed, with the reason", () => {
  const m = create(DbMessageSchema, {
    outbound: true,
    pendingForward: true,
    failedReason: "too large: 70000 bytes",
    failedAt: 9,
    message: { data: "big", status: { uuid: "u", sent: 5 } },
  });
  const view = messageView(m);
  assert.equal(view.state, "failed");
  assert.equal(view.reason, "too large: 70000 bytes");
  m.failedAt = 0;
  assert.equal(messageView(m).state, "forwarding");
  assert.equal(messageView(m).reason, undefined);
});

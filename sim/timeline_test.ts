import assert from "node:assert/strict";
import type { Report } from "./run.ts";
import { parseScenario } from "./scenario.ts";
import { timelineHtml } from "./timeline.ts";

const scenario = parseScenario({
  name: "lanes",
  users: [{ name: "alice", devices: ["phone", "laptop"] }, { name: "bob", devices: ["phone"] }],
  steps: [
    { at: "1s", offline: "alice/laptop" },
    { at: "3s", online: "alice/laptop" },
    { at: "4s", partition: { devices: ["bob/phone"], for: "1s" } },
  ],
}, "lanes.yaml");

const LOST = "11111111-2222-4333-8444-555555555555";
const trace = [
  { t: 100, kind: "msg.out", device: "alice/phone", type: "chat", uuid: LOST },
  { t: 100, kind: "msg.out", device: "alice/phone", type: "sync:msg", uuid: "s1" },
  { t: 150, kind: "net.deliver", device: "alice/phone", relay: "relay", bytes: 900 },
  { t: 700, kind: "net.drop", device: "bob/phone", relay: "relay" },
  { t: 2000, kind: "net.deliver", device: "bob/phone", relay: "relay", bytes: 300 },
  { t: 2050, kind: "msg.in", device: "bob/phone", type: "chat", uuid: LOST },
  { t: 6000, kind: "end" },
];

Deno.test("timelineHtml() draws one lane per device and relay, and every message both ways", () => {
  const html = timelineHtml(trace, { scenario });
  for (const lane of ["alice/phone", "alice/laptop", "bob/phone", "relay"]) {
    assert.equal(html.split(`data-lane="${lane}"`).length - 1, 1, lane);
  }
  const lost = [
    ...html.matchAll(new RegExp(`<line class="flow chat"[^>]*data-uuid="${LOST}"`, "g")),
  ];
  assert.equal(lost.length, 2, "sent and pulled");
  assert.match(html, /<line class="flow sync"[^>]*data-uuid="s1"/);
  assert.match(html, /class="flow drop"/);
  assert.match(html, /class="span offline" data-t1="1000" data-t2="3000"/);
  assert.match(html, /class="span partition" data-t1="4000" data-t2="5000"/);
  assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=/, "nothing is fetched");
});

Deno.test("timelineHtml() highlights the message a failing expectation names", () => {
  const report = {
    scenario: "lanes",
    seed: 3,
    server: "fake",
    ok: false,
    expectations: [{
      name: "no_loss",
      ok: false,
      detail: `alice/laptop lacks message ${LOST} ("hi") sent by alice/phone in conversation ` +
        "99999999-2222-4333-8444-555555555555",
    }],
  } as unknown as Report;
  const html = timelineHtml(trace, { scenario, report });
  assert.equal([...html.matchAll(/class="flow chat fail"/g)].length, 2);
  assert.match(html, new RegExp(`failing message <code>${LOST}</code>`));
  assert.match(html, /<title>FAIL lanes — seed 3, server fake<\/title>/);
});

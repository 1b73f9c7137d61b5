/**
 * The device-lifecycle scenarios hold every expectation (tests/scenarios_test.ts runs them), and
 * each fails when the mechanism it rests on is switched off: history on pairing, catch-up after
 * an absence past the retention, and sending again what was not acknowledged or confirmed.
 */
import assert from "node:assert/strict";
import { loadScenario, runScenario } from "../sim/mod.ts";
import type { Weakening } from "../plugins/mod.ts";

async function failing(file: string, weakening: Weakening): Promise<Map<string, string>> {
  const report = await runScenario(await loadScenario(`scenarios/${file}`), { weakening });
  return new Map(report.expectations.filter((e) => !e.ok).map((e) => [e.name, e.detail]));
}

Deno.test("history_late_laptop: without history on pairing, the laptop lacks its window", async () => {
  assert.deepEqual([...(await failing("history_late_laptop.yaml", {})).keys()], []);
  const failed = await failing("history_late_laptop.yaml", { noHistory: true });
  assert.match(
    failed.get("history") ?? "",
    /alice\/laptop lacks message .* from its history window/,
  );
  assert.match(failed.get("converged") ?? "", /alice: alice\/laptop lacks conversation/);
});

Deno.test("away_past_retention: without catch-up, the sibling back from its absence lacks what expired", async () => {
  // The profile change synced while the laptop was away expired on the relay; nothing else
  // brings it (the messages come back with their later status syncs).
  const failed = await failing("away_past_retention.yaml", { noCatchUp: true });
  assert.match(
    failed.get("converged") ?? "",
    /alice\/phone and alice\/laptop show different profiles .*travelling/,
  );
});

Deno.test("away_past_retention: without refresh, the forwards and the messages to the away primary expire", async () => {
  const failed = await failing("away_past_retention.yaml", { noRefresh: true });
  assert.ok(failed.has("forwarded"), [...failed.keys()].join(", "));
  assert.match(failed.get("no_loss") ?? "", /bob\/phone lacks message/);
});

Deno.test("contact_resend: without refresh, the contact's messages to the away primary are lost", async () => {
  const failed = await failing("contact_resend.yaml", { noRefresh: true });
  assert.match(
    failed.get("no_loss") ?? "",
    /alice\/phone lacks message .* \("are you there #\d+"\)/,
  );
});

Deno.test("handover_planned: without passing late forwards on, a forward to the old primary is lost", async () => {
  assert.deepEqual([...(await failing("handover_planned.yaml", {})).keys()], []);
  const failed = await failing("handover_planned.yaml", { noReforward: true });
  assert.ok(failed.has("forwarded") || failed.has("no_loss"), [...failed.keys()].join(", "));
});

Deno.test("retire_and_remove: a removed device that stays a sibling keeps receiving: removed_blind fails", async () => {
  assert.deepEqual([...(await failing("retire_and_remove.yaml", {})).keys()], []);
  const failed = await failing("retire_and_remove.yaml", { keepRemoved: true });
  assert.match(failed.get("removed_blind") ?? "", /alice\/tablet, removed at .* holds message/);
});

Deno.test("lost_tablet: without a rekey, bob still accepts the removed tablet's keys: removed_blind fails", async () => {
  assert.deepEqual([...(await failing("lost_tablet.yaml", {})).keys()], []);
  const failed = await failing("lost_tablet.yaml", { noRekey: true });
  assert.match(
    failed.get("removed_blind") ?? "",
    /bob\/phone still accepts the identity key .* that removed alice\/tablet holds/,
  );
});

Deno.test("lost_phone: without the takeover, the lost phone stays every contact's primary: reachable fails", async () => {
  assert.deepEqual([...(await failing("lost_phone.yaml", {})).keys()], []);
  const failed = await failing("lost_phone.yaml", { noTakeover: true });
  assert.match(
    failed.get("reachable") ?? "",
    /primary of conversation .* not among alice's remaining devices/,
  );
});

Deno.test("lost_phone: without sending again after the reset, what the contacts wrote to the lost phone is lost", async () => {
  const failed = await failing("lost_phone.yaml", { noRefresh: true });
  assert.match(
    failed.get("no_loss") ?? "",
    /alice\/laptop lacks message .* \("(bob|carol|dave) #\d"\)/,
  );
});

Deno.test("retire_and_remove: a removed tablet that skips the root check hijacks contacts that take retired keys", async () => {
  const scenario = await loadScenario("scenarios/retire_and_remove.yaml");
  // A build without the root check lets the removed tablet "remove" the laptop and reset bob and
  // carol with the keys it kept; contacts that take resets signed with retired keys move to it.
  const hijack = await runScenario(scenario, {
    weakening: { unsignedList: true },
    sealing: { acceptRetiredResets: true },
  });
  const failed = new Map(hijack.expectations.filter((e) => !e.ok).map((e) => [e.name, e.detail]));
  assert.match(
    failed.get("removed_blind") ?? "",
    /alice\/tablet, removed at .* holds message .* sent by (bob|carol)\/phone/,
  );
  // The real contacts refuse those resets (RetiredKey): nothing reaches the tablet.
  // Only the scenario's `{ refused: 1 }` sees the weakened build: the tablet's removal went through.
  const refused = await runScenario(scenario, { weakening: { unsignedList: true } });
  assert.deepEqual(refused.expectations.filter((e) => !e.ok).map((e) => e.name), ["refused"]);
  const decrypt = refused.expectations.find((e) => e.name === "decrypt_clean")!;
  assert.match(decrypt.detail, /reset\(s\) signed with a removed device's retired key refused/);
  // And the real build refuses the tablet's removal of the laptop outright.
  const real = await runScenario(scenario, {});
  assert.match(real.refusedSteps[0]?.error ?? "", /only the device holding the identity root/);
});

Deno.test("handover_away: without refresh (the handover and bob's messages sent again), they expire and never arrive", async () => {
  assert.deepEqual([...(await failing("handover_away.yaml", {})).keys()], []);
  const failed = await failing("handover_away.yaml", { noRefresh: true });
  assert.match(failed.get("no_loss") ?? "", /lacks message/);
});

Deno.test("lost_phone: without the recovery code, the laptop cannot remove the lost root device: reachable fails", async () => {
  const text = (await Deno.readTextFile("scenarios/lost_phone.yaml"))
    .replace(/^.*recover: \{ user: alice, device: laptop \}.*\n/m, "");
  assert.doesNotMatch(text, /recover:/);
  const file = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(file, text);
    const report = await runScenario(await loadScenario(file), {});
    assert.match(report.refusedSteps[0]?.error ?? "", /only the device holding the identity root/);
    const reachable = report.expectations.find((e) => e.name === "reachable")!;
    assert.equal(reachable.ok, false);
    assert.match(reachable.detail, /not among alice's remaining devices/);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("always_online: without the handover to the cloud devices, forwards wait for the phones: delivered_within fails", async () => {
  const scenario = await loadScenario("scenarios/always_online.yaml");
  const report = await runScenario(scenario);
  assert.ok(report.ok, report.expectations.filter((e) => !e.ok).map((e) => e.detail).join("; "));
  const phonesStay = {
    ...scenario,
    steps: scenario.steps.filter((s) => s.kind !== "handover"),
  };
  const weak = await runScenario(phonesStay);
  const failed = weak.expectations.find((e) => e.name === "delivered_within" && !e.ok);
  assert.match(failed?.detail ?? "", /p99 latency \d+ ms exceeds 135000 ms/);
  // The latency counts the devices that stayed online: in the default count (every device online)
  // the messages sent while the phones slept are left out, and it would pass.
  const all = {
    ...phonesStay,
    expect: [{ name: "delivered_within" as const, p99Ms: 135_000 }],
  };
  assert.ok((await runScenario(all)).ok);
});

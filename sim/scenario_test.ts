import assert from "node:assert/strict";
import { join } from "node:path";
import YAML from "yaml";
import { loadScenario, parseScenario, type Scenario, ScenarioError } from "./scenario.ts";
import { BUILTIN_MODULES } from "../plugins/mod.ts";

/** The example of docs/SCENARIOS.md, verbatim. */
const CONTRACT_EXAMPLE = `
name: offline-primary            # required
description: free text
seed: 42
duration: 10m                    # virtual time the scenario may run; after the last
                                 # step the simulator keeps running until quiescent
                                 # (nothing in flight, every device online) or duration ends
server: fake
servers: [relay]                 # relay names; the first is every identity's home relay
network:                         # applies to every device <-> server exchange
  latency: { min: 20ms, max: 250ms }   # uniform per delivery
  reorder: 0.2                   # share of deliveries held back behind later ones
  duplicate: 0.05                # share of requests/responses delivered twice
  drop: 0.01                     # share of requests lost (the client retries)
  corrupt: 0.01                  # share of pull answers with one packed message damaged
poll: { interval: 2s }           # how often an online device polls its servers
users:
  - name: alice
    devices: [phone, laptop, tablet]   # the identity is created on the first device;
                                       # the others are new, unpaired installs
  - name: bob
    devices: [phone]
  - name: crowd                  # a generated group: crowd1..crowd100, each with
    count: 100                   # devices d1..d3 (the identity on d1); they are
    devices: 3                   # paired and introduced to each other at time 0
    pair: all
steps:                           # run in time order; equal times in file order
  - { at: 0s,   pair:    { user: alice, from: phone, to: laptop } }
  - { at: 0s,   invite:  { from: alice/phone, to: bob/phone } }
  - { at: 10s,  offline: alice/phone }
  - { at: 11s,  send:    { from: alice/laptop, to: bob, text: "hi", count: 5, every: 100ms } }
  - { at: 60s,  online:  alice/phone }
  - { at: 70s,  crash:   alice/tablet }          # drops all in-memory state at once
  - { at: 75s,  restart: alice/tablet }          # starts again from its stores
  - { at: 80s,  profile: { device: alice/laptop, nickname: "Al", status: "busy" } }
  - { at: 90s,  rename:  { device: alice/tablet, peer: bob, name: "Bobby" } }
  - { at: 100s, read:    { device: bob/phone, peer: alice } }   # read receipts for all unread
  - { at: 110s, partition: { devices: [alice/laptop], for: 30s } }
  - { at: 120s, add_server: { device: alice/phone, server: relay2 } }   # a relay from \`servers\`
  - { at: 0s,   chatter: { users: crowd, messages: 10000, over: 5m } }
                                 # random traffic: random sender device, random
                                 # contact among that user's contacts
expect:                          # checked at the end; each must hold
  - converged
  - no_duplicates
  - no_loss
  - contacts_blind
  - root_key_private
  - server_blind
  - { delivered_within: { p99: 10s } }
`;

/** The example with relay2 declared, as its add_server step requires (see the test below). */
const EXAMPLE = CONTRACT_EXAMPLE.replace("servers: [relay] ", "servers: [relay, relay2]");

const parseYaml = (text: string): Scenario => parseScenario(YAML.parse(text), "x.yaml");

/** A small valid scenario to break one field at a time. */
function base(): Record<string, unknown> {
  return {
    name: "base",
    duration: "1m",
    users: [
      { name: "alice", devices: ["phone", "laptop"] },
      { name: "bob", devices: ["phone"] },
    ],
    steps: [] as unknown[],
  };
}

function withStep(step: unknown): Record<string, unknown> {
  return { ...base(), steps: [step] };
}

function assertScenarioError(
  fn: () => unknown,
  expected: { path: string; value?: unknown; message: RegExp | string },
): ScenarioError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ScenarioError, `expected a ScenarioError, got ${caught}`);
  assert.equal(caught.path, expected.path, caught.message);
  if ("value" in expected) assert.deepEqual(caught.value, expected.value);
  if (typeof expected.message === "string") assert.equal(caught.message, expected.message);
  else assert.match(caught.message, expected.message);
  return caught;
}

Deno.test("parseScenario() reads the SCENARIOS.md example (with relay2 declared)", () => {
  const s = parseYaml(EXAMPLE);
  assert.equal(s.name, "offline-primary");
  assert.equal(s.description, "free text");
  assert.equal(s.seed, 42);
  assert.equal(s.durationMs, 600_000);
  assert.equal(s.server, "fake");
  assert.deepEqual(s.servers, ["relay", "relay2"]);
  assert.deepEqual(s.network, {
    latencyMs: { min: 20, max: 250 },
    reorder: 0.2,
    duplicate: 0.05,
    drop: 0.01,
    corrupt: 0.01,
  });
  assert.equal(s.pollIntervalMs, 2000);
  assert.equal(s.source, "x.yaml");
  assert.equal(s.users.length, 102);
  assert.deepEqual(s.users[0], { name: "alice", devices: ["phone", "laptop", "tablet"] });
  assert.deepEqual(s.users[2], {
    name: "crowd1",
    devices: ["d1", "d2", "d3"],
    generated: { group: "crowd", pairAll: true },
  });
  assert.deepEqual(s.steps.map((step) => [step.atMs, step.index, step.kind]), [
    [0, 0, "pair"],
    [0, 1, "invite"],
    [0, 12, "chatter"],
    [10_000, 2, "offline"],
    [11_000, 3, "send"],
    [60_000, 4, "online"],
    [70_000, 5, "crash"],
    [75_000, 6, "restart"],
    [80_000, 7, "profile"],
    [90_000, 8, "rename"],
    [100_000, 9, "read"],
    [110_000, 10, "partition"],
    [120_000, 11, "add_server"],
  ]);
  const byIndex = new Map(s.steps.map((step) => [step.index, step]));
  assert.deepEqual(byIndex.get(0), {
    atMs: 0,
    index: 0,
    kind: "pair",
    user: "alice",
    from: "phone",
    to: "laptop",
    via: "code",
    history: { windowMs: 30 * 86_400_000, messagesMax: 1000 },
  });
  assert.deepEqual(byIndex.get(1), {
    atMs: 0,
    index: 1,
    kind: "invite",
    from: "alice/phone",
    to: "bob/phone",
    via: "code",
  });
  assert.deepEqual(byIndex.get(3), {
    atMs: 11_000,
    index: 3,
    kind: "send",
    from: "alice/laptop",
    to: "bob",
    text: "hi",
    count: 5,
    everyMs: 100,
  });
  assert.deepEqual(byIndex.get(7), {
    atMs: 80_000,
    index: 7,
    kind: "profile",
    device: "alice/laptop",
    nickname: "Al",
    status: "busy",
  });
  assert.deepEqual(byIndex.get(8), {
    atMs: 90_000,
    index: 8,
    kind: "rename",
    device: "alice/tablet",
    peer: "bob",
    name: "Bobby",
  });
  assert.deepEqual(byIndex.get(9), {
    atMs: 100_000,
    index: 9,
    kind: "read",
    device: "bob/phone",
    peer: "alice",
  });
  assert.deepEqual(byIndex.get(10), {
    atMs: 110_000,
    index: 10,
    kind: "partition",
    devices: ["alice/laptop"],
    forMs: 30_000,
  });
  assert.deepEqual(byIndex.get(11), {
    atMs: 120_000,
    index: 11,
    kind: "add_server",
    device: "alice/phone",
    server: "relay2",
  });
  assert.deepEqual(byIndex.get(12), {
    atMs: 0,
    index: 12,
    kind: "chatter",
    users: "crowd",
    messages: 10_000,
    overMs: 300_000,
  });
  assert.deepEqual(s.expect, [
    { name: "converged" },
    { name: "no_duplicates" },
    { name: "no_loss" },
    { name: "contacts_blind" },
    { name: "root_key_private" },
    { name: "server_blind" },
    { name: "delivered_within", p99Ms: 10_000 },
  ]);
});

Deno.test("parseScenario() refuses the verbatim example's relay2, which servers does not list", () => {
  assertScenarioError(() => parseYaml(CONTRACT_EXAMPLE), {
    path: "steps[11].add_server.server",
    value: "relay2",
    message: 'x.yaml: steps[11].add_server.server: "relay2" is not one of the scenario\'s ' +
      "servers (expected one of relay); declare it: servers: [relay, relay2], or did you mean " +
      '"relay"?',
  });
});

Deno.test("parseScenario() names the field of a misspelt key and suggests the right one", () => {
  const raw = base();
  raw.users = [{ name: "alice", devics: ["phone"] }];
  const e = assertScenarioError(() => parseScenario(raw, "scenarios/x.yaml"), {
    path: "users[0].devics",
    value: ["phone"],
    message: "scenarios/x.yaml: users[0].devics: unknown field (expected one of name, devices, " +
      'count, pair); did you mean "devices"?',
  });
  assert.equal(e.hint, 'did you mean "devices"?');
  assertScenarioError(() => parseScenario({ ...base(), sead: 4 }, "x.yaml"), {
    path: "sead",
    message: /unknown field .*did you mean "seed"\?$/,
  });
  assertScenarioError(() => parseScenario(withStep({ at: 0, sned: {} }), "x.yaml"), {
    path: "steps[0].sned",
    message: /did you mean "send"\?$/,
  });
  assertScenarioError(
    () =>
      parseScenario(withStep({ at: 0, send: { from: "alice/phone", to: "bob", txt: "" } }), "x"),
    { path: "steps[0].send.txt", message: /did you mean "text"\?$/ },
  );
  assertScenarioError(() => parseScenario({ ...base(), expect: ["no_los"] }, "x.yaml"), {
    path: "expect[0]",
    message: /"no_los" is not an expectation .*did you mean "no_loss"\?$/,
  });
  assertScenarioError(
    () => parseScenario({ ...base(), network: { latency: { min: 1, mx: 2 } } }, "x.yaml"),
    { path: "network.latency.mx", message: /did you mean "max"\?$/ },
  );
});

Deno.test("parseScenario() reports a bad duration with the field, the value and the forms", () => {
  const raw = withStep({
    at: "1s",
    send: { from: "alice/phone", to: "bob", text: "x", count: 2, every: "10 seconds" },
  });
  raw.steps = [{ at: 0, offline: "alice/phone" }, { at: 0, online: "alice/phone" }, {
    at: 0,
    pair: { user: "alice", from: "phone", to: "laptop" },
  }, ...(raw.steps as unknown[])];
  const e = assertScenarioError(() => parseScenario(raw, "scenarios/x.yaml"), {
    path: "steps[3].send.every",
    value: "10 seconds",
    message: 'scenarios/x.yaml: steps[3].send.every: "10 seconds" is not a duration ' +
      "(expected a number of ms or a string like 250ms, 10s, 5m, 1h, 3d)",
  });
  assert.equal(e.expected, "a number of ms or a string like 250ms, 10s, 5m, 1h, 3d");
  assertScenarioError(() => parseScenario({ ...base(), duration: -5 }, "x.yaml"), {
    path: "duration",
    message: /-5 is not a duration/,
  });
  assertScenarioError(() => parseScenario({ ...base(), duration: 0 }, "x.yaml"), {
    path: "duration",
    message: /0 is zero/,
  });
  assertScenarioError(() => parseScenario(withStep({ offline: "alice/phone" }), "x.yaml"), {
    path: "steps[0].at",
    message: /missing/,
  });
});

Deno.test("parseScenario() names an unknown device, user or device of a user", () => {
  assertScenarioError(() => parseScenario(withStep({ at: 0, offline: "carol/phone" }), "x.yaml"), {
    path: "steps[0].offline",
    value: "carol/phone",
    message: 'x.yaml: steps[0].offline: "carol/phone" names an unknown user "carol" ' +
      "(expected a user declared under users)",
  });
  assertScenarioError(() => parseScenario(withStep({ at: 0, crash: "alice/phnoe" }), "x.yaml"), {
    path: "steps[0].crash",
    message: 'x.yaml: steps[0].crash: "alice/phnoe" is not a device of alice ' +
      '(expected one of alice/phone, alice/laptop); did you mean "alice/phone"?',
  });
  assertScenarioError(() => parseScenario(withStep({ at: 0, crash: "alice" }), "x.yaml"), {
    path: "steps[0].crash",
    message: /"alice" names a user, not a device .*alice's devices are alice\/phone, alice\/laptop/,
  });
  assertScenarioError(() => parseScenario(withStep({ at: 0, crash: "alcie/phone" }), "x.yaml"), {
    path: "steps[0].crash",
    message: /unknown user "alcie".*did you mean "alice"\?$/,
  });
  assertScenarioError(
    () => parseScenario(withStep({ at: 0, pair: { user: "alice", from: "phone", to: "tv" } }), "x"),
    { path: "steps[0].pair.to", message: /"tv" is not a device of alice/ },
  );
  assertScenarioError(
    () =>
      parseScenario(withStep({ at: 0, pair: { user: "bob", from: "phone", to: "phone" } }), "x"),
    { path: "steps[0].pair.to", message: /cannot pair with itself/ },
  );
});

Deno.test("parseScenario() explains that send goes to a user, not a device", () => {
  assertScenarioError(
    () =>
      parseScenario(
        withStep({ at: 0, send: { from: "alice/phone", to: "bob/phone", text: "hi" } }),
        "x.yaml",
      ),
    {
      path: "steps[0].send.to",
      value: "bob/phone",
      message: 'x.yaml: steps[0].send.to: "bob/phone" is a device, but send names a user ' +
        '(the conversation with them) (expected a user name); write "bob"',
    },
  );
  assertScenarioError(
    () =>
      parseScenario(withStep({ at: 0, send: { from: "alice/phone", to: "alice", text: "" } }), "x"),
    { path: "steps[0].send.to", message: /is the user of alice\/phone itself/ },
  );
});

Deno.test("parseScenario() fills the defaults of the contract", () => {
  const { modules, ...s } = parseScenario({ name: "bare" }, "x.yaml");
  assert.deepEqual(modules.map((m) => m.name), BUILTIN_MODULES.map((m) => m.name));
  assert.deepEqual(s, {
    name: "bare",
    description: "",
    durationMs: 600_000,
    servers: ["relay"],
    network: { latencyMs: { min: 20, max: 100 }, reorder: 0, duplicate: 0, drop: 0, corrupt: 0 },
    pollIntervalMs: 2000,
    pollIntervalsMs: {},
    limits: {},
    adversary: [],
    adversaryShare: 0.5,
    users: [],
    steps: [],
    expect: [],
    source: "x.yaml",
    pluginFiles: [],
    extraModules: [],
  });
  const send = parseScenario(
    withStep({ at: "5s", send: { from: "alice/phone", to: "bob", text: "hey" } }),
    "x.yaml",
  ).steps[0];
  assert.deepEqual(send, {
    atMs: 5000,
    index: 0,
    kind: "send",
    from: "alice/phone",
    to: "bob",
    text: "hey",
    count: 1,
    everyMs: 0,
  });
});

Deno.test("parseScenario() expands generated groups in place, in file order", () => {
  const s = parseScenario({
    name: "groups",
    users: [
      { name: "alice", devices: ["phone"] },
      { name: "crowd", count: 3, devices: 2, pair: "all" },
      { name: "mob", count: 2, devices: 1 },
      { name: "zed", devices: ["phone"] },
    ],
    steps: [
      { at: 0, invite: { from: "crowd", to: "crowd", peers: 2 } },
      { at: 0, invite: { from: "mob", to: "crowd", peers: 3 } },
      { at: 0, chatter: { users: "mob", messages: 10, over: "1m" } },
      { at: 0, offline: "crowd3/d2" },
    ],
  }, "x.yaml");
  assert.deepEqual(
    s.users.map((u) => [u.name, u.devices.join(","), u.generated]),
    [
      ["alice", "phone", undefined],
      ["crowd1", "d1,d2", { group: "crowd", pairAll: true }],
      ["crowd2", "d1,d2", { group: "crowd", pairAll: true }],
      ["crowd3", "d1,d2", { group: "crowd", pairAll: true }],
      ["mob1", "d1", { group: "mob", pairAll: false }],
      ["mob2", "d1", { group: "mob", pairAll: false }],
      ["zed", "phone", undefined],
    ],
  );
  assert.deepEqual(s.steps[0], {
    atMs: 0,
    index: 0,
    kind: "invite_group",
    from: "crowd",
    to: "crowd",
    peers: 2,
    via: "code",
  });
  assert.equal(s.steps[1].kind, "invite_group");
  // Expanded users share no arrays: a caller may mutate one without touching another.
  assert.notEqual(s.users[1].devices, s.users[2].devices);
});

Deno.test("parseScenario() refuses group misuse: collisions, too many peers, plain users", () => {
  assertScenarioError(
    () =>
      parseScenario({
        name: "x",
        users: [{ name: "crowd2", devices: ["a"] }, { name: "crowd", count: 3, devices: 1 }],
      }, "x.yaml"),
    { path: "users[1].name", message: /"crowd2" is declared twice/ },
  );
  const groups = { name: "x", users: [{ name: "crowd", count: 3, devices: 1 }] };
  assertScenarioError(
    () =>
      parseScenario({
        ...groups,
        steps: [{ at: 0, invite: { from: "crowd", to: "crowd", peers: 3 } }],
      }, "x.yaml"),
    { path: "steps[0].invite.peers", message: /expected a whole number from 1 to 2/ },
  );
  assertScenarioError(
    () =>
      parseScenario({
        ...groups,
        steps: [{ at: 0, chatter: { users: "crowd1", messages: 1, over: 0 } }],
      }, "x.yaml"),
    {
      path: "steps[0].chatter.users",
      message: /"crowd1" is a user, not a generated group \(expected one of crowd\)/,
    },
  );
  assertScenarioError(
    () => parseScenario({ name: "x", users: [{ name: "a", devices: 3 }] }, "x.yaml"),
    { path: "users[0].devices", message: /needs count/ },
  );
  assertScenarioError(
    () => parseScenario({ name: "x", users: [{ name: "a", devices: ["p"], pair: "all" }] }, "x"),
    { path: "users[0].pair", message: /generated groups only/ },
  );
  assertScenarioError(
    () =>
      parseScenario({ name: "x", users: [{ name: "g", count: 2, devices: 1, pair: "some" }] }, "x"),
    { path: "users[0].pair", message: /expected all/ },
  );
});

Deno.test("parseScenario() sorts steps by time, stably (file order for equal times)", () => {
  const at = [30, 0, 10, 0, 30, 10, 0];
  const s = parseScenario({
    ...base(),
    steps: at.map((ms) => ({ at: ms, online: "alice/phone" })),
  }, "x.yaml");
  assert.deepEqual(s.steps.map((step) => [step.atMs, step.index]), [
    [0, 1],
    [0, 3],
    [0, 6],
    [10, 2],
    [10, 5],
    [30, 0],
    [30, 4],
  ]);
});

Deno.test("parseScenario() checks ranges: probabilities, latency, counts, seed, at, servers", () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ ...base(), network: { drop: 1.5 } }, "network.drop", /1.5 is not a probability/],
    [{ ...base(), network: { corrupt: -0.1 } }, "network.corrupt", /-0.1 is not a probability/],
    [{ ...base(), network: { reorder: "lots" } }, "network.reorder", /not a probability/],
    [
      { ...base(), network: { latency: { min: "2s", max: "1s" } } },
      "network.latency",
      /min 2000ms is above max 1000ms/,
    ],
    [{ ...base(), seed: 1.5 }, "seed", /expected a whole number/],
    [{ ...base(), seed: "42" }, "seed", /"42" is out of range or not whole/],
    [{ ...base(), name: "" }, "name", /expected a non-empty string/],
    [{ ...base(), name: undefined }, "name", /name: missing/],
    [{ ...base(), server: "mongo" }, "server", /is not a relay kind/],
    [{ ...base(), servers: ["a", "a"] }, "servers[1]", /listed twice/],
    [{ ...base(), poll: { interval: 0 } }, "poll.interval", /is zero/],
    [withStep({ at: "2m", online: "alice/phone" }), "steps[0].at", /after the scenario's duration/],
    [
      withStep({ at: 0, send: { from: "alice/phone", to: "bob", text: "", count: 0 } }),
      "steps[0].send.count",
      /0 is out of range/,
    ],
    [
      withStep({ at: 0, send: { from: "alice/phone", to: "bob", text: "", count: 2.5 } }),
      "steps[0].send.count",
      /expected a whole number from 1/,
    ],
    [
      withStep({
        at: "59s",
        send: { from: "alice/phone", to: "bob", text: "", count: 3, every: "1s" },
      }),
      "steps[0].send.every",
      /the last message would end at 61000ms/,
    ],
    [
      withStep({ at: 0, add_server: { device: "alice/phone", server: "relay2" } }),
      "steps[0].add_server.server",
      /"relay2" is not one of the scenario's servers/,
    ],
    [
      withStep({ at: 0, partition: { devices: [], for: "1s" } }),
      "steps[0].partition.devices",
      /non-empty list/,
    ],
    [withStep({ at: 0 }), "steps[0]", /the step has no action/],
    [
      withStep({ at: 0, online: "alice/phone", offline: "alice/phone" }),
      "steps[0]",
      /2 actions \(offline, online\)/,
    ],
    [
      withStep({ at: 0, profile: { device: "alice/phone" } }),
      "steps[0].profile",
      /nothing to change/,
    ],
    [
      withStep({ at: 0, invite: { from: "alice/phone", to: "alice/laptop" } }),
      "steps[0].invite.to",
      /belongs to the inviting user alice/,
    ],
    [{ ...base(), expect: ["count"] }, "expect[0]", /count needs parameters/],
    [
      { ...base(), expect: [{ delivered_within: { p50: "2s", p99: "1s" } }] },
      "expect[0].delivered_within",
      /p50 2000ms is above p99 1000ms/,
    ],
    [{ ...base(), expect: [{ count: { messages: -1 } }] }, "expect[0].count.messages", /-1/],
    [
      { ...base(), expect: [{ delivered_within: { p99: "1s", to: "some" } }] },
      "expect[0].delivered_within.to",
      /"some" is not a set of devices/,
    ],
    [
      { ...base(), poll: { devices: { "alice/fridge": "1m" } } },
      "poll.devices.alice/fridge",
      /is not a device of alice/,
    ],
    [{ ...base(), poll: { devices: ["alice/phone"] } }, "poll.devices", /is not a mapping/],
    [
      { ...base(), poll: { devices: { "alice/phone": "0s" } } },
      "poll.devices.alice/phone",
      /./,
    ],
  ];
  for (const [raw, path, message] of cases) {
    assertScenarioError(() => parseScenario(raw, "x.yaml"), { path, message });
  }
});

Deno.test("parseScenario() takes the extra forms: invite to a user, fixed latency, named expectations", () => {
  const s = parseScenario({
    ...base(),
    network: { latency: "50ms" },
    steps: [
      { at: 0, invite: { from: "alice/laptop", to: "bob" } },
      { at: 0, partition: { devices: "bob/phone", for: "1s" } },
    ],
    expect: [{ converged: null }, { count: { messages: 0 } }, { delivered_within: { p50: 1 } }],
  }, "x.yaml");
  assert.deepEqual(s.network.latencyMs, { min: 50, max: 50 });
  assert.deepEqual(s.steps[0], {
    atMs: 0,
    index: 0,
    kind: "invite",
    from: "alice/laptop",
    to: "bob/phone",
    via: "code",
  });
  assert.deepEqual(s.steps[1], {
    atMs: 0,
    index: 1,
    kind: "partition",
    devices: ["bob/phone"],
    forMs: 1000,
  });
  assert.deepEqual(s.expect, [
    { name: "converged" },
    { name: "count", messages: 0 },
    { name: "delivered_within", p50Ms: 1 },
  ]);
});

Deno.test("parseScenario() does not modify its input", () => {
  const raw = YAML.parse(EXAMPLE);
  const copy = structuredClone(raw);
  parseScenario(raw, "x.yaml");
  assert.deepEqual(raw, copy);
});

Deno.test("loadScenario() reads YAML, JSON and TypeScript files alike", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_scenario_" });
  try {
    const yaml = join(dir, "example.yaml");
    await Deno.writeTextFile(yaml, EXAMPLE);
    const fromYaml = await loadScenario(yaml);
    assert.equal(fromYaml.source, yaml);
    assert.equal(fromYaml.users.length, 102);

    const json = join(dir, "example.json");
    await Deno.writeTextFile(json, JSON.stringify(YAML.parse(EXAMPLE)));
    const fromJson = await loadScenario(json);
    assert.deepEqual({ ...fromJson, source: "" }, { ...fromYaml, source: "" });

    const ts = join(dir, "example.ts");
    await Deno.writeTextFile(ts, `export default ${JSON.stringify(YAML.parse(EXAMPLE))};\n`);
    const fromTs = await loadScenario(ts);
    assert.deepEqual({ ...fromTs, source: "" }, { ...fromYaml, source: "" });

    const yml = join(dir, "short.yml");
    await Deno.writeTextFile(yml, "name: short\nduration: 5s\n");
    assert.equal((await loadScenario(yml)).durationMs, 5000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadScenario() turns unreadable and unparsable files into ScenarioErrors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meowsync_scenario_" });
  const expectError = async (path: string, message: RegExp) => {
    const e = await loadScenario(path).then(() => undefined, (e) => e);
    assert.ok(e instanceof ScenarioError, `${path}: expected a ScenarioError, got ${e}`);
    assert.equal(e.path, "");
    assert.match(e.message, message);
  };
  try {
    await expectError(join(dir, "missing.yaml"), /cannot read the file/);
    const bad = join(dir, "bad.yaml");
    await Deno.writeTextFile(bad, "name: [unclosed\n");
    await expectError(bad, /cannot parse the file.*\(expected valid YAML\)/);
    const dup = join(dir, "dup.yaml");
    await Deno.writeTextFile(dup, "name: a\nname: b\n");
    await expectError(dup, /cannot parse the file/);
    const badJson = join(dir, "bad.json");
    await Deno.writeTextFile(badJson, "{ name: ");
    await expectError(badJson, /expected valid JSON/);
    const noDefault = join(dir, "none.ts");
    await Deno.writeTextFile(noDefault, "export const scenario = { name: 'x' };\n");
    await expectError(noDefault, /no default export/);
    const empty = join(dir, "empty.yaml");
    await Deno.writeTextFile(empty, "# nothing\n");
    const e = await loadScenario(empty).then(() => undefined, (e) => e);
    assert.ok(e instanceof ScenarioError && /does not hold a mapping/.test(e.message));
    await expectError(join(dir, "scenario.toml"), /unsupported file type "\.toml"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadScenario() reads scenarios/offline_primary.yaml", async () => {
  const root = new URL("../scenarios/", import.meta.url);
  const offline = await loadScenario(new URL("offline_primary.yaml", root).pathname);
  assert.equal(offline.steps.length, 13);
  assert.deepEqual(offline.servers, ["relay", "relay2"]);
});

Deno.test("parseScenario() reads relay limits: durations and counts, each validated", () => {
  const s = parseScenario(
    { name: "l", limits: { retention: "3d", pull_requests_max: 16, long_poll_max: "10s" } },
    "x.yaml",
  );
  assert.deepEqual(s.limits, {
    retentionMs: 3 * 86_400_000,
    longPollMsMax: 10_000,
    pullRequestsMax: 16,
  });
  assert.throws(
    () => parseScenario({ name: "l", limits: { pull_request_max: 16 } }, "x.yaml"),
    (e) => e instanceof ScenarioError && e.path === "limits.pull_request_max",
  );
  assert.throws(
    () => parseScenario({ name: "l", limits: { pull_requests_max: 0 } }, "x.yaml"),
    (e) => e instanceof ScenarioError && e.path === "limits.pull_requests_max",
  );
  assert.throws(
    () => parseScenario({ name: "l", limits: { retention: "soon" } }, "x.yaml"),
    (e) => e instanceof ScenarioError && e.path === "limits.retention",
  );
});

Deno.test("parseScenario() reads a device's own poll interval and delivered_within to: online", () => {
  const s = parseScenario({
    ...base(),
    poll: { interval: "2s", devices: { "alice/laptop": "1m" } },
    expect: [{ delivered_within: { p99: "2m", to: "online" } }],
  }, "x.yaml");
  assert.deepEqual(s.pollIntervalsMs, { "alice/laptop": 60_000 });
  assert.equal(s.pollIntervalMs, 2_000);
  assert.deepEqual(s.expect, [{ name: "delivered_within", p99Ms: 120_000, to: "online" }]);
});

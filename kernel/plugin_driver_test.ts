import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { DbMessageSchema, PeerRecordSchema, UserMessageSchema } from "../proto/gen/meow_pb.ts";
import { Malformed, PluginError } from "./errors.ts";
import { apiKey, type Plugin, type PluginHost, type ReceiveContext, type Tx } from "./plugin.ts";
import { PluginDriver, pluginErrorOf } from "./plugin_driver.ts";

const tx = {} as Tx;
const context: ReceiveContext = { tx, peer: create(PeerRecordSchema, { uid: "bob" }) };
const host = {} as PluginHost;
const stored = { message: create(DbMessageSchema), origin: "local" as const };

Deno.test("PluginDriver.emit() runs event hooks one after another, in registration order", async () => {
  const log: string[] = [];
  const hook = (name: string, waitTicks: number): Plugin => ({
    name,
    on: {
      "message.stored": async () => {
        log.push(`${name} start`);
        for (let i = 0; i < waitTicks; i++) await Promise.resolve();
        log.push(`${name} end`);
      },
    },
  });
  const driver = PluginDriver.create([hook("a", 5), { name: "quiet" }, hook("b", 0)]);
  await driver.emit("message.stored", stored, tx);
  assert.deepEqual(log, ["a start", "a end", "b start", "b end"]);
});

Deno.test("PluginDriver.emit() stops at the first failing hook and passes its error through, tagged", async () => {
  const ran: string[] = [];
  const bad = new Malformed("cannot sync");
  const driver = PluginDriver.create([
    { name: "a", on: { "message.stored": () => void ran.push("a") } },
    { name: "b", on: { "message.stored": () => Promise.reject(bad) } },
    { name: "c", on: { "message.stored": () => void ran.push("c") } },
  ]);
  await assert.rejects(driver.emit("message.stored", stored, tx), (e) => e === bad);
  assert.deepEqual(ran, ["a"]);
  const tagged = pluginErrorOf(bad);
  assert(tagged instanceof PluginError);
  assert.equal(tagged.plugin, "b");
  assert.equal(tagged.hook, "on.message.stored");
  assert.equal(tagged.cause, bad);
});

Deno.test("PluginDriver.outbound() gives the message to the first plugin that takes it", async () => {
  const asked: string[] = [];
  const outbound = (name: string, takes: boolean): Plugin => ({
    name,
    outbound: () => {
      asked.push(name);
      return Promise.resolve(takes);
    },
  });
  const message = create(UserMessageSchema, { type: "chat" });
  const taking = PluginDriver.create([
    outbound("a", false),
    outbound("b", true),
    outbound("c", true),
  ]);
  assert.equal(await taking.outbound(message, context), true);
  assert.deepEqual(asked, ["a", "b"]);
  const none = PluginDriver.create([outbound("x", false), { name: "y" }]);
  assert.equal(await none.outbound(message, context), false);
});

Deno.test("PluginDriver.route() hands a message to its type's one owner, and says when there is none", async () => {
  const got: string[] = [];
  const driver = PluginDriver.create([
    { name: "chat", types: ["chat", "ack"], receive: (m) => void got.push(`chat:${m.type}`) },
    { name: "reaction", types: ["reaction"], receive: (m) => void got.push(`reaction:${m.type}`) },
  ]);
  assert.equal(await driver.route(create(UserMessageSchema, { type: "ack" }), context), true);
  assert.equal(await driver.route(create(UserMessageSchema, { type: "reaction" }), context), true);
  assert.equal(await driver.route(create(UserMessageSchema, { type: "draft" }), context), false);
  assert.deepEqual(got, ["chat:ack", "reaction:reaction"]);
});

Deno.test("PluginDriver.route() passes a hook's error through unchanged; the innermost plugin is named", async () => {
  const inner = new TypeError("not set up");
  // "outer" calls "inner"'s hook from its own, as device_sync's event hooks reach forward_relay's.
  const innerDriver = PluginDriver.create([{
    name: "inner",
    types: ["x"],
    receive: () => {
      throw inner;
    },
  }]);
  const driver = PluginDriver.create([{
    name: "outer",
    types: ["y"],
    receive: () =>
      innerDriver.route(create(UserMessageSchema, { type: "x" }), context).then(() => {}),
  }]);
  await assert.rejects(driver.route(create(UserMessageSchema, { type: "y" }), context), TypeError);
  assert.equal(pluginErrorOf(inner)?.plugin, "inner");
  assert.equal(pluginErrorOf(inner)?.hook, "receive");
});

Deno.test("PluginDriver.setup() throws a PluginError naming the plugin, with the failure as cause", async () => {
  const failure = new RangeError("sync type registered twice");
  const driver = PluginDriver.create([
    { name: "ok", setup: () => {} },
    { name: "drafts", setup: () => Promise.reject(failure) },
  ]);
  const error = await driver.setup(() => host).then(() => undefined, (e) => e);
  assert(error instanceof PluginError);
  assert.equal(error.plugin, "drafts");
  assert.equal(error.hook, "setup");
  assert.equal(error.cause, failure);
  assert.equal(error.message, `Plugin "drafts" failed in setup: sync type registered twice`);
});

Deno.test("PluginDriver.create() refuses a nameless plugin, a name twice and a type with two owners", () => {
  assert.throws(() => PluginDriver.create([{ name: "" }]), TypeError);
  assert.throws(() => PluginDriver.create([{ name: "a" }, () => ({ name: "a" })]), /twice/);
  assert.throws(
    () => PluginDriver.create([{ name: "a", types: ["chat"] }, { name: "b", types: ["chat"] }]),
    /type "chat" already belongs to "a"/,
  );
});

Deno.test("PluginDriver.api() finds a plugin's api by typed key, else throws", () => {
  interface Greeter {
    hello(): string;
  }
  const GREETER = apiKey<Greeter>("greeter");
  const driver = PluginDriver.create([{ name: "greeter", api: { hello: () => "meow" } }], "phone");
  const greeter: Greeter = driver.api(GREETER);
  assert.equal(greeter.hello(), "meow");
  assert.equal(driver.api(apiKey<Greeter>("greeter")), greeter, "a key is its name");
  assert.throws(() => driver.api(apiKey<Greeter>("missing")), {
    name: "TypeError",
    message: `phone: no plugin named "missing" exposes an api`,
  });
});

Deno.test("PluginDriver.primaryOf() takes the first plugin's answer, else this device", () => {
  const contact = create(PeerRecordSchema, { uid: "bob", primaryDeviceUid: "phone" });
  assert.equal(PluginDriver.create([{ name: "quiet" }]).primaryOf(contact, "laptop"), "laptop");
  const driver = PluginDriver.create([
    { name: "undecided", primaryOf: () => undefined },
    { name: "relay", primaryOf: (peer, own) => peer.primaryDeviceUid || own },
    { name: "late", primaryOf: () => "never asked" },
  ]);
  assert.equal(driver.primaryOf(contact, "laptop"), "phone");
  const broken = new Malformed("no rule");
  const failing = PluginDriver.create([{
    name: "strict",
    primaryOf: () => {
      throw broken;
    },
  }]);
  assert.throws(() => failing.primaryOf(contact, "laptop"), Malformed);
  assert.equal(pluginErrorOf(broken)?.hook, "primaryOf");
});
